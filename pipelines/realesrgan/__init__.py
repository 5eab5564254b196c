"""Real-ESRGAN's compact upscaler, converted from the released ncnn files, and alpha-aware
tiled upscaling of layers."""

from .compact import CompactUpscaler, from_ncnn

__all__ = ["CompactUpscaler", "from_ncnn"]
