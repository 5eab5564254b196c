"""Rectified-flow helpers shared by the DiT pipelines and their training tasks.

The maths follows FLUX / SD3 (Esser et al. 2024, "Scaling Rectified Flow Transformers"):
``x_t = (1 - sigma) * x_0 + sigma * noise`` and the transformer predicts the velocity
``noise - x_0``. Latents enter the transformer as 2 x 2 patches ("packing", as FluxPipeline
does), each token carrying 3-axis rotary position ids ``(layer, row, column)``: axis 0 is 0
for a plain image and the layer index in the multi-layer methods.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["image_ids", "logit_normal_sigmas", "noisy_latents", "pack_latents", "schedule_shift",
           "shifted", "unpack_latents", "velocity_target"]


def pack_latents(latents: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, H/2 * W/2, 4C): one token per 2 x 2 latent patch."""
    b, c, h, w = latents.shape
    if h % 2 or w % 2:
        raise ValueError(f"latent height and width must be even, got {h} x {w}")
    patches = latents.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5)
    return patches.reshape(b, (h // 2) * (w // 2), c * 4)


def unpack_latents(tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Inverse of :func:`pack_latents` for a ``height`` x ``width`` latent grid."""
    b, _, d = tokens.shape
    c = d // 4
    patches = tokens.view(b, height // 2, width // 2, c, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return patches.reshape(b, c, height, width)


def image_ids(height: int, width: int, layer: int = 0, device=None,
              dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Rotary ids (layer, row, column) of the packed tokens of a ``height`` x ``width`` latent
    grid, shape (H/2 * W/2, 3)."""
    rows, cols = torch.meshgrid(torch.arange(height // 2), torch.arange(width // 2),
                                indexing="ij")
    ids = torch.stack([torch.full_like(rows, layer), rows, cols], dim=-1)
    return ids.reshape(-1, 3).to(device=device, dtype=dtype)


def schedule_shift(image_seq_len: int, config) -> float:
    """FLUX's resolution-dependent shift ``mu``: linear in the token count between
    (base_image_seq_len, base_shift) and (max_image_seq_len, max_shift) of the scheduler."""
    base_len = config.get("base_image_seq_len", 256)
    max_len = config.get("max_image_seq_len", 4096)
    base, top = config.get("base_shift", 0.5), config.get("max_shift", 1.15)
    slope = (top - base) / (max_len - base_len)
    return image_seq_len * slope + base - slope * base_len


def shifted(sigmas: torch.Tensor, mu: float) -> torch.Tensor:
    """The exponential time shift of FLUX: more steps at high noise for larger images."""
    return np.exp(mu) / (np.exp(mu) + (1 / sigmas - 1))


def logit_normal_sigmas(batch: int, generator: torch.Generator | None = None,
                        mean: float = 0.0, std: float = 1.0, mu: float = 0.0,
                        device=None) -> torch.Tensor:
    """Training noise levels: logit-normal (SD3's best sampler), then the same shift the
    sampler applies at this resolution, so training sees the levels inference visits."""
    u = torch.randn(batch, generator=generator) * std + mean
    sigmas = torch.sigmoid(u).clamp(1e-4, 1 - 1e-4)
    return shifted(sigmas, mu).to(device)


def noisy_latents(latents: torch.Tensor, noise: torch.Tensor, sigmas: torch.Tensor
                  ) -> torch.Tensor:
    """``(1 - sigma) x_0 + sigma * noise`` with one sigma per sample."""
    sigma = sigmas.view(-1, *([1] * (latents.ndim - 1))).to(latents.dtype)
    return (1 - sigma) * latents + sigma * noise


def velocity_target(latents: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """What the transformer learns to predict: ``d x_t / d sigma = noise - x_0``."""
    return noise - latents
