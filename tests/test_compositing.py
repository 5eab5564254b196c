"""The engine against an independent float64 reference written here from the W3C spec."""

from __future__ import annotations

import math
import zlib

import numpy as np
import pytest

from layerstudio import BlendMode, GroupInfo, Layer, LayerStack, compositing, kernels

from conftest import random_layer, sample_stack

# --- the reference: scalar formulas, straight from "Compositing and Blending Level 1" --------


def _ref_separable(mode: str, cb: float, cs: float) -> float:
    if mode == "normal":
        return cs
    if mode == "multiply":
        return cb * cs
    if mode == "screen":
        return cb + cs - cb * cs
    if mode == "overlay":
        return _ref_separable("hard-light", cs, cb)
    if mode == "darken":
        return min(cb, cs)
    if mode == "lighten":
        return max(cb, cs)
    if mode == "color-dodge":
        if cb == 0:
            return 0.0
        return 1.0 if cs == 1 else min(1.0, cb / (1 - cs))
    if mode == "color-burn":
        if cb == 1:
            return 1.0
        return 0.0 if cs == 0 else 1 - min(1.0, (1 - cb) / cs)
    if mode == "hard-light":
        return cb * 2 * cs if cs <= 0.5 else _ref_separable("screen", cb, 2 * cs - 1)
    if mode == "soft-light":
        if cs <= 0.5:
            return cb - (1 - 2 * cs) * cb * (1 - cb)
        d = ((16 * cb - 12) * cb + 4) * cb if cb <= 0.25 else math.sqrt(cb)
        return cb + (2 * cs - 1) * (d - cb)
    if mode == "difference":
        return abs(cb - cs)
    if mode == "exclusion":
        return cb + cs - 2 * cb * cs
    if mode == "linear-dodge":
        return min(1.0, cb + cs)
    if mode == "linear-burn":
        return max(0.0, cb + cs - 1)
    if mode == "subtract":
        return max(0.0, cb - cs)
    if mode == "linear-light":
        return min(1.0, max(0.0, cb + 2 * cs - 1))
    if mode == "pin-light":
        return min(cb, 2 * cs) if cs <= 0.5 else max(cb, 2 * cs - 1)
    raise KeyError(mode)


def _lum(c):
    return 0.3 * c[0] + 0.59 * c[1] + 0.11 * c[2]


def _clip(c):
    lum, n, x = _lum(c), min(c), max(c)
    if n < 0:
        c = [lum + (v - lum) * lum / (lum - n) for v in c]
    if x > 1:
        c = [lum + (v - lum) * (1 - lum) / (x - lum) for v in c]
    return c


def _set_lum(c, lum):
    d = lum - _lum(c)
    return _clip([v + d for v in c])


def _set_sat(c, s):
    order = sorted(range(3), key=lambda i: c[i])
    lo, mid, hi = order
    out = [0.0, 0.0, 0.0]
    if c[hi] > c[lo]:
        out[mid] = (c[mid] - c[lo]) * s / (c[hi] - c[lo])
        out[hi] = s
    return out


def _ref_non_separable(mode: str, cb, cs):
    sat = lambda c: max(c) - min(c)  # noqa: E731
    if mode == "hue":
        return _set_lum(_set_sat(cs, sat(cb)), _lum(cb))
    if mode == "saturation":
        return _set_lum(_set_sat(cb, sat(cs)), _lum(cb))
    if mode == "color":
        return _set_lum(cs, _lum(cb))
    return _set_lum(cb, _lum(cs))  # luminosity


def _ref_blend_pixel(mode: str, backdrop, source, opacity: float):
    """One straight-alpha RGBA pixel over another, returning premultiplied RGBA (float64)."""
    cb, ab = backdrop[:3], backdrop[3]
    cs, a_s = source[:3], source[3] * opacity
    if mode in ("hue", "saturation", "color", "luminosity"):
        mixed = _ref_non_separable(mode, list(cb), list(cs))
    else:
        mixed = [_ref_separable(mode, b, s) for b, s in zip(cb, cs, strict=True)]
    ao = a_s + ab * (1 - a_s)
    co = [a_s * (1 - ab) * s + a_s * ab * m + (1 - a_s) * ab * b
          for s, m, b in zip(cs, mixed, cb, strict=True)]
    return [*co, ao]


