"""Shared test helpers: the real Photoshop fixtures and small random stacks."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from layerstudio import BlendMode, GroupInfo, Layer, LayerStack

FIXTURES_ROOT = Path(os.environ.get(
    "LAYERSTUDIO_FIXTURES", Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"))
"""Files made by other programs: ``shared/fixtures`` beside the clone, or wherever the
``LAYERSTUDIO_FIXTURES`` environment variable points."""
FIXTURES = FIXTURES_ROOT / "photoshop-psd"


@pytest.fixture(scope="session")
def tokenizer(tmp_path_factory):
    """The caption-vocabulary tokenizer every tiny text encoder reads."""
    from layerstudio.tokenizer import build_tokenizer_files, caption_vocabulary, load_tokenizer

    folder = tmp_path_factory.mktemp("tokenizer")
    build_tokenizer_files(folder, caption_vocabulary())
    return load_tokenizer(folder)


def tiny_in_context_pipe(pipeline_class, tokenizer, max_layers: int):
    """An in-context decomposition pipeline (LayerDecomp, DiffDecompose) of tiny random
    models: an ART transformer with ``max_layers`` stream embeddings (random, as trained ones
    are not zero), a tiny VAE, text encoder and transparent decoder."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler

    from layerstudio.pipelines.anonymous_region import (
        AnonymousRegionTransformer,
        MultiLayerTransparentDecoder,
    )
    from layerstudio.tiny_models import tiny_flux, tiny_text_encoder, tiny_vae

    torch.manual_seed(0)
    transformer = AnonymousRegionTransformer.from_flux(tiny_flux(), max_layers=max_layers)
    with torch.no_grad():
        transformer.layer_embedding.normal_(0, 0.5)
    vocab = tokenizer.get_vocab()
    pipeline = pipeline_class(
        vae=tiny_vae(), text_encoder=tiny_text_encoder(len(vocab), tokenizer.bos_token_id,
                                                       tokenizer.eos_token_id),
        tokenizer=tokenizer, transformer=transformer.eval(),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=1.0, use_dynamic_shifting=True),
        transparent_decoder=MultiLayerTransparentDecoder(dim=32, depth=1, heads=2))
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def nudged_loss(task, module, stream: int, nudge: float) -> float:
    """``task.loss`` on batch 0 (noise seeded) with stream ``stream`` of the transformer's
    predicted velocity moved by ``nudge``: which loss terms a stream's prediction reaches."""
    import torch

    transformer = module["transformer"]
    forward = transformer.forward

    def nudged(*args, **kwargs):
        output = forward(*args, **kwargs)
        output.sample[:, stream] += nudge
        return output

    transformer.forward = nudged
    try:
        torch.manual_seed(0)
        with torch.no_grad():
            return task.loss(module, task.batch(0)).item()
    finally:
        transformer.forward = forward


@pytest.fixture(scope="session")
def layerdecomp_pipe(tokenizer):
    """A LayerDecomp pipeline of tiny random models."""
    from layerstudio.pipelines.decompose_effects.pipeline import STREAMS, LayerDecompPipeline

    return tiny_in_context_pipe(LayerDecompPipeline, tokenizer, len(STREAMS))


@pytest.fixture(scope="session")
def anime_pipe(tokenizer):
    """An AnimeLayersPipeline of tiny random models (10 stream types: 2 + 4 kinds x 2
    conventions)."""
    from layerstudio.pipelines.anime_layers.pipeline import AnimeLayersPipeline

    return tiny_in_context_pipe(AnimeLayersPipeline, tokenizer, 10)


@pytest.fixture
def install_preset(monkeypatch, tmp_path):
    """``install_preset(name, pipe)``: ``pipe`` saved where shipped preset ``name`` loads
    from, for this test."""
    from layerstudio import presets

    real = presets.preset_path
    installed = {}

    def install(name: str, pipe) -> None:
        pipe.save_pretrained(tmp_path / "presets" / name)
        installed[name] = tmp_path / "presets" / name

    monkeypatch.setattr(presets, "preset_path", lambda name: installed.get(name) or real(name))
    return install


@pytest.fixture
def psd_fixtures() -> Path:
    if not FIXTURES.is_dir():
        pytest.skip(f"real Photoshop fixtures not found at {FIXTURES}; set "
                    "LAYERSTUDIO_FIXTURES to the folder that holds photoshop-psd/ (shared/"
                    "fixtures) to run these tests")
    return FIXTURES


def random_layer(rng: np.random.Generator, name: str, canvas: tuple[int, int], **kw) -> Layer:
    """A random RGBA layer of random size and offset that may hang over the canvas edges."""
    width, height = canvas
    w, h = (int(v) for v in rng.integers(1, (width + 8, height + 8)))
    x, y = int(rng.integers(-w // 2, width)), int(rng.integers(-h // 2, height))
    pixels = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
    pixels[rng.random((h, w)) < 0.2, 3] = 0  # some fully transparent pixels
    return Layer(name, pixels, offset=(x, y), **kw)


def sample_stack(seed: int = 0) -> LayerStack:
    """A small stack with everything the formats must keep: non-Latin names, nested groups,
    offsets past the edges, modes, opacity in 1/255 steps, hidden layers."""
    rng = np.random.default_rng(seed)
    stack = LayerStack(40, 30, metadata={"prompt": "a test", "seed": seed})
    stack.add(Layer("Фон", rng.integers(0, 256, (30, 40, 4), dtype=np.uint8) | np.uint8(0),
                    kind="background"))
    stack.add(random_layer(rng, "Ünïcødé 日本語 🎨", (40, 30), blend_mode=BlendMode.MULTIPLY,
                           opacity=200 / 255, group=("Characters",)))
    stack.add(random_layer(rng, "hero", (40, 30), blend_mode=BlendMode.SCREEN,
                           group=("Characters", "Hero"), kind="effect",
                           provenance={"pipeline": "test", "seed": seed, "prompt": "héros"}))
    stack.add(random_layer(rng, "hidden one", (40, 30), visible=False,
                           group=("Characters", "Hero")))
    stack.add(random_layer(rng, "top", (40, 30), blend_mode=BlendMode.OVERLAY, opacity=128 / 255))
    stack.set_group(("Characters",), GroupInfo(opacity=153 / 255))
    stack.set_group(("Characters", "Hero"), GroupInfo(blend_mode=BlendMode.NORMAL))
    return stack
