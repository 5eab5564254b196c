"""The document model: construction, validation and editing operations."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from layerstudio import BlendMode, InvalidInputError, Layer, LayerStack
from layerstudio.limits import set_max_pixels

from conftest import sample_stack


def test_public_names_are_importable():
    import layerstudio

    assert {"Layer", "LayerStack", "BlendMode"} <= set(layerstudio.__all__)


def test_from_image_accepts_pil_arrays_and_files(tmp_path):
    image = Image.new("RGB", (5, 3), (10, 20, 30))
    layer = Layer.from_image(image, name="rgb")
    assert layer.pixels.shape == (3, 5, 4) and (layer.pixels[..., 3] == 255).all()
    grey = Layer.from_image(np.zeros((2, 2), np.uint8), name="grey")
    assert grey.pixels.shape == (2, 2, 4)
    path = tmp_path / "x.png"
    Image.new("RGBA", (4, 4), (1, 2, 3, 4)).save(path)
    assert Layer.from_image(path).pixels[0, 0].tolist() == [1, 2, 3, 4]


@pytest.mark.parametrize(("pixels", "message"), [
    (np.full((2, 2, 4), np.nan, np.float32), "NaN"),
    (np.full((2, 2, 4), 1.5, np.float32), r"\[0, 1\]"),
    (np.full((2, 2, 4), -1.0, np.float64), r"\[-1, 1\]"),
    (np.zeros((2, 2, 5), np.uint8), "shape"),
    (np.zeros((2, 2, 4), np.int64), "dtype"),
    ("not pixels", "PIL image or numpy array"),
])
def test_bad_pixels_get_clear_errors(pixels, message):
    with pytest.raises(InvalidInputError, match=message):
        Layer("bad", pixels)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"name": ""}, "must not be empty"),
    ({"name": "a\x00b"}, "control characters"),
    ({"opacity": float("nan")}, "opacity"),
    ({"opacity": 2}, "opacity"),
    ({"blend_mode": "sparkle"}, "unknown blend mode"),
    ({"blend_mode": "pass-through"}, "only for groups"),
    ({"offset": "xy"}, "offset"),
    ({"provenance": {"x": object()}}, "JSON"),
])
def test_bad_fields_get_clear_errors(kwargs, message):
    args = {"name": "ok", "pixels": np.zeros((1, 1, 4), np.uint8), **kwargs}
    with pytest.raises(InvalidInputError, match=message):
        Layer(**args)


def test_size_limit_is_configurable():
    set_max_pixels(100)
    try:
        with pytest.raises(InvalidInputError, match="above the limit"):
            LayerStack(11, 10)
        with pytest.raises(InvalidInputError, match="above the limit"):
            Layer("big", np.zeros((11, 10, 4), np.uint8))
        LayerStack(10, 10)
    finally:
        set_max_pixels(None)


def test_editing_operations():
    stack = sample_stack()
    names = [layer.name for layer in stack]
    stack.rename("top", "renamed")
    assert stack[-1].name == "renamed"
    clone = stack.duplicate("hero")
    assert clone.name == "hero copy" and stack.index("hero copy") == stack.index("hero") + 1
    assert clone.pixels is not stack["hero"].pixels
    stack.move("renamed", 0)
    assert stack[0].name == "renamed"
    removed = stack.remove("hero copy")
    assert removed.name == "hero copy" and len(stack) == len(names)
    with pytest.raises(InvalidInputError, match="no layer named"):
        stack.remove("nope")
    with pytest.raises(InvalidInputError, match="outside"):
        stack.move(0, 99)
    stack.add(Layer("dup", np.zeros((1, 1, 4), np.uint8)))
    stack.add(Layer("dup", np.zeros((1, 1, 4), np.uint8)))
    with pytest.raises(InvalidInputError, match="use an index"):
        stack.index("dup")


@pytest.mark.parametrize("mode", [BlendMode.NORMAL, BlendMode.MULTIPLY])
def test_merge_down_preserves_appearance(mode):
    # As in Photoshop, the merged layer is the pair composited alone; so a non-normal upper
    # layer keeps its look only where the lower layer is opaque.
    stack = LayerStack(12, 10)
    rng = np.random.default_rng(0)
    stack.add(Layer("bg", rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)))
    lower = np.zeros((6, 6, 4), np.uint8)
    lower[...] = (200, 50, 50, 255)
    stack.add(Layer("lower", lower, offset=(1, 1)))
    stack.add(Layer("upper", rng.integers(0, 256, (5, 8, 4), dtype=np.uint8), offset=(4, 3),
                    blend_mode=mode, opacity=0.8))
    before = np.asarray(stack.composite(), int)
    merged = stack.merge_down("upper")
    assert len(stack) == 2 and merged.name == "lower"
    assert merged.bbox == (1, 1, 12, 8)
    region = (slice(None), slice(None)) if mode is BlendMode.NORMAL else (slice(1, 7),
                                                                          slice(1, 7))
    assert np.abs(np.asarray(stack.composite(), int) - before)[region].max() <= 1
    with pytest.raises(InvalidInputError, match="bottom layer"):
        stack.merge_down(0)


def test_cropping_to_content_keeps_canvas_position():
    pixels = np.zeros((10, 10, 4), np.uint8)
    pixels[3:5, 6:9] = 255
    layer = Layer("dot", pixels, offset=(2, 1))
    cropped = layer.cropped_to_content()
    assert cropped.pixels.shape == (2, 3, 4) and cropped.offset == (8, 4)
    empty = Layer("empty", np.zeros((4, 4, 4), np.uint8)).cropped_to_content()
    assert empty.pixels.size == 0 and empty.is_empty
    stack = LayerStack(12, 12, [layer])
    assert np.array_equal(np.asarray(stack.composite()),
                          np.asarray(stack.cropped_to_content().composite()))


def test_thumbnails_fit_and_keep_aspect():
    stack = LayerStack(400, 200, [Layer("bg", np.zeros((200, 400, 4), np.uint8))])
    assert stack.thumbnail(100).size == (100, 50)
    assert stack[0].thumbnail(64).size == (64, 32)


def test_float_and_16_bit_layers_composite_together():
    stack = LayerStack(2, 1)
    stack.add(Layer("f", np.array([[[0.5, 0.5, 0.5, 1.0]] * 2], np.float32)))
    stack.add(Layer("u16", np.array([[[65535, 0, 0, 32768]] * 2], np.uint16)))
    out = stack.composite_array()
    assert out[0, 0, 0] == pytest.approx(0.5 + 0.5 * 32768 / 65535, abs=1e-5)
