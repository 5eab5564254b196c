"""In-context decomposition on the ART transformer: given pictures and noisy targets as token
streams of one canvas, in one joint attention with the text.

LayerDecomp (picture + mask -> background + object with effects) and DiffDecompose (composite
-> background + see-through layer) are the same machine: every stream covers the whole canvas;
the condition streams are given and kept clean at every step (their velocity is zero), the
target streams are denoised from noise by rectified flow. A stream's learned type embedding
says what it is, and its id on the rotary layer axis where it sits: by default each stream
its own, or shared (DiffDecompose's Layer Position Encoding Cloning: background and composite
one code, so pixel correspondence is explicit).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import PIL.Image
import torch
from diffusers.utils.torch_utils import randn_tensor

from .anonymous_region import AnonymousRegionPipeline

__all__ = ["InContextPipeline", "as_image_batch", "per_prompt"]


def as_image_batch(value: Any, channels: int) -> torch.Tensor:
    """(B, channels, H, W) in [0, 1] from an (H, W[, C]) array (uint8 or float), a PIL image
    or a (B, C, H, W) / (C, H, W) tensor."""
    if isinstance(value, torch.Tensor):
        return value.float() if value.dim() == 4 else value.float()[None]
    array = np.asarray(value.convert("RGB" if channels == 3 else "L")
                       if isinstance(value, PIL.Image.Image) else value)
    array = array.astype(np.float32) / (255.0 if array.dtype == np.uint8 else 1.0)
    if array.ndim == 2:
        array = array[..., None]
    return torch.from_numpy(np.ascontiguousarray(array[..., :channels])).permute(2, 0, 1)[None]


def per_prompt(tensor: torch.Tensor, count: int) -> torch.Tensor:
    """One picture for every prompt, or one each."""
    if tensor.shape[0] == count:
        return tensor
    if tensor.shape[0] == 1:
        return tensor.expand(count, *tensor.shape[1:])
    if count % tensor.shape[0] == 0:
        return tensor.repeat_interleave(count // tensor.shape[0], dim=0)
    raise ValueError(f"{tensor.shape[0]} pictures for {count} prompts")


class InContextPipeline(AnonymousRegionPipeline):
    """The shared sampling of the in-context decomposition pipelines."""

    @torch.no_grad()
    def encode_picture(self, image: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) RGB in [0, 1] -> the scaled VAE latent (its mean)."""
        vae = self.vae
        latent = vae.encode((image * 2 - 1).to(vae.device, vae.dtype)).latent_dist.mean
        return (latent - (vae.config.shift_factor or 0.0)) * vae.config.scaling_factor

    def picture_and_text(self, image: Any, prompt: Any, negative_prompt: Any,
                         num_images_per_prompt: int, max_sequence_length: int | None,
                         tensor_inputs: tuple[str, ...], embeddings: tuple,
                         guidance_scale: float
                         ) -> tuple[torch.Tensor, list[str], torch.Tensor, torch.Tensor,
                                    torch.Tensor]:
        """What a one-picture decomposition starts from: (the RGB pictures (B, 3, H, W) in
        [0, 1], one per prompt; the prompts ("" when none is given); the text and pooled
        embeddings, guided; the pictures' latents (B, 1, C, h, w) as the condition
        stream)."""
        pixels = as_image_batch(image, 3)
        if pixels.shape[1] != 3:
            raise ValueError("image must be RGB")
        self._latent_grid(*pixels.shape[-2:])
        self._guidance_scale = guidance_scale
        if prompt is None and embeddings[0] is None:
            prompt = ""
        prompts, _, text, pooled = self.guided_text(
            prompt, negative_prompt, num_images_per_prompt, max_sequence_length,
            tensor_inputs, embeddings)
        pixels = per_prompt(pixels, len(prompts))
        conditions = self.encode_picture(pixels.to(self._execution_device))[:, None]
        return pixels, prompts, text, pooled, conditions.to(text.dtype)

    def canvas_layout(self, height: int, width: int, streams: int
                      ) -> list[tuple[int, int, int, int]]:
        """Every stream covers the whole canvas (token boxes)."""
        self._latent_grid(height, width)
        canvas = (0, 0, width // self.token_grid, height // self.token_grid)
        return [canvas] * streams

    def denoise_streams(self, conditions: torch.Tensor, slots: Sequence[int], streams: int,
                        text: torch.Tensor, pooled: torch.Tensor, *, num_inference_steps: int,
                        generator: torch.Generator | list[torch.Generator] | None,
                        latents: torch.Tensor | None,
                        callback_on_step_end: Callable[[Any, int, torch.Tensor, dict], dict]
                        | None, callback_on_step_end_tensor_inputs: tuple[str, ...],
                        layer_types: Sequence[int] | None = None,
                        position_layers: Sequence[int] | None = None) -> torch.Tensor:
        """(B, streams, C, h, w) latents: ``conditions`` (B, len(slots), C, h, w) in stream
        positions ``slots``, kept clean; the other streams denoised from ``latents`` (or noise
        from ``generator``)."""
        batch, _, channels, rows, cols = conditions.shape
        shape = (batch, streams, channels, rows, cols)
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=conditions.device,
                                   dtype=text.dtype)
        elif tuple(latents.shape) != shape:
            raise ValueError(f"latents must have shape {shape}, got {tuple(latents.shape)}")
        slots = list(slots)
        latents = latents.to(conditions.device, text.dtype).clone()
        latents[:, slots] = conditions
        height, width = rows * self.vae_scale_factor, cols * self.vae_scale_factor
        layout = self.canvas_layout(height, width, streams)

        def predict(model_input: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
            model_input = model_input.clone()
            model_input[:, slots] = conditions.repeat(
                model_input.shape[0] // batch, 1, 1, 1, 1)
            velocity = self.transformer(model_input, layout, time, text, pooled,
                                        full_attention=True, return_dict=False,
                                        layer_types=layer_types,
                                        position_layers=position_layers)[0]
            velocity[:, slots] = 0  # the given streams stay as they are
            return velocity

        count = streams * (height // self.token_grid) * (width // self.token_grid)
        return self.denoise(latents, predict, count, num_inference_steps, text,
                            callback_on_step_end, callback_on_step_end_tensor_inputs)
