"""PyTorch datasets over the generators, for training.

Tensors (all float32, channels first; ``value_range`` picks [0, 1] or [-1, 1]):

- ``image``: (3, H, W) the composite's colour; ``image_alpha``: (1, H, W) its alpha;
- ``layers``: (L, 4, H, W) every layer placed on the full canvas, straight RGBA, bottom first;
- ``layer_valid``: (L,) bool, False for padding added by :func:`collate`;
- ``boxes``: (L, 4) float (x0, y0, x1, y1) in pixels;
- ``extras``: each generator extra (e.g. ``background`` (3, H, W), ``mask`` (1, H, W));
- ``caption`` (str), ``layer_captions`` (list of str), ``blend_modes`` (list of str),
  ``meta`` (dict), ``value_range``.

Samples are generated on the fly (a sample is a pure function of its index), so workers need
no shared state and every epoch sees the same data for the same seed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from .generate import generate
from .sample import Sample

__all__ = ["LayeredDataset", "LayeredStream", "collate", "sample_to_tensors"]


def _scale(array: np.ndarray, value_range: str) -> torch.Tensor:
    tensor = torch.from_numpy(np.ascontiguousarray(array)).float().div_(255.0)
    return tensor.mul_(2.0).sub_(1.0) if value_range == "-1..1" else tensor


def _chw(array: np.ndarray) -> np.ndarray:
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def sample_to_tensors(sample: Sample, value_range: str = "-1..1") -> dict[str, Any]:
    """Convert one :class:`Sample` into the tensors described in the module docstring."""
    if value_range not in ("-1..1", "0..1"):
        raise ValueError("value_range must be '-1..1' or '0..1'")
    stack = sample.stack
    composite = sample.composite()
    layers = np.zeros((len(stack.layers), stack.height, stack.width, 4), np.uint8)
    for i, layer in enumerate(stack.layers):
        x, y = layer.offset
        x0, y0 = max(x, 0), max(y, 0)
        x1, y1 = min(x + layer.width, stack.width), min(y + layer.height, stack.height)
        if x0 < x1 and y0 < y1:
            layers[i, y0:y1, x0:x1] = layer.pixels[y0 - y:y1 - y, x0 - x:x1 - x]
    return {
        "image": _scale(_chw(composite[..., :3]), value_range),
        "image_alpha": _scale(_chw(composite[..., 3]), "0..1"),
        "layers": _scale(layers.transpose(0, 3, 1, 2), value_range),
        "layer_valid": torch.ones(len(stack.layers), dtype=torch.bool),
        "boxes": torch.tensor(sample.boxes, dtype=torch.float32).reshape(-1, 4),
        "extras": {key: _scale(_chw(value), value_range) for key, value in sample.extras.items()},
        "caption": sample.caption,
        "layer_captions": [layer.provenance.get("caption", "") for layer in stack.layers],
        "blend_modes": [layer.blend_mode.value for layer in stack.layers],
        "meta": sample.meta,
        "value_range": value_range,
    }


def collate(batch: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack a batch, padding the layer axis to the batch's largest layer count."""
    most = max(item["layers"].shape[0] for item in batch)

    def pad(tensor: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
        missing = most - tensor.shape[0]
        if missing == 0:
            return tensor
        filler = torch.full((missing, *tensor.shape[1:]), fill, dtype=tensor.dtype)
        return torch.cat([tensor, filler])

    transparent = -1.0 if batch[0]["value_range"] == "-1..1" else 0.0
    out: dict[str, Any] = {
        "image": torch.stack([item["image"] for item in batch]),
        "image_alpha": torch.stack([item["image_alpha"] for item in batch]),
        "layers": torch.stack([pad(item["layers"], transparent) for item in batch]),
        "layer_valid": torch.stack([pad(item["layer_valid"]) for item in batch]),
        "boxes": torch.stack([pad(item["boxes"]) for item in batch]),
        "extras": {key: torch.stack([item["extras"][key] for item in batch])
                   for key in batch[0]["extras"]},
    }
    out["value_range"] = batch[0]["value_range"]
    for key in ("caption", "layer_captions", "blend_modes", "meta"):
        out[key] = [item[key] for item in batch]
    return out


class LayeredDataset(Dataset):
    """A map-style dataset of ``length`` samples of one generator (index = sample index)."""

    def __init__(self, kind: str, length: int, *, size: int = 128, seed: int = 0,
                 split: str = "train", value_range: str = "-1..1", **options: Any) -> None:
        self.kind, self.length, self.size, self.seed = kind, length, size, seed
        self.split, self.value_range, self.options = split, value_range, options
        generate(kind, 0, seed=seed, size=size, split=split, **options)  # fail fast on bad args

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < self.length:
            raise IndexError(index)
        sample = generate(self.kind, index, seed=self.seed, size=self.size, split=self.split,
                          **self.options)
        return sample_to_tensors(sample, self.value_range)


class LayeredStream(IterableDataset):
    """An endless (or ``length``-long) stream; DataLoader workers take interleaved indices,
    so no sample is produced twice and none is skipped."""

    def __init__(self, kind: str, *, length: int | None = None, size: int = 128, seed: int = 0,
                 split: str = "train", value_range: str = "-1..1", **options: Any) -> None:
        self.kind, self.length, self.size, self.seed = kind, length, size, seed
        self.split, self.value_range, self.options = split, value_range, options

    def __iter__(self):
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        index = worker
        while self.length is None or index < self.length:
            sample = generate(self.kind, index, seed=self.seed, size=self.size,
                              split=self.split, **self.options)
            yield sample_to_tensors(sample, self.value_range)
            index += workers
