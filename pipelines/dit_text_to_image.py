"""Text-to-image with a FLUX-style MMDiT (``FluxTransformer2DModel``) and rectified flow.

This is the base the DiT methods (ART, LayerDecomp, DiffDecompose, anime layers, TinyFusion)
fine-tune. It mirrors ``diffusers.FluxPipeline`` step for step (2 x 2 latent packing,
(layer, row, column) rotary ids, the resolution-dependent time shift, Euler steps of the
flow-matching scheduler) with two differences that keep it small:

- one CLIP text encoder gives both the pooled vector and the token sequence; a second encoder
  (FLUX's T5) is optional and, when present, gives the sequence as in FLUX;
- the tiny transformer has no guidance embedding, so guidance is ordinary classifier-free
  guidance against the negative (by default empty) prompt ("true CFG" in FluxPipeline).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import PIL.Image
import torch
from diffusers import (
    AutoencoderKL,
    DiffusionPipeline,
    FlowMatchEulerDiscreteScheduler,
    FluxTransformer2DModel,
)
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

from .flow_matching import image_ids, pack_latents, schedule_shift, unpack_latents
from .output_types import check_output_type, pictures_as

__all__ = ["DiTPipelineOutput", "DiTTextToImagePipeline"]


@dataclass
class DiTPipelineOutput(BaseOutput):
    """``images``: PIL images, a (B, H, W, 3) float array in [0, 1] or a (B, 3, H, W) tensor
    in [0, 1], as ``output_type`` asked ("latent" gives the unpacked latents)."""

    images: list[PIL.Image.Image] | np.ndarray | torch.Tensor


class DiTTextToImagePipeline(DiffusionPipeline):
    """Prompt -> image with an MMDiT; see the module docstring for the maths."""

    model_cpu_offload_seq = "text_encoder->text_encoder_2->transformer->vae"
    _optional_components: ClassVar[list[str]] = ["text_encoder_2", "tokenizer_2"]
    _callback_tensor_inputs: ClassVar[list[str]] = ["latents", "prompt_embeds"]

    def __init__(self, vae: AutoencoderKL, text_encoder, tokenizer,
                 transformer: FluxTransformer2DModel,
                 scheduler: FlowMatchEulerDiscreteScheduler,
                 text_encoder_2=None, tokenizer_2=None) -> None:
        super().__init__()
        self.register_modules(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                              transformer=transformer, scheduler=scheduler,
                              text_encoder_2=text_encoder_2, tokenizer_2=tokenizer_2)
        self.vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1) if vae else 8

    # --- text ---------------------------------------------------------------------------

    def _tokens(self, tokenizer, prompts: list[str], max_length: int) -> torch.Tensor:
        return tokenizer(prompts, padding="max_length", max_length=max_length,
                         truncation=True, return_tensors="pt").input_ids.to(self._execution_device)

    @torch.no_grad()
    def encode_prompt(self, prompt: str | list[str], device: torch.device | None = None,
                      num_images_per_prompt: int = 1, max_sequence_length: int | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """(``prompt_embeds`` (B, T, D), ``pooled_prompt_embeds`` (B, D')) for the
        transformer, each prompt repeated ``num_images_per_prompt`` times (FluxPipeline's
        names and order; usable on its own, e.g. to pass embeddings to ``__call__``)."""
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        length = self.tokenizer.model_max_length
        device = device or self._execution_device
        clip = self.text_encoder(self._tokens(self.tokenizer, prompts, length).to(device))
        pooled, sequence = clip.pooler_output, clip.last_hidden_state
        if self.text_encoder_2 is not None:
            ids = self._tokens(self.tokenizer_2, prompts, max_sequence_length or 512)
            sequence = self.text_encoder_2(ids.to(device))[0]
        dtype = self.transformer.dtype
        return (sequence.to(dtype).repeat_interleave(num_images_per_prompt, dim=0),
                pooled.to(dtype).repeat_interleave(num_images_per_prompt, dim=0))

    def guided_text(self, prompt: str | list[str] | None, negative_prompt: str | list[str] | None,
                    num_images_per_prompt: int, max_sequence_length: int | None,
                    callback_tensor_inputs: tuple[str, ...],
                    embeds: tuple[torch.Tensor | None, ...] = (None, None, None, None)
                    ) -> tuple[list[str], torch.Tensor, torch.Tensor, torch.Tensor]:
        """Checked prompts (or given ``embeds``: prompt, pooled, negative, negative pooled)
        -> (the prompts, one per image, "" where only embeddings were given; their
        embeddings; the token sequence and pooled vector the transformer gets, negatives first
        under guidance). Guidance is :attr:`guidance_scale`, set by ``__call__``."""
        prompt_embeds, pooled, negative_embeds, negative_pooled = embeds
        bad = set(callback_tensor_inputs) - set(self._callback_tensor_inputs)
        if bad:
            raise ValueError(f"callback tensors must be among {self._callback_tensor_inputs}, "
                             f"got {sorted(bad)}")
        if num_images_per_prompt < 1:
            raise ValueError("num_images_per_prompt must be at least 1")
        if prompt_embeds is not None:
            if prompt is not None or pooled is None:
                raise ValueError("give prompt or prompt_embeds with pooled_prompt_embeds, "
                                 "not both")
            prompt_embeds = prompt_embeds.repeat_interleave(num_images_per_prompt, dim=0)
            pooled = pooled.repeat_interleave(num_images_per_prompt, dim=0)
            prompts = [""] * prompt_embeds.shape[0]
        else:
            given = [prompt] if isinstance(prompt, str) else list(prompt or [])
            if not given or not all(isinstance(p, str) for p in given):
                raise ValueError("prompt must be a string or a non-empty list of strings")
            prompts = [p for p in given for _ in range(num_images_per_prompt)]
            prompt_embeds, pooled = self.encode_prompt(given, None, num_images_per_prompt,
                                                       max_sequence_length)
        if not self.do_classifier_free_guidance:
            return prompts, prompt_embeds, prompt_embeds, pooled
        if negative_embeds is None:
            negative = negative_prompt or ""
            count = len(prompts) // num_images_per_prompt
            negatives = [negative] * count if isinstance(negative, str) else list(negative)
            if len(negatives) != count:
                raise ValueError("negative_prompt must match prompt in length")
            negative_embeds, negative_pooled = self.encode_prompt(
                negatives, None, num_images_per_prompt, max_sequence_length)
        else:
            if negative_pooled is None:
                raise ValueError("negative_prompt_embeds needs negative_pooled_prompt_embeds")
            negative_embeds = negative_embeds.repeat_interleave(num_images_per_prompt, dim=0)
            negative_pooled = negative_pooled.repeat_interleave(num_images_per_prompt, dim=0)
        return (prompts, prompt_embeds, torch.cat([negative_embeds, prompt_embeds]),
                torch.cat([negative_pooled, pooled]))

    # --- the standard properties callbacks read (and may change) ------------------------

    @property
    def guidance_scale(self) -> float:
        """The current classifier-free guidance; a step-end callback may change
        ``pipe._guidance_scale`` and the next steps use the new value."""
        return self._guidance_scale

    @property
    def do_classifier_free_guidance(self) -> bool:
        return self._guidance_scale > 1.0

    @property
    def num_timesteps(self) -> int:
        return self._num_timesteps

    # --- latents ------------------------------------------------------------------------

    def _latent_grid(self, height: int, width: int) -> tuple[int, int]:
        step = self.vae_scale_factor * 2  # VAE downsampling times the 2 x 2 packing
        if height % step or width % step or height <= 0 or width <= 0:
            raise ValueError(f"height and width must be positive multiples of {step}, "
                             f"got {height} x {width}")
        return height // self.vae_scale_factor, width // self.vae_scale_factor

    def _decode(self, latents: torch.Tensor, output_type: str):
        if output_type == "latent":
            return latents
        shift = self.vae.config.shift_factor or 0.0
        latents = latents / self.vae.config.scaling_factor + shift
        images = self.vae.decode(latents.to(self.vae.dtype)).sample
        images = (images.float() / 2 + 0.5).clamp(0, 1)
        return pictures_as(images.permute(0, 2, 3, 1).cpu().numpy(), output_type)

    # --- sampling -----------------------------------------------------------------------

    def denoise(self, latents: torch.Tensor,
                predict: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                token_count: int, num_inference_steps: int, prompt_embeds: torch.Tensor,
                callback_on_step_end: Callable[[Any, int, torch.Tensor, dict], dict] | None,
                callback_tensor_inputs: tuple[str, ...]) -> torch.Tensor:
        """The Euler rectified-flow loop: FLUX's time shift for ``token_count`` tokens, true
        CFG (``predict`` gets the unconditional and conditional halves as one batch when the
        run started guided; each step uses the current :attr:`guidance_scale`), the callback
        and the progress bar."""
        guided = self.do_classifier_free_guidance
        sigmas = np.linspace(1.0, 1 / num_inference_steps, num_inference_steps)
        mu = schedule_shift(token_count, self.scheduler.config)
        self.scheduler.set_timesteps(sigmas=sigmas, mu=mu, device=latents.device)
        self._num_timesteps = len(self.scheduler.timesteps)
        with self.progress_bar(total=len(self.scheduler.timesteps)) as bar:
            for i, t in enumerate(self.scheduler.timesteps):
                model_input = torch.cat([latents] * 2) if guided else latents
                velocity = predict(model_input,
                                   t.expand(model_input.shape[0]).to(latents.dtype) / 1000)
                if guided:
                    unconditional, conditional = velocity.chunk(2)
                    velocity = unconditional + self._guidance_scale * (conditional
                                                                       - unconditional)
                latents = self.scheduler.step(velocity, t, latents, return_dict=False)[0]
                if callback_on_step_end is not None:
                    named = {"latents": latents, "prompt_embeds": prompt_embeds}
                    outputs = callback_on_step_end(
                        self, i, t, {k: named[k] for k in callback_tensor_inputs})
                    latents = outputs.get("latents", latents)
                bar.update()
        return latents

    @torch.no_grad()
    def __call__(self, prompt: str | list[str] | None = None,
                 negative_prompt: str | list[str] | None = None,
                 height: int = 64, width: int = 64, num_inference_steps: int = 20,
                 guidance_scale: float = 4.0, num_images_per_prompt: int = 1,
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
                 max_sequence_length: int | None = None) -> DiTPipelineOutput | tuple:
        """Generate images (FluxPipeline's arguments, in its order). ``callback_on_step_end(
        pipe, step, timestep, tensors)`` may return replacements for the tensors named in
        ``callback_on_step_end_tensor_inputs`` and may change ``pipe._guidance_scale``."""
        check_output_type(output_type)
        rows, cols = self._latent_grid(height, width)
        self._guidance_scale = guidance_scale
        prompts, prompt_embeds, text, text_pooled = self.guided_text(
            prompt, negative_prompt, num_images_per_prompt, max_sequence_length,
            callback_on_step_end_tensor_inputs,
            (prompt_embeds, pooled_prompt_embeds, negative_prompt_embeds,
             negative_pooled_prompt_embeds))
        device = self._execution_device
        text_ids = torch.zeros(prompt_embeds.shape[1], 3, device=device,
                               dtype=prompt_embeds.dtype)
        img_ids = image_ids(rows, cols, device=device, dtype=prompt_embeds.dtype)

        channels = self.transformer.config.in_channels // 4
        if latents is None:
            latents = randn_tensor((len(prompts), channels, rows, cols), generator=generator,
                                   device=device, dtype=prompt_embeds.dtype)
        latents = pack_latents(latents.to(device, prompt_embeds.dtype))

        def predict(model_input: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
            return self.transformer(hidden_states=model_input, timestep=time,
                                    pooled_projections=text_pooled, encoder_hidden_states=text,
                                    txt_ids=text_ids, img_ids=img_ids, return_dict=False)[0]

        latents = self.denoise(latents, predict, latents.shape[1], num_inference_steps,
                               prompt_embeds, callback_on_step_end,
                               callback_on_step_end_tensor_inputs)

        images = self._decode(unpack_latents(latents, rows, cols), output_type)
        self.maybe_free_model_hooks()
        if not return_dict:
            return (images,)
        return DiTPipelineOutput(images=images)
