"""Pulling one object out with its shadow or glow (issue 19): the classical method."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from layerstudio.cli import main
from layerstudio.document import LayerStack
from layerstudio.errors import InvalidInputError
from layerstudio.pipelines.decompose_effects.classical import extract_with_effects
from layerstudio.studio import Studio


def _scene(size: int = 160, background: str = "gradient", effect: str = "shadow"):
    """A blue disc with a soft drop shadow (or a white glow) on a known background; returns
    the picture, the disc's alpha, the effect's alpha (outside the disc) and the background."""
    ys, xs = np.mgrid[:size, :size].astype(np.float32) / size
    if background == "gradient":
        bg = np.stack([0.55 + 0.3 * xs, 0.6 + 0.2 * ys, 0.5 + 0.1 * xs], -1)
    else:  # coloured diagonal stripes: a pattern whose hue, not brightness, says what it is
        stripe = (((xs + ys) * size / 12).astype(int) % 2)[..., None]
        bg = np.where(stripe, [0.85, 0.55, 0.75], [0.35, 0.7, 0.4])
    centre, radius = size * 0.45, size * 0.14
    disc = np.clip(radius + 0.5 - np.hypot(ys * size - centre, xs * size - centre), 0, 1)
    shift = ndimage.shift(disc, (size * 0.08, size * 0.1), order=1)
    amount = ndimage.gaussian_filter(shift, size / 80) * 0.55
    colour = 0.0 if effect == "shadow" else 1.0
    under = bg * (1 - amount[..., None]) + colour * amount[..., None]
    picture = disc[..., None] * np.array([0.15, 0.25, 0.9]) + (1 - disc[..., None]) * under
    return (picture.astype(np.float32), disc, amount * (1 - disc), bg.astype(np.float32))


def _box(alpha: np.ndarray, pad: int = 3) -> np.ndarray:
    ys, xs = np.nonzero(alpha > 0.5)
    box = np.zeros(alpha.shape, bool)
    box[ys.min() - pad:ys.max() + 1 + pad, xs.min() - pad:xs.max() + 1 + pad] = True
    return box


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.minimum(a, b).sum() / np.maximum(a, b).sum())


@pytest.mark.parametrize("background", ["gradient", "stripes"])
def test_shadow_leaves_with_the_object_and_the_layers_add_up(background):
    picture, disc, shadow, bg = _scene(background=background)
    out = extract_with_effects(picture, _box(disc))
    foreground = out.foreground()
    alpha = foreground[..., 3:]
    recomposed = foreground[..., :3] * alpha + (1 - alpha) * out.background
    assert np.abs(recomposed - picture).max() < 1e-4  # exact, not approximately
    assert _iou(out.object[..., 3], disc) > 0.85
    assert _iou(out.effect[..., 3], shadow) > 0.5
    assert (out.effect[..., :3][out.effect[..., 3] > 0.2] == 0).all()  # a shadow is black
    # under the shadow the background is lit again (away from the filled object hole)
    lit = (shadow > 0.3) & (ndimage.distance_transform_edt(disc < 0.01) > 4)
    assert lit.any() and np.abs(out.background[lit] - bg[lit]).mean() < 0.06


def test_glow_is_white_and_separate_layers_use_screen_and_multiply():
    picture, disc, glow, _ = _scene(effect="glow")
    out = extract_with_effects(picture, _box(disc))
    assert _iou(out.effect[..., 3], glow) > 0.5
    assert (out.effect[..., :3][out.effect[..., 3] > 0.2] == 1).all()
    stack = Studio(device="cpu").decompose(picture, method="effects-classical",
                                           box=_box_text(disc), separate_effects=True)
    assert [(layer.name, layer.blend_mode.value, layer.group) for layer in stack] == [
        ("background", "normal", ()), ("glow", "screen", ("object with effects",)),
        ("object", "normal", ("object with effects",))]
    assert stack.metadata["recomposition_psnr"] > 50


def _box_text(alpha: np.ndarray) -> str:
    ys, xs = np.nonzero(_box(alpha))
    return f"{xs.min()},{ys.min()},{xs.max() - xs.min() + 1},{ys.max() - ys.min() + 1}"


def test_large_picture_is_worked_at_a_smaller_size_and_still_adds_up():
    picture, disc, shadow, _ = _scene(size=900)
    out = extract_with_effects(picture, _box(disc, pad=10))
    foreground = out.foreground()
    alpha = foreground[..., 3:]
    recomposed = foreground[..., :3] * alpha + (1 - alpha) * out.background
    assert np.abs(recomposed - picture).max() < 1e-4
    assert _iou(out.effect[..., 3], shadow) > 0.5


def test_cli_writes_object_with_its_shadow_and_refuses_without_a_region(tmp_path, capsys):
    from PIL import Image

    picture, disc, _, _ = _scene()
    source = tmp_path / "photo.png"
    Image.fromarray(np.rint(picture * 255).astype(np.uint8)).save(source)
    out = tmp_path / "out.psd"
    assert main(["decompose", str(source), "--method", "effects-classical",
                 "--box", _box_text(disc), "-o", str(out)]) == 0
    stack = LayerStack.load(out)
    assert [layer.name for layer in stack] == ["background", "object with effects"]
    # the object layer reaches beyond the disc: it carries the shadow
    layer = stack.layers[1]
    assert layer.pixels.shape[0] * layer.pixels.shape[1] > 1.3 * (disc > 0.5).sum()
    assert main(["decompose", str(source), "--method", "effects-classical",
                 "-o", str(tmp_path / "x.psd")]) == 2
    assert "give a mask or a box" in capsys.readouterr().err
    assert main(["decompose", str(source), "--separate-effects",
                 "-o", str(tmp_path / "y.psd")]) == 2
    assert "separating effects is for methods 'effects-classical', 'effects'" in \
        capsys.readouterr().err


def test_a_box_over_the_whole_picture_is_refused():
    picture, _, _, _ = _scene(size=64)
    with pytest.raises(InvalidInputError, match="whole picture"):
        extract_with_effects(picture, np.ones((64, 64), bool))


def test_separate_effects_of_any_colour_composite_like_the_single_layer():
    """A learned model's shadow is dark grey, not black: multiply and screen still give what
    the one normal-mode layer gave."""
    from layerstudio.pipelines.decompose_effects.layers import Extraction, effects_stack

    rng = np.random.default_rng(3)
    background = rng.uniform(0.3, 0.9, (32, 32, 3)).astype(np.float32)
    effect = np.zeros((32, 32, 4), np.float32)
    effect[4:16, 4:28, :3] = background[4:16, 4:28] * 0.4  # darker in every channel
    effect[18:30, 4:28, :3] = background[18:30, 4:28] + (1 - background[18:30, 4:28]) * 0.5
    effect[4:30, 4:28, 3] = rng.uniform(0.2, 0.8, (26, 24))
    obj = np.zeros_like(effect)
    obj[10:20, 10:20] = (0.2, 0.3, 0.9, 1.0)
    parts = Extraction(background, obj, effect)
    single = effects_stack(parts).composite_array()
    apart = effects_stack(parts, separate=True)
    assert [layer.blend_mode.value for layer in apart] == ["normal", "multiply", "screen",
                                                           "normal"]
    assert np.abs(apart.composite_array() - single).max() < 2e-3


def test_a_batch_job_extracts_with_separate_effects(tmp_path):
    import json

    from PIL import Image

    from layerstudio.batch import run_batch

    picture, disc, _, _ = _scene()
    source = tmp_path / "photo.png"
    Image.fromarray(np.rint(picture * 255).astype(np.uint8)).save(source)
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(json.dumps({"task": "decompose", "image": str(source), "name": "cut",
                                "method": "effects-classical", "box": _box_text(disc),
                                "separate_effects": True}) + "\n")
    summary = run_batch(jobs, tmp_path / "out", ("psd",), progress=False)
    assert summary.failed == 0
    stack = LayerStack.load(tmp_path / "out" / "cut.psd")
    assert [(layer.name, layer.blend_mode.value) for layer in stack] == [
        ("background", "normal"), ("shadow", "multiply"), ("object", "normal")]


def test_two_boxes_peel_two_objects_each_with_its_shadow():
    """``box="a;b"``: the lower object is pulled out first and lies on top; the upper one comes
    out of the background the first left; the four layers still add up to the picture."""
    picture, disc, _, _ = _scene(size=160)
    moved = np.roll(disc, (-45, 56), axis=(0, 1))  # the same disc, up and right
    picture = np.where(moved[..., None] > 0.5, np.roll(picture, (-45, 56), axis=(0, 1)),
                       picture)
    boxes = ";".join(_box_text(alpha) for alpha in (disc, moved))
    stack = Studio(device="cpu").decompose(picture, method="effects-classical", box=boxes)
    assert [layer.name for layer in stack] == ["background", "object with effects 2",
                                               "object with effects"]
    upper, lower = stack.layers[1], stack.layers[2]
    assert upper.offset[1] < lower.offset[1]
    assert stack.metadata["recomposition_psnr"] > 60


def test_cli_extracts_with_the_shipped_layerdecomp_model(tmp_path, capsys):
    """``--method effects``: the shipped tiny-layerdecomp on a held-out scene, 4 steps."""
    from layerstudio.datasets.generate import generate

    sample = generate("effects", 2, size=128, split="heldout", seed=11)
    source = sample.stack.save(tmp_path / "photo.png")
    ys, xs = np.nonzero(sample.extras["mask"] > 127)
    box = f"{xs.min() - 2},{ys.min() - 2},{np.ptp(xs) + 5},{np.ptp(ys) + 5}"
    out = tmp_path / "out.psd"
    assert main(["decompose", str(source), "--method", "effects", "--box", box, "--steps", "4",
                 "--separate-effects", "-o", str(out)]) == 0
    assert "by effects, re-composing at 99.0 dB" in capsys.readouterr().out
    stack = LayerStack.load(out)
    assert stack.layers[0].name == "background" and stack.layers[-1].name == "object"
    assert {layer.group for layer in stack.layers[1:]} == {("object with effects",)}
