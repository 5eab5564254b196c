"""Layered editing memory: edit a picture step by step (add, replace, remove, undo) without
disturbing earlier edits, on any SD 1.5-, SDXL- or PixArt-shaped text-to-image model; every
edit becomes a layer. See :mod:`.pipeline` for the method."""

from .layers import memory_stack
from .memory import EditMemory, MemoryStep
from .pipeline import LayeredMemoryEditPipeline, LayeredMemoryOutput

__all__ = ["EditMemory", "LayeredMemoryEditPipeline", "LayeredMemoryOutput", "MemoryStep",
           "memory_stack"]
