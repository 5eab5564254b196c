"""The two networks LayerDiffuse adds around a frozen Stable Diffusion VAE.

- :class:`TransparentVAEEncoder` turns (alpha, padded RGB) into a *latent offset*: it replaces
  the noise of the VAE posterior, ``z = mean + std * (offset_scale * offset)``, so transparency
  is written into the latent where the base VAE decoder barely looks ("harmless" offset).
- :class:`TransparentVAEDecoder` is a U-Net that reads the base VAE's RGB decode and the latent
  (injected through a zero-initialised 1x1 conv at the latent's resolution) and predicts alpha
  and straight RGB.

Layer names and the default sizes match the released ``vae_transparent_encoder`` /
``vae_transparent_decoder`` checkpoints (SD's 8x VAE, 1024-px-capable U-Net), so those load with
``load_state_dict``; the same classes with small configs hold our tiny 4x-VAE models.
"""

from __future__ import annotations

import itertools
import math

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.unets.unet_2d_blocks import UNetMidBlock2D, get_down_block, get_up_block
from torch import nn

__all__ = ["TransparentVAEDecoder", "TransparentVAEEncoder"]


def _zero(module: nn.Module) -> nn.Module:
    for parameter in module.parameters():
        parameter.detach().zero_()
    return module


class TransparentVAEEncoder(ModelMixin, ConfigMixin):
    """Conv stack on cat[alpha, padded RGB] in [0, 1] -> latent offset.

    ``channels`` gives the width per resolution; each step after the first halves the size, so
    ``len(channels) - 1`` must equal log2 of the VAE's downsampling (3 for SD, 2 for tiny-sd).
    The last conv starts at zero: an untrained encoder leaves the latent unchanged.
    """

    @register_to_config
    def __init__(self, in_channels: int = 4, channels: tuple[int, ...] = (32, 64, 128, 256),
                 latent_channels: int = 4, offset_scale: float = 300.0) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, channels[0], 3, padding=1), nn.SiLU(),
                                   nn.Conv2d(channels[0], channels[0], 3, padding=1), nn.SiLU()]
        for before, width in itertools.pairwise(channels):
            layers += [nn.Conv2d(before, width, 3, padding=1, stride=2), nn.SiLU(),
                       nn.Conv2d(width, width, 3, padding=1), nn.SiLU()]
        layers.append(_zero(nn.Conv2d(channels[-1], latent_channels, 3, padding=1)))
        self.blocks = nn.Sequential(*layers)

    @property
    def downsampling(self) -> int:
        return 2 ** (len(self.config.channels) - 1)

    def forward(self, alpha: torch.Tensor, padded_rgb: torch.Tensor) -> torch.Tensor:
        """Offset (B, latent_channels, H/f, W/f), already multiplied by ``offset_scale`` (the
        released weights were trained with 300 to make a zero-started output grow fast)."""
        return self.blocks(torch.cat([alpha, padded_rgb], dim=1)) * self.config.offset_scale


