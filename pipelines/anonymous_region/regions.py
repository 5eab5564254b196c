"""Layer-wise region crop, the core of ART's speed: each layer keeps only the tokens inside its
box, all layers' tokens are concatenated into one sequence (attention cost grows with the total
box area, not layers x canvas), and the transformer's output is scattered back.

Boxes here are in *token* units, ``(x0, y0, x1, y1)`` with exclusive ends, on a token grid of
``rows`` x ``cols`` (one token per 2 x 2 latent patch). Layer order is ART's: layer 0 is the
merged image, layer 1 the background (both the whole canvas), layers 2.. one per region.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["TokenBox", "box_mask", "crop_tokens", "region_ids", "scatter_tokens",
           "token_count"]

TokenBox = tuple[int, int, int, int]


def token_count(boxes: Sequence[TokenBox]) -> int:
    """Tokens of a region-cropped sequence: the sum of the box areas."""
    return sum((x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in boxes)


def crop_tokens(grid: torch.Tensor, boxes: Sequence[TokenBox]) -> torch.Tensor:
    """(B, L, rows, cols, D) -> (B, N, D): each layer's tokens inside its box, row-major,
    layer after layer."""
    if grid.shape[1] != len(boxes):
        raise ValueError(f"{grid.shape[1]} layers but {len(boxes)} boxes")
    parts = [grid[:, layer, y0:y1, x0:x1].flatten(1, 2)
             for layer, (x0, y0, x1, y1) in enumerate(boxes)]
    return torch.cat(parts, dim=1)


def scatter_tokens(tokens: torch.Tensor, boxes: Sequence[TokenBox], rows: int, cols: int
                   ) -> torch.Tensor:
    """Inverse of :func:`crop_tokens`: (B, N, D) -> (B, L, rows, cols, D), zeros outside each
    layer's box."""
    batch, length, dim = tokens.shape
    if token_count(boxes) != length:
        raise ValueError(f"the boxes hold {token_count(boxes)} tokens, the sequence {length}")
    grid = tokens.new_zeros(batch, len(boxes), rows, cols, dim)
    start = 0
    for layer, (x0, y0, x1, y1) in enumerate(boxes):
        size = (x1 - x0) * (y1 - y0)
        grid[:, layer, y0:y1, x0:x1] = tokens[:, start:start + size].unflatten(
            1, (y1 - y0, x1 - x0))
        start += size
    return grid


def region_ids(boxes: Sequence[TokenBox], device=None, dtype: torch.dtype = torch.float32,
               layer_ids: Sequence[int] | None = None) -> torch.Tensor:
    """Rotary ids (layer, row, column) of the cropped tokens, shape (N, 3): every token keeps
    its position on the canvas, so a region's tokens attend as if the canvas were whole.
    ``layer_ids`` replaces the layer axis (default: each layer's index), so layers can share
    one position code (DiffDecompose's Layer Position Encoding Cloning)."""
    parts = []
    for index, (x0, y0, x1, y1) in enumerate(boxes):
        layer = index if layer_ids is None else layer_ids[index]
        rows, cols = torch.meshgrid(torch.arange(y0, y1), torch.arange(x0, x1), indexing="ij")
        parts.append(torch.stack([torch.full_like(rows, layer), rows, cols], -1).reshape(-1, 3))
    return torch.cat(parts).to(device=device, dtype=dtype)


def box_mask(boxes: Sequence[TokenBox], rows: int, cols: int, like: torch.Tensor,
             scale: int = 1) -> torch.Tensor:
    """(1, L, 1, rows * scale, cols * scale), 1 inside each layer's box: ``scale`` cells per
    token (1 for tokens, 2 for latent cells, the patch size for pixels)."""
    mask = like.new_zeros(1, len(boxes), 1, rows * scale, cols * scale)
    for layer, (x0, y0, x1, y1) in enumerate(boxes):
        mask[:, layer, :, y0 * scale:y1 * scale, x0 * scale:x1 * scale] = 1
    return mask
