"""Assembling the released LayerDiffuse models (``LayerDiffusion/layerdiffusion-v1``) on their
base checkpoints, offline: every file comes from the local Hugging Face cache (or a local
folder), never the network.

SDXL: ``stabilityai/stable-diffusion-xl-base-1.0`` + ``layer_xl_transparent_attn`` (rank-256
attention LoRA, Forge format) + ``vae_transparent_decoder`` / ``vae_transparent_encoder``.
SD 1.5: ``stable-diffusion-v1-5/stable-diffusion-v1-5`` + ``layer_sd15_transparent_attn`` +
``layer_sd15_vae_transparent_decoder``. SD 1.5 joint (foreground + background + blend): the
same base + ``layer_sd15_joint`` (an attention-sharing adapter) + the SD 1.5 decoder.
SDXL background -> foreground: the SDXL base with ``layer_xl_bg2ble`` (blend stage) and a copy
with ``layer_xl_bgble2fg`` (layer stage) + the SDXL decoder; foreground -> background:
``layer_xl_fg2ble`` + ``layer_xl_fgble2bg`` (an opaque result, no decoder).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from layerstudio.errors import InvalidInputError

from .convert import load_unet_patch
from .models import TransparentVAEDecoder, TransparentVAEEncoder

__all__ = ["RELEASES", "Release", "load_released", "load_sd15", "load_sd15_joint", "load_sdxl",
           "load_sdxl_bg2fg", "load_sdxl_fg2bg"]

PATCH_REPO = "LayerDiffusion/layerdiffusion-v1"


@dataclass(frozen=True)
class Release:
    base: str
    unet_patch: str
    decoder: str | None
    encoder: str | None
    xl: bool
    joint: bool = False
    """The patch is an attention-sharing adapter (three frames), not a U-Net delta."""
    layer_patch: str | None = None
    """The second (layer) stage of a two-stage conditioned release; ``unet_patch`` is then
    the blend stage."""
    mode: str = "fg"
    model_config: dict[str, Any] = field(default_factory=dict)
    """Config overrides of the decoder/encoder; empty: the released sizes (the defaults)."""


RELEASES = {
    "sdxl": Release("stabilityai/stable-diffusion-xl-base-1.0",
                    "layer_xl_transparent_attn.safetensors",
                    "vae_transparent_decoder.safetensors",
                    "vae_transparent_encoder.safetensors", xl=True),
    "sd15": Release("stable-diffusion-v1-5/stable-diffusion-v1-5",
                    "layer_sd15_transparent_attn.safetensors",
                    "layer_sd15_vae_transparent_decoder.safetensors", None, xl=False),
    "sd15-joint": Release("stable-diffusion-v1-5/stable-diffusion-v1-5",
                          "layer_sd15_joint.safetensors",
                          "layer_sd15_vae_transparent_decoder.safetensors", None, xl=False,
                          joint=True),
    "sdxl-bg2fg": Release("stabilityai/stable-diffusion-xl-base-1.0",
                          "layer_xl_bg2ble.safetensors", "vae_transparent_decoder.safetensors",
                          None, xl=True, layer_patch="layer_xl_bgble2fg.safetensors",
                          mode="bg2fg"),
    "sdxl-fg2bg": Release("stabilityai/stable-diffusion-xl-base-1.0",
                          "layer_xl_fg2ble.safetensors", None, None, xl=True,
                          layer_patch="layer_xl_fgble2bg.safetensors", mode="fg2bg"),
}


def _file(source: str, name: str) -> Path:
    """A file of ``source`` (a local folder, or a Hugging Face repo in the local cache)."""
    folder = Path(source)
    if folder.is_dir():
        path = folder / name
        if not path.is_file():
            raise InvalidInputError(f"{name} is missing from {folder}")
        return path
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(source, name, local_files_only=True))
    except Exception as exc:  # the hub raises several types for "not in the cache"
        raise InvalidInputError(
            f"{name} of {source} is not in the local Hugging Face cache; on a machine with "
            f"internet run `hf download {source} {name}` and copy the cache here "
            f"(HF_HOME). ({type(exc).__name__})") from None


def _state(path: Path, model: torch.nn.Module) -> torch.nn.Module:
    from safetensors.torch import load_file

    try:
        model.load_state_dict(load_file(str(path)), strict=True)
    except RuntimeError as exc:
        raise InvalidInputError(f"{path.name} does not fit {type(model).__name__}: "
                                f"{str(exc).splitlines()[0]}") from None
    return model


def load_released(kind: str, patches: str = PATCH_REPO, base: str | None = None,
                  dtype: torch.dtype = torch.float16, **kwargs: Any):
    """The pipeline of release ``kind`` (a key of :data:`RELEASES`).
    ``patches`` and ``base`` may be repo ids (read from the local cache) or local folders."""
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    from .pipeline import LatentTransparencyPipeline, LatentTransparencyXLPipeline

    if kind not in RELEASES:
        raise InvalidInputError(f"unknown LayerDiffuse release {kind!r}; known: "
                                f"{', '.join(RELEASES)}")
    release = RELEASES[kind]
    base = base or release.base
    parent = StableDiffusionXLPipeline if release.xl else StableDiffusionPipeline
    try:
        components = parent.from_pretrained(base, local_files_only=True, dtype=dtype,
                                            **kwargs).components
    except (OSError, ValueError) as exc:
        raise InvalidInputError(f"the base model {base!r} is not available offline "
                                f"({type(exc).__name__}); download it first") from None
    config = release.model_config
    decoder = None
    if release.decoder:
        decoder = _state(_file(patches, release.decoder),
                         TransparentVAEDecoder(**config.get("decoder", {}))).to(dtype)
    if release.joint:
        return _joint(components, _file(patches, release.unet_patch), decoder, dtype)
    if release.layer_patch:
        return _two_stage(components, _file(patches, release.unet_patch),
                          _file(patches, release.layer_patch), decoder, release.mode)
    load_unet_patch(components["unet"], _file(patches, release.unet_patch))
    encoder = None
    if release.encoder:
        encoder = _state(_file(patches, release.encoder),
                         TransparentVAEEncoder(**config.get("encoder", {}))).to(dtype)
    cls = LatentTransparencyXLPipeline if release.xl else LatentTransparencyPipeline
    return cls(**components, transparent_decoder=decoder, transparent_encoder=encoder)


def _two_stage(components: dict[str, Any], blend_patch: Path, layer_patch: Path,
               decoder: TransparentVAEDecoder | None, mode: str):
    """The SDXL conditioned pipeline: the base U-Net patched twice over (two copies)."""
    import copy

    from .conditioned_xl import ConditionedTransparencyXLPipeline

    unet = components.pop("unet")
    layer_unet = copy.deepcopy(unet)
    load_unet_patch(unet, blend_patch)
    load_unet_patch(layer_unet, layer_patch)
    return ConditionedTransparencyXLPipeline(**components, unet=unet, layer_unet=layer_unet,
                                             transparent_decoder=decoder, mode=mode)


def _joint(components: dict[str, Any], path: Path, decoder: TransparentVAEDecoder,
           dtype: torch.dtype):
    """A joint pipeline: the base untouched, the adapter sized from the file (rank)."""
    from safetensors.torch import load_file

    from .attention_sharing import AttentionSharingAdapter, load_released_attention_sharing
    from .joint import JointTransparencyPipeline

    state = load_file(str(path))
    probe = "hookers.layers.0.to_q_lora.0.down.weight"
    if probe not in state:
        raise InvalidInputError(f"{path.name} is not an attention-sharing file (no {probe})")
    adapter = AttentionSharingAdapter.for_unet(components["unet"], frames=3,
                                               rank=state[probe].shape[0])
    try:
        load_released_attention_sharing(adapter, state)
    except ValueError as exc:
        raise InvalidInputError(f"{path.name}: {exc}") from None
    return JointTransparencyPipeline(**components, transparent_decoder=decoder,
                                     attention_sharing=adapter.to(dtype))


def load_sdxl(patches: str = PATCH_REPO, **kwargs: Any):
    """Preset ``sdxl-layerdiffuse``: :func:`load_released` for SDXL."""
    return load_released("sdxl", patches, **kwargs)


def load_sd15(patches: str = PATCH_REPO, **kwargs: Any):
    """Preset ``sd15-layerdiffuse``: :func:`load_released` for SD 1.5."""
    return load_released("sd15", patches, **kwargs)


def load_sd15_joint(patches: str = PATCH_REPO, **kwargs: Any):
    """Preset ``sd15-layerdiffuse-joint``: :func:`load_released` for the SD 1.5 joint model."""
    return load_released("sd15-joint", patches, **kwargs)


def load_sdxl_bg2fg(patches: str = PATCH_REPO, **kwargs: Any):
    """Preset ``sdxl-layerdiffuse-bg2fg``: the two-stage SDXL background -> foreground."""
    return load_released("sdxl-bg2fg", patches, **kwargs)


def load_sdxl_fg2bg(patches: str = PATCH_REPO, **kwargs: Any):
    """Preset ``sdxl-layerdiffuse-fg2bg``: the two-stage SDXL foreground -> background."""
    return load_released("sdxl-fg2bg", patches, **kwargs)
