"""Our PSDs in real editors: GIMP 2.10 (batch Script-Fu) and ImageMagick's identify.

Skipped, with the reason shown, only where the editor is not installed (.ci/setup installs
both). GIMP's output is checked from the files the script writes, not from its exit code.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from layerstudio import BlendMode, Layer, LayerStack

from conftest import sample_stack

GIMP = shutil.which("gimp-console-2.10")
IDENTIFY = shutil.which("identify")
PROBE = Path(__file__).with_name("editors") / "gimp_probe.scm"

# GIMP 2.10's layer-mode enum values for the modes its PSD loader maps ours to.
GIMP_MODES = {
    BlendMode.NORMAL: 28, BlendMode.MULTIPLY: 30, BlendMode.SCREEN: 31, BlendMode.OVERLAY: 23,
    BlendMode.DARKEN: 35, BlendMode.LIGHTEN: 36, BlendMode.COLOR_DODGE: 42,
    BlendMode.COLOR_BURN: 43, BlendMode.HARD_LIGHT: 44, BlendMode.SOFT_LIGHT: 45,
    BlendMode.DIFFERENCE: 32, BlendMode.EXCLUSION: 52, BlendMode.LINEAR_DODGE: 33,
    BlendMode.LINEAR_BURN: 53, BlendMode.VIVID_LIGHT: 48, BlendMode.LINEAR_LIGHT: 50,
    BlendMode.PIN_LIGHT: 49, BlendMode.HARD_MIX: 51, BlendMode.SUBTRACT: 34,
    BlendMode.DIVIDE: 41, BlendMode.DARKER_COLOR: 54, BlendMode.LIGHTER_COLOR: 55,
    BlendMode.HUE: 24, BlendMode.SATURATION: 25, BlendMode.COLOR: 26,
    BlendMode.LUMINOSITY: 27, BlendMode.PASS_THROUGH: 61,
}

# Modes GIMP 2.10 computes with the same perceptual-sRGB formula as Photoshop and W3C. The
# rest it blends in linear light (dodge, burn, add, subtract, divide, linear light), with its
# own soft-light curve, or in LCH / luma (hue, saturation, color, luminosity, darker/lighter
# colour); those differ from Photoshop by design, and LayerStudio follows Photoshop (see
# test_photoshop_fixtures.py).
GIMP_SAME_FORMULA = [BlendMode.NORMAL, BlendMode.MULTIPLY, BlendMode.SCREEN, BlendMode.OVERLAY,
                     BlendMode.DARKEN, BlendMode.LIGHTEN, BlendMode.HARD_LIGHT,
                     BlendMode.DIFFERENCE, BlendMode.EXCLUSION, BlendMode.VIVID_LIGHT,
                     BlendMode.PIN_LIGHT, BlendMode.HARD_MIX]


def _anime_stack(convention: str) -> LayerStack:
    """A held-out illustration split into production layers (issue 21), its picture kept in
    the metadata."""
    from layerstudio.datasets.generate import generate
    from layerstudio.pipelines.anime_layers.classical import classical_anime_layers

    picture = generate("anime", 2, size=96, split="heldout", seed=13,
                       convention=convention).stack.composite_array()[..., :3]
    stack = classical_anime_layers(picture, convention)
    stack.metadata["picture"] = np.rint(picture * 255).astype(int).tolist()
    return stack


def _edit_session_stack() -> LayerStack:
    """Issue 22's three-edit sequence (add, add, remove) on the shipped tiny-sd, its picture
    kept in the metadata."""
    from layerstudio.studio import Studio

    background = np.full((64, 64, 3), (236, 228, 205), np.uint8)
    stack = Studio(device="cpu").edit_sequence(background, [
        {"add": "a red apple", "box": [4, 4, 36, 36]}, {"add": "a cat", "box": [28, 26, 34, 34]},
        {"remove": 1}], steps=6)
    stack.metadata["picture"] = np.rint(stack.composite_array() * 255).astype(int).tolist()
    return stack


def _mode_stack(mode: BlendMode) -> LayerStack:
    rng = np.random.default_rng(len(mode.value))
    stack = LayerStack(32, 24)
    ys, xs = np.mgrid[0:24, 0:32]
    stack.add(Layer("bg", np.dstack([xs * 8, ys * 10, 255 - xs * 4,
                                     np.full_like(xs, 255)]).astype(np.uint8)))
    top = rng.integers(0, 256, (16, 20, 4), dtype=np.uint8)
    top[..., 3] = rng.choice([0, 128, 255], (16, 20))
    stack.add(Layer("top", top, offset=(6, 4), blend_mode=mode, opacity=200 / 255))
    return stack


@pytest.fixture(scope="module")
def gimp_results(tmp_path_factory):
    """Run GIMP once over every test file; returns {name: (layer rows, flattened RGBA)}."""
    if GIMP is None:
        pytest.skip("gimp-console-2.10 is not installed (apt-get install gimp)")
    work = tmp_path_factory.mktemp("gimp")
    stacks = {"sample": sample_stack()}
    stacks.update({f"mode-{m.value}": _mode_stack(m) for m in GIMP_SAME_FORMULA})
    stacks.update({f"anime-{c}": _anime_stack(c) for c in ("artist", "normal")})
    stacks["edit-session"] = _edit_session_stack()
    calls = []
    for name, stack in stacks.items():
        stack.save(work / f"{name}.psd")
        calls.append(f'(ls-probe "{work}/{name}.psd" "{work}/{name}.txt" "{work}/{name}.png")')
    script = f'(begin (load "{PROBE}") {" ".join(calls)})'
    env = dict(os.environ, GIMP2_DIRECTORY=str(work / "profile"))
    subprocess.run([GIMP, "-i", "-d", "-f", "-b", script, "-b", "(gimp-quit 0)"],
                   capture_output=True, text=True, env=env, timeout=600)
    results = {}
    for name, stack in stacks.items():
        text, png = work / f"{name}.txt", work / f"{name}.png"
        assert text.exists() and png.exists(), f"GIMP did not process {name}.psd"
        rows = [line.split("\t") for line in text.read_text(encoding="utf-8").splitlines()]
        results[name] = (stack, rows, np.asarray(Image.open(png).convert("RGBA"), int))
    return results


def test_gimp_reads_structure(gimp_results):
    stack, rows, _ = gimp_results["sample"]
    assert rows[0] == ["IMAGE", "40", "30"]
    layers = rows[1:]
    # GIMP lists top first, groups as layers with their children after them.
    expected = [("0", "top", BlendMode.OVERLAY, 128 / 255, True, False),
                ("0", "Characters", BlendMode.PASS_THROUGH, 153 / 255, True, True),
                ("1", "Hero", BlendMode.NORMAL, 1.0, True, True),
                ("2", "hidden one", BlendMode.NORMAL, 1.0, False, False),
                ("2", "hero", BlendMode.SCREEN, 1.0, True, False),
                ("1", "Ünïcødé 日本語 🎨", BlendMode.MULTIPLY, 200 / 255, True, False),
                ("0", "Фон", BlendMode.NORMAL, 1.0, True, False)]
    assert len(layers) == len(expected) == len(stack) + 2
    for row, (depth, name, mode, opacity, visible, group) in zip(layers, expected, strict=True):
        assert row[1:3] == [depth, name]
        assert int(row[3]) == GIMP_MODES[mode], name
        assert float(row[4]) == pytest.approx(opacity * 100, abs=0.01), name
        assert row[5:7] == ["1" if visible else "0", "1" if group else "0"], name


def _same_within_one_level(ours: np.ndarray, theirs: np.ndarray) -> None:
    """Alpha and colour within 1/255, colour compared only where it is visible (alpha > 0):
    under alpha 0 GIMP keeps whatever colour was there, we store black."""
    assert np.abs(ours[..., 3] - theirs[..., 3]).max() <= 1
    visible = ours[..., 3] > 0
    assert np.abs(ours[..., :3] - theirs[..., :3])[visible].max() <= 1


def test_gimp_flattens_the_sample_like_we_do(gimp_results):
    stack, _, flat = gimp_results["sample"]
    _same_within_one_level(np.asarray(stack.composite(), int), flat)


@pytest.mark.parametrize("mode", GIMP_SAME_FORMULA, ids=lambda m: m.value)
def test_gimp_matches_our_composite_per_blend_mode(gimp_results, mode):
    stack, rows, flat = gimp_results[f"mode-{mode.value}"]
    assert int(rows[1][3]) == GIMP_MODES[mode]
    _same_within_one_level(np.asarray(stack.composite(), int), flat)


@pytest.mark.skipif(IDENTIFY is None, reason="ImageMagick's identify is not installed")
def test_identify_lists_composite_and_layers(tmp_path):
    stack = sample_stack()
    path = stack.save(tmp_path / "s.psd")
    out = subprocess.run([IDENTIFY, "-format", "%s %w %h %X %Y\n", str(path)],
                         capture_output=True, text=True, check=True).stdout.split("\n")
    frames = [line.split() for line in out if line.strip()]
    assert frames[0][1:3] == ["40", "30"]  # frame 0 is the merged composite
    assert len(frames) == 1 + len(stack)
    cropped = stack.cropped_to_content()
    for frame, layer in zip(frames[1:], cropped, strict=True):
        assert frame[1:3] == [str(layer.width), str(layer.height)], layer.name
        assert [int(frame[3]), int(frame[4])] == list(layer.offset), layer.name


@pytest.mark.skipif(IDENTIFY is None, reason="ImageMagick is not installed")
def test_imagemagick_merged_frame_matches_our_composite(tmp_path):
    stack = sample_stack(4)
    path = stack.save(tmp_path / "s.psd")
    subprocess.run(["convert", f"{path}[0]", str(tmp_path / "frame0.png")], check=True)
    frame = np.asarray(Image.open(tmp_path / "frame0.png").convert("RGBA"), float) / 255
    ours = np.asarray(stack.composite(), float) / 255
    assert np.array_equal(frame[..., 3], ours[..., 3])
    premultiplied = [x[..., :3] * x[..., 3:4] for x in (frame, ours)]
    assert np.abs(premultiplied[0] - premultiplied[1]).max() <= 2 / 255


@pytest.mark.parametrize("convention", ["artist", "normal"])
def test_gimp_opens_anime_layers_named_blended_and_recomposing_to_the_picture(gimp_results,
                                                                              convention):
    """``decompose --method anime-classical`` output in GIMP: four named layers in
    production order with the convention's blend modes, flattening to the input."""
    stack, rows, flat = gimp_results[f"anime-{convention}"]
    shading = BlendMode.MULTIPLY if convention == "artist" else BlendMode.NORMAL
    lighting = BlendMode.SCREEN if convention == "artist" else BlendMode.NORMAL
    expected = [("line art", BlendMode.NORMAL), ("highlight", lighting),
                ("shadow", shading), ("flat colour", BlendMode.NORMAL)]
    assert [(row[2], int(row[3])) for row in rows[1:]] == \
        [(name, GIMP_MODES[mode]) for name, mode in expected]
    assert np.abs(flat[..., :3] - np.array(stack.metadata["picture"])).max() <= 1


def test_gimp_opens_an_edit_session_with_its_layers_and_composite(gimp_results):
    """``edit-session`` output (add, add, remove) in GIMP: the background and the one layer
    left, named after its prompt, flattening as we composite it."""
    stack, rows, flat = gimp_results["edit-session"]
    assert [row[2] for row in rows[1:]] == ["a cat", "background"]
    assert np.abs(flat - np.array(stack.metadata["picture"])).max() <= 1