def reference_composite(stack: LayerStack) -> np.ndarray:
    """Float64 straight RGBA, pixel by pixel, layer by layer (top-level layers, no groups)."""
    h, w = stack.height, stack.width
    premul = np.zeros((h, w, 4))
    for layer in stack.layers:
        if not layer.visible:
            continue
        px = layer.pixels.astype(np.float64) / (255.0 if layer.pixels.dtype == np.uint8 else 1)
        for y in range(h):
            for x in range(w):
                ly, lx = y - layer.offset[1], x - layer.offset[0]
                if not (0 <= ly < layer.height and 0 <= lx < layer.width):
                    continue
                a = premul[y, x, 3]
                backdrop = [*(premul[y, x, :3] / a if a > 0 else [0, 0, 0]), a]
                premul[y, x] = _ref_blend_pixel(layer.blend_mode.value, backdrop,
                                                list(px[ly, lx]), layer.opacity)
    out = np.zeros_like(premul)
    a = premul[..., 3:4]
    out[..., :3] = np.divide(premul[..., :3], a, out=np.zeros_like(premul[..., :3]),
                             where=a > 0)
    out[..., 3:4] = a
    return out


REFERENCE_MODES = ["normal", "multiply", "screen", "overlay", "darken", "lighten",
                   "color-dodge", "color-burn", "hard-light", "soft-light", "difference",
                   "exclusion", "linear-dodge", "linear-burn", "subtract", "linear-light",
                   "pin-light", "hue", "saturation", "color", "luminosity"]


@pytest.mark.parametrize("mode", REFERENCE_MODES)
def test_random_stack_matches_float64_reference(mode):
    rng = np.random.default_rng(zlib.crc32(mode.encode()))
    stack = LayerStack(13, 11)
    for i in range(4):
        stack.add(random_layer(rng, f"l{i}", (13, 11),
                               blend_mode=BlendMode.NORMAL if i == 0 else mode,
                               opacity=float(rng.uniform(0.3, 1.0)), visible=i != 2 or
                               mode != "normal"))
    ours = stack.composite_array().astype(np.float64)
    ref = reference_composite(stack)
    # compare premultiplied: colour under alpha ~0 is meaningless
    diff = np.abs(ours[..., :3] * ours[..., 3:4] - ref[..., :3] * ref[..., 3:4])
    assert diff.max() < 2e-5
    assert np.abs(ours[..., 3] - ref[..., 3]).max() < 2e-6
    assert np.abs(np.asarray(stack.composite(), float) / 255 - ref)[ref[..., 3] > 0.05].max() \
        <= 0.5 / 255 + 1e-3


def test_uint8_output_is_correctly_rounded_against_reference():
    rng = np.random.default_rng(7)
    stack = LayerStack(31, 17)
    for i in range(6):
        stack.add(random_layer(rng, f"l{i}", (31, 17), opacity=float(rng.uniform(0.2, 1))))
    ref = reference_composite(stack) * 255
    ours = np.asarray(stack.composite(), np.float64)
    visible = ref[..., 3] >= 1
    assert np.abs(ours - ref)[visible].max() <= 0.5 + 1e-3


def test_strip_boundaries_do_not_change_the_result(monkeypatch):
    stack = sample_stack(3)
    whole = stack.composite_array()
    monkeypatch.setattr(compositing, "STRIP_PIXELS", 40 * 3)  # 3 rows per strip, many threads
    assert np.array_equal(stack.composite_array(), whole)


