"""Qwen-Image-Layered decomposition (``--method qwen-image-layered``): diffusers' pipeline with
its known bugs fixed, returning layer stacks; tiny offline components for tests."""

from .pipeline import QwenLayeredOutput, QwenLayeredPipeline
from .tiny import tiny_qwen_layered_components, tiny_qwen_tokenizer

__all__ = ["QwenLayeredOutput", "QwenLayeredPipeline", "tiny_qwen_layered_components",
           "tiny_qwen_tokenizer"]
