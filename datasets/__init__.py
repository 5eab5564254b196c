"""Procedural layered datasets with exact ground truth (installed as ``layerstudio.datasets``,
never as a top-level ``datasets``, which is Hugging Face's).

Generators: ``objects``, ``effects``, ``alpha_blend``, ``anime``, ``transparent``; each sample
is a :class:`Sample` with a :class:`~layerstudio.LayerStack`, captions, boxes and extras.
See docs/datasets.md.
"""

from .generate import GENERATORS, SPLITS, generate
from .sample import Box, Sample

__all__ = ["GENERATORS", "SPLITS", "Box", "Sample", "generate"]
