"""``LayerDecompPipeline``: a picture and an object mask -> a clean background and an RGBA
object layer that carries the object's shadows, reflections and glow (LayerDecomp, Yang et
al. 2024, "Generative Image Layer Decomposition with Visual Effects").

One MMDiT sequence holds four token streams, told apart by a learned per-stream embedding and
the first rotary axis (:class:`~..anonymous_region.AnonymousRegionTransformer`, whose "layers"
are these streams): 0 the picture and 3 the mask (conditions, kept clean at every step), 1 the
background and 2 the foreground (targets, denoised by rectified flow from noise). Targets are
LayerDiffuse-style latents (colour premultiplied on mid grey, the base VAE's latent), so the
multi-layer transparent decoder turns the foreground's into RGBA, reading the picture and the
background beside it. Sampling is :mod:`..dit_text_to_image`'s Euler loop; the velocity of the
condition streams is zero, so they stay what was given. Repeated calls on the returned
background peel objects one by one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F
from diffusers.utils import BaseOutput

from layerstudio.document import LayerStack

from ..in_context import InContextPipeline, as_image_batch, per_prompt
from ..output_types import check_output_type, pictures_as
from .layers import Extraction, effects_stack

__all__ = ["STREAMS", "LayerDecompPipeline", "LayerDecompPipelineOutput", "mask_latent"]

STREAMS = ("image", "background", "foreground", "mask")
"""The token streams in sequence order (their index is the stream embedding and rotary id)."""
CONDITIONS = (0, 3)
TARGETS = (1, 2)


@dataclass
class LayerDecompPipelineOutput(BaseOutput):
    """``images``: the object-with-effects layers, RGBA (PIL images, a (B, H, W, 4) float
    array for ``output_type="np"``, (B, 4, H, W) for "pt"; the (B, 4, C, h, w) stream latents
    for "latent"); ``layers``: one :class:`LayerStack` per picture ([background, object with
    effects], or the effects apart with ``separate_effects``); ``extractions``: the parts as
    arrays (:class:`~.layers.Extraction`). ``layers`` and ``extractions`` are empty for
    latents."""

    images: list[PIL.Image.Image] | np.ndarray | torch.Tensor
    layers: list[LayerStack]
    extractions: list[Extraction]


def mask_latent(mask: torch.Tensor, channels: int, size: tuple[int, int]) -> torch.Tensor:
    """(B, 1, H, W) mask in [0, 1] -> the mask stream (B, channels, h, w) in [-1, 1]: the
    share of each latent cell the object covers, the same in every channel."""
    cells = F.interpolate(mask.float(), size=size, mode="area")
    return (cells * 2 - 1).expand(-1, channels, -1, -1)


class LayerDecompPipeline(InContextPipeline):
    """``pipe(picture, mask)`` -> background + object with its effects."""

    @torch.no_grad()
    def encode_conditions(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) RGB in [0, 1] and (B, 1, H, W) mask -> (B, 2, C, h, w): the scaled
        picture latent and the mask stream."""
        latent = self.encode_picture(image)
        stream = mask_latent(mask.to(latent.device), latent.shape[1], latent.shape[-2:])
        return torch.stack([latent, stream.to(latent.dtype)], dim=1)

    @torch.no_grad()
    def __call__(self, image: Any = None, mask: Any = None,
                 prompt: str | list[str] | None = None, *,
                 negative_prompt: str | list[str] | None = None,
                 num_inference_steps: int = 20, guidance_scale: float = 1.0,
                 num_images_per_prompt: int = 1,
                 generator: torch.Generator | list[torch.Generator] | None = None,
                 latents: torch.Tensor | None = None,
                 prompt_embeds: torch.Tensor | None = None,
                 pooled_prompt_embeds: torch.Tensor | None = None,
                 negative_prompt_embeds: torch.Tensor | None = None,
                 negative_pooled_prompt_embeds: torch.Tensor | None = None,
                 separate_effects: bool = False, output_type: str = "pil",
                 return_dict: bool = True,
                 callback_on_step_end: Callable[[Any, int, torch.Tensor, dict], dict] | None
                 = None,
                 callback_on_step_end_tensor_inputs: tuple[str, ...] = ("latents",),
                 max_sequence_length: int | None = None):
        """Decompose. ``image``: (H, W, 3) float RGB in [0, 1], a PIL image or a (B, 3, H, W)
        tensor; ``mask``: (H, W) booleans / [0, 1] floats, PIL or (B, 1, H, W): the object (a
        tight mask or a box is enough). The output size is the picture's. ``prompt``
        (optional, default empty) describes the picture; one picture serves every prompt,
        or give one per prompt. ``guidance_scale`` > 1 is true CFG against
        ``negative_prompt``. ``output_type``: "pil", "np", "pt" or "latent"."""
        check_output_type(output_type)
        if image is None or mask is None:
            raise ValueError("LayerDecomp needs the picture and the object's mask")
        pixels, region = _as_tensors(image, mask)
        self._latent_grid(*pixels.shape[-2:])
        self._guidance_scale = guidance_scale
        if prompt is None and prompt_embeds is None:
            prompt = ""
        prompts, _, text, pooled = self.guided_text(
            prompt, negative_prompt, num_images_per_prompt, max_sequence_length,
            callback_on_step_end_tensor_inputs,
            (prompt_embeds, pooled_prompt_embeds, negative_prompt_embeds,
             negative_pooled_prompt_embeds))
        batch = len(prompts)
        pixels, region = per_prompt(pixels, batch), per_prompt(region, batch)
        device = self._execution_device
        conditions = self.encode_conditions(pixels.to(device), region.to(device)).to(text.dtype)
        latents = self.denoise_streams(
            conditions, CONDITIONS, len(STREAMS), text, pooled,
            num_inference_steps=num_inference_steps, generator=generator, latents=latents,
            callback_on_step_end=callback_on_step_end,
            callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs)
        if output_type == "latent":
            result = LayerDecompPipelineOutput(images=latents, layers=[], extractions=[])
        else:
            extractions = self.extract(latents, region)
            info = {"pipeline": type(self).__name__, "num_inference_steps": num_inference_steps,
                    "guidance_scale": guidance_scale}
            stacks = []
            for extraction, text_prompt in zip(extractions, prompts, strict=True):
                stack = effects_stack(extraction, separate_effects)
                stack.metadata.update(info, prompt=text_prompt)
                stacks.append(stack)
            foregrounds = np.stack([extraction.foreground() for extraction in extractions])
            result = LayerDecompPipelineOutput(images=pictures_as(foregrounds, output_type),
                                               layers=stacks, extractions=extractions)
        self.maybe_free_model_hooks()
        return result if return_dict else (result.images, result.layers, result.extractions)

    @torch.no_grad()
    def decode_streams(self, latents: torch.Tensor) -> np.ndarray:
        """(B, 4, C, h, w) stream latents -> (B, 3, H, W, 4) float RGBA of the picture, the
        background and the foreground (what ``output_type="latent"`` chains into)."""
        rows, cols = latents.shape[-2:]
        layout = self.canvas_layout(rows * self.vae_scale_factor, cols * self.vae_scale_factor, 3)
        rgba = self.decode_layers(latents[:, :3], layout)
        return rgba.permute(0, 1, 3, 4, 2).float().cpu().numpy()

    def extract(self, latents: torch.Tensor, mask: Any) -> list[Extraction]:
        """Stream latents and the object mask ((B, 1, H, W), or one (H, W) for all) ->
        one :class:`Extraction` per picture: the foreground inside the slightly grown mask is
        the object, outside it the effect."""
        rgba = self.decode_streams(latents)
        masks = np.asarray(mask.cpu()[:, 0] if isinstance(mask, torch.Tensor) else mask)
        masks = np.broadcast_to(masks, (len(rgba), *rgba.shape[2:4]))
        return [_extraction(layers, object_mask)
                for layers, object_mask in zip(rgba, masks, strict=True)]


def _as_tensors(image: Any, mask: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 3, H, W) RGB and (B, 1, H, W) mask in [0, 1] from arrays, PIL images or tensors."""
    pixels, region = as_image_batch(image, 3), as_image_batch(mask, 1)
    if pixels.shape[1] != 3 or region.shape[1] != 1:
        raise ValueError("image must be RGB and mask one channel")
    if pixels.shape[-2:] != region.shape[-2:]:
        raise ValueError(f"the mask is {tuple(region.shape[-2:])}, the picture "
                         f"{tuple(pixels.shape[-2:])} (height, width)")
    return pixels, region


def _extraction(layers: np.ndarray, object_mask: np.ndarray) -> Extraction:
    """The decoded (picture, background, foreground) RGBA as an :class:`Extraction`: the
    foreground inside the (slightly grown) object mask is the object, outside it the effect."""
    from scipy import ndimage

    background, foreground = layers[1, ..., :3], layers[2]
    inside = ndimage.binary_dilation(object_mask > 0.5, iterations=1)[..., None]
    return Extraction(background=background.astype(np.float32),
                      object=np.where(inside, foreground, 0).astype(np.float32),
                      effect=np.where(inside, 0, foreground).astype(np.float32))
