"""The blend types a see-through layer can have, and their exact inverses.

A layer of colour F and alpha a over an opaque background B gives, for a separable blend
``f`` (W3C compositing, source-over), ``I = (1 - a) B + a f(B, F)``. For the four types
DiffDecompose covers this is linear in B, so when the layer is known the background follows
exactly (the classical baseline of DESIGN.md 3.4); in general ``I = (1 - a k) B + a u``:

| blend | ``I`` | ``B`` |
|---|---|---|
| normal (watermark, glass) | ``(1 - a) B + a F`` | ``(I - a F) / (1 - a)`` |
| screen (flare, smoke, rain) | ``B (1 - a F) + a F`` | ``(I - a F) / (1 - a F)`` |
| add / linear dodge (light leak) | ``B + a F`` (below 1) | ``I - a F`` |
| multiply (X-ray) | ``B (1 - a + a F)`` | ``I / (1 - a + a F)`` |

Where the divisor vanishes (an opaque normal layer, a white screen) nothing of B is left in
the picture: :func:`background_under` says so with its ``known`` mask.
"""

from __future__ import annotations

import numpy as np

from layerstudio.blend import BlendMode
from layerstudio.errors import InvalidInputError

__all__ = ["BLENDS", "background_under", "blend_mode", "blend_of", "blended", "feasible",
           "split"]

BLENDS = {"normal": BlendMode.NORMAL, "screen": BlendMode.SCREEN,
          "add": BlendMode.LINEAR_DODGE, "multiply": BlendMode.MULTIPLY}
"""Blend type name -> the layer's blend mode in the document (add is Photoshop's linear
dodge)."""

LEAST_DIVISOR = 0.02
"""Below this share of the background left in a pixel, its background is not recoverable."""


def blend_mode(blend: str) -> BlendMode:
    """The document blend mode of a blend type, or a clear error naming the choices."""
    if blend not in BLENDS:
        raise InvalidInputError(f"unknown blend {blend!r}; choose from "
                                f"{', '.join(BLENDS)} (or auto)")
    return BLENDS[blend]


def blend_of(mode: BlendMode) -> str:
    """The blend type of a document blend mode (the inverse of :func:`blend_mode`)."""
    for name, known in BLENDS.items():
        if known is mode:
            return name
    raise InvalidInputError(f"blend mode {mode.value!r} is not one of the see-through blend "
                            f"types ({', '.join(BLENDS)})")


def _terms(colour: np.ndarray, blend: str) -> tuple[np.ndarray, np.ndarray]:
    """(u, k) with ``I = (1 - a k) B + a u`` for a layer of ``colour`` at alpha a."""
    blend_mode(blend)
    one = np.ones_like(colour)
    return {"normal": (colour, one), "screen": (colour, colour), "add": (colour, 0 * one),
            "multiply": (0 * one, 1 - colour)}[blend]


def _gain_offset(layer: np.ndarray, blend: str) -> tuple[np.ndarray, np.ndarray]:
    """(g, c) with ``I = g B + c`` for a straight RGBA ``layer`` (h, w, 4)."""
    u, k = _terms(layer[..., :3], blend)
    alpha = layer[..., 3:]
    return 1 - alpha * k, alpha * u


def feasible(picture: np.ndarray, layer: np.ndarray, blend: str) -> np.ndarray:
    """``layer`` with its alpha lowered where no background in [0, 1] could give ``picture``
    under it (an estimated layer stronger than the picture allows): with ``I = (1 - t a k) B +
    t a u``, B stays in [0, 1] for ``t <= I / (a u)`` and ``t <= (1 - I) / (a (k - u))``."""
    u, k = _terms(layer[..., :3].astype(np.float32), blend)
    alpha = layer[..., 3:].astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        low = np.where(alpha * u > 0, picture / (alpha * u), np.inf)
        high = np.where(alpha * (k - u) > 0, (1 - picture) / (alpha * (k - u)), np.inf)
    scale = np.clip(np.minimum(low, high).min(-1, keepdims=True), 0, 1)
    return np.concatenate([layer[..., :3], alpha * scale], -1).astype(np.float32)


def blended(background: np.ndarray, layer: np.ndarray, blend: str) -> np.ndarray:
    """The picture: ``layer`` (straight RGBA) blended over ``background`` (RGB), in [0, 1]."""
    gain, offset = _gain_offset(layer.astype(np.float32), blend)
    return np.clip(gain * background + offset, 0, 1).astype(np.float32)


def background_under(picture: np.ndarray, layer: np.ndarray, blend: str
                     ) -> tuple[np.ndarray, np.ndarray]:
    """(background, known): the exact inverse of :func:`blended` for a known ``layer``, and
    where it holds (enough of the background shows through; elsewhere the background is the
    picture, to be filled by the caller)."""
    gain, offset = _gain_offset(layer.astype(np.float32), blend)
    known = gain.min(-1) >= LEAST_DIVISOR
    safe = np.maximum(gain, LEAST_DIVISOR)
    background = np.clip((picture - offset) / safe, 0, 1)
    return np.where(known[..., None], background, picture).astype(np.float32), known


def split(picture: np.ndarray, layer: np.ndarray, blend: str, fallback: np.ndarray
          ) -> tuple[np.ndarray, np.ndarray]:
    """(background, layer) that re-composite to ``picture`` from an estimated ``layer``: its
    alpha made :func:`feasible`, the background solved under it exactly, and where the layer
    hides the background ``fallback`` (an estimate of it) with the layer's colour solved over
    that instead (normal mode; the other types there leave the picture at its extreme)."""
    layer = feasible(picture, layer, blend)
    background, known = background_under(picture, layer, blend)
    if known.all():
        return background, layer
    hidden = ~known
    background[hidden] = fallback[hidden]
    if blend == "normal":
        alpha = layer[hidden, 3:]
        layer[hidden, :3] = np.clip((picture[hidden] - (1 - alpha) * fallback[hidden])
                                    / np.maximum(alpha, 1e-3), 0, 1)
    return background, layer
