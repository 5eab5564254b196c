"""Multi-Query Disentanglement: each region of the picture reads its own prompt.

The text-to-image backbone's cross-attention is given every live prompt at once (background
first, then the edits in their order, token blocks of equal length side by side). A pixel
owned by region j attends only to block j; ownership follows depth: an edit's rough mask,
minus the masks of the edits above it; the background owns what no edit covers. Attending to
one block per pixel is a masked attention; here it is computed block by block with the
backbone's own attention processor and the outputs mixed by ownership, which is the same thing
for hard masks and a soft blend along feathered mask edges (weights sum to one, so the
processor's residual path passes through unchanged).

The processors wrap whatever the model had (plain, sliced, SDPA), only on cross-attention
layers, and only while :func:`regional_attention` is active.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["RegionPlan", "ownership", "regional_attention"]


def ownership(masks: Sequence[torch.Tensor]) -> torch.Tensor:
    """(1 + n, H, W) weights from n edit masks (bottom to top, (H, W) in [0, 1]): each edit
    owns its mask minus what later masks cover, the background (row 0) the rest; the rows
    sum to one at every pixel."""
    if not masks:
        raise ValueError("ownership needs the canvas: give at least one mask")
    free = torch.ones_like(masks[0])
    owned = []
    for mask in reversed(masks):
        owned.append(mask * free)
        free = free * (1 - mask)
    return torch.stack([free, *reversed(owned)])


@dataclass
class RegionPlan:
    """What the regional processors need during one denoising call: the number of token
    blocks, their length, and the ownership weights (blocks, H, W) at latent resolution."""

    weights: torch.Tensor
    tokens: int

    @property
    def blocks(self) -> int:
        return self.weights.shape[0]

    def weights_for(self, length: int, like: torch.Tensor) -> torch.Tensor:
        """(blocks, 1, length, 1) weights for a feature map flattened to ``length`` tokens:
        the latent grid downsampled by the factor (a power of two, sides rounded up as
        strided convolutions and patching do) that gives that many positions."""
        height, width = self.weights.shape[-2:]
        for level in range(8):
            rows, columns = math.ceil(height / 2**level), math.ceil(width / 2**level)
            if rows * columns == length:
                break
        else:
            raise ValueError(f"no downsampling of the {height}x{width} latent grid has "
                             f"{length} positions")
        pooled = F.adaptive_avg_pool2d(self.weights[:, None].float(), (rows, columns))
        pooled = pooled / pooled.sum(0, keepdim=True).clamp_min(1e-8)
        return pooled.reshape(self.blocks, 1, length, 1).to(like.dtype)


class RegionalCrossAttention:
    """Wraps one cross-attention layer's processor: block-wise attention mixed by ownership
    while a plan is set (see the module docstring), the wrapped processor as is otherwise."""

    def __init__(self, inner, plan: RegionPlan) -> None:
        self.inner = inner
        self.plan = plan

    def __call__(self, attn, hidden_states: torch.Tensor,
                 encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, **kwargs) -> torch.Tensor:
        plan = self.plan
        if encoder_hidden_states is None or \
                encoder_hidden_states.shape[1] != plan.blocks * plan.tokens:
            return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask,
                              **kwargs)
        spatial = hidden_states.ndim == 4
        length = hidden_states.shape[-2] * hidden_states.shape[-1] if spatial else \
            hidden_states.shape[1]
        weights = plan.weights_for(length, hidden_states)
        mixed = None
        for block in range(plan.blocks):
            span = slice(block * plan.tokens, (block + 1) * plan.tokens)
            mask = None if attention_mask is None else attention_mask[..., span]
            out = self.inner(attn, hidden_states, encoder_hidden_states[:, span], mask,
                             **kwargs)
            weight = weights[block]
            if spatial:
                weight = weight.reshape(1, 1, *hidden_states.shape[-2:])
            mixed = out * weight if mixed is None else mixed + out * weight
        return mixed


@contextmanager
def regional_attention(model: torch.nn.Module, plan: RegionPlan | None) -> Iterator[None]:
    """Within the block, ``model``'s cross-attention layers follow ``plan`` (None: no
    change); the original processors come back afterwards, even after an error."""
    if plan is None:
        yield
        return
    original = model.attn_processors
    model.set_attn_processor({
        name: RegionalCrossAttention(processor, plan) if name.endswith("attn2.processor")
        else processor for name, processor in original.items()})
    try:
        yield
    finally:
        model.set_attn_processor(original)
