"""The generator registry: ``generate(kind, index, seed=..., size=..., split=...)``.

Every sample is a pure function of (kind, index, seed, split, size, options): its random
stream is seeded from all of them, so any sample can be rebuilt alone, in any order, on any
worker, byte for byte.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .sample import Sample
from .scenes import alpha_blend, anime, design, effects, objects, transparent

__all__ = ["GENERATORS", "SPLITS", "generate"]

GENERATORS: dict[str, Callable[..., dict]] = {
    "objects": objects.build,
    "effects": effects.build,
    "alpha_blend": alpha_blend.build,
    "anime": anime.build,
    "transparent": transparent.build,
    "design": design.build,
}
SPLITS = ("train", "heldout")
_KIND_IDS = {name: i for i, name in enumerate(GENERATORS)}


def generate(kind: str, index: int = 0, *, seed: int = 0, size: int = 128,
             split: str = "train", **options) -> Sample:
    """Build sample ``index`` of generator ``kind``.

    ``split='heldout'`` draws from the held-out emoji and from a separate random stream, so
    evaluation samples never repeat training ones. ``options`` go to the generator (e.g.
    ``max_objects=20`` for objects, ``effect='reflection'``, ``subtask='glass'``,
    ``convention='normal'``, ``style='soft-edged'``).
    """
    if kind not in GENERATORS:
        raise ValueError(f"unknown generator {kind!r}; choose from {', '.join(GENERATORS)}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if not 16 <= size <= 4096:
        raise ValueError(f"size must be between 16 and 4096 pixels, got {size}")
    if index < 0 or seed < 0:
        raise ValueError("index and seed must be non-negative")
    rng = np.random.default_rng([seed, index, _KIND_IDS[kind], SPLITS.index(split), size])
    built = GENERATORS[kind](rng, size, split, **options)
    return Sample(kind=kind, index=index, seed=seed, split=split, stack=built["stack"],
                  caption=built["caption"], boxes=built["boxes"],
                  extras=built.get("extras", {}), meta=built.get("meta", {}))
