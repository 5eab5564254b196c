"""Step-by-step editing sessions with a layer-wise memory: the editing door of :class:`Studio`.

A session holds one :class:`~layerstudio.pipelines.layered_memory.EditMemory` and the preset it
runs on. Each operation (add an object in a rough mask or box, replace or remove a layer, undo,
redo) returns the new document; earlier edits and the background stay as they were (see
``pipelines/layered_memory``). Layers are numbered by the edit that added them, from 1.

    session = Studio().edit_session("beach.png")          # or a prompt
    session.add("a crab", box=(8, 30, 28, 28))
    session.add("a hat", box=(12, 20, 20, 14))
    session.remove(1)
    session.save("beach.psd")       # + beach.memory.safetensors: reopen with open_edit_session

Scripts (``layerstudio edit-session SCRIPT.json``, batch task ``edit-session``) are a
background and a list of edits: ``{"add": "a cat", "box": [x, y, w, h]}``, ``{"add": "a hat",
"mask": "mask.png"}``, ``{"replace": 1, "prompt": "a dog"}``, ``{"remove": 1}``, ``{"undo":
true}``, ``{"redo": true}``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .document import LayerStack
from .errors import InvalidInputError
from .imaging import fit_square
from .presets import vocabulary_hint

if TYPE_CHECKING:
    from .pipelines.layered_memory import EditMemory
    from .studio import StepCallback, Studio

__all__ = ["EDIT_OPERATIONS", "EditSession", "memory_path", "run_script"]

MEMORY_SUFFIX = ".memory.safetensors"
EDIT_OPERATIONS = {"add": {"box", "mask"}, "replace": {"prompt", "box", "mask"},
                   "remove": set(), "undo": set(), "redo": set()}
"""Script edit keys: the operation, then the other keys it takes."""


def memory_path(document: str | Path) -> Path:
    """Where a document's edit memory lives: ``poster.psd`` -> ``poster.memory.safetensors``;
    a memory file names itself."""
    document = Path(document)
    if document.name.endswith(MEMORY_SUFFIX):
        return document
    return document.with_name(document.stem + MEMORY_SUFFIX)


def _image_path(text: str, base: Path | None) -> Path | None:
    """``text`` as an existing file (relative to ``base`` first), or None when it is not a
    path; a name that looks like a file but is missing is an error."""
    for path in ([base / text] if base else []) + [Path(text)]:
        try:
            if path.is_file():
                return path
        except OSError:  # a long prompt is no file name
            return None
    if Path(text).suffix.lower() in {".png", ".jpg", ".jpeg", ".webp", ".psd", ".ora", ".zip",
                                     ".tif", ".tiff", ".bmp"}:
        raise InvalidInputError(f"the background file {text} does not exist")
    return None


class EditSession:
    """One editing session (module docstring); made by :meth:`Studio.edit_session` or
    :meth:`Studio.open_edit_session`."""

    def __init__(self, studio: Studio, memory: EditMemory) -> None:
        self.studio = studio
        self.memory = memory
        self.notes: list[str] = []
        """What the user should know about the last operation (a prompt outside a tiny
        model's vocabulary, a cropped background)."""
        self.seconds = 0.0
        """How long the last operation took."""
        self._document: tuple[EditMemory, LayerStack] | None = None
        """The document of one memory, kept: the pipeline builds it with every edit, and undo,
        redo and every read of :attr:`stack` would build it again."""

    # --- state -------------------------------------------------------------------------------

    @property
    def model(self) -> str:
        return self.memory.settings["model"]

    @property
    def size(self) -> tuple[int, int]:
        width, height = self.memory.settings["size"]
        return width, height

    @property
    def history(self) -> list[str]:
        return self.memory.history()

    @property
    def layers(self) -> list[tuple[int, str]]:
        """(number, prompt) of each live layer, bottom to top."""
        return [(layer.number, layer.prompt) for layer in self.memory.live_layers()]

    @property
    def stack(self) -> LayerStack:
        """The document now (background, then one layer per live edit)."""
        from .pipelines.layered_memory import memory_stack

        if self._document is None or self._document[0] is not self.memory:
            self._document = (self.memory, memory_stack(self.memory,
                                                        {"prompt": self.memory.latest.prompt}))
        built = self._document[1]
        settings = self.memory.settings
        info = {"task": "edit-session", "model": self.model, "seed": settings["seed"],
                "steps": settings["steps"], "guidance": settings["guidance"],
                "seconds": self.seconds}
        if self.notes:
            info["notes"] = list(self.notes)
        # a new stack each time (layer list and metadata its own; the layers are shared, and
        # never changed in place), so a caller's edits do not reach the kept one
        return LayerStack(built.width, built.height, list(built.layers),
                          groups=dict(built.groups), metadata={**built.metadata, **info})

    @property
    def picture(self) -> np.ndarray:
        """The latest edited picture (H, W, 3) uint8, as the model made it."""
        return self.memory.latest.image

    # --- operations ----------------------------------------------------------------------------

    def _mask(self, mask: Any, box: Any) -> np.ndarray | None:
        from .decompose import parse_box, read_mask

        if mask is not None and box is not None:
            raise InvalidInputError("give a mask or a box, not both")
        if box is not None:
            return parse_box(box, self.size).astype(np.float32)
        if mask is not None:
            return read_mask(mask, self.size).astype(np.float32)
        return None

    def _run(self, on_step: StepCallback | None, **options: Any) -> LayerStack:
        import torch

        from .studio import step_hook

        settings = self.memory.settings
        number = self.memory.cursor
        generator = torch.Generator().manual_seed(settings["seed"] + number)
        pipe = self.studio.edit_pipeline(self.model)
        with self.studio._lock:
            started = time.perf_counter()
            try:
                result = pipe(memory=self.memory, generator=generator,
                              num_inference_steps=settings["steps"],
                              guidance_scale=settings["guidance"],
                              negative_prompt=settings.get("negative") or None,
                              **step_hook(on_step, settings["steps"]), **options)
            except ValueError as error:
                raise InvalidInputError(str(error)) from None
        self.memory = result.memories[0]
        self._document = (self.memory, result.layers[0])
        self.seconds = round(time.perf_counter() - started, 3)
        prompt = options.get("prompt")
        hint = vocabulary_hint(self.model, prompt) if prompt else None
        self.notes = [hint] if hint else []
        return self.stack

    def _prompt(self, prompt: Any) -> str:
        if not isinstance(prompt, str) or not prompt.strip():
            raise InvalidInputError("the prompt is empty; describe what to draw")
        return prompt.strip()

    def add(self, prompt: str, *, mask: Any = None, box: Any = None,
            on_step: StepCallback | None = None) -> LayerStack:
        """A new object from ``prompt`` in a rough ``mask`` (canvas-sized, white = there) or
        ``box`` (x, y, w, h), on top of the others."""
        prompt = self._prompt(prompt)
        region = self._mask(mask, box)
        if region is None:
            raise InvalidInputError("add needs a mask or a box: where the new object goes")
        return self._run(on_step, prompt=prompt, mask=region, operation="add")

    def replace(self, layer: Any, prompt: str, *, mask: Any = None, box: Any = None,
                on_step: StepCallback | None = None) -> LayerStack:
        """Layer ``layer`` (its edit number) redrawn from ``prompt``, in its own mask or a
        new ``mask`` / ``box``."""
        self.memory.layer(layer)
        return self._run(on_step, prompt=self._prompt(prompt), mask=self._mask(mask, box),
                         operation="replace", layer=int(layer))

    def remove(self, layer: Any, *, on_step: StepCallback | None = None) -> LayerStack:
        """Layer ``layer`` (its edit number) taken out; what it covered comes back."""
        self.memory.layer(layer)
        return self._run(on_step, operation="remove", layer=int(layer))

    def undo(self) -> LayerStack:
        self.memory = self.memory.undo()
        return self.stack

    def redo(self) -> LayerStack:
        self.memory = self.memory.redo()
        return self.stack

    # --- files -----------------------------------------------------------------------------

    def save(self, path: str | Path) -> tuple[Path, Path]:
        """The document to ``path`` (any layered or image format) and the memory beside it
        (:func:`memory_path`); returns both paths."""
        written = self.stack.save(path)
        return written, self.memory.save(memory_path(path))

    def apply(self, edits: Any, base: Path | None = None,
              on_edit: Callable[[int, str], None] | None = None) -> LayerStack:
        """Run a script's edits (module docstring) in order; ``base``: the folder relative
        mask paths start from; ``on_edit(number, line)`` after each (its history line and
        seconds)."""
        if not isinstance(edits, list):
            raise InvalidInputError("edits must be a list of objects such as "
                                    '{"add": "a cat", "box": [8, 8, 24, 24]}')
        for index, edit in enumerate(edits, start=1):
            try:
                self._apply_one(edit, base)
            except InvalidInputError as error:
                raise InvalidInputError(f"edit {index}: {error}") from None
            if on_edit is not None:
                line = self.history[self.memory.cursor - 1]
                undoing = isinstance(edit, dict) and ("undo" in edit or "redo" in edit)
                on_edit(index, f"{'undo' if 'undo' in edit else 'redo'}: now at {line}"
                        if undoing else f"{line}  ({self.seconds} s)")
        return self.stack

    def _apply_one(self, edit: Any, base: Path | None) -> None:
        if not isinstance(edit, dict):
            raise InvalidInputError(f"an edit is an object, got {edit!r}")
        named = [key for key in EDIT_OPERATIONS if key in edit]
        if len(named) != 1:
            raise InvalidInputError(f"an edit names one of {', '.join(EDIT_OPERATIONS)}, got "
                                    f"{sorted(edit)}")
        operation = named[0]
        unknown = sorted(set(edit) - {operation} - EDIT_OPERATIONS[operation])
        if unknown:
            raise InvalidInputError(f"{operation} takes no {', '.join(unknown)}")
        mask = edit.get("mask")
        if isinstance(mask, str) and base is not None and (base / mask).is_file():
            mask = base / mask
        if operation == "add":
            self.add(edit["add"], mask=mask, box=edit.get("box"))
        elif operation == "replace":
            if "prompt" not in edit:
                raise InvalidInputError('replace needs a "prompt"')
            self.replace(edit["replace"], edit["prompt"], mask=mask, box=edit.get("box"))
        elif operation == "remove":
            self.remove(edit["remove"])
        else:
            getattr(self, operation)()


def background_picture(background: Any, size: int, base: Path | None = None
                       ) -> tuple[np.ndarray | None, str, list[str]]:
    """A session background as (picture on the square canvas or None, prompt, notes): a
    prompt string, a path to any image or layered file (its composite, centre-cropped to
    the square), a PIL image or an array."""
    from .imaging import as_rgba_array

    notes: list[str] = []
    if isinstance(background, str):
        path = _image_path(background, base)
        if path is None:
            if not background.strip():
                raise InvalidInputError("the background is empty: give a prompt or an image")
            return None, background.strip(), notes
        background = LayerStack.load(path).composite()
    elif isinstance(background, Path):
        background = LayerStack.load(background).composite()
    rgba = as_rgba_array(background, what="the background")
    height, width = rgba.shape[:2]
    if width != height:
        notes.append(f"the {width}x{height} background was centre-cropped to the {size}x{size} "
                     "canvas")
    return fit_square(rgba, size, "crop"), "", notes


def run_script(studio: Studio, script: Any, base: Path | None = None,
               on_edit: Callable[[int, str], None] | None = None, **options: Any
               ) -> EditSession:
    """A whole script (``{"background": ..., "edits": [...]}``, optionally ``model``,
    ``seed``, ``steps``, ``size``, ``guidance``, ``negative``) as a finished session;
    ``options`` (the command line's) override the script's."""
    if not isinstance(script, dict) or "background" not in script:
        raise InvalidInputError('a script is an object with a "background" (a prompt or an '
                                'image path) and "edits" (a list)')
    known = {"background", "edits", "model", "seed", "steps", "size", "guidance", "negative"}
    unknown = sorted(set(script) - known)
    if unknown:
        raise InvalidInputError(f"unknown script key(s) {', '.join(unknown)}; known: "
                                f"{', '.join(sorted(known))}")
    settings = {key: script[key] for key in ("model", "seed", "steps", "size", "guidance")
                if key in script}
    if "negative" in script:
        settings["negative_prompt"] = script["negative"]
    settings.update({key: value for key, value in options.items() if value is not None})
    session = studio.edit_session(script["background"], base=base, **settings)
    session.apply(script.get("edits", []), base, on_edit)
    return session
