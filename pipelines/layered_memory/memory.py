"""The layer-wise memory of an editing session: every step, with what it needs to be built on.

A step keeps its prompt's embeddings, its rough mask, the region it repainted, the latents at
every timestep of its denoising (the *trajectory*: the starting noise, then the latents after
each step) and its final picture (8-bit). Step 0 is the background. Edits are numbered by
their place in the history (the first edit is 1) and an added layer keeps the number of the
edit that added it, so "replace 1" and "remove 1" name the first added layer whatever happened
since.

A memory is a value: an edit returns a new memory that shares the old steps, so batches of
alternatives, undo and redo are cheap. ``cursor`` is how many steps are applied; undo moves it
back, redo forward, and a new edit after an undo drops the undone steps, as editors do.

:meth:`EditMemory.save` writes one safetensors file (tensors plus the history as JSON in its
metadata; nothing is unpickled on load), so a session survives a restart.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from layerstudio.errors import InvalidInputError
from layerstudio.io.atomic import atomic_path

from .backbone import TextCondition

__all__ = ["OPERATIONS", "EditMemory", "LiveLayer", "MemoryStep"]

OPERATIONS = ("background", "add", "replace", "remove")
FORMAT = "layerstudio.edit-memory"
VERSION = 1


@dataclass(frozen=True)
class MemoryStep:
    """One applied operation (see the module docstring). ``mask``: the rough mask given (add,
    or a replace that moved the layer), (H, W) in [0, 1]; ``region``: what was repainted;
    ``layer``: the edit number of the layer added, replaced or removed (None for the
    background); ``image``: the decoded final latents, (H, W, 3) uint8; ``source``: a
    background given as a picture, exactly (what the document shows; the latents hold it only
    as well as the VAE can)."""

    operation: str
    prompt: str
    trajectory: torch.Tensor
    image: np.ndarray
    condition: TextCondition | None = None
    mask: torch.Tensor | None = None
    region: torch.Tensor | None = None
    layer: int | None = None
    source: np.ndarray | None = None

    @property
    def final(self) -> torch.Tensor:
        """The step's denoised latents (1, C, h, w)."""
        return self.trajectory[-1:]

    def describe(self, number: int) -> str:
        """One history line, e.g. "2. add 'a hat'" or "4. remove layer 1"."""
        if self.operation == "background":
            return f"{number}. background" + (f" {self.prompt!r}" if self.prompt else "")
        if self.operation == "add":
            return f"{number}. add {self.prompt!r}"
        if self.operation == "replace":
            return f"{number}. replace layer {self.layer} with {self.prompt!r}"
        return f"{number}. remove layer {self.layer}"


@dataclass(frozen=True)
class LiveLayer:
    """A layer present after the applied steps: its number, current prompt and text
    condition, rough mask, and the history index of the step that last painted it."""

    number: int
    prompt: str
    condition: TextCondition
    mask: torch.Tensor
    painted_by: int


