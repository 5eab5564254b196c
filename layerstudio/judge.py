"""tiny-judge: a small image classifier over the OpenMoji catalogue, our offline stand-in for
CLIP score. Given an image and a caption it says whether the image shows what the caption
names: the caption's emoji is found by its words, and the judge's answer is whether that emoji
is among its top-k guesses (top-1 by default).

It is a diffusers ``ModelMixin`` + ``ConfigMixin`` so it saves and loads like every other
shipped model (safetensors, config.json); the class names live in its config.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

__all__ = ["TinyJudge"]


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.SiLU(),
                         nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.SiLU(),
                         nn.MaxPool2d(2))


class TinyJudge(ModelMixin, ConfigMixin):
    """A four-stage CNN: 64 px RGB in [-1, 1] -> logits over ``class_names``."""

    @register_to_config
    def __init__(self, class_names: list[str] | tuple[str, ...] = (),
                 class_ids: list[str] | tuple[str, ...] = (),
                 channels: tuple[int, ...] = (32, 64, 128, 192), image_size: int = 64):
        super().__init__()
        stages, cin = [], 3
        for cout in channels:
            stages.append(_block(cin, cout))
            cin = cout
        self.features = nn.Sequential(*stages)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.1),
                                  nn.Linear(cin, max(1, len(class_names))))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits (batch, classes) for images (batch, 3, H, W) in [-1, 1]."""
        return self.head(self.features(images))

    def class_for_caption(self, caption: str) -> int | None:
        """The class whose name appears in ``caption`` (longest match wins), or None."""
        text = " " + " ".join(re.findall(r"[a-z0-9]+", caption.lower())) + " "
        best, best_len = None, 0
        for index, name in enumerate(self.config.class_names):
            if f" {name} " in text and len(name) > best_len:
                best, best_len = index, len(name)
        return best

    @torch.no_grad()
    def label_accuracy(self, images: torch.Tensor, labels: torch.Tensor,
                       top_k: int = 1, among: Sequence[int] | None = None) -> float:
        """Share of images whose class label (-1: none) is among the top-k guesses.

        ``among`` restricts the guesses to those classes: a forced choice within a model's
        vocabulary, as CLIP zero-shot accuracy is measured over a fixed label set."""
        self.eval()
        logits = self(images.to(self.device, self.dtype))
        if among is not None:
            allowed = torch.full_like(logits, float("-inf"))
            allowed[:, list(among)] = 0
            logits = logits + allowed
        top = logits.topk(min(top_k, logits.shape[1]), dim=1).indices.cpu()
        return float((top == labels.view(-1, 1)).any(dim=1).float().mean())

    def accuracy(self, images: torch.Tensor, captions: list[str], top_k: int = 1,
                 among: Sequence[int] | None = None) -> float:
        """Share of images whose caption's class is among the judge's top-k guesses
        (captions naming no known class count as misses)."""
        targets = [self.class_for_caption(caption) for caption in captions]
        labels = torch.tensor([-1 if t is None else t for t in targets])
        return self.label_accuracy(images, labels, top_k, among)
