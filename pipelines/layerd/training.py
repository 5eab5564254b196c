"""Training ``tiny-layerd``'s top-layer matting network on procedural designs (LayerD 3.2).

Every training scene (``design`` in both held-out variants, and ``objects``) has exact layers.
Its layers fall into groups of "top layers" back to front
(:func:`~layerstudio.eval.layers_edit_dist.top_layer_groups`); for each group there is one
pair: the picture of that group and everything under it, and the alpha of the group (nothing
for the background alone, so the network learns when to stop). The network learns them with
binary cross-entropy plus a soft-IoU term (LayerD's BiRefNet is trained with both).

The pairs of ``scenes`` scenes are rendered once, at the start; batches then draw pairs and
flip / rotate them, as a pure function of (seed, step).
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from layerstudio.datasets import generate
from layerstudio.datasets.splits import VARIANTS
from layerstudio.document import LayerStack
from layerstudio.eval.layers_edit_dist import over, stack_layers, top_layer_groups
from layerstudio.train.tasks import Task, _grid

from .matting import TopLayerMatting
from .pipeline import LayerDPipeline

__all__ = ["TopLayerMattingTask", "peel_pairs", "training_scene"]

SIZE = 64


def peel_pairs(stack: LayerStack) -> list[tuple[np.ndarray, np.ndarray]]:
    """(picture, top-layer alpha) for every peel of ``stack``, the whole picture first and
    the background alone last: pictures float RGB flattened over white, alphas (H, W) in
    [0, 1]."""
    layers = stack_layers(stack)
    groups = top_layer_groups([layer[..., 3] for layer in layers])
    picture = np.zeros_like(layers[0])
    pairs = []
    for number, group in enumerate(groups):
        for index in group:
            picture = over(picture, layers[index])
        alpha = np.max([layers[i][..., 3] for i in group], axis=0) if number else \
            np.zeros(picture.shape[:2], np.float32)
        flat = picture[..., :3] * picture[..., 3:] + (1 - picture[..., 3:])
        pairs.append((flat, alpha))
    return pairs[::-1]


def training_scene(seed: int, index: int, split: str = "train", size: int = SIZE
                   ) -> LayerStack:
    """Scene ``index``: two of every three are ``design`` scenes (both held-out variants in
    turn), the third an ``objects`` scene."""
    kind = "objects" if index % 3 == 2 else "design"
    options = VARIANTS[kind][(index // 3) % len(VARIANTS[kind])]
    return generate(kind, index, seed=seed, size=size, split=split, **options).stack


class TopLayerMattingTask(Task):
    """The one stage: :class:`~.matting.TopLayerMatting` (option ``channels``) on the pairs
    of ``scenes`` training scenes (default 4000); ``init_from``: a run folder to continue."""

    def trainable(self) -> nn.Module:
        """A fresh network, or an exported one to train further (option ``init_from``: a run
        folder, relative to this run's; "." continues this run's previous stage)."""
        start = self.options.get("init_from")
        if start:
            return TopLayerMatting.from_pretrained(self.output / start / "matting",
                                                   dtype=torch.float32)
        torch.manual_seed(self.options.get("seed", 0))
        channels = tuple(self.options.get("channels", (16, 32, 64, 128)))
        return TopLayerMatting(channels=channels, image_size=SIZE)

    def _pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """All pairs as uint8 arrays (N, H, W, 3) and (N, H, W), rendered on first use."""
        if not hasattr(self, "_cache"):
            pictures, alphas = [], []
            for index in range(self.options.get("scenes", 4000)):
                for picture, alpha in peel_pairs(training_scene(self.options.get("seed", 0),
                                                                index)):
                    pictures.append(np.rint(picture * 255).astype(np.uint8))
                    alphas.append(np.rint(alpha * 255).astype(np.uint8))
            self._cache = (np.stack(pictures), np.stack(alphas))
        return self._cache

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        pictures, alphas = self._pairs()
        rng = np.random.default_rng([self.options.get("seed", 0), step])
        pick = rng.integers(0, len(pictures), self.stage.batch_size)
        images = torch.from_numpy(pictures[pick]).permute(0, 3, 1, 2).float() / 127.5 - 1
        targets = torch.from_numpy(alphas[pick]).float()[:, None] / 255
        turns, flip = int(rng.integers(4)), bool(rng.integers(2))
        images, targets = (torch.rot90(t, turns, dims=(2, 3)) for t in (images, targets))
        if flip:
            images, targets = images.flip(3), targets.flip(3)
        return images, targets

    def loss(self, module: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        images, targets = (t.to(self.device) for t in batch)
        logits = module(images)
        alpha = torch.sigmoid(logits)
        overlap = (alpha * targets).sum(dim=(1, 2, 3))
        union = (alpha + targets - alpha * targets).sum(dim=(1, 2, 3))
        soft_iou = 1 - (overlap + 1) / (union + 1)
        return F.binary_cross_entropy_with_logits(logits, targets) + soft_iou.mean()

    @torch.no_grad()
    def sample_grid(self, module: nn.Module, path) -> None:
        """Held-out pictures and the mattes predicted for them, four of each."""
        from PIL import Image

        module.eval()
        pairs = [peel_pairs(training_scene(1, index, split="heldout"))[0]
                 for index in range(4)]
        images = []
        for picture, _ in pairs:
            tensor = torch.from_numpy(picture.transpose(2, 0, 1).copy())[None].float() * 2 - 1
            matte = torch.sigmoid(module(tensor.to(self.device)))[0, 0].cpu().numpy()
            images.append(Image.fromarray(np.rint(picture * 255).astype(np.uint8)))
            images.append(Image.fromarray(np.rint(matte * 255).astype(np.uint8)))
        _grid(images, ["picture", "top layers"] * len(pairs), path)
        module.train()

    def export(self, module: nn.Module) -> None:
        LayerDPipeline(matting=copy.deepcopy(module).half()).save_pretrained(self.output)

    def exported(self) -> bool:
        return (self.output / "matting" / "config.json").is_file()
