"""ART's multi-layer transparent decoder: RGBA for every layer at once.

The diffusion model's layers are ordinary VAE latents of each layer's colour premultiplied on
mid grey (LayerDiffuse's convention), so the base VAE decodes them to "the layer on grey". This
decoder reads those pictures and the latents of *all* layers together and writes each layer's
alpha and straight colour: tokens (one per ``patch_size`` pixels, the transformer's grid) are
cropped to each layer's box as in the transformer, carry a learned 3-D position embedding
(layer + row + column), and attend jointly, so a layer can tell its object from the merged
image and the background around it. A small convolution at full resolution sharpens the
token-level output; alpha is exactly 0 outside a layer's box.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from .regions import TokenBox, box_mask, crop_tokens, scatter_tokens

__all__ = ["MultiLayerTransparentDecoder"]


def _patches(images: torch.Tensor, size: int) -> torch.Tensor:
    """(B, L, C, H, W) -> (B, L, H/size, W/size, C * size * size)."""
    b, layers, c, h, w = images.shape
    grid = images.view(b, layers, c, h // size, size, w // size, size)
    return grid.permute(0, 1, 3, 5, 2, 4, 6).flatten(4)


def _unpatches(grid: torch.Tensor, size: int, channels: int) -> torch.Tensor:
    """Inverse of :func:`_patches`."""
    b, layers, rows, cols, _ = grid.shape
    images = grid.view(b, layers, rows, cols, channels, size, size)
    return images.permute(0, 1, 4, 2, 5, 3, 6).reshape(b, layers, channels, rows * size,
                                                       cols * size)


class MultiLayerTransparentDecoder(ModelMixin, ConfigMixin):
    """(pictures on grey (B, L, 3, H, W) in [0, 1], latents (B, L, C, h, w), token boxes) ->
    straight RGBA (B, L, 4, H, W) in [0, 1]."""

    @register_to_config
    def __init__(self, patch_size: int = 8, latent_channels: int = 4, latent_patch: int = 2,
                 dim: int = 128, depth: int = 2, heads: int = 4, max_layers: int = 52,
                 max_side: int = 64, refine_channels: int = 32) -> None:
        super().__init__()
        features = 3 * patch_size**2 + latent_channels * latent_patch**2
        self.embed = nn.Linear(features, dim)
        self.layer_position = nn.Embedding(max_layers, dim)
        self.row_position = nn.Embedding(max_side, dim)
        self.column_position = nn.Embedding(max_side, dim)
        block = nn.TransformerEncoderLayer(dim, heads, dim * 4, dropout=0.0, batch_first=True,
                                           norm_first=True, activation="gelu")
        self.blocks = nn.TransformerEncoder(block, depth, enable_nested_tensor=False)
        self.head = nn.Linear(dim, 4 * patch_size**2)
        self.refine = nn.Sequential(nn.Conv2d(3 + 4, refine_channels, 3, padding=1), nn.GELU(),
                                    nn.Conv2d(refine_channels, 4, 3, padding=1))
        nn.init.zeros_(self.refine[-1].weight)
        nn.init.zeros_(self.refine[-1].bias)

    def forward(self, pictures: torch.Tensor, latents: torch.Tensor,
                boxes: Sequence[TokenBox]) -> torch.Tensor:
        config = self.config
        _batch, layers, _, height, width = pictures.shape
        rows, cols = height // config.patch_size, width // config.patch_size
        if rows > config.max_side or cols > config.max_side or layers > config.max_layers:
            raise ValueError(f"{layers} layers of {rows} x {cols} tokens; this decoder holds "
                             f"at most {config.max_layers} of {config.max_side} x "
                             f"{config.max_side}")
        tokens = torch.cat([_patches(pictures, config.patch_size),
                            _patches(latents, config.latent_patch)], dim=-1)
        position = (self.layer_position.weight[:layers, None, None]
                    + self.row_position.weight[None, :rows, None]
                    + self.column_position.weight[None, None, :cols])
        tokens = self.embed(tokens) + position
        out = self.head(self.blocks(crop_tokens(tokens, boxes)))
        coarse = _unpatches(scatter_tokens(out, boxes, rows, cols), config.patch_size, 4)
        flat = torch.cat([pictures, coarse], dim=2).flatten(0, 1)
        refined = coarse + self.refine(flat).view_as(coarse)
        inside = box_mask(boxes, rows, cols, refined, config.patch_size)
        alpha = torch.sigmoid(refined[:, :, :1]) * inside
        rgb = (pictures + refined[:, :, 1:]).clamp(0, 1)
        return torch.cat([rgb, alpha], dim=2)
