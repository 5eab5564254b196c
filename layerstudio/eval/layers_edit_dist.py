"""LayerD's ``LayersEditDist`` (Suzuki et al., "LayerD: Decomposing Raster Graphic Designs into
Layers", ICCV 2025), re-implemented from the paper's description (DESIGN.md 6).

A decomposition is scored against the ground truth in three steps:

1. **Top-layer groups.** Layers that do not overlap are interchangeable in depth, so each stack
   is first reduced to a sequence of groups: repeatedly collect every remaining layer that no
   later remaining layer overlaps (alpha > 0 on a common pixel), composite it into one group,
   remove it; the groups, read back to front, are the sequence.
2. **Alignment.** The two sequences are aligned with dynamic time warping under the pair cost
   ``(RGB L1 + (1 - alpha soft IoU)) / 2``, where RGB L1 is the mean absolute straight-colour
   difference over the pixels the ground-truth layer covers (LayerD's convention) and the soft
   IoU is ``sum(min(a, b)) / sum(max(a, b))``. The scores are the means over the aligned pairs.
3. **Edits.** A decomposition that splits one true layer in two, or merges two, is not wrong
   in the same way as one that misses a layer: up to ``max_edits`` times, the merge of two
   adjacent groups (in the prediction or in the ground truth) that lowers the aligned cost most
   is applied, and the scores are reported after each edit. A merge that would not lower the
   cost is not taken: the edits stop there.

The result is one row per number of edits taken (0, 1, ...); a stack that stops early keeps
its last row for the higher edit counts, as LayerD's aggregation does
(:func:`scores_at` reads it that way).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from layerstudio.compositing import to_float_rgba
from layerstudio.document import LayerStack

__all__ = ["EditScores", "layers_edit_distance", "over", "pair_cost", "scores_at", "stack_layers",
           "top_layer_groups"]


@dataclass(frozen=True)
class EditScores:
    """Scores after ``edits`` merges: mean RGB L1, mean alpha soft IoU and mean pair cost
    over the aligned pairs (lower L1 and cost, higher IoU are better)."""

    edits: int
    rgb_l1: float
    alpha_iou: float
    cost: float

    def as_dict(self) -> dict[str, float]:
        return {"edits": self.edits, "rgb_l1": self.rgb_l1, "alpha_iou": self.alpha_iou,
                "cost": self.cost}


def stack_layers(stack: LayerStack) -> list[np.ndarray]:
    """Every visible layer of ``stack`` on the full canvas, bottom to top, as straight RGBA
    float (its opacity folded into alpha; blend modes and groups ignored, as in the metric)."""
    from layerstudio.blend import BlendMode

    return [LayerStack(stack.width, stack.height, [layer.copy(
        blend_mode=BlendMode.NORMAL, group=(), visible=True)]).composite_array()
        for layer in stack.layers if layer.visible]


def over(bottom: np.ndarray, top: np.ndarray) -> np.ndarray:
    """Straight-alpha ``top`` over ``bottom``."""
    a_top, a_bottom = top[..., 3:], bottom[..., 3:]
    alpha = a_top + a_bottom * (1 - a_top)
    colour = top[..., :3] * a_top + bottom[..., :3] * a_bottom * (1 - a_top)
    safe = np.where(alpha > 0, alpha, 1)
    return np.concatenate([np.where(alpha > 0, colour / safe, 0), alpha], axis=-1)


def top_layer_groups(alphas: list[np.ndarray]) -> list[list[int]]:
    """Indices of bottom-to-top layers grouped into sets of mutually non-overlapping
    "top layers", the groups back to front (step 1 of the module docstring)."""
    covered = [np.asarray(alpha) > 0 for alpha in alphas]
    remaining = list(range(len(covered)))
    groups = []
    while remaining:
        group = [index for position, index in enumerate(remaining)
                 if not any(np.logical_and(covered[index], covered[other]).any()
                            for other in remaining[position + 1:])]
        groups.append(group)
        remaining = [index for index in remaining if index not in group]
    return groups[::-1]


def _grouped(layers: list[np.ndarray]) -> list[np.ndarray]:
    groups = []
    for members in top_layer_groups([layer[..., 3] for layer in layers]):
        merged = layers[members[0]]
        for index in members[1:]:
            merged = over(merged, layers[index])
        groups.append(merged)
    return groups


def _rgb_l1(pred: np.ndarray, true: np.ndarray) -> float:
    covered = true[..., 3] > 0
    if not covered.any():
        return 0.0
    return float(np.abs(pred[..., :3] - true[..., :3]).mean(axis=-1)[covered].mean())


def _soft_iou(pred: np.ndarray, true: np.ndarray) -> float:
    union = np.maximum(pred[..., 3], true[..., 3]).sum()
    return 0.0 if union == 0 else float(np.minimum(pred[..., 3], true[..., 3]).sum() / union)


def pair_cost(pred: np.ndarray, true: np.ndarray) -> float:
    """LayerD's pair cost: (RGB L1 under the true layer + 1 - alpha soft IoU) / 2."""
    return (_rgb_l1(pred, true) + 1 - _soft_iou(pred, true)) / 2


