"""What the in-context decomposition tasks (LayerDecomp, DiffDecompose) share in training.

Both start from a shipped ART model (option ``base``, default ``tiny-art``): its transformer
already has per-stream embeddings and its multi-layer transparent decoder reads a layer's
latent beside the picture and the background. The frozen VAE, tokenizer and decoder are
copied into the run; the transformer and the text encoder train.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from layerstudio.train.recipe import Stage
from layerstudio.train.tasks import DiTTextToImageTask, adopt_base

from .anonymous_region import AnonymousRegionTransformer, MultiLayerTransparentDecoder
from .flow_matching import logit_normal_sigmas, noisy_latents, schedule_shift

__all__ = ["InContextTask"]


class InContextTask(DiTTextToImageTask):
    """The transformer and text encoder of an ART base, on its frozen VAE and decoder."""

    def __init__(self, stage: Stage, output: Path, device: torch.device) -> None:
        stage.options.setdefault("base", "tiny-art")
        adopt_base(stage.options, output, ("vae", "tokenizer", "transparent_decoder"))
        super().__init__(stage, output, device)
        self.decoder = MultiLayerTransparentDecoder.from_pretrained(
            self.output / "transparent_decoder", dtype=torch.float32).to(device).eval()
        self.decoder.requires_grad_(False)

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
