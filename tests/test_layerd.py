"""LayerD's peeling loop (tiny-layerd): the training pairs, the loop's maths with a perfect
matte, the diffusers conventions on a tiny random network, training, and the shipped model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from layerstudio.datasets.splits import load_split
from layerstudio.decompose import recomposition
from layerstudio.document import Layer, LayerStack
from layerstudio.eval.layers_edit_dist import layers_edit_distance, scores_at, stack_layers
from layerstudio.pipelines.layerd import LayerDPipeline, TopLayerMatting
from layerstudio.pipelines.layerd.training import peel_pairs
from layerstudio.presets import PRESETS, is_available
from layerstudio.studio import Studio


def _plate(width: int, height: int, colour: tuple[int, int, int]) -> np.ndarray:
    pixels = np.zeros((height, width, 4), np.uint8)
    pixels[...] = (*colour, 255)
    return pixels


def _design() -> LayerStack:
    """A flat background, a card, a bar lying partly on the card, and a separate square."""
    stack = LayerStack(64, 64, [Layer("background", _plate(64, 64, (240, 230, 200)),
                                      kind="background")])
    stack.add(Layer("card", _plate(30, 24, (40, 90, 200)), offset=(6, 8)))
    stack.add(Layer("bar", _plate(20, 6, (230, 40, 40)), offset=(24, 18)))
    stack.add(Layer("square", _plate(10, 10, (20, 160, 60)), offset=(44, 44)))
    return stack


def _rgb(stack: LayerStack) -> np.ndarray:
    return stack.composite_array()[..., :3]


@pytest.fixture(scope="module")
def tiny_pipe() -> LayerDPipeline:
    torch.manual_seed(0)
    pipe = LayerDPipeline(TopLayerMatting(channels=(4, 8, 16), image_size=32))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_training_pairs_peel_the_top_layers_first():
    stack = _design()
    pairs = peel_pairs(stack)
    layers = stack_layers(stack)
    assert len(pairs) == 3  # {bar, square}, {card}, the background alone
    np.testing.assert_allclose(pairs[0][0], _rgb(stack), atol=1e-6)
    np.testing.assert_array_equal(pairs[0][1], np.maximum(layers[2][..., 3], layers[3][..., 3]))
    np.testing.assert_array_equal(pairs[1][1], layers[1][..., 3])
    under = LayerStack(64, 64, [stack.layers[0].copy(), stack.layers[1].copy()])
    np.testing.assert_allclose(pairs[1][0], _rgb(under), atol=1e-6)
    assert not pairs[2][1].any()


def test_a_perfect_matte_gives_back_the_layers(tiny_pipe):
    """The loop's maths, without a model: each peel is handed the true top-layer alpha."""
    stack = _design()
    truth = [alpha for _, alpha in peel_pairs(stack)]

    def oracle(pipe, step, timestep, tensors):
        return {"alpha": torch.from_numpy(truth[min(step, len(truth) - 1)])[None, None]}

    output = tiny_pipe(_rgb(stack), callback_on_step_end=oracle)
    found = output.stacks[0]
    assert len(found) == 4
    scores = scores_at(layers_edit_distance(found, stack), 0)
    assert scores.alpha_iou > 0.98 and scores.rgb_l1 < 0.01
    assert recomposition(found, _rgb(stack))["recomposition_psnr"] > 60
    np.testing.assert_allclose(found.layers[0].pixels[30, 10, :3], (240, 230, 200), atol=1)
    assert output.images[0].shape == (4, 64, 64, 4)
    budget = tiny_pipe(_rgb(stack), layers=2, callback_on_step_end=oracle).stacks[0]
    assert len(budget) == 2  # one peel: bar and square, merged into one layer


def test_a_random_network_runs_end_to_end_deterministically(tiny_pipe):
    picture = np.asarray(load_split(kind="design")[1].stack.composite())
    first = tiny_pipe(picture, output_type="pil")
    again = tiny_pipe(picture, output_type="pil")
    assert len(first.stacks[0]) >= 1 and len(first.stacks[0]) <= 17
    assert [np.asarray(i).tobytes() for i in first.images[0]] == \
        [np.asarray(i).tobytes() for i in again.images[0]]
    rgb = picture[..., :3].astype(np.float32) / 255
    assert recomposition(first.stacks[0], rgb)["recomposition_psnr"] > 25
    batch = tiny_pipe([picture, picture[:40]], output_type="pt", return_dict=False)
    assert len(batch[0]) == 2 and batch[1][1].shape[1:] == (4, 40, 64)


