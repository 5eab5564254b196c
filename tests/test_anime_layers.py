"""Anime production layers (issue 21): the conventions' exact inverses, the classical
decomposition on held-out illustrations, the edits that use the structure, and the method
through the Studio, CLI and batch doors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from layerstudio.blend import BlendMode
from layerstudio.document import LayerStack
from layerstudio.errors import InvalidInputError
from layerstudio.pipelines.anime_layers.classical import classical_anime_layers
from layerstudio.pipelines.anime_layers.edits import (
    flat_region,
    recolour_region,
    restyle_line_art,
    restyle_shadow,
)
from layerstudio.pipelines.anime_layers.structure import (
    KINDS,
    anime_stack,
    modes_of,
    normal_layer,
    shading_layers,
)

CONVENTIONS = [("artist", "screen"), ("artist", "add"), ("normal", "screen")]


def _illustration(index: int, convention: str = "artist", size: int = 160):
    from layerstudio.datasets.generate import generate

    return generate("anime", index, size=size, split="heldout", seed=13, convention=convention)


def _alone(stack: LayerStack, index: int) -> np.ndarray:
    layer = stack.layers[index].copy(blend_mode=BlendMode.NORMAL, opacity=1.0)
    return LayerStack(stack.width, stack.height, [layer]).composite_array()


@pytest.mark.parametrize(("convention", "highlight"), CONVENTIONS)
def test_shading_and_line_inverses_are_exact_for_any_pictures(convention, highlight):
    """Whatever the flat colour and the shaded picture, shadow + highlight take one to the
    other exactly, and a normal line layer over that gives any target."""
    rng = np.random.default_rng(1)
    flat = rng.uniform(0, 1, (24, 24, 3))
    shaded = np.clip(flat * rng.uniform(0.4, 1.6, flat.shape), 0, 1)
    picture = np.clip(shaded * rng.uniform(0.0, 1.2, flat.shape), 0, 1)
    shadow, light = shading_layers(flat, shaded, convention, highlight)
    lines = normal_layer(shaded, picture, np.zeros(3))
    stack = anime_stack({"flat": flat, "shadow": shadow, "highlight": light,
                         "lineart": lines}, convention, highlight)
    assert np.abs(stack.composite_array()[..., :3] - picture).max() < 1e-4  # float32
    assert [layer.kind for layer in stack.layers] == list(KINDS)
    assert [layer.blend_mode for layer in stack.layers] == \
        [modes_of(convention, highlight)[kind] for kind in KINDS]


def test_a_cel_shadow_is_one_tint_at_full_strength():
    """A flat region darkened by one tint in part: the shadow layer is that tint, opaque,
    exactly where the shading is, and nothing elsewhere."""
    flat = np.full((10, 10, 3), [0.8, 0.6, 0.4])
    shaded = flat.copy()
    shaded[:, 6:] *= [0.6, 0.5, 0.9]
    shadow, light = shading_layers(flat, shaded, "artist")
    assert np.allclose(shadow[:, 6:, 3], 1) and np.allclose(shadow[:, :6, 3], 0)
    assert np.allclose(shadow[:, 6:, :3], [0.6, 0.5, 0.9], atol=1e-5)
    assert np.allclose(light[..., 3], 0)


def test_unknown_conventions_are_refused_by_name():
    with pytest.raises(InvalidInputError, match="convention must be one of artist, normal"):
        modes_of("photoshop")
    with pytest.raises(InvalidInputError, match="highlight blend must be screen or add"):
        modes_of("artist", "overlay")


def _scores(found: LayerStack, sample) -> dict[str, tuple[float, float]]:
    """Per kind: (alpha-weighted colour L1, soft IoU of alpha) against the truth."""
    truth = sample.stack
    flat = LayerStack(truth.width, truth.height,
                      [truth.layers[0].copy(), truth.layers[1].copy()]).composite_array()
    expected = {"flat": flat, "shadow": _alone(truth, 2), "highlight": _alone(truth, 3),
                "lineart": _alone(truth, 4)}
    scores = {}
    for index, kind in enumerate(KINDS):
        ours, theirs = _alone(found, index), expected[kind]
        weight = np.maximum(ours[..., 3], theirs[..., 3])
        error = np.abs(ours[..., :3] - theirs[..., :3]).mean(-1)
        scores[kind] = (float((weight * error).sum() / max(weight.sum(), 1e-6)),
                        float(np.minimum(ours[..., 3], theirs[..., 3]).sum()
                              / max(weight.sum(), 1e-6)))
    return scores


@pytest.mark.parametrize("convention", ["artist", "normal"])
def test_classical_splits_held_out_illustrations_into_the_four_production_layers(convention):
    """On held-out illustrations the classical method finds the line art and the flat
    colours (the shading's colour and shape are harder: no floor asserted beyond finding
    some) and always re-composes to the picture."""
    scores = []
    for index in range(4):
        sample = _illustration(index, convention)
        picture = sample.stack.composite_array()[..., :3]
        found = classical_anime_layers(picture, convention)
        assert [layer.name for layer in found.layers] == \
            ["flat colour", "shadow", "highlight", "line art"]
        assert np.abs(found.composite_array()[..., :3] - picture).max() < 1e-4
        assert (found.layers[0].pixels[..., 3] == 1).all()  # the flat colour is opaque
        scores.append(_scores(found, sample))
    mean = {kind: np.mean([s[kind] for s in scores], axis=0) for kind in KINDS}
    assert mean["lineart"][1] > 0.85, mean
    assert mean["flat"][0] < 0.06, mean
    assert mean["shadow"][1] > 0.1, mean


def test_classical_handles_flat_pictures_and_a_picture_without_lines():
    blank = classical_anime_layers(np.full((40, 50, 3), 0.7, np.float32))
    assert blank.size == (50, 40)
    assert all(np.allclose(layer.pixels[..., 3], 0) for layer in blank.layers[1:])
    ramp = np.dstack([np.linspace(0, 1, 64)[None].repeat(48, 0)] * 3).astype(np.float32)
    found = classical_anime_layers(ramp, "normal")
    assert np.abs(found.composite_array()[..., :3] - ramp).max() < 1e-4


def _decomposed(convention: str = "artist") -> tuple[LayerStack, np.ndarray]:
    sample = _illustration(3, convention)
    picture = sample.stack.composite_array()[..., :3]
    return classical_anime_layers(picture, convention), picture


def test_recolouring_a_region_changes_it_alone_and_its_shading_follows():
    stack, _ = _decomposed()
    flat = stack.layers[0].pixels
    shaded = stack.layers[1].pixels[..., 3] > 0.5
    clear = shaded & (stack.layers[3].pixels[..., 3] < 0.05)  # shaded, no line over it
    rows, cols = np.nonzero(clear)
    sizes = {(int(x), int(y)): int(flat_region(stack, int(x), int(y)).sum())
             for x, y in zip(cols[::10], rows[::10], strict=True)}
    x, y = max(sizes, key=sizes.get)
    region = flat_region(stack, x, y)
    edited = recolour_region(stack, x, y, "#2050e0")
    assert np.allclose(edited.layers[0].pixels[region, :3], [0x20 / 255, 0x50 / 255, 0xE0 / 255])
    assert np.array_equal(edited.layers[0].pixels[~region], flat[~region])
    for index in (1, 2, 3):  # shadow, highlight and line art are untouched
        assert np.array_equal(edited.layers[index].pixels, stack.layers[index].pixels)
    before, after = stack.composite_array(), edited.composite_array()
    changed = np.abs(after - before).max(-1) > 1e-4
    assert not changed[~region].any()
    # under the shadow the new colour is darkened by the same shadow
    inside = region & clear
    assert inside.any()
    new = np.array([0x20, 0x50, 0xE0]) / 255
    assert (after[inside, :3].mean(-1) < new.mean() - 0.02).mean() > 0.8


def test_shadow_and_line_art_restyles():
    stack, _ = _decomposed()
    softer = restyle_shadow(stack, colour=(0.5, 0.2, 0.7), strength=0.4)
    shadow = softer.layers[1]
    assert shadow.opacity == pytest.approx(0.4)
    assert np.allclose(shadow.pixels[shadow.pixels[..., 3] > 0, :3], [0.5, 0.2, 0.7])
    bolder = restyle_line_art(stack, colour="rgb(255, 0, 0)", thicken=2)
    before = (stack.layers[3].pixels[..., 3] > 0.5).sum()
    after = bolder.layers[3].pixels
    assert (after[..., 3] > 0.5).sum() > 1.3 * before
    assert np.allclose(after[after[..., 3] > 0, :3], [1, 0, 0])
    assert np.array_equal(bolder.layers[0].pixels, stack.layers[0].pixels)


def test_edits_refuse_what_they_cannot_do():
    stack, _ = _decomposed()
    with pytest.raises(InvalidInputError, match="outside the 160 x 160 canvas"):
        recolour_region(stack, 500, 3, "#ffffff")
    with pytest.raises(InvalidInputError, match="a colour is"):
        recolour_region(stack, 3, 3, "teal-ish")
    with pytest.raises(InvalidInputError, match="shadow strength must lie in"):
        restyle_shadow(stack, strength=2)
    with pytest.raises(InvalidInputError, match="thicken takes 0 to 32 px"):
        restyle_line_art(stack, thicken=100)
    plain = LayerStack(8, 8)
    plain.add(stack.layers[0].copy(kind="background", pixels=np.ones((8, 8, 4), np.float32)))
    with pytest.raises(InvalidInputError, match="no flat layer"):
        recolour_region(plain, 1, 1, "#000000")


def test_the_structure_survives_a_psd_round_trip_and_edits_still_work(tmp_path):
    stack, picture = _decomposed("artist")
    path = stack.save(tmp_path / "art.psd")
    back = LayerStack.load(path)
    assert [(layer.name, layer.kind, layer.blend_mode) for layer in back.layers] == [
        ("flat colour", "flat", BlendMode.NORMAL), ("shadow", "shadow", BlendMode.MULTIPLY),
        ("highlight", "highlight", BlendMode.SCREEN), ("line art", "lineart", BlendMode.NORMAL)]
    assert np.abs(back.composite_array()[..., :3] - picture).max() < 2 / 255
    restyled = restyle_line_art(back, thicken=1)  # cropped, offset 16-bit layers work too
    assert restyled.layers[3].offset == (0, 0)


def test_the_anime_method_through_studio_cli_and_batch(tmp_path, capsys):
    from layerstudio.batch import run_batch
    from layerstudio.cli import main
    from layerstudio.studio import Studio

    sample = _illustration(1, "normal", size=96)
    source = sample.stack.save(tmp_path / "art.png")
    stack = Studio(device="cpu").decompose(source, method="anime-classical",
                                           convention="normal")
    assert stack.metadata["method"] == "anime-classical"
    assert stack.metadata["recomposition_psnr"] > 45
    assert {layer.blend_mode for layer in stack.layers} == {BlendMode.NORMAL}
    with pytest.raises(InvalidInputError, match="convention must be one of"):
        Studio(device="cpu").decompose(source, method="anime-classical", convention="manga")
    with pytest.raises(InvalidInputError, match="a convention is for"):
        Studio(device="cpu").decompose(source, method="classical", convention="artist")

    out = tmp_path / "art.psd"
    assert main(["decompose", str(source), "--method", "anime-classical", "--convention",
                 "artist-add", "-o", str(out)]) == 0
    assert "by anime-classical" in capsys.readouterr().out
    modes = [layer.blend_mode for layer in LayerStack.load(out).layers]
    assert modes == [BlendMode.NORMAL, BlendMode.MULTIPLY, BlendMode.LINEAR_DODGE,
                     BlendMode.NORMAL]

    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(json.dumps({"task": "decompose", "image": str(source),
                                "method": "anime-classical", "convention": "artist",
                                "name": "art"}) + "\n")
    summary = run_batch(jobs, tmp_path / "batch", device="cpu", progress=False)
    assert summary.failed == 0 and summary.done == 1
    assert LayerStack.load(tmp_path / "batch" / "art.psd").layers[1].blend_mode is \
        BlendMode.MULTIPLY


# --- the model (AnimeLayersPipeline) ---------------------------------------------------------

def test_semantic_embeddings_name_each_layer_and_the_ablation_shares_one():
    from layerstudio.pipelines.anime_layers.pipeline import STREAMS, stream_codes

    types, positions = stream_codes("normal", semantic=True)
    assert types == [0, 6, 7, 8, 9] and positions == list(range(len(STREAMS)))
    assert stream_codes("artist", semantic=False)[0] == [0, 2, 2, 2, 2]
    with pytest.raises(InvalidInputError, match="convention must be one of"):
        stream_codes("manga", semantic=True)


def test_the_pipeline_makes_four_layers_that_recompose_and_is_deterministic(anime_pipe):
    import torch

    picture = _illustration(0, size=64).stack.composite_array()[..., :3]
    run = lambda seed, **kw: anime_pipe(  # noqa: E731
        picture, "artist", num_inference_steps=2, output_type="np",
        generator=torch.Generator().manual_seed(seed), **kw)
    first, again, other = run(0), run(0), run(1)
    assert first.images.shape == (1, 4, 64, 64, 4)
    assert np.array_equal(first.images, again.images)
    assert not np.array_equal(first.images, other.images)
    stack = first.layers[0]
    assert [layer.kind for layer in stack.layers] == list(KINDS)
    assert np.abs(stack.composite_array()[..., :3] - picture).max() < 1e-4
    assert stack.layers[2].blend_mode is BlendMode.SCREEN
    added = run(0, highlight="add").layers[0]
    assert added.layers[2].blend_mode is BlendMode.LINEAR_DODGE
    pil = anime_pipe(picture, "normal", num_inference_steps=1,
                     generator=torch.Generator().manual_seed(0)).images
    assert len(pil) == 1 and [image.mode for image in pil[0]] == ["RGBA"] * 4
    with pytest.raises(InvalidInputError, match="highlight blend must be screen or add"):
        anime_pipe(picture, "artist", highlight="overlay", num_inference_steps=1)


def test_the_ablation_setting_changes_what_the_layer_streams_see(anime_pipe, tmp_path):
    import torch

    from layerstudio.pipelines.anime_layers.pipeline import AnimeLayersPipeline

    picture = np.random.default_rng(0).random((64, 64, 3)).astype(np.float32)
    run = lambda: anime_pipe(picture, "artist", num_inference_steps=2,  # noqa: E731
                             output_type="np", generator=torch.Generator().manual_seed(0))
    semantic = run().images
    anime_pipe.register_to_config(semantic_embeddings=False)
    try:
        anime_pipe.save_pretrained(tmp_path)
        shared = run().images
    finally:
        anime_pipe.register_to_config(semantic_embeddings=True)
    assert not np.allclose(semantic, shared)
    loaded = AnimeLayersPipeline.from_pretrained(tmp_path)
    assert loaded.config.semantic_embeddings is False


@pytest.mark.parametrize("recipe", ["tiny-anime-layers", "tiny-anime-layers-nosemantic"])
def test_both_recipes_train_a_step_from_the_shipped_tiny_art(recipe, tmp_path):
    from layerstudio.cli import main
    from layerstudio.pipelines.anime_layers.pipeline import AnimeLayersPipeline

    out = tmp_path / recipe
    assert main(["train", recipe, "--output", str(out), "--steps", "1"]) == 0
    pipe = AnimeLayersPipeline.from_pretrained(out)
    assert pipe.config.semantic_embeddings is (recipe == "tiny-anime-layers")
    assert (out / "samples" / "decoder-000001.png").is_file()
    assert (out / "samples" / "transformer-000001.png").is_file()


def test_the_layer_wise_loss_weighs_each_layer_stream(tmp_path):
    """Nudging one layer stream's prediction moves the loss by its weight alone."""
    import torch

    from layerstudio.train.recipe import load_recipe
    from layerstudio.train.registry import TASKS

    from conftest import nudged_loss

    stage = load_recipe("tiny-anime-layers").stages[1]
    stage.batch_size = 2
    stage.options["layer_weights"] = [1.0, 0.0, 0.0, 0.0]  # the flat colour only
    task = TASKS["anime_layers"](stage, tmp_path, torch.device("cpu"))
    module = task.trainable()
    loss = lambda stream, nudge: nudged_loss(task, module, stream, nudge)  # noqa: E731
    base = loss(1, 0.0)
    assert abs(loss(1, 0.5) - base) > 1e-3  # flat colour (stream 1) counts
    assert loss(4, 0.5) == pytest.approx(base)  # line art (stream 4) weighs nothing here


