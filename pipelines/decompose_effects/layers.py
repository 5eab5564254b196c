"""What every effects method returns, and how it becomes layers.

An :class:`Extraction` holds the clean background, the object and its effect separately;
:func:`effects_stack` turns it into the document: the object carrying its effect in one layer
(LayerDecomp's output), or, with ``separate``, the effect in layers of its own whose blend
modes say what they do (a shadow multiplies, a glow screens), so a user can soften or delete
a shadow alone. Either way the layers re-composite to the picture: each effect pixel is
recoloured so that multiply (screen) gives what normal mode gave over the background (black
and white, which the classical method makes, stay as they are).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from layerstudio.blend import BlendMode
from layerstudio.document import Layer, LayerStack
from layerstudio.eval.layers_edit_dist import over

__all__ = ["GROUP", "Extraction", "effects_stack"]


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


def _effect_part(effect: np.ndarray, background: np.ndarray, lighter: bool) -> np.ndarray:
    """The effect pixels that darken (``lighter`` False) or lighten the background, recoloured
    so that multiply (resp. screen) at the same alpha gives what normal mode gave: colour C at
    alpha a over B is ``B (1 - a + a M)`` with ``M = C / B`` (multiply), and
    ``(1 - a) B + a screen(B, S)`` with ``S = (C - B) / (1 - B)`` (screen). Exact where every
    channel darkens (lightens) alike; a black shadow stays black, a white glow white."""
    colour, alpha = effect[..., :3], effect[..., 3]
    brighter = (colour - background).mean(-1) > 0
    part = np.zeros_like(effect)
    if lighter:
        part[..., :3] = (colour - background) / np.maximum(1 - background, 1e-6)
    else:
        part[..., :3] = colour / np.maximum(background, 1e-6)
    part[..., :3] = np.clip(part[..., :3], 0, 1)
    part[..., 3] = np.where(brighter == lighter, alpha, 0)
    return part


GROUP = "object with effects"


def effects_stack(extraction: Extraction, separate: bool = False) -> LayerStack:
    """[background, object with its effects] or, with ``separate``, [background, shadow
    (multiply), glow (screen), object] with the last three in a group named
    :data:`GROUP` (moving the group moves the shadow with the object), empty effect layers
    left out."""
    height, width = extraction.background.shape[:2]
    stack = LayerStack(width, height)
    background = np.concatenate([extraction.background, np.ones((height, width, 1))], -1)
    stack.add(Layer("background", background.astype(np.float32), kind="background"))
    if not separate:
        layers = [Layer(GROUP, extraction.foreground(), kind="object")]
    else:
        effect, under = extraction.effect, extraction.background
        layers = [Layer("shadow", _effect_part(effect, under, False), kind="shadow",
                        blend_mode=BlendMode.MULTIPLY, group=(GROUP,)),
                  Layer("glow", _effect_part(effect, under, True), kind="effect",
                        blend_mode=BlendMode.SCREEN, group=(GROUP,)),
                  Layer("object", extraction.object, kind="object", group=(GROUP,))]
    for layer in layers:
        if layer.pixels[..., 3].max() > 0:
            stack.add(layer.cropped_to_content())
    return stack
