"""SDXL-shaped layer-conditioned LayerDiffuse, the way the released SDXL models work: in two
stages through the *blend* (the finished picture).

The SDXL release has no direct background -> foreground model. "From Background to Foreground"
runs ``layer_xl_bg2ble`` (background -> blend: the picture with a new object in it), then
``layer_xl_bgble2fg`` (background + blend -> the transparent foreground that explains the
difference); "From Foreground to Background" runs ``layer_xl_fg2ble`` then ``layer_xl_fgble2bg``.
Each stage is a U-Net whose ``conv_in`` was widened for the conditions, concatenated to the
noisy latent: 4 + 4 channels in the first stage, 4 + 8 in the second. Every condition goes
through the base VAE; a foreground as its colour premultiplied on mid grey,
``0.5 + (rgb - 0.5) * alpha``. Only the ``bg2fg`` result (a foreground) is decoded with the
transparent decoder.

So this pipeline holds two U-Nets: ``unet`` (the blend stage) and ``layer_unet`` (the layer
stage). ``blend=`` skips the first stage with a picture the user already has (the release's
"From Background and Blending to Foreground").

``stop_at`` < 1 feeds zero conditions for the last steps of each stage. (Forge switches to the
unpatched base U-Net there instead; this pipeline does not keep a third U-Net.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch
from diffusers import StableDiffusionXLPipeline

from ..output_types import check_output_type
from .codec import encode_opaque, rgb_tensors
from .conditioned import (
    MODES,
    _ConditionedOutputsMixin,
    condition_hook,
    fit_condition,
    initial_noise,
)
from .models import TransparentVAEDecoder
from .pipeline import _forwarded, prompt_count

__all__ = ["ConditionedTransparencyXLPipeline", "on_grey"]


def on_grey(rgba: np.ndarray) -> np.ndarray:
    """Straight RGBA uint8 -> RGB uint8 premultiplied on mid grey (how the SDXL release shows
    a foreground to the base VAE)."""
    rgb, alpha = rgba[..., :3].astype(np.float32), rgba[..., 3:].astype(np.float32) / 255
    return np.rint(127.5 + (rgb - 127.5) * alpha).astype(np.uint8)


class ConditionedTransparencyXLPipeline(_ConditionedOutputsMixin, StableDiffusionXLPipeline):
    """``pipe(prompt, condition=image)`` -> a stack of background, foreground and the blend
    (hidden), from the two-stage SDXL models.

    ``mode`` ``bg2fg``: ``condition`` is an RGB background, the result a transparent
    foreground (needs ``transparent_decoder``); ``fg2bg``: ``condition`` is an RGBA
    foreground, the result an opaque background.
    """

    model_cpu_offload_seq = ("text_encoder->text_encoder_2->unet->layer_unet->vae->"
                             "transparent_decoder")
    _optional_components: ClassVar[list[str]] = [
        "tokenizer", "tokenizer_2", "text_encoder", "text_encoder_2", "image_encoder",
        "feature_extractor", "transparent_decoder"]

    def __init__(self, vae, text_encoder, text_encoder_2, tokenizer, tokenizer_2, unet,
                 layer_unet, scheduler, transparent_decoder: TransparentVAEDecoder | None = None,
                 mode: str = "bg2fg", image_encoder=None, feature_extractor=None,
                 force_zeros_for_empty_prompt: bool = True) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        channels = vae.config.latent_channels
        for name, model, expected in (("unet", unet, 2 * channels),
                                      ("layer_unet", layer_unet, 3 * channels)):
            if model is not None and model.config.in_channels != expected:
                raise ValueError(f"{name} takes {expected} input channels (latent + "
                                 f"{expected // channels - 1} condition(s)), this one "
                                 f"{model.config.in_channels}")
        if mode == "bg2fg" and transparent_decoder is None:
            raise ValueError("mode 'bg2fg' makes a transparent foreground: it needs a "
                             "transparent_decoder")
        super().__init__(vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2,
                         tokenizer=tokenizer, tokenizer_2=tokenizer_2, unet=unet,
                         scheduler=scheduler, image_encoder=image_encoder,
                         feature_extractor=feature_extractor,
                         force_zeros_for_empty_prompt=force_zeros_for_empty_prompt,
                         add_watermarker=False)
        self.register_modules(layer_unet=layer_unet, transparent_decoder=transparent_decoder)
        self.register_to_config(mode=mode)

    @torch.no_grad()
    def encode_picture(self, rgba: np.ndarray, foreground: bool) -> torch.Tensor:
        """Scaled base-VAE latent (1, 4, h, w) of a condition picture."""
        rgb = on_grey(rgba) if foreground else rgba[..., :3]
        latent = encode_opaque(self.vae, rgb_tensors([rgb]).to(self._execution_device))
        return latent * self.vae.config.scaling_factor

    def _stage(self, unet, condition: torch.Tensor, prompt, stop_at: float,
               kwargs: dict[str, Any]) -> torch.Tensor:
        """One sampling run of the SDXL parent on ``unet`` with ``condition`` appended;
        returns scaled latents."""
        count, _, height, width = condition.shape
        scale = self.vae_scale_factor
        options = dict(kwargs)
        options["latents"] = initial_noise(self, count, height * scale, width * scale,
                                           kwargs.get("generator"))
        steps = kwargs.get("num_inference_steps", 50)
        own = self.unet
        object.__setattr__(self, "unet", unet)  # the parent samples with self.unet
        handle = condition_hook(unet, condition, steps, stop_at)
        try:
            return StableDiffusionXLPipeline.__call__(self, prompt=prompt, output_type="latent",
                                                      **options).images
        finally:
            handle.remove()
            object.__setattr__(self, "unet", own)

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
                 condition: Any = None, blend: Any = None, stop_at: float = 1.0,
                 augment: bool = False):
        """``StableDiffusionXLPipeline.__call__``'s arguments in its order (callbacks and
        progress bars run once per stage; ``latents`` cannot be given, each stage draws its
        own noise), plus ``condition`` (required: the given background for ``bg2fg``, the RGBA
        foreground for ``fg2bg``; resized to the output size), ``blend`` (a finished picture:
        skips the blend stage), ``stop_at`` in [0, 1] and ``augment``.
        ``output_type="latent"`` gives the generated layer's latents for
        :meth:`decode_latents_rgba`."""
        if condition is None:
            raise ValueError("condition is required: the background (bg2fg) or the RGBA "
                             "foreground (fg2bg) to generate around")
        if not 0.0 <= stop_at <= 1.0:
            raise ValueError(f"stop_at must be in [0, 1], got {stop_at}")
        check_output_type(output_type)
        if latents is not None:
            raise ValueError("latents cannot be given: each stage draws its own noise")
        kwargs = _forwarded(locals(), own=("condition", "blend", "stop_at", "latents"))
        height = height or self.default_sample_size * self.vae_scale_factor
        width = width or self.default_sample_size * self.vae_scale_factor
        kwargs.update(height=height, width=width)
        bg2fg = self.config.mode == "bg2fg"
        given = fit_condition(condition, (width, height))
        given_latent = self.encode_picture(given, foreground=not bg2fg)
        prompts = prompt_count(prompt, prompt_embeds)
        count = prompts * (num_images_per_prompt or 1)
        given_latent = given_latent.repeat(count, 1, 1, 1)
        if blend is None:
            blend_latents = self._stage(self.unet, given_latent, prompt, stop_at, kwargs)
        else:
            blend = fit_condition(blend, (width, height), "blend image")
            blend_latents = self.encode_picture(blend, foreground=False).repeat(count, 1, 1, 1)
        latents = self._stage(self.layer_unet, torch.cat([given_latent, blend_latents], dim=1),
                              prompt, stop_at, kwargs)
        extra = {"stop_at": stop_at, "blend_given": blend is not None,
                 "num_inference_steps": num_inference_steps}
        result = self._layered_outputs(latents, given, prompt, output_type, augment, extra,
                                       blends=blend_latents)
        self.maybe_free_model_hooks()
        return result if return_dict else (result.images, result.layers)
