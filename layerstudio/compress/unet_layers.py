"""The removable layers of a ``UNet2DConditionModel`` and the smaller U-Net without them.

LAPTOP-Diff prunes a U-Net's residual layers. What can go follows from how diffusers builds the
network, and every result must be a model its config describes, so that ``from_pretrained``
loads it with every key matched:

- ``downS.pairJ``: resnet J of down stage S with its attention, and with it one resnet (and
  attention) of the mirrored up block: an up block takes one skip tensor per resnet, so the
  counts are tied (``layers_per_block`` per stage). The first resnet of a stage changes the
  channel count and can go only where the stage keeps its width; the up resnet that goes is a
  middle one (out + out channels), so no weight changes shape.
- ``downS.attentions`` / ``upU.attentions``: all attention stacks of a stage whose stacks are one
  transformer block deep (the block type becomes the attention-free one; diffusers cannot drop
  one depth-1 stack of a stage alone).
- ``downS.attnJ.blockK`` / ``upU.attnJ.blockK`` / ``mid.attn0.blockK``: a transformer block inside a
  deeper stack (SDXL's 2- and 10-deep ones; block 0 stays), through the per-resnet
  ``transformer_layers_per_block`` / ``reverse_transformer_layers_per_block`` lists.
- ``mid``: the whole mid block (``mid_block_type`` None).

One thing the config cannot say: the mid block's transformer depth is tied to the last down
stage's first stack. When they must differ, the result is a
:class:`LayerPrunedUNet2DConditionModel`, a subclass whose one extra config field
(``mid_block_transformer_layers``) sets the mid depth; everything else is the parent's.
"""

from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass

import torch
from diffusers import UNet2DConditionModel
from diffusers.configuration_utils import register_to_config

__all__ = ["LayerPrunedUNet2DConditionModel", "Unit", "pruned_unet", "removable_units",
           "unit_parameters"]

_ATTENTION_FREE = {"CrossAttnDownBlock2D": "DownBlock2D", "CrossAttnUpBlock2D": "UpBlock2D"}
_SUPPORTED = {"DownBlock2D", "CrossAttnDownBlock2D", "UpBlock2D", "CrossAttnUpBlock2D"}


