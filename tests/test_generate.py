"""``layerstudio generate`` and the Studio API, on a tiny random transparent pipeline saved as
the ``tiny-layerdiffuse`` preset folder, and on the shipped ``tiny-sd``."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from layerstudio import LayerStack, presets
from layerstudio.cli import main
from layerstudio.studio import Studio


@pytest.fixture(scope="module")
def random_preset(tmp_path_factory):
    from diffusers import DDIMScheduler

    from layerstudio.pipelines.latent_transparency import LatentTransparencyPipeline
    from layerstudio.tiny_models import (
        tiny_text_encoder,
        tiny_transparent_decoder,
        tiny_transparent_encoder,
        tiny_unet,
        tiny_vae,
    )
    from layerstudio.tokenizer import build_tokenizer_files, caption_vocabulary, load_tokenizer

    folder = tmp_path_factory.mktemp("tiny-layerdiffuse")
    build_tokenizer_files(folder / "tok", caption_vocabulary())
    tokenizer = load_tokenizer(folder / "tok")
    torch.manual_seed(0)
    vocab = tokenizer.get_vocab()
    LatentTransparencyPipeline(
        vae=tiny_vae(), text_encoder=tiny_text_encoder(len(vocab), tokenizer.bos_token_id,
                                                       tokenizer.eos_token_id),
        tokenizer=tokenizer, unet=tiny_unet(), scheduler=DDIMScheduler(clip_sample=False),
        transparent_decoder=tiny_transparent_decoder(),
        transparent_encoder=tiny_transparent_encoder()).save_pretrained(folder / "model")
    return folder / "model"


@pytest.fixture
def use_random_preset(monkeypatch, random_preset):
    real = presets.preset_path
    monkeypatch.setattr(presets, "preset_path", lambda name: random_preset
                        if name == "tiny-layerdiffuse" else real(name))


def test_generate_writes_a_layered_psd_and_a_preview(use_random_preset, tmp_path, capsys):
    out = tmp_path / "apple.psd"
    assert main(["generate", "a red apple", "-o", str(out), "--steps", "2", "--seed", "3",
                 "--preview"]) == 0
    printed = capsys.readouterr()
    assert "wrote" in printed.out and "1 layer," in printed.out and "preview" in printed.out
    # "apple" is not in tiny-layerdiffuse's vocabulary: a note says so and where to look
    assert "not one of them" in printed.err and "models --prompts" in printed.err
    stack = LayerStack.load(out)
    assert len(stack) == 1 and stack.size == (64, 64)
    assert stack.layers[0].provenance["prompt"] == "a red apple"
    assert Image.open(out.with_suffix(".preview.png")).mode == "RGB"
    # the same seed gives the same layer
    again = tmp_path / "again.ora"
    assert main(["generate", "a red apple", "-o", str(again), "--steps", "2", "--seed",
                 "3"]) == 0
    assert (LayerStack.load(again).layers[0].pixels == stack.layers[0].pixels).all()


def test_known_prompts_list_a_tiny_models_vocabulary(capsys):
    known = presets.known_prompts("tiny-layerdiffuse")
    assert len(known) == 128 and "an ice cream" in known and known == sorted(known)
    assert presets.known_prompts("sd15") == []  # public models have no fixed vocabulary
    assert presets.vocabulary_hint("tiny-layerdiffuse", " An ice cream ") is None
    assert "128 emoji prompts" in presets.vocabulary_hint("tiny-layerdiffuse", "a red apple")
    assert presets.vocabulary_hint("sdxl", "a red apple") is None
    assert main(["models", "--prompts", "tiny-layerdiffuse"]) == 0
    assert capsys.readouterr().out.splitlines() == known
    assert main(["models", "--prompts", "sd15"]) == 0
    assert "no fixed vocabulary" in capsys.readouterr().out
    assert main(["models", "--prompts", "nope"]) == 2
    assert "unknown model preset" in capsys.readouterr().err


def test_studio_records_provenance(use_random_preset):
    studio = Studio(device="cpu")
    stack = studio.generate("a cat face", steps=2, seed=1, augment=True)
    assert stack.metadata["model"] == "tiny-layerdiffuse" and stack.metadata["seed"] == 1
    assert stack.metadata["steps"] == 2 and stack.metadata["seconds"] > 0
    assert studio.pipeline("tiny-layerdiffuse") is studio.pipeline("tiny-layerdiffuse")


@pytest.mark.parametrize("argv, message", [
    (["   "], "prompt is empty"),
    (["x", "--size", "70"], "multiple of 16"),
    (["x", "--steps", "0"], "steps must be"),
    (["x", "--guidance", "-1"], "guidance must be"),
    (["x", "--model", "nope"], "unknown model preset"),
    (["x", "--model", "tiny-sd", "--augment"], "needs a transparent model"),
])
def test_generate_rejects_bad_arguments(use_random_preset, tmp_path, capsys, argv, message):
    out = tmp_path / "x.psd"
    assert main(["generate", *argv, "-o", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_generate_with_an_rgb_model_gives_one_opaque_layer(tmp_path):
    stack = Studio(device="cpu").generate("a cat face", model="tiny-sd", steps=4)
    assert len(stack) == 1 and stack.layers[0].kind == "background"
    assert (stack.layers[0].pixels[..., 3] == 255).all()
