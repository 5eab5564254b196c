"""DiffDecompose (issue 20): the blend types' exact inverses, the pipeline on tiny random models
(composite kept clean, Layer Position Encoding Cloning, determinism, save/load) and training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from layerstudio.blend import BlendMode
from layerstudio.document import Layer, LayerStack
from layerstudio.errors import InvalidInputError
from layerstudio.pipelines.alpha_decompose.blends import (
    BLENDS,
    background_under,
    blend_mode,
    blend_of,
    blended,
)
from layerstudio.pipelines.alpha_decompose.pipeline import (
    STREAMS,
    AlphaDecomposePipeline,
    stream_codes,
)


def _layer(seed: int = 0, size: int = 24) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    background = rng.uniform(0.05, 0.95, (size, size, 3)).astype(np.float32)
    layer = rng.uniform(0, 1, (size, size, 4)).astype(np.float32)
    layer[..., 3] *= 0.8
    return background, layer


@pytest.mark.parametrize("blend", list(BLENDS))
def test_each_blend_matches_the_document_compositor_and_inverts_exactly(blend):
    background, layer = _layer()
    if blend == "add":  # linear dodge clips at 1: keep the sum below it to invert
        layer[..., :3] *= 0.3
        background *= 0.6
    picture = blended(background, layer, blend)
    stack = LayerStack(24, 24, [
        Layer("bg", np.concatenate([background, np.ones((24, 24, 1), np.float32)], -1)),
        Layer("see-through", layer, blend_mode=blend_mode(blend))])
    assert np.abs(stack.composite_array()[..., :3] - picture).max() < 1e-5
    recovered, known = background_under(picture, layer, blend)
    assert known.all() and np.abs(recovered - background).max() < 1e-4


@pytest.mark.parametrize("blend", list(BLENDS))
def test_any_estimated_layer_is_made_to_recompose_the_picture(blend):
    from layerstudio.pipelines.alpha_decompose.blends import split

    picture, guess = _layer(5)
    guess[..., 3] = np.random.default_rng(6).uniform(0, 1, guess.shape[:2])  # opaque spots too
    background, layer = split(picture, guess, blend, np.full_like(picture, 0.5))
    assert (layer[..., 3] <= guess[..., 3] + 1e-6).all()
    assert np.abs(blended(background, layer, blend) - picture).max() < 2e-3


def test_an_opaque_layer_hides_the_background_and_names_are_checked():
    background, layer = _layer()
    layer[:4, :4, 3] = 1.0
    _, known = background_under(blended(background, layer, "normal"), layer, "normal")
    assert not known[:4, :4].any() and known[8:, 8:].all()
    assert blend_of(BlendMode.LINEAR_DODGE) == "add" and blend_mode("multiply") is \
        BlendMode.MULTIPLY
    with pytest.raises(InvalidInputError, match="choose from normal, screen, add, multiply"):
        blend_mode("overlay")
    with pytest.raises(InvalidInputError, match="not one of the see-through"):
        blend_of(BlendMode.OVERLAY)


def test_position_cloning_puts_background_on_the_composite_code():
    assert stream_codes(["screen"], True) == ([0, 1, 3], [0, 0, 1])
    assert stream_codes(["multiply"], False) == ([0, 1, 5], [0, 1, 2])


@pytest.fixture(scope="module")
def pipe(tokenizer):
    from conftest import tiny_in_context_pipe

    return tiny_in_context_pipe(AlphaDecomposePipeline, tokenizer, 2 + len(BLENDS))


def test_the_composite_stays_clean_and_the_result_is_background_plus_blended_layer(pipe):
    picture = np.random.default_rng(1).random((64, 64, 3)).astype(np.float32)
    seen = []

    def callback(p, step, timestep, tensors):
        seen.append(tensors["latents"][:, 0].clone())
        return {}

    run = dict(num_inference_steps=3, callback_on_step_end=callback)
    first = pipe(picture, "screen", generator=torch.Generator().manual_seed(0), **run)
    condition = pipe.encode_picture(torch.from_numpy(picture).permute(2, 0, 1)[None])
    assert len(seen) == 3 and all(torch.equal(s, condition) for s in seen)
    again = pipe(picture, "screen", generator=torch.Generator().manual_seed(0), **run)
    assert np.array_equal(first.backgrounds, again.backgrounds)
    stack = first.layers[0]
    assert [(layer.name, layer.blend_mode) for layer in stack] == [
        ("background", BlendMode.NORMAL), ("see-through layer (screen)", BlendMode.SCREEN)]
    assert stack.metadata["blend"] == "screen" and stack.metadata["position_cloning"]
    # the background is solved under the (made feasible) predicted layer: they re-compose
    assert np.abs(stack.composite_array()[..., :3] - picture).max() < 2e-3
    # cloning changes what the model computes
    pipe.register_to_config(position_cloning=False)
    try:
        other = pipe(picture, "screen", generator=torch.Generator().manual_seed(0), **run)
    finally:
        pipe.register_to_config(position_cloning=True)
    assert not np.array_equal(other.backgrounds, first.backgrounds)


def test_the_pipeline_round_trips_with_its_cloning_setting(pipe, tmp_path):
    pipe.register_to_config(position_cloning=False)
    try:
        pipe.save_pretrained(tmp_path)
    finally:
        pipe.register_to_config(position_cloning=True)
    loaded = AlphaDecomposePipeline.from_pretrained(tmp_path)
    assert loaded.config.position_cloning is False
    assert len(STREAMS) == 3
    with pytest.raises(InvalidInputError, match="unknown blend"):
        loaded(np.zeros((64, 64, 3), np.float32), "overlay")


@pytest.mark.parametrize("recipe", ["tiny-diffdecompose", "tiny-diffdecompose-nolpec"])
def test_both_recipes_train_a_step_from_the_shipped_tiny_art(recipe, tmp_path):
    from layerstudio.cli import main

    out = tmp_path / recipe
    assert main(["train", recipe, "--output", str(out), "--steps", "1"]) == 0
    pipe = AlphaDecomposePipeline.from_pretrained(out, dtype=torch.float32)
    assert pipe.config.position_cloning is (recipe == "tiny-diffdecompose")
    pipe.set_progress_bar_config(disable=True)
    result = pipe(np.full((64, 64, 3), 0.5, np.float32), "multiply", num_inference_steps=2)
    assert result.layers[0].layers[1].blend_mode is BlendMode.MULTIPLY
    assert (out / "samples" / "decoder-000001.png").is_file()
    assert (out / "samples" / "transformer-000001.png").is_file()


def test_the_decoder_stage_reads_the_layer_beside_the_composite(tmp_path):
    """The fine-tuned transparent decoder's loss reaches only the decoder (the VAE stays
    frozen), and the layer it decodes depends on the composite decoded with it: the same
    layer latent over another picture decodes differently."""
    from layerstudio.train.recipe import load_recipe
    from layerstudio.train.registry import TASKS

    stage = load_recipe("tiny-diffdecompose").stages[0]
    assert stage.task == "alpha_decoder"
    stage.batch_size = 2
    task = TASKS["alpha_decoder"](stage, tmp_path, torch.device("cpu"))
    module = task.trainable()
    batch = task.batch(0)
    assert set(batch) == {"composite", "background", "layer"}
    loss = task.loss(module, batch)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is None for p in task.vae.parameters())
    assert sum(float(p.grad.abs().sum()) for p in module.parameters()
               if p.grad is not None) > 0
    with torch.no_grad():
        layer = task._decoded(module, batch)
        other = task._decoded(module, batch | {"composite": batch["composite"].flip(-1)})
    assert layer.shape == batch["layer"].shape
    assert float((layer - other).abs().max()) > 1e-4


def _stamped_photos(count: int, size: int = 96):
    """One semi-transparent white logo on ``count`` different photos (float RGB)."""
    from layerstudio.datasets.assets.backgrounds import make_background

    mark = np.zeros((size, size, 4), np.float32)
    mark[30:66, 20:76, :3] = 1.0
    mark[30:66, 20:76, 3] = 0.45
    mark[40:56, 30:66, 3] = 0.0  # a hole: a ring-shaped logo
    rng = np.random.default_rng(4)
    clean = [make_background(rng, (size, size))[0][..., :3].astype(np.float32) / 255
             for _ in range(count)]
    return mark, clean, [blended(photo, mark, "normal") for photo in clean]


def test_a_watermark_shared_by_many_photos_is_estimated_and_removed():
    from layerstudio.eval.metrics import psnr
    from layerstudio.pipelines.alpha_decompose.watermark import (
        estimate_watermark,
        remove_watermark,
    )

    mark, clean, stamped = _stamped_photos(32)
    estimate = estimate_watermark(iter(stamped))
    assert estimate.photos == 32
    assert np.abs(estimate.rgba[..., 3] - mark[..., 3]).mean() < 0.03
    assert estimate.rgba[..., 3][:, :8].mean() < 0.02  # next to nothing far from the logo
    before = np.mean([psnr(s, c) for s, c in zip(stamped[:4], clean[:4], strict=True)])
    after = np.mean([psnr(remove_watermark(s, estimate.rgba), c)
                     for s, c in zip(stamped[:4], clean[:4], strict=True)])
    assert after > before + 6
    with pytest.raises(InvalidInputError, match="at least 2 photos"):
        estimate_watermark([stamped[0]])
    with pytest.raises(InvalidInputError, match="same size"):
        estimate_watermark([stamped[0], stamped[1][:50]])


def test_decompose_watermark_cleans_a_folder_at_full_size(tmp_path, capsys):
    from layerstudio.cli import main

    mark, clean, stamped = _stamped_photos(12)
    folder = tmp_path / "stamped"
    folder.mkdir()
    for index, photo in enumerate(stamped):
        LayerStack(96, 96, [Layer("p", np.concatenate([photo, np.ones((96, 96, 1))], -1)
                                  .astype(np.float32))]).save(folder / f"photo{index:02}.png")
    out = tmp_path / "clean"
    assert main(["decompose-watermark", str(folder), "-o", str(out)]) == 0
    assert "wrote 12 cleaned photos" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir())[:2] == ["photo00.png", "photo01.png"]
    assert (out / "watermark.png").is_file()
    cleaned = LayerStack.load(out / "photo00.png").composite_array()[..., :3]
    assert np.abs(cleaned - clean[0]).mean() < np.abs(stamped[0] - clean[0]).mean() / 2
    # a known watermark: the exact inverse, and a layered PSD
    LayerStack(96, 96, [Layer("w", mark)]).save(tmp_path / "mark.png")
    assert main(["decompose-watermark", str(folder / "photo03.png"), "-o", str(out),
                 "--watermark", str(tmp_path / "mark.png"), "--psd"]) == 0
    layered = LayerStack.load(out / "photo03.psd")
    assert [layer.name for layer in layered] == ["photo", "watermark"]
    photo = LayerStack(96, 96, [layered.layers[0]]).composite_array()[..., :3]
    assert np.abs(photo - clean[3]).max() < 3 / 255
    assert main(["decompose-watermark", str(folder / "photo03.png"), "-o", str(out)]) == 2
    assert "at least 2 photos" in capsys.readouterr().err


def test_the_alpha_method_runs_the_preset_at_any_size_and_auto_picks_a_blend(
        pipe, install_preset):
    from layerstudio.decompose import DECOMPOSITION
    from layerstudio.studio import Studio

    install_preset("tiny-diffdecompose", pipe)
    assert DECOMPOSITION.installed("alpha")
    picture = np.random.default_rng(2).random((80, 120, 3)).astype(np.float32)
    studio = Studio(device="cpu")
    stack = studio.decompose(picture, method="alpha", blend="multiply", steps=2)
    assert stack.size == (120, 80) and stack.layers[1].blend_mode is BlendMode.MULTIPLY
    assert stack.metadata["blend"] == "multiply" and stack.metadata["model"] == \
        "tiny-diffdecompose"
    auto = studio.decompose(picture, method="alpha", steps=2)
    assert auto.metadata["blend"] in BLENDS and set(auto.metadata["blend_errors"]) == \
        set(BLENDS)
    assert auto.metadata["blend"] == min(auto.metadata["blend_errors"],
                                         key=auto.metadata["blend_errors"].get)
    with pytest.raises(InvalidInputError, match="a blend type is for method 'alpha'"):
        studio.decompose(picture, method="classical", blend="screen")


def test_cli_splits_a_see_through_layer_with_the_shipped_model(tmp_path, capsys):
    """``--method alpha`` on a held-out lens flare: the shipped tiny-diffdecompose, 4 steps."""
    from layerstudio.cli import main
    from layerstudio.datasets.generate import generate

    sample = generate("alpha_blend", 0, size=96, split="heldout", seed=13, subtask="flare")
    source = sample.stack.save(tmp_path / "flare.png")
    out = tmp_path / "out.psd"
    assert main(["decompose", str(source), "--method", "alpha", "--blend", "screen",
                 "--steps", "4", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "2 layers by alpha" in printed
    assert float(printed.split("re-composing at ")[1].split(" dB")[0]) > 40
    stack = LayerStack.load(out)
    assert [(layer.name, layer.blend_mode) for layer in stack] == [
        ("background", BlendMode.NORMAL), ("see-through layer (screen)", BlendMode.SCREEN)]
