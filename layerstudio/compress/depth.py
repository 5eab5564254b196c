"""Depth pruning of diffusion transformers: which blocks to keep, and the smaller model.

A DiT's blocks sit in plain ``ModuleList``s: ``transformer_blocks`` (PixArt, SD3, DiT and
FLUX's double-stream blocks) and FLUX's ``single_transformer_blocks``. A pruned model keeps a
subset of them in order, rebuilt as new lists with the config's block counts updated
(``num_layers``, ``num_single_layers``), so it is an ordinary model of the same class that
``from_pretrained`` loads with every key matched (:func:`saved_and_loaded` checks this; diffusers
only warns about missing keys and initialises them randomly).

Selection baselines of TinyFusion's comparison (its learned selection builds on these lists):
evenly spaced blocks, random blocks, and ShortGPT's block influence (the blocks whose output is
most like their input, measured on calibration batches, go first).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch

__all__ = ["BLOCK_LISTS", "block_influence", "block_lists", "evenly_spaced", "kept_model",
           "last_is_fixed", "loaded_cleanly", "random_blocks", "saved_and_loaded"]

BLOCK_LISTS = {"transformer_blocks": "num_layers", "single_transformer_blocks":
               "num_single_layers"}
"""Block list attribute -> the config field that counts it."""


def block_lists(model: torch.nn.Module) -> dict[str, torch.nn.ModuleList]:
    """The model's prunable block lists by attribute name (non-empty ones)."""
    found = {name: getattr(model, name) for name in BLOCK_LISTS
             if isinstance(getattr(model, name, None), torch.nn.ModuleList)}
    if not found:
        raise ValueError(f"{type(model).__name__} has no transformer_blocks to prune")
    return {name: blocks for name, blocks in found.items() if len(blocks)}


def last_is_fixed(blocks: torch.nn.ModuleList) -> bool:
    """SD3's last joint block is context-pre-only (it returns no text stream): keep it."""
    return bool(getattr(blocks[-1], "context_pre_only", False))


def kept_model(model: torch.nn.Module, keep: dict[str, Iterable[int]]) -> torch.nn.Module:
    """A copy of ``model`` with only the blocks ``keep`` names (attribute -> indices, every
    list of :func:`block_lists` named), in their order, and its config counting them."""
    lists = block_lists(model)
    if set(keep) != set(lists):
        raise ValueError(f"say which blocks to keep of each of {sorted(lists)}")
    pruned = copy.deepcopy(model)
    counts = {}
    for name, indices in keep.items():
        chosen = sorted(set(int(i) for i in indices))
        size = len(lists[name])
        if not chosen or chosen[0] < 0 or chosen[-1] >= size:
            raise ValueError(f"{name}: keep at least one of blocks 0..{size - 1}, got {chosen}")
        if last_is_fixed(lists[name]) and chosen[-1] != size - 1:
            raise ValueError(f"{name}: the last block is context-pre-only and must be kept")
        setattr(pruned, name, torch.nn.ModuleList(getattr(pruned, name)[i] for i in chosen))
        counts[BLOCK_LISTS[name]] = len(chosen)
    pruned.register_to_config(**counts)
    return pruned


def evenly_spaced(count: int, kept: int) -> list[int]:
    """``kept`` of ``count`` blocks spread evenly, the last always kept (it writes the output
    the final norm reads)."""
    if not 1 <= kept <= count:
        raise ValueError(f"keep between 1 and {count} blocks, got {kept}")
    return sorted({round(float(v)) for v in np.linspace(count - 1, 0, kept)})


def random_blocks(count: int, kept: int, seed: int = 0) -> list[int]:
    """``kept`` of ``count`` blocks at random (seeded)."""
    if not 1 <= kept <= count:
        raise ValueError(f"keep between 1 and {count} blocks, got {kept}")
    return sorted(np.random.default_rng(seed).choice(count, kept, replace=False).tolist())


def _tokens(parts: tuple) -> torch.Tensor:
    """Hidden-state streams (B, N, D) side by side as one (B, N_total, D) float tensor."""
    return torch.cat([part.float() for part in parts], 1)


@torch.no_grad()
def block_influence(model: torch.nn.Module, run: Callable[[], object]
                    ) -> dict[str, list[float]]:
    """ShortGPT's block influence of every block: 1 - cosine similarity of its input and
    output hidden states (text and image streams together), averaged over what ``run()``
    feeds the model (calibration batches). Low influence: the block changes little."""
    scores: dict[str, list[list[float]]] = {name: [[] for _ in blocks]
                                            for name, blocks in block_lists(model).items()}
    hooks = []
    for name, blocks in block_lists(model).items():
        for index, block in enumerate(blocks):
            def hook(_module, args, kwargs, output, name=name, index=index):
                hidden = kwargs.get("hidden_states", args[0] if args else None)
                if isinstance(output, tuple):  # FLUX: (text, image) out, both streams in
                    before = _tokens((hidden, kwargs["encoder_hidden_states"]))
                    after = _tokens((output[1], output[0]))
                else:  # PixArt / DiT: the image stream (text is cross-attended, not changed)
                    before, after = _tokens((hidden,)), _tokens((output,))
                similarity = torch.nn.functional.cosine_similarity(before, after, dim=-1)
                scores[name][index].append(float((1 - similarity).mean()))
            hooks.append(block.register_forward_hook(hook, with_kwargs=True))
    try:
        run()
    finally:
        for handle in hooks:
            handle.remove()
    return {name: [float(np.mean(values)) for values in rows] for name, rows in scores.items()}


def loaded_cleanly(model_class: type, folder: str | Path, **kwargs) -> torch.nn.Module:
    """``model_class.from_pretrained(folder)``; an error if any key is missing, unexpected or
    mismatched (diffusers would only warn and initialise the missing ones randomly)."""
    loaded, info = model_class.from_pretrained(folder, output_loading_info=True, **kwargs)
    problems = {key: value for key, value in info.items() if value}
    if problems:
        raise ValueError(f"the pruned model in {folder} does not load cleanly: {problems}")
    return loaded


def saved_and_loaded(model: torch.nn.Module, folder: str | Path) -> torch.nn.Module:
    """``model`` saved to ``folder`` and loaded back cleanly (:func:`loaded_cleanly`)."""
    model.save_pretrained(folder)
    return loaded_cleanly(type(model), folder)
