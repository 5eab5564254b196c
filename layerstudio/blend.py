"""Blend modes and their mixing functions B(Cb, Cs).

The formulas are those of the W3C "Compositing and Blending Level 1" recommendation, which
Photoshop, GIMP and Krita follow; the Photoshop-only modes (linear burn/dodge, vivid/linear/pin
light, hard mix, subtract, divide, darker/lighter colour) use Photoshop's published definitions.
Every function takes the backdrop colour ``cb`` and the source colour ``cs`` as straight
(un-premultiplied) float arrays in [0, 1] whose last axis is RGB, and returns the mixed colour.
The compositing engine (``layerstudio.compositing``) applies alpha and opacity around them.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum

import numpy as np

__all__ = ["BlendMode", "blend_function"]


class BlendMode(str, Enum):
    """How a layer's colour mixes with what lies beneath it.

    Values are lower-case CSS-style names, so they read well in JSON manifests and CLI flags.
    ``PASS_THROUGH`` is valid only for groups: their children blend straight into the backdrop.
    """

    NORMAL = "normal"
    MULTIPLY = "multiply"
    SCREEN = "screen"
    OVERLAY = "overlay"
    DARKEN = "darken"
    LIGHTEN = "lighten"
    COLOR_DODGE = "color-dodge"
    COLOR_BURN = "color-burn"
    HARD_LIGHT = "hard-light"
    SOFT_LIGHT = "soft-light"
    DIFFERENCE = "difference"
    EXCLUSION = "exclusion"
    LINEAR_DODGE = "linear-dodge"
    LINEAR_BURN = "linear-burn"
    VIVID_LIGHT = "vivid-light"
    LINEAR_LIGHT = "linear-light"
    PIN_LIGHT = "pin-light"
    HARD_MIX = "hard-mix"
    SUBTRACT = "subtract"
    DIVIDE = "divide"
    DARKER_COLOR = "darker-color"
    LIGHTER_COLOR = "lighter-color"
    HUE = "hue"
    SATURATION = "saturation"
    COLOR = "color"
    LUMINOSITY = "luminosity"
    PASS_THROUGH = "pass-through"

    @classmethod
    def parse(cls, value: str | BlendMode) -> BlendMode:
        """Accept an enum member, its value, or a loose spelling ('Color Dodge', 'add')."""
        if isinstance(value, BlendMode):
            return value
        key = str(value).strip().lower().replace("_", "-").replace(" ", "-")
        key = _ALIASES.get(key, key)
        try:
            return cls(key)
        except ValueError:
            names = ", ".join(m.value for m in cls)
            raise ValueError(f"unknown blend mode {value!r}; expected one of: {names}") from None


_ALIASES = {"add": "linear-dodge", "plus": "linear-dodge", "src-over": "normal",
            "pass": "pass-through", "passthrough": "pass-through"}

Array = np.ndarray
BlendFn = Callable[[Array, Array], Array]


def _multiply(cb: Array, cs: Array) -> Array:
    return cb * cs


def _screen(cb: Array, cs: Array) -> Array:
    return cb + cs - cb * cs


def _hard_light(cb: Array, cs: Array) -> Array:
    return np.where(cs <= 0.5, cb * (2.0 * cs), _screen(cb, 2.0 * cs - 1.0))


def _overlay(cb: Array, cs: Array) -> Array:
    return _hard_light(cs, cb)


def _color_dodge(cb: Array, cs: Array) -> Array:
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.minimum(1.0, cb / (1.0 - cs))
    return np.where(cb <= 0.0, 0.0, np.where(cs >= 1.0, 1.0, ratio)).astype(cb.dtype)


def _color_burn(cb: Array, cs: Array) -> Array:
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = 1.0 - np.minimum(1.0, (1.0 - cb) / cs)
    return np.where(cb >= 1.0, 1.0, np.where(cs <= 0.0, 0.0, ratio)).astype(cb.dtype)


def _soft_light(cb: Array, cs: Array) -> Array:
    d = np.where(cb <= 0.25, ((16.0 * cb - 12.0) * cb + 4.0) * cb, np.sqrt(cb))
    return np.where(
        cs <= 0.5,
        cb - (1.0 - 2.0 * cs) * cb * (1.0 - cb),
        cb + (2.0 * cs - 1.0) * (d - cb),
    )


def _vivid_light(cb: Array, cs: Array) -> Array:
    # Photoshop lets the *source* extremes win here (Cs = 0 burns to 0, Cs = 1 dodges to 1
    # whatever the backdrop), unlike plain colour burn/dodge, whose backdrop cases come first.
    with np.errstate(divide="ignore", invalid="ignore"):
        burn = 1.0 - np.minimum(1.0, (1.0 - cb) / (2.0 * cs))
        dodge = np.minimum(1.0, cb / (2.0 * (1.0 - cs)))
    mixed = np.where(cs <= 0.5, burn, dodge)
    return np.where(cs <= 0.0, 0.0, np.where(cs >= 1.0, 1.0, mixed)).astype(cb.dtype)


def _hard_mix(cb: Array, cs: Array) -> Array:
    # On the tie Cb + Cs = 1 (common with 8-bit complements) Photoshop answers 1 only where
    # the backdrop is above half.
    total = cb + cs
    return ((total > 1.0) | ((total == 1.0) & (cb > 0.5))).astype(cb.dtype)


def _pin_light(cb: Array, cs: Array) -> Array:
    return np.where(cs <= 0.5, np.minimum(cb, 2.0 * cs), np.maximum(cb, 2.0 * cs - 1.0))


def _divide(cb: Array, cs: Array) -> Array:
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.minimum(1.0, cb / cs)
    return np.where(cs <= 0.0, np.where(cb > 0.0, 1.0, 0.0), ratio).astype(cb.dtype)


# --- non-separable helpers (W3C section 9.2) -------------------------------------------------

def _lum(c: Array) -> Array:
    return (0.3 * c[..., 0] + 0.59 * c[..., 1] + 0.11 * c[..., 2])[..., None]


def _clip_color(c: Array) -> Array:
    lum = _lum(c)
    lo = c.min(axis=-1, keepdims=True)
    hi = c.max(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        c = np.where(lo < 0.0, lum + (c - lum) * lum / (lum - lo), c)
        c = np.where(hi > 1.0, lum + (c - lum) * (1.0 - lum) / (hi - lum), c)
    return c


def _set_lum(c: Array, lum: Array) -> Array:
    return _clip_color(c + (lum - _lum(c)))


def _sat(c: Array) -> Array:
    return c.max(axis=-1, keepdims=True) - c.min(axis=-1, keepdims=True)


def _set_sat(c: Array, sat: Array) -> Array:
    lo = c.min(axis=-1, keepdims=True)
    hi = c.max(axis=-1, keepdims=True)
    span = hi - lo
    with np.errstate(divide="ignore", invalid="ignore"):
        scaled = (c - lo) * sat / span
    return np.where(span > 0.0, scaled, 0.0).astype(c.dtype)


def _hue(cb: Array, cs: Array) -> Array:
    return _set_lum(_set_sat(cs, _sat(cb)), _lum(cb))


def _saturation(cb: Array, cs: Array) -> Array:
    return _set_lum(_set_sat(cb, _sat(cs)), _lum(cb))


def _color(cb: Array, cs: Array) -> Array:
    return _set_lum(cs, _lum(cb))


def _luminosity(cb: Array, cs: Array) -> Array:
    return _set_lum(cb, _lum(cs))


def _darker_color(cb: Array, cs: Array) -> Array:
    return np.where(_lum(cs) < _lum(cb), cs, cb)


def _lighter_color(cb: Array, cs: Array) -> Array:
    return np.where(_lum(cs) > _lum(cb), cs, cb)


_FUNCTIONS: dict[BlendMode, BlendFn] = {
    BlendMode.NORMAL: lambda cb, cs: cs,
    BlendMode.MULTIPLY: _multiply,
    BlendMode.SCREEN: _screen,
    BlendMode.OVERLAY: _overlay,
    BlendMode.DARKEN: np.minimum,
    BlendMode.LIGHTEN: np.maximum,
    BlendMode.COLOR_DODGE: _color_dodge,
    BlendMode.COLOR_BURN: _color_burn,
    BlendMode.HARD_LIGHT: _hard_light,
    BlendMode.SOFT_LIGHT: _soft_light,
    BlendMode.DIFFERENCE: lambda cb, cs: np.abs(cb - cs),
    BlendMode.EXCLUSION: lambda cb, cs: cb + cs - 2.0 * cb * cs,
    BlendMode.LINEAR_DODGE: lambda cb, cs: np.minimum(1.0, cb + cs),
    BlendMode.LINEAR_BURN: lambda cb, cs: np.maximum(0.0, cb + cs - 1.0),
    BlendMode.VIVID_LIGHT: _vivid_light,
    BlendMode.LINEAR_LIGHT: lambda cb, cs: np.clip(cb + 2.0 * cs - 1.0, 0.0, 1.0),
    BlendMode.PIN_LIGHT: _pin_light,
    BlendMode.HARD_MIX: _hard_mix,
    BlendMode.SUBTRACT: lambda cb, cs: np.maximum(0.0, cb - cs),
    BlendMode.DIVIDE: _divide,
    BlendMode.DARKER_COLOR: _darker_color,
    BlendMode.LIGHTER_COLOR: _lighter_color,
    BlendMode.HUE: _hue,
    BlendMode.SATURATION: _saturation,
    BlendMode.COLOR: _color,
    BlendMode.LUMINOSITY: _luminosity,
}


def blend_function(mode: BlendMode) -> BlendFn:
    """Return B(Cb, Cs) for ``mode``; pass-through has none because it is a group behaviour."""
    if mode is BlendMode.PASS_THROUGH:
        raise ValueError("pass-through is a group mode; a pixel layer cannot use it")
    return _FUNCTIONS[mode]
