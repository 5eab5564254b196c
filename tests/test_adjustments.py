"""Adjustment layers: rendered on the backdrop through their coverage, kept on every format."""

from __future__ import annotations

import numpy as np
import pytest

from layerstudio import InvalidInputError, Layer, LayerStack
from layerstudio.adjustments import Adjustment
from layerstudio.blend import BlendMode

INVERT = Adjustment("invert", b"8BIMnvrt\x00\x00\x00\x00")
"""Photoshop's invert block: tag and an empty payload."""


def _document(coverage_left_half: bool = True) -> LayerStack:
    stack = LayerStack(8, 4)
    red = np.zeros((4, 8, 4), np.uint8)
    red[..., 0], red[..., 3] = 200, 255
    red[:, 6:, 3] = 0  # a transparent strip the adjustment must not make visible
    stack.add(Layer("red", red, kind="background"))
    coverage = np.zeros((4, 8, 4), np.uint8)
    coverage[..., 3] = 255
    if coverage_left_half:
        coverage[:, 4:, 3] = 0
    stack.add(Layer("Invert 1", coverage, kind="adjustment", adjustment=INVERT))
    return stack


def test_an_adjustment_recolours_only_where_it_covers_and_keeps_alpha():
    out = _document().composite_array()
    np.testing.assert_allclose(out[:, :4, :3], [[[55 / 255, 1.0, 1.0]] * 4] * 4, atol=1e-6)
    np.testing.assert_allclose(out[:, 4:6, :3], [[[200 / 255, 0, 0]] * 2] * 4, atol=1e-6)
    assert (out[:, 6:, 3] == 0).all() and (out[:, :6, 3] == 1).all()


def test_opacity_and_blend_mode_apply_to_the_adjusted_colour():
    stack = _document(coverage_left_half=False)
    stack[1].opacity = 0.5
    half = stack.composite_array()[0, 0, :3]
    np.testing.assert_allclose(half, [(200 + 55) / 2 / 255, 0.5, 0.5], atol=1e-6)
    stack[1].opacity, stack[1].blend_mode = 1.0, BlendMode.DARKEN
    np.testing.assert_allclose(stack.composite_array()[0, 0, :3], [55 / 255, 0, 0], atol=1e-6)


@pytest.mark.parametrize("suffix", [".psd", ".psb", ".ora", ".zip"])
def test_adjustment_layers_round_trip(tmp_path, suffix):
    stack = _document()
    again = LayerStack.load(stack.save(tmp_path / f"doc{suffix}"))
    assert again["Invert 1"].adjustment == INVERT
    assert again["Invert 1"].visible and again["Invert 1"].kind == "adjustment"
    np.testing.assert_allclose(again.composite_array(), stack.composite_array(), atol=1e-6)


def test_another_reader_sees_an_invert_adjustment_layer(tmp_path):
    from psd_tools import PSDImage

    _document().save(tmp_path / "doc.psd")
    layers = list(PSDImage.open(tmp_path / "doc.psd"))
    assert [layer.kind for layer in layers] == ["pixel", "invert"]
    assert layers[1].has_mask()  # the half coverage travels as the layer mask


def test_merging_into_an_adjustment_is_refused_but_merging_one_down_applies_it():
    stack = _document()
    stack.add(Layer("dot", np.full((1, 1, 4), 255, np.uint8)))
    with pytest.raises(InvalidInputError, match="adjustment layer"):
        stack.merge_down("dot")
    before = stack.composite_array()
    stack.merge_down("Invert 1")
    assert [layer.name for layer in stack] == ["red", "dot"]
    np.testing.assert_allclose(stack.composite_array(), before, atol=1 / 255)


def test_damaged_or_mismatched_blocks_are_refused():
    with pytest.raises(InvalidInputError, match="damaged"):
        Adjustment("invert", b"8BIMnvrt\x00\x00\x01\x00" + b"\x00" * 4)
    with pytest.raises(InvalidInputError, match="does not define a levels"):
        Adjustment("levels", INVERT.block)
    with pytest.raises(InvalidInputError, match="base64"):
        Adjustment.from_json({"kind": "invert", "psd_block": "%%%"}, "test")
