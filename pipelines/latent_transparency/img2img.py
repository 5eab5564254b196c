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

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import PIL.Image
import torch
from diffusers import StableDiffusionImg2ImgPipeline
from diffusers.utils.torch_utils import randn_tensor

from layerstudio.imaging import as_rgba_array, to_uint8

from ..output_types import check_output_type
from .codec import encode_rgba, rgba_tensors
from .models import TransparentVAEDecoder, TransparentVAEEncoder
from .pipeline import TransparentPipelineOutput, _forwarded, _TransparentDecodeMixin, prompt_count

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

    def __call__(self, prompt: str | list[str] | None = None, image: Any = None,
                 strength: float = 0.6, num_inference_steps: int = 50,
                 timesteps: list[int] | None = None, sigmas: list[float] | None = None,
                 guidance_scale: float = 7.5, negative_prompt: str | list[str] | None = None,
                 num_images_per_prompt: int | None = 1, eta: float = 0.0,
                 generator: torch.Generator | list[torch.Generator] | None = None,
                 prompt_embeds: torch.Tensor | None = None,
                 negative_prompt_embeds: torch.Tensor | None = None,
                 ip_adapter_image: Any = None,
                 ip_adapter_image_embeds: list[torch.Tensor] | None = None,
                 output_type: str = "pil", return_dict: bool = True,
                 cross_attention_kwargs: dict[str, Any] | None = None,
                 clip_skip: int | None = None, callback_on_step_end: Callable | None = None,
                 callback_on_step_end_tensor_inputs: list[str] | None = None,
                 mask: Any = None, height: int | None = None, width: int | None = None,
                 augment: bool = False) -> TransparentPipelineOutput | tuple:
        """``StableDiffusionImg2ImgPipeline.__call__``'s arguments in its order, then ours.
        ``image``: the RGBA layer (PIL or array), or a list of them, one per prompt (resized
        to ``height`` x ``width`` when given, else to the nearest size the U-Net takes);
        ``mask``: greyscale, white = repaint (one, or one per image); ``strength`` in (0, 1]:
        how much noise, i.e. how far from the input. ``output_type="latent"`` gives the
        latents for :meth:`decode_latents_rgba` (without the final unmasked-pixel mix)."""
        check_output_type(output_type)
        if not 0.0 < strength <= 1.0:
            raise ValueError(f"strength must be in (0, 1], got {strength}")
        if image is None:
            raise ValueError("image is required: the RGBA layer to change")
        kwargs = _forwarded(locals(), own=("image", "mask", "height", "width"))
        images = list(image) if isinstance(image, (list, tuple)) else [image]
        masks = list(mask) if isinstance(mask, (list, tuple)) else [mask] * len(images)
        if len(masks) != len(images):
            raise ValueError(f"{len(masks)} masks for {len(images)} images")
        inputs = [self._input(one, soft, height, width) for one, soft in zip(images, masks,
                                                                            strict=True)]
        if len({given.shape for given, _ in inputs}) > 1:
            raise ValueError("the images of one call must have one size: give height and "
                             "width to resize them")
        prompts = prompt_count(prompt, prompt_embeds)
        if len(images) not in (1, prompts):
            raise ValueError(f"{len(images)} images for {prompts} prompts: give one, or one "
                             "per prompt")
        if len(images) == 1:
            inputs = inputs * prompts
        per = num_images_per_prompt or 1
        with torch.no_grad():
            rgba, padded = (t.to(self._execution_device)
                            for t in rgba_tensors([given for given, _ in inputs]))
            latent = encode_rgba(self.vae, self.transparent_encoder, rgba, padded)
        latent = (latent * self.vae.config.scaling_factor).repeat_interleave(per, dim=0)
        given = [one for one, _ in inputs for _ in range(per)]
        soft = [one for _, one in inputs for _ in range(per)]
        if any(one is not None for one in soft):
            kwargs["callback_on_step_end"] = self._blender(
                latent, soft, generator, callback_on_step_end)
            wanted = list(callback_on_step_end_tensor_inputs or ["latents"])
            kwargs["callback_on_step_end_tensor_inputs"] = sorted({*wanted, "latents"})
        latents = StableDiffusionImg2ImgPipeline.__call__(
            self, prompt=prompt, image=latent, output_type="latent", **kwargs).images
        if output_type == "latent":
            self.maybe_free_model_hooks()
            result = TransparentPipelineOutput(images=latents, layers=[])
            return result if return_dict else (result.images, result.layers)
        array = self._decoded(latents, augment)
        array = np.stack([made if mix is None else
                          _mix(made, original.astype(np.float32) / 255, mix)
                          for made, original, mix in zip(array, given, soft, strict=True)])
        extra = {"strength": strength, "inpainted": any(one is not None for one in soft),
                 "num_inference_steps": num_inference_steps, "guidance_scale": guidance_scale}
        result = self._packaged(array, prompt, output_type, extra)
        self.maybe_free_model_hooks()
        return result if return_dict else (result.images, result.layers)

    def _blender(self, known: torch.Tensor, soft: list[np.ndarray | None], generator,
                 user_callback):
        """The step-end callback that keeps the unmasked latents on the input's path (one
        mask per image; None repaints the whole image)."""
        size = known.shape[-2:]
        full = np.ones(next(m for m in soft if m is not None).shape[:2], np.float32)
        mask = torch.from_numpy(np.stack([full if m is None else m[..., 0] for m in soft]))
        mask = mask[:, None]
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
