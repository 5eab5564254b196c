"""Moving, scaling, turning and flipping layers: API, undoable UI session, CLI."""

from __future__ import annotations

import numpy as np
import pytest

from layerstudio import InvalidInputError, Layer, LayerStack
from layerstudio.adjustments import Adjustment
from layerstudio.cli import main


def _marked() -> Layer:
    """A 4x6 opaque layer with a red top-left pixel, at (10, 20)."""
    pixels = np.zeros((4, 6, 4), np.uint8)
    pixels[..., 3] = 255
    pixels[0, 0] = (255, 0, 0, 255)
    return Layer("a", pixels, offset=(10, 20))


def test_turns_and_flips_only_rearrange_pixels_about_the_centre():
    layer = _marked()
    turned = layer.rotated(1)
    assert turned.pixels.shape == (6, 4, 4) and turned.offset == (11, 19)
    assert tuple(turned.pixels[0, -1]) == (255, 0, 0, 255)  # clockwise: top-left -> top-right
    assert np.array_equal(turned.rotated(3).pixels, layer.pixels)
    assert turned.rotated(3).offset == layer.offset
    assert np.array_equal(layer.rotated(2).pixels, layer.pixels[::-1, ::-1])
    flipped = layer.flipped()
    assert flipped.offset == layer.offset and tuple(flipped.pixels[0, -1]) == (255, 0, 0, 255)
    assert np.array_equal(layer.flipped(horizontal=False).pixels, layer.pixels[::-1])
    assert layer.pixels[0, 0, 0] == 255  # the original is untouched


def test_scaling_keeps_the_centre_and_clean_edges():
    layer = _marked()
    double = layer.scaled(2.0)
    assert double.pixels.shape == (8, 12, 4) and double.offset == (7, 18)
    soft = np.zeros((8, 8, 4), np.uint8)
    soft[..., :3], soft[..., 3] = 200, 128
    half = Layer("soft", soft).scaled(0.5)  # premultiplied resampling: no dark fringe
    assert half.pixels.shape == (4, 4, 4) and (half.pixels[..., :3] == 200).all()
    with pytest.raises(InvalidInputError, match="scale must be"):
        layer.scaled(0)
    with pytest.raises(InvalidInputError, match="above the limit"):
        layer.scaled(64).scaled(64).scaled(64)


def test_stack_transform_combines_and_checks():
    stack = LayerStack(64, 64, layers=[_marked()])
    moved = stack.transform("a", scale=2.0, rotate=90, flip="horizontal", move=(1, -1))
    assert stack["a"] is moved and moved.pixels.shape == (12, 8, 4)
    assert stack.transform("a", to=(0, 0)).offset == (0, 0)
    for bad, message in (({"rotate": 45}, "multiple of 90"), ({"flip": "diagonal"}, "flip"),
                         ({"move": (1, 1), "to": (2, 2)}, "not both")):
        with pytest.raises(InvalidInputError, match=message):
            stack.transform("a", **bad)
    stack.add(Layer("invert", np.full((64, 64, 4), 255, np.uint8), kind="adjustment",
                    adjustment=Adjustment("invert", b"8BIMnvrt\x00\x00\x00\x00")))
    with pytest.raises(InvalidInputError, match="adjustment layer"):
        stack.transform("invert", move=(1, 1))


def test_ui_session_transforms_are_undoable():
    pytest.importorskip("gradio")
    from layerstudio.ui.session import Session

    session = Session()
    session.replace(LayerStack(64, 64, layers=[_marked()]))
    session.transform(to=(3, 4))
    session.transform(rotate=90)
    session.transform(to=session.require()["a"].offset)  # unchanged: no undo step
    assert session.require()["a"].offset == (4, 3) and len(session.history) == 2
    session.undo()
    assert session.require()["a"].offset == (3, 4)
    session.undo()
    assert session.require()["a"].offset == (10, 20)


def test_cli_transform(tmp_path, capsys):
    source = LayerStack(64, 64, layers=[_marked(), Layer("hidden", np.full(
        (2, 2, 4), 9, np.uint8), visible=False)]).save(tmp_path / "in.psd")
    out = tmp_path / "out.psd"
    assert main(["transform", str(source), "-o", str(out), "--scale", "200", "--rotate",
                 "90", "--move", "5,-5"]) == 0
    assert "layer 'a' now 8x12 at" in capsys.readouterr().out  # the top *visible* layer
    moved = LayerStack.load(out)["a"]
    assert moved.pixels.shape == (12, 8, 4)
    with pytest.raises(SystemExit) as refused:  # argparse: usage and exit status 2
        main(["transform", str(source), "-o", str(out), "--layer", "a", "--rotate", "45"])
    assert refused.value.code == 2
    assert main(["transform", str(source), "-o", str(out), "--layer", "a", "--scale",
                 "0"]) == 2
    assert "scale must be in (0, 64]" in capsys.readouterr().err
