"""Shared pieces of the real-dataset loaders."""

from __future__ import annotations

from pathlib import Path

from layerstudio.document import LayerStack
from layerstudio.errors import InvalidInputError

from ..sample import Sample
from ..scenes.common import box_of

__all__ = ["existing_folder", "to_sample"]


def existing_folder(root: str | Path, what: str) -> Path:
    """``root`` as a Path, or a clear error saying what was expected there."""
    path = Path(root).expanduser()
    if not path.is_dir():
        raise InvalidInputError(f"{what} folder {path} does not exist; see docs/datasets.md "
                                "for how to get the data and lay it out")
    return path


def to_sample(kind: str, index: int, stack: LayerStack, caption: str, meta: dict) -> Sample:
    """Wrap a loaded stack as a :class:`Sample` (split 'external')."""
    return Sample(kind=kind, index=index, seed=0, split="external", stack=stack,
                  caption=caption, boxes=[box_of(layer) for layer in stack.layers], meta=meta)
