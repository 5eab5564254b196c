"""Training DiffDecompose on the ``alpha_blend`` scenes (recipe task ``alpha_decompose``).

Starts from a shipped ART model (:class:`~..in_context_training.InContextTask`). Each step
draws one blend type (uniformly over :data:`.blends.BLENDS`, so the rare ones, add and
multiply, are learned as often as screen), then that many scenes of its subtasks: every
scene of a batch shares the layer stream's type embedding. Loss: velocity MSE on the
background and the layer (rectified flow, one noise level per scene for both), the composite
kept clean. Option ``position_cloning`` (default true; false is the paper's ablation) sets
the rotary layer ids as the pipeline will.
"""

from __future__ import annotations

import numpy as np
import torch

from layerstudio.datasets import generate
from layerstudio.train.tasks import _grid
from layerstudio.train.transparency import _checker_grid

from ..flow_matching import velocity_target
from ..in_context_training import InContextDecoderTask, InContextTask
from ..latent_transparency import premultiplied_on_grey
from .blends import BLENDS, blend_of
from .pipeline import STREAMS, AlphaDecomposePipeline, stream_codes

__all__ = ["SUBTASKS_OF", "AlphaDecoderTask", "AlphaDecomposeTask", "alpha_scene", "blend_batch"]

SUBTASKS_OF = {"normal": ("watermark", "glass"), "screen": ("flare", "smoke", "rain"),
               "add": ("light_leak",), "multiply": ("xray",)}
"""The ``alpha_blend`` subtasks of each blend type."""


def alpha_scene(seed: int, index: int, subtask: str, size: int = 64, split: str = "train"
                ) -> tuple[dict[str, torch.Tensor], str, str]:
    """One ``alpha_blend`` sample as tensors in [0, 1]: ``composite`` and ``background``
    (3, H, W), ``layer`` (4, H, W straight RGBA on the canvas); its caption and blend type."""
    from layerstudio.blend import BlendMode
    from layerstudio.document import LayerStack

    sample = generate("alpha_blend", index, seed=seed, size=size, split=split,
                      subtask=subtask)
    layer = sample.stack.layers[1]
    canvas = LayerStack(size, size, [layer.copy(blend_mode=BlendMode.NORMAL)])  # its own RGBA

    def tensor(array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(array.astype(np.float32)).permute(2, 0, 1)

    return ({"composite": tensor(sample.stack.composite_array()[..., :3]),
             "background": tensor(sample.extras["background"] / 255),
             "layer": tensor(canvas.composite_array())},
            sample.caption, blend_of(layer.blend_mode))


def blend_batch(seed: int, step: int, size: int
                ) -> tuple[dict[str, torch.Tensor], str, list[str]]:
    """Batch ``step``: one blend type drawn uniformly, then ``size`` scenes of its subtasks
    stacked (``composite``, ``background``, ``layer``), and their captions."""
    rng = np.random.default_rng([seed, step, 11])
    blend = str(rng.choice(list(BLENDS)))
    scenes = [alpha_scene(seed, step * size + i, str(rng.choice(SUBTASKS_OF[blend])))
              for i in range(size)]
    stacked = {key: torch.stack([scene[key] for scene, _, _ in scenes]) for key in scenes[0][0]}
    return stacked, blend, [caption for _, caption, _ in scenes]


class AlphaDecomposeTask(InContextTask):
    """The transformer and text encoder learn the background and the layer."""

    def _cloning(self) -> bool:
        return bool(self.options.get("position_cloning", True))

    def batch(self, step: int):
        scene, blend, captions = blend_batch(self.options.get("seed", 0), step,
                                             self.stage.batch_size)
        return scene, blend, self.caption_ids(captions, step)

    def loss(self, module, batch):
        scene, blend, ids = batch
        scene = {key: value.to(self.device) for key, value in scene.items()}
        composite = self.encode(scene["composite"] * 2 - 1)
        targets = torch.stack([self.encode(scene["background"] * 2 - 1),
                               self.encode(premultiplied_on_grey(scene["layer"]))], dim=1)
        noisy, noise, sigma, layout = self.noised(targets, len(STREAMS))
        streams = torch.cat([composite[:, None], noisy], dim=1)
        types, positions = stream_codes([blend], self._cloning())
        text = module["text_encoder"](ids.to(self.device))
        velocity = module["transformer"](streams, layout, sigma, text.last_hidden_state,
                                         text.pooler_output, full_attention=True,
                                         layer_types=types, position_layers=positions
                                         ).sample[:, 1:]
        return ((velocity - velocity_target(targets, noise)) ** 2).mean()

    def pipeline(self, module):
        return AlphaDecomposePipeline(
            vae=self.vae, text_encoder=module["text_encoder"], tokenizer=self.tokenizer,
            transformer=module["transformer"], scheduler=self.noise,
            transparent_decoder=self.decoder, position_cloning=self._cloning())

    @torch.no_grad()
    def sample_grid(self, module, path):
        from PIL import Image

        from layerstudio.imaging import over_checkerboard

        pipe = self.pipeline(module)
        pipe.set_progress_bar_config(disable=True)
        images, labels = [], []
        for index, subtask in enumerate(("watermark", "flare", "light_leak", "xray")):
            scene, _, blend = alpha_scene(24680, index, subtask, split="heldout")
            picture = scene["composite"].permute(1, 2, 0).numpy()
            out = pipe(picture, blend, num_inference_steps=20, output_type="np",
                       generator=torch.Generator().manual_seed(index))
            as_image = lambda a: Image.fromarray(  # noqa: E731
                np.rint(np.clip(a, 0, 1) * 255).astype(np.uint8))
            images += [as_image(picture), as_image(out.backgrounds[0]),
                       over_checkerboard(as_image(out.images[0]), 4).convert("RGB")]
            labels += [subtask, "background", f"layer ({blend})"]
        _grid(images, labels, path)


class AlphaDecoderTask(InContextDecoderTask):
    """Stage 1 (task ``alpha_decoder``): the transparent decoder learns see-through layers
    (:class:`~..in_context_training.InContextDecoderTask`; ART's guesses alpha badly here:
    RMSE 0.29 on true latents)."""

    def batch(self, step: int):
        scene, _, _ = blend_batch(self.options.get("seed", 0), step, self.stage.batch_size)
        return scene

    def streams(self, batch):
        return ([batch["composite"] * 2 - 1, batch["background"] * 2 - 1,
                 premultiplied_on_grey(batch["layer"])], {2: batch["layer"]})

    def _decoded(self, module, scene: dict[str, torch.Tensor]) -> torch.Tensor:
        """The layer stream's straight RGBA (B, 4, H, W)."""
        return self.decoded(module, self.streams(scene)[0])[:, 2]

    @torch.no_grad()
    def sample_grid(self, module, path):
        module.eval()
        images, labels = [], []
        for index, subtask in enumerate(("watermark", "smoke", "light_leak", "xray")):
            scene, _, _ = alpha_scene(24680, index, subtask, split="heldout")
            batch = {key: value[None] for key, value in scene.items()}
            images += _checker_grid(torch.cat([batch["layer"],
                                               self._decoded(module, batch).cpu()]))
            labels += [subtask, "decoded"]
        module.train()
        _grid(images, labels, path)
