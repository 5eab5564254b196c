"""Real-ESRGAN's compact upscaler (SRVGGNetCompact, the ``realesr-animevideov3`` models) as a
diffusers model, and its conversion from the released ncnn files.

The network (Wang et al., Real-ESRGAN, 2021; BSD-3-Clause) is a plain VGG-style stack at the
input's resolution: a 3x3 convolution to ``num_feat`` channels, ``num_conv`` more 3x3
convolutions, each followed by a PReLU, and a last convolution to 3 x ``upscale``^2 channels
that a pixel shuffle turns into the picture ``upscale`` times larger; the input, upscaled by
nearest neighbour, is added, so the network learns only the residual. The released x2 and x3
files are the x4 network followed by a bicubic resize (``output_scale``).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from .ncnn import NcnnLayer, read_ncnn

__all__ = ["CompactUpscaler", "from_ncnn"]


class CompactUpscaler(ModelMixin, ConfigMixin):
    """RGB in [0, 1] (B, 3, H, W) -> RGB (B, 3, H * s, W * s), s = ``output_scale`` (the
    network's own ``upscale`` unless the released model resizes after it)."""

    @register_to_config
    def __init__(self, num_feat: int = 64, num_conv: int = 16, upscale: int = 4,
                 output_scale: int | None = None):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, num_feat, 3, padding=1), nn.PReLU(num_feat)]
        for _ in range(num_conv):
            layers += [nn.Conv2d(num_feat, num_feat, 3, padding=1), nn.PReLU(num_feat)]
        layers.append(nn.Conv2d(num_feat, 3 * upscale * upscale, 3, padding=1))
        self.body = nn.Sequential(*layers)

    @property
    def scale(self) -> int:
        return int(self.config.output_scale or self.config.upscale)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        upscale = int(self.config.upscale)
        out = F.pixel_shuffle(self.body(images), upscale)
        out = out + F.interpolate(images, scale_factor=upscale, mode="nearest")
        if self.scale != upscale:
            out = F.interpolate(out, size=(images.shape[2] * self.scale,
                                           images.shape[3] * self.scale),
                                mode="bicubic", align_corners=False)
        return out


def _expect(layer: NcnnLayer, kind: str) -> NcnnLayer:
    if layer.kind != kind:
        raise ValueError(f"not a compact Real-ESRGAN model: expected {kind} at {layer.name}, "
                         f"found {layer.kind}")
    return layer


def from_ncnn(param: str | Path, weights: str | Path) -> CompactUpscaler:
    """A :class:`CompactUpscaler` holding the weights of a released
    ``realesr-animevideov3-x*`` ncnn model (float32). The layer sequence is checked, so
    another architecture is refused with the layer where it differs."""
    layers = [layer for layer in read_ncnn(param, weights)
              if layer.kind not in ("Input", "Split")]
    convs = [layer for layer in layers if layer.kind == "Convolution"]
    if len(convs) < 3:
        raise ValueError("not a compact Real-ESRGAN model: fewer than three convolutions")
    num_feat = int(convs[0].param(0))
    shuffle = _expect(layers[2 * len(convs) - 1], "PixelShuffle")
    upscale = int(shuffle.param(0, 1))
    resize = _expect(layers[2 * len(convs)], "Interp")
    if int(resize.param(0)) != 1 or resize.param(1) != upscale:
        raise ValueError(f"{resize.name}: expected a nearest x{upscale} upsampling of the input")
    _expect(layers[2 * len(convs) + 1], "BinaryOp")
    tail = layers[2 * len(convs) + 2:]
    output_scale = None
    if tail:
        after = _expect(tail[0], "Interp")
        output_scale = round(upscale * after.param(1))
    model = CompactUpscaler(num_feat, len(convs) - 2, upscale, output_scale)
    modules = list(model.body)
    ncnn_order = layers[:2 * len(convs) - 1]
    if len(ncnn_order) != len(modules):
        raise ValueError("not a compact Real-ESRGAN model: the conv/PReLU sequence differs")
    with torch.no_grad():
        for module, layer in zip(modules, ncnn_order, strict=True):
            if isinstance(module, nn.Conv2d):
                _expect(layer, "Convolution")
                module.weight.copy_(torch.from_numpy(layer.arrays["weight"]).reshape(
                    module.weight.shape))
                module.bias.copy_(torch.from_numpy(layer.arrays["bias"]))
            else:
                _expect(layer, "PReLU")
                module.weight.copy_(torch.from_numpy(layer.arrays["slope"]))
    return model.eval()
