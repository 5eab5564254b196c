"""What each recipe stage trains, on which data, with which loss, and what it exports.

Every batch is a pure function of (recipe seed, stage, step), so a resumed run sees exactly
the batches an uninterrupted one would have.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from torch import nn

from ..datasets import generate
from ..datasets.assets.backgrounds import make_background
from ..datasets.assets.emoji import catalog, render_emoji
from ..tiny_models import IMAGE_SIZE, MAX_TOKENS, tiny_flux, tiny_text_encoder, tiny_unet, tiny_vae
from .latent_norm import normalise_latent_channels
from .recipe import Stage

__all__ = ["DiTTextToImageTask", "JudgeTask", "Task", "TextToImageTask", "VaeTask",
           "adopt_base"]

PREVIEW_PROMPTS = ("a red apple", "a cat face", "a rocket", "a blue star",
                   "a sunflower", "a soft-edged orange heart", "a car", "a ghost")
"""Sample-grid prompts when a stage trains on all emoji; with a ``pool`` option the grid
shows the first emoji of that pool instead, which the model has actually seen."""


def _to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """(h, w, 3) uint8 -> (3, h, w) float in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).float() / 127.5 - 1


def _to_image(tensor: torch.Tensor) -> Image.Image:
    array = ((tensor.detach().float().clamp(-1, 1) + 1) * 127.5).round().byte()
    return Image.fromarray(array.permute(1, 2, 0).cpu().numpy())


