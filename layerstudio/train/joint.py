"""Training the joint LayerDiffuse model (foreground + background + blend, attention sharing).

As for the released SD 1.5 joint model, the base U-Net and text encoder stay frozen and only
the attention-sharing adapter learns: per frame, low-rank changes of every attention
projection, and the cross-frame attention. Data: one-object ``objects`` scenes, split into
the object's RGBA layer (through the transparent encoder), the background and the composite
(through the base VAE), each with its own caption. The three frames of a scene share one
noise level, as they are denoised together at inference.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from layerstudio.pipelines.latent_transparency import (
    AttentionSharingAdapter,
    JointTransparencyPipeline,
    TransparentVAEDecoder,
    TransparentVAEEncoder,
    encode_rgba,
    rgb_tensors,
    rgba_tensors,
)

from ..eval.transparency import over
from ..imaging import over_checkerboard
from ..tiny_models import IMAGE_SIZE
from .recipe import Stage
from .tasks import TextToImageTask, _grid, adopt_base
from .transparency import pair_batch

__all__ = ["JointUNetTask"]


class JointUNetTask(TextToImageTask):
    """Options: ``base`` (default the shipped tiny-layerdiffuse) gives the VAE, tokenizer and
    transparent codec; ``unet_base`` (default tiny-sd) the frozen U-Net and text encoder;
    ``rank`` the per-frame low-rank size (default 32); ``pool`` the emoji vocabulary."""

    def __init__(self, stage: Stage, output: Path, device: torch.device) -> None:
        from diffusers import UNet2DConditionModel
        from transformers import CLIPTextModel

        adopt_base({"base": "tiny-layerdiffuse", **stage.options}, output,
                   ("vae", "tokenizer", "transparent_encoder", "transparent_decoder"))
        adopt_base({"base": stage.options.get("unet_base", "tiny-sd")}, output,
                   ("unet", "text_encoder"))
        super().__init__(stage, output, device)
        folder = self.output

        def frozen(module: nn.Module) -> nn.Module:
            module.requires_grad_(False)
            return module.to(device).eval()

        self.unet = frozen(UNet2DConditionModel.from_pretrained(folder / "unet",
                                                                dtype=torch.float32))
        self.text_encoder = frozen(CLIPTextModel.from_pretrained(folder / "text_encoder",
                                                                 dtype=torch.float32))
        self.transparent_encoder = frozen(TransparentVAEEncoder.from_pretrained(
            folder / "transparent_encoder", dtype=torch.float32))
        self.transparent_decoder = frozen(TransparentVAEDecoder.from_pretrained(
            folder / "transparent_decoder", dtype=torch.float32))

    def trainable(self) -> nn.Module:
        adapter = AttentionSharingAdapter.for_unet(self.unet, frames=3,
                                                   rank=self.options.get("rank", 32))
        return nn.ModuleDict({"attention_sharing": adapter})

    def batch(self, step: int):
        fg, bg, blend_captions, parts = pair_batch(self.options.get("seed", 0), step,
                                                   self.stage.batch_size,
                                                   pool=self.options.get("pool"))
        blends = [over(f, b) for f, b in zip(fg, bg, strict=True)]
        captions = [text for (thing, ground), blend in zip(parts, blend_captions, strict=True)
                    for text in (thing, ground, blend)]  # (b f) order
        return (*rgba_tensors(fg), rgb_tensors(bg), rgb_tensors(blends)), \
            self.caption_ids(captions, step)

    @torch.no_grad()
    def _latents(self, images) -> torch.Tensor:
        """Scaled latents of a batch, interleaved (foreground, background, blend)."""
        fg_rgba, fg_padded, bg, blend = (t.to(self.device) for t in images)
        foreground = encode_rgba(self.vae, self.transparent_encoder, fg_rgba, fg_padded)
        opaque = self.vae.encode(torch.cat([bg, blend])).latent_dist.sample().chunk(2)
        frames = torch.stack([foreground, *opaque], dim=1).flatten(0, 1)
        return frames * self.vae.config.scaling_factor

    def loss(self, module, batch):
        images, ids = batch
        module["attention_sharing"].attach(self.unet)
        latents = self._latents(images)
        noise = torch.randn_like(latents)
        steps = torch.randint(0, self.noise.config.num_train_timesteps,
                              (latents.shape[0] // 3,), device=self.device)
        steps = steps.repeat_interleave(3)  # one noise level per scene
        noisy = self.noise.add_noise(latents, noise, steps)
        with torch.no_grad():
            text = self.text_encoder(ids.to(self.device)).last_hidden_state
        return F.mse_loss(self.unet(noisy, steps, text).sample, noise)

    def pipeline(self, module) -> JointTransparencyPipeline:
        from diffusers import DPMSolverMultistepScheduler

        return JointTransparencyPipeline(
            vae=self.vae, text_encoder=self.text_encoder, tokenizer=self.tokenizer,
            unet=self.unet,
            scheduler=DPMSolverMultistepScheduler.from_config(self.noise.config),
            transparent_decoder=self.transparent_decoder,
            transparent_encoder=self.transparent_encoder,
            attention_sharing=module["attention_sharing"])

    @torch.no_grad()
    def sample_grid(self, module, path):
        pipe = self.pipeline(module)
        pipe.set_progress_bar_config(disable=True)
        _, _, captions, parts = pair_batch(54321, 0, 4, pool=self.options.get("pool"))
        out = pipe(captions, foreground_prompt=[p[0] for p in parts],
                   background_prompt=[p[1] for p in parts], num_inference_steps=20,
                   guidance_scale=4.0, height=IMAGE_SIZE, width=IMAGE_SIZE,
                   generator=torch.Generator().manual_seed(0))
        images, labels = [], []
        for i, (thing, ground) in enumerate(parts):
            foreground, background, blend = out.images[3 * i:3 * i + 3]
            images += [over_checkerboard(foreground, 4), background, blend]
            labels += [thing, ground, captions[i]]
        _grid(images, labels, path, columns=6)

