"""RGBA in, RGBA out: image-to-image and inpainting that keep the alpha path.

The input layer is encoded the way the transparent U-Net's training data was: the base VAE
latent of its colour premultiplied on grey plus the transparent encoder's offset, so its alpha
lives in the latent. That latent is noised to ``strength`` and denoised by the parent
``StableDiffusionImg2ImgPipeline`` (schedulers, guidance, callbacks as in diffusers), then the
transparent decoder reads RGBA back out.

With a ``mask`` (white = repaint) the unmasked latents are, after every step, replaced by the
input's latent noised to the next step's level (the blended-latent inpainting diffusers uses for
4-channel U-Nets), and at the end the unmasked pixels, alpha included, are the input's own
(premultiplied mix along a soft mask), so what was not to change does not change.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import PIL.Image
import torch
from diffusers import StableDiffusionImg2ImgPipeline
from diffusers.utils.torch_utils import randn_tensor

from layerstudio.imaging import as_rgba_array, to_uint8

from .codec import encode_rgba, rgba_tensors
from .models import TransparentVAEDecoder, TransparentVAEEncoder
from .pipeline import _TransparentDecodeMixin

__all__ = ["LatentTransparencyImg2ImgPipeline"]


def _mix(generated: np.ndarray, given: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Straight-RGBA ``mask * generated + (1 - mask) * given``, mixed premultiplied so colour
    under low alpha does not bleed; arrays in [0, 1], mask (H, W, 1)."""
    alpha = mask * generated[..., 3:] + (1 - mask) * given[..., 3:]
    colour = mask * generated[..., :3] * generated[..., 3:] + \
        (1 - mask) * given[..., :3] * given[..., 3:]
    straight = np.divide(colour, alpha, out=np.zeros_like(colour), where=alpha > 1e-6)
    return np.concatenate([straight.clip(0, 1), alpha], axis=-1)


