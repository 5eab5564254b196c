"""Real-ESRGAN's compact upscaler, converted from the released ncnn files, and alpha-aware
tiled upscaling of layers."""

from .compact import CompactUpscaler, from_ncnn
from .pipeline import RealESRGANOutput, RealESRGANPipeline

__all__ = ["CompactUpscaler", "RealESRGANOutput", "RealESRGANPipeline", "from_ncnn"]
