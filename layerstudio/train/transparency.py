"""Training LayerDiffuse on a trained tiny-sd, following the paper's two steps.

1. ``transparent_vae``: the offset encoder and the alpha decoder, around the frozen base VAE.
   Losses (paper section 3.1): *identity*, the base VAE decodes the adjusted latent back to the
   premultiplied-on-grey image, so the offset is harmless to the base model; and
   *reconstruction*, the alpha decoder recovers alpha and colour from the base decode and the
   latent. Colour is compared with the padded RGB, which is defined everywhere. The paper's
   PatchGAN term is left out: at 64 px the L1 + L2 terms already give clean edges, and a
   discriminator would triple the CPU time.
2. ``transparent_unet``: the base U-Net (and text encoder) fine-tuned on the adjusted latents of
   transparent images, so what it generates decodes to RGBA.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from layerstudio.datasets import generate
from layerstudio.document import LayerStack
from layerstudio.imaging import over_checkerboard
from layerstudio.pipelines.latent_transparency import (
    LatentTransparencyPipeline,
    TransparentVAEDecoder,
    TransparentVAEEncoder,
    decode_rgba,
    encode_rgba,
    premultiplied_on_grey,
    rgb_tensors,
    rgba_tensors,
)

from ..tiny_models import IMAGE_SIZE, tiny_transparent_decoder, tiny_transparent_encoder
from .recipe import Stage
from .tasks import Task, TextToImageTask, _grid, adopt_base, save_fp16

__all__ = ["ConditionedUNetTask", "TransparentUNetTask", "TransparentVaeTask", "pair_batch",
           "rgba_batch"]


def rgba_batch(seed: int, step: int, batch_size: int, pool: int | None = None,
               size: int = IMAGE_SIZE) -> tuple[list[np.ndarray], list[str]]:
    """``transparent`` samples (all four alpha styles) as straight RGBA uint8, and captions."""
    samples = [generate("transparent", step * batch_size + i, seed=seed, size=size, pool=pool)
               for i in range(batch_size)]
    return [sample.composite() for sample in samples], [sample.caption for sample in samples]


def _frozen_vae(folder: Path, device: torch.device):
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(folder / "vae", dtype=torch.float32).to(device).eval()
    vae.requires_grad_(False)
    return vae


def _checker_grid(rgba: torch.Tensor) -> list[Image.Image]:
    """(B, 4, H, W) in [0, 1] -> RGB previews over a checkerboard."""
    arrays = (rgba.detach().permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype(np.uint8)
    return [over_checkerboard(Image.fromarray(a, "RGBA"), 4) for a in arrays]


class TransparentVaeTask(Task):
    """Step 1: ``transparent_encoder`` + ``transparent_decoder`` on a frozen base VAE."""

    def __init__(self, stage: Stage, output: Path, device: torch.device) -> None:
        super().__init__(stage, output, device)
        adopt_base(self.options, self.output)
        self.vae = _frozen_vae(self.output, device)

    def trainable(self) -> nn.Module:
        start = self.options.get("init_from")
        if start:
            return nn.ModuleDict({
                "encoder": TransparentVAEEncoder.from_pretrained(
                    Path(start) / "transparent_encoder", dtype=torch.float32),
                "decoder": TransparentVAEDecoder.from_pretrained(
                    Path(start) / "transparent_decoder", dtype=torch.float32)})
        channels = self.vae.config.latent_channels
        return nn.ModuleDict({"encoder": tiny_transparent_encoder(latent_channels=channels),
                              "decoder": tiny_transparent_decoder(latent_channels=channels)})

    def batch(self, step: int):
        images, _ = rgba_batch(self.options.get("seed", 0), step, self.stage.batch_size)
        return rgba_tensors(images)

    def loss(self, module, batch):
        rgba, padded = (t.to(self.device) for t in batch)
        latent = encode_rgba(self.vae, module["encoder"], rgba, padded)
        base = self.vae.decode(latent).sample
        identity = F.mse_loss(base, premultiplied_on_grey(rgba))
        predicted = module["decoder"]((base / 2 + 0.5).clamp(0, 1), latent)
        target = torch.cat([rgba[:, 3:], padded], dim=1)  # alpha first, as the decoder emits
        reconstruction = F.l1_loss(predicted, target) + F.mse_loss(predicted, target)
        alpha_weight = self.options.get("alpha_weight", 2.0)  # edges matter most
        alpha = F.l1_loss(predicted[:, :1], target[:, :1])
        return reconstruction + alpha_weight * alpha + \
            self.options.get("identity_weight", 1.0) * identity

    @torch.no_grad()
    def sample_grid(self, module, path):
        images, _ = rgba_batch(12345, 0, 8)
        rgba, padded = rgba_tensors(images)
        module.eval()
        latent = encode_rgba(self.vae, module["encoder"], rgba.to(self.device),
                             padded.to(self.device))
        out = decode_rgba(self.vae, module["decoder"], latent)
        pairs = [i for pair in zip(_checker_grid(rgba), _checker_grid(out), strict=True)
                 for i in pair]
        _grid(pairs, ["input", "decoded"] * 8, path)

    def export(self, module):
        save_fp16(module["encoder"], self.output / "transparent_encoder")
        save_fp16(module["decoder"], self.output / "transparent_decoder")

    def exported(self) -> bool:
        return (self.output / "transparent_decoder" / "config.json").is_file()


class TransparentUNetTask(TextToImageTask):
    """Step 2: epsilon prediction on adjusted latents ``mean + std * offset`` of transparent
    images; U-Net and text encoder start from the base model (option ``base``)."""

    DEFAULT_BASE = "tiny-sd"
    BASE_PARTS: tuple[str, ...] = ("vae", "tokenizer")

    def __init__(self, stage: Stage, output: Path, device: torch.device) -> None:
        self.base = adopt_base({"base": self.DEFAULT_BASE, **stage.options}, output,
                               self.BASE_PARTS)
        super().__init__(stage, output, device)
        folder = self.output
        if not (folder / "transparent_encoder" / "config.json").is_file():
            raise FileNotFoundError("the transparent U-Net stage needs the transparent_vae "
                                    "stage's output")
        self.transparent_encoder = TransparentVAEEncoder.from_pretrained(
            folder / "transparent_encoder", dtype=torch.float32).to(device).eval()
        self.transparent_decoder = TransparentVAEDecoder.from_pretrained(
            folder / "transparent_decoder", dtype=torch.float32).to(device).eval()

    def trainable(self) -> nn.Module:
        if not self.options.get("init_from"):
            self.options = {**self.options, "init_from": str(self.base)}
        return super().trainable()

    def batch(self, step: int):
        images, captions = rgba_batch(self.options.get("seed", 0), step,
                                      self.stage.batch_size, pool=self.options.get("pool"))
        return rgba_tensors(images), self.caption_ids(captions, step)

    @torch.no_grad()
    def encode_latents(self, images) -> torch.Tensor:
        rgba, padded = (t.to(self.device) for t in images)
        latent = encode_rgba(self.vae, self.transparent_encoder, rgba, padded)
        return latent * self.vae.config.scaling_factor

    def pipeline(self, module) -> LatentTransparencyPipeline:
        from diffusers import DPMSolverMultistepScheduler

        return LatentTransparencyPipeline(
            vae=self.vae, text_encoder=module["text_encoder"], tokenizer=self.tokenizer,
            unet=module["unet"],
            scheduler=DPMSolverMultistepScheduler.from_config(self.noise.config),
            transparent_decoder=self.transparent_decoder,
            transparent_encoder=self.transparent_encoder)

    @torch.no_grad()
    def sample_grid(self, module, path):
        pipe = self.pipeline(module)
        pipe.set_progress_bar_config(disable=True)
        prompts = self.preview_prompts()
        result = pipe(prompts, num_inference_steps=20, guidance_scale=4.0, height=IMAGE_SIZE,
                      width=IMAGE_SIZE, generator=torch.Generator().manual_seed(0))
        _grid(result.previews(4), prompts, path)



# --- layer-conditioned modes --------------------------------------------------------------------

def pair_batch(seed: int, step: int, batch_size: int, pool: int | None = None,
               size: int = IMAGE_SIZE
               ) -> tuple[list[np.ndarray], list[np.ndarray], list[str], list[tuple[str, str]]]:
    """``objects`` scenes with one object: (foreground RGBA on the canvas, background RGBA,
    caption "OBJECT on BACKGROUND", (object caption, background caption))."""
    foregrounds, backgrounds, captions, parts = [], [], [], []
    for i in range(batch_size):
        sample = generate("objects", step * batch_size + i, seed=seed, size=size,
                          min_objects=1, max_objects=1, pool=pool)
        background, thing = sample.stack.layers
        backgrounds.append(np.asarray(background.to_pil()))
        foregrounds.append(np.asarray(LayerStack(size, size, [thing]).composite()))
        captions.append(sample.caption)
        parts.append((thing.provenance["caption"], background.provenance["caption"]))
    return foregrounds, backgrounds, captions, parts


class ConditionedUNetTask(TransparentUNetTask):
    """bg2fg / fg2bg (option ``mode``): the transparent U-Net of ``base`` (default the shipped
    tiny-layerdiffuse) with ``conv_in`` widened to take the condition latent, fine-tuned on
    one-object scenes. The condition is zeroed for 10% of samples so "stop at" (and
    guidance against no condition) stays in distribution."""

    DEFAULT_BASE = "tiny-layerdiffuse"
    BASE_PARTS = ("vae", "tokenizer", "transparent_encoder", "transparent_decoder")

    def __init__(self, stage: Stage, output: Path, device: torch.device) -> None:
        super().__init__(stage, output, device)
        self.mode = self.options.get("mode", "bg2fg")
        if self.mode not in ("bg2fg", "fg2bg"):
            raise ValueError(f"mode must be bg2fg or fg2bg, got {self.mode!r}")

    def trainable(self) -> nn.Module:
        from layerstudio.pipelines.latent_transparency.convert import widen_conv_in

        module = super().trainable()
        if module["unet"].config.in_channels == self.vae.config.latent_channels:
            widen_conv_in(module["unet"], 2 * self.vae.config.latent_channels)
        return module

    def batch(self, step: int):
        fg, bg, captions, _ = pair_batch(self.options.get("seed", 0), step,
                                         self.stage.batch_size, pool=self.options.get("pool"))
        fg_rgba, fg_padded = rgba_tensors(fg)
        bg_rgb = rgb_tensors(bg)
        keep = torch.from_numpy(np.random.default_rng([step, 5]).random(len(fg)) >= 0.1)
        return (fg_rgba, fg_padded, bg_rgb, keep), self.caption_ids(captions, step)

    @torch.no_grad()
    def _latents(self, images) -> tuple[torch.Tensor, torch.Tensor]:
        """(target latent, condition latent), both scaled."""
        fg_rgba, fg_padded, bg_rgb, keep = (t.to(self.device) for t in images)
        scale = self.vae.config.scaling_factor
        foreground = encode_rgba(self.vae, self.transparent_encoder, fg_rgba, fg_padded) * scale
        posterior = self.vae.encode(bg_rgb).latent_dist
        if self.mode == "bg2fg":
            target, condition = foreground, posterior.mean * scale
        else:
            target, condition = posterior.sample() * scale, foreground
        return target, condition * keep.view(-1, 1, 1, 1)

    def loss(self, module, batch):
        images, ids = batch
        target, condition = self._latents(images)
        noise = torch.randn_like(target)
        steps = torch.randint(0, self.noise.config.num_train_timesteps, (target.shape[0],),
                              device=self.device)
        noisy = torch.cat([self.noise.add_noise(target, noise, steps), condition], dim=1)
        text = module["text_encoder"](ids.to(self.device)).last_hidden_state
        return F.mse_loss(module["unet"](noisy, steps, text).sample, noise)

    def pipeline(self, module):
        from diffusers import DPMSolverMultistepScheduler

        from layerstudio.pipelines.latent_transparency import ConditionedTransparencyPipeline

        return ConditionedTransparencyPipeline(
            vae=self.vae, text_encoder=module["text_encoder"], tokenizer=self.tokenizer,
            unet=module["unet"],
            scheduler=DPMSolverMultistepScheduler.from_config(self.noise.config),
            transparent_decoder=self.transparent_decoder,
            transparent_encoder=self.transparent_encoder, mode=self.mode)

    @torch.no_grad()
    def sample_grid(self, module, path):
        pipe = self.pipeline(module)
        pipe.set_progress_bar_config(disable=True)
        fg, bg, captions, _ = pair_batch(54321, 0, 8, pool=self.options.get("pool"))
        previews = []
        for foreground, background, caption in zip(fg, bg, captions, strict=True):
            condition = background if self.mode == "bg2fg" else foreground
            out = pipe(caption, condition=condition, num_inference_steps=20, height=IMAGE_SIZE,
                       width=IMAGE_SIZE, generator=torch.Generator().manual_seed(0))
            previews.append(out.previews(4)[0])
        _grid(previews, captions, path)