class LatentTransparencyImg2ImgPipeline(_TransparentDecodeMixin, StableDiffusionImg2ImgPipeline):
    """``pipe(prompt, image=rgba, strength=0.6, mask=None)`` -> transparent layers.

    The same components as :class:`~.pipeline.LatentTransparencyPipeline`, with the
    transparent encoder required; ``LatentTransparencyImg2ImgPipeline(**pipe.components)``
    turns a loaded text-to-RGBA pipeline into this one without copying weights.
    """

    model_cpu_offload_seq = "text_encoder->transparent_encoder->unet->vae->transparent_decoder"
    _optional_components: ClassVar[list[str]] = [
        "safety_checker", "feature_extractor", "image_encoder"]

    def __init__(self, vae, text_encoder, tokenizer, unet, scheduler,
                 transparent_decoder: TransparentVAEDecoder,
                 transparent_encoder: TransparentVAEEncoder,
                 safety_checker=None, feature_extractor=None, image_encoder=None,
                 requires_safety_checker: bool = False) -> None:
        super().__init__(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                         scheduler=scheduler, safety_checker=safety_checker,
                         feature_extractor=feature_extractor, image_encoder=image_encoder,
                         requires_safety_checker=requires_safety_checker)
        self.register_modules(transparent_decoder=transparent_decoder,
                              transparent_encoder=transparent_encoder)

    def _snap(self, size: int) -> int:
        """The nearest side the U-Net takes (a multiple of its total downsampling)."""
        step = self.vae_scale_factor * 2 ** (len(self.unet.config.block_out_channels) - 1)
        return max(step, round(size / step) * step)

    def _input(self, image: Any, mask: Any, height: int | None, width: int | None
               ) -> tuple[np.ndarray, np.ndarray | None]:
        rgba = to_uint8(as_rgba_array(image, what="input image"))
        size = (self._snap(width or rgba.shape[1]), self._snap(height or rgba.shape[0]))
        if rgba.shape[1::-1] != size:
            rgba = np.asarray(PIL.Image.fromarray(rgba).resize(size, PIL.Image.LANCZOS))
        if mask is None:
            return rgba, None
        grey = to_uint8(as_rgba_array(mask, what="mask"))
        grey = grey[..., :3].mean(axis=-1).astype(np.float32) / 255
        if grey.shape[::-1] != size:
            grey = np.asarray(PIL.Image.fromarray(grey).resize(size, PIL.Image.BILINEAR))
        return rgba, grey.clip(0, 1)[..., None]

    def __call__(self, prompt: str | list[str] | None = None, *, image: Any,
                 mask: Any = None, strength: float = 0.6, augment: bool = False,
                 output_type: str = "pil", return_dict: bool = True, **kwargs: Any):
        """``image``: the RGBA layer (PIL or array; resized to ``height`` x ``width`` when
        given, else to the nearest size the U-Net takes); ``mask``: greyscale, white =
        repaint; ``strength`` in (0, 1]: how much noise, i.e. how far from the input. Other
        arguments as ``StableDiffusionImg2ImgPipeline.__call__``."""
        if output_type not in ("pil", "np"):
            raise ValueError(f"output_type must be 'pil' or 'np', got {output_type!r}")
        if not 0.0 < strength <= 1.0:
            raise ValueError(f"strength must be in (0, 1], got {strength}")
        for name in ("output_type", "return_dict", "num_images_per_prompt"):
            if name in kwargs:
                raise ValueError(f"{name} is not supported here (pass a list of prompts)")
        given, soft = self._input(image, mask, kwargs.pop("height", None),
                                  kwargs.pop("width", None))
        count = 1 if prompt is None or isinstance(prompt, str) else len(prompt)
        with torch.no_grad():
            rgba, padded = (t.to(self._execution_device) for t in rgba_tensors([given]))
            latent = encode_rgba(self.vae, self.transparent_encoder, rgba, padded)
        latent = (latent * self.vae.config.scaling_factor).repeat(count, 1, 1, 1)
        if soft is not None:
            kwargs["callback_on_step_end"] = self._blender(
                latent, soft, kwargs.get("generator"), kwargs.get("callback_on_step_end"))
            inputs = list(kwargs.get("callback_on_step_end_tensor_inputs") or ["latents"])
            kwargs["callback_on_step_end_tensor_inputs"] = sorted({*inputs, "latents"})
        latents = StableDiffusionImg2ImgPipeline.__call__(
            self, prompt=prompt, image=latent, strength=strength, output_type="latent",
            **kwargs).images
        array = self._decoded(latents, augment)
        if soft is not None:
            array = np.stack([_mix(made, given.astype(np.float32) / 255, soft)
                              for made in array])
        extra = {"strength": strength, "inpainted": soft is not None,
                 **{key: kwargs[key] for key in ("num_inference_steps", "guidance_scale")
                    if key in kwargs}}
        result = self._packaged(array, prompt, output_type, extra)
        self.maybe_free_model_hooks()
        return result if return_dict else (result.images, result.layers)

    def _blender(self, known: torch.Tensor, soft: np.ndarray, generator, user_callback):
        """The step-end callback that keeps the unmasked latents on the input's path."""
        size = known.shape[-2:]
        mask = torch.from_numpy(np.ascontiguousarray(soft[..., 0]))[None, None]
        mask = torch.nn.functional.interpolate(mask, size=size, mode="area").to(known)
        noise = randn_tensor(known.shape, generator=generator, device=known.device,
                             dtype=known.dtype)

        def blend(pipe, step: int, timestep, tensors: dict[str, Any]) -> dict[str, Any]:
            timesteps = pipe.scheduler.timesteps
            later = timesteps[timesteps < timestep]
            target = known if len(later) == 0 else \
                pipe.scheduler.add_noise(known, noise, later[:1].repeat(known.shape[0]))
            latents = tensors["latents"]
            tensors["latents"] = mask * latents + (1 - mask) * target.to(latents.dtype)
            return user_callback(pipe, step, timestep, tensors) if user_callback else tensors

        return blend
