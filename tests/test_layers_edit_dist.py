"""LayerD's LayersEditDist on hand-made stacks whose right answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from layerstudio.document import Layer, LayerStack
from layerstudio.eval.layers_edit_dist import layers_edit_distance, pair_cost, top_layer_groups

SIZE = 32


def _layer(colour, where) -> np.ndarray:
    layer = np.zeros((SIZE, SIZE, 4), np.uint8)
    layer[where] = (*colour, 255)
    return layer


def _disc(colour, columns=slice(0, SIZE)) -> np.ndarray:
    yy, xx = np.mgrid[:SIZE, :SIZE]
    inside = (yy - 17) ** 2 + (xx - 17) ** 2 <= 49
    limited = np.zeros_like(inside)
    limited[:, columns] = inside[:, columns]
    return _layer(colour, limited)


BACKGROUND = _layer((30, 60, 200), (slice(None), slice(None)))
RED = _layer((220, 30, 30), (slice(4, 16), slice(4, 16)))
GREEN = _disc((30, 200, 60))
YELLOW = _layer((240, 220, 20), (slice(26, 31), slice(1, 6)))
TRUTH = [BACKGROUND, RED, GREEN, YELLOW]


def test_identical_stacks_score_perfectly():
    first = layers_edit_distance(TRUTH, TRUTH)[0]
    assert (first.edits, first.rgb_l1, first.alpha_iou, first.cost) == (0, 0.0, 1.0, 0.0)


def test_non_overlapping_layers_group_and_overlapping_ones_do_not():
    alphas = [layer[..., 3] for layer in TRUTH]
    # back to front: the background, the red square, then the disc and the yellow square
    # (which overlap nothing above them) as one group
    assert top_layer_groups(alphas) == [[0], [1], [2, 3]]


def test_a_layer_cut_apart_is_the_same_decomposition():
    left, right = _disc((30, 200, 60), slice(0, 17)), _disc((30, 200, 60), slice(17, SIZE))
    first = layers_edit_distance([BACKGROUND, RED, left, right, YELLOW], TRUTH)[0]
    assert first.cost == 0.0 and first.alpha_iou == 1.0


def test_a_layer_split_in_overlapping_parts_is_repaired_by_one_merge():
    left, right = _disc((30, 200, 60), slice(0, 19)), _disc((30, 200, 60), slice(15, SIZE))
    rows = layers_edit_distance([BACKGROUND, RED, left, right, YELLOW], TRUTH)
    assert rows[0].alpha_iou < 1.0 and rows[0].cost > 0.05
    assert rows[1].edits == 1 and rows[1].cost == pytest.approx(0.0, abs=1e-6)
    assert rows[1].alpha_iou == pytest.approx(1.0)


def test_swapped_order_and_missing_layers_cost_something():
    swapped = layers_edit_distance([BACKGROUND, GREEN, RED, YELLOW], TRUTH)[0]
    assert swapped.cost > 0.05 and swapped.alpha_iou < 0.95
    missing = layers_edit_distance([BACKGROUND, RED, GREEN], TRUTH)
    assert missing[0].alpha_iou < 1.0
    # merging into the opaque background can make every alpha match; the colours still differ
    assert all(row.cost > 0.0 for row in missing)


def test_colour_errors_count_only_under_the_true_layer():
    wrong = RED.copy()
    wrong[..., :3] = (220, 30, 80)  # 50 levels off in blue, a third of the channels
    assert pair_cost(wrong / 255.0, RED / 255.0) == pytest.approx(50 / 255 / 3 / 2)
    hidden = RED.copy()
    hidden[RED[..., 3] == 0, :3] = 255  # colour where the layer is transparent: ignored
    assert pair_cost(hidden / 255.0, RED / 255.0) == 0.0


def test_stacks_with_offsets_and_bad_input():
    truth = LayerStack(SIZE, SIZE, [Layer("bg", BACKGROUND), Layer("red", RED[4:16, 4:16],
                                                                   offset=(4, 4))])
    assert layers_edit_distance(truth, [BACKGROUND, RED])[0].cost == pytest.approx(0, abs=1e-6)
    with pytest.raises(ValueError, match="one canvas size"):
        layers_edit_distance([BACKGROUND[:16]], TRUTH)
    with pytest.raises(ValueError, match="at least one"):
        layers_edit_distance([], TRUTH)
