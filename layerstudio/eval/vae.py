"""How much of a picture survives a trip through a VAE, as the judge sees it.

A latent model draws through its VAE's decoder, so it cannot be recognised more often than the
real pictures are after an encode/decode round trip: this is the ceiling of every model on
that latent space, and the measure issue 18 chose latent spaces by. The pictures are the
evaluation prompts' own ground truth (``transparent`` samples, solid style, flattened on white,
from the seed stream training never draws), so the numbers line up with `layerstudio eval`.
"""

from __future__ import annotations

from typing import Any

import torch

EVAL_SEED = 2026


def eval_samples(split: str, n: int, seed: int = 0, pool: int | None = None) -> list:
    """The ``n`` evaluation samples of ``split`` (``pool``: the first emoji of the training
    split a recipe trained on; None: all of them)."""
    from ..datasets import generate

    return [generate("transparent", i, seed=EVAL_SEED + seed, size=64, split=split,
                     style="solid", pool=pool) for i in range(n)]


def flattened(samples: list) -> torch.Tensor:
    """Samples' composites on white, (N, 3, H, W) in [-1, 1]."""
    from ..train.tasks import _flatten, _to_tensor

    return torch.stack([_to_tensor(_flatten(sample)) for sample in samples])


@torch.no_grad()
def round_trip(vae, images: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """(N, 3, H, W) in [-1, 1] -> the VAE's reconstruction from its posterior mean, clamped."""
    out = []
    for chunk in images.split(batch_size):
        chunk = chunk.to(vae.device, vae.dtype)
        latents = vae.encode(chunk).latent_dist.mode()
        out.append(vae.decode(latents).sample.float().clamp(-1, 1).cpu())
    return torch.cat(out)


def round_trip_report(vae, judge, split: str = "train", n: int = 128, seed: int = 0,
                      pool: int | None = 128) -> dict[str, Any]:
    """Judge top-1 on clean renders and after the round trip, their ratio (issue 18's target:
    at least 0.75) and the round trip's PSNR."""
    samples = eval_samples(split, n, seed, pool if split == "train" else None)
    captions = [sample.caption for sample in samples]
    clean = flattened(samples)
    decoded = round_trip(vae, clean)
    clean_top1 = judge.accuracy(clean, captions, 1)
    trip_top1 = judge.accuracy(decoded, captions, 1)
    mse = ((decoded - clean) / 2).pow(2).mean().item()
    return {"split": split, "n": n, "clean_top1": round(clean_top1, 4),
            "round_trip_top1": round(trip_top1, 4),
            "share_of_clean": round(trip_top1 / clean_top1, 3) if clean_top1 else None,
            "psnr_db": round(10 * torch.log10(torch.tensor(1 / max(mse, 1e-10))).item(), 2),
            "latent_shape": list(vae.encode(clean[:1].to(vae.device, vae.dtype))
                                 .latent_dist.mode().shape[1:])}