def _grid(images: list[Image.Image], labels: list[str], path: Path, columns: int = 4) -> None:
    size = images[0].size[0]
    rows = (len(images) + columns - 1) // columns
    sheet = Image.new("RGB", (columns * (size + 4), rows * (size + 16)), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        x, y = (i % columns) * (size + 4), (i // columns) * (size + 16)
        sheet.paste(image.convert("RGB"), (x, y))
        draw.text((x + 1, y + size + 2), label[: size // 6], fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)


def save_fp16(module: nn.Module, folder: Path) -> None:
    """Save a half-precision copy (the shipped format), leaving the live module untouched."""
    copy.deepcopy(module).half().save_pretrained(folder, safe_serialization=True)


def _flatten(sample, background: int = 255) -> np.ndarray:
    """A sample's composite over a plain background, RGB uint8."""
    rgba = sample.composite().astype(np.float32) / 255
    rgb = rgba[..., :3] * rgba[..., 3:4] + background / 255 * (1 - rgba[..., 3:4])
    return np.clip(np.rint(rgb * 255), 0, 255).astype(np.uint8)


class Task:
    """Base class: one stage's model, data, loss and export.

    Stage option ``init_from`` (a folder of an exported preset) starts the VAE and
    text-to-image stages from those weights instead of random ones, to train a shipped
    checkpoint further."""

    def __init__(self, stage: Stage, output: Path, device: torch.device) -> None:
        self.stage, self.output, self.device = stage, Path(output), device
        self.options: dict[str, Any] = stage.options

    def trainable(self) -> nn.Module:
        raise NotImplementedError

    def batch(self, step: int) -> Any:
        raise NotImplementedError

    def batches(self, start_step: int = 0) -> Iterator[Any]:
        step = start_step
        while True:
            yield self.batch(step)
            step += 1

    def loss(self, module: nn.Module, batch: Any) -> torch.Tensor:
        raise NotImplementedError

    def sample_grid(self, module: nn.Module, path: Path) -> None:
        """Write a picture of what the model does now (default: nothing)."""

    def export(self, module: nn.Module) -> None:
        raise NotImplementedError

    def exported(self) -> bool:
        raise NotImplementedError


# --- tiny-judge -------------------------------------------------------------------------------

def judge_batch(seed: int, step: int, batch_size: int, size: int = IMAGE_SIZE
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Emoji rendered at random scale and place over random backgrounds, with class labels."""
    emoji = catalog()
    rng = np.random.default_rng([seed, step, 7])
    images, labels = [], []
    for _ in range(batch_size):
        label = int(rng.integers(len(emoji)))
        art = render_emoji(emoji[label], int(rng.integers(size * 3 // 8, size * 15 // 16)))
        background, _ = make_background(rng, (size, size))
        canvas = Image.fromarray(background)
        x = int(rng.integers(0, size - art.shape[1] + 1))
        y = int(rng.integers(0, size - art.shape[0] + 1))
        canvas.alpha_composite(Image.fromarray(art), (x, y))
        rgb = np.asarray(canvas)[..., :3]
        # Generated 64 px images are soft: half the renders are blurred or resampled so the
        # judge scores a blurry apple as an apple, not as whatever class blur resembles.
        if rng.random() < 0.5:
            rgb = cv2.GaussianBlur(rgb, (0, 0), float(rng.uniform(0.5, 1.5)))
        if rng.random() < 0.3:
            small = cv2.resize(rgb, (size // 2, size // 2), interpolation=cv2.INTER_AREA)
            rgb = cv2.resize(small, (size, size), interpolation=cv2.INTER_LINEAR)
        images.append(_to_tensor(rgb))
        labels.append(label)
    return torch.stack(images), torch.tensor(labels)


class JudgeTask(Task):
    """Classify emoji renders; exports a TinyJudge to OUTPUT/."""

    EVAL_SEED = 10_000_019  # renders never drawn in training (training seeds are < 2**31)

    def trainable(self) -> nn.Module:
        from ..judge import TinyJudge

        emoji = catalog()
        return TinyJudge(class_names=[e.caption for e in emoji],
                         class_ids=[e.id for e in emoji])

    def batch(self, step: int):
        return judge_batch(self.options.get("seed", 0), step, self.stage.batch_size)

    def loss(self, module, batch):
        images, labels = (t.to(self.device) for t in batch)
        return F.cross_entropy(module(images), labels, label_smoothing=0.1)

    def evaluate(self, module, count: int = 512) -> float:
        """Top-1 accuracy on ``count`` renders of the evaluation stream (in batches of 64)."""
        batches = [judge_batch(self.EVAL_SEED, step, 64) for step in range(count // 64)]
        return float(np.mean([module.label_accuracy(images, labels)
                              for images, labels in batches]))

    def sample_grid(self, module, path):
        images, labels = judge_batch(self.EVAL_SEED, 0, 16)
        module.eval()
        with torch.no_grad():
            guesses = module(images.to(self.device)).argmax(1).cpu()
        names = module.config.class_names
        _grid([_to_image(i) for i in images],
              [("ok " if g == t else "x ") + names[g] for g, t in zip(guesses, labels,
                                                                     strict=True)], path)

    def export(self, module):
        accuracy = self.evaluate(module)
        save_fp16(module, self.output)
        (self.output / "eval.json").write_text(f'{{"top1_heldout_renders": {accuracy:.4f}}}\n')

    def exported(self) -> bool:
        return (self.output / "diffusion_pytorch_model.safetensors").is_file()


# --- tiny-sd: VAE ----------------------------------------------------------------------------

def image_batch(seed: int, step: int, batch_size: int, kinds: tuple[str, ...],
                size: int = IMAGE_SIZE, pool: int | None = None
                ) -> tuple[torch.Tensor, list[str]]:
    """Composites of our generators (transparent ones flattened on white) and captions;
    ``pool`` limits transparent samples to a fixed emoji subset."""
    images, captions = [], []
    for i in range(batch_size):
        kind = kinds[(step * batch_size + i) % len(kinds)]
        options = {"objects": {"max_objects": 3}, "transparent": {"pool": pool}}.get(kind, {})
        sample = generate(kind, step * batch_size + i, seed=seed, size=size, **options)
        images.append(_to_tensor(_flatten(sample)))
        captions.append(sample.caption)
    return torch.stack(images), captions


def _edge_l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """L1 between horizontal and vertical differences: plain pixel losses let a small decoder
    blur the thin dark outlines of emoji line art, which is what makes them recognisable."""
    return (F.l1_loss(a[..., 1:, :] - a[..., :-1, :], b[..., 1:, :] - b[..., :-1, :]) +
            F.l1_loss(a[..., :, 1:] - a[..., :, :-1], b[..., :, 1:] - b[..., :, :-1]))


class VaeTask(Task):
    """AutoencoderKL on RGB composites: L1 + MSE + edge reconstruction and a small KL term.

    Option ``decoder_only`` fine-tunes just the decoder of the VAE already in OUTPUT/vae (or
    ``init_from``) with the encoder frozen, as Stable Diffusion's ft-MSE VAE did: the latent
    space stays the same, so a U-Net trained on it keeps working and only gets sharper.
    Option ``architecture`` (a table of `tiny_vae` overrides, e.g. ``latent_channels`` or
    ``block_out_channels``) shapes a new VAE's latent space."""

    def trainable(self) -> nn.Module:
        from diffusers import AutoencoderKL

        start = self.options.get("init_from")
        if self.options.get("decoder_only"):
            start = start or self.output
        if not start:
            return tiny_vae(**self.options.get("architecture", {}))
        vae = AutoencoderKL.from_pretrained(Path(start) / "vae", dtype=torch.float32)
        if self.options.get("decoder_only"):
            for part in (vae.encoder, vae.quant_conv):
                part.requires_grad_(False)
        return vae

    def batch(self, step: int):
        return image_batch(self.options.get("seed", 0), step, self.stage.batch_size,
                           tuple(self.options.get("kinds", ("transparent", "objects"))))[0]

    def loss(self, module, batch):
        images = batch.to(self.device)
        vae = getattr(module, "module", module)  # unwrapped under DDP
        if self.options.get("decoder_only"):
            with torch.no_grad():
                posterior = vae.encode(images).latent_dist
            kl = torch.zeros((), device=self.device)
        else:
            posterior = vae.encode(images).latent_dist
            kl = posterior.kl().mean() / images[0].numel()
        recon = vae.decode(posterior.sample()).sample
        return (F.l1_loss(recon, images) + F.mse_loss(recon, images) +
                self.options.get("edge_weight", 0.0) * _edge_l1(recon, images) +
                self.options.get("kl_weight", 1e-4) * kl)

    @torch.no_grad()
    def sample_grid(self, module, path):
        images = image_batch(12345, 0, 8, ("transparent", "objects"))[0].to(self.device)
        module.eval()
        recon = module(images).sample
        pairs = [_to_image(t) for pair in zip(images, recon, strict=True) for t in pair]
        _grid(pairs, ["input", "recon"] * 8, path)

    @torch.no_grad()
    def export(self, module):
        # Every latent channel is normalised to zero mean and unit spread for the diffusion
        # model, folded into the VAE (latent_norm.py says why one global scale is not enough);
        # a decoder-only run keeps the encoder, so it keeps the latents the U-Net learnt.
        if not self.options.get("decoder_only"):
            images = image_batch(999, 0, 256, ("transparent", "objects"))[0].to(self.device)
            normalise_latent_channels(module, images)
        save_fp16(module, self.output / "vae")

    def exported(self) -> bool:
        return (self.output / "vae" / "config.json").is_file()


# --- tiny-sd: U-Net + text encoder ------------------------------------------------------------

class TextToImageTask(Task):
    """Epsilon-prediction on the frozen VAE's latents, training the U-Net and text encoder
    together; 10% of captions are dropped for classifier-free guidance."""

    def __init__(self, stage: Stage, output: Path, device: torch.device) -> None:
        super().__init__(stage, output, device)
        from diffusers import AutoencoderKL, DDPMScheduler

        from ..tokenizer import build_tokenizer_files, caption_vocabulary, load_tokenizer

        if not (self.output / "vae" / "config.json").is_file():
            raise FileNotFoundError("the text-to-image stage needs the VAE stage's output")
        self.vae = AutoencoderKL.from_pretrained(self.output / "vae",
                                                 dtype=torch.float32).to(device).eval()
        self.vae.requires_grad_(False)
        folder = self.output / "tokenizer"
        if not (folder / "vocab.json").is_file():
            build_tokenizer_files(folder, caption_vocabulary())
        self.tokenizer = load_tokenizer(folder)
        self.noise = DDPMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear",
                                   beta_start=0.00085, beta_end=0.012, steps_offset=1,
                                   clip_sample=False)

    def trainable(self) -> nn.Module:
        start = self.options.get("init_from")
        if start:  # continue from an exported pipeline folder (e.g. the shipped tiny-sd)
            from diffusers import UNet2DConditionModel
            from transformers import CLIPTextModel

            folder = Path(start)
            return nn.ModuleDict({
                "unet": UNet2DConditionModel.from_pretrained(folder / "unet",
                                                             dtype=torch.float32),
                "text_encoder": CLIPTextModel.from_pretrained(folder / "text_encoder",
                                                              dtype=torch.float32)})
        vocab = self.tokenizer.get_vocab()
        channels = self.vae.config.latent_channels
        return nn.ModuleDict({
            "unet": tiny_unet(in_channels=channels, out_channels=channels),
            "text_encoder": tiny_text_encoder(len(vocab), self.tokenizer.bos_token_id,
                                              self.tokenizer.eos_token_id)})

    def batch(self, step: int):
        images, captions = image_batch(self.options.get("seed", 0), step,
                                       self.stage.batch_size,
                                       tuple(self.options.get("kinds", ("transparent",))),
                                       pool=self.options.get("pool"))
        return images, self.caption_ids(captions, step)

    def caption_ids(self, captions: list[str], step: int) -> torch.Tensor:
        """Token ids, 10% of captions dropped (the unconditional branch of CFG)."""
        rng = np.random.default_rng([step, 3])
        captions = ["" if rng.random() < 0.1 else c for c in captions]
        return self.tokenizer(captions, padding="max_length", max_length=MAX_TOKENS,
                              truncation=True, return_tensors="pt").input_ids

    @torch.no_grad()
    def encode_latents(self, images) -> torch.Tensor:
        """Scaled latents the denoiser learns (here: a sample of the VAE posterior)."""
        latents = self.vae.encode(images.to(self.device)).latent_dist.sample()
        return latents * self.vae.config.scaling_factor

    def loss(self, module, batch):
        images, ids = batch
        ids = ids.to(self.device)
        latents = self.encode_latents(images)
        noise = torch.randn_like(latents)
        steps = torch.randint(0, self.noise.config.num_train_timesteps, (latents.shape[0],),
                              device=self.device)
        noisy = self.noise.add_noise(latents, noise, steps)
        text = module["text_encoder"](ids).last_hidden_state
        return F.mse_loss(module["unet"](noisy, steps, text).sample, noise)

    def pipeline(self, module):
        from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline

        return StableDiffusionPipeline(
            vae=self.vae, text_encoder=module["text_encoder"], tokenizer=self.tokenizer,
            unet=module["unet"],
            scheduler=DPMSolverMultistepScheduler.from_config(self.noise.config),
            safety_checker=None, feature_extractor=None, requires_safety_checker=False)

    def preview_prompts(self) -> list[str]:
        from ..datasets.art import with_article
        from ..datasets.assets.emoji import emoji_pool

        pool = self.options.get("pool")
        if pool is None:
            return list(PREVIEW_PROMPTS)
        return [with_article(e.caption) for e in emoji_pool("train", pool)[:8]]

    @torch.no_grad()
    def sample_grid(self, module, path):
        pipe = self.pipeline(module)
        pipe.set_progress_bar_config(disable=True)
        prompts = self.preview_prompts()
        images = pipe(prompts, num_inference_steps=20, guidance_scale=4.0,
                      height=IMAGE_SIZE, width=IMAGE_SIZE,
                      generator=torch.Generator().manual_seed(0)).images
        _grid(images, prompts, path)

    def export(self, module):
        pipe = copy.deepcopy(self.pipeline(module))  # the copy goes fp16, the live one stays
        for component in pipe.components.values():
            if isinstance(component, nn.Module):
                component.half()
        pipe.save_pretrained(self.output, safe_serialization=True)

    def exported(self) -> bool:
        return (self.output / "model_index.json").is_file()


# --- models built on a trained tiny-sd ---------------------------------------------------------

def adopt_base(options: dict[str, Any], output: Path,
               parts: tuple[str, ...] = ("vae", "tokenizer")) -> Path:
    """Folder of option ``base`` (a shipped preset name or a pipeline folder, default
    ``tiny-sd``), after copying its frozen ``parts`` into ``output``."""
    import shutil

    from ..presets import PRESETS, component_folder, preset_path

    name = str(options.get("base", "tiny-sd"))
    base = preset_path(name) if name in PRESETS else Path(name)
    for part in parts:
        if not (Path(output) / part).is_dir():
            source = component_folder(name, part) if name in PRESETS else base / part
            shutil.copytree(source, Path(output) / part)
    return base


# --- tiny-dit ---------------------------------------------------------------------------------

class DiTTextToImageTask(TextToImageTask):
    """Rectified flow (velocity prediction, logit-normal noise levels shifted as the sampler
    shifts them) for a FLUX-style transformer on the latents of a trained VAE.

    Option ``base`` (a shipped preset name or a pipeline folder, default ``tiny-sd``) supplies
    the frozen VAE and the tokenizer, which are copied into OUTPUT, and the text encoder the
    transformer starts from (it trains along, as in the U-Net stage)."""

    def __init__(self, stage: Stage, output: Path, device: torch.device) -> None:
        self.base = adopt_base(stage.options, output)
        super().__init__(stage, output, device)
        from diffusers import FlowMatchEulerDiscreteScheduler

        # A 64 px image is 64 tokens; the shift grows to FLUX's 1.15 at 256 px (1,024 tokens).
        self.noise = FlowMatchEulerDiscreteScheduler(
            use_dynamic_shifting=True, base_image_seq_len=64, max_image_seq_len=1024,
            base_shift=0.5, max_shift=1.15)

    def trainable(self) -> nn.Module:
        from diffusers import FluxTransformer2DModel
        from transformers import CLIPTextModel

        start = self.options.get("init_from")
        encoder_from = Path(start) if start else self.base
        transformer = (FluxTransformer2DModel.from_pretrained(Path(start) / "transformer",
                                                              dtype=torch.float32)
                       if start else tiny_flux(in_channels=4 * self.vae.config.latent_channels))
        return nn.ModuleDict({
            "transformer": transformer,
            "text_encoder": CLIPTextModel.from_pretrained(encoder_from / "text_encoder",
                                                          dtype=torch.float32)})

    def loss(self, module, batch):
        from layerstudio.pipelines.flow_matching import (
            image_ids,
            logit_normal_sigmas,
            noisy_latents,
            pack_latents,
            schedule_shift,
            velocity_target,
        )

        images, ids = (t.to(self.device) for t in batch)
        with torch.no_grad():
            latents = self.vae.encode(images).latent_dist.sample()
            shift = self.vae.config.shift_factor or 0.0
            rows, cols = latents.shape[-2:]
            latents = pack_latents((latents - shift) * self.vae.config.scaling_factor)
        noise = torch.randn_like(latents)
        mu = schedule_shift(latents.shape[1], self.noise.config)
        sigmas = logit_normal_sigmas(latents.shape[0], mu=mu, device=self.device)
        text = module["text_encoder"](ids)
        velocity = module["transformer"](
            hidden_states=noisy_latents(latents, noise, sigmas), timestep=sigmas,
            pooled_projections=text.pooler_output, encoder_hidden_states=text.last_hidden_state,
            txt_ids=torch.zeros(ids.shape[1], 3, device=self.device),
            img_ids=image_ids(rows, cols, device=self.device), return_dict=False)[0]
        return F.mse_loss(velocity, velocity_target(latents, noise))

    def pipeline(self, module):
        from layerstudio.pipelines.dit_text_to_image import DiTTextToImagePipeline

        return DiTTextToImagePipeline(vae=self.vae, text_encoder=module["text_encoder"],
                                      tokenizer=self.tokenizer,
                                      transformer=module["transformer"],
                                      scheduler=self.noise)



