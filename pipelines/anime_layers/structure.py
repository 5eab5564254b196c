"""The illustration production stack and its exact inverses (DESIGN 3.6).

Four layers, bottom to top: flat colour (opaque: paper included), shadow, highlight, line
art. Two recombination conventions:

- ``artist``: shadow in ``multiply`` (I = F (1 - a + a S)), highlight in ``screen``
  (I = 1 - (1 - F)(1 - a H)) or ``add`` (I = F + a H);
- ``normal``: both as plain alpha-over layers (I = F + a (C - F)).

Line art is always a normal layer on top. Every solver here takes the backdrop (what lies
under the layer) and the target picture and returns the layer that turns one into the other
*exactly*: alpha is chosen first (full strength for clear shading; for normal layers the
projection on the colour the layer is painted in), raised wherever it would need a colour
outside [0, 1], and the colour is solved per pixel. So any backdrop and picture
decompose, and the stack re-composes to the picture in any editor that follows the PSD /
W3C blend formulas.
"""

from __future__ import annotations

import numpy as np

from layerstudio.blend import BlendMode
from layerstudio.document import Layer, LayerStack
from layerstudio.errors import InvalidInputError
from layerstudio.unblend import least_alpha

__all__ = ["CONVENTIONS", "HIGHLIGHT_BLENDS", "KINDS", "NAMES", "anime_stack", "modes_of",
           "normal_layer", "shading_layers"]

KINDS = ("flat", "shadow", "highlight", "lineart")
"""Layer kinds, bottom to top."""
NAMES = {"flat": "flat colour", "shadow": "shadow", "highlight": "highlight",
         "lineart": "line art"}
CONVENTIONS = ("artist", "normal")
HIGHLIGHT_BLENDS = ("screen", "add")

_EPS = 1e-6
_SHADE = 0.08
"""Shading weaker than this (a channel's relative change) gets partial alpha: paper grain and
anti-aliasing stay faint instead of becoming full-strength shadow."""


def modes_of(convention: str, highlight: str = "screen") -> dict[str, BlendMode]:
    """Blend mode of each kind under ``convention`` (``highlight``: screen or add)."""
    if convention not in CONVENTIONS:
        raise InvalidInputError(f"convention must be one of {', '.join(CONVENTIONS)}, "
                                f"got {convention!r}")
    if highlight not in HIGHLIGHT_BLENDS:
        raise InvalidInputError(f"highlight blend must be screen or add, got {highlight!r}")
    if convention == "normal":
        return dict.fromkeys(KINDS, BlendMode.NORMAL)
    return {"flat": BlendMode.NORMAL, "shadow": BlendMode.MULTIPLY,
            "highlight": BlendMode.SCREEN if highlight == "screen" else BlendMode.LINEAR_DODGE,
            "lineart": BlendMode.NORMAL}


def anime_stack(layers: dict[str, np.ndarray], convention: str, highlight: str = "screen"
                ) -> LayerStack:
    """The document: ``layers`` maps each kind to straight RGBA float (h, w, 4) (flat colour
    may be RGB: it is opaque), named and blended as the convention says."""
    modes = modes_of(convention, highlight)
    flat = layers["flat"]
    height, width = flat.shape[:2]
    if flat.shape[-1] == 3:
        flat = np.concatenate([flat, np.ones((height, width, 1), flat.dtype)], -1)
    stack = LayerStack(width, height)
    for kind in KINDS:
        pixels = flat if kind == "flat" else layers[kind]
        stack.add(Layer(NAMES[kind], np.clip(pixels, 0, 1).astype(np.float32), kind=kind,
                        blend_mode=modes[kind]))
    stack.metadata.update(convention=convention, highlight_blend=highlight)
    return stack


def _fitted_alpha(effect: np.ndarray, direction: np.ndarray, floor: np.ndarray,
                  mask: np.ndarray | None = None) -> np.ndarray:
    """Alpha with ``effect ~ alpha * direction`` (least squares per pixel, (h, w, 3)
    arrays), at least ``floor`` (what keeps the solved colour in range), in [0, 1]; zero
    outside ``mask``."""
    fit = (effect * direction).sum(-1) / np.maximum((direction**2).sum(-1), _EPS)
    alpha = np.clip(np.maximum(fit, floor), 0, 1)
    return alpha if mask is None else np.where(mask, alpha, 0.0)


