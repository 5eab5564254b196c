"""diffusers' pipeline conventions, checked the same way for each pipeline (issue 16).

Each entry of PIPELINES builds a tiny random pipeline, the keyword arguments one call needs,
how its prompt embeddings are passed and how its latents are decoded; every test runs over all
of them, and a pipeline class in ``layerstudio.pipelines`` without an entry fails
:func:`test_every_pipeline_is_checked`, so a new method cannot skip these checks.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline, FlowMatchEulerDiscreteScheduler

from layerstudio.pipelines.anonymous_region import (
    AnonymousRegionPipeline,
    AnonymousRegionTransformer,
    MultiLayerTransparentDecoder,
)
from layerstudio.pipelines.dit_text_to_image import DiTTextToImagePipeline
from layerstudio.pipelines.latent_transparency import (
    ConditionedTransparencyPipeline,
    ConditionedTransparencyXLPipeline,
    JointTransparencyPipeline,
    LatentTransparencyImg2ImgPipeline,
    LatentTransparencyPipeline,
    LatentTransparencyXLPipeline,
)
from layerstudio.pipelines.latent_transparency.attention_sharing import AttentionSharingAdapter
from layerstudio.tiny_models import (
    tiny_flux,
    tiny_sdxl_components,
    tiny_text_encoder,
    tiny_transparent_decoder,
    tiny_transparent_encoder,
    tiny_unet,
    tiny_vae,
)


@dataclass
class Case:
    """A tiny pipeline and how to drive it: the keywords one call needs, its prompt
    embeddings as call keywords, its latent decoder, the pictures to compare, and standard
    parameters its diffusers parent itself lacks."""

    pipe: Any
    extra: dict[str, Any]
    embeddings: Callable[[Any], dict[str, torch.Tensor]]
    decode: Callable[[torch.Tensor], np.ndarray]
    pixels: Callable[[Any], np.ndarray] = field(default=lambda output: np.asarray(output.images))
    not_in_parent: tuple[str, ...] = ()
    stages: int = 1
    """Sampling runs per call (callbacks run once per stage)."""
    guidance: str = "guidance_scale"
    """The call keyword and property of the CFG scale (a callback changes ``_<guidance>``)."""


STANDARD = ("prompt", "negative_prompt", "height", "width", "num_inference_steps",
            "guidance_scale", "num_images_per_prompt", "generator", "latents", "prompt_embeds",
            "output_type", "return_dict", "callback_on_step_end",
            "callback_on_step_end_tensor_inputs")


def _text_parts(tokenizer) -> dict[str, Any]:
    return {"vae": tiny_vae(), "tokenizer": tokenizer,
            "text_encoder": tiny_text_encoder(len(tokenizer.get_vocab()),
                                              tokenizer.bos_token_id, tokenizer.eos_token_id),
            "scheduler": FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True)}


def _sd_parts(tokenizer, **unet_overrides: Any) -> dict[str, Any]:
    """The SD 1.5-shaped parts every transparent SD pipeline shares, plus both transparent
    codecs."""
    from diffusers import DDIMScheduler

    return {"vae": tiny_vae(), "tokenizer": tokenizer,
            "text_encoder": tiny_text_encoder(len(tokenizer.get_vocab()),
                                              tokenizer.bos_token_id, tokenizer.eos_token_id),
            "unet": tiny_unet(**unet_overrides), "scheduler": DDIMScheduler(clip_sample=False),
            "transparent_decoder": tiny_transparent_decoder(),
            "transparent_encoder": tiny_transparent_encoder()}


def _flux_embeddings(pipe) -> dict[str, torch.Tensor]:
    embeds, pooled = pipe.encode_prompt(["an ice cream", "a cloud"])
    negative, negative_pooled = pipe.encode_prompt(["", ""])
    return {"prompt_embeds": embeds, "pooled_prompt_embeds": pooled,
            "negative_prompt_embeds": negative,
            "negative_pooled_prompt_embeds": negative_pooled}


def _sd_embeddings(pipe) -> dict[str, torch.Tensor]:
    embeds, negative = pipe.encode_prompt(["an ice cream", "a cloud"], pipe.device, 1, True)
    return {"prompt_embeds": embeds, "negative_prompt_embeds": negative}


def _sdxl_embeddings(pipe) -> dict[str, torch.Tensor]:
    embeds, negative, pooled, negative_pooled = pipe.encode_prompt(
        ["an ice cream", "a cloud"], device=pipe.device, num_images_per_prompt=1,
        do_classifier_free_guidance=True)
    return {"prompt_embeds": embeds, "negative_prompt_embeds": negative,
            "pooled_prompt_embeds": pooled, "negative_pooled_prompt_embeds": negative_pooled}


def _dit(tokenizer):
    pipe = DiTTextToImagePipeline(transformer=tiny_flux(), **_text_parts(tokenizer))
    return Case(pipe, {}, _flux_embeddings, lambda latents: pipe._decode(latents, "np"))


def _art(tokenizer):
    transformer = AnonymousRegionTransformer.from_flux(tiny_flux(), max_layers=6)
    with torch.no_grad():
        transformer.layer_embedding.normal_(0, 0.5)
    decoder = MultiLayerTransparentDecoder(dim=32, depth=1, heads=2)
    pipe = AnonymousRegionPipeline(transformer=transformer, transparent_decoder=decoder,
                                   **_text_parts(tokenizer))
    boxes = [(8, 8, 24, 24)]
    return Case(pipe, {"boxes": boxes}, _flux_embeddings,
                lambda latents: pipe.decode_layers(latents, pipe.layout(boxes, 64, 64))
                .permute(0, 1, 3, 4, 2).numpy(),
                lambda output: output.rgba)


def _layerdecomp(tokenizer):
    from layerstudio.pipelines.decompose_effects.pipeline import STREAMS, LayerDecompPipeline

    transformer = AnonymousRegionTransformer.from_flux(tiny_flux(), max_layers=len(STREAMS))
    with torch.no_grad():
        transformer.layer_embedding.normal_(0, 0.5)
    decoder = MultiLayerTransparentDecoder(dim=32, depth=1, heads=2)
    pipe = LayerDecompPipeline(transformer=transformer, transparent_decoder=decoder,
                               **_text_parts(tokenizer))
    picture = np.random.default_rng(0).random((64, 64, 3)).astype(np.float32)
    mask = np.zeros((64, 64), bool)
    mask[16:40, 20:44] = True
    return Case(pipe, {"image": picture, "mask": mask}, _flux_embeddings,
                lambda latents: np.stack([parts.foreground()
                                          for parts in pipe.extract(latents, mask)]),
                not_in_parent=("height", "width"))


def _sd_rgba(tokenizer):
    pipe = LatentTransparencyPipeline(**_sd_parts(tokenizer))
    return Case(pipe, {"height": 64, "width": 64}, _sd_embeddings, pipe.decode_latents_rgba)


def _sdxl_rgba(tokenizer):
    pipe = LatentTransparencyXLPipeline(**tiny_sdxl_components(tokenizer),
                                        transparent_decoder=tiny_transparent_decoder())
    return Case(pipe, {"height": 64, "width": 64}, _sdxl_embeddings, pipe.decode_latents_rgba)


def _conditioned(mode: str):
    def build(tokenizer):
        pipe = ConditionedTransparencyPipeline(**_sd_parts(tokenizer, in_channels=8),
                                               mode=mode)
        given = np.random.default_rng(0).integers(0, 256, (64, 64, 4), dtype=np.uint8)
        return Case(pipe, {"height": 64, "width": 64, "condition": given}, _sd_embeddings,
                    pipe.decode_latents_rgba)

    return build


def _conditioned_xl(tokenizer):
    pipe = ConditionedTransparencyXLPipeline(
        **tiny_sdxl_components(tokenizer, in_channels=8), mode="bg2fg",
        layer_unet=tiny_sdxl_components(tokenizer, in_channels=12)["unet"],
        transparent_decoder=tiny_transparent_decoder())
    given = np.random.default_rng(0).integers(0, 256, (64, 64, 4), dtype=np.uint8)
    return Case(pipe, {"height": 64, "width": 64, "condition": given}, _sdxl_embeddings,
                pipe.decode_latents_rgba, stages=2)


def _img2img(tokenizer):
    pipe = LatentTransparencyImg2ImgPipeline(**_sd_parts(tokenizer))
    layer = np.zeros((64, 64, 4), np.uint8)
    layer[16:48, 16:48] = (40, 80, 200, 255)
    # strength 1: both steps run, as in the other cases; diffusers' img2img takes no latents
    return Case(pipe, {"image": layer, "strength": 1.0}, _sd_embeddings,
                pipe.decode_latents_rgba, not_in_parent=("latents",))


def _qwen(tokenizer):
    from layerstudio.pipelines.qwen_layered import (
        QwenLayeredPipeline,
        tiny_qwen_layered_components,
    )

    pipe = QwenLayeredPipeline(**tiny_qwen_layered_components())
    picture = np.random.default_rng(0).integers(0, 256, (64, 64, 4), dtype=np.uint8)

    def embeddings(pipe) -> dict[str, torch.Tensor]:
        embeds, mask = pipe.encode_prompt(["an ice cream", "a cloud"], pipe.device, 1)
        negative, negative_mask = pipe.encode_prompt([" ", " "], pipe.device, 1)
        return {"prompt_embeds": embeds, "prompt_embeds_mask": mask,
                "negative_prompt_embeds": negative, "negative_prompt_embeds_mask": negative_mask}

    return Case(pipe, {"image": picture, "layers": 2, "resolution": 64, "negative_prompt": " "},
                embeddings, lambda latents: pipe.decode_latents(latents, 64, 64, 2),
                not_in_parent=("height", "width"), guidance="true_cfg_scale")


def _frames(array: np.ndarray) -> np.ndarray:
    """The joint pipeline's rows (three frames per picture) grouped by picture."""
    return array.reshape(-1, 3, *array.shape[1:])


