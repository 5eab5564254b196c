"""What lies under a removed layer: a smooth surface fitted to what is still visible, or
inpainting where the visible part is not smooth.

Designs mostly sit on flat colours and linear or radial gradients: a quadratic surface per
channel, fitted by least squares to the visible pixels, reproduces them exactly under the
removed layer (LayerD's "palette snap" serves the same purpose). When the fit leaves a visible
residual (a photo, a texture), OpenCV's Telea inpainting fills the hole instead, after the
hole is grown by ~1.5% of the picture (LayerD's dilation) so that anti-aliased edge colours do
not leak in; large pictures are inpainted at <= 512 px and scaled back.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["fill_under", "fitted_surface"]

MAX_FIT_SAMPLES = 20_000
MAX_INPAINT_SIDE = 512


def _terms(ys: np.ndarray, xs: np.ndarray, height: int, width: int) -> np.ndarray:
    y, x = ys / max(height - 1, 1), xs / max(width - 1, 1)
    return np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], axis=1)


def fitted_surface(rgb: np.ndarray, known: np.ndarray, hole: np.ndarray,
             max_residual: float) -> np.ndarray | None:
    """The quadratic fit of the ``known`` pixels evaluated on the ``hole`` pixels (n, 3), or
    None when it misses the known pixels by more than ``max_residual`` (RMS)."""
    ys, xs = np.nonzero(known)
    if ys.size < 6:
        return None
    if ys.size > MAX_FIT_SAMPLES:
        pick = np.random.default_rng(0).choice(ys.size, MAX_FIT_SAMPLES, replace=False)
        ys, xs = ys[pick], xs[pick]
    height, width = known.shape
    terms = _terms(ys.astype(np.float64), xs.astype(np.float64), height, width)
    values = rgb[ys, xs].astype(np.float64)
    coefficients, *_ = np.linalg.lstsq(terms, values, rcond=None)
    if np.sqrt(np.mean((terms @ coefficients - values) ** 2)) > max_residual:
        return None
    hy, hx = np.nonzero(hole)
    return np.clip(_terms(hy.astype(np.float64), hx.astype(np.float64), height, width)
                   @ coefficients, 0, 1).astype(np.float32)


def _inpainted(rgb: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Telea inpainting of everything outside ``known``, at <= 512 px."""
    import cv2

    height, width = known.shape
    grow = max(1, round(0.015 * max(height, width)))
    unknown = ndimage.binary_dilation(~known, iterations=grow) if known.any() else ~known
    scale = min(1.0, MAX_INPAINT_SIDE / max(height, width))
    image = np.rint(rgb * 255).astype(np.uint8)
    mask = unknown.astype(np.uint8) * 255
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        mask = (cv2.resize(mask, size, interpolation=cv2.INTER_AREA) > 0).astype(np.uint8) * 255
    filled = cv2.inpaint(image, mask, 3, cv2.INPAINT_TELEA)
    if scale < 1.0:
        filled = cv2.resize(filled, (width, height), interpolation=cv2.INTER_LINEAR)
    return filled.astype(np.float32) / 255


def fill_under(rgb: np.ndarray, known: np.ndarray, hole: np.ndarray,
               max_residual: float = 2.0 / 255) -> tuple[np.ndarray, str]:
    """``rgb`` (float [0, 1]) with the ``hole`` pixels replaced by an estimate from the
    ``known`` pixels; returns it and how it was made ("surface" or "inpainted")."""
    result = rgb.copy()
    if not hole.any():
        return result, "surface"
    inner = ndimage.binary_erosion(known, iterations=1)
    surface = fitted_surface(rgb, inner if inner.sum() >= 6 else known, hole, max_residual)
    if surface is not None:
        result[hole] = surface
        return result, "surface"
    result[hole] = _inpainted(rgb, known)[hole]
    return result, "inpainted"
