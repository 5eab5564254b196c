"""Evaluation: metrics (DESIGN.md 6) and the `layerstudio eval` runner."""

from .metrics import (
    alpha_soft_iou,
    alpha_weighted_rgb_l1,
    box_adherence,
    box_iou,
    composite_error,
    match_layers,
    psnr,
    ssim,
)

__all__ = ["alpha_soft_iou", "alpha_weighted_rgb_l1", "box_adherence", "box_iou",
           "composite_error", "match_layers", "psnr", "ssim"]