def _joint(tokenizer):
    unet = tiny_unet()
    adapter = AttentionSharingAdapter.for_unet(unet, rank=4)
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():  # a fresh adapter is the identity: make the frames interact
        for parameter in adapter.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.1)
    pipe = JointTransparencyPipeline(**{**_sd_parts(tokenizer), "unet": unet},
                                     attention_sharing=adapter)

    def embeddings(pipe) -> dict[str, torch.Tensor]:
        frames = pipe.frame_prompts(["an ice cream", "a cloud"])
        embeds, negative = pipe.encode_prompt(frames, pipe.device, 1, True)
        return {"prompt_embeds": embeds, "negative_prompt_embeds": negative}

    return Case(pipe, {"height": 64, "width": 64}, embeddings,
                lambda latents: _frames(pipe.decode_latents_rgba(latents)),
                lambda output: _frames(np.asarray(output.images)))


def _picture_case(tokenizer, pipeline_class, max_layers: int, options: dict[str, Any],
                  decode: Callable[[Any, np.ndarray, torch.Tensor], np.ndarray]) -> Case:
    """A one-picture in-context decomposition pipeline (DiffDecompose, anime layers) of tiny
    random models, on a random 64 px picture; ``decode(pipe, picture, latents)``."""
    transformer = AnonymousRegionTransformer.from_flux(tiny_flux(), max_layers=max_layers)
    with torch.no_grad():
        transformer.layer_embedding.normal_(0, 0.5)
    decoder = MultiLayerTransparentDecoder(dim=32, depth=1, heads=2)
    pipe = pipeline_class(transformer=transformer, transparent_decoder=decoder,
                          **_text_parts(tokenizer))
    picture = np.random.default_rng(0).random((64, 64, 3)).astype(np.float32)
    return Case(pipe, {"image": picture, **options}, _flux_embeddings,
                lambda latents: decode(pipe, picture, latents),
                not_in_parent=("height", "width"))


