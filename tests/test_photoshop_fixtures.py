"""Real Photoshop files: our import + compositing reproduce Photoshop's own stored composite."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from layerstudio import LayerStack
from layerstudio.io import LayerStudioWarning
from layerstudio.io.psd import merged_image

MODES = ["normal", "multiply", "screen", "overlay", "darken", "lighten", "color-dodge",
         "color-burn", "hard-light", "soft-light", "difference", "exclusion", "linear-dodge",
         "linear-burn", "vivid-light", "linear-light", "pin-light", "hard-mix", "subtract",
         "divide", "darker-color", "lighter-color", "hue", "saturation", "color", "luminosity",
         "pass-through"]


def _load_quietly(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LayerStudioWarning)
        return LayerStack.load(path)


def _difference_to_photoshop(path) -> np.ndarray:
    stack = _load_quietly(path)
    ref = np.asarray(merged_image(path).convert("RGBA"), np.float64) / 255
    ours = stack.composite_array().astype(np.float64)
    return np.abs(ours[..., :3] * ours[..., 3:4] - ref[..., :3] * ref[..., 3:4]) * 255


@pytest.mark.parametrize("mode", MODES)
def test_blend_mode_matches_photoshop(psd_fixtures, mode):
    diff = _difference_to_photoshop(psd_fixtures / f"{mode}.psd")
    assert diff.mean() <= 0.5, f"mean {diff.mean():.3f}/255"
    assert diff.max() <= 3.0, f"max {diff.max():.2f}/255"


@pytest.mark.parametrize(("name", "layers"), [
    ("group.psd", 2), ("hidden-layer.psd", 3), ("hidden-groups.psd", 3), ("2layers.psd", 2),
    ("background-red-opacity-80.psd", 2), ("16bit5x5.psd", 3), ("32bit5x5.psd", 3),
    ("empty-layer.psd", 3),
    ("clipping-mask.psd", 5), ("0layers.psd", 1), ("empty-group.psd", 1),
])
def test_structure_files_import_and_match(psd_fixtures, name, layers):
    stack = _load_quietly(psd_fixtures / name)
    assert len(stack) == layers
    diff = _difference_to_photoshop(psd_fixtures / name)
    assert diff.mean() <= 0.5


def test_structure_details(psd_fixtures):
    hidden = _load_quietly(psd_fixtures / "hidden-groups.psd")
    assert hidden.groups[("Group 1",)].visible is False
    names = [layer.name for layer in _load_quietly(psd_fixtures / "2layers.psd")]
    assert names == ["Фон", "Слой"]
    deep = _load_quietly(psd_fixtures / "16bit5x5.psd")
    assert deep[0].pixels.dtype == np.uint16
    assert _load_quietly(psd_fixtures / "32bit5x5.psd")[0].pixels.dtype == np.float32
    emoji = _load_quietly(psd_fixtures / "layer-name-emoji.psd")
    assert any(any(ord(ch) > 0xFFFF for ch in layer.name) for layer in emoji)


def test_unsupported_features_are_reported(psd_fixtures):
    with pytest.warns(LayerStudioWarning, match="clipping mask baked"):
        LayerStack.load(psd_fixtures / "clipping-mask.psd")
    with pytest.warns(LayerStudioWarning, match="dissolve is not supported"):
        LayerStack.load(psd_fixtures / "dissolve.psd")
    with pytest.warns(LayerStudioWarning, match="empty groups are not kept"):
        LayerStack.load(psd_fixtures / "empty-group.psd")
    with pytest.warns(LayerStudioWarning, match="no layers"):
        LayerStack.load(psd_fixtures / "0layers.psd")