def test_numba_kernels_match_numpy_twins():
    rng = np.random.default_rng(1)
    for dtype, unit in ((np.uint8, 1 / 255), (np.uint16, 1 / 65535)):
        src = rng.integers(0, np.iinfo(dtype).max, (9, 7, 4), dtype=dtype)
        dst = rng.random((9, 7, 4), dtype=np.float32) * 0.5
        a, b = dst.copy(), dst.copy()
        kernels.over_straight(a, src, 0.7, unit)
        kernels.over_straight_numpy(b, src, 0.7, unit)
        assert np.allclose(a, b, atol=1e-6)
    buf = rng.random((5, 6, 4), dtype=np.float32)
    buf[..., :3] *= buf[..., 3:4]
    buf[0, 0] = 0
    o1, o2 = np.empty((5, 6, 4), np.uint8), np.empty((5, 6, 4), np.uint8)
    kernels.finish_uint8(buf, o1)
    kernels.finish_uint8_numpy(buf, o2)
    assert np.abs(o1.astype(int) - o2).max() <= 1


def test_layers_outside_and_larger_than_canvas():
    stack = LayerStack(8, 8)
    big = np.zeros((20, 20, 4), np.uint8)
    big[..., 0], big[..., 3] = 255, 255
    stack.add(Layer("big", big, offset=(-6, -6)))
    stack.add(Layer("away", np.full((4, 4, 4), 255, np.uint8), offset=(50, 50)))
    stack.add(Layer("left", np.full((4, 4, 4), 255, np.uint8), offset=(-10, 0)))
    out = np.asarray(stack.composite())
    assert (out == [255, 0, 0, 255]).all()


def test_hidden_layers_and_zero_opacity_do_not_render():
    stack = LayerStack(4, 4)
    stack.add(Layer("bg", np.full((4, 4, 4), 100, np.uint8)))
    stack.add(Layer("hidden", np.full((4, 4, 4), 255, np.uint8), visible=False))
    stack.add(Layer("clear", np.full((4, 4, 4), 255, np.uint8), opacity=0.0))
    assert (np.asarray(stack.composite()) == 100).all()


def _solid(value, alpha=255, size=(2, 2)):
    return np.array([[[*value, alpha]] * size[0]] * size[1], np.uint8)


def test_pass_through_group_equals_ungrouped_layers():
    flat, grouped = LayerStack(2, 2), LayerStack(2, 2)
    for stack, group in ((flat, ()), (grouped, ("G",))):
        stack.add(Layer("bg", _solid((200, 100, 50))))
        stack.add(Layer("m", _solid((128, 128, 255), 200), blend_mode="multiply", group=group))
        stack.add(Layer("s", _solid((10, 200, 10), 100), blend_mode="screen", group=group))
    assert np.array_equal(flat.composite_array(), grouped.composite_array())


def test_isolated_group_blends_its_children_first():
    # Inside an isolated group the multiply layer sees only the group's own content (none
    # below it there), so it behaves as normal; in pass-through it multiplies the background.
    def build(mode):
        stack = LayerStack(1, 1)
        stack.add(Layer("bg", _solid((200, 200, 200), size=(1, 1))))
        stack.add(Layer("m", _solid((100, 100, 100), size=(1, 1)), blend_mode="multiply",
                        group=("G",)))
        stack.set_group(("G",), GroupInfo(blend_mode=mode))
        return np.asarray(stack.composite())[0, 0]

    assert build("pass-through")[0] == round(200 * 100 / 255)
    assert build("normal")[0] == 100


def test_group_opacity_and_hidden_group():
    stack = LayerStack(1, 1)
    stack.add(Layer("bg", _solid((0, 0, 0), size=(1, 1))))
    stack.add(Layer("w", _solid((255, 255, 255), size=(1, 1)), group=("G",)))
    stack.set_group(("G",), GroupInfo(opacity=0.5))
    assert np.asarray(stack.composite())[0, 0, 0] == 128
    stack.set_group(("G",), GroupInfo(opacity=0.5, blend_mode="normal"))
    assert np.asarray(stack.composite())[0, 0, 0] == 128
    stack.set_group(("G",), GroupInfo(visible=False))
    assert np.asarray(stack.composite())[0, 0, 0] == 0
