"""Per-channel latent normalisation folded into a VAE: exact, persistent, checked."""

from __future__ import annotations

import pytest
import torch

from layerstudio.tiny_models import tiny_vae
from layerstudio.train.latent_norm import (
    channel_stats,
    fold_channel_normalisation,
    normalise_latent_channels,
)


def _vae(channels: int = 8):
    torch.manual_seed(0)
    vae = tiny_vae(latent_channels=channels, block_out_channels=(16, 16), norm_num_groups=8)
    # a trained VAE's channels have offsets and spreads of their own; give these some
    with torch.no_grad():
        vae.quant_conv.bias[:channels] += torch.linspace(-2, 2, channels)
        vae.quant_conv.weight[:channels] *= torch.linspace(0.5, 3, channels)[:, None, None, None]
    return vae.eval()


def _images(n: int = 24) -> torch.Tensor:
    return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1


def test_folded_latents_have_unit_channels_and_decode_the_same():
    vae, images = _vae(), _images()
    with torch.no_grad():
        before = vae.decode(vae.encode(images).latent_dist.mean).sample
        spread_before = vae.encode(images).latent_dist.std
    _, std = normalise_latent_channels(vae, images)
    assert float(std.max() / std.min()) > 2  # the fixture really was unbalanced
    new_mean, new_std = channel_stats(vae, images)
    torch.testing.assert_close(new_mean, torch.zeros(8), atol=1e-5, rtol=0)
    torch.testing.assert_close(new_std, torch.ones(8), atol=1e-5, rtol=0)
    assert vae.config.scaling_factor == 1.0
    with torch.no_grad():
        after = vae.decode(vae.encode(images).latent_dist.mean).sample
        spread_after = vae.encode(images).latent_dist.std
    torch.testing.assert_close(after, before, atol=1e-4, rtol=1e-4)
    # the posterior's spread is rescaled with its mean, so samples map one to one too
    torch.testing.assert_close(spread_after, spread_before / std[None, :, None, None],
                               atol=1e-5, rtol=1e-4)


def test_folded_vae_round_trips_through_save_pretrained(tmp_path):
    from diffusers import AutoencoderKL

    vae, images = _vae(4), _images(8)
    normalise_latent_channels(vae, images)
    vae.save_pretrained(tmp_path)
    loaded = AutoencoderKL.from_pretrained(tmp_path).eval()
    assert loaded.config.scaling_factor == 1.0
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode(images).latent_dist.mean,
                                   vae.encode(images).latent_dist.mean)


def test_fold_rejects_wrong_statistics():
    vae = _vae(4)
    with pytest.raises(ValueError, match="4 channel"):
        fold_channel_normalisation(vae, torch.zeros(3), torch.ones(3))
    with pytest.raises(ValueError, match="positive"):
        fold_channel_normalisation(vae, torch.zeros(4), torch.tensor([1.0, 0.0, 1.0, 1.0]))
