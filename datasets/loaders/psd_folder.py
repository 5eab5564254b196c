"""A folder of layered files (.psd, .ora, our .zip bundles) as a dataset.

Captions come from the file's LayerStudio metadata ('prompt' or 'caption') when present, else
from the file name ('red_apple-01.psd' -> 'red apple 01').
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

from layerstudio.document import LayerStack
from layerstudio.errors import InvalidInputError

from ..sample import Sample
from .common import existing_folder, to_sample

__all__ = ["LayeredFileFolder"]


class LayeredFileFolder:
    """Every layered file under ``root`` (recursively), sorted by path, loaded on access."""

    def __init__(self, root: str | Path, suffixes: tuple[str, ...] = (".psd", ".ora", ".zip"),
                 recursive: bool = True) -> None:
        self.root = existing_folder(root, "layered files")
        pattern = "**/*" if recursive else "*"
        self.files = sorted(p for p in self.root.glob(pattern)
                            if p.is_file() and p.suffix.lower() in suffixes)
        if not self.files:
            raise InvalidInputError(f"no {', '.join(suffixes)} files found under {self.root}")

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> Sample:
        path = self.files[index]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # import warnings are kept in stack.metadata
            stack = LayerStack.load(path)
        caption = str(stack.metadata.get("prompt") or stack.metadata.get("caption") or
                      " ".join(re.split(r"[\W_]+", path.stem)).strip().lower())
        return to_sample("layered_files", index, stack, caption,
                         {"path": str(path.relative_to(self.root))})
