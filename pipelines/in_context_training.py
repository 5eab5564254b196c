"""What the in-context decomposition tasks (LayerDecomp, DiffDecompose, anime layers) share in
training.

Both start from a shipped ART model (option ``base``, default ``tiny-art``): its transformer
already has per-stream embeddings and its multi-layer transparent decoder reads a layer's
latent beside the picture and the background. The frozen VAE, tokenizer and decoder are
copied into the run; the transformer and the text encoder train.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from torch import nn

from layerstudio.train.recipe import Stage
from layerstudio.train.tasks import DiTTextToImageTask, Task, adopt_base, save_fp16

from .anonymous_region import AnonymousRegionTransformer, MultiLayerTransparentDecoder
from .flow_matching import logit_normal_sigmas, noisy_latents, schedule_shift

__all__ = ["InContextDecoderTask", "InContextTask"]


class InContextTask(DiTTextToImageTask):
    """The transformer and text encoder of an ART base, on its frozen VAE and decoder."""

    def __init__(self, stage: Stage, output: Path, device: torch.device) -> None:
        stage.options.setdefault("base", "tiny-art")
        adopt_base(stage.options, output, ("vae", "tokenizer", "transparent_decoder"))
        super().__init__(stage, output, device)
        self.decoder = MultiLayerTransparentDecoder.from_pretrained(
            self.output / "transparent_decoder", dtype=torch.float32).to(device).eval()
        self.decoder.requires_grad_(False)

    def caption_ids(self, captions: list[str], step: int) -> torch.Tensor:
        """Token ids; option ``caption_dropout`` drops that share of captions first (the
        decomposition pipelines run without a prompt unless given one, so a model should
        learn to work without), then the usual 10% for classifier-free guidance."""
        rng = np.random.default_rng([step, 5])
        share = float(self.options.get("caption_dropout", 0.0))
        return super().caption_ids(["" if rng.random() < share else c for c in captions],
                                   step)

    def trainable(self) -> nn.Module:
        from transformers import CLIPTextModel

        start = Path(self.options.get("init_from") or self.base)
        return nn.ModuleDict({
            "transformer": AnonymousRegionTransformer.from_pretrained(
                start / "transformer", dtype=torch.float32),
            "text_encoder": CLIPTextModel.from_pretrained(start / "text_encoder",
                                                          dtype=torch.float32)})

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [-1, 1] (or LayerDiffuse's premultiplied-on-grey RGBA image) ->
        scaled latents (the posterior mean)."""
        latent = self.vae.encode(images).latent_dist.mean
        return (latent - (self.vae.config.shift_factor or 0.0)) * self.vae.config.scaling_factor

    def noised(self, targets: torch.Tensor, streams: int
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[tuple[int, ...]]]:
        """(noisy targets, noise, sigma, layout): the (B, T, C, h, w) target latents at one
        logit-normal noise level per scene, shifted as the sampler shifts it for a sequence
        of ``streams`` canvas-sized streams, and that canvas layout."""
        noise = torch.randn_like(targets)
        rows, cols = targets.shape[-2] // 2, targets.shape[-1] // 2
        mu = schedule_shift(streams * rows * cols, self.noise.config)
        sigma = logit_normal_sigmas(targets.shape[0], mu=mu, device=self.device)
        return noisy_latents(targets, noise, sigma), noise, sigma, [(0, 0, cols, rows)] * streams

    def unscaled(self, latent: torch.Tensor) -> torch.Tensor:
        return latent / self.vae.config.scaling_factor + (self.vae.config.shift_factor or 0.0)


class InContextDecoderTask(Task):
    """ART's multi-layer transparent decoder fine-tuned to a method's layers (recipe stage
    before the transformer's). A layer's latent is the VAE's encoding of its colour
    premultiplied on grey, ``(2 F - 1) a``, which alone cannot tell a faint bright layer
    from a strong grey one; ART's decoder learned opaque objects with hard edges. Decoding
    all streams in one sequence, it can read the composite beside each layer: fine-tuned on
    the method's scenes (true latents; alpha L1 x 2 + premultiplied colour L1 on every
    transparent stream), it learns what those layers look like. The VAE stays frozen; the
    base's VAE, tokenizer and decoder are copied into the run for the transformer stage.

    Subclasses give :meth:`batch` and :meth:`streams`."""

    def __init__(self, stage: Stage, output: Path, device: torch.device) -> None:
        stage.options.setdefault("base", "tiny-art")
        super().__init__(stage, output, device)
        adopt_base(self.options, self.output, ("vae", "tokenizer", "transparent_decoder"))
        self.vae = AutoencoderKL.from_pretrained(self.output / "vae", dtype=torch.float32
                                                 ).to(device).eval()
        self.vae.requires_grad_(False)

    def streams(self, batch) -> tuple[list[torch.Tensor], dict[int, torch.Tensor]]:
        """(every stream's picture as the VAE takes it, (B, 3, H, W) in [-1, 1] or
        premultiplied on grey; {stream index: its true straight RGBA (B, 4, H, W)} for the
        transparent streams)."""
        raise NotImplementedError

    def trainable(self) -> nn.Module:
        return MultiLayerTransparentDecoder.from_pretrained(
            self.output / "transparent_decoder", dtype=torch.float32)

    def decoded(self, module, images: list[torch.Tensor]) -> torch.Tensor:
        """(B, T, 4, H, W) straight RGBA of every stream, decoded as the pipelines do."""
        with torch.no_grad():
            latents = torch.stack([self.vae.encode(image.to(self.device)).latent_dist.mean
                                   for image in images], dim=1)
            pictures = (self.vae.decode(latents.flatten(0, 1)).sample / 2 + 0.5).clamp(0, 1)
        rows, cols = latents.shape[-2] // 2, latents.shape[-1] // 2
        return module(pictures.unflatten(0, latents.shape[:2]), latents,
                      [(0, 0, cols, rows)] * len(images))

    def loss(self, module, batch):
        images, targets = self.streams(batch)
        rgba = self.decoded(module, images)
        total = 0.0
        for index, target in targets.items():
            found, target = rgba[:, index], target.to(self.device)
            total = total + 2 * F.l1_loss(found[:, 3:], target[:, 3:]) + F.l1_loss(
                found[:, :3] * found[:, 3:], target[:, :3] * target[:, 3:])
        return total / len(targets)

    def export(self, module):
        save_fp16(module, self.output / "transparent_decoder")

    def exported(self) -> bool:
        return (self.output / "transparent_decoder" / "config.json").is_file()
