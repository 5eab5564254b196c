"""Training LayerDecomp on the ``effects`` scenes (recipe task ``layerdecomp``).

Starts from a shipped ART model (option ``base``, default ``tiny-art``): its transformer
already has per-stream embeddings (ART's merged image, background and region layers become
the picture, background and foreground streams; the mask takes the next one) and its
multi-layer transparent decoder reads a foreground latent beside the picture and background.
Both the frozen VAE and that decoder are copied into the run.

Loss per scene, at one noise level for both targets (rectified flow):

- velocity MSE on the background stream, and on the foreground stream for the scenes whose
  foreground counts as known (option ``foreground_share``, default 0.5: the rest stand for
  LayerDecomp's photos with no foreground ground truth);
- the **consistency loss** (option ``consistency_weight``, default 1; 0 is the paper's
  ablation): the clean latents the velocity implies (``x_0 = x_t - sigma v``) are decoded, the
  foreground's RGBA blended over the background's RGB, and the L1 to the input picture taken,
  weighted by ``1 - sigma`` (at high noise the implied ``x_0`` is a blur). This is what lets
  the scenes without a known foreground still teach where the shadow goes.
"""

from __future__ import annotations

import numpy as np
import torch

from layerstudio.datasets import generate
from layerstudio.train.tasks import _grid

from ..flow_matching import velocity_target
from ..in_context_training import InContextTask
from ..latent_transparency import premultiplied_on_grey
from .pipeline import STREAMS, LayerDecompPipeline, mask_latent

__all__ = ["LayerDecompTask", "effects_scene"]


def effects_scene(seed: int, index: int, size: int = 64, split: str = "train"
                  ) -> tuple[dict[str, torch.Tensor], str]:
    """One ``effects`` sample as tensors in [0, 1]: ``picture`` (3, H, W), ``mask`` (1, H, W,
    the object alone), ``background`` (3, H, W), ``foreground`` (4, H, W straight RGBA: object
    and effect); and its caption."""
    from layerstudio.document import LayerStack

    sample = generate("effects", index, seed=seed, size=size, split=split)
    canvas = LayerStack(size, size, [sample.stack.layers[1]]).composite_array()

    def tensor(array: np.ndarray) -> torch.Tensor:  # float in [0, 1], (H, W[, C])
        array = array.astype(np.float32)
        return torch.from_numpy(array if array.ndim == 3 else array[..., None]).permute(2, 0, 1)

    extras = sample.extras
    return ({"picture": tensor(sample.stack.composite_array()[..., :3]),
             "mask": tensor(extras["mask"] / 255), "background": tensor(extras["background"] / 255),
             "foreground": tensor(canvas)}, sample.caption)


class LayerDecompTask(InContextTask):
    """The transformer and text encoder, on a frozen VAE and transparent decoder."""

    def batch(self, step: int):
        size = self.stage.batch_size
        scenes = [effects_scene(self.options.get("seed", 0), step * size + i)
                  for i in range(size)]
        stacked = {key: torch.stack([scene[key] for scene, _ in scenes])
                   for key in scenes[0][0]}
        rng = np.random.default_rng([step, 7])
        known = torch.from_numpy(rng.random(size) < self.options.get("foreground_share", 0.5))
        return stacked, known, self.caption_ids([caption for _, caption in scenes], step)

    def loss(self, module, batch):
        scene, known, ids = batch
        scene = {key: value.to(self.device) for key, value in scene.items()}
        known = known.to(self.device, torch.float32)
        picture = self.encode(scene["picture"] * 2 - 1)
        background = self.encode(scene["background"] * 2 - 1)
        foreground = self.encode(premultiplied_on_grey(scene["foreground"]))
        mask = mask_latent(scene["mask"], picture.shape[1], picture.shape[-2:])
        targets = torch.stack([background, foreground], dim=1)
        noisy, noise, sigma, layout = self.noised(targets, len(STREAMS))
        streams = torch.stack([picture, noisy[:, 0], noisy[:, 1], mask], dim=1)
        text = module["text_encoder"](ids.to(self.device))
        velocity = module["transformer"](streams, layout, sigma, text.last_hidden_state,
                                         text.pooler_output, full_attention=True).sample[:, 1:3]
        error = ((velocity - velocity_target(targets, noise)) ** 2).mean(dim=(2, 3, 4))
        flow = (error[:, 0] + known * error[:, 1]).sum() / (len(known) + known.sum())
        weight = float(self.options.get("consistency_weight", 1.0))
        if weight == 0:
            return flow
        clean = noisy - sigma.view(-1, 1, 1, 1, 1) * velocity  # x_0 implied by the velocity
        blended = self._recomposed(picture, clean, layout[:3])
        per_scene = (blended - scene["picture"]).abs().mean(dim=(1, 2, 3))
        return flow + weight * ((1 - sigma) * per_scene).mean()

    def _recomposed(self, picture: torch.Tensor, clean: torch.Tensor,
                    layout: list[tuple[int, int, int, int]]) -> torch.Tensor:
        """The predicted foreground RGBA over the predicted background, (B, 3, H, W)."""
        latents = self.unscaled(torch.cat([picture[:, None], clean], dim=1))
        pictures = (self.vae.decode(latents.flatten(0, 1)).sample / 2 + 0.5).clamp(0, 1)
        pictures = pictures.unflatten(0, latents.shape[:2])
        rgba = self.decoder(pictures, latents, layout)
        foreground, background = rgba[:, 2], pictures[:, 1]
        return foreground[:, :3] * foreground[:, 3:] + (1 - foreground[:, 3:]) * background

    def pipeline(self, module):
        return LayerDecompPipeline(vae=self.vae, text_encoder=module["text_encoder"],
                                   tokenizer=self.tokenizer, transformer=module["transformer"],
                                   scheduler=self.noise, transparent_decoder=self.decoder)

    @torch.no_grad()
    def sample_grid(self, module, path):
        from PIL import Image

        from layerstudio.imaging import over_checkerboard

        pipe = self.pipeline(module)
        pipe.set_progress_bar_config(disable=True)
        images, labels = [], []
        for index in range(4):
            scene, caption = effects_scene(24680, index, split="heldout")
            picture = scene["picture"].permute(1, 2, 0).numpy()
            out = pipe(picture, scene["mask"][0].numpy(), num_inference_steps=20,
                       generator=torch.Generator().manual_seed(index))
            extraction = out.extractions[0]
            as_image = lambda a: Image.fromarray(  # noqa: E731
                np.rint(np.clip(a, 0, 1) * 255).astype(np.uint8))
            images += [as_image(picture), as_image(extraction.background),
                       over_checkerboard(as_image(extraction.foreground()), 4).convert("RGB")]
            labels += [caption[:24], "background", "object + effects"]
        _grid(images, labels, path)
