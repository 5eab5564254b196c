"""``pad_rgb``: fill the colour under transparent pixels from the nearest visible colours.

Before a transparent image is encoded, LayerDiffuse replaces the (meaningless) colour under
alpha = 0 with a smooth extension of the visible colour, so the transparent encoder never sees
arbitrary junk there. The method is a coarse-to-fine pyramid of premultiplied colour: shrink
colour * alpha and alpha by 1.2 per level with area averaging down to 1 px, start from the
alpha-weighted mean colour, and at each finer level upsample the estimate and keep the level's
own premultiplied colour where it is opaque: ``fg = c + fg * (1 - a)``. Area-averaging pyramids
approximate a large Gaussian, so each transparent pixel ends up near the colour of the closest
visible pixels.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["pad_rgb"]

SHRINK = 1.2


def _pyramid(premultiplied: np.ndarray, alpha: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Levels from 1 px (first) to full size (last)."""
    levels = [(premultiplied, alpha)]
    while min(alpha.shape[:2]) > 1:
        h, w = alpha.shape[:2]
        size = (max(1, int(w / SHRINK)), max(1, int(h / SHRINK)))
        premultiplied = cv2.resize(premultiplied, size, interpolation=cv2.INTER_AREA)
        alpha = cv2.resize(alpha, size, interpolation=cv2.INTER_AREA).reshape(size[1], size[0], 1)
        levels.append((premultiplied, alpha))
    return levels[::-1]


def pad_rgb(rgba: np.ndarray) -> np.ndarray:
    """Straight RGBA uint8 (H, W, 4) -> padded RGB float32 (H, W, 3) in [0, 1].

    Visible pixels keep their colour (exactly where alpha is 1; blended towards the padding
    where alpha is partial, as the premultiplied formula implies); fully transparent ones get
    the colour of their surroundings. An all-transparent image pads to black.
    """
    if rgba.ndim != 3 or rgba.shape[2] != 4:
        raise ValueError(f"pad_rgb needs an (H, W, 4) RGBA array, got shape {rgba.shape}")
    pixels = rgba.astype(np.float32) / 255.0
    alpha = pixels[..., 3:]
    levels = _pyramid(pixels[..., :3] * alpha, alpha)
    colour, weight = levels[0]
    fill = colour.sum(axis=(0, 1), keepdims=True) / max(float(weight.sum()), 1e-8)
    for colour, weight in levels:
        h, w = weight.shape[:2]
        fill = cv2.resize(fill, (w, h), interpolation=cv2.INTER_LINEAR).reshape(h, w, 3)
        fill = colour + fill * (1.0 - weight)
    return fill.astype(np.float32)
