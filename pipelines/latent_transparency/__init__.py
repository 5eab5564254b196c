"""Latent transparency (LayerDiffuse: Zhang & Agrawala 2024, "Transparent Image Layer
Diffusion using Latent Transparency").

A latent diffusion model learns to generate in a "transparent latent space": latents of the
frozen base VAE plus an offset, written by :class:`TransparentVAEEncoder`, that carries alpha;
:class:`TransparentVAEDecoder` reads alpha and straight colour back out. See
``docs/latent_transparency.md``.
"""

from .attention_sharing import (
    AttentionSharingAdapter,
    load_released_attention_sharing,
    sharing_targets,
)
from .codec import (
    decode_opaque,
    decode_rgba,
    encode_rgba,
    premultiplied_on_grey,
    rgb_tensors,
    rgba_tensors,
)
from .conditioned import ConditionedTransparencyPipeline
from .conditioned_xl import ConditionedTransparencyXLPipeline
from .img2img import LatentTransparencyImg2ImgPipeline
from .joint import JointTransparencyPipeline
from .models import TransparentVAEDecoder, TransparentVAEEncoder
from .padding import pad_rgb
from .pipeline import (
                       LatentTransparencyPipeline,
                       LatentTransparencyXLPipeline,
                       TransparentPipelineOutput,
                       rgba_to_stack,
)

__all__ = [
    "AttentionSharingAdapter",
    "ConditionedTransparencyPipeline",
    "ConditionedTransparencyXLPipeline",
    "JointTransparencyPipeline",
    "LatentTransparencyImg2ImgPipeline",
    "LatentTransparencyPipeline",
    "LatentTransparencyXLPipeline",
    "TransparentPipelineOutput",
    "TransparentVAEDecoder",
    "TransparentVAEEncoder",
    "decode_opaque",
    "decode_rgba",
    "encode_rgba",
    "load_released_attention_sharing",
    "pad_rgb",
    "premultiplied_on_grey",
    "rgb_tensors",
    "rgba_tensors",
    "rgba_to_stack",
    "sharing_targets",
]
