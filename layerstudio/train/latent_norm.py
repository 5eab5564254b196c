"""Per-channel latent normalisation folded into a VAE's 1x1 quant convolutions.

Stable Diffusion scales latents by one global factor so that they have unit variance. A
small VAE trained with a weak KL term gives channels very different offsets and spreads
(tiny-sd v2: means from -1.5 to +1.7, spreads from 0.24 to 0.88 after the global scale), so
the diffusion model sees some channels drowned in noise at timesteps where others are still
clear, and spends capacity on constant offsets. Normalising every channel to zero mean and
unit spread (as Wan and CogVideoX do with ``latents_mean``/``latents_std``) removes that
imbalance. Folding the affine map into ``quant_conv`` (encoder side) and ``post_quant_conv``
(decoder side) keeps the VAE a plain ``AutoencoderKL``: every pipeline that divides by
``scaling_factor`` (now 1) keeps working, and decoding is unchanged up to rounding.
"""

from __future__ import annotations

import torch


@torch.no_grad()
def channel_stats(vae, images: torch.Tensor, batch: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and standard deviation of the posterior means over ``images``."""
    means = torch.cat([vae.encode(images[i:i + batch]).latent_dist.mean
                       for i in range(0, len(images), batch)])
    return means.mean(dim=(0, 2, 3)), means.std(dim=(0, 2, 3))


@torch.no_grad()
def fold_channel_normalisation(vae, mean: torch.Tensor, std: torch.Tensor) -> None:
    """Rewrite ``vae`` in place so its latent is ``(z - mean) / std`` per channel and its
    ``scaling_factor`` is 1: the posterior mean and log-variance come out of ``quant_conv``
    already normalised, and ``post_quant_conv`` undoes the map before the decoder."""
    if vae.quant_conv is None or vae.post_quant_conv is None:
        raise ValueError("folding needs a VAE with quant_conv and post_quant_conv")
    channels = vae.config.latent_channels
    if mean.shape != (channels,) or std.shape != (channels,) or bool((std <= 0).any()):
        raise ValueError(f"need {channels} channel means and positive spreads")
    mean, std = mean.to(vae.quant_conv.weight), std.to(vae.quant_conv.weight)
    encode = vae.quant_conv
    encode.weight[:channels] /= std[:, None, None, None]
    encode.bias[:channels] = (encode.bias[:channels] - mean) / std
    encode.bias[channels:] -= 2 * std.log()  # log-variance of z / s is logvar - 2 log s
    decode = vae.post_quant_conv
    decode.bias += decode.weight[:, :, 0, 0] @ mean  # uses the weight before scaling it
    decode.weight *= std[None, :, None, None]
    vae.register_to_config(scaling_factor=1.0, shift_factor=None)


def normalise_latent_channels(vae, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Measure the channel statistics on ``images`` and fold them into ``vae``; returns the
    (mean, std) folded, for the training log."""
    mean, std = channel_stats(vae, images)
    fold_channel_normalisation(vae, mean, std)
    return mean, std