def test_saves_loads_and_stops_like_a_diffusers_pipeline(tiny_pipe, tmp_path):
    tiny_pipe.save_pretrained(tmp_path)
    loaded = LayerDPipeline.from_pretrained(tmp_path, local_files_only=True)
    loaded.set_progress_bar_config(disable=True)
    picture = _rgb(_design())
    assert LayerDPipeline.model_cpu_offload_seq == "matting"
    for a, b in zip(stack_layers(loaded(picture).stacks[0]),
                    stack_layers(tiny_pipe(picture).stacks[0]), strict=True):
        np.testing.assert_array_equal(a, b)
    top = torch.from_numpy(peel_pairs(_design())[0][1])[None, None]
    steps = []

    def stop(pipe, step, timestep, tensors):
        steps.append(step)
        pipe._interrupt = True  # as in diffusers: this step finishes, no further one runs
        return {"alpha": top}

    stopped = tiny_pipe(picture, callback_on_step_end=stop)
    assert steps == [0] and len(stopped.stacks[0]) == 3  # the bar and the square peeled


@pytest.mark.parametrize(("options", "message"), [
    ({"layers": 0}, "between 1 and 64"), ({"threshold": 1.5}, "threshold"),
    ({"output_type": "latent"}, "no latents"),
    ({"callback_on_step_end_tensor_inputs": ["latents"]}, "may only name"),
])
def test_bad_options_are_refused_by_name(tiny_pipe, options, message):
    with pytest.raises(ValueError, match=message):
        tiny_pipe(_rgb(_design()), **options)


SMOKE = """
name = "smoke-layerd"
seed = 0
[[stages]]
name = "matting"
task = "top_layer_matting"
steps = 2
batch_size = 2
learning_rate = 1e-3
warmup_steps = 1
save_every = 2
sample_every = 2
options = { scenes = 3, channels = [4, 8] }
[[stages]]
name = "more"
task = "top_layer_matting"
steps = 1
batch_size = 2
learning_rate = 1e-3
warmup_steps = 1
save_every = 1
sample_every = 1
options = { scenes = 2, channels = [4, 8], init_from = ".", seed = 1 }
"""


def test_the_training_recipe_runs_and_exports_a_pipeline(tmp_path):
    from layerstudio.cli import main

    recipe = tmp_path / "smoke.toml"
    recipe.write_text(SMOKE)
    out = tmp_path / "run"
    assert main(["train", str(recipe), "--output", str(out)]) == 0
    assert (out / "samples" / "matting-000002.png").is_file()
    assert (out / "samples" / "more-000001.png").is_file()  # continued from "matting"
    trained = LayerDPipeline.from_pretrained(out, local_files_only=True, dtype=torch.float32)
    trained.set_progress_bar_config(disable=True)
    assert trained.matting.config.channels == [4, 8]
    assert len(trained(_rgb(_design()), layers=3).stacks[0]) <= 3


@pytest.mark.skipif(not is_available(PRESETS["tiny-layerd"]), reason="tiny-layerd not trained")
def test_the_shipped_model_beats_the_whole_picture_as_one_layer():
    studio = Studio(device="cpu")
    ours, one = [], []
    for sample in load_split(kind="design")[:8]:
        picture = np.asarray(sample.stack.composite())
        stack = studio.decompose(picture, method="tiny-layerd")
        assert stack.metadata["model"] == "tiny-layerd"
        assert stack.metadata["recomposition_psnr"] > 30
        ours.append(scores_at(layers_edit_distance(stack, sample.stack), 0).alpha_iou)
        whole = LayerStack(64, 64, [Layer("picture", picture, kind="background")])
        one.append(scores_at(layers_edit_distance(whole, sample.stack), 0).alpha_iou)
    assert np.mean(ours) > np.mean(one) + 0.1


def test_a_large_object_is_filled_from_around_it():
    """At 1024 px the ring the fill reads must outgrow the inpainting's own margin (a thin
    ring was swallowed whole, the object came back unchanged and was peeled 15 times)."""
    rng = np.random.default_rng(0)
    stripes = (np.arange(700) // 50 % 2).astype(np.float32)  # not a smooth surface: inpainted
    picture = np.zeros((700, 700, 3), np.float32)
    picture[...] = (0.0, 0.2, 0.1)
    picture[..., 0] = stripes[None, :] * 0.8
    picture[200:600, 150:500] = rng.random((400, 350, 3))
    hole = np.zeros((700, 700), bool)
    hole[199:601, 149:501] = True
    below, fills = LayerDPipeline.fill_objects(picture, [hole])
    assert fills == ["inpainted"]
    assert np.abs(below[hole][:, 1:] - (0.2, 0.1)).mean() < 0.06  # the object (0.25) is gone
