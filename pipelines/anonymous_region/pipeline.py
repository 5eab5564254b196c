"""``AnonymousRegionPipeline``: one global prompt + boxes -> a background and one transparent
layer per box (ART, Pu et al. 2025, "ART: Anonymous Region Transformer for Variable
Multi-Layer Transparent Image Generation").

Sampling is rectified flow as in :mod:`..dit_text_to_image` (FLUX's time shift, computed from
the layout's token count; Euler steps), over latents of shape (B, L, C, H, W): layer 0 the
merged image, 1 the background, 2.. the regions. Guidance is true classifier-free guidance
against the negative prompt. Afterwards every layer's latent outside its box is set to the
latent of plain mid grey (what "nothing" looks like in a layer premultiplied on grey), the base
VAE decodes each layer, and :class:`MultiLayerTransparentDecoder` turns them into RGBA.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import PIL.Image
import torch
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

from layerstudio.document import Layer, LayerStack

from ..dit_text_to_image import DiTTextToImagePipeline
from ..output_types import check_output_type, pictures_as
from .decoder import MultiLayerTransparentDecoder
from .layout import Box, snap_boxes, token_box_pixels
from .regions import TokenBox, box_mask, token_count
from .transformer import AnonymousRegionTransformer

__all__ = ["AnonymousRegionPipeline", "AnonymousRegionPipelineOutput"]


@dataclass
class AnonymousRegionPipelineOutput(BaseOutput):
    """``layers``: one :class:`LayerStack` per image (background, one layer per box, the
    model's merged image as a hidden reference); ``images``: their composites (PIL RGBA, a
    (B, H, W, 4) float array for ``output_type="np"``, (B, 4, H, W) for "pt"); ``rgba``:
    every layer's RGBA, (B, L, H, W, 4) float in [0, 1], in the model's order (merged,
    background, regions)."""

    images: list[PIL.Image.Image] | np.ndarray | torch.Tensor
    layers: list[LayerStack]
    rgba: np.ndarray


class AnonymousRegionPipeline(DiTTextToImagePipeline):
    """``pipe("a cat and a ball on a lawn", boxes=[(4, 8, 24, 24), (36, 30, 20, 20)])``."""

    model_cpu_offload_seq = "text_encoder->text_encoder_2->transformer->vae->transparent_decoder"

    def __init__(self, vae: AutoencoderKL, text_encoder, tokenizer,
                 transformer: AnonymousRegionTransformer,
                 scheduler: FlowMatchEulerDiscreteScheduler,
                 transparent_decoder: MultiLayerTransparentDecoder,
                 text_encoder_2=None, tokenizer_2=None) -> None:
        super().__init__(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                         transformer=transformer, scheduler=scheduler,
                         text_encoder_2=text_encoder_2, tokenizer_2=tokenizer_2)
        self.register_modules(transparent_decoder=transparent_decoder)

    @property
    def token_grid(self) -> int:
        """Pixels per token side: the VAE's downsampling times the 2 x 2 packing."""
        return self.vae_scale_factor * 2

    def layout(self, boxes: Sequence[Box], width: int, height: int,
               max_tokens: int | None = None) -> list[TokenBox]:
        """The model's layers as token boxes: merged image, background, then ``boxes``
        snapped outward to the token grid (errors name a bad box)."""
        self._latent_grid(height, width)
        snapped = snap_boxes(boxes, width, height, self.token_grid,
                             self.transformer.config.max_layers, max_tokens)
        canvas = (0, 0, width // self.token_grid, height // self.token_grid)
        return [canvas, canvas, *snapped]

    @torch.no_grad()
    def __call__(self, prompt: str | list[str] | None = None,
                 boxes: Sequence[Box] | None = None, *,
                 negative_prompt: str | list[str] | None = None, height: int = 64,
                 width: int = 64, num_inference_steps: int = 20, guidance_scale: float = 4.0,
                 num_images_per_prompt: int = 1,
                 generator: torch.Generator | list[torch.Generator] | None = None,
                 latents: torch.Tensor | None = None,
                 prompt_embeds: torch.Tensor | None = None,
                 pooled_prompt_embeds: torch.Tensor | None = None,
                 negative_prompt_embeds: torch.Tensor | None = None,
                 negative_pooled_prompt_embeds: torch.Tensor | None = None,
                 output_type: str = "pil", return_dict: bool = True,
                 callback_on_step_end: Callable[[Any, int, torch.Tensor, dict], dict] | None
                 = None,
                 callback_on_step_end_tensor_inputs: tuple[str, ...] = ("latents",),
                 max_sequence_length: int | None = None, full_attention: bool = False,
                 max_tokens: int | None = None):
        """Generate. ``boxes``: ``(x, y, w, h)`` pixels per region, bottom to top (any number
        up to the model's ``max_layers`` - 2); ``guidance_scale`` > 1 is true CFG (a step-end
        callback may change ``pipe._guidance_scale``); ``full_attention`` runs every layer over
        the whole canvas (slow; for comparison); ``output_type`` "pil", "np", "pt" or "latent" (then
        ``images`` and ``rgba`` hold the (B, L, C, h, w) latents, for ``decode_layers``)."""
        check_output_type(output_type)
        if boxes is None:
            raise ValueError("boxes are required: (x, y, w, h) pixels per region")
        layout = self.layout(boxes, width, height, max_tokens)
        self._guidance_scale = guidance_scale
        prompts, _, text, pooled = self.guided_text(
            prompt, negative_prompt, num_images_per_prompt, max_sequence_length,
            callback_on_step_end_tensor_inputs,
            (prompt_embeds, pooled_prompt_embeds, negative_prompt_embeds,
             negative_pooled_prompt_embeds))
        device = self._execution_device
        rows, cols = height // self.vae_scale_factor, width // self.vae_scale_factor
        channels = self.transformer.config.in_channels // 4
        shape = (len(prompts), len(layout), channels, rows, cols)
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=device, dtype=text.dtype)
        elif tuple(latents.shape) != shape:
            raise ValueError(f"latents must have shape {shape}, got {tuple(latents.shape)}")
        latents = latents.to(device, text.dtype)

        def predict(model_input: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
            return self.transformer(model_input, layout, time, text, pooled,
                                    full_attention=full_attention, return_dict=False)[0]

        latents = self.denoise(latents, predict, token_count(layout), num_inference_steps,
                               text, callback_on_step_end, callback_on_step_end_tensor_inputs)

        if output_type == "latent":
            result = AnonymousRegionPipelineOutput(images=latents, layers=[], rgba=latents)
        else:
            rgba = self.decode_layers(latents, layout)
            result = self._packaged(rgba, layout, boxes, prompts, output_type,
                                    {"num_inference_steps": num_inference_steps,
                                     "guidance_scale": guidance_scale,
                                     "full_attention": full_attention})
        self.maybe_free_model_hooks()
        return result if return_dict else (result.images, result.layers, result.rgba)

    # --- decoding -----------------------------------------------------------------------

    @torch.no_grad()
    def grey_latent(self, height: int, width: int) -> torch.Tensor:
        """The scaled latent of plain mid grey, (C, h, w)."""
        grey = torch.zeros(1, 3, height, width, device=self.vae.device, dtype=self.vae.dtype)
        latent = self.vae.encode(grey).latent_dist.mean[0]
        return (latent - (self.vae.config.shift_factor or 0.0)) * self.vae.config.scaling_factor

    @torch.no_grad()
    def decode_layers(self, latents: torch.Tensor, layout: Sequence[TokenBox]) -> torch.Tensor:
        """(B, L, C, h, w) scaled latents -> (B, L, 4, H, W) straight RGBA in [0, 1]; the
        merged image and the background are opaque, regions have alpha 0 outside their box."""
        batch, layers, _channels, rows, cols = latents.shape
        scale = self.vae_scale_factor
        inside = box_mask(layout, rows // 2, cols // 2, latents, scale=2)
        grey = self.grey_latent(rows * scale, cols * scale).to(latents.dtype)
        latents = torch.where(inside.bool(), latents, grey)
        unscaled = latents / self.vae.config.scaling_factor + (self.vae.config.shift_factor or 0)
        pictures = self.vae.decode(unscaled.flatten(0, 1).to(self.vae.dtype)).sample
        pictures = (pictures.float() / 2 + 0.5).clamp(0, 1).unflatten(0, (batch, layers))
        decoder = self.transparent_decoder
        rgba = decoder(pictures.to(decoder.dtype), unscaled.to(decoder.dtype), layout).float()
        rgba[:, :2, 3] = 1.0  # merged image and background are opaque
        rgba[:, :2, :3] = pictures[:, :2]
        return rgba

    def _packaged(self, rgba: torch.Tensor, layout: Sequence[TokenBox], boxes: Sequence[Box],
                  prompts: list[str], output_type: str, extra: dict[str, Any]
                  ) -> AnonymousRegionPipelineOutput:
        array = rgba.permute(0, 1, 3, 4, 2).cpu().numpy()
        as_uint8 = np.rint(array * 255).clip(0, 255).astype(np.uint8)
        stacks = []
        for layers, text in zip(as_uint8, prompts, strict=True):
            height, width = layers.shape[1:3]
            info = {"pipeline": type(self).__name__, "prompt": text, "regions": len(boxes),
                    **extra}
            stack = LayerStack(width, height, metadata=info)
            stack.add(Layer("background", layers[1], kind="background", provenance=info))
            for index, (box, token_box) in enumerate(zip(boxes, layout[2:], strict=True)):
                x, y, w, h = token_box_pixels(token_box, self.token_grid)
                stack.add(Layer(f"region {index + 1}", layers[index + 2][y:y + h, x:x + w],
                                offset=(x, y), kind="object",
                                provenance={**info, "box": list(box),
                                            "snapped_box": [x, y, w, h]}))
            stack.add(Layer("merged (as generated)", layers[0], kind="reference",
                            visible=False, provenance=info))
            stacks.append(stack)
        images = pictures_as(np.stack([stack.composite_array() for stack in stacks]),
                             output_type)
        return AnonymousRegionPipelineOutput(images=images, layers=stacks, rgba=array)
