"""Evaluation: metrics (DESIGN.md 6) and the `layerstudio eval` runner."""

from .layers_edit_dist import EditScores, layers_edit_distance, scores_at
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

__all__ = ["EditScores", "alpha_soft_iou", "alpha_weighted_rgb_l1", "box_adherence", "box_iou",
           "composite_error", "layers_edit_distance", "match_layers", "psnr", "scores_at", "ssim"]
