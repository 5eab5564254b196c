"""``AnimeLayersPipeline``: an illustration -> its production layers, line art, flat colour,
shadow and highlight ("Workflow-Aware Structured Layer Decomposition for Illustration
Production", arXiv 2603.14925, after its Qwen-Image-Layered-style decomposer).

In-context decomposition (:class:`~..in_context.InContextPipeline`) on the ART transformer:
the picture's clean tokens (stream 0) and one noisy stream per layer kind (flat colour,
shadow, highlight, line art) in one joint attention with the text, each stream at its own
id on the rotary layer axis. **Per-layer semantic embeddings** (``semantic_embeddings``, on by
default; off is the paper's ablation): each layer stream adds the learned type embedding of
its kind and convention, so one decomposer knows which layer it is making; off, the layer
streams share one embedding (the convention's) and differ only by rotary position. The flat
colour is opaque, decoded as the VAE decodes; the other three are LayerDiffuse-style
latents decoded to RGBA by ART's multi-layer transparent decoder. The model's line art and
flat colour then set up the exact solve of :func:`.classical.assemble`, so the returned
layers re-compose to the picture.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import PIL.Image
import torch
from diffusers.utils import BaseOutput

from layerstudio.document import LayerStack
from layerstudio.errors import InvalidInputError

from ..anonymous_region import AnonymousRegionTransformer, MultiLayerTransparentDecoder
from ..in_context import InContextPipeline
from ..output_types import check_output_type
from .classical import assemble, line_strength, median_colours, pieces
from .structure import CONVENTIONS, HIGHLIGHT_BLENDS, KINDS

__all__ = ["STREAMS", "AnimeLayersPipeline", "AnimeLayersPipelineOutput", "snapped_flat",
           "stream_codes"]

STREAMS = ("composite", *KINDS)
CONDITIONS = (0,)


def stream_codes(convention: str, semantic: bool) -> tuple[list[int], list[int]]:
    """(layer types, rotary layer ids) of the five streams: the picture is type 0; a layer
    stream is ``2 + 4 x convention + kind`` with semantic embeddings, ``2 + 4 x convention``
    for every kind without; every stream its own rotary id."""
    if convention not in CONVENTIONS:
        raise InvalidInputError(f"convention must be one of {', '.join(CONVENTIONS)}, "
                                f"got {convention!r}")
    base = 2 + len(KINDS) * CONVENTIONS.index(convention)
    types = [base + (kind if semantic else 0) for kind in range(len(KINDS))]
    return [0, *types], list(range(len(STREAMS)))


def snapped_flat(rgb: np.ndarray, model_flat: np.ndarray, lines: np.ndarray) -> np.ndarray:
    """The model's flat colour (scaled to the picture) made flat on the picture's own pieces
    (:func:`.classical.pieces`): each piece takes the median of the model's colour over it,
    so region edges are the picture's sharp ones and the model decides what is base colour
    and what is shading."""
    cut = pieces(rgb, lines)
    if cut is None:
        return np.broadcast_to(np.median(model_flat.reshape(-1, 3), 0), rgb.shape).copy()
    nearest = cut[0]
    return median_colours(model_flat, nearest, len(cut[1]))[nearest]


@dataclass
class AnimeLayersPipelineOutput(BaseOutput):
    """``images``: the model's four layers per picture, straight RGBA bottom first (flat
    colour, shadow, highlight, line art): lists of PIL images, a (B, 4, H, W, 4) float array
    for "np", (B, 4, 4, H, W) for "pt", the (B, 5, C, h, w) stream latents for "latent";
    ``layers``: one :class:`LayerStack` per picture, solved from the model's line art and flat
    colour so it re-composes to the picture exactly (empty for latents)."""

    images: list[list[PIL.Image.Image]] | np.ndarray | torch.Tensor
    layers: list[LayerStack]


class AnimeLayersPipeline(InContextPipeline):
    """``pipe(picture, convention="artist")`` -> flat colour, shadow, highlight, line art."""

    def __init__(self, vae, text_encoder, tokenizer, transformer: AnonymousRegionTransformer,
                 scheduler, transparent_decoder: MultiLayerTransparentDecoder,
                 text_encoder_2=None, tokenizer_2=None, semantic_embeddings: bool = True
                 ) -> None:
        super().__init__(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                         transformer=transformer, scheduler=scheduler,
                         transparent_decoder=transparent_decoder,
                         text_encoder_2=text_encoder_2, tokenizer_2=tokenizer_2)
        self.register_to_config(semantic_embeddings=semantic_embeddings)

    @torch.no_grad()
    def __call__(self, image: Any = None, convention: str = "artist",
                 prompt: str | list[str] | None = None, *, highlight: str = "screen",
                 negative_prompt: str | list[str] | None = None,
                 num_inference_steps: int = 20, guidance_scale: float = 1.0,
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
                 max_sequence_length: int | None = None):
        """Decompose. ``image``: (H, W, 3) RGB (float in [0, 1] or uint8), PIL or a
        (B, 3, H, W) tensor; ``convention``: "artist" (shadow multiply, highlight
        ``highlight``: "screen" or "add") or "normal" (alpha-over); ``prompt`` (optional)
        says what it shows. ``guidance_scale`` > 1 is true CFG against ``negative_prompt``.
        ``output_type``: "pil", "np", "pt" or "latent"."""
        check_output_type(output_type)
        if image is None:
            raise ValueError("AnimeLayers needs the picture")
        if highlight not in HIGHLIGHT_BLENDS:
            raise InvalidInputError(f"highlight blend must be screen or add, got {highlight!r}")
        types, positions = stream_codes(convention, self.config.semantic_embeddings)
        pixels, prompts, text, pooled, conditions = self.picture_and_text(
            image, prompt, negative_prompt, num_images_per_prompt, max_sequence_length,
            callback_on_step_end_tensor_inputs,
            (prompt_embeds, pooled_prompt_embeds, negative_prompt_embeds,
             negative_pooled_prompt_embeds), guidance_scale)
        latents = self.denoise_streams(
            conditions, CONDITIONS, len(STREAMS), text, pooled,
            num_inference_steps=num_inference_steps, generator=generator, latents=latents,
            callback_on_step_end=callback_on_step_end,
            callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs,
            layer_types=types, position_layers=positions)
        if output_type == "latent":
            result = AnimeLayersPipelineOutput(images=latents, layers=[])
        else:
            rgba = self.layers_of(latents)
            pictures = pixels.permute(0, 2, 3, 1).numpy()
            stacks = [self.solved(picture, layers, convention, highlight)
                      for picture, layers in zip(pictures, rgba.permute(0, 1, 3, 4, 2).numpy(),
                                                 strict=True)]
            for stack, text_prompt in zip(stacks, prompts, strict=True):
                stack.metadata.update(prompt=text_prompt,
                                      num_inference_steps=num_inference_steps)
            result = AnimeLayersPipelineOutput(images=_as(rgba, output_type), layers=stacks)
        self.maybe_free_model_hooks()
        return result if return_dict else (result.images, result.layers)

    @torch.no_grad()
    def layers_of(self, latents: torch.Tensor) -> torch.Tensor:
        """(B, 5, C, h, w) stream latents -> the model's four layers, (B, 4, 4, H, W)
        straight RGBA (what ``output_type="latent"`` chains into)."""
        rows, cols = latents.shape[-2:]
        layout = self.canvas_layout(rows * self.vae_scale_factor, cols * self.vae_scale_factor,
                                    len(STREAMS))
        return self.decode_layers(latents, layout)[:, 1:].float().cpu()

    def solved(self, picture: np.ndarray, layers: np.ndarray, convention: str,
               highlight: str = "screen") -> LayerStack:
        """The stack for ``picture`` (h, w, 3) from the model's four (H, W, 4) ``layers``
        (any size: they are scaled to the picture): the picture's own dark strokes
        (:func:`.classical.line_strength`) where the model's line art is (so its choice of
        what is line, at the picture's sharpness), its flat colour snapped to the picture's
        pieces, then :func:`.classical.assemble`."""
        import cv2

        height, width = picture.shape[:2]
        size = (width, height)
        scale = max(1, round(max(height, width) / max(layers.shape[1:3])))
        resize = (lambda a: a) if scale == 1 and layers.shape[1:3] == (height, width) else \
            (lambda a: cv2.resize(a, size, interpolation=cv2.INTER_LINEAR))
        drawn = resize(np.ascontiguousarray(layers[3, ..., 3])) > 0.3
        near = cv2.dilate(drawn.astype(np.uint8), np.ones((2 * scale + 1,) * 2, np.uint8))
        lines = line_strength(picture.astype(np.float32)) * (near > 0)
        flat = snapped_flat(picture, np.clip(resize(np.ascontiguousarray(layers[0, ..., :3])),
                                             0, 1), lines)
        stack = assemble(picture.astype(np.float32), lines, flat, convention, highlight)
        stack.metadata.update(pipeline=type(self).__name__,
                              semantic_embeddings=self.config.semantic_embeddings)
        return stack


def _as(rgba: torch.Tensor, output_type: str) -> Any:
    """(B, 4, 4, H, W) straight RGBA in the asked form."""
    if output_type == "pt":
        return rgba
    array = rgba.permute(0, 1, 3, 4, 2).numpy()
    if output_type == "np":
        return array
    return [[PIL.Image.fromarray(np.rint(np.clip(layer, 0, 1) * 255).astype(np.uint8), "RGBA")
             for layer in layers] for layers in array]
