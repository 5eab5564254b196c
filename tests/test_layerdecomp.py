"""LayerDecomp's pipeline on tiny random models: condition and target streams in one sequence,
conditions kept clean, determinism, the callback, the layers it returns, save/load."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from layerstudio.pipelines.anonymous_region import AnonymousRegionTransformer
from layerstudio.pipelines.decompose_effects.pipeline import (
    LayerDecompPipeline,
    mask_latent,
)


@pytest.fixture(scope="module")
def pipe(layerdecomp_pipe):
    return layerdecomp_pipe


def _inputs():
    rng = np.random.default_rng(0)
    picture = rng.random((64, 64, 3)).astype(np.float32)
    mask = np.zeros((64, 64), bool)
    mask[20:40, 16:36] = True
    return picture, mask


def test_mask_stream_is_coverage_in_every_channel():
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., :4, :2] = 1
    stream = mask_latent(mask, 4, (2, 2))
    assert stream.shape == (1, 4, 2, 2)
    assert torch.allclose(stream[0, :, 0, 0], torch.full((4,), 0.0))  # half covered
    assert (stream[0, :, 1] == -1).all()


def test_conditions_stay_clean_and_the_result_is_background_plus_object(pipe):
    picture, mask = _inputs()
    seen = []

    def callback(p, step, timestep, tensors):
        seen.append(tensors["latents"][:, [0, 3]].clone())
        return {}

    run = dict(num_inference_steps=3, callback_on_step_end=callback)
    first = pipe(picture, mask, generator=torch.Generator().manual_seed(0), **run)
    conditions = pipe.encode_conditions(torch.from_numpy(picture).permute(2, 0, 1)[None],
                                        torch.from_numpy(mask)[None, None].float())
    assert len(seen) == 3 and all(torch.equal(s, conditions) for s in seen)
    again = pipe(picture, mask, generator=torch.Generator().manual_seed(0), **run)
    other = pipe(picture, mask, generator=torch.Generator().manual_seed(5), **run)
    assert np.array_equal(first.extractions[0].background, again.extractions[0].background)
    assert np.array_equal(first.extractions[0].object, again.extractions[0].object)
    assert not np.array_equal(first.extractions[0].background, other.extractions[0].background)
    stack = first.layers[0]
    assert [layer.name for layer in stack] == ["background", "object with effects"]
    assert stack.size == (64, 64) and stack.metadata["pipeline"] == "LayerDecompPipeline"
    extraction = first.extractions[0]
    outside = ~ndimage.binary_dilation(mask, iterations=1)  # the mask grown by one pixel
    assert not extraction.object[..., 3][outside].any()
    assert not extraction.effect[..., 3][~outside].any()


def test_the_pipeline_round_trips_through_save_pretrained(pipe, tmp_path):
    picture, mask = _inputs()
    pipe.save_pretrained(tmp_path)
    loaded = LayerDecompPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    assert isinstance(loaded.transformer, AnonymousRegionTransformer)
    made = [p(picture, mask, num_inference_steps=2, generator=torch.Generator().manual_seed(1))
            for p in (pipe, loaded)]
    assert np.allclose(made[0].extractions[0].background, made[1].extractions[0].background,
                       atol=1e-5)


def test_bad_inputs_are_named(pipe):
    picture, mask = _inputs()
    with pytest.raises(ValueError, match="the mask is"):
        pipe(picture, mask[:32])
    with pytest.raises(ValueError, match="multiples of 8"):
        pipe(picture[:60, :60], mask[:60, :60])


@pytest.mark.parametrize("recipe", ["tiny-layerdecomp", "tiny-layerdecomp-noconsistency"])
def test_both_recipes_train_a_step_from_the_shipped_tiny_art_and_export_a_pipeline(
        recipe, tmp_path):
    from layerstudio.cli import main

    out = tmp_path / recipe
    assert main(["train", recipe, "--output", str(out), "--steps", "1"]) == 0
    pipe = LayerDecompPipeline.from_pretrained(out, dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    picture, mask = _inputs()
    result = pipe(picture, mask, num_inference_steps=2, separate_effects=True)
    names = [layer.name for layer in result.layers[0]]
    assert names[0] == "background" and names[-1] == "object"
    assert (out / "samples" / "transformer-000001.png").is_file()


def test_consistency_loss_reaches_the_foreground_of_scenes_without_ground_truth(tmp_path):
    """With no known foreground, only the consistency loss depends on the foreground stream's
    prediction: nudging that prediction changes the loss with it and not in the ablation."""
    from layerstudio.train.recipe import load_recipe
    from layerstudio.train.registry import TASKS

    from conftest import nudged_loss

    changes = {}
    for weight in (1.0, 0.0):
        stage = load_recipe("tiny-layerdecomp").stages[0]
        stage.options.update(consistency_weight=weight, foreground_share=0.0)
        stage.batch_size = 2
        task = TASKS["layerdecomp"](stage, tmp_path / str(weight), torch.device("cpu"))
        module = task.trainable()
        # stream 2: the foreground's velocity
        changes[weight] = abs(nudged_loss(task, module, 2, 0.5)
                              - nudged_loss(task, module, 2, 0.0))
    assert changes[1.0] > 1e-4 and changes[0.0] == 0


def _scene_with_shadow(height: int = 120, width: int = 150):
    """A red square with a dark drop shadow on a light gradient, off-centre on a wide canvas."""
    ys, xs = np.mgrid[:height, :width].astype(np.float32)
    picture = np.stack([0.7 + 0.2 * xs / width, 0.75 + 0.1 * ys / height,
                        np.full_like(xs, 0.6)], -1)
    shadow = np.zeros((height, width), np.float32)
    shadow[50:86, 76:112] = 0.5
    picture *= 1 - shadow[..., None]
    square = np.zeros((height, width), bool)
    square[44:80, 70:106] = True
    picture[square] = [0.9, 0.1, 0.1]
    return picture, square


def test_scene_crop_is_a_square_around_the_object_inside_the_canvas():
    from layerstudio.pipelines.decompose_effects.with_model import OBJECT_SHARE, scene_crop

    region = np.zeros((300, 500), bool)
    region[200:260, 440:480] = True  # 60 px tall, near the right edge
    rows, cols = scene_crop(region)
    assert rows.stop - rows.start == cols.stop - cols.start == round(60 / OBJECT_SHARE)
    assert rows.start >= 0 and rows.stop <= 300 and cols.start >= 0 and cols.stop == 500
    assert region[rows, cols].sum() == region.sum()
    small = np.zeros((40, 200), bool)
    small[10:30, 20:60] = True  # the square would not fit: as much as the canvas holds
    rows, cols = scene_crop(small)
    assert (rows.stop - rows.start, cols.stop - cols.start) == (40, 40 / OBJECT_SHARE)


def test_the_model_at_any_size_gives_layers_that_add_up_to_the_picture(pipe):
    from layerstudio.pipelines.decompose_effects.layers import effects_stack
    from layerstudio.pipelines.decompose_effects.with_model import extract_with_model

    picture, square = _scene_with_shadow()
    box = np.zeros_like(square)
    box[40:90, 66:116] = True
    steps = []
    extraction = extract_with_model(
        pipe, picture, box, resolution=64, steps=2, seed=0,
        callbacks={"callback_on_step_end": lambda p, i, t, tensors: steps.append(i) or {}})
    assert steps == [0, 1]
    assert extraction.background.shape == picture.shape
    for separate in (False, True):
        stack = effects_stack(extraction, separate)
        assert stack.size == (150, 120)
        assert np.abs(stack.composite_array()[..., :3] - picture).max() < 2e-3
    # the object stays within GrabCut's square (not the whole box); far off nothing changes
    assert not extraction.object[..., 3][~ndimage.binary_dilation(square, iterations=3)].any()
    assert np.array_equal(extraction.background[:, :20], picture[:, :20])


def test_the_effects_method_peels_each_boxed_object_from_the_shipped_preset_folder(
        pipe, install_preset):
    from layerstudio.decompose import DECOMPOSITION
    from layerstudio.studio import Studio

    install_preset("tiny-layerdecomp", pipe)
    assert DECOMPOSITION.installed("effects")
    picture, square = _scene_with_shadow()
    picture[10:30, 10:30] = [0.1, 0.2, 0.8]  # a second object, higher in the frame
    region = np.zeros_like(square)
    region[40:90, 66:116] = True
    region[6:34, 6:34] = True
    seen = []
    stack = Studio(device="cpu").decompose(picture, method="effects", mask=region, steps=2,
                                           separate_effects=True,
                                           on_step=lambda done, total: seen.append(total))
    groups = [layer.group for layer in stack.layers[1:]]
    assert groups[-1] == ("object with effects",)  # the lower (nearer) object on top
    assert ("object with effects 2",) in groups
    assert seen and set(seen) == {2}
    assert stack.metadata["model"] == "tiny-layerdecomp" and stack.metadata["steps"] == 2
    assert np.abs(stack.composite_array()[..., :3] - picture).max() < 2e-3


def test_a_learned_effect_is_read_as_black_shadow_white_glow_or_coloured_reflection():
    """Snapping keeps what the effect does over the model's background: normal-mode colour C
    at alpha a equals black at a (1 - C / B) where every channel darkens by the same ratio."""
    from layerstudio.pipelines.decompose_effects.with_model import snapped_effect

    under = np.array([[[0.6, 0.5, 0.4]] * 3], np.float32)
    colour = np.array([[[0.3, 0.25, 0.2], [0.8, 0.75, 0.7], [0.9, 0.2, 0.3]]], np.float32)
    alpha = np.full((1, 3), 0.5, np.float32)
    snapped, strength = snapped_effect(colour, alpha, under)
    assert snapped[0, 0].tolist() == [0, 0, 0] and snapped[0, 1].tolist() == [1, 1, 1]
    assert np.array_equal(snapped[0, 2], colour[0, 2])  # mixed: a reflection keeps its colour
    before = alpha[..., None] * colour + (1 - alpha[..., None]) * under
    after = strength[..., None] * snapped + (1 - strength[..., None]) * under
    assert np.abs(after[0, 0] - before[0, 0]).max() < 1e-6  # an exact multiply
    assert np.abs(after - before).max() < 0.05  # the glow's screen is exact up to the mean
