"""What every generator returns: a layered document plus the ground truth around it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from layerstudio.document import LayerStack

__all__ = ["Box", "Sample"]

Box = tuple[int, int, int, int]
"""(x0, y0, x1, y1) in canvas pixels, right/bottom exclusive."""


@dataclass
class Sample:
    """One generated sample.

    Attributes:
        kind: the generator's name ('objects', 'effects', ...).
        index, seed, split: where it came from; ``generate(kind, index, seed, split=split)``
            rebuilds it byte for byte.
        stack: the layers (bottom to top); its composite is the input image.
        caption: a global caption in lower-case words.
        boxes: one box per layer of ``stack``, aligned with ``stack.layers`` (the background's
            box is the whole canvas); each box contains all of its layer's alpha.
        extras: generator-specific ground truth arrays (e.g. 'background', 'mask').
        meta: JSON-able labels (blend type, effect type, asset ids, convention, ...).
    """

    kind: str
    index: int
    seed: int
    split: str
    stack: LayerStack
    caption: str
    boxes: list[Box]
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def composite(self) -> np.ndarray:
        """The flattened image as straight RGBA uint8."""
        return np.asarray(self.stack.composite())

    def to_json(self) -> dict[str, Any]:
        """Everything except pixels, for manifests next to exported files."""
        return {"kind": self.kind, "index": self.index, "seed": self.seed, "split": self.split,
                "caption": self.caption, "width": self.stack.width,
                "height": self.stack.height,
                "layers": [{"name": layer.name, "kind": layer.kind, "box": list(box),
                            "blend_mode": layer.blend_mode.value,
                            "caption": layer.provenance.get("caption", "")}
                           for layer, box in zip(self.stack.layers, self.boxes, strict=True)],
                "meta": self.meta}
