"""Layer-quality metrics (DESIGN.md 6), all offline and on NumPy arrays.

Conventions: RGBA arrays are straight alpha, float in [0, 1] or uint8 (converted), shape
(h, w, 4); masks and alphas are (h, w). Boxes are (x0, y0, x1, y1), right/bottom exclusive.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = ["alpha_soft_iou", "alpha_weighted_rgb_l1", "box_adherence", "box_iou",
           "composite_error", "match_layers", "psnr", "ssim"]


def _float(array: np.ndarray) -> np.ndarray:
    array = np.asarray(array)
    if array.dtype == np.uint8:
        return array.astype(np.float64) / 255.0
    if array.dtype == np.uint16:
        return array.astype(np.float64) / 65535.0
    return array.astype(np.float64)


def alpha_soft_iou(pred_alpha: np.ndarray, true_alpha: np.ndarray) -> float:
    """Soft IoU of two alpha mattes: sum(min) / sum(max); 1.0 when both are empty."""
    p, t = _float(pred_alpha), _float(true_alpha)
    union = np.maximum(p, t).sum()
    return 1.0 if union == 0 else float(np.minimum(p, t).sum() / union)


def alpha_weighted_rgb_l1(pred: np.ndarray, true: np.ndarray) -> float:
    """Mean |RGB difference| weighted by the larger of the two alphas (the Qwen-Image-Layered
    and Crello convention): colour under transparent pixels does not count."""
    p, t = _float(pred), _float(true)
    weight = np.maximum(p[..., 3], t[..., 3])
    total = weight.sum()
    if total == 0:
        return 0.0
    diff = np.abs(p[..., :3] - t[..., :3]).mean(axis=-1)
    return float((diff * weight).sum() / total)


def psnr(pred: np.ndarray, true: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB for images in [0, 1] (inf when identical)."""
    mse = float(np.mean((_float(pred) - _float(true)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(1.0 / mse)


def ssim(pred: np.ndarray, true: np.ndarray, window: int = 7) -> float:
    """Mean structural similarity (Wang et al. 2004) with a uniform window, averaged over
    channels; images in [0, 1]."""
    import cv2

    p, t = _float(pred), _float(true)
    if p.ndim == 2:
        p, t = p[..., None], t[..., None]
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    scores = []
    for channel in range(p.shape[2]):
        x, y = p[..., channel], t[..., channel]
        mean = lambda a: cv2.blur(a, (window, window))  # noqa: E731
        mx, my = mean(x), mean(y)
        vx, vy = mean(x * x) - mx * mx, mean(y * y) - my * my
        cov = mean(x * y) - mx * my
        value = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx * mx + my * my + c1) *
                                                          (vx + vy + c2))
        scores.append(value.mean())
    return float(np.mean(scores))


def composite_error(layers_composite: np.ndarray, image: np.ndarray) -> float:
    """Mean absolute RGB error between the recombined layers and the input image."""
    return float(np.abs(_float(layers_composite)[..., :3] - _float(image)[..., :3]).mean())


def box_iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """Intersection over union of two boxes."""
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return 0.0 if union <= 0 else inter / union


def box_adherence(alpha: np.ndarray, box: tuple[int, int, int, int]) -> float:
    """Share of a layer's alpha that lies inside the box it was asked to fill (1.0 = all)."""
    a = _float(alpha)
    total = a.sum()
    if total == 0:
        return 0.0
    x0, y0, x1, y1 = box
    return float(a[max(y0, 0):y1, max(x0, 0):x1].sum() / total)


def match_layers(pred: list[np.ndarray], true: list[np.ndarray],
                 order_weight: float = 0.1) -> list[tuple[int, int]]:
    """Pair predicted with ground-truth layers (canvas-sized RGBA) one to one.

    Cost = 1 - alpha soft IoU + alpha-weighted RGB L1 + ``order_weight`` x the difference of
    their relative depths (index / count), so that among similar layers the one at the same
    depth wins. Solved exactly with the Hungarian algorithm; unmatched layers are left out.
    """
    if not pred or not true:
        return []
    cost = np.zeros((len(pred), len(true)))
    for i, p in enumerate(pred):
        for j, t in enumerate(true):
            depth = abs(i / max(len(pred) - 1, 1) - j / max(len(true) - 1, 1))
            cost[i, j] = (1 - alpha_soft_iou(p[..., 3], t[..., 3]) +
                          alpha_weighted_rgb_l1(p, t) + order_weight * depth)
    rows, cols = linear_sum_assignment(cost)
    return [(int(r), int(c)) for r, c in zip(rows, cols, strict=True)]
