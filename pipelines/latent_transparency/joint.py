"""Joint LayerDiffuse: a transparent foreground, a background and their blend from one call.

As the SD 1.5 release does it: the base U-Net, unchanged, with an
:class:`~.attention_sharing.AttentionSharingAdapter` routing each attention module through a
unit that gives every frame its own low-rank projections and lets the three frames attend to
each other. The batch is interleaved per picture as (foreground, background, blend); each frame
has its own prompt. The foreground latent lives in the transparent latent space and decodes
through the transparent decoder; the other two are ordinary RGB latents.

``pipe(prompt="a cat on a sofa", foreground_prompt="a cat", background_prompt="a sofa")``
returns images and a layer stack per picture: background, foreground, and the model's own
blend as a hidden reference layer on top (it may add shadows and light the plain composite
lacks; editors show it when switched on).

Batches follow diffusers' rules with a picture, not a frame, as the unit: one generator per
picture (its three frames draw their noise from it), ``num_images_per_prompt`` pictures per
prompt, and ``prompt_embeds`` / ``latents`` / ``output_type="latent"`` in the interleaved
frame order (three rows per picture; :meth:`JointTransparencyPipeline.frame_prompts` gives
the matching prompts to encode).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch
from diffusers import StableDiffusionPipeline
from diffusers.utils.torch_utils import randn_tensor

from layerstudio.document import Layer, LayerStack

from ..output_types import check_output_type, pictures_as
from .attention_sharing import AttentionSharingAdapter
from .codec import decode_opaque, decode_rgba
from .models import TransparentVAEDecoder, TransparentVAEEncoder
from .pipeline import TransparentPipelineOutput

__all__ = ["FRAMES", "JointTransparencyPipeline"]

FRAMES = ("foreground", "background", "blend")


class JointTransparencyPipeline(StableDiffusionPipeline):
    """Foreground + background + blend in one denoising loop (attention sharing)."""

    model_cpu_offload_seq = "text_encoder->unet->vae->transparent_decoder"
    _optional_components: ClassVar[list[str]] = [
        "safety_checker", "feature_extractor", "image_encoder", "transparent_encoder"]

    def __init__(self, vae, text_encoder, tokenizer, unet, scheduler,
                 transparent_decoder: TransparentVAEDecoder,
                 attention_sharing: AttentionSharingAdapter,
                 transparent_encoder: TransparentVAEEncoder | None = None,
                 safety_checker=None, feature_extractor=None, image_encoder=None,
                 requires_safety_checker: bool = False) -> None:
        super().__init__(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                         scheduler=scheduler, safety_checker=safety_checker,
                         feature_extractor=feature_extractor, image_encoder=image_encoder,
                         requires_safety_checker=requires_safety_checker)
        if attention_sharing is not None and attention_sharing.config.frames != len(FRAMES):
            raise ValueError(f"a joint model shares attention across {len(FRAMES)} frames "
                             f"({', '.join(FRAMES)}), this adapter across "
                             f"{attention_sharing.config.frames}")
        self.register_modules(transparent_decoder=transparent_decoder,
                              transparent_encoder=transparent_encoder,
                              attention_sharing=attention_sharing)
        if unet is not None and attention_sharing is not None:
            attention_sharing.attach(unet)

    @staticmethod
    def _triples(prompt, foreground_prompt, background_prompt) -> list[list[str]]:
        """Per picture: [foreground, background, blend] prompts (a missing one is empty)."""
        def listed(value) -> list[str] | None:
            return None if value is None else [value] if isinstance(value, str) else list(value)

        columns = [listed(foreground_prompt), listed(background_prompt), listed(prompt)]
        count = max((len(c) for c in columns if c is not None), default=1)
        for name, column in zip(("foreground_prompt", "background_prompt", "prompt"), columns,
                                strict=True):
            if column is not None and len(column) not in (1, count):
                raise ValueError(f"{name} has {len(column)} entries, expected 1 or {count}")
        return [[(c[i] if len(c) > 1 else c[0]) if c is not None else "" for c in columns]
                for i in range(count)]

    @classmethod
    def frame_prompts(cls, prompt: str | list[str] | None = None,
                      foreground_prompt: str | list[str] | None = None,
                      background_prompt: str | list[str] | None = None) -> list[str]:
        """Every frame's prompt in batch order (foreground, background, blend per picture):
        what to give ``encode_prompt`` to make ``prompt_embeds`` for this pipeline."""
        return [text for triple in cls._triples(prompt, foreground_prompt, background_prompt)
                for text in triple]

    def _frame_embeddings(self, prompt, foreground_prompt, background_prompt, negative_prompt,
                          prompt_embeds, negative_prompt_embeds, per: int, guided: bool,
                          lora_scale: float | None, clip_skip: int | None
                          ) -> tuple[list[list[str]], torch.Tensor, torch.Tensor | None]:
        """(prompt triples, embeddings, negative embeddings) for every picture, each picture
        repeated ``per`` times with its three frames kept together (diffusers' own repeat
        would put copies of one frame side by side)."""
        if prompt_embeds is None:
            triples = self._triples(prompt, foreground_prompt, background_prompt)
        elif prompt is not None or foreground_prompt is not None or \
                background_prompt is not None:
            raise ValueError("give prompts or prompt_embeds, not both")
        elif prompt_embeds.shape[0] % len(FRAMES):
            raise ValueError(f"prompt_embeds needs {len(FRAMES)} rows per picture (see "
                             f"frame_prompts), got {prompt_embeds.shape[0]}")
        else:
            triples = [[""] * len(FRAMES)] * (prompt_embeds.shape[0] // len(FRAMES))

        def repeated(rows: torch.Tensor | None) -> torch.Tensor | None:
            return None if rows is None else \
                rows.unflatten(0, (-1, len(FRAMES))).repeat_interleave(per, 0).flatten(0, 1)

        negatives = None
        if negative_prompt is not None:
            listed = [negative_prompt] if isinstance(negative_prompt, str) else \
                list(negative_prompt)
            if len(listed) not in (1, len(triples)):
                raise ValueError(f"negative_prompt has {len(listed)} entries for "
                                 f"{len(triples)} pictures")
            negatives = [listed[i if len(listed) > 1 else 0] for i in range(len(triples))
                         for _ in range(per * len(FRAMES))]
        triples = [triple for triple in triples for _ in range(per)]
        embeds, negative = self.encode_prompt(
            None if prompt_embeds is not None else
            [text for triple in triples for text in triple],
            self._execution_device, 1, guided, negatives, prompt_embeds=repeated(prompt_embeds),
            negative_prompt_embeds=repeated(negative_prompt_embeds), lora_scale=lora_scale,
            clip_skip=clip_skip)
        return triples, embeds, negative

    def _frame_noise(self, pictures: int, height: int, width: int, generator,
                     latents: torch.Tensor | None, dtype: torch.dtype
                     ) -> tuple[torch.Tensor, Any]:
        """(starting latents, generator for the scheduler): a list of generators is one per
        picture, each drawing its three frames, so a batch equals its pictures made one by
        one; the scheduler's own noise (``eta`` > 0) is then drawn frame by frame."""
        rows = pictures * len(FRAMES)
        shape = (rows, self.unet.config.in_channels, height // self.vae_scale_factor,
                 width // self.vae_scale_factor)
        device = self._execution_device
        if isinstance(generator, list):
            if len(generator) != pictures:
                raise ValueError(f"{len(generator)} generators for {pictures} pictures: give "
                                 "one per picture (prompts x num_images_per_prompt)")
            if latents is None:
                latents = torch.cat([randn_tensor((len(FRAMES), *shape[1:]), generator=one,
                                                  device=device, dtype=dtype)
                                     for one in generator])
            generator = [one for one in generator for _ in FRAMES]
        elif latents is None:
            latents = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
        if tuple(latents.shape) != shape:
            raise ValueError(f"latents must have shape {shape} ({len(FRAMES)} frames per "
                             f"picture), got {tuple(latents.shape)}")
        return latents, generator

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
                 foreground_prompt: str | list[str] | None = None,
                 background_prompt: str | list[str] | None = None,
                 augment: bool = False) -> TransparentPipelineOutput | tuple:
        """``StableDiffusionPipeline.__call__``'s arguments in its order, then ours:
        ``prompt`` describes the blend, ``foreground_prompt`` and ``background_prompt`` the
        layers (one each, or one per picture), ``augment`` the 8-pass alpha decode.
        ``images`` holds, per picture, the RGBA foreground, the background and the blend
        (``output_type`` "pil", "np", "pt"; "latent" gives the frames' latents for
        :meth:`decode_latents_rgba`); ``layers`` one stack per picture."""
        check_output_type(output_type)
        if ip_adapter_image is not None or ip_adapter_image_embeds is not None:
            raise ValueError("the joint pipeline takes no IP-Adapter image (its three frames "
                             "would each need one)")
        if self.attention_sharing is None or not self.attention_sharing.is_attached(self.unet):
            raise ValueError("the U-Net does not run through this pipeline's attention "
                             "sharing (was it replaced or detached?): call "
                             "pipe.attention_sharing.attach(pipe.unet)")
        height = height or self.unet.config.sample_size * self.vae_scale_factor
        width = width or self.unet.config.sample_size * self.vae_scale_factor
        guided = guidance_scale > 1 and self.unet.config.time_cond_proj_dim is None
        triples, embeds, negative = self._frame_embeddings(
            prompt, foreground_prompt, background_prompt, negative_prompt, prompt_embeds,
            negative_prompt_embeds, num_images_per_prompt or 1, guided,
            (cross_attention_kwargs or {}).get("scale"), clip_skip)
        noise, generator = self._frame_noise(len(triples), height, width, generator, latents,
                                             embeds.dtype)
        latents = StableDiffusionPipeline.__call__(
            self, height=height, width=width, num_inference_steps=num_inference_steps,
            timesteps=timesteps, sigmas=sigmas, guidance_scale=guidance_scale, eta=eta,
            generator=generator, latents=noise, prompt_embeds=embeds,
            negative_prompt_embeds=negative, output_type="latent",
            cross_attention_kwargs=cross_attention_kwargs, guidance_rescale=guidance_rescale,
            callback_on_step_end=callback_on_step_end,
            callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs or
            ["latents"]).images
        if output_type == "latent":
            result = TransparentPipelineOutput(images=latents, layers=[])
        else:
            result = self._joint_outputs(
                self.decode_latents_rgba(latents, augment), triples, output_type,
                {"num_inference_steps": num_inference_steps, "guidance_scale": guidance_scale})
        self.maybe_free_model_hooks()
        return result if return_dict else (result.images, result.layers)

    @torch.no_grad()
    def decode_latents_rgba(self, latents: torch.Tensor, augment: bool = False) -> np.ndarray:
        """Frames of ``output_type="latent"`` (three rows per picture) -> straight RGBA
        (rows, H, W, 4) in [0, 1]: the foreground through the transparent decoder, the
        background and the blend opaque."""
        unscaled = (latents / self.vae.config.scaling_factor).unflatten(0, (-1, len(FRAMES)))
        foreground = decode_rgba(self.vae, self.transparent_decoder, unscaled[:, 0],
                                 augment=augment)
        opaque = decode_opaque(self.vae, unscaled[:, 1:].flatten(0, 1))
        frames = torch.stack([foreground, *opaque.unflatten(0, (-1, 2)).unbind(1)], dim=1)
        return frames.flatten(0, 1).permute(0, 2, 3, 1).cpu().numpy()

    def _joint_outputs(self, array: np.ndarray, triples: list[list[str]], output_type: str,
                       extra: dict[str, Any]) -> TransparentPipelineOutput:
        """Decoded frames -> pictures as ``output_type`` asks and one stack per picture."""
        as_uint8 = np.rint(array * 255).clip(0, 255).astype(np.uint8)
        stacks = []
        for picture, (fg_text, bg_text, text) in zip(
                as_uint8.reshape(-1, len(FRAMES), *as_uint8.shape[1:]), triples, strict=True):
            info = {"pipeline": type(self).__name__, "prompt": text,
                    "foreground_prompt": fg_text, "background_prompt": bg_text, **extra}
            height, width = picture.shape[1:3]
            front = Layer("foreground", picture[0], kind="object",
                          provenance={**info, "frame": "foreground"})
            stacks.append(LayerStack(width, height, [
                Layer("background", picture[1], kind="background",
                      provenance={**info, "frame": "background"}),
                front if front.is_empty else front.cropped_to_content(),
                Layer("blend (as generated)", picture[2], kind="reference", visible=False,
                      provenance={**info, "frame": "blend"})], metadata=info))
        return TransparentPipelineOutput(images=pictures_as(array, output_type), layers=stacks)