def _alpha_decompose(tokenizer):
    from layerstudio.pipelines.alpha_decompose.pipeline import AlphaDecomposePipeline

    return _picture_case(
        tokenizer, AlphaDecomposePipeline, 6, {"blend": "screen"},
        lambda pipe, picture, latents: np.stack([stack.layers[1].pixels for stack in
                                                 pipe.split_latents(latents, np.repeat(
                                                     picture[None], len(latents), 0),
                                                     "screen")]))


def _anime_layers(tokenizer):
    from layerstudio.pipelines.anime_layers.pipeline import AnimeLayersPipeline

    return _picture_case(
        tokenizer, AnimeLayersPipeline, 10, {"convention": "normal"},
        lambda pipe, picture, latents: pipe.layers_of(latents).permute(0, 1, 3, 4, 2).numpy())


def _layered_memory(tokenizer):
    """An add on a session whose background is a random picture (both 2 steps, as the
    calls are), so BCG and MQD both run."""
    from layerstudio.pipelines.layered_memory import LayeredMemoryEditPipeline

    parts = _sd_parts(tokenizer)
    pipe = LayeredMemoryEditPipeline(**{name: parts[name] for name in (
        "vae", "text_encoder", "tokenizer", "unet", "scheduler")})
    pipe.set_progress_bar_config(disable=True)
    picture = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    memory = pipe("a cloud", image=picture, num_inference_steps=2).memories[0]
    mask = np.zeros((64, 64), np.float32)
    mask[8:40, 16:48] = 1
    memory = pipe("a cloud", mask=mask, memory=memory, num_inference_steps=2).memories[0]
    mask = np.zeros((64, 64), np.float32)
    mask[24:56, 24:56] = 1

    def embeddings(pipe) -> dict[str, torch.Tensor]:
        condition, negative = pipe.encode_prompt(["an ice cream", "a cloud"])
        return {"prompt_embeds": condition.embeds, "negative_prompt_embeds": negative.embeds}

    return Case(pipe, {"memory": memory, "mask": mask}, embeddings, pipe.decode_latents)