def test_the_anime_method_runs_the_preset_at_any_size(anime_pipe, install_preset):
    from layerstudio.decompose import DECOMPOSITION
    from layerstudio.studio import Studio

    install_preset("tiny-anime-layers", anime_pipe)
    assert DECOMPOSITION.installed("anime")
    picture = _illustration(2, size=120).stack.composite_array()[:100, :, :3]
    stack = Studio(device="cpu").decompose(picture, method="anime", convention="artist-add",
                                           steps=2)
    assert stack.size == (120, 100) and stack.metadata["model"] == "tiny-anime-layers"
    assert stack.layers[2].blend_mode is BlendMode.LINEAR_DODGE
    assert stack.metadata["recomposition_psnr"] > 45


def test_cli_splits_an_illustration_with_the_shipped_model(tmp_path, capsys):
    """``--method anime`` on a held-out illustration: the shipped tiny-anime-layers, 4 steps;
    the PSD holds the four production layers in the artist's modes and re-composes."""
    from layerstudio.cli import main

    sample = _illustration(6, "artist", size=128)
    source = sample.stack.save(tmp_path / "art.png")
    out = tmp_path / "art.psd"
    assert main(["decompose", str(source), "--method", "anime", "--steps", "4",
                 "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "4 layers by anime" in printed
    assert float(printed.split("re-composing at ")[1].split(" dB")[0]) > 40
    stack = LayerStack.load(out)
    assert [(layer.name, layer.blend_mode) for layer in stack] == [
        ("flat colour", BlendMode.NORMAL), ("shadow", BlendMode.MULTIPLY),
        ("highlight", BlendMode.SCREEN), ("line art", BlendMode.NORMAL)]
