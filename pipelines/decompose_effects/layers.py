"""What every effects method returns, and how it becomes layers.

An :class:`Extraction` holds the clean background, the object and its effect separately;
:func:`effects_stack` turns it into the document: the object carrying its effect in one layer
(LayerDecomp's output), or, with ``separate``, the effect in layers of its own whose blend
modes say what they do (a shadow multiplies, a glow screens, a reflection is plain paint), so
a user can soften or delete a shadow alone. Either way the layers re-composite to the picture:
each effect pixel is recoloured so that multiply (screen) gives what normal mode gave over the
background (black and white, which the classical method makes, stay as they are).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from layerstudio.blend import BlendMode
from layerstudio.document import Layer, LayerStack
from layerstudio.eval.layers_edit_dist import over

__all__ = ["GROUP", "Extraction", "effects_stack", "peeled"]


@dataclass
class Extraction:
    """The three parts, canvas-sized float arrays: ``background`` (h, w, 3) without the object
    or its effects; ``object`` (h, w, 4) straight RGBA; ``effect`` (h, w, 4) straight RGBA,
    black where it darkens (a shadow) and white where it lightens (a glow)."""

    background: np.ndarray
    object: np.ndarray
    effect: np.ndarray

    def foreground(self) -> np.ndarray:
        """The object over its effect as one straight RGBA layer."""
        return over(self.effect, self.object)


def _effect_part(effect: np.ndarray, background: np.ndarray, blend: BlendMode) -> np.ndarray:
    """The effect pixels one blend mode can carry, recoloured so that it gives what normal
    mode gave over the background. Colour C at alpha a over B is ``B (1 - a + a M)`` with
    ``M = C / B`` for multiply, exact where every channel darkens (a shadow), and
    ``(1 - a) B + a screen(B, S)`` with ``S = (C - B) / (1 - B)`` for screen, exact where every
    channel lightens (a glow); normal mode keeps the rest as it is (a reflection: the object's
    colours, darker in one channel and lighter in another). Each pixel lands in one part; a
    black shadow stays black, a white glow white."""
    colour, alpha = effect[..., :3], effect[..., 3]
    darker = (colour <= background + 1 / 512).all(-1)
    lighter = (colour >= background - 1 / 512).all(-1) & ~darker
    part = np.zeros_like(effect)
    if blend is BlendMode.MULTIPLY:
        part[..., :3], where = colour / np.maximum(background, 1e-6), darker
    elif blend is BlendMode.SCREEN:
        part[..., :3], where = (colour - background) / np.maximum(1 - background, 1e-6), lighter
    else:
        part[..., :3], where = colour, ~darker & ~lighter
    part[..., :3] = np.clip(part[..., :3], 0, 1)
    part[..., 3] = np.where(where, alpha, 0)
    return part


EFFECT_LAYERS = (("shadow", "shadow", BlendMode.MULTIPLY),
                 ("reflection", "effect", BlendMode.NORMAL),
                 ("glow", "effect", BlendMode.SCREEN))
"""The effect layers of ``separate`` mode: name, kind and blend mode."""


GROUP = "object with effects"


def peeled(rgb: np.ndarray, region: np.ndarray,
           extract: Callable[[np.ndarray, np.ndarray], Extraction]) -> list[Extraction]:
    """Every object ``region`` marks (its connected parts: several boxes, several brushed
    blobs), pulled out one after the other by ``extract(picture, part)``, each from the
    background the previous one left: the lowest in the frame first, as the nearest object
    usually is (its shadow may fall on the ones behind). Specks under 1% of the region are
    left out."""
    labels, count = ndimage.label(region)
    sizes = np.asarray(ndimage.sum(region, labels, range(1, count + 1)))
    parts = [labels == k + 1 for k in range(count) if sizes[k] >= 0.01 * sizes.sum()]
    parts.sort(key=lambda part: -np.nonzero(part)[0].max())
    extractions: list[Extraction] = []
    for part in parts:
        extractions.append(extract(extractions[-1].background if extractions else rgb, part))
    return extractions


def _object_layers(extraction: Extraction, separate: bool, group: str) -> list[Layer]:
    if not separate:
        return [Layer(group, extraction.foreground(), kind="object")]
    effect, under = extraction.effect, extraction.background
    return [*(Layer(name, _effect_part(effect, under, blend), kind=kind, blend_mode=blend,
                    group=(group,)) for name, kind, blend in EFFECT_LAYERS),
            Layer("object", extraction.object, kind="object", group=(group,))]


def effects_stack(extractions: Extraction | list[Extraction], separate: bool = False
                  ) -> LayerStack:
    """[background, object with its effects] or, with ``separate``, [background, shadow
    (multiply), reflection (normal), glow (screen), object] with all but the first in a group
    named
    :data:`GROUP` (moving the group moves the shadow with the object), empty effect layers
    left out. Several extractions (from :func:`peeled`, front first) give one such layer or
    group each ("object with effects 2", ...), the front one on top, over the background the
    last one left."""
    if isinstance(extractions, Extraction):
        extractions = [extractions]
    background = extractions[-1].background
    height, width = background.shape[:2]
    stack = LayerStack(width, height)
    opaque = np.concatenate([background, np.ones((height, width, 1))], -1)
    stack.add(Layer("background", opaque.astype(np.float32), kind="background"))
    for index in range(len(extractions), 0, -1):
        group = GROUP if index == 1 else f"{GROUP} {index}"
        for layer in _object_layers(extractions[index - 1], separate, group):
            if layer.pixels[..., 3].max() > 0:
                stack.add(layer.cropped_to_content())
    return stack
