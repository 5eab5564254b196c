"""Transparent foreground from text: Stable Diffusion (1.5- or XL-shaped) whose U-Net was
fine-tuned into the "transparent latent space", decoded by the transparent decoder.

Sampling is exactly the parent diffusers pipeline's (schedulers, guidance, callbacks, CPU
offload): the parents run with ``output_type="latent"`` and this module only replaces the final
decode, so every option of ``StableDiffusionPipeline`` / ``StableDiffusionXLPipeline`` works.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import PIL.Image
import torch
from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
from diffusers.utils import BaseOutput

from layerstudio.document import Layer, LayerStack
from layerstudio.imaging import over_checkerboard

from ..output_types import check_output_type, pictures_as
from .codec import decode_rgba
from .models import TransparentVAEDecoder, TransparentVAEEncoder

__all__ = ["LatentTransparencyPipeline", "LatentTransparencyXLPipeline",
           "TransparentPipelineOutput", "rgba_to_stack"]


@dataclass
class TransparentPipelineOutput(BaseOutput):
    """``images``: RGBA PIL images (a (B, H, W, 4) float array for ``output_type="np"``, a
    (B, 4, H, W) tensor for "pt", the latents for "latent"); ``layers``: one
    :class:`LayerStack` per image, ready to export (none for "latent")."""

    images: list[PIL.Image.Image] | np.ndarray | torch.Tensor
    layers: list[LayerStack]

    def previews(self, cell: int = 8) -> list[PIL.Image.Image]:
        """The images over a grey checkerboard, as editors show transparency."""
        return [over_checkerboard(stack.composite(), cell) for stack in self.layers]


def rgba_to_stack(rgba: np.ndarray, name: str, provenance: dict[str, Any]) -> LayerStack:
    """One straight-RGBA uint8 image as a one-layer stack, the layer cropped to its content."""
    height, width = rgba.shape[:2]
    layer = Layer(name, rgba, kind="object", provenance=provenance)
    if not layer.is_empty:
        layer = layer.cropped_to_content()
    return LayerStack(width, height, [layer], metadata=dict(provenance))


def prompt_count(prompt: str | list[str] | None, prompt_embeds: torch.Tensor | None) -> int:
    """How many prompts a call has: its list, its embeddings' batch, or one."""
    if prompt is None and prompt_embeds is not None:
        return prompt_embeds.shape[0]
    return 1 if prompt is None or isinstance(prompt, str) else len(prompt)


def _forwarded(arguments: dict[str, Any], own: tuple[str, ...] = ()) -> dict[str, Any]:
    """A ``__call__``'s own arguments (its ``locals()``) as keywords for the diffusers parent:
    all but ``self``, the ones every transparent pipeline handles itself and ``own``."""
    forwarded = {key: value for key, value in arguments.items()
                 if key not in ("self", "prompt", "augment", "output_type", "return_dict",
                                "__class__", *own)}
    forwarded["callback_on_step_end_tensor_inputs"] = \
        forwarded.get("callback_on_step_end_tensor_inputs") or ["latents"]
    return forwarded


