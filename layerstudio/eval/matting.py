"""Classical matting: the "generate RGB, then cut out" baseline that LayerDiffuse's paper
compares native transparency with.

``difference_key`` estimates the plain background from the image border (our generators and
base models paint objects on plain backgrounds) and each pixel's colour distance to it. Pixels
well inside the object (their whole 3x3 neighbourhood far from the background) are opaque; in
the band around them alpha is the pixel's distance relative to the nearest interior pixels'
(a mixed pixel C = a F + (1 - a) B lies a fraction a of the way from B to F), which keeps soft
edges soft. Colour is then un-mixed, ``F = (C - (1 - a) B) / a``, so edges do not keep a fringe
of the old background.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["difference_key"]


def difference_key(rgb: np.ndarray, low: float = 0.06, high: float = 0.25) -> np.ndarray:
    """RGB uint8 (H, W, 3) -> straight RGBA uint8 cut out from its plain background.

    ``low``: colour distance (in [0, 1] units, Euclidean over RGB) below which a pixel is
    background; ``high``: the distance beyond which a pixel with such neighbours is inside.
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"difference_key needs an (H, W, 3) RGB array, got {rgb.shape}")
    image = rgb.astype(np.float32) / 255
    border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
    background = np.median(border, axis=0)
    distance = np.linalg.norm(image - background, axis=-1).astype(np.float32)
    kernel = np.ones((3, 3), np.uint8)
    interior = cv2.erode((distance > high).astype(np.uint8), kernel).astype(bool)
    reference = cv2.dilate(np.where(interior, distance, 0), np.ones((5, 5), np.uint8))
    reference = np.maximum(reference, high)
    alpha = np.clip((distance - low) / (reference - low), 0, 1)
    alpha = np.where(interior, 1.0, alpha).astype(np.float32)
    alpha = cv2.morphologyEx(alpha, cv2.MORPH_OPEN, kernel)  # drop isolated specks
    safe = np.maximum(alpha, 1e-3)[..., None]
    colour = np.clip((image - (1 - alpha[..., None]) * background) / safe, 0, 1)
    rgba = np.concatenate([colour, alpha[..., None]], axis=-1)
    return np.rint(rgba * 255).astype(np.uint8)