class TransparentVAEDecoder(ModelMixin, ConfigMixin):
    """U-Net: (base VAE decode in [0, 1], unscaled latent) -> (alpha, straight RGB) in [0, 1].

    The latent enters before down block ``log2(vae_downsampling)``, where the feature map has
    the latent's resolution (block 3 at 1/8 for SD). ``decode(..., augment=True)`` runs the 8
    rotations/flips and takes the per-pixel median, as the reference decoder does.
    """

    @register_to_config
    def __init__(self, in_channels: int = 3, out_channels: int = 4, latent_channels: int = 4,
                 vae_downsampling: int = 8,
                 down_block_types: tuple[str, ...] = ("DownBlock2D",) * 4 +
                 ("AttnDownBlock2D",) * 3,
                 up_block_types: tuple[str, ...] = ("AttnUpBlock2D",) * 3 + ("UpBlock2D",) * 4,
                 block_out_channels: tuple[int, ...] = (32, 32, 64, 128, 256, 512, 512),
                 layers_per_block: int = 2, attention_head_dim: int = 8,
                 norm_num_groups: int = 4, norm_eps: float = 1e-5) -> None:
        super().__init__()
        stage = int(math.log2(vae_downsampling))
        if 2 ** stage != vae_downsampling or not 0 < stage < len(block_out_channels):
            raise ValueError(f"vae_downsampling {vae_downsampling} needs a power of two below "
                             f"2 ** {len(block_out_channels)}")
        self.latent_stage = stage
        last = len(block_out_channels) - 1
        common = dict(resnet_eps=norm_eps, resnet_act_fn="silu", resnet_groups=norm_num_groups,
                      attention_head_dim=attention_head_dim, temb_channels=None,
                      resnet_time_scale_shift="default", dropout=0.0)
        self.conv_in = nn.Conv2d(in_channels, block_out_channels[0], 3, padding=1)
        self.latent_conv_in = _zero(nn.Conv2d(latent_channels, block_out_channels[stage - 1], 1))
        self.down_blocks = nn.ModuleList()
        width = block_out_channels[0]
        for i, kind in enumerate(down_block_types):
            before, width = width, block_out_channels[i]
            self.down_blocks.append(get_down_block(
                kind, num_layers=layers_per_block, in_channels=before, out_channels=width,
                add_downsample=i < last, downsample_padding=1, downsample_type="conv",
                **common))
        self.mid_block = UNetMidBlock2D(
            in_channels=block_out_channels[-1], temb_channels=None, dropout=0.0,
            resnet_eps=norm_eps, resnet_act_fn="silu", output_scale_factor=1,
            resnet_time_scale_shift="default", attention_head_dim=attention_head_dim,
            resnet_groups=norm_num_groups, attn_groups=None, add_attention=True)
        self.up_blocks = nn.ModuleList()
        reversed_widths = list(reversed(block_out_channels))
        width = reversed_widths[0]
        for i, kind in enumerate(up_block_types):
            previous, width = width, reversed_widths[i]
            skip = reversed_widths[min(i + 1, last)]
            self.up_blocks.append(get_up_block(
                kind, num_layers=layers_per_block + 1, in_channels=skip, out_channels=width,
                prev_output_channel=previous, add_upsample=i < last, upsample_type="conv",
                **common))
        self.conv_norm_out = nn.GroupNorm(norm_num_groups, block_out_channels[0], eps=norm_eps)
        self.conv_act = nn.SiLU()
        self.conv_out = nn.Conv2d(block_out_channels[0], out_channels, 3, padding=1)

    @property
    def size_multiple(self) -> int:
        """Image sides must be multiples of this (every down block but the last halves)."""
        return 2 ** (len(self.config.block_out_channels) - 1)

    def forward(self, pixels: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        """Raw prediction (B, 4, H, W): channel 0 alpha, 1-3 straight RGB (about [0, 1])."""
        injected = self.latent_conv_in(latent)
        sample = self.conv_in(pixels)
        skips: tuple[torch.Tensor, ...] = (sample,)
        for i, block in enumerate(self.down_blocks):
            if i == self.latent_stage:
                sample = sample + injected
            sample, residuals = block(hidden_states=sample, temb=None)
            skips += residuals
        sample = self.mid_block(sample, None)
        for block in self.up_blocks:
            count = len(block.resnets)
            sample = block(sample, skips[-count:], None)
            skips = skips[:-count]
        return self.conv_out(self.conv_act(self.conv_norm_out(sample)))

    @torch.no_grad()
    def decode(self, pixels: torch.Tensor, latent: torch.Tensor, augment: bool = False
               ) -> torch.Tensor:
        """(B, 4, H, W) clipped to [0, 1]; with ``augment`` the median of 8 passes over the
        four rotations of the image and of its mirror, each mapped back."""
        if pixels.shape[-1] % self.size_multiple or pixels.shape[-2] % self.size_multiple:
            raise ValueError(f"image sides must be multiples of {self.size_multiple}, got "
                             f"{tuple(pixels.shape[-2:])}")
        if not augment:
            return self(pixels, latent).clamp(0, 1)
        passes = []
        for flip in (False, True):
            for turns in range(4):
                p, z = (torch.flip(pixels, (3,)), torch.flip(latent, (3,))) if flip else \
                    (pixels, latent)
                out = self(torch.rot90(p, turns, (2, 3)), torch.rot90(z, turns, (2, 3)))
                out = torch.rot90(out.clamp(0, 1), -turns, (2, 3))
                passes.append(torch.flip(out, (3,)) if flip else out)
        return torch.stack(passes).median(dim=0).values