class EditMemory:
    """The steps of a session and how many are applied (module docstring). ``settings``:
    what every step must share (``size``, ``steps``, ``timesteps``, ``guidance``, and
    whatever the caller records, e.g. the model and seed)."""

    def __init__(self, steps: list[MemoryStep], settings: dict[str, Any],
                 cursor: int | None = None) -> None:
        if not steps or steps[0].operation != "background":
            raise ValueError("a memory starts with its background step")
        self.steps = list(steps)
        self.settings = dict(settings)
        self.cursor = len(steps) if cursor is None else cursor
        if not 1 <= self.cursor <= len(self.steps):
            raise ValueError(f"cursor {self.cursor} outside 1..{len(self.steps)}")

    # --- history ----------------------------------------------------------------------------

    @property
    def applied(self) -> list[MemoryStep]:
        return self.steps[:self.cursor]

    @property
    def latest(self) -> MemoryStep:
        """The last applied step: its trajectory is the scene later edits are guided by."""
        return self.steps[self.cursor - 1]

    @property
    def can_undo(self) -> bool:
        return self.cursor > 1

    @property
    def can_redo(self) -> bool:
        return self.cursor < len(self.steps)

    def undo(self) -> EditMemory:
        if not self.can_undo:
            raise InvalidInputError("nothing to undo: only the background is left")
        return EditMemory(self.steps, self.settings, self.cursor - 1)

    def redo(self) -> EditMemory:
        if not self.can_redo:
            raise InvalidInputError("nothing to redo")
        return EditMemory(self.steps, self.settings, self.cursor + 1)

    def with_step(self, step: MemoryStep) -> EditMemory:
        """A new memory with ``step`` applied after the current one (undone steps dropped)."""
        return EditMemory([*self.applied, step], self.settings)

    def history(self) -> list[str]:
        """Every step, applied or undone (marked), as lines for a history list."""
        return [step.describe(number) + ("" if number < self.cursor else "  (undone)")
                for number, step in enumerate(self.steps)]

    # --- the layers now -----------------------------------------------------------------------

    def live_layers(self, upto: int | None = None) -> list[LiveLayer]:
        """The layers present after the first ``upto`` steps (default: the applied ones),
        bottom to top."""
        layers: dict[int, LiveLayer] = {}
        for number, step in enumerate(self.steps[:self.cursor if upto is None else upto]):
            if step.operation == "add":
                layers[number] = LiveLayer(number, step.prompt, step.condition, step.mask,
                                           number)
            elif step.operation == "replace":
                old = layers[step.layer]
                layers[step.layer] = replace(old, prompt=step.prompt, condition=step.condition,
                                             mask=old.mask if step.mask is None else step.mask,
                                             painted_by=number)
            elif step.operation == "remove":
                del layers[step.layer]
        return list(layers.values())

    def layer(self, number: Any) -> LiveLayer:
        """The live layer added by edit ``number``, or a clear error."""
        live = {layer.number: layer for layer in self.live_layers()}
        try:
            wanted = int(number)
        except (TypeError, ValueError):
            wanted = None
        if wanted is None or isinstance(number, bool) or wanted not in live:
            if wanted is not None and 0 < wanted < self.cursor:
                kind = self.steps[wanted].operation
                why = f"edit {wanted} was a {kind}, which adds no layer" if kind != "add" \
                    else f"layer {wanted} was removed"
            else:
                why = f"there is no edit {number!r}"
            choices = ", ".join(str(n) for n in live) or "none"
            raise InvalidInputError(f"{why}; layers now: {choices}")
        return live[wanted]

    def before(self, number: int) -> MemoryStep:
        """The step applied just before edit ``number`` (whose trajectory shows the scene
        without it)."""
        return self.steps[number - 1]

    # --- files ------------------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Write the whole memory (undone steps too) to a safetensors file, atomically."""
        path = Path(path)
        tensors: dict[str, torch.Tensor] = {}
        entries = []
        for index, step in enumerate(self.steps):
            parts = {"trajectory": step.trajectory,
                     "image": torch.from_numpy(np.ascontiguousarray(step.image)),
                     "mask": step.mask, "region": step.region,
                     "source": None if step.source is None else torch.from_numpy(
                         np.ascontiguousarray(step.source))}
            if step.condition is not None:
                parts.update({f"text.{name}": value
                              for name, value in step.condition.tensors().items()})
            for name, value in parts.items():
                if value is not None:
                    tensors[f"{index}.{name}"] = value.detach().to("cpu").clone().contiguous()
            entries.append({"operation": step.operation, "prompt": step.prompt,
                            "layer": step.layer})
        header = {"format": FORMAT, "version": VERSION, "cursor": self.cursor,
                  "settings": self.settings, "steps": entries}
        with atomic_path(path) as temporary:
            save_file(tensors, str(temporary), metadata={FORMAT: json.dumps(header)})
        return path

    @classmethod
    def load(cls, path: str | Path) -> EditMemory:
        """Read a file :meth:`save` wrote; anything else is a clear error."""
        path = Path(path)
        if not path.is_file():
            raise InvalidInputError(f"edit memory {path} does not exist")
        try:
            with safe_open(str(path), framework="pt") as handle:
                header = json.loads((handle.metadata() or {}).get(FORMAT, "null"))
                tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
        except (OSError, ValueError, RuntimeError, SafetensorError) as error:
            raise InvalidInputError(f"{path} is not an edit memory file ({error})") from None
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise InvalidInputError(f"{path} is not a LayerStudio edit memory file")
        if header.get("version") != VERSION:
            raise InvalidInputError(f"{path} is edit memory version {header.get('version')}; "
                                    f"this LayerStudio reads version {VERSION}")
        try:
            return cls([_step(entry, index, tensors)
                        for index, entry in enumerate(header["steps"])],
                       header["settings"], header["cursor"])
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise InvalidInputError(f"{path} is a damaged edit memory file ({error!r})"
                                    ) from None


def _step(entry: dict[str, Any], index: int, tensors: dict[str, torch.Tensor]) -> MemoryStep:
    """Step ``index`` of a memory file: its JSON entry and its tensors."""
    if entry["operation"] not in OPERATIONS:
        raise ValueError(f"unknown operation {entry['operation']!r}")
    text = {name: tensors.get(f"{index}.text.{name}") for name in ("embeds", "pooled", "mask")}
    condition = None if text["embeds"] is None else TextCondition.from_tensors(
        {name: value for name, value in text.items() if value is not None})
    return MemoryStep(str(entry["operation"]), str(entry["prompt"]),
                      tensors[f"{index}.trajectory"], tensors[f"{index}.image"].numpy(),
                      condition, tensors.get(f"{index}.mask"), tensors.get(f"{index}.region"),
                      entry["layer"], None if f"{index}.source" not in tensors
                      else tensors[f"{index}.source"].numpy())
