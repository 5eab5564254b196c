"""RGBA <-> latent with a frozen base VAE plus the transparent encoder/decoder.

Conventions of the reference implementation: the base VAE encodes colour premultiplied on mid
grey, ``(2 * rgb - 1) * alpha`` in [-1, 1]; the offset encoder sees alpha and the padded RGB in
[0, 1]; the transparent decoder sees the base decode in [0, 1] and the *unscaled* latent (the
diffusion model's latent divided by ``vae.config.scaling_factor``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

from .models import TransparentVAEDecoder, TransparentVAEEncoder
from .padding import pad_rgb

__all__ = ["decode_opaque", "decode_rgba", "encode_opaque", "encode_rgba", "premultiplied_on_grey",
           "rgb_tensors", "rgba_tensors", "vae_precision"]


def rgba_tensors(images: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Straight RGBA uint8 arrays (same size) -> (RGBA (B, 4, H, W) in [0, 1], padded RGB
    (B, 3, H, W) in [0, 1])."""
    rgba = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255
    padded = torch.from_numpy(np.stack([pad_rgb(image) for image in images]))
    return rgba, padded.permute(0, 3, 1, 2)


def rgb_tensors(images: list[np.ndarray]) -> torch.Tensor:
    """Opaque RGB(A) uint8 arrays (same size; alpha ignored) -> (B, 3, H, W) in [-1, 1], what
    the base VAE encodes."""
    return torch.from_numpy(np.stack(images)[..., :3]).permute(0, 3, 1, 2).float() / 127.5 - 1


def premultiplied_on_grey(rgba: torch.Tensor) -> torch.Tensor:
    """What the base VAE sees and, for a harmless offset, decodes back to: (2 rgb - 1) * a."""
    return (rgba[:, :3] * 2 - 1) * rgba[:, 3:]


@contextmanager
def vae_precision(vae) -> Iterator[None]:
    """Run the base VAE in float32 when it is float16 and its config says ``force_upcast``:
    SDXL's VAE overflows to NaN in half precision (diffusers' own pipelines do the same)."""
    dtype = vae.dtype
    upcast = dtype == torch.float16 and bool(getattr(vae.config, "force_upcast", False))
    if upcast:
        vae.to(torch.float32)
    try:
        yield
    finally:
        if upcast:
            vae.to(dtype)


def encode_opaque(vae, pixels: torch.Tensor) -> torch.Tensor:
    """Unscaled posterior-mean latent of images in [-1, 1] (B, 3, H, W) (a background, a
    blend, or colour premultiplied on grey)."""
    with vae_precision(vae):
        return vae.encode(pixels.to(vae.device, vae.dtype)).latent_dist.mean


def encode_rgba(vae, encoder: TransparentVAEEncoder, rgba: torch.Tensor, padded: torch.Tensor
                ) -> torch.Tensor:
    """Unscaled latent ``mean + std * offset`` of RGBA images (the offset replaces the
    posterior's noise, so the result is deterministic)."""
    with vae_precision(vae):
        posterior = vae.encode(premultiplied_on_grey(rgba).to(vae.device, vae.dtype)).latent_dist
    offset = encoder(rgba[:, 3:].to(encoder.device, encoder.dtype),
                     padded.to(encoder.device, encoder.dtype))
    return posterior.mean + posterior.std * offset.to(posterior.mean.dtype)


def decode_opaque(vae, latent: torch.Tensor) -> torch.Tensor:
    """Unscaled latent -> RGBA (B, 4, H, W) in [0, 1] through the base VAE alone, alpha 1 (an
    ordinary, opaque image: a background or a blend)."""
    with vae_precision(vae):
        rgb = vae.decode(latent.to(vae.device, vae.dtype)).sample.float()
    rgb = (rgb / 2 + 0.5).clamp(0, 1)
    return torch.cat([rgb, torch.ones_like(rgb[:, :1])], dim=1)


def decode_rgba(vae, decoder: TransparentVAEDecoder, latent: torch.Tensor,
                augment: bool = False) -> torch.Tensor:
    """Unscaled latent -> straight RGBA (B, 4, H, W) in [0, 1] (channels R, G, B, A)."""
    with vae_precision(vae):
        pixels = vae.decode(latent.to(vae.device, vae.dtype)).sample
    pixels = (pixels.float() / 2 + 0.5).clamp(0, 1)
    out = decoder.decode(pixels.to(decoder.dtype), latent.to(decoder.device, decoder.dtype),
                         augment=augment)
    return torch.cat([out[:, 1:4], out[:, :1]], dim=1).float()
