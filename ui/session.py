"""One browser session's document: the open :class:`LayerStack`, the selected layer and undo.

Plain Python with no Gradio in it, so every layer operation the UI offers is testable on its
own. Operations never change a stack or a layer in place: each edits a working copy whose layer
list is new but whose unchanged layers are shared, and pushes the old stack onto the undo
history. So a failed operation leaves the document exactly as it was, and an undo step costs a
list, not a copy of every layer's pixels.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from layerstudio.document import LayerStack
from layerstudio.errors import InvalidInputError

__all__ = ["UNDO_DEPTH", "Session", "working_copy"]

UNDO_DEPTH = 20
"""How many earlier versions of the document a session keeps for Undo."""


def working_copy(stack: LayerStack) -> LayerStack:
    """A stack to edit by replacing, inserting or removing layers: new list, group table and
    metadata; the layers themselves shared with ``stack`` (never edit one in place)."""
    edited = copy.copy(stack)
    edited.layers = list(stack.layers)
    edited.groups = dict(stack.groups)
    edited.metadata = dict(stack.metadata)
    return edited


@dataclass
class Session:
    """The document a user is working on. ``selected`` indexes ``stack.layers`` (0 = bottom),
    or is None when there is nothing to select."""

    stack: LayerStack | None = None
    selected: int | None = None
    history: list[tuple[LayerStack, int | None]] = field(default_factory=list)

    # --- document ----------------------------------------------------------------------------
    def require(self) -> LayerStack:
        """The open document, or an error telling the user how to get one."""
        if self.stack is None or not self.stack.layers:
            raise InvalidInputError("there is no document yet: generate one or open a file")
        return self.stack

    def replace(self, stack: LayerStack, selected: int | None = None) -> None:
        """Make ``stack`` the document (undoable); selects layer ``selected``, by default the
        top visible one (pipelines put hidden reference layers on top)."""
        if self.stack is not None:
            self.history.append((self.stack, self.selected))
            del self.history[:-UNDO_DEPTH]
        self.stack = stack
        top = len(stack.layers) - 1
        if selected is None:
            shown = [i for i, layer in enumerate(stack.layers) if layer.visible]
            selected = shown[-1] if shown else top
        self.selected = max(0, min(selected, top)) if stack.layers else None

    def undo(self) -> None:
        """Go back to the document before the last change."""
        if not self.history:
            raise InvalidInputError("nothing to undo")
        self.stack, self.selected = self.history.pop()

    def select(self, index: int) -> None:
        """Select the layer at ``index`` (0 = bottom)."""
        self.selected = self.require().index(int(index))

    def current(self) -> int:
        """The selected layer's index; an error when none is selected."""
        stack = self.require()
        if self.selected is None or not 0 <= self.selected < len(stack.layers):
            raise InvalidInputError("select a layer first")
        return self.selected

    # --- layer operations (each one undoable) -----------------------------------------------
    def set_properties(self, *, name: str, kind: str, visible: bool, opacity: float,
                       blend_mode: str) -> None:
        """Change the selected layer's name, kind, visibility, opacity (0-1) and blend mode."""
        index = self.current()
        layer = self.require().layers[index]
        changed = layer.copy(pixels=layer.pixels, name=name, kind=kind, visible=visible,
                             opacity=opacity, blend_mode=blend_mode)  # Layer checks each one
        same = all(getattr(changed, key) == getattr(layer, key)
                   for key in ("name", "kind", "visible", "opacity", "blend_mode"))
        if same:  # focus left the name box without a change: no undo step
            return
        stack = working_copy(self.require())
        stack.layers[index] = changed
        self.replace(stack, index)

    def move(self, steps: int) -> None:
        """Move the selected layer up (positive) or down (negative) the stack."""
        index = self.current()
        target = index + steps
        if not 0 <= target < len(self.require().layers):
            raise InvalidInputError("the layer is already at the " +
                                    ("top" if steps > 0 else "bottom"))
        stack = working_copy(self.require())
        stack.move(index, target)
        self.replace(stack, target)

    def move_up(self) -> None:
        """Move the selected layer one place up."""
        self.move(1)

    def move_down(self) -> None:
        """Move the selected layer one place down."""
        self.move(-1)

    def duplicate(self) -> None:
        """Copy the selected layer just above itself and select the copy."""
        index = self.current()
        stack = working_copy(self.require())
        stack.duplicate(index)
        self.replace(stack, index + 1)

    def delete(self) -> None:
        """Remove the selected layer; the one below (or the new bottom) is selected."""
        index = self.current()
        stack = working_copy(self.require())
        if len(stack.layers) == 1:
            raise InvalidInputError("cannot delete the only layer of the document")
        stack.remove(index)
        self.replace(stack, max(0, index - 1))

    def transform(self, *, to: tuple[int, int] | None = None, scale: float = 1.0,
                  rotate: int = 0, flip: str | None = None) -> None:
        """Move the selected layer's corner ``to`` (x, y), scale it about its centre, turn it
        by a multiple of 90 degrees or flip it (see :meth:`LayerStack.transform`)."""
        index = self.current()
        layer = self.require().layers[index]
        if to is not None and tuple(to) == layer.offset and scale == 1.0 and not rotate \
                and flip is None:
            return  # the position boxes lost focus without a change: no undo step
        stack = working_copy(self.require())
        stack.transform(index, to=to, scale=scale, rotate=rotate, flip=flip)
        self.replace(stack, index)

    def merge_down(self) -> None:
        """Merge the selected layer into the one below it, as Photoshop's Merge Down."""
        index = self.current()
        stack = working_copy(self.require())
        stack.merge_down(index)
        self.replace(stack, index - 1)