class _TransparentDecodeMixin:
    """The part both pipelines share: latents -> RGBA -> outputs."""

    def _prompts(self, prompt: str | list[str] | None, count: int) -> list[str]:
        if prompt is None:
            return [""] * count
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        per = max(1, count // max(1, len(prompts)))
        return [p for p in prompts for _ in range(per)]

    @torch.no_grad()
    def _decoded(self, latents: torch.Tensor, augment: bool) -> np.ndarray:
        """Scaled latents -> straight RGBA, (B, H, W, 4) float in [0, 1]."""
        unscaled = latents / self.vae.config.scaling_factor
        rgba = decode_rgba(self.vae, self.transparent_decoder, unscaled, augment=augment)
        return rgba.permute(0, 2, 3, 1).cpu().numpy()

    def _packaged(self, array: np.ndarray, prompt, output_type: str, extra: dict[str, Any]
                  ) -> TransparentPipelineOutput:
        as_uint8 = np.rint(array * 255).clip(0, 255).astype(np.uint8)
        stacks = [rgba_to_stack(image, "foreground",
                                {"pipeline": type(self).__name__, "prompt": text, **extra})
                  for image, text in zip(as_uint8, self._prompts(prompt, len(as_uint8)),
                                         strict=True)]
        return TransparentPipelineOutput(images=pictures_as(array, output_type), layers=stacks)

    def decode_latents_rgba(self, latents: torch.Tensor, augment: bool = False) -> np.ndarray:
        """What ``output_type="latent"`` returned -> straight RGBA (B, H, W, 4) in [0, 1]."""
        return self._decoded(latents, augment)

    def _run(self, parent_call, prompt, output_type: str, augment: bool, return_dict: bool,
             kwargs: dict[str, Any]):
        check_output_type(output_type)
        for name in ("output_type", "return_dict"):
            kwargs.pop(name, None)
        latents = parent_call(self, prompt=prompt, output_type="latent", **kwargs).images
        if output_type == "latent":
            self.maybe_free_model_hooks()
            result = TransparentPipelineOutput(images=latents, layers=[])
            return result if return_dict else (result.images, result.layers)
        extra = {key: kwargs[key] for key in ("num_inference_steps", "guidance_scale")
                 if key in kwargs}
        result = self._packaged(self._decoded(latents, augment), prompt, output_type, extra)
        self.maybe_free_model_hooks()
        return result if return_dict else (result.images, result.layers)


class LatentTransparencyPipeline(_TransparentDecodeMixin, StableDiffusionPipeline):
    """SD1.5-shaped LayerDiffuse: ``pipe("a glass cup").layers[0]`` is a transparent layer.

    Components beyond ``StableDiffusionPipeline``'s: ``transparent_decoder`` (required) and
    ``transparent_encoder`` (for encoding RGBA inputs and for training).
    """

    model_cpu_offload_seq = "text_encoder->unet->vae->transparent_decoder"
    _optional_components: ClassVar[list[str]] = [
        "safety_checker", "feature_extractor", "image_encoder", "transparent_encoder"]

    def __init__(self, vae, text_encoder, tokenizer, unet, scheduler,
                 transparent_decoder: TransparentVAEDecoder,
                 transparent_encoder: TransparentVAEEncoder | None = None,
                 safety_checker=None, feature_extractor=None, image_encoder=None,
                 requires_safety_checker: bool = False) -> None:
        super().__init__(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                         scheduler=scheduler, safety_checker=safety_checker,
                         feature_extractor=feature_extractor, image_encoder=image_encoder,
                         requires_safety_checker=requires_safety_checker)
        self.register_modules(transparent_decoder=transparent_decoder,
                              transparent_encoder=transparent_encoder)

    def __call__(self, prompt: str | list[str] | None = None, height: int | None = None,
                 width: int | None = None, num_inference_steps: int = 50,
                 timesteps: list[int] | None = None, sigmas: list[float] | None = None,
                 guidance_scale: float = 7.5, negative_prompt: str | list[str] | None = None,
                 num_images_per_prompt: int | None = 1, eta: float = 0.0,
                 generator: torch.Generator | list[torch.Generator] | None = None,
                 latents: torch.Tensor | None = None,
                 prompt_embeds: torch.Tensor | None = None,
                 negative_prompt_embeds: torch.Tensor | None = None,
                 ip_adapter_image: Any = None,
                 ip_adapter_image_embeds: list[torch.Tensor] | None = None,
                 output_type: str = "pil", return_dict: bool = True,
                 cross_attention_kwargs: dict[str, Any] | None = None,
                 guidance_rescale: float = 0.0, clip_skip: int | None = None,
                 callback_on_step_end: Callable | None = None,
                 callback_on_step_end_tensor_inputs: list[str] | None = None,
                 augment: bool = False) -> TransparentPipelineOutput | tuple:
        """``StableDiffusionPipeline.__call__``'s arguments in its order, plus ``augment``
        (8-pass median decode, slower, cleaner alpha). ``output_type`` "pil" or "np" gives
        RGBA pictures and layers; "latent" gives the latents (``images``) for
        :meth:`decode_latents_rgba`. Returns :class:`TransparentPipelineOutput`."""
        arguments = _forwarded(locals())
        return self._run(StableDiffusionPipeline.__call__, prompt, output_type, augment,
                         return_dict, arguments)


class LatentTransparencyXLPipeline(_TransparentDecodeMixin, StableDiffusionXLPipeline):
    """SDXL-shaped LayerDiffuse (the released ``layer_xl_transparent_*`` models)."""

    model_cpu_offload_seq = "text_encoder->text_encoder_2->unet->vae->transparent_decoder"
    _optional_components: ClassVar[list[str]] = [
        "tokenizer", "tokenizer_2", "text_encoder", "text_encoder_2", "image_encoder",
        "feature_extractor", "transparent_encoder"]

    def __init__(self, vae, text_encoder, text_encoder_2, tokenizer, tokenizer_2, unet,
                 scheduler, transparent_decoder: TransparentVAEDecoder,
                 transparent_encoder: TransparentVAEEncoder | None = None,
                 image_encoder=None, feature_extractor=None,
                 force_zeros_for_empty_prompt: bool = True) -> None:
        super().__init__(vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2,
                         tokenizer=tokenizer, tokenizer_2=tokenizer_2, unet=unet,
                         scheduler=scheduler, image_encoder=image_encoder,
                         feature_extractor=feature_extractor,
                         force_zeros_for_empty_prompt=force_zeros_for_empty_prompt,
                         add_watermarker=False)
        self.register_modules(transparent_decoder=transparent_decoder,
                              transparent_encoder=transparent_encoder)

    def __call__(self, prompt: str | list[str] | None = None,
                 prompt_2: str | list[str] | None = None, height: int | None = None,
                 width: int | None = None, num_inference_steps: int = 50,
                 timesteps: list[int] | None = None, sigmas: list[float] | None = None,
                 denoising_end: float | None = None, guidance_scale: float = 5.0,
                 negative_prompt: str | list[str] | None = None,
                 negative_prompt_2: str | list[str] | None = None,
                 num_images_per_prompt: int | None = 1, eta: float = 0.0,
                 generator: torch.Generator | list[torch.Generator] | None = None,
                 latents: torch.Tensor | None = None,
                 prompt_embeds: torch.Tensor | None = None,
                 negative_prompt_embeds: torch.Tensor | None = None,
                 pooled_prompt_embeds: torch.Tensor | None = None,
                 negative_pooled_prompt_embeds: torch.Tensor | None = None,
                 ip_adapter_image: Any = None,
                 ip_adapter_image_embeds: list[torch.Tensor] | None = None,
                 output_type: str = "pil", return_dict: bool = True,
                 cross_attention_kwargs: dict[str, Any] | None = None,
                 guidance_rescale: float = 0.0,
                 original_size: tuple[int, int] | None = None,
                 crops_coords_top_left: tuple[int, int] = (0, 0),
                 target_size: tuple[int, int] | None = None,
                 negative_original_size: tuple[int, int] | None = None,
                 negative_crops_coords_top_left: tuple[int, int] = (0, 0),
                 negative_target_size: tuple[int, int] | None = None,
                 clip_skip: int | None = None, callback_on_step_end: Callable | None = None,
                 callback_on_step_end_tensor_inputs: list[str] | None = None,
                 augment: bool = False) -> TransparentPipelineOutput | tuple:
        """``StableDiffusionXLPipeline.__call__``'s arguments in its order, plus ``augment``;
        outputs as :class:`LatentTransparencyPipeline`'s."""
        return self._run(StableDiffusionXLPipeline.__call__, prompt, output_type, augment,
                         return_dict, _forwarded(locals()))
