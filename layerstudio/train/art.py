"""Training ART (anonymous-region multi-layer generation) on the ``objects`` scenes.

Each scene gives ART's layers: the composite (layer 0), the background (1) and one RGBA layer
per object (2..), with the objects' boxes snapped outward to the token grid. Every layer is
encoded as the base VAE latent of its colour premultiplied on mid grey.

1. ``art_decoder``: the multi-layer transparent decoder learns RGBA of every layer from the
   base VAE's decode of those latents (alpha L1, weighted double, + alpha-weighted colour L1).
2. ``art_transformer``: the tiny-dit MMDiT, widened with layer embeddings, learns the velocity
   of all layers jointly (rectified flow, one noise level per scene), with the loss on the
   tokens inside each layer's box, which are the only ones it sees.

Scenes have different numbers of layers, so a batch is a list of scenes, each its own forward.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from layerstudio.datasets import generate
from layerstudio.datasets.scenes.objects import MAX_LAYERS
from layerstudio.datasets.torch_data import sample_to_tensors
from layerstudio.pipelines.anonymous_region import (
    AnonymousRegionPipeline,
    AnonymousRegionTransformer,
    MultiLayerTransparentDecoder,
    box_mask,
    snap_boxes,
    token_box_pixels,
)
from layerstudio.pipelines.latent_transparency import premultiplied_on_grey

from ..tiny_models import IMAGE_SIZE
from .recipe import Stage
from .tasks import DiTTextToImageTask, Task, _grid, adopt_base, save_fp16
from .transparency import _checker_grid, _frozen_vae

__all__ = ["ARTDecoderTask", "ARTTransformerTask", "art_scene", "tiny_art_decoder"]

GRID = 8  # pixels per token of the tiny models (VAE x4, 2 x 2 packing)


def tiny_art_decoder(latent_channels: int = 4) -> MultiLayerTransparentDecoder:
    """The multi-layer decoder shipped in ``tiny-art`` (about 0.6 M parameters), for a VAE
    of ``latent_channels``."""
    return MultiLayerTransparentDecoder(patch_size=GRID, dim=96, depth=2, heads=4,
                                        max_layers=52, max_side=32, refine_channels=32,
                                        latent_channels=latent_channels)


def art_scene(seed: int, index: int, max_objects: int = 4, pool: int | None = None,
              size: int = IMAGE_SIZE, split: str = "train"
              ) -> tuple[torch.Tensor, list[tuple[int, int, int, int]], str]:
    """One ``objects`` scene as ART layers: (L, 4, H, W) straight RGBA in [0, 1] (composite,
    background, objects), their token boxes, and the caption."""
    sample = generate("objects", index, seed=seed, size=size, split=split, pool=pool,
                      max_objects=max_objects)
    tensors = sample_to_tensors(sample, "0..1")
    composite = torch.cat([tensors["image"], torch.ones(1, size, size)])
    layers = torch.cat([composite[None], tensors["layers"]])
    canvas = (0, 0, size // GRID, size // GRID)
    regions = [(x0, y0, max(1, x1 - x0), max(1, y1 - y0))  # an empty object still gets a box
               for x0, y0, x1, y1 in sample.boxes[1:]]
    boxes = snap_boxes(regions, size, size, GRID, max_layers=MAX_LAYERS + 2)
    return layers, [canvas, canvas, *boxes], sample.caption


class _SceneBatches:
    """``batch(step)``: a list of scenes (layers, boxes, caption)."""

    stage: Stage
    options: dict

    def batch(self, step: int):
        size = self.stage.batch_size
        return [art_scene(self.options.get("seed", 0), step * size + i,
                          self.options.get("max_objects", 4), self.options.get("pool"))
                for i in range(size)]


@torch.no_grad()
def _grey_latents(vae, layers: torch.Tensor) -> torch.Tensor:
    """(L, 4, H, W) straight RGBA in [0, 1] -> unscaled VAE latents of colour on grey."""
    return vae.encode(premultiplied_on_grey(layers.to(vae.device))).latent_dist.mean


class ARTDecoderTask(_SceneBatches, Task):
    """Step 1: the multi-layer transparent decoder around the frozen base VAE."""

    def __init__(self, stage: Stage, output: Path, device: torch.device) -> None:
        super().__init__(stage, output, device)
        adopt_base(self.options, self.output)
        self.vae = _frozen_vae(self.output, device)

    def trainable(self) -> nn.Module:
        return tiny_art_decoder(self.vae.config.latent_channels)

    def _decoded(self, module, layers, boxes) -> torch.Tensor:
        latents = _grey_latents(self.vae, layers)
        with torch.no_grad():
            pictures = (self.vae.decode(latents).sample / 2 + 0.5).clamp(0, 1)
        return module(pictures[None], latents[None], boxes)[0]

    def loss(self, module, batch):
        total = 0.0
        for layers, boxes, _ in batch:
            layers = layers.to(self.device)
            rgba = self._decoded(module, layers, boxes)[2:]
            target = layers[2:]
            alpha = F.l1_loss(rgba[:, 3:], target[:, 3:])
            colour = (target[:, 3:] * (rgba[:, :3] - target[:, :3]).abs()).mean()
            total = total + 2 * alpha + colour
        return total / len(batch)

    @torch.no_grad()
    def sample_grid(self, module, path):
        module.eval()
        images, labels = [], []
        for index in range(4):
            layers, boxes, _ = art_scene(12345, index, 3, split="heldout")
            rgba = self._decoded(module, layers.to(self.device), boxes)
            for truth, made in zip(layers[2:4], rgba[2:4], strict=False):
                images += _checker_grid(torch.stack([truth.cpu(), made.cpu()]))
                labels += ["layer", "decoded"]
        _grid(images, labels, path)

    def export(self, module):
        save_fp16(module, self.output / "transparent_decoder")

    def exported(self) -> bool:
        return (self.output / "transparent_decoder" / "config.json").is_file()


class ARTTransformerTask(_SceneBatches, DiTTextToImageTask):
    """Step 2: the anonymous-region transformer, from ``base`` (default ``tiny-dit``)."""

    def __init__(self, stage: Stage, output: Path, device: torch.device) -> None:
        stage.options.setdefault("base", "tiny-dit")
        super().__init__(stage, output, device)
        if not (self.output / "transparent_decoder" / "config.json").is_file():
            raise FileNotFoundError("the art_transformer stage needs the art_decoder stage's "
                                    "output (transparent_decoder) in the same run")

    def trainable(self) -> nn.Module:
        from diffusers import FluxTransformer2DModel
        from transformers import CLIPTextModel

        start = self.options.get("init_from")
        if start:  # continue from an exported tiny-art folder
            transformer = AnonymousRegionTransformer.from_pretrained(
                Path(start) / "transformer", dtype=torch.float32)
        else:
            transformer = AnonymousRegionTransformer.from_flux(
                FluxTransformer2DModel.from_pretrained(self.base / "transformer",
                                                       dtype=torch.float32))
        return nn.ModuleDict({
            "transformer": transformer,
            "text_encoder": CLIPTextModel.from_pretrained(
                Path(start or self.base) / "text_encoder", dtype=torch.float32)})

    def batch(self, step: int):
        scenes = _SceneBatches.batch(self, step)
        return scenes, self.caption_ids([caption for _, _, caption in scenes], step)

    def loss(self, module, batch):
        from layerstudio.pipelines.anonymous_region import token_count
        from layerstudio.pipelines.flow_matching import (
            logit_normal_sigmas,
            noisy_latents,
            schedule_shift,
            velocity_target,
        )

        scenes, ids = batch
        text = module["text_encoder"](ids.to(self.device))
        scale, shift = self.vae.config.scaling_factor, self.vae.config.shift_factor or 0.0
        total = 0.0
        for i, (layers, boxes, _) in enumerate(scenes):
            latents = (_grey_latents(self.vae, layers) - shift) * scale
            latents = latents[None]
            noise = torch.randn_like(latents)
            mu = schedule_shift(token_count(boxes), self.noise.config)
            sigma = logit_normal_sigmas(1, mu=mu, device=self.device)
            velocity = module["transformer"](
                noisy_latents(latents, noise, sigma), boxes, sigma,
                text.last_hidden_state[i:i + 1], text.pooler_output[i:i + 1]).sample
            rows, cols = latents.shape[-2] // 2, latents.shape[-1] // 2
            inside = box_mask(boxes, rows, cols, latents, scale=2)
            error = (velocity - velocity_target(latents, noise)) ** 2 * inside
            total = total + error.sum() / (inside.sum() * latents.shape[2])
        return total / len(scenes)

    def pipeline(self, module):
        decoder = MultiLayerTransparentDecoder.from_pretrained(
            self.output / "transparent_decoder", dtype=torch.float32).to(self.device)
        return AnonymousRegionPipeline(vae=self.vae, text_encoder=module["text_encoder"],
                                       tokenizer=self.tokenizer,
                                       transformer=module["transformer"], scheduler=self.noise,
                                       transparent_decoder=decoder)

    @torch.no_grad()
    def sample_grid(self, module, path):
        pipe = self.pipeline(module)
        pipe.set_progress_bar_config(disable=True)
        images, labels = [], []
        for index in range(8):
            _, boxes, caption = art_scene(54321, index, 3, self.options.get("pool"))
            pixel_boxes = [token_box_pixels(box, GRID) for box in boxes[2:]]
            out = pipe(caption, pixel_boxes, num_inference_steps=20, guidance_scale=4.0,
                       generator=torch.Generator().manual_seed(index))
            images.append(out.images[0].convert("RGB"))
            labels.append(caption[:40])
        _grid(images, labels, path)