PIPELINES: dict[str, Callable] = {"img2img": _img2img, "conditioned-xl": _conditioned_xl,
                                  "joint": _joint, "qwen-image-layered": _qwen,
                                  "dit": _dit, "anonymous-region": _art,
                                  "layerdecomp": _layerdecomp,
                                  "alpha-decompose": _alpha_decompose,
                                  "anime-layers": _anime_layers,
                                  "layered-memory": _layered_memory,
                                  "latent-transparency": _sd_rgba,
                                  "latent-transparency-xl": _sdxl_rgba,
                                  "conditioned-bg2fg": _conditioned("bg2fg"),
                                  "conditioned-fg2bg": _conditioned("fg2bg")}


@pytest.fixture(scope="module", params=sorted(PIPELINES))
def case(request, tokenizer) -> Case:
    torch.manual_seed(0)
    built = PIPELINES[request.param](tokenizer)
    built.pipe.set_progress_bar_config(disable=True)
    return built


def _call(pipe, extra: dict, guidance: str = "guidance_scale", **kwargs):
    options = {"prompt": ["an ice cream", "a cloud"], "num_inference_steps": 2,
               guidance: 4.0, "output_type": "np", **extra}
    options.update(kwargs)
    if "negative_prompt_embeds" in kwargs:
        options.pop("negative_prompt", None)
    if "generator" not in options:
        options["generator"] = torch.Generator().manual_seed(0)
    return pipe(**options)


def test_the_call_signature_lists_the_standard_parameters(case):
    parameters = inspect.signature(type(case.pipe).__call__).parameters
    assert not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    expected = [name for name in STANDARD if name not in case.not_in_parent]
    assert [name for name in expected if name not in parameters] == []


def test_prompt_embeddings_stand_in_for_the_prompt(case):
    pipe, extra = case.pipe, case.extra
    with torch.no_grad():
        given = case.embeddings(pipe)
    from_text = case.pixels(_call(pipe, extra, case.guidance))
    from_embeds = case.pixels(_call(pipe, extra, case.guidance, prompt=None, **given))
    np.testing.assert_allclose(from_embeds, from_text, atol=1e-5)
    with pytest.raises(ValueError):
        _call(pipe, extra, case.guidance, **given)  # a prompt and its embeddings: ambiguous


def test_latent_output_chains_into_the_decoder(case):
    pipe, extra = case.pipe, case.extra
    latents = _call(pipe, extra, case.guidance, output_type="latent").images
    assert isinstance(latents, torch.Tensor)
    with torch.no_grad():
        decoded = case.decode(latents)
    np.testing.assert_allclose(decoded, case.pixels(_call(pipe, extra, case.guidance)), atol=1e-5)


def test_callbacks_read_and_change_latents_and_guidance(case):
    pipe, extra = case.pipe, case.extra
    seen = []

    # Guidance is weakened, not turned off: turning it off mid-run also needs the embeddings
    # halved in diffusers' SD pipelines (their SDCFGCutoffCallback does both).
    def weaker(pipeline, step, timestep, tensors):
        seen.append((step, pipeline.num_timesteps, getattr(pipeline, case.guidance)))
        setattr(pipeline, f"_{case.guidance}", 2.0)
        return {"latents": tensors["latents"]}

    changed = case.pixels(_call(pipe, extra, case.guidance, callback_on_step_end=weaker))
    assert seen == [(0, 2, 4.0), (1, 2, 2.0)] * case.stages
    assert not np.allclose(changed, case.pixels(_call(pipe, extra, case.guidance)))

    def zero(pipeline, step, timestep, tensors):
        return {"latents": torch.zeros_like(tensors["latents"])}

    flat = _call(pipe, extra, case.guidance, output_type="latent", callback_on_step_end=zero).images
    assert not flat.any()


def test_a_batch_equals_single_calls(case):
    pipe, extra = case.pipe, case.extra
    seeds = [torch.Generator().manual_seed(s) for s in (1, 2)]
    batch = case.pixels(_call(pipe, extra, case.guidance, generator=seeds))
    for index, (prompt, seed) in enumerate(zip(["an ice cream", "a cloud"], (1, 2),
                                               strict=True)):
        single = case.pixels(_call(pipe, extra, case.guidance, prompt=prompt,
                              generator=torch.Generator().manual_seed(seed)))
        # (within one 8-bit step: layered pipelines composite 8-bit layers)
        np.testing.assert_allclose(batch[index], single[0], atol=1 / 255 + 1e-6)
    repeated = case.pixels(_call(pipe, extra, case.guidance, num_images_per_prompt=2))
    assert repeated.shape[0] == 4


