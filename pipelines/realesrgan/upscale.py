"""Upscaling one RGBA layer with the compact Real-ESRGAN network, alpha-aware and tiled.

Colour and alpha go through the network separately, as Real-ESRGAN's own inference does with
transparent images: the alpha as a grey picture (kept at 0 more than 2 px from the layer and at
1 more than 2 px inside it, so ringing leaves no haze), the colour as straight RGB. Where a pixel is
fully transparent its colour means nothing (often black, sometimes whatever the painter left
there), so before upscaling it takes the colour of the nearest visible pixel: the network then
never sees an edge that is not in the picture, and no background colour bleeds into the
upscaled object's rim. Large layers run in overlapping tiles (the network's receptive field is
35 px, so a 16 px overlap leaves no seams) to bound memory. Scale 2 is the x4 network followed
by a 2x2 box average (the released x2 file is the same network with a bicubic resize).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from scipy import ndimage

from .compact import CompactUpscaler

__all__ = ["SCALES", "upscale_rgba"]

SCALES = (2, 4)
TILE = 192
OVERLAP = 16


@torch.no_grad()
def _tiled(model: CompactUpscaler, image: np.ndarray, tile: int, overlap: int,
           on_tile: Callable[[], None] | None) -> np.ndarray:
    """(H, W, 3) float in [0, 1] -> (H * 4, W * 4, 3) through the network, tile by tile."""
    parameter = next(model.parameters())
    factor = int(model.config.upscale)
    height, width = image.shape[:2]
    out = np.zeros((height * factor, width * factor, 3), np.float32)
    for y0 in range(0, height, tile):
        for x0 in range(0, width, tile):
            y1, x1 = min(y0 + tile, height), min(x0 + tile, width)
            ya, xa = max(y0 - overlap, 0), max(x0 - overlap, 0)
            yb, xb = min(y1 + overlap, height), min(x1 + overlap, width)
            patch = torch.from_numpy(np.ascontiguousarray(image[ya:yb, xa:xb].transpose(2, 0, 1)))
            made = model(patch[None].to(parameter.device, parameter.dtype))[0]
            made = made.float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()
            out[y0 * factor:y1 * factor, x0 * factor:x1 * factor] = made[
                (y0 - ya) * factor:(y1 - ya) * factor, (x0 - xa) * factor:(x1 - xa) * factor]
            if on_tile is not None:
                on_tile()
    return out


def _box_half(image: np.ndarray) -> np.ndarray:
    """Average 2x2 blocks: (2H, 2W, C) -> (H, W, C)."""
    height, width = image.shape[0] // 2, image.shape[1] // 2
    return image.reshape(height, 2, width, 2, -1).mean(axis=(1, 3))


def _bled(rgba: np.ndarray) -> np.ndarray:
    """Straight RGB with every fully transparent pixel given its nearest visible colour."""
    rgb = rgba[..., :3]
    hidden = rgba[..., 3] <= 0
    if not hidden.any() or hidden.all():
        return rgb
    _, (rows, cols) = ndimage.distance_transform_edt(hidden, return_indices=True)
    return rgb[rows, cols]


def upscale_rgba(model: CompactUpscaler, rgba: np.ndarray, scale: int = 4, tile: int = TILE,
                 overlap: int = OVERLAP, on_tile: Callable[[], None] | None = None
                 ) -> np.ndarray:
    """Straight RGBA float (H, W, 4) in [0, 1] -> (H * scale, W * scale, 4). ``on_tile`` is
    called after every tile the network runs (progress)."""
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale}")
    if int(model.config.upscale) != 4 or model.scale != 4:
        raise ValueError("upscale_rgba needs the x4 network")
    rgba = np.asarray(rgba, np.float32)
    colour = _tiled(model, _bled(rgba), tile, overlap, on_tile)
    alpha = rgba[..., 3]
    if alpha.min() >= 1:
        big_alpha = np.ones(colour.shape[:2], np.float32)
    elif alpha.max() <= 0:
        big_alpha = np.zeros(colour.shape[:2], np.float32)
    else:
        grey = np.repeat(alpha[..., None], 3, axis=-1)
        big_alpha = _tiled(model, grey, tile, overlap, on_tile).mean(-1)
        # no faint ringing far from the layer, no holes deep inside it
        near = np.kron(ndimage.binary_dilation(alpha > 0, iterations=2), np.ones((4, 4)))
        deep = np.kron(ndimage.binary_erosion(alpha >= 1, iterations=2), np.ones((4, 4)))
        big_alpha = np.where(deep > 0, 1.0, np.where(near > 0, big_alpha, 0.0))
    result = np.concatenate([colour, big_alpha[..., None]], -1)
    return _box_half(result) if scale == 2 else result