def _warp(cost: np.ndarray) -> list[tuple[int, int]]:
    """The dynamic-time-warping path through a (n, m) cost matrix, from (0, 0) to the end."""
    n, m = cost.shape
    total = np.full((n + 1, m + 1), np.inf)
    total[0, 0] = 0.0
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            total[i, j] = cost[i - 1, j - 1] + min(total[i - 1, j], total[i, j - 1],
                                                   total[i - 1, j - 1])
    path, i, j = [], n, m
    while i > 0 and j > 0:
        path.append((i - 1, j - 1))
        steps = {(i - 1, j - 1): total[i - 1, j - 1], (i - 1, j): total[i - 1, j],
                 (i, j - 1): total[i, j - 1]}
        i, j = min(steps, key=steps.get)
    return path[::-1]


def _aligned(cost: np.ndarray) -> tuple[list[tuple[int, int]], float]:
    """The warp path through ``cost`` and the mean cost along it."""
    path = _warp(cost)
    return path, float(np.mean([cost[i, j] for i, j in path]))


def _scores(pred: list[np.ndarray], true: list[np.ndarray], cost: np.ndarray,
            edits: int) -> EditScores:
    path, mean_cost = _aligned(cost)
    pairs = [(pred[i], true[j]) for i, j in path]
    return EditScores(edits, float(np.mean([_rgb_l1(p, t) for p, t in pairs])),
                      float(np.mean([_soft_iou(p, t) for p, t in pairs])), mean_cost)


def _best_merge(pred: list[np.ndarray], true: list[np.ndarray], cost: np.ndarray,
                edit_truth: bool) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray] | None:
    """The merge of two adjacent groups (in ``pred``, or in ``true`` when allowed) whose
    alignment costs least, applied; None when no merge lowers the cost. Only the merged
    group's costs are computed anew."""
    best: tuple[float, str, int, np.ndarray] = (_aligned(cost)[1] - 1e-9, "", -1, cost)
    sides = [("pred", pred)] + ([("true", true)] if edit_truth else [])
    for side, groups in sides:
        for k in range(len(groups) - 1):
            merged = over(groups[k], groups[k + 1])
            if side == "pred":
                line = np.array([pair_cost(merged, t) for t in true])
                trial = np.vstack([cost[:k], line[None], cost[k + 2:]])
            else:
                line = np.array([pair_cost(p, merged) for p in pred])
                trial = np.hstack([cost[:, :k], line[:, None], cost[:, k + 2:]])
            mean_cost = _aligned(trial)[1]
            if mean_cost < best[0]:
                best = (mean_cost, side, k, trial)
    if best[2] < 0:
        return None
    _, side, k, trial = best
    groups = pred if side == "pred" else true
    merged_groups = [*groups[:k], over(groups[k], groups[k + 1]), *groups[k + 2:]]
    return (merged_groups, true, trial) if side == "pred" else (pred, merged_groups, trial)


def layers_edit_distance(pred: list[np.ndarray] | LayerStack,
                         true: list[np.ndarray] | LayerStack, max_edits: int = 5,
                         edit_truth: bool = True) -> list[EditScores]:
    """Score a decomposition: ``pred`` and ``true`` are stacks or bottom-to-top lists of
    canvas-sized straight RGBA layers (uint8 or float). Returns the scores after 0, 1, ...
    ``max_edits`` greedy merges (fewer rows when no merge helps); ``edit_truth`` allows
    merges on the ground-truth side too (LayerD's default)."""
    pred_layers = stack_layers(pred) if isinstance(pred, LayerStack) else \
        [to_float_rgba(np.asarray(p)) for p in pred]
    true_layers = stack_layers(true) if isinstance(true, LayerStack) else \
        [to_float_rgba(np.asarray(t)) for t in true]
    if not pred_layers or not true_layers:
        raise ValueError("both decompositions need at least one visible layer")
    shapes = {layer.shape for layer in pred_layers + true_layers}
    if len(shapes) != 1 or next(iter(shapes))[-1] != 4:
        raise ValueError(f"layers must be RGBA arrays of one canvas size, got {sorted(shapes)}")
    pred_groups, true_groups = _grouped(pred_layers), _grouped(true_layers)
    cost = np.array([[pair_cost(p, t) for t in true_groups] for p in pred_groups])
    rows = [_scores(pred_groups, true_groups, cost, 0)]
    for edits in range(1, max_edits + 1):
        merged = _best_merge(pred_groups, true_groups, cost, edit_truth)
        if merged is None:
            break
        pred_groups, true_groups, cost = merged
        rows.append(_scores(pred_groups, true_groups, cost, edits))
    return rows


def scores_at(rows: list[EditScores], edits: int) -> EditScores:
    """The scores allowing ``edits`` merges: the row after that many, or the last one when
    the merges stopped earlier."""
    return rows[min(edits, len(rows) - 1)]
