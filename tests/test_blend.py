"""Blend functions against values worked out by hand from the W3C / Photoshop formulas."""

from __future__ import annotations

import numpy as np
import pytest

from layerstudio import BlendMode
from layerstudio.blend import blend_function

# (mode, backdrop, source, expected) with channels as scalars, computed by hand.
CASES = [
    (BlendMode.NORMAL, 0.2, 0.7, 0.7),
    (BlendMode.MULTIPLY, 0.5, 0.4, 0.2),
    (BlendMode.SCREEN, 0.5, 0.4, 0.7),                 # 0.5 + 0.4 - 0.2
    (BlendMode.OVERLAY, 0.25, 0.8, 0.4),               # Cb<=.5: 2*Cb*Cs = 0.4
    (BlendMode.OVERLAY, 0.75, 0.8, 0.9),               # screen(0.8, 2*.75-1=.5) = .8+.5-.4
    (BlendMode.DARKEN, 0.3, 0.6, 0.3),
    (BlendMode.LIGHTEN, 0.3, 0.6, 0.6),
    (BlendMode.COLOR_DODGE, 0.3, 0.5, 0.6),            # 0.3 / (1 - 0.5)
    (BlendMode.COLOR_DODGE, 0.0, 1.0, 0.0),            # Cb = 0 wins
    (BlendMode.COLOR_DODGE, 0.6, 0.5, 1.0),            # clipped to 1
    (BlendMode.COLOR_BURN, 0.6, 0.8, 0.5),             # 1 - 0.4/0.8
    (BlendMode.COLOR_BURN, 1.0, 0.0, 1.0),             # Cb = 1 wins
    (BlendMode.COLOR_BURN, 0.2, 0.5, 0.0),             # 1 - min(1, 1.6)
    (BlendMode.HARD_LIGHT, 0.8, 0.25, 0.4),            # multiply(0.8, 0.5)
    (BlendMode.HARD_LIGHT, 0.4, 0.75, 0.7),            # screen(0.4, 0.5) = .9-.2
    (BlendMode.SOFT_LIGHT, 0.5, 0.25, 0.375),          # .5 - .5*.5*.5
    (BlendMode.SOFT_LIGHT, 0.16, 0.75, 0.279168),      # D=((16*.16-12)*.16+4)*.16=.398336
    (BlendMode.SOFT_LIGHT, 0.64, 1.0, 0.8),            # D = sqrt(.64) = .8
    (BlendMode.DIFFERENCE, 0.3, 0.8, 0.5),
    (BlendMode.EXCLUSION, 0.5, 0.5, 0.5),              # 1 - 2*.25
    (BlendMode.LINEAR_DODGE, 0.6, 0.7, 1.0),
    (BlendMode.LINEAR_DODGE, 0.2, 0.3, 0.5),
    (BlendMode.LINEAR_BURN, 0.6, 0.7, 0.3),
    (BlendMode.LINEAR_BURN, 0.2, 0.3, 0.0),
    (BlendMode.VIVID_LIGHT, 0.6, 0.4, 0.5),            # burn(0.6, 0.8) = 1 - .4/.8
    (BlendMode.VIVID_LIGHT, 1.0, 0.0, 0.0),            # source extreme wins (Photoshop)
    (BlendMode.LINEAR_LIGHT, 0.3, 0.6, 0.5),           # .3 + 1.2 - 1
    (BlendMode.PIN_LIGHT, 0.7, 0.2, 0.4),              # min(.7, .4)
    (BlendMode.PIN_LIGHT, 0.1, 0.9, 0.8),              # max(.1, .8)
    (BlendMode.HARD_MIX, 0.6, 0.5, 1.0),
    (BlendMode.HARD_MIX, 0.4, 0.5, 0.0),
    (BlendMode.SUBTRACT, 0.7, 0.2, 0.5),
    (BlendMode.DIVIDE, 0.3, 0.6, 0.5),
]


@pytest.mark.parametrize(("mode", "cb", "cs", "expected"), CASES,
                         ids=[f"{c[0].value}-{i}" for i, c in enumerate(CASES)])
def test_separable_modes_match_hand_values(mode, cb, cs, expected):
    fn = blend_function(mode)
    backdrop = np.full((1, 1, 3), cb, np.float32)
    source = np.full((1, 1, 3), cs, np.float32)
    assert fn(backdrop, source) == pytest.approx(np.full((1, 1, 3), expected), abs=1e-6)


def test_non_separable_modes_hand_values():
    red = np.array([[[1.0, 0.0, 0.0]]], np.float32)
    grey = np.array([[[0.5, 0.5, 0.5]]], np.float32)
    # Luminosity of grey onto red: SetLum(red, 0.5): red lum .3 -> add .2 -> (1.2,.2,.2), clip
    # with L=.5, max 1.2: .5 + (c - .5) * .5 / .7
    out = blend_function(BlendMode.LUMINOSITY)(red, grey)
    expected = 0.5 + (np.array([1.2, 0.2, 0.2]) - 0.5) * 0.5 / 0.7
    assert out[0, 0] == pytest.approx(expected, abs=1e-6)
    # Colour of red onto grey keeps grey's luminosity 0.5 with red's hue and saturation.
    out = blend_function(BlendMode.COLOR)(grey, red)
    assert out[0, 0] == pytest.approx(expected, abs=1e-6)
    # Saturation of grey (0) onto red makes it grey at red's luminosity .3.
    out = blend_function(BlendMode.SATURATION)(red, grey)
    assert out[0, 0] == pytest.approx([0.3, 0.3, 0.3], abs=1e-6)
    # Hue of a grey source takes no hue: Sat(grey)=0 -> lum of backdrop.
    out = blend_function(BlendMode.HUE)(red, grey)
    assert out[0, 0] == pytest.approx([0.3, 0.3, 0.3], abs=1e-6)
    dark = np.array([[[0.1, 0.1, 0.1]]], np.float32)
    assert blend_function(BlendMode.DARKER_COLOR)(grey, dark)[0, 0] == pytest.approx(dark[0, 0])
    assert blend_function(BlendMode.LIGHTER_COLOR)(grey, dark)[0, 0] == pytest.approx(grey[0, 0])


def test_parse_accepts_loose_spellings_and_rejects_unknown():
    assert BlendMode.parse("Color Dodge") is BlendMode.COLOR_DODGE
    assert BlendMode.parse("add") is BlendMode.LINEAR_DODGE
    assert BlendMode.parse(BlendMode.SCREEN) is BlendMode.SCREEN
    with pytest.raises(ValueError, match="unknown blend mode 'sparkle'"):
        BlendMode.parse("sparkle")


def test_pass_through_has_no_pixel_formula():
    with pytest.raises(ValueError, match="group mode"):
        blend_function(BlendMode.PASS_THROUGH)
