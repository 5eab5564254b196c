"""Metrics on inputs whose answers are known by hand."""

from __future__ import annotations

import numpy as np
import pytest

from layerstudio.eval import (
    alpha_soft_iou,
    alpha_weighted_rgb_l1,
    box_adherence,
    box_iou,
    composite_error,
    match_layers,
    psnr,
    ssim,
)


def _layer(alpha, rgb=(1.0, 0.0, 0.0)):
    alpha = np.asarray(alpha, float)
    return np.dstack([np.full(alpha.shape, c) for c in rgb] + [alpha])


def test_alpha_soft_iou():
    a = np.array([[1.0, 0.5], [0.0, 0.0]])
    b = np.array([[1.0, 1.0], [0.5, 0.0]])
    assert alpha_soft_iou(a, b) == pytest.approx((1 + 0.5 + 0) / (1 + 1 + 0.5))
    assert alpha_soft_iou(np.zeros((2, 2)), np.zeros((2, 2))) == 1.0
    assert alpha_soft_iou(np.full((2, 2), 255, np.uint8), np.ones((2, 2))) == 1.0


def test_alpha_weighted_rgb_l1_ignores_transparent_colour():
    p = _layer([[1, 0]], rgb=(1, 1, 1))
    t = _layer([[1, 0]], rgb=(0, 1, 1))
    t[0, 1, :3] = 0.3  # different colour where both are transparent: must not count
    assert alpha_weighted_rgb_l1(p, t) == pytest.approx(1 / 3)
    assert alpha_weighted_rgb_l1(p, p) == 0.0


def test_psnr_ssim_composite_error():
    image = np.random.default_rng(0).random((16, 16, 3))
    assert psnr(image, image) == float("inf")
    assert psnr(np.zeros((4, 4)), np.full((4, 4), 0.1)) == pytest.approx(20.0)
    assert ssim(image, image) == pytest.approx(1.0)
    assert ssim(image, 1 - image) < 0.2
    assert composite_error(np.ones((2, 2, 4)), np.zeros((2, 2, 3))) == 1.0


def test_boxes():
    assert box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    alpha = np.zeros((10, 10))
    alpha[2:4, 2:6] = 1.0
    assert box_adherence(alpha, (2, 2, 6, 4)) == 1.0
    assert box_adherence(alpha, (2, 2, 4, 4)) == 0.5
    assert box_adherence(np.zeros((3, 3)), (0, 0, 3, 3)) == 0.0


def test_match_layers_finds_the_permutation_and_prefers_same_depth():
    rng = np.random.default_rng(1)
    true = [_layer(rng.random((8, 8)) > 0.5, rgb=tuple(rng.random(3))) for _ in range(4)]
    pred = [true[2], true[0], true[3], true[1]]
    assert sorted(match_layers(pred, true)) == [(0, 2), (1, 0), (2, 3), (3, 1)]
    same = _layer(np.ones((4, 4)))
    assert match_layers([same, same], [same, same]) == [(0, 0), (1, 1)]
    assert match_layers([], true) == []


def test_difference_key_recovers_an_object_on_a_plain_background():
    from layerstudio.eval.matting import difference_key

    truth = np.zeros((48, 48, 4), np.uint8)
    truth[12:36, 12:36] = (200, 30, 30, 255)
    truth[11, 12:36] = (200, 30, 30, 128)  # a half-transparent edge row
    over_white = truth[..., :3] * (truth[..., 3:] / 255) + 255 * (1 - truth[..., 3:] / 255)
    cut = difference_key(np.rint(over_white).astype(np.uint8))
    assert cut.shape == (48, 48, 4) and cut.dtype == np.uint8
    assert alpha_soft_iou(cut[..., 3], truth[..., 3]) > 0.95
    assert abs(int(cut[11, 20, 3]) - 128) < 40  # the soft edge stays soft
    assert np.abs(cut[11, 20, :3].astype(int) - (200, 30, 30)).max() < 30  # un-mixed colour
    assert cut[0, 0, 3] == 0
    with pytest.raises(ValueError, match="RGB"):
        difference_key(truth)
