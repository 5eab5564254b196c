"""Qwen-Image-Layered (DESIGN.md 3.7): diffusers' ``QwenImageLayeredPipeline`` with its known
bugs fixed, returning layer stacks.

The sampling maths is the parent's: the input picture is encoded by the RGBA VAE into one
condition frame, ``layers + 1`` noise frames are denoised next to it by the MMDiT (layer-3D
RoPE: every frame its own layer index, the condition frame index -1) with true CFG, frame 0 (the
re-made composite) is dropped, and the others are decoded into RGBA layers, bottom first.

Fixed here, as the parent (diffusers 0.42) gets them wrong:

- ``output_type="latent"`` raised NameError; it returns the packed latents, which
  :meth:`QwenLayeredPipeline.decode_latents` turns into layers.
- A tensor ``image`` crashed on ``.size``; tensors (B, C, H, W) in [0, 1] and arrays are taken.
- With several prompts and ``num_images_per_prompt`` > 1 the attention masks were tiled
  (p0, p1, p0, p1) while the embeddings were repeated (p0, p0, p1, p1), pairing masks with the
  wrong prompts; the condition latents were tiled the same wrong way and ``img_shapes`` /
  ``is_rgb`` were sized by prompts, not by images. All are repeated per image here.
- The tiled VAE decode skipped the clamp to [-1, 1]; every decode is clamped.
- ``resolution`` was an ``assert`` (gone under ``python -O``): a ValueError, and any multiple
  of 32 from 64 to 2048 is accepted (the released model was trained at 640 and 1024).
- An empty prompt needs the Qwen2.5-VL processor to caption the picture; without one the parent
  failed on an unset variable, here the error says what to pass. ``processor`` is optional.
- A 4-channel picture was taken for latents whenever the VAE has 4 latent channels; pictures
  are always encoded, latents go through ``latents``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import PIL.Image
import torch
from diffusers import QwenImageLayeredPipeline
from diffusers.pipelines.qwenimage.pipeline_qwenimage_layered import (
    calculate_dimensions,
    retrieve_timesteps,
)
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

from layerstudio.document import Layer, LayerStack

from ..output_types import check_output_type, pictures_as

__all__ = ["QwenLayeredOutput", "QwenLayeredPipeline", "frames_to_stack", "latent_statistics"]


@dataclass
class QwenLayeredOutput(BaseOutput):
    """``images``: per image, its layers bottom first (lists of RGBA PIL images; a (B, L, H,
    W, 4) array for "np", a (B, L, 4, H, W) tensor for "pt"; the packed latents for
    "latent"); ``layers``: one :class:`LayerStack` per image (none for "latent")."""

    images: list[Any] | np.ndarray | torch.Tensor
    layers: list[LayerStack]


def latent_statistics(vae, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The VAE config's per-channel latent mean and std, shaped (1, C, 1, 1, 1) to
    normalise (B, C, frames, h, w) latents like ``like``."""
    shape = (1, vae.config.z_dim, 1, 1, 1)
    return (torch.tensor(vae.config.latents_mean).view(shape).to(like),
            torch.tensor(vae.config.latents_std).view(shape).to(like))


def _pictures(image: Any) -> list[PIL.Image.Image]:
    """The input picture(s) as RGBA PIL images: PIL, arrays (H, W, C) uint8 or float, tensors
    (B, C, H, W) or (C, H, W) in [0, 1], or lists of them."""
    if isinstance(image, (list, tuple)):
        return [picture for one in image for picture in _pictures(one)]
    if isinstance(image, PIL.Image.Image):
        return [image.convert("RGBA")]
    if isinstance(image, torch.Tensor):
        batch = image[None] if image.ndim == 3 else image
        arrays = batch.detach().float().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()
        return [_pictures(array)[0] for array in arrays]
    array = np.asarray(image)
    if array.dtype != np.uint8:
        array = np.rint(np.clip(array, 0, 1) * 255).astype(np.uint8)
    if array.ndim == 2:
        array = array[..., None]
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    mode = "RGBA" if array.shape[-1] == 4 else "RGB"
    return [PIL.Image.fromarray(array, mode).convert("RGBA")]


