"""Training the anime layer decomposer on the ``anime`` illustrations (recipe tasks
``anime_decoder`` then ``anime_layers``).

Starts from a shipped ART model (:class:`~..in_context_training.InContextTask`). Each step
draws one recombination convention (artist or normal, uniformly), then that many
illustrations in it. Loss: **layer-wise**: the velocity MSE of each layer stream (flat
colour, shadow, highlight, line art) on its own, weighted by option ``layer_weights``
(default equal) and summed, so a sparse layer (a thin line art, a small highlight) is not
drowned by the flat colour's. Option ``semantic_embeddings`` (default true; false is the
paper's ablation) sets the layer streams' type embeddings as the pipeline will.
"""

from __future__ import annotations

import numpy as np
import torch

from layerstudio.blend import BlendMode
from layerstudio.datasets import generate
from layerstudio.document import LayerStack
from layerstudio.train.tasks import _grid
from layerstudio.train.transparency import _checker_grid

from ..flow_matching import velocity_target
from ..in_context_training import InContextDecoderTask, InContextTask
from ..latent_transparency import premultiplied_on_grey
from .pipeline import STREAMS, AnimeLayersPipeline, stream_codes
from .structure import CONVENTIONS, KINDS

__all__ = ["AnimeDecoderTask", "AnimeLayersTask", "anime_batch", "anime_scene"]


def anime_scene(seed: int, index: int, convention: str, size: int = 64,
                split: str = "train") -> tuple[dict[str, torch.Tensor], str]:
    """One ``anime`` illustration as tensors in [0, 1]: ``composite`` and ``flat`` (paper
    and flat colour, opaque) (3, H, W); ``shadow``, ``highlight``, ``lineart`` (4, H, W)
    straight RGBA on the canvas; and its caption."""
    sample = generate("anime", index, seed=seed, size=size, split=split,
                      convention=convention)
    stack = sample.stack

    def alone(*indices: int) -> np.ndarray:
        return LayerStack(size, size, [stack.layers[i].copy(blend_mode=BlendMode.NORMAL)
                                       for i in indices]).composite_array()

    def tensor(array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array, np.float32)).permute(2, 0, 1)

    return ({"composite": tensor(stack.composite_array()[..., :3]),
             "flat": tensor(alone(0, 1)[..., :3]), "shadow": tensor(alone(2)),
             "highlight": tensor(alone(3)), "lineart": tensor(alone(4))}, sample.caption)


def anime_batch(seed: int, step: int, size: int
                ) -> tuple[dict[str, torch.Tensor], str, list[str]]:
    """Batch ``step``: one convention drawn uniformly, ``size`` illustrations in it stacked,
    and their captions."""
    rng = np.random.default_rng([seed, step, 21])
    convention = str(rng.choice(list(CONVENTIONS)))
    scenes = [anime_scene(seed, step * size + i, convention) for i in range(size)]
    stacked = {key: torch.stack([scene[key] for scene, _ in scenes]) for key in scenes[0][0]}
    return stacked, convention, [caption for _, caption in scenes]


def _stream_images(scene: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    """What the VAE encodes for each stream: the opaque ones in [-1, 1], the layers
    premultiplied on grey."""
    return [scene["composite"] * 2 - 1, scene["flat"] * 2 - 1,
            *(premultiplied_on_grey(scene[kind]) for kind in KINDS[1:])]


class AnimeDecoderTask(InContextDecoderTask):
    """Stage 1 (task ``anime_decoder``): the transparent decoder learns shadows, highlights
    and thin line art (:class:`~..in_context_training.InContextDecoderTask`)."""

    def batch(self, step: int):
        scene, _, _ = anime_batch(self.options.get("seed", 0), step, self.stage.batch_size)
        return scene

    def streams(self, batch):
        return _stream_images(batch), {2 + i: batch[kind] for i, kind in enumerate(KINDS[1:])}

    @torch.no_grad()
    def sample_grid(self, module, path):
        module.eval()
        images, labels = [], []
        for index in range(3):
            scene, _ = anime_scene(24680, index, CONVENTIONS[index % 2], split="heldout")
            batch = {key: value[None] for key, value in scene.items()}
            decoded = self.decoded(module, _stream_images(batch))[0, 2:].cpu()
            truth = torch.cat([batch[kind] for kind in KINDS[1:]])
            images += _checker_grid(torch.cat([truth, decoded]))
            labels += [*KINDS[1:], *(f"decoded {kind}" for kind in KINDS[1:])]
        module.train()
        _grid(images, labels, path)


class AnimeLayersTask(InContextTask):
    """Stage 2 (task ``anime_layers``): the transformer and text encoder learn the four
    layer streams."""

    def _semantic(self) -> bool:
        return bool(self.options.get("semantic_embeddings", True))

    def batch(self, step: int):
        scene, convention, captions = anime_batch(self.options.get("seed", 0), step,
                                                  self.stage.batch_size)
        return scene, convention, self.caption_ids(captions, step)

    def loss(self, module, batch):
        scene, convention, ids = batch
        scene = {key: value.to(self.device) for key, value in scene.items()}
        latents = [self.encode(image) for image in _stream_images(scene)]
        targets = torch.stack(latents[1:], dim=1)
        noisy, noise, sigma, layout = self.noised(targets, len(STREAMS))
        streams = torch.cat([latents[0][:, None], noisy], dim=1)
        types, positions = stream_codes(convention, self._semantic())
        text = module["text_encoder"](ids.to(self.device))
        velocity = module["transformer"](streams, layout, sigma, text.last_hidden_state,
                                         text.pooler_output, full_attention=True,
                                         layer_types=types, position_layers=positions
                                         ).sample[:, 1:]
        per_layer = ((velocity - velocity_target(targets, noise)) ** 2).mean(dim=(0, 2, 3, 4))
        weights = torch.tensor(self.options.get("layer_weights", [1.0] * len(KINDS)),
                               dtype=per_layer.dtype, device=per_layer.device)
        return (weights * per_layer).sum() / weights.sum()

    def pipeline(self, module):
        return AnimeLayersPipeline(
            vae=self.vae, text_encoder=module["text_encoder"], tokenizer=self.tokenizer,
            transformer=module["transformer"], scheduler=self.noise,
            transparent_decoder=self.decoder, semantic_embeddings=self._semantic())

    @torch.no_grad()
    def sample_grid(self, module, path):
        from PIL import Image

        from layerstudio.imaging import over_checkerboard

        pipe = self.pipeline(module)
        pipe.set_progress_bar_config(disable=True)
        images, labels = [], []
        for index in range(3):
            convention = CONVENTIONS[index % 2]
            scene, _ = anime_scene(24680, index, convention, split="heldout")
            picture = scene["composite"].permute(1, 2, 0).numpy()
            out = pipe(picture, convention, num_inference_steps=20, output_type="pil",
                       generator=torch.Generator().manual_seed(index))
            images += [Image.fromarray(np.rint(picture * 255).astype(np.uint8))]
            images += [over_checkerboard(layer, 4).convert("RGB") for layer in out.images[0]]
            labels += [convention, *KINDS]
        _grid(images, labels, path)