class LayerPrunedUNet2DConditionModel(UNet2DConditionModel):
    """``UNet2DConditionModel`` whose mid block has its own transformer depth
    (``mid_block_transformer_layers``; None: the parent's rule)."""

    def __init__(self, *args, mid_block_transformer_layers: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        depth = mid_block_transformer_layers
        if depth is not None and self.mid_block is not None:
            for stack in getattr(self.mid_block, "attentions", ()):
                blocks = list(stack.transformer_blocks[:depth])
                # the parent built as many as the last down stage has: fill up with copies
                # of block 0 (same shapes; weights are loaded over them)
                blocks += [copy.deepcopy(blocks[0]) for _ in range(depth - len(blocks))]
                stack.transformer_blocks = torch.nn.ModuleList(blocks)


def _with_config_field() -> None:
    """Give the subclass's ``__init__`` the parent's full signature plus its field, so
    diffusers' config machinery records and reloads every field."""
    parent = inspect.signature(UNet2DConditionModel.__init__)
    params = [p if p.name == "self" else p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
              for p in parent.parameters.values()]
    params.append(inspect.Parameter("mid_block_transformer_layers",
                                    inspect.Parameter.KEYWORD_ONLY, default=None))
    init = LayerPrunedUNet2DConditionModel.__init__
    init.__signature__ = parent.replace(parameters=params)
    LayerPrunedUNet2DConditionModel.__init__ = register_to_config(init)


_with_config_field()


@dataclass(frozen=True)
class Unit:
    """One removable layer (see the module docstring for the names)."""

    name: str
    kind: str
    """``pair``, ``attentions``, ``block`` or ``mid``."""
    params: int
    """Parameters it removes when it goes alone."""


def _count(module: torch.nn.Module | None) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


def _check(unet: UNet2DConditionModel) -> None:
    if not isinstance(unet, UNet2DConditionModel):
        raise ValueError(f"LAPTOP-Diff prunes a UNet2DConditionModel, not {type(unet).__name__}")
    blocks = [type(b).__name__ for b in [*unet.down_blocks, *unet.up_blocks]]
    unknown = sorted(set(blocks) - _SUPPORTED)
    if unknown:
        raise ValueError(f"cannot prune U-Net blocks of type {', '.join(unknown)}")


def _depths(stage) -> list[int]:
    """Transformer depth of each attention stack of a block (empty: no attention)."""
    return [len(stack.transformer_blocks) for stack in getattr(stage, "attentions", ())]


def _stage_in_out(unet: UNet2DConditionModel, stage: int) -> tuple[int, int]:
    channels = unet.config.block_out_channels
    return (channels[stage - 1] if stage else channels[0]), channels[stage]


def _up_drops(n: int, removed: set[int]) -> list[int]:
    """Which of an up block's ``n + 1`` resnets go when down resnets ``removed`` go: the first
    and last stay (they take the channel-changing inputs), middle ones go, the mirror of each
    removed down resnet (up ``n - 1 - j`` took its skip) first."""
    if not removed:
        return []
    if len(removed) == n:  # the stage keeps no resnet: one up resnet, prev + skip channels
        return list(range(1, n + 1))
    middle = list(range(1, n))
    preferred = sorted({n - 1 - j for j in removed if 1 <= n - 1 - j <= n - 1})
    rest = [k for k in reversed(middle) if k not in preferred]
    return sorted((preferred + rest)[:len(removed)])


def removable_units(unet: UNet2DConditionModel) -> list[Unit]:
    """Every layer LAPTOP-Diff may remove from ``unet``, with its parameter count."""
    _check(unet)
    stages = len(unet.down_blocks)
    units = []
    for s, down in enumerate(unet.down_blocks):
        up = unet.up_blocks[stages - 1 - s]
        n = len(down.resnets)
        stage_in, stage_out = _stage_in_out(unet, s)
        for j in range(n):
            if j == 0 and stage_in != stage_out:
                continue  # the first resnet changes the width
            drop = _up_drops(n, {j})[0]
            params = _count(down.resnets[j]) + _count(up.resnets[drop])
            for block, index in ((down, j), (up, drop)):
                if hasattr(block, "attentions"):
                    params += _count(block.attentions[index])
            units.append(Unit(f"down{s}.pair{j}", "pair", params))
    for prefix, blocks in (("down", unet.down_blocks), ("up", unet.up_blocks)):
        for s, block in enumerate(blocks):
            depths = _depths(block)
            if depths and max(depths) == 1:
                units.append(Unit(f"{prefix}{s}.attentions", "attentions",
                                  sum(_count(a) for a in block.attentions)))
            for j, depth in enumerate(depths):
                for k in range(1, depth):
                    units.append(Unit(f"{prefix}{s}.attn{j}.block{k}", "block",
                                      _count(block.attentions[j].transformer_blocks[k])))
    if unet.mid_block is not None:
        for depth in _depths(unet.mid_block)[:1]:
            for k in range(1, depth):
                units.append(Unit(f"mid.attn0.block{k}", "block",
                                  _count(unet.mid_block.attentions[0].transformer_blocks[k])))
        units.append(Unit("mid", "mid", _count(unet.mid_block)))
    return units


def _encode(depths: list[int], fallback: int) -> int | list[int]:
    """A stage's per-resnet transformer depths as the config writes them: an int when they
    agree (or the stage has none left), else the list."""
    return depths[0] if depths and len(set(depths)) == 1 else (list(depths) or fallback)


def _plan(unet: UNet2DConditionModel, removed: set[str]):
    """(config, kept indices per module list path, dropped paths, class) without ``removed``."""
    known = {unit.name for unit in removable_units(unet)}
    unknown = sorted(removed - known)
    if unknown:
        raise ValueError(f"not removable units of this U-Net: {', '.join(unknown)}; "
                         f"removable: {', '.join(sorted(known))}")
    config = dict(unet.config)
    stages = len(unet.down_blocks)
    keep: dict[str, list[int]] = {}
    dropped: set[str] = set()
    layers, down_types, up_types = [], list(config["down_block_types"]), \
        list(config["up_block_types"])
    down_depths, up_depths = [], [None] * stages

    def blocks_kept(path: str, block, j: int, prefix: str) -> int:
        depth = len(block.attentions[j].transformer_blocks)
        kept = [k for k in range(depth) if f"{prefix}.attn{j}.block{k}" not in removed]
        keep[f"{path}.attentions.{j}.transformer_blocks"] = kept
        return len(kept)

    for s, down in enumerate(unet.down_blocks):
        u = stages - 1 - s
        up = unet.up_blocks[u]
        n = len(down.resnets)
        gone = {j for j in range(n) if f"down{s}.pair{j}" in removed}
        kept_down = [j for j in range(n) if j not in gone]
        kept_up = [k for k in range(n + 1) if k not in _up_drops(n, gone)]
        layers.append(len(kept_down))
        for prefix, path, block, kept, index in (
                (f"down{s}", f"down_blocks.{s}", down, kept_down, s),
                (f"up{u}", f"up_blocks.{u}", up, kept_up, u)):
            keep[f"{path}.resnets"] = kept
            if not hasattr(block, "attentions"):
                depths = []
            elif f"{prefix}.attentions" in removed:
                dropped.add(f"{path}.attentions")
                types = down_types if prefix.startswith("down") else up_types
                types[index] = _ATTENTION_FREE[types[index]]
                depths = []
            else:
                keep[f"{path}.attentions"] = kept
                depths = [blocks_kept(path, block, j, prefix) for j in kept]
            original = _depths(block)
            if prefix.startswith("down"):
                down_depths.append(_encode(depths, original[0] if original else 1))
            else:
                up_depths[u] = _encode(depths, original[0] if original else 1)
    config.update(layers_per_block=layers, down_block_types=down_types,
                  up_block_types=up_types, transformer_layers_per_block=down_depths)
    config["reverse_transformer_layers_per_block"] = up_depths  # up stacks prune on their own
    cls = UNet2DConditionModel
    config.pop("mid_block_transformer_layers", None)
    if unet.mid_block is None or "mid" in removed:
        config["mid_block_type"] = None
        if unet.mid_block is not None:
            dropped.add("mid_block")
    elif _depths(unet.mid_block):
        mid = blocks_kept("mid_block", unet.mid_block, 0, "mid")
        last = down_depths[-1]
        if mid != (last if isinstance(last, int) else last[0]):
            cls = LayerPrunedUNet2DConditionModel
            config["mid_block_transformer_layers"] = mid
    return config, keep, dropped, cls


def _renamed(key: str, keep: dict[str, list[int]], dropped: set[str]) -> str | None:
    """A state-dict key of the full U-Net as it is named in the pruned one (None: gone)."""
    parts = key.split(".")
    out = []
    for i, part in enumerate(parts):
        path = ".".join(parts[:i])
        if path in dropped:
            return None
        if path in keep and part.isdigit():
            if int(part) not in keep[path]:
                return None
            part = str(keep[path].index(int(part)))
        out.append(part)
    return ".".join(out)


def pruned_unet(unet: UNet2DConditionModel, removed) -> UNet2DConditionModel:
    """A new U-Net (same dtype and device) without the units named in ``removed``, its other
    weights copied; the original is untouched."""
    config, keep, dropped, cls = _plan(unet, set(removed))
    config = {k: v for k, v in config.items() if not k.startswith("_")}
    model = cls.from_config(config)
    state = {}
    for key, value in unet.state_dict().items():
        new = _renamed(key, keep, dropped)
        if new is not None:
            state[new] = value
    model.load_state_dict(state, strict=True)
    model = model.to(unet.device)
    return model if model.dtype == unet.dtype else model.to(unet.dtype)


def unit_parameters(unet: UNet2DConditionModel, removed) -> int:
    """Parameters the units in ``removed`` take away together (exact: built, then counted)."""
    return _count(unet) - _count(pruned_unet(unet, removed))
