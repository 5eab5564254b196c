"""Layer-conditioned LayerDiffuse: background -> transparent foreground (``bg2fg``) and
foreground -> background (``fg2bg``).

As in the paper's SDXL models, the condition enters by concatenation: the U-Net's ``conv_in``
takes 8 channels, the noisy latent and the condition's latent (a background through the base
VAE; a foreground through the transparent encoder), widened from a 4-channel model with zero
weights (``convert.widen_conv_in``) before fine-tuning. ``stop_at`` < 1 drops the condition
(zeros, which training shows 10% of the time) for the last steps, like the reference UI's
"stop at".

Sampling is the parent ``StableDiffusionPipeline``'s; a forward pre-hook on the U-Net appends
the condition to every call (twice over under classifier-free guidance).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import PIL.Image
import torch
from diffusers import StableDiffusionPipeline
from diffusers.utils.torch_utils import randn_tensor

from layerstudio.document import Layer, LayerStack
from layerstudio.imaging import as_rgba_array, to_uint8

from ..output_types import check_output_type, pictures_as
from .codec import (
    decode_opaque,
    decode_rgba,
    encode_opaque,
    encode_rgba,
    rgb_tensors,
    rgba_tensors,
)
from .models import TransparentVAEDecoder, TransparentVAEEncoder
from .pipeline import TransparentPipelineOutput, _forwarded, _TransparentDecodeMixin, prompt_count

__all__ = ["MODES", "ConditionedTransparencyPipeline", "condition_hook", "fit_condition",
           "initial_noise"]

MODES = ("bg2fg", "fg2bg")


def fit_condition(condition: Any, size: tuple[int, int], what: str = "condition image"
                  ) -> np.ndarray:
    """A given layer (PIL image or array) as straight RGBA uint8, resized to ``size`` (w, h)."""
    rgba = to_uint8(as_rgba_array(condition, what=what))
    if rgba.shape[1::-1] != size:
        rgba = np.asarray(PIL.Image.fromarray(rgba).resize(size, PIL.Image.LANCZOS))
    return rgba


def condition_hook(unet, condition: torch.Tensor, total_steps: int, stop_at: float):
    """Append ``condition`` (B, C, h, w) to the noisy latent of every U-Net call (tiled over
    the classifier-free-guidance batch); zeros once ``stop_at * total_steps`` calls ran.
    Returns the hook handle: remove it when sampling ends."""
    calls = {"n": 0}

    def append_condition(module, args, kwargs):
        sample = args[0] if args else kwargs["sample"]
        active = calls["n"] < stop_at * total_steps
        calls["n"] += 1
        extra = condition if active else torch.zeros_like(condition)
        extra = extra.to(sample.dtype).repeat(sample.shape[0] // extra.shape[0], 1, 1, 1)
        widened = torch.cat([sample, extra], dim=1)
        if args:
            return (widened, *args[1:]), kwargs
        return args, {**kwargs, "sample": widened}

    return unet.register_forward_pre_hook(append_condition, with_kwargs=True)


def initial_noise(pipe, count: int, height: int, width: int, generator) -> torch.Tensor:
    """Starting noise of the latent's own channels (diffusers' parents would size it by the
    widened ``in_channels``)."""
    shape = (count, pipe.vae.config.latent_channels, height // pipe.vae_scale_factor,
             width // pipe.vae_scale_factor)
    return randn_tensor(shape, generator=generator, device=pipe._execution_device,
                        dtype=pipe.unet.dtype)


class _ConditionedOutputsMixin(_TransparentDecodeMixin):
    """Latents of the generated layer -> the layered result of a conditioned pipeline."""

    @torch.no_grad()
    def decode_latents_rgba(self, latents: torch.Tensor, augment: bool = False) -> np.ndarray:
        """The generated layer of ``output_type="latent"`` as RGBA (B, H, W, 4) in [0, 1]: a
        transparent foreground (``bg2fg``) or an opaque background (``fg2bg``)."""
        unscaled = latents / self.vae.config.scaling_factor
        made = decode_rgba(self.vae, self.transparent_decoder, unscaled, augment=augment) \
            if self.config.mode == "bg2fg" else decode_opaque(self.vae, unscaled)
        return made.permute(0, 2, 3, 1).cpu().numpy()

    @torch.no_grad()
    def _layered_outputs(self, latents: torch.Tensor, given: np.ndarray, prompt,
                         output_type: str, augment: bool, extra: dict[str, Any],
                         blends: torch.Tensor | None = None) -> TransparentPipelineOutput:
        """``bg2fg`` decodes a transparent foreground, ``fg2bg`` an opaque background; the
        stack is background, foreground and, when the model made one (``blends``: scaled
        latents), the blend as a hidden reference layer."""
        if output_type == "latent":
            return TransparentPipelineOutput(images=latents, layers=[])
        bg2fg = self.config.mode == "bg2fg"
        scale = self.vae.config.scaling_factor
        array = self.decode_latents_rgba(latents, augment)
        generated = np.rint(array * 255).clip(0, 255).astype(np.uint8)
        pictures: list[np.ndarray | None] = [None] * len(generated)
        if blends is not None:
            opaque = decode_opaque(self.vae, blends / scale).permute(0, 2, 3, 1).cpu().numpy()
            pictures = list(np.rint(opaque * 255).clip(0, 255).astype(np.uint8))
        stacks = []
        for image, picture, text in zip(generated, pictures,
                                        self._prompts(prompt, len(generated)), strict=True):
            info = {"pipeline": type(self).__name__, "mode": self.config.mode,
                    "prompt": text, **extra}
            background, foreground = (given, image) if bg2fg else (image, given)
            height, width = image.shape[:2]
            front = Layer("foreground", foreground, kind="object",
                          provenance={**info, "generated": bg2fg})
            layers = [Layer("background", background, kind="background",
                            provenance={**info, "generated": not bg2fg}),
                      front if front.is_empty else front.cropped_to_content()]
            if picture is not None:
                layers.append(Layer("blend", picture, kind="reference", visible=False,
                                    provenance={**info, "frame": "blend"}))
            stacks.append(LayerStack(width, height, layers, metadata=info))
        return TransparentPipelineOutput(images=pictures_as(array, output_type), layers=stacks)


class ConditionedTransparencyPipeline(_ConditionedOutputsMixin, StableDiffusionPipeline):
    """``pipe(prompt, condition=image)`` -> a 2-layer stack (background, foreground).

    ``mode`` (saved in the config) is what the U-Net was trained for: ``bg2fg`` takes an RGB
    background and generates a transparent foreground for it; ``fg2bg`` takes an RGBA
    foreground and generates a background behind it.
    """

    model_cpu_offload_seq = "text_encoder->unet->vae->transparent_decoder"
    _optional_components: ClassVar[list[str]] = [
        "safety_checker", "feature_extractor", "image_encoder"]

    def __init__(self, vae, text_encoder, tokenizer, unet, scheduler,
                 transparent_decoder: TransparentVAEDecoder,
                 transparent_encoder: TransparentVAEEncoder, mode: str = "bg2fg",
                 safety_checker=None, feature_extractor=None, image_encoder=None,
                 requires_safety_checker: bool = False) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if unet is not None and unet.config.in_channels != 2 * vae.config.latent_channels:
            raise ValueError(f"a conditioned U-Net takes {2 * vae.config.latent_channels} "
                             f"input channels (latent + condition), this one "
                             f"{unet.config.in_channels}")
        super().__init__(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                         scheduler=scheduler, safety_checker=safety_checker,
                         feature_extractor=feature_extractor, image_encoder=image_encoder,
                         requires_safety_checker=requires_safety_checker)
        self.register_modules(transparent_decoder=transparent_decoder,
                              transparent_encoder=transparent_encoder)
        self.register_to_config(mode=mode)

    # --- condition ----------------------------------------------------------------------

    @torch.no_grad()
    def encode_condition(self, rgba: np.ndarray) -> torch.Tensor:
        """Scaled latent of the condition layer (what the U-Net was trained to read)."""
        device = self._execution_device
        if self.config.mode == "bg2fg":  # a background: opaque RGB through the base VAE
            latent = encode_opaque(self.vae, rgb_tensors([rgba]))
        else:  # a foreground: RGBA through the transparent encoder
            tensors = rgba_tensors([rgba])
            latent = encode_rgba(self.vae, self.transparent_encoder,
                                 *(t.to(device) for t in tensors))
        return latent * self.vae.config.scaling_factor

    # --- call ---------------------------------------------------------------------------

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
                 condition: Any = None, stop_at: float = 1.0, augment: bool = False):
        """``StableDiffusionPipeline.__call__``'s arguments in its order, plus ``condition``
        (required: PIL image or array, the background for ``bg2fg``, the RGBA foreground for
        ``fg2bg``, resized to the output size), ``stop_at`` in [0, 1] and ``augment``.
        ``output_type="latent"`` gives the generated layer's latents (``images``) for
        :meth:`decode_latents_rgba`."""
        if condition is None:
            raise ValueError("condition is required: the background (bg2fg) or the RGBA "
                             "foreground (fg2bg) to generate around")
        if not 0.0 <= stop_at <= 1.0:
            raise ValueError(f"stop_at must be in [0, 1], got {stop_at}")
        check_output_type(output_type)
        kwargs = _forwarded(locals(), own=("condition", "stop_at"))
        height = height or self.unet.config.sample_size * self.vae_scale_factor
        width = width or self.unet.config.sample_size * self.vae_scale_factor
        given = fit_condition(condition, (width, height))
        latent = self.encode_condition(given)
        prompts = prompt_count(prompt, prompt_embeds)
        count = prompts * (num_images_per_prompt or 1)
        if latents is None:
            kwargs["latents"] = initial_noise(self, count, height, width, generator)
        handle = condition_hook(self.unet, latent.repeat(count, 1, 1, 1), num_inference_steps,
                                stop_at)
        try:
            latents = StableDiffusionPipeline.__call__(self, prompt=prompt, output_type="latent",
                                                       **kwargs).images
        finally:
            handle.remove()
        result = self._layered_outputs(latents, given, prompt, output_type, augment,
                                       {"stop_at": stop_at,
                                        "num_inference_steps": num_inference_steps})
        self.maybe_free_model_hooks()
        return result if return_dict else (result.images, result.layers)
