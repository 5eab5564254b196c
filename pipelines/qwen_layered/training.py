"""Training ``tiny-layered``: Qwen-Image-Layered's own classes, tiny, on procedural scenes.

Every scene (``design`` and ``objects`` at 64 px, at most ``max_layers`` layers: the top
ones merge down beyond that) gives exact ground truth: its layers bottom first, each on the
full canvas as straight RGBA, and their composite.

1. ``qwen_layered_vae``: the RGBA VAE (``AutoencoderKLQwenImage``, 4 input channels) learns
   to reconstruct layers and composites: L1 over RGBA, colour L1 weighted by alpha, a small
   KL term. Its export records the latents' per-channel mean and std in its config, which the
   pipeline uses to normalise them.
2. ``qwen_layered_transformer``: the MMDiT with layer-3D RoPE learns, by rectified flow, the
   velocity of all frames of a scene at once (frame 0 the composite, then the layers), next to
   the clean composite's latent as the condition frame, as the released model is trained. The
   text condition is one fixed prompt through a frozen tiny Qwen2.5-VL (the shipped model is a
   picture -> layers model; a prompt is not needed to use it).

The exported folder is a complete :class:`~.pipeline.QwenLayeredPipeline`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from layerstudio.datasets import generate
from layerstudio.document import LayerStack
from layerstudio.eval.layers_edit_dist import stack_layers
from layerstudio.train.recipe import Stage
from layerstudio.train.tasks import Task, _grid, save_fp16

from .pipeline import QwenLayeredPipeline, latent_statistics
from .tiny import tiny_qwen_layered_components

__all__ = ["PROMPT", "QwenLayeredTransformerTask", "QwenLayeredVaeTask", "layered_scene"]

PROMPT = "the layers of this picture"
"""The one prompt the tiny model is trained with (and the default at inference)."""
SIZE = 64


def _capped(stack: LayerStack, max_layers: int) -> LayerStack:
    """At most ``max_layers`` layers: the topmost merge down (the truth a model of that
    many layers can reach)."""
    stack = stack.copy()
    while len(stack) > max_layers:
        stack.merge_down(len(stack) - 1)
    return stack


def layered_scene(seed: int, index: int, max_layers: int = 4, split: str = "train",
                  size: int = SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """One scene: (layers (L, 4, H, W), composite (4, H, W)), straight RGBA in [0, 1],
    alternating ``design`` and ``objects`` scenes, capped in turn at 2, 3, ... ``max_layers``
    layers so that every layer count is learned."""
    kind = ("design", "objects")[index % 2]
    options = {"max_elements": 4} if kind == "design" else {"max_objects": 3}
    sample = generate(kind, index, seed=seed, size=size, split=split, **options)
    stack = _capped(sample.stack, 2 + (index // 2) % max(1, max_layers - 1))
    layers = torch.from_numpy(np.stack(stack_layers(stack))).permute(0, 3, 1, 2)
    composite = torch.from_numpy(stack.composite_array()).permute(2, 0, 1)
    return layers.float(), composite.float()


def _frames(rgba: torch.Tensor) -> torch.Tensor:
    """(N, 4, H, W) straight RGBA in [0, 1] -> the VAE's input (N, 4, 1, H, W) in [-1, 1]."""
    return (rgba * 2 - 1).unsqueeze(2)


class QwenLayeredVaeTask(Task):
    """Stage 1: the RGBA VAE."""

    def trainable(self) -> nn.Module:
        return tiny_qwen_layered_components(self.options.get("seed", 0))["vae"]

    def batch(self, step: int) -> torch.Tensor:
        pictures = []
        for i in range(self.stage.batch_size):
            layers, composite = layered_scene(self.options.get("seed", 0),
                                              step * self.stage.batch_size + i,
                                              self.options.get("max_layers", 4))
            pictures.append(composite if i % 3 == 0 else
                            layers[(step + i) % len(layers)])
        return _frames(torch.stack(pictures))

    def loss(self, module, batch):
        batch = batch.to(self.device)
        posterior = module.encode(batch).latent_dist
        made = module.decode(posterior.sample()).sample
        alpha = (batch[:, 3:] + 1) / 2
        colour = (alpha * (made[:, :3] - batch[:, :3]).abs()).mean()
        return F.l1_loss(made, batch) + colour + 1e-6 * posterior.kl().mean()

    @torch.no_grad()
    def sample_grid(self, module, path):
        from PIL import Image

        module.eval()
        batch = self.batch(10_000)[:8].to(self.device)
        made = module.decode(module.encode(batch).latent_dist.mode()).sample
        images = []
        for picture in torch.cat([batch, made]).clamp(-1, 1):
            array = ((picture[:, 0].permute(1, 2, 0) + 1) * 127.5).round().byte().cpu()
            images.append(Image.fromarray(array.numpy(), "RGBA"))
        _grid(images, ["truth"] * len(batch) + ["decoded"] * len(batch), path)

    @torch.no_grad()
    def _latent_statistics(self, module) -> tuple[list[float], list[float]]:
        """Per-channel mean and std of the latents of training scenes (option
        ``statistics_scenes``, default 48), so the
        transformer works on unit-variance latents (the released VAE's config holds its own)."""
        module.eval()
        latents = []
        for index in range(self.options.get("statistics_scenes", 48)):
            layers, composite = layered_scene(self.options.get("seed", 0), 10_000_000 + index,
                                              self.options.get("max_layers", 4))
            frames = _frames(torch.cat([composite[None], layers])).to(self.device)
            latents.append(module.encode(frames).latent_dist.mode())
        stacked = torch.cat(latents)
        return ([round(v, 4) for v in stacked.mean(dim=(0, 2, 3, 4)).tolist()],
                [round(v, 4) for v in stacked.std(dim=(0, 2, 3, 4)).tolist()])

    def export(self, module):
        mean, std = self._latent_statistics(module)
        module.register_to_config(latents_mean=mean, latents_std=std)
        save_fp16(module, self.output / "vae")

    def exported(self) -> bool:
        return (self.output / "vae" / "config.json").is_file()


