"""``AlphaDecomposePipeline``: a picture with a see-through layer blended over it (a watermark,
glass, a lens flare, smoke, rain, an X-ray film) -> the clean background and that layer with
its alpha and blend mode (DiffDecompose, "Layer-Wise Decomposition of Alpha-Composited Images
via Diffusion Transformers").

In-context decomposition (:class:`~..in_context.InContextPipeline`): the composite's clean
tokens (stream 0), the noisy background (1) and layer (2) tokens and the text in one joint
attention. The layer stream's type embedding says its blend type (one per type in
:data:`.blends.BLENDS`). **Layer Position Encoding Cloning** (``position_cloning``, on by
default; off is the paper's ablation): the background and the composite share one rotary
layer code and the layer gets another, so each background token sits at "the same place" as
the composite token it is read from. The layer is a LayerDiffuse-style latent, decoded to RGBA
by ART's multi-layer transparent decoder; the background is then solved exactly from the
picture under the predicted layer wherever enough of it shows through, the model's own
background elsewhere (:func:`.blends.split`), so the two re-composite to the picture.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import PIL.Image
import torch
from diffusers.utils import BaseOutput

from layerstudio.document import Layer, LayerStack

from ..anonymous_region import AnonymousRegionTransformer, MultiLayerTransparentDecoder
from ..in_context import InContextPipeline
from ..output_types import check_output_type, pictures_as
from .blends import BLENDS, blend_mode, blended, split

__all__ = ["STREAMS", "AlphaDecomposePipeline", "AlphaDecomposePipelineOutput",
           "see_through_stack", "stream_codes"]

STREAMS = ("composite", "background", "layer")
CONDITIONS = (0,)


def stream_codes(blends: list[str], position_cloning: bool
                 ) -> tuple[list[int], list[int]]:
    """(layer types, rotary layer ids) of the three streams for one blend type each run:
    the layer stream's type embedding is ``2 + `` the blend's index in :data:`BLENDS`; with
    cloning the background shares the composite's rotary id."""
    if len(set(blends)) != 1:
        raise ValueError("one blend type per call")
    types = [0, 1, 2 + list(BLENDS).index(blends[0])]
    return types, ([0, 0, 1] if position_cloning else [0, 1, 2])


def see_through_stack(background: np.ndarray, layer: np.ndarray, blend: str) -> LayerStack:
    """The document every see-through decomposition returns: the opaque ``background``
    (h, w, 3) under ``layer`` (straight RGBA) in the blend type's mode."""
    height, width = background.shape[:2]
    stack = LayerStack(width, height)
    opaque = np.concatenate([background, np.ones((height, width, 1), background.dtype)], -1)
    stack.add(Layer("background", opaque.astype(np.float32), kind="background"))
    stack.add(Layer(f"see-through layer ({blend})", layer.astype(np.float32), kind="effect",
                    blend_mode=blend_mode(blend)))
    return stack


@dataclass
class AlphaDecomposePipelineOutput(BaseOutput):
    """``images``: the see-through layers, RGBA (PIL, or (B, H, W, 4) floats for "np",
    (B, 4, H, W) for "pt"; the (B, 3, C, h, w) stream latents for "latent"); ``layers``: one
    :class:`LayerStack` per picture, [background, layer in its blend mode]; ``backgrounds``:
    (B, H, W, 3) float. ``layers`` and ``backgrounds`` are empty for latents."""

    images: list[PIL.Image.Image] | np.ndarray | torch.Tensor
    layers: list[LayerStack]
    backgrounds: np.ndarray


