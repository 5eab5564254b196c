"""Adjustment layers (invert, levels, curves, ...): kept as Photoshop defines them, rendered.

An adjustment layer has no pixels of its own: it rewrites the colour of everything below it
(inside its group when the group is isolated), through its coverage (the layer mask) and its
opacity, in its blend mode. A designer who opens a PSD, regenerates one layer and exports must
get their adjustment layers back, so an :class:`Adjustment` keeps the exact Photoshop tagged
block that defines it (written back byte for byte) and renders it with psd-tools' own
implementation of each adjustment, which matches Photoshop's stored composites closely
(see ``benchmarks/psd_fidelity.py``).

Compositing (see :mod:`layerstudio.compositing`), with backdrop colour Cb, backdrop alpha ab,
coverage c (mask x opacity) and blend function B::

    Cs = adjust(Cb);   C' = Cb + c * (B(Cb, Cs) - Cb);   alpha unchanged
"""

from __future__ import annotations

import base64
import functools
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np

from .errors import InvalidInputError

__all__ = ["ADJUSTMENT_KINDS", "Adjustment"]

ADJUSTMENT_KINDS = ("brightnesscontrast", "levels", "curves", "exposure", "huesaturation",
                    "invert", "posterize", "threshold")
"""Adjustments rendered; others (colour balance, gradient map, ...) are kept but not drawn."""

MAX_BLOCK_BYTES = 1 << 20
"""An adjustment's settings are a few kB; refuse a block larger than this."""


@dataclass(frozen=True)
class Adjustment:
    """One adjustment: its kind and the Photoshop tagged block (key + payload) defining it.

    Attributes:
        kind: psd-tools' name for it ("invert", "levels", "curves", ...).
        block: the whole tagged block as stored in a PSD ("8BIM" + key + length + data).
        depth: bits per channel of the document it came from (sets the LUT precision).
    """

    kind: str
    block: bytes
    depth: int = 8

    def __post_init__(self) -> None:
        if not isinstance(self.kind, str) or not self.kind.isalpha():
            raise InvalidInputError(f"adjustment kind must be a word, got {self.kind!r}")
        if not isinstance(self.block, bytes) or not 12 <= len(self.block) <= MAX_BLOCK_BYTES:
            raise InvalidInputError("adjustment block must be 12 bytes to 1 MiB of data")
        if self.depth not in (8, 16, 32):
            raise InvalidInputError(f"adjustment depth must be 8, 16 or 32, got {self.depth}")
        try:  # parsed now, so a damaged block is refused here and not while compositing
            settings = _settings(self.block, self.depth)
        except InvalidInputError:
            raise
        except Exception as exc:
            raise InvalidInputError(f"the {self.kind} adjustment's settings block is damaged "
                                    f"({type(exc).__name__}: {exc})") from None
        if type(settings).__name__.lower() != self.kind:
            raise InvalidInputError(f"the adjustment block {self.key!r} does not define a "
                                    f"{self.kind} adjustment")

    @property
    def key(self) -> bytes:
        """The four-character tag of the block (e.g. b'nvrt' for invert)."""
        return self.block[4:8]

    @property
    def rendered(self) -> bool:
        """Whether LayerStudio draws this kind (otherwise it is kept but has no effect)."""
        return self.kind in ADJUSTMENT_KINDS

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "psd_block": base64.b64encode(self.block).decode("ascii"),
                "depth": self.depth}

    @classmethod
    def from_json(cls, value: object, what: str) -> Adjustment:
        if not isinstance(value, dict):
            raise InvalidInputError(f"{what}: adjustment must be a JSON object")
        try:
            block = base64.b64decode(str(value.get("psd_block", "")), validate=True)
        except ValueError:
            raise InvalidInputError(f"{what}: adjustment block is not base64") from None
        return cls(value.get("kind"), block, value.get("depth", 8))  # type: ignore[arg-type]

    def apply(self, rgb: np.ndarray) -> np.ndarray:
        """The adjusted colour of straight RGB ``rgb`` (..., 3) in [0, 1]."""
        if not self.rendered:
            return rgb
        from psd_tools.composite.adjustments import ADJUSTMENT_FUNC
        from psd_tools.constants import ColorMode

        return ADJUSTMENT_FUNC[self.kind](rgb, ColorMode.RGB, _settings(self.block, self.depth))


@functools.lru_cache(maxsize=64)
def _settings(block: bytes, depth: int) -> Any:
    """The psd-tools adjustment object for ``block``, as its renderer expects one: the parsed
    block data plus the document depth (the only document fact the renderers read)."""
    from psd_tools.api.adjustments import TYPES
    from psd_tools.psd.tagged_blocks import TaggedBlock

    parsed = TaggedBlock.frombytes(block)
    kind = TYPES.get(parsed.key)
    if kind is None:
        raise InvalidInputError(f"adjustment block {parsed.key!r} is not an adjustment")
    settings = kind.__new__(kind)
    settings._data = parsed.data
    settings._psd = SimpleNamespace(depth=depth)
    return settings
