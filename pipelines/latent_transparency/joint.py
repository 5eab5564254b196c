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
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import PIL.Image
import torch
from diffusers import StableDiffusionPipeline

from layerstudio.document import Layer, LayerStack

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
    def _frame_prompts(prompt, foreground_prompt, background_prompt) -> list[list[str]]:
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

    def __call__(self, prompt: str | list[str] | None = None, *,
                 foreground_prompt: str | list[str] | None = None,
                 background_prompt: str | list[str] | None = None,
                 negative_prompt: str | None = None, augment: bool = False,
                 output_type: str = "pil", return_dict: bool = True, **kwargs: Any):
        """``prompt`` describes the blend, ``foreground_prompt`` and ``background_prompt``
        the layers; everything else as ``StableDiffusionPipeline.__call__`` (steps,
        guidance, size, generator, callbacks). ``images`` holds, per picture, the RGBA
        foreground, the background and the blend; ``layers`` one stack per picture."""
        if output_type not in ("pil", "np"):
            raise ValueError(f"output_type must be 'pil' or 'np', got {output_type!r}")
        if kwargs.get("num_images_per_prompt", 1) != 1:
            raise ValueError("pass lists of prompts instead of num_images_per_prompt")
        for name in ("prompt_embeds", "negative_prompt_embeds", "return_dict", "output_type"):
            if name in kwargs:
                raise ValueError(f"{name} is not supported by the joint pipeline")
        triples = self._frame_prompts(prompt, foreground_prompt, background_prompt)
        flat = [text for triple in triples for text in triple]  # (b f) order
        guided = kwargs.get("guidance_scale", 7.5) > 1
        embeds, negative = self.encode_prompt(
            flat, self._execution_device, 1, guided,
            None if negative_prompt is None else [negative_prompt] * len(flat))
        latents = StableDiffusionPipeline.__call__(
            self, prompt_embeds=embeds, negative_prompt_embeds=negative, output_type="latent",
            **kwargs).images
        result = self._joint_outputs(latents, triples, output_type, augment,
                                     {key: kwargs[key] for key in
                                      ("num_inference_steps", "guidance_scale") if key in kwargs})
        self.maybe_free_model_hooks()
        return result if return_dict else (result.images, result.layers)

    @torch.no_grad()
    def _joint_outputs(self, latents: torch.Tensor, triples: list[list[str]], output_type: str,
                       augment: bool, extra: dict[str, Any]) -> TransparentPipelineOutput:
        unscaled = (latents / self.vae.config.scaling_factor).unflatten(0, (-1, len(FRAMES)))
        foreground = decode_rgba(self.vae, self.transparent_decoder, unscaled[:, 0],
                                 augment=augment)
        opaque = decode_opaque(self.vae, unscaled[:, 1:].flatten(0, 1))
        frames = torch.stack([foreground, *opaque.unflatten(0, (-1, 2)).unbind(1)], dim=1)
        array = frames.permute(0, 1, 3, 4, 2).cpu().numpy()  # (b, f, h, w, 4)
        as_uint8 = np.rint(array * 255).clip(0, 255).astype(np.uint8)
        stacks = []
        for picture, (fg_text, bg_text, text) in zip(as_uint8, triples, strict=True):
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
        images = array.reshape(-1, *array.shape[2:]) if output_type == "np" else \
            [PIL.Image.fromarray(image, "RGBA") for image in as_uint8.reshape(
                -1, *as_uint8.shape[2:])]
        return TransparentPipelineOutput(images=images, layers=stacks)