def normal_layer(backdrop: np.ndarray, picture: np.ndarray, colour: np.ndarray | None,
                 mask: np.ndarray | None = None) -> np.ndarray:
    """Straight RGBA of the normal layer taking ``backdrop`` to ``picture`` (float RGB):
    alpha from the projection of the change on ``colour - backdrop`` (``colour`` (3,), or
    None: the point nearest every pixel's line of change, ``nearest_point``), raised until
    the per-pixel colour ``backdrop + (picture - backdrop) / alpha`` lies in [0, 1]; where
    ``mask`` is False the layer is empty (and ``picture`` must equal ``backdrop`` there for
    the result to be exact)."""
    change = picture - backdrop
    if colour is None:
        colour = nearest_point(backdrop, change, mask)
    alpha = _fitted_alpha(change, colour - backdrop, least_alpha(picture, backdrop), mask)
    solved = backdrop + change / np.maximum(alpha, _EPS)[..., None]
    return np.concatenate([np.clip(solved, 0, 1), alpha[..., None]], -1).astype(np.float32)


def nearest_point(origins: np.ndarray, directions: np.ndarray, mask: np.ndarray | None = None
                  ) -> np.ndarray:
    """The colour nearest (least squares) to every line ``origin + t direction`` with a
    real change: where the layers of a normal-blend shading all point (one shadow colour
    over many flat colours). Grey 0.5 when there is nothing to fit."""
    norms = np.linalg.norm(directions, axis=-1)
    keep = norms > 0.02 if mask is None else (norms > 0.02) & mask
    if keep.sum() < 3:
        return np.full(3, 0.5, np.float32)
    units = directions[keep] / norms[keep, None]
    points = origins[keep]
    projector = np.eye(3)[None] - units[:, :, None] * units[:, None, :]  # (N, 3, 3)
    lhs = projector.sum(0) + 1e-3 * np.eye(3)
    rhs = np.einsum("nij,nj->i", projector, points) + 1e-3 * 0.5
    return np.clip(np.linalg.solve(lhs, rhs), 0, 1).astype(np.float32)


def shading_layers(flat: np.ndarray, under: np.ndarray, convention: str,
                   highlight: str = "screen") -> tuple[np.ndarray, np.ndarray]:
    """(shadow, highlight) straight RGBA taking the flat colour ``flat`` to the shaded
    picture ``under`` (float RGB, the picture without its line art), exactly.

    ``artist``: the shadow (multiply) takes every channel that darkens, ``S = I / F``, the
    highlight (screen: ``H = 1 - (1 - I) / (1 - F)``; add: ``H = I - F``) every channel that
    brightens, so a pixel may use both. ``normal``:
    a pixel darker than its flat colour (luminance) is shadow, brighter is highlight, each
    an alpha-over layer towards the colour all its changes point to."""
    modes_of(convention, highlight)
    flat = flat.astype(np.float64)
    under = under.astype(np.float64)
    if convention == "normal":
        darker = _luminance(under) < _luminance(flat)
        changed = np.abs(under - flat).max(-1) > 1e-4
        return (normal_layer(flat, under, None, darker & changed),
                normal_layer(flat, under, None, ~darker & changed))
    down = np.clip(1 - under / np.maximum(flat, _EPS), 0, 1) * (under < flat)
    room = np.clip((under - flat) / np.maximum(1 - flat, _EPS), 0, 1) * (under > flat)
    if highlight == "screen":
        return _tinted(down, shadow=True), _tinted(room, shadow=False)
    # add saturates at white: F + H <= 1 keeps it linear, so alpha >= (I - F) / (1 - F)
    return _tinted(down, shadow=True), _tinted(np.clip(under - flat, 0, 1), shadow=False,
                                               floor=room.max(-1))


def _tinted(effect: np.ndarray, shadow: bool, floor: np.ndarray | float = 0.0) -> np.ndarray:
    """A shading layer from its per-channel effect ``a u`` (shadow: ``u = 1 - S``, the
    darkening; highlight: ``u = H``): full alpha from a change of :data:`_SHADE` on (the
    layer's colour is then the shading tint itself, as artists paint it), proportionally
    less below (never less than the effect, so ``u`` <= 1, nor than ``floor``); colour
    solved exactly."""
    strength = effect.max(-1)
    alpha = np.where(strength > 1e-4,
                     np.clip(np.maximum(strength / _SHADE, floor), 0, 1), 0.0)
    u = effect / np.maximum(alpha, _EPS)[..., None]
    colour = 1 - u if shadow else u
    return np.concatenate([np.clip(colour, 0, 1), alpha[..., None]], -1).astype(np.float32)


def _luminance(rgb: np.ndarray) -> np.ndarray:
    return rgb @ np.array([0.2126, 0.7152, 0.0722])
