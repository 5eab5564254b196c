"""Crello (Yamaguchi, CanvasVAE; `cyberagent/crello` on Hugging Face, CDLA-Permissive-2.0):
graphic design templates whose elements are pre-rendered RGBA images.

Point :class:`CrelloDataset` at the folder where the dataset's parquet shards lie (for example
``~/.cache/huggingface/hub/datasets--cyberagent--crello/snapshots/<rev>/data``). Each row is a
document with ``canvas_width``/``canvas_height`` and per-element sequences ``left``, ``top``,
``width``, ``height`` (pixels, or fractions of the canvas in older releases: detected),
``opacity`` and ``image`` (PNG bytes). Rows become LayerStacks, first element at the bottom.
Needs pyarrow (``pip install layerstudio[realdata]``).
"""

from __future__ import annotations

import bisect
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from layerstudio.document import Layer, LayerStack
from layerstudio.errors import InvalidInputError
from layerstudio.io.raster import decode_png

from ..sample import Sample
from .common import existing_folder, to_sample

__all__ = ["CrelloDataset"]

_COLUMNS = ("id", "canvas_width", "canvas_height", "left", "top", "width", "height",
            "opacity", "image")
_OPTIONAL = ("title",)


def _pyarrow():
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise InvalidInputError("reading Crello needs pyarrow: pip install "
                                "'layerstudio[realdata]'") from None
    return pq


class CrelloDataset:
    """Crello documents from local parquet shards, as :class:`Sample` objects."""

    def __init__(self, root: str | Path, max_side: int | None = 512) -> None:
        pq = _pyarrow()
        self.root = existing_folder(root, "Crello")
        self.files = sorted(self.root.glob("**/*.parquet"))
        if not self.files:
            raise InvalidInputError(f"no .parquet files under {self.root}; download "
                                    "cyberagent/crello first")
        self.max_side = max_side
        self._starts, total = [], 0
        for path in self.files:
            self._starts.append(total)
            total += pq.ParquetFile(path).metadata.num_rows
        self._length = total
        self._cache: tuple[int, list[dict[str, Any]]] | None = None

    def __len__(self) -> int:
        return self._length

    def _rows(self, file_index: int) -> list[dict[str, Any]]:
        if self._cache is None or self._cache[0] != file_index:
            table = _pyarrow().read_table(self.files[file_index])
            missing = [c for c in _COLUMNS if c not in table.column_names]
            if missing:
                raise InvalidInputError(f"{self.files[file_index]} lacks Crello columns "
                                        f"{missing}")
            wanted = list(_COLUMNS) + [c for c in _OPTIONAL if c in table.column_names]
            self._cache = (file_index, table.select(wanted).to_pylist())
        return self._cache[1]

    def __getitem__(self, index: int) -> Sample:
        if not 0 <= index < self._length:
            raise IndexError(index)
        file_index = bisect.bisect_right(self._starts, index) - 1
        row = self._rows(file_index)[index - self._starts[file_index]]
        return to_sample("crello", index, self._stack(row), str(row.get("title") or row["id"]),
                         {"id": row["id"], "file": self.files[file_index].name})

    def _stack(self, row: dict[str, Any]) -> LayerStack:
        width, height = int(row["canvas_width"]), int(row["canvas_height"])
        geometry = [row[k] for k in ("left", "top", "width", "height")]
        fractions = max(max((abs(v) for v in values), default=0) for values in geometry) <= 1.5
        scale = 1.0
        if self.max_side and max(width, height) > self.max_side:
            scale = self.max_side / max(width, height)
        stack = LayerStack(max(1, round(width * scale)), max(1, round(height * scale)))
        for i, (left, top, w, h, opacity, image) in enumerate(zip(
                *geometry, row["opacity"], row["image"], strict=True)):
            if fractions:
                left, top, w, h = left * width, top * height, w * width, h * height
            data = image.get("bytes") if isinstance(image, dict) else image
            if not data:
                continue
            pixels = decode_png(data, f"crello {row['id']} element {i}")
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            if (pixels.shape[1], pixels.shape[0]) != size:
                pixels = np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.LANCZOS))
            stack.add(Layer(f"element {i}", pixels, offset=(round(left * scale),
                                                            round(top * scale)),
                            opacity=float(np.clip(opacity if opacity is not None else 1, 0, 1)),
                            kind="background" if i == 0 else "object"))
        if not stack.layers:
            raise InvalidInputError(f"crello document {row['id']} has no element images")
        return stack
