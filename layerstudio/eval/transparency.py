"""How well a transparent pipeline's latent space carries alpha, against ground truth.

Held-out ``transparent`` samples (emoji the models never saw, all four alpha styles) go
through the transparent encoder into a latent and back out through the transparent decoder;
with ``with_matting`` the same images flattened on white go through the same base VAE and are
cut out by classical matting instead: the "generate RGB, then matte" baseline of the paper.
"""

from __future__ import annotations

import numpy as np
import torch

from ..datasets import generate
from .matting import difference_key
from .metrics import alpha_soft_iou, alpha_weighted_rgb_l1
from .vae import EVAL_SEED

__all__ = ["SIZE", "alpha_reconstruction", "mean4", "over"]

SIZE = 64


def over(rgba: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Straight RGBA uint8 over an RGB(A) background -> RGB uint8."""
    a = rgba[..., 3:].astype(np.float32) / 255
    return np.rint(rgba[..., :3] * a + background[..., :3] * (1 - a)).astype(np.uint8)


def mean4(values: list[float]) -> float:
    return round(float(np.mean(values)), 4)


def _scores(layers, truth) -> dict[str, float]:
    return {"alpha_soft_iou": mean4([alpha_soft_iou(p[..., 3], t[..., 3])
                                     for p, t in zip(layers, truth, strict=True)]),
            "alpha_weighted_rgb_l1": mean4([alpha_weighted_rgb_l1(p, t)
                                            for p, t in zip(layers, truth, strict=True)])}


@torch.no_grad()
def alpha_reconstruction(pipe, n: int, with_matting: bool = False) -> dict:
    """Alpha soft IoU and alpha-weighted RGB L1 of ``pipe``'s transparent VAE round trip on
    ``n`` held-out samples (and of the matting baseline, with its ratio)."""
    from ..pipelines.latent_transparency import decode_rgba, encode_rgba, rgba_tensors
    from ..train.tasks import _to_tensor

    truth = [generate("transparent", i, seed=EVAL_SEED, size=SIZE, split="heldout").composite()
             for i in range(n)]
    rgba, padded = rgba_tensors(truth)
    vae = pipe.vae
    latent = encode_rgba(vae, pipe.transparent_encoder, rgba, padded)
    native = decode_rgba(vae, pipe.transparent_decoder, latent).permute(0, 2, 3, 1)
    report = {"native": _scores(np.rint(native.cpu().numpy() * 255).astype(np.uint8), truth)}
    if with_matting:
        white = np.full((SIZE, SIZE, 3), 255, np.uint8)
        flat = torch.stack([_to_tensor(over(t, white)) for t in truth])
        decoded = vae(flat.to(vae.device, vae.dtype)).sample.float().clamp(-1, 1).cpu()
        rgb = np.rint((decoded.permute(0, 2, 3, 1).numpy() + 1) * 127.5).astype(np.uint8)
        report["matting"] = _scores([difference_key(image) for image in rgb], truth)
        report["ratio_iou"] = round(report["native"]["alpha_soft_iou"] /
                                    max(report["matting"]["alpha_soft_iou"], 1e-9), 3)
    return report
