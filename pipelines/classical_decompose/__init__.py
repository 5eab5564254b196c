"""Classical layer decomposition of flat designs (``--method classical``): no model, any size.

:func:`classical_decomposition` turns a picture into a :class:`~layerstudio.document.LayerStack`
(background first) with :class:`~.peel.ClassicalDecomposer`; see :mod:`.peel` for the method.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from layerstudio.document import Layer, LayerStack
from layerstudio.imaging import to_uint8

from .peel import ClassicalDecomposer, Peeled, Piece, group_objects, mask_box, unblended

__all__ = ["ClassicalDecomposer", "Peeled", "Piece", "classical_decomposition", "group_objects",
           "mask_box", "merge_to_budget", "unblended"]


def classical_decomposition(rgb: np.ndarray, layers: int | None = None,
                            within: np.ndarray | None = None,
                            on_object: Callable[[], None] | None = None,
                            decomposer: ClassicalDecomposer | None = None) -> LayerStack:
    """An opaque picture (float RGB in [0, 1]) as a stack: the background, then one layer per
    object, bottom to top. ``layers`` caps the total (background included): objects at one
    depth merge first, then the top layers merge down. ``within``: only objects touching this
    mask are peeled."""
    peeled = (decomposer or ClassicalDecomposer())(rgb, within, on_object)
    height, width = rgb.shape[:2]
    background = np.concatenate([peeled.background, np.ones((height, width, 1), np.float32)],
                                axis=-1)
    stack = LayerStack(width, height, [Layer("background", to_uint8(background),
                                             kind="background")])
    for number, piece in enumerate(peeled.pieces, 1):
        stack.add(Layer(f"layer {number}", to_uint8(piece.rgba), offset=piece.offset,
                        kind="object", provenance={"depth": piece.depth}))
    merge_to_budget(stack, layers)
    stack.metadata["fills"] = sorted(set(peeled.fills))
    return stack


def merge_to_budget(stack: LayerStack, layers: int | None) -> None:
    """Merge a decomposition (layers carrying a ``depth`` in their provenance) down to at
    most ``layers`` layers: neighbours at one depth merge first, then the top layers merge
    down; the objects are then renamed "layer 1", "layer 2", ... bottom to top."""
    while layers is not None and len(stack) > max(layers, 1):
        depths = [layer.provenance.get("depth") for layer in stack.layers]
        same = [i for i in range(2, len(stack)) if depths[i] == depths[i - 1]]
        stack.merge_down(same[-1] if same else len(stack) - 1)
    for number, layer in enumerate(stack.layers[1:], 1):
        layer.name = f"layer {number}"
