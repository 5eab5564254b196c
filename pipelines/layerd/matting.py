"""The top-layer matting network of LayerD: a picture in, the alpha of its top layers out.

"Top layers" are the layers nothing else covers (LayerD, section 3.1): peeling them off and
filling the hole leaves a picture whose top layers are the next ones down, so one network,
applied again and again, takes the whole stack apart. The released model is a BiRefNet at
1024 px; ours is a small U-Net of the same job, fully convolutional, with a global-context
path at its bottleneck (whether a shape is on top depends on what lies around it, not only
on its pixels).
"""

from __future__ import annotations

from itertools import pairwise

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

__all__ = ["TopLayerMatting"]


def _groups(channels: int) -> int:
    return next(g for g in (8, 4, 2, 1) if channels % g == 0)


class _Block(nn.Module):
    """Two 3x3 convolutions with group norm and SiLU, and a residual path."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(_groups(cout), cout), nn.SiLU(),
            nn.Conv2d(cout, cout, 3, padding=1), nn.GroupNorm(_groups(cout), cout), nn.SiLU())
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.skip(x)


class TopLayerMatting(ModelMixin, ConfigMixin):
    """RGB in [-1, 1] (B, 3, H, W) -> top-layer alpha logits (B, 1, H, W). H and W need not
    be multiples of anything; ``image_size`` is the side it was trained at (the pipeline
    resizes pictures to it)."""

    @register_to_config
    def __init__(self, channels: tuple[int, ...] = (16, 32, 64, 128), image_size: int = 64):
        super().__init__()
        self.inlet = _Block(3, channels[0])
        self.down = nn.ModuleList(_Block(a, b) for a, b in pairwise(channels))
        deepest = channels[-1]
        self.context = nn.Sequential(nn.Linear(deepest, deepest), nn.SiLU(),
                                     nn.Linear(deepest, deepest))
        self.up = nn.ModuleList(_Block(deep + shallow, shallow)
                                for deep, shallow in pairwise(channels[::-1]))
        self.outlet = nn.Conv2d(channels[0], 1, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.inlet(images)
        skips = []
        for block in self.down:
            skips.append(x)
            x = block(F.avg_pool2d(x, 2, ceil_mode=True))
        x = x + self.context(x.mean(dim=(2, 3)))[:, :, None, None]
        for block in self.up:
            skip = skips.pop()
            x = F.interpolate(x, size=skip.shape[2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        return self.outlet(x)