class AlphaDecomposePipeline(InContextPipeline):
    """``pipe(picture, blend="screen")`` -> background + see-through layer."""

    def __init__(self, vae, text_encoder, tokenizer, transformer: AnonymousRegionTransformer,
                 scheduler, transparent_decoder: MultiLayerTransparentDecoder,
                 text_encoder_2=None, tokenizer_2=None, position_cloning: bool = True) -> None:
        super().__init__(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                         transformer=transformer, scheduler=scheduler,
                         transparent_decoder=transparent_decoder,
                         text_encoder_2=text_encoder_2, tokenizer_2=tokenizer_2)
        self.register_to_config(position_cloning=position_cloning)

    @torch.no_grad()
    def __call__(self, image: Any = None, blend: str = "normal",
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
                 output_type: str = "pil", return_dict: bool = True,
                 callback_on_step_end: Callable[[Any, int, torch.Tensor, dict], dict] | None
                 = None,
                 callback_on_step_end_tensor_inputs: tuple[str, ...] = ("latents",),
                 max_sequence_length: int | None = None):
        """Decompose. ``image``: (H, W, 3) RGB (float in [0, 1] or uint8), PIL or a
        (B, 3, H, W) tensor; ``blend``: "normal", "screen", "add" or "multiply"; ``prompt``
        (optional) describes the layer ("a lens flare"); ``blend="auto"`` tries every type and
        keeps the most self-consistent (:meth:`_auto`). ``guidance_scale`` > 1 is true CFG
        against ``negative_prompt``. ``output_type``: "pil", "np", "pt" or "latent"."""
        check_output_type(output_type)
        if image is None:
            raise ValueError("AlphaDecompose needs the picture")
        if blend == "auto":
            return self._auto(image, prompt, num_inference_steps=num_inference_steps,
                              generator=generator, output_type=output_type,
                              return_dict=return_dict, negative_prompt=negative_prompt,
                              guidance_scale=guidance_scale,
                              callback_on_step_end=callback_on_step_end,
                              callback_on_step_end_tensor_inputs=(
                                  callback_on_step_end_tensor_inputs))
        blend_mode(blend)
        pixels, prompts, text, pooled, conditions = self.picture_and_text(
            image, prompt, negative_prompt, num_images_per_prompt, max_sequence_length,
            callback_on_step_end_tensor_inputs,
            (prompt_embeds, pooled_prompt_embeds, negative_prompt_embeds,
             negative_pooled_prompt_embeds), guidance_scale)
        types, positions = stream_codes([blend], self.config.position_cloning)
        latents = self.denoise_streams(
            conditions, CONDITIONS, len(STREAMS), text, pooled,
            num_inference_steps=num_inference_steps, generator=generator, latents=latents,
            callback_on_step_end=callback_on_step_end,
            callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs,
            layer_types=types, position_layers=positions)
        if output_type == "latent":
            result = AlphaDecomposePipelineOutput(images=latents, layers=[],
                                                  backgrounds=np.zeros(0))
        else:
            pictures = pixels.permute(0, 2, 3, 1).numpy()
            stacks = self.split_latents(latents, pictures, blend)
            backgrounds = [stack.layers[0].pixels[..., :3] for stack in stacks]
            layers = [stack.layers[1].pixels for stack in stacks]
            for stack, text_prompt in zip(stacks, prompts, strict=True):
                stack.metadata.update(prompt=text_prompt,
                                      num_inference_steps=num_inference_steps)
            result = AlphaDecomposePipelineOutput(images=pictures_as(np.stack(layers),
                                                                     output_type),
                                                  layers=stacks,
                                                  backgrounds=np.stack(backgrounds))
        self.maybe_free_model_hooks()
        return result if return_dict else (result.images, result.layers, result.backgrounds)

    @torch.no_grad()
    def split_latents(self, latents: torch.Tensor, pictures: np.ndarray, blend: str
                      ) -> list[LayerStack]:
        """(B, 3, C, h, w) stream latents and the (B, H, W, 3) pictures -> one [background,
        see-through layer] stack each: the streams decoded, the layer made feasible and the
        background solved under it (:func:`.blends.split`); what ``output_type="latent"``
        chains into."""
        rows, cols = latents.shape[-2:]
        layout = self.canvas_layout(rows * self.vae_scale_factor, cols * self.vae_scale_factor,
                                    len(STREAMS))
        rgba = self.decode_layers(latents, layout).permute(0, 1, 3, 4, 2).float().cpu().numpy()
        stacks = []
        for picture, decoded in zip(pictures, rgba, strict=True):
            consistency = float(np.abs(blended(decoded[1, ..., :3], decoded[2], blend)
                                       - picture).mean())
            stack = see_through_stack(*split(picture, decoded[2], blend, decoded[1, ..., :3]),
                                      blend)
            stack.metadata.update(pipeline=type(self).__name__, blend=blend,
                                  self_consistency_error=consistency,
                                  position_cloning=self.config.position_cloning)
            stacks.append(stack)
        return stacks

    def _auto(self, image: Any, prompt: Any, *, generator: Any, output_type: str,
              return_dict: bool, **options: Any):
        """``blend="auto"``: decompose under every blend type from the same noise and keep
        the one whose own background and layer, blended, come closest to the picture (the
        model's outputs agree with each other only under the blend it recognises); the
        errors are in each stack's metadata (``blend_errors``). One picture only."""
        if isinstance(generator, list):
            raise ValueError("blend='auto' takes one generator")
        state = generator.get_state() if generator is not None else None
        tries = {}
        for name in BLENDS:
            if state is not None:
                generator.set_state(state)
            tries[name] = self(image, name, prompt, generator=generator, output_type="np",
                               **options)
        errors = {name: out.layers[0].metadata["self_consistency_error"]
                  for name, out in tries.items()}
        best = min(errors, key=errors.get)
        chosen = tries[best]
        for stack in chosen.layers:
            stack.metadata.update(blend_errors={k: round(v, 5) for k, v in errors.items()},
                                  blend_rule="auto: least self-consistency error")
        chosen.images = pictures_as(np.asarray(chosen.images), output_type)
        return chosen if return_dict else (chosen.images, chosen.layers, chosen.backgrounds)