def test_attention_slicing_leaves_the_output_alone(case):
    pipe, extra = case.pipe, case.extra
    before = case.pixels(_call(pipe, extra, case.guidance))
    pipe.enable_attention_slicing()
    try:
        np.testing.assert_allclose(case.pixels(_call(pipe, extra, case.guidance)), before,
                                   atol=1e-5)
    finally:
        pipe.disable_attention_slicing()


def test_save_and_load_give_the_same_pictures(case, tmp_path):
    pipe, extra = case.pipe, case.extra
    pipe.save_pretrained(tmp_path)
    again = type(pipe).from_pretrained(tmp_path, local_files_only=True)
    again.set_progress_bar_config(disable=True)
    np.testing.assert_allclose(case.pixels(_call(again, extra, case.guidance)),
                               case.pixels(_call(pipe, extra, case.guidance)),
                               atol=1e-4)  # float reordering after a reload, two stages deep


def test_the_tuple_form_carries_everything_the_output_does(case):
    pipe, extra = case.pipe, case.extra
    output = _call(pipe, extra, case.guidance)
    as_tuple = _call(pipe, extra, case.guidance, return_dict=False)
    assert len(as_tuple) == len(vars(output))
    np.testing.assert_allclose(np.asarray(as_tuple[0]), np.asarray(output.images), atol=1e-6)


def test_every_output_type_shows_the_same_pictures(case):
    pipe, extra = case.pipe, case.extra
    array = np.asarray(_call(pipe, extra, case.guidance).images)
    tensor = _call(pipe, extra, case.guidance, output_type="pt").images
    assert isinstance(tensor, torch.Tensor) and tensor.shape[-3] == array.shape[-1]
    np.testing.assert_allclose(np.moveaxis(tensor.numpy(), -3, -1), array, atol=1e-6)
    pictures = _call(pipe, extra, case.guidance, output_type="pil").images
    eight_bit = _stacked(pictures) / 255
    np.testing.assert_allclose(eight_bit, array, atol=0.5 / 255 + 1e-6)
    with pytest.raises(ValueError, match="output_type"):
        _call(pipe, extra, case.guidance, output_type="numpy")


def _stacked(pictures) -> np.ndarray:
    """PIL pictures, or lists of them (one list per image for layered outputs), as one array."""
    if isinstance(pictures, (list, tuple)):
        return np.stack([_stacked(one) for one in pictures])
    return np.asarray(pictures)


def test_the_pipeline_runs_in_another_dtype(case):
    pipe = copy.deepcopy(case.pipe)  # the float32 one stays as the other tests expect it
    pipe.to(torch.bfloat16)
    modules = {name: part.dtype for name, part in pipe.components.items()
               if isinstance(part, torch.nn.Module)}
    assert set(modules.values()) == {torch.bfloat16}, modules
    pixels = case.pixels(_call(pipe, case.extra, case.guidance))
    assert pixels.dtype in (np.float32, np.float64) and np.isfinite(pixels).all()


def _pipeline_classes() -> set[type]:
    """Every DiffusionPipeline subclass defined in ``layerstudio.pipelines``."""
    import layerstudio.pipelines as package

    found = set()
    for module_info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        module = importlib.import_module(module_info.name)
        found |= {value for value in vars(module).values()
                  if isinstance(value, type) and issubclass(value, DiffusionPipeline)
                  and value.__module__ == module.__name__}
    return found


CHECKED_ELSEWHERE = {"LayerDPipeline": "tests/test_layerd.py",
                     "RealESRGANPipeline": "tests/test_upscale.py",
                     "InContextPipeline": "the layerdecomp, alpha-decompose and anime-layers "
                                          "cases"}
"""Pipelines without a prompt or latents (nothing here applies), whose own tests check the
conventions that do (save/load, the progress bar, callback_on_step_end, interrupt, outputs),
and shared bases checked through their subclasses."""


def test_every_pipeline_is_checked(tokenizer):
    checked = {type(build(tokenizer).pipe) for build in PIPELINES.values()}
    missing = sorted(cls.__qualname__ for cls in _pipeline_classes() - checked
                     if cls.__qualname__ not in CHECKED_ELSEWHERE)
    assert missing == [], f"add a Case to PIPELINES for {missing}"
