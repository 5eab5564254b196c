"""Layers that add up to the picture: the last step every effects method shares.

A method estimates where the object is (its alpha), where its effect is (alpha and colour) and
what lies under the object (the filled hole); these estimates never reproduce the picture
exactly, so the colours are solved from the picture itself, at full size:

- the clean background is the picture with the effect divided out, ``B = (I - a C) / (1 - a)``
  (the texture under a shadow is kept), and the estimate only inside the object's hole;
- the object's colour is solved from ``I = alpha F + (1 - alpha) below``, with ``below`` the
  effect over the background.

Where an estimate would need a colour outside [0, 1] (the effect's alpha too strong for that
pixel, the object's too weak), the effect's alpha is capped and the object's raised, so the
layers re-composite to the input exactly whatever the estimates were.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from layerstudio.unblend import least_alpha

from .layers import Extraction

__all__ = ["effect_limit", "on_canvas", "solved_parts"]


def effect_limit(rgb: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """The most alpha an effect of ``colour`` ((h, w) 0 / 1 or (h, w, 3)) may have at each
    pixel: dividing it out, ``(I - a C) / (1 - a)``, must stay within [0, 1] in every channel
    (a black shadow: ``a <= 1 - I``; a white glow: ``a <= I``)."""
    colour = np.broadcast_to(colour[..., None] if colour.ndim == 2 else colour, rgb.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        low = np.where(colour > 0, rgb / colour, np.inf)  # I - a C >= 0
        high = np.where(colour < 1, (1 - rgb) / (1 - colour), np.inf)  # I - a C <= 1 - a
    return np.clip(np.minimum(low, high).min(-1), 0, 1).astype(np.float32)


def solved_parts(picture: np.ndarray, alpha: np.ndarray, effect: np.ndarray,
                 colour: np.ndarray, hole: np.ndarray,
                 fill: Callable[[np.ndarray, np.ndarray], np.ndarray]
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(background (h, w, 3), object RGBA, effect RGBA) that re-composite to ``picture``.

    ``alpha``: the object's matte; ``effect`` and ``colour`` ((h, w) or (h, w, 3)): the
    effect's alpha and colour; ``hole``: where the object hides the background (no effect
    there); ``fill(unshaded, hole)``: the background with the hole filled in, given the picture
    with the effect divided out."""
    colour = np.broadcast_to(colour[..., None] if colour.ndim == 2 else colour,
                             picture.shape).astype(np.float32)
    effect = np.where(hole, 0, np.minimum(effect, effect_limit(picture, colour)))
    unshaded = picture.copy()
    covered = effect > 0
    keep = np.maximum(1 - effect[covered], 1e-3)[:, None]
    unshaded[covered] = np.clip((picture[covered] - effect[covered][:, None] * colour[covered])
                                / keep, 0, 1)
    background = fill(unshaded, hole).astype(np.float32)
    # the hole is grown so that edge colours do not leak into a fill; where the matte says
    # no object, the picture is the background
    clear = hole & (alpha <= 1 / 255)
    background[clear] = unshaded[clear]
    effects = np.concatenate([colour, effect[..., None]], -1).astype(np.float32)
    below = effect[..., None] * colour + (1 - effect[..., None]) * background
    solid = alpha > 1 / 255
    alpha = np.where(solid, np.maximum(alpha, least_alpha(picture, below)), 0)
    objects = np.zeros((*picture.shape[:2], 4), np.float32)
    objects[solid, :3] = np.clip((picture[solid] - (1 - alpha[solid, None]) * below[solid])
                                 / alpha[solid, None], 0, 1)
    objects[..., 3] = np.where(solid, alpha, 0)
    return background, objects, effects


def on_canvas(rgb: np.ndarray, crop: tuple[slice, slice], background: np.ndarray,
              objects: np.ndarray, effects: np.ndarray) -> Extraction:
    """A crop's parts placed back on the full canvas (the rest of the picture unchanged)."""
    full_bg = rgb.astype(np.float32).copy()
    full_bg[crop] = background
    full_obj = np.zeros((*rgb.shape[:2], 4), np.float32)
    full_obj[crop] = objects
    full_eff = np.zeros_like(full_obj)
    full_eff[crop] = effects
    return Extraction(full_bg, full_obj, full_eff)