class QwenLayeredTransformerTask(Task):
    """Stage 2: the transformer, around the stage-1 VAE and a frozen tiny text encoder."""

    def __init__(self, stage: Stage, output: Path, device: torch.device) -> None:
        super().__init__(stage, output, device)
        from diffusers import AutoencoderKLQwenImage

        if not (self.output / "vae" / "config.json").is_file():
            raise FileNotFoundError("the transformer stage needs the vae stage's output "
                                    "(vae) in the same run")
        parts = tiny_qwen_layered_components(
            self.options.get("seed", 0), depth=self.options.get("depth", 2),
            heads=self.options.get("heads", 3), head_dim=self.options.get("head_dim", 16))
        self.vae = AutoencoderKLQwenImage.from_pretrained(
            self.output / "vae", dtype=torch.float32).to(device).eval().requires_grad_(False)
        self.text_encoder = parts["text_encoder"].to(device).eval().requires_grad_(False)
        self.tokenizer, self.scheduler = parts["tokenizer"], parts["scheduler"]
        self._fresh_transformer = parts["transformer"]
        helper = self.pipeline(self._fresh_transformer)
        with torch.no_grad():
            self.prompt_embeds, self.prompt_mask = helper.encode_prompt(PROMPT, device)

    def trainable(self) -> nn.Module:
        """The transformer: fresh, or from an earlier run's (option ``init_from``)."""
        from diffusers import QwenImageTransformer2DModel

        start = self.options.get("init_from")
        if start:
            return nn.ModuleDict({"transformer": QwenImageTransformer2DModel.from_pretrained(
                Path(start) / "transformer", dtype=torch.float32)})
        return nn.ModuleDict({"transformer": self._fresh_transformer})

    def batch(self, step: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [layered_scene(self.options.get("seed", 0), step * self.stage.batch_size + i,
                              self.options.get("max_layers", 4))
                for i in range(self.stage.batch_size)]

    @torch.no_grad()
    def _latents(self, frames: torch.Tensor) -> torch.Tensor:
        """(N, 4, H, W) RGBA -> normalised latents (N, C, h, w)."""
        latent = self.vae.encode(_frames(frames).to(self.device)).latent_dist.mode()
        mean, std = latent_statistics(self.vae, latent)
        return ((latent - mean) / std)[:, :, 0]

    def loss(self, module, batch):
        pack = QwenLayeredPipeline._pack_latents
        total = 0.0
        for layers, composite in batch:
            latents = self._latents(torch.cat([composite[None], layers]))  # (L+1, C, h, w)
            frames, channels, rows, cols = latents.shape
            target = pack(latents[None], 1, channels, rows, cols, frames)
            condition = pack(latents[None, :1], 1, channels, rows, cols, 1)
            noise = torch.randn_like(target)
            sigma = torch.sigmoid(torch.randn(1, device=self.device))
            noisy = (1 - sigma) * target + sigma * noise
            shapes = [[(1, rows // 2, cols // 2)] * (frames + 1)]
            velocity = module["transformer"](
                hidden_states=torch.cat([noisy, condition], dim=1), timestep=sigma,
                encoder_hidden_states=self.prompt_embeds,
                encoder_hidden_states_mask=self.prompt_mask, img_shapes=shapes,
                additional_t_cond=torch.zeros(1, dtype=torch.long, device=self.device),
                return_dict=False)[0][:, :target.shape[1]]
            total = total + F.mse_loss(velocity, noise - target)
        return total / len(batch)

    def pipeline(self, transformer) -> QwenLayeredPipeline:
        return QwenLayeredPipeline(scheduler=self.scheduler, vae=self.vae,
                                   text_encoder=self.text_encoder, tokenizer=self.tokenizer,
                                   transformer=transformer)

    @torch.no_grad()
    def sample_grid(self, module, path):
        from PIL import Image

        pipe = self.pipeline(module["transformer"])
        pipe.set_progress_bar_config(disable=True)
        images, labels = [], []
        for index in range(3):
            layers, composite = layered_scene(54321, index, self.options.get("max_layers", 4),
                                              split="heldout")
            picture = (composite.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            made = pipe(picture, PROMPT, layers=len(layers), num_inference_steps=20,
                        resolution=SIZE, output_type="pil",
                        generator=torch.Generator().manual_seed(0)).images[0]
            images += [Image.fromarray(picture, "RGBA"), *made]
            labels += ["input", *(f"layer {i}" for i in range(len(made)))]
        _grid(images, labels, path, columns=6)

    def export(self, module):
        save_fp16(self.text_encoder, self.output / "text_encoder")
        save_fp16(module["transformer"], self.output / "transformer")
        self.tokenizer.save_pretrained(self.output / "tokenizer")
        self.scheduler.save_pretrained(self.output / "scheduler")
        pipe = self.pipeline(module["transformer"])
        pipe.save_config(self.output)

    def exported(self) -> bool:
        return (self.output / "transformer" / "config.json").is_file()