class QwenLayeredPipeline(QwenImageLayeredPipeline):
    """``pipe(picture, "a poster", layers=4).layers[0]`` is a :class:`LayerStack`."""

    _optional_components: ClassVar[list[str]] = ["processor"]

    def __init__(self, scheduler, vae, text_encoder, tokenizer, transformer,
                 processor=None) -> None:
        super().__init__(scheduler=scheduler, vae=vae, text_encoder=text_encoder,
                         tokenizer=tokenizer, processor=processor, transformer=transformer)

    def encode_prompt(self, prompt, device=None, num_images_per_prompt: int = 1,
                      prompt_embeds=None, prompt_embeds_mask=None,
                      max_sequence_length: int = 1024):
        """The parent's, with the attention mask repeated per image like the embeddings."""
        device = device or self._execution_device
        if prompt_embeds is None:
            prompt = [prompt] if isinstance(prompt, str) else prompt
            prompt_embeds, prompt_embeds_mask = self._get_qwen_prompt_embeds(prompt, device)
        prompt_embeds = prompt_embeds[:, :max_sequence_length]
        prompt_embeds = prompt_embeds.repeat_interleave(num_images_per_prompt, dim=0)
        if prompt_embeds_mask is not None:
            prompt_embeds_mask = prompt_embeds_mask[:, :max_sequence_length]
            prompt_embeds_mask = prompt_embeds_mask.repeat_interleave(num_images_per_prompt,
                                                                      dim=0)
            if prompt_embeds_mask.all():
                prompt_embeds_mask = None
        return prompt_embeds, prompt_embeds_mask

    def _condition_latents(self, pictures: list[PIL.Image.Image], height: int, width: int,
                           count: int, per: int) -> torch.Tensor:
        """Packed, normalised latents of the pictures, one per image of the batch."""
        device = self._execution_device
        if self.vae.config.input_channels == 3:
            pictures = [picture.convert("RGB") for picture in pictures]
        processed = self.image_processor.preprocess(pictures, height, width)
        processed = processed.unsqueeze(2).to(device, self.vae.dtype)
        latents = self.vae.encode(processed).latent_dist.mode()
        mean, std = latent_statistics(self.vae, latents)
        latents = (latents - mean) / std
        if latents.shape[0] == 1:
            latents = latents.expand(count, *latents.shape[1:])
        elif latents.shape[0] != count:
            raise ValueError(f"{latents.shape[0]} pictures for {count} prompts: give one, or "
                             "one per prompt")
        latents = latents.repeat_interleave(per, dim=0).permute(0, 2, 1, 3, 4)
        return self._pack_latents(latents, latents.shape[0], self.latent_channels,
                                  latents.shape[3], latents.shape[4], 1)

    def _prompts(self, prompt, prompt_embeds, pictures, use_en_prompt: bool,
                 caption_tokens: int) -> list[str] | None:
        """The prompts, captioning the picture when none is given (needs the processor)."""
        if prompt_embeds is not None:
            if prompt is not None:
                raise ValueError("give a prompt or prompt_embeds, not both")
            return None
        if prompt is None or (isinstance(prompt, str) and not prompt.strip()):
            if self.processor is None:
                raise ValueError("give a prompt describing the picture: captioning it "
                                 "automatically needs the pipeline's Qwen2.5-VL processor")
            return [self.get_image_caption(pictures[0], use_en_prompt, self._execution_device,
                                           caption_tokens)]
        return [prompt] if isinstance(prompt, str) else list(prompt)

    def get_image_caption(self, prompt_image, use_en_prompt: bool = True, device=None,
                          max_new_tokens: int = 512) -> str:
        """The parent's captioning with a token budget."""
        template = self.image_caption_prompt_en if use_en_prompt else \
            self.image_caption_prompt_cn
        inputs = self.processor(text=template, images=prompt_image, padding=True,
                                return_tensors="pt").to(device)
        made = self.text_encoder.generate(**inputs, max_new_tokens=max_new_tokens)
        trimmed = [out[len(given):] for given, out in zip(inputs.input_ids, made, strict=True)]
        return self.processor.batch_decode(trimmed, skip_special_tokens=True,
                                           clean_up_tokenization_spaces=False)[0].strip()

    @torch.no_grad()
    def __call__(self, image: Any = None, prompt: str | list[str] | None = None,
                 negative_prompt: str | list[str] | None = None, true_cfg_scale: float = 4.0,
                 layers: int = 4, num_inference_steps: int = 50,
                 sigmas: list[float] | None = None, guidance_scale: float | None = None,
                 num_images_per_prompt: int = 1,
                 generator: torch.Generator | list[torch.Generator] | None = None,
                 latents: torch.Tensor | None = None,
                 prompt_embeds: torch.Tensor | None = None,
                 prompt_embeds_mask: torch.Tensor | None = None,
                 negative_prompt_embeds: torch.Tensor | None = None,
                 negative_prompt_embeds_mask: torch.Tensor | None = None,
                 output_type: str = "pil", return_dict: bool = True,
                 attention_kwargs: dict[str, Any] | None = None,
                 callback_on_step_end: Callable | None = None,
                 callback_on_step_end_tensor_inputs: list[str] | None = None,
                 max_sequence_length: int = 512, resolution: int = 640,
                 cfg_normalize: bool = False, use_en_prompt: bool = False,
                 caption_tokens: int = 512) -> QwenLayeredOutput | tuple:
        """The parent's arguments in its order, then ``caption_tokens`` (the caption's token
        budget when the picture is captioned). Returns :class:`QwenLayeredOutput`."""
        check_output_type(output_type)
        if not isinstance(resolution, int) or resolution % 32 or not 64 <= resolution <= 2048:
            raise ValueError(f"resolution must be a multiple of 32 from 64 to 2048 (the "
                             f"released model: 640 or 1024), got {resolution!r}")
        if not isinstance(layers, int) or not 1 <= layers <= 32:
            raise ValueError(f"layers must be a whole number from 1 to 32, got {layers!r}")
        if image is None:
            raise ValueError("image is required: the picture to decompose")
        tensor_inputs = callback_on_step_end_tensor_inputs or ["latents"]
        self.check_inputs(resolution, resolution, negative_prompt=negative_prompt,
                          prompt_embeds=prompt_embeds,
                          negative_prompt_embeds=negative_prompt_embeds,
                          prompt_embeds_mask=prompt_embeds_mask,
                          negative_prompt_embeds_mask=negative_prompt_embeds_mask,
                          callback_on_step_end_tensor_inputs=tensor_inputs,
                          max_sequence_length=max_sequence_length)
        pictures = _pictures(image)
        width, height = calculate_dimensions(resolution * resolution,
                                             pictures[0].width / pictures[0].height)
        multiple = self.vae_scale_factor * 2
        width, height = width // multiple * multiple, height // multiple * multiple
        self._guidance_scale = guidance_scale
        self._true_cfg_scale = true_cfg_scale
        self._attention_kwargs = attention_kwargs or {}
        self._current_timestep = None
        self._interrupt = False
        device = self._execution_device

        prompts = self._prompts(prompt, prompt_embeds, pictures, use_en_prompt, caption_tokens)
        count = len(prompts) if prompts is not None else prompt_embeds.shape[0]
        per = num_images_per_prompt
        guided = true_cfg_scale > 1 and (negative_prompt is not None or
                                         negative_prompt_embeds is not None)
        prompt_embeds, prompt_embeds_mask = self.encode_prompt(
            prompts, device, per, prompt_embeds, prompt_embeds_mask, max_sequence_length)
        if guided:
            if negative_prompt is not None and isinstance(negative_prompt, str):
                negative_prompt = [negative_prompt] * count
            negative_prompt_embeds, negative_prompt_embeds_mask = self.encode_prompt(
                negative_prompt, device, per, negative_prompt_embeds,
                negative_prompt_embeds_mask, max_sequence_length)

        condition = self._condition_latents(pictures, height, width, count, per)
        channels = self.transformer.config.in_channels // 4
        rows, cols = 2 * (height // multiple), 2 * (width // multiple)
        batch = count * per
        if isinstance(generator, list) and len(generator) != batch:
            raise ValueError(f"{len(generator)} generators for {batch} images")
        if latents is None:
            noise = randn_tensor((batch, layers + 1, channels, rows, cols), generator=generator,
                                 device=device, dtype=prompt_embeds.dtype)
            latents = self._pack_latents(noise, batch, channels, rows, cols, layers + 1)
        latents = latents.to(device, prompt_embeds.dtype)
        shapes = [[(1, rows // 2, cols // 2)] * (layers + 1) + [(1, rows // 2, cols // 2)]
                  ] * batch

        sigmas = np.linspace(1.0, 0, num_inference_steps + 1)[:-1] if sigmas is None else sigmas
        mu = (condition.shape[1] / (256 * 256 / 16 / 16)) ** 0.5
        timesteps, num_inference_steps = retrieve_timesteps(
            self.scheduler, num_inference_steps, device, sigmas=sigmas, mu=mu)
        self._num_timesteps = len(timesteps)
        guidance = None
        if self.transformer.config.guidance_embeds:
            if guidance_scale is None:
                raise ValueError("guidance_scale is required for a guidance-distilled model")
            guidance = torch.full([batch], guidance_scale, device=device, dtype=torch.float32)
        is_rgb = torch.zeros(batch, dtype=torch.long, device=device)
        self.scheduler.set_begin_index(0)

        def predict(text, mask, name: str) -> torch.Tensor:
            with self.transformer.cache_context(name):
                out = self.transformer(
                    hidden_states=torch.cat([latents, condition], dim=1),
                    timestep=timestep / 1000, guidance=guidance,
                    encoder_hidden_states_mask=mask, encoder_hidden_states=text,
                    img_shapes=shapes, attention_kwargs=self._attention_kwargs,
                    additional_t_cond=is_rgb, return_dict=False)[0]
            return out[:, :latents.shape[1]]

        with self.progress_bar(total=num_inference_steps) as progress_bar:
            for i, t in enumerate(timesteps):
                if self.interrupt:
                    continue
                self._current_timestep = t
                timestep = t.expand(batch).to(latents.dtype)
                velocity = predict(prompt_embeds, prompt_embeds_mask, "cond")
                if guided:
                    unguided = predict(negative_prompt_embeds, negative_prompt_embeds_mask,
                                       "uncond")
                    combined = unguided + self._true_cfg_scale * (velocity - unguided)
                    if cfg_normalize:
                        combined = combined * (velocity.norm(dim=-1, keepdim=True) /
                                               combined.norm(dim=-1, keepdim=True))
                    velocity = combined
                latents = self.scheduler.step(velocity, t, latents, return_dict=False)[0]
                if callback_on_step_end is not None:
                    named = {"latents": latents, "prompt_embeds": prompt_embeds}
                    returned = callback_on_step_end(
                        self, i, t, {key: named[key] for key in tensor_inputs})
                    latents = returned.pop("latents", latents)
                    prompt_embeds = returned.pop("prompt_embeds", prompt_embeds)
                progress_bar.update()
        self._current_timestep = None

        if output_type == "latent":
            result = QwenLayeredOutput(images=latents, layers=[])
        else:
            frames = self.decode_latents(latents, height, width, layers)
            info = {"pipeline": type(self).__name__, "layers": layers,
                    "num_inference_steps": num_inference_steps,
                    "true_cfg_scale": true_cfg_scale if guided else 1.0}
            texts = [text for text in (prompts or [""] * count) for _ in range(per)]
            pictures = [pictures_as(one, output_type) for one in frames]
            result = QwenLayeredOutput(
                images=np.stack(pictures) if output_type == "np" else
                torch.stack(pictures) if output_type == "pt" else pictures,
                layers=[frames_to_stack(one, {**info, "prompt": text})
                        for one, text in zip(frames, texts, strict=True)])
        self.maybe_free_model_hooks()
        return result if return_dict else (result.images, result.layers)

    @property
    def true_cfg_scale(self) -> float:
        """The CFG scale of the current run; a step-end callback may assign
        ``pipe._true_cfg_scale`` and the following steps use it."""
        return self._true_cfg_scale

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor, height: int, width: int,
                       layers: int) -> np.ndarray:
        """Packed latents of ``output_type="latent"`` -> (B, layers, H, W, 4) straight RGBA
        in [0, 1], bottom layer first (frame 0, the re-made composite, dropped)."""
        unpacked = self._unpack_latents(latents, height, width, layers, self.vae_scale_factor)
        unpacked = unpacked.to(self.vae.dtype)
        mean, std = latent_statistics(self.vae, unpacked)
        unpacked = (unpacked * std + mean)[:, :, 1:]
        batch, channels, frames, rows, cols = unpacked.shape
        flat = unpacked.permute(0, 2, 1, 3, 4).reshape(-1, channels, 1, rows, cols)
        decoded = self.vae.decode(flat, return_dict=False)[0].squeeze(2)
        rgba = ((decoded.float().clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).cpu().numpy()
        if rgba.shape[-1] == 3:  # an RGB VAE: opaque layers
            rgba = np.concatenate([rgba, np.ones_like(rgba[..., :1])], axis=-1)
        return rgba.reshape(batch, frames, *rgba.shape[1:])


def frames_to_stack(frames: np.ndarray, info: dict[str, Any]) -> LayerStack:
    """Decoded layers ((L, H, W, 4) float, bottom first) as a stack: the first is the
    background, the others objects cropped to their content."""
    as_uint8 = np.rint(frames * 255).clip(0, 255).astype(np.uint8)
    height, width = as_uint8.shape[1:3]
    stack = LayerStack(width, height, metadata=dict(info))
    for index, pixels in enumerate(as_uint8):
        layer = Layer("background" if index == 0 else f"layer {index}", pixels,
                      kind="background" if index == 0 else "object",
                      provenance={**info, "frame": index + 1})
        stack.add(layer if index == 0 or layer.is_empty else layer.cropped_to_content())
    return stack
