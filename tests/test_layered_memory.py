"""Layered editing memory (issue 22): MQD attention, BCG, removal, the memory file, the
document it becomes, and the session API, on tiny random SD 1.5-, SDXL- and PixArt-shaped
backbones and the shipped tiny-sd."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

from layerstudio.errors import InvalidInputError
from layerstudio.pipelines.layered_memory import (
    EditMemory,
    LayeredMemoryEditPipeline,
    memory_stack,
)
from layerstudio.pipelines.layered_memory.regions import (
    RegionalCrossAttention,
    RegionPlan,
    ownership,
)
from layerstudio.tiny_models import (
    tiny_sdxl_components,
    tiny_text_encoder,
    tiny_unet,
    tiny_vae,
)

STEPS = 4


def _sd(tokenizer) -> LayeredMemoryEditPipeline:
    torch.manual_seed(0)
    vocab = tokenizer.get_vocab()
    pipe = LayeredMemoryEditPipeline(
        vae=tiny_vae(), tokenizer=tokenizer, unet=tiny_unet(),
        text_encoder=tiny_text_encoder(len(vocab), tokenizer.bos_token_id,
                                       tokenizer.eos_token_id),
        scheduler=DDIMScheduler(clip_sample=False))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _pixart(tokenizer) -> LayeredMemoryEditPipeline:
    """PixArt-alpha's shape: a ``PixArtTransformer2DModel`` reading a T5 encoder's tokens
    (and mask), learned variance, DPM-Solver."""
    from diffusers import DPMSolverMultistepScheduler, PixArtTransformer2DModel
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(0)
    encoder = T5EncoderModel(T5Config(vocab_size=len(tokenizer.get_vocab()), d_model=32,
                                      d_kv=8, d_ff=64, num_layers=1, num_heads=4))
    transformer = PixArtTransformer2DModel(
        sample_size=16, num_layers=2, attention_head_dim=8, num_attention_heads=2,
        caption_channels=32, in_channels=4, out_channels=8, cross_attention_dim=16,
        patch_size=2, norm_type="ada_norm_single", num_embeds_ada_norm=1000)
    pipe = LayeredMemoryEditPipeline(vae=tiny_vae(), text_encoder=encoder, tokenizer=tokenizer,
                                     transformer=transformer,
                                     scheduler=DPMSolverMultistepScheduler())
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _sdxl(tokenizer) -> LayeredMemoryEditPipeline:
    torch.manual_seed(0)
    parts = tiny_sdxl_components(tokenizer)
    pipe = LayeredMemoryEditPipeline(**parts)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def sd_pipe(tokenizer):
    return _sd(tokenizer)


def _box(x: int, y: int, w: int, h: int, size: int = 64) -> np.ndarray:
    mask = np.zeros((size, size), np.float32)
    mask[y:y + h, x:x + w] = 1
    return mask


def _picture(seed: int = 0, size: int = 64) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:size, 0:size]
    base = np.dstack([xs * 3, ys * 3, 200 - xs - ys]).clip(0, 255)
    return (base + rng.integers(0, 20, (size, size, 3))).clip(0, 255).astype(np.uint8)


def _session(pipe, **options) -> list[EditMemory]:
    """Background (a picture), add at the top left, add at the bottom right: the memories."""
    settings = {"num_inference_steps": STEPS, "guidance_scale": 3.0}
    call = {**settings, **options}
    first = pipe(image=_picture(), generator=torch.Generator().manual_seed(0),
                 **settings).memories[0]
    second = pipe("an ice cream", mask=_box(0, 0, 32, 32), memory=first,
                  generator=torch.Generator().manual_seed(1), **call).memories[0]
    third = pipe("a cloud", mask=_box(24, 24, 40, 40), memory=second,
                 generator=torch.Generator().manual_seed(2), **call).memories[0]
    return [first, second, third]


# --- regions ------------------------------------------------------------------------------

def test_ownership_gives_each_pixel_to_the_topmost_mask():
    low = torch.from_numpy(_box(0, 0, 40, 40))
    high = torch.from_numpy(_box(20, 20, 40, 40))
    owned = ownership([low, high])
    assert torch.allclose(owned.sum(0), torch.ones(64, 64))
    assert owned[2, 30, 30] == 1 and owned[1, 30, 30] == 0  # the later mask occludes
    assert owned[1, 5, 5] == 1 and owned[0, 62, 2] == 1


def test_regional_attention_is_attention_masked_to_each_regions_prompt():
    torch.manual_seed(0)
    attn = Attention(query_dim=16, cross_attention_dim=8, heads=2, dim_head=8)
    hidden = torch.randn(1, 16, 16)  # a 4 x 4 feature map
    text = torch.randn(1, 3 * 5, 8)  # three blocks of five tokens
    weights = torch.zeros(3, 4, 4)
    weights[0, :2] = 1
    weights[1, 2:, :2] = 1
    weights[2, 2:, 2:] = 1
    regional = RegionalCrossAttention(AttnProcessor2_0(), RegionPlan(weights, 5))
    got = regional(attn, hidden, text)
    # the same as attention where each query may only see its own block's keys
    allowed = torch.zeros(16, 15, dtype=torch.bool)
    owner = weights.reshape(3, 16).argmax(0)
    for position, block in enumerate(owner.tolist()):
        allowed[position, block * 5:(block + 1) * 5] = True
    bias = torch.zeros(1, 16, 15).masked_fill(~allowed, float("-inf"))
    q = attn.to_q(hidden).view(1, 16, 2, 8).transpose(1, 2)
    k = attn.to_k(text).view(1, 15, 2, 8).transpose(1, 2)
    v = attn.to_v(text).view(1, 15, 2, 8).transpose(1, 2)
    out = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=bias[:, None])
    expected = attn.to_out[0](out.transpose(1, 2).reshape(1, 16, 16))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_a_plan_finds_every_downsampled_grid_and_refuses_a_wrong_one():
    plan = RegionPlan(torch.rand(2, 16, 16), 4)
    for length in (256, 64, 16, 4):
        assert plan.weights_for(length, torch.zeros(1)).shape == (2, 1, length, 1)
    with pytest.raises(ValueError, match="positions"):
        plan.weights_for(17, torch.zeros(1))


# --- the pipeline ------------------------------------------------------------------------------

def test_background_consistency_keeps_every_latent_outside_the_mask(sd_pipe):
    first, second, _ = _session(sd_pipe, release=0.0)
    outside = torch.ones(16, 16, dtype=torch.bool)
    outside[:8, :8] = False  # the 32 px box is 8 latents
    torch.testing.assert_close(second.latest.trajectory[1:, :, outside],
                               first.latest.trajectory[1:, :, outside])
    assert not torch.allclose(second.latest.final[:, :, :8, :8], first.latest.final[:, :, :8, :8])


def test_released_steps_run_free_and_plain_inpainting_re_encodes(sd_pipe):
    first, kept, _ = _session(sd_pipe, release=0.0)
    _, released, _ = _session(sd_pipe, release=0.5, release_band=None)
    _, banded, _ = _session(sd_pipe, release=0.5, release_band=2)
    _, inpainted, _ = _session(sd_pipe, background_consistency=False)
    outside = (slice(None), slice(None), slice(10, 16), slice(10, 16))
    band = (slice(None), slice(None), slice(0, 8), slice(8, 10))  # 2 latents right of the box
    before = first.latest.trajectory
    # guided steps match, the released half of the schedule does not (the paper's release)
    torch.testing.assert_close(released.latest.trajectory[1:3][outside], before[1:3][outside])
    assert not torch.allclose(released.latest.final[outside], before[-1:][outside])
    # released in a band only: the band runs free, the rest is kept to the end
    torch.testing.assert_close(banded.latest.trajectory[1:][outside], before[1:][outside])
    assert not torch.allclose(banded.latest.final[band], before[-1:][band])
    assert not torch.allclose(inpainted.latest.trajectory[1:2][outside], before[1:2][outside])
    assert torch.allclose(kept.latest.final[outside], before[-1:][outside])


def test_multi_query_changes_what_the_masked_region_reads(sd_pipe):
    with_mqd = _session(sd_pipe, release=0.0)[2].latest.image
    without = _session(sd_pipe, release=0.0, multi_query=False)[2].latest.image
    assert np.abs(with_mqd.astype(int) - without.astype(int)).max() > 0


def test_removal_starts_from_the_trajectory_before_the_edit(sd_pipe):
    first, _, third = _session(sd_pipe, release=0.0)
    removed = sd_pipe(memory=third, operation="remove", layer=1, num_inference_steps=STEPS,
                      guidance_scale=3.0, generator=torch.Generator().manual_seed(3),
                      remove_from=0.5).memories[0]
    owned = ownership([torch.from_numpy(_box(0, 0, 32, 32)),
                       torch.from_numpy(_box(24, 24, 40, 40))])[1]
    inside = owned[::4, ::4] > 0.99  # layer 1's own latents (not under layer 2)
    path = removed.latest.trajectory
    torch.testing.assert_close(path[:3, :, inside], first.latest.trajectory[:3, :, inside])
    torch.testing.assert_close(path[:3, :, ~inside], third.latest.trajectory[:3, :, ~inside],
                               atol=1e-3, rtol=0)
    assert [layer.number for layer in removed.live_layers()] == [2]
    assert removed.history()[-1] == "3. remove layer 1"


def test_a_replace_keeps_the_layer_number_and_mask_and_changes_its_prompt(sd_pipe):
    third = _session(sd_pipe)[2]
    replaced = sd_pipe("a cat", memory=third, operation="replace", layer=1,
                       num_inference_steps=STEPS, guidance_scale=3.0,
                       generator=torch.Generator().manual_seed(4)).memories[0]
    layers = replaced.live_layers()
    assert [(one.number, one.prompt) for one in layers] == [(1, "a cat"), (2, "a cloud")]
    assert torch.equal(layers[0].mask, third.live_layers()[0].mask)
    # it repainted what layer 1 shows, not what layer 2 covers
    region = replaced.latest.region
    assert region[4, 4] == 1 and region[40, 40] == 0


@pytest.mark.parametrize("build", [_pixart, _sdxl], ids=["pixart", "sdxl"])
def test_other_backbone_shapes_edit_and_keep_the_background(build, tokenizer):
    pipe = build(tokenizer)
    first, second, third = _session(pipe, release=0.0)
    outside = torch.ones(16, 16, dtype=torch.bool)
    outside[:8, :8] = False
    torch.testing.assert_close(second.latest.trajectory[1:, :, outside],
                               first.latest.trajectory[1:, :, outside])
    removed = pipe(memory=third, operation="remove", layer=2, num_inference_steps=STEPS,
                   guidance_scale=3.0).memories[0]
    assert [layer.number for layer in removed.live_layers()] == [1]
    assert np.isfinite(removed.latest.image).all()


def test_bad_calls_are_clear(sd_pipe):
    first = _session(sd_pipe)[0]
    with pytest.raises(ValueError, match="mask"):
        sd_pipe("a cat", memory=first, num_inference_steps=STEPS)
    with pytest.raises(ValueError, match="empty"):
        sd_pipe("a cat", memory=first, mask=np.zeros((64, 64)), num_inference_steps=STEPS)
    with pytest.raises(ValueError, match="same"):
        sd_pipe("a cat", memory=first, mask=_box(0, 0, 8, 8), num_inference_steps=STEPS + 1)
    with pytest.raises(ValueError, match="no prompt"):
        sd_pipe("a cat", memory=first, operation="remove", layer=1, num_inference_steps=STEPS)
    with pytest.raises(InvalidInputError, match="no edit"):
        sd_pipe(memory=first, operation="remove", layer=1, num_inference_steps=STEPS)
    with pytest.raises(ValueError, match="background step"):
        sd_pipe("a cat", operation="add", mask=_box(0, 0, 8, 8))


# --- the memory ------------------------------------------------------------------------------

def test_undo_redo_and_a_new_edit_after_undo(sd_pipe):
    third = _session(sd_pipe)[2]
    back = third.undo()
    assert [layer.number for layer in back.live_layers()] == [1] and back.can_redo
    assert back.history()[-1].endswith("(undone)")
    assert back.redo().cursor == third.cursor
    again = sd_pipe("a cat", mask=_box(30, 0, 30, 30), memory=back, num_inference_steps=STEPS,
                    guidance_scale=3.0).memories[0]
    assert len(again.steps) == 3 and not again.can_redo  # the undone step is gone
    with pytest.raises(InvalidInputError, match="undo"):
        third.undo().undo().undo()


def test_the_memory_file_round_trips_exactly(sd_pipe, tmp_path):
    third = _session(sd_pipe)[2].undo()
    path = third.save(tmp_path / "session.memory.safetensors")
    loaded = EditMemory.load(path)
    assert loaded.history() == third.history() and loaded.cursor == third.cursor
    assert loaded.settings == third.settings
    for ours, theirs in zip(loaded.steps, third.steps, strict=True):
        assert torch.equal(ours.trajectory, theirs.trajectory)
        assert np.array_equal(ours.image, theirs.image)
    assert np.array_equal(memory_stack(loaded).composite_array(),
                          memory_stack(third).composite_array())
    # an edit continues from a reloaded memory as from the original
    options = {"mask": _box(40, 0, 24, 24), "num_inference_steps": STEPS,
               "guidance_scale": 3.0}
    made = [sd_pipe("a cat", memory=memory, generator=torch.Generator().manual_seed(9),
                    **options).memories[0].latest.image for memory in (loaded, third)]
    assert np.array_equal(*made)


def test_other_files_are_refused(tmp_path):
    from safetensors.torch import save_file

    save_file({"weight": torch.zeros(2)}, tmp_path / "model.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a file at all")
    for name in ("model.safetensors", "junk.safetensors", "missing.safetensors"):
        with pytest.raises(InvalidInputError):
            EditMemory.load(tmp_path / name)


# --- the document ------------------------------------------------------------------------------

def test_the_document_is_the_edits_over_the_untouched_background(sd_pipe):
    third = _session(sd_pipe, release=0.25)[2]
    stack = memory_stack(third)
    assert [layer.name for layer in stack.layers] == ["background", "an ice cream", "a cloud"]
    assert [layer.provenance["edit"] for layer in stack.layers] == [0, 1, 2]
    composite = np.rint(stack.composite_array()[..., :3] * 255)
    # outside both (grown) boxes: the given picture itself, not the VAE's version of it
    assert np.abs(composite[4:20, 50:60] - _picture()[4:20, 50:60]).max() <= 1
    # where the top layer shows, the edited picture; where it does not, the document below
    shows = np.zeros((64, 64), bool)
    cloud = stack.layers[2]
    x, y = cloud.offset
    shows[y:y + cloud.height, x:x + cloud.width] = cloud.pixels[..., 3] > 0
    assert shows.any() and not shows.all()
    assert np.abs(composite[shows] - third.latest.image[shows]).max() <= 2
    below = np.rint(memory_stack(third.undo()).composite_array()[..., :3] * 255)
    assert np.abs(composite[~shows] - below[~shows]).max() <= 1
    # each edit layer stays within its box grown by a few pixels
    assert cloud.offset[0] >= 24 - 2 and cloud.offset[1] >= 24 - 2


def test_removing_a_layer_drops_it_and_shows_what_it_covered(sd_pipe):
    third = _session(sd_pipe)[2]
    removed = sd_pipe(memory=third, operation="remove", layer=1, num_inference_steps=STEPS,
                      guidance_scale=3.0).memories[0]
    stack = memory_stack(removed)
    assert [layer.name for layer in stack.layers] == ["background", "a cloud"]
    composite = np.rint(stack.composite_array()[..., :3] * 255)
    assert np.abs(composite[2:20, 2:20] - _picture()[2:20, 2:20]).max() <= 1


# --- the session on the shipped model: API, CLI, batch ---------------------------------------

@pytest.fixture(scope="module")
def studio():
    from layerstudio.studio import Studio

    return Studio(device="cpu")


@pytest.fixture(scope="module")
def picture_file(tmp_path_factory):
    from PIL import Image

    folder = tmp_path_factory.mktemp("edit-session")
    Image.fromarray(np.full((64, 64, 3), (240, 232, 210), np.uint8)).save(folder / "bg.png")
    Image.fromarray((_box(30, 30, 30, 30) * 255).astype(np.uint8)).save(folder / "mask.png")
    return folder


def test_a_session_adds_adds_removes_and_reopens(studio, picture_file, tmp_path):
    session = studio.edit_session(picture_file / "bg.png", seed=1, steps=8)
    session.add("a red apple", box=(4, 4, 36, 36))
    session.add("a cat", mask=picture_file / "mask.png")
    stack = session.remove(1)
    assert [layer.name for layer in stack.layers] == ["background", "a cat"]
    assert session.layers == [(2, "a cat")]
    document, memory = session.save(tmp_path / "scene.psd")
    assert memory.name == "scene.memory.safetensors"
    again = studio.open_edit_session(document)
    assert again.history == session.history
    assert np.array_equal(again.stack.composite_array(), stack.composite_array())
    assert [layer.name for layer in again.undo().layers] == ["background", "a red apple",
                                                             "a cat"]
    from layerstudio.document import LayerStack

    saved = LayerStack.load(document)
    assert [layer.name for layer in saved.layers] == ["background", "a cat"]
    assert saved.metadata.get("task") in (None, "edit-session")


def test_session_errors_name_the_problem(studio, picture_file):
    session = studio.edit_session(picture_file / "bg.png", steps=4)
    with pytest.raises(InvalidInputError, match="outside"):
        session.add("a cat", box=(100, 100, 10, 10))
    with pytest.raises(InvalidInputError, match="mask or a box"):
        session.add("a cat")
    with pytest.raises(InvalidInputError, match="empty"):
        session.add("  ", box=(0, 0, 10, 10))
    with pytest.raises(InvalidInputError, match="no edit"):
        session.remove(3)
    with pytest.raises(InvalidInputError, match="nothing to undo"):
        session.undo()
    with pytest.raises(InvalidInputError, match="opaque text-to-image"):
        studio.edit_session("a cat", model="tiny-layerdiffuse")
    with pytest.raises(InvalidInputError, match="joint attention"):
        studio.edit_session("a cat", model="tiny-dit")  # FLUX-shaped: no cross-attention
    with pytest.raises(InvalidInputError, match="does not exist"):
        studio.edit_session("missing.png")
    with pytest.raises(InvalidInputError, match="edit 1: add takes no prompt"):
        session.apply([{"add": "a cat", "prompt": "x", "box": [0, 0, 9, 9]}])


def test_the_cli_runs_a_script_and_resumes_it(picture_file, tmp_path, capsys):
    import json

    from layerstudio.cli import main

    script = tmp_path / "script.json"
    script.write_text(json.dumps({"background": str(picture_file / "bg.png"), "edits": [
        {"add": "a red apple", "box": [4, 4, 36, 36]},
        {"add": "a cat", "mask": str(picture_file / "mask.png")},
        {"remove": 1}]}))
    out = tmp_path / "out.psd"
    assert main(["edit-session", str(script), "-o", str(out), "--steps", "6", "--seed",
                 "2"]) == 0
    printed = capsys.readouterr().out
    assert "3. remove layer 1" in printed and "out.memory.safetensors" in printed
    more = tmp_path / "more.json"
    more.write_text(json.dumps({"edits": [{"undo": True}, {"replace": 2, "prompt": "a dog"}]}))
    assert main(["edit-session", str(more), "--resume", str(out), "-o",
                 str(tmp_path / "more.zip")]) == 0
    from layerstudio.document import LayerStack

    stack = LayerStack.load(tmp_path / "more.zip")
    assert [layer.name for layer in stack.layers] == ["background", "a red apple", "a dog"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"background": "x.png"}))
    assert main(["edit-session", str(bad), "-o", str(tmp_path / "bad.psd")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "bad.psd").exists()


def test_batch_runs_edit_sessions(picture_file, tmp_path):
    import json

    from layerstudio.batch import run_batch

    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(json.dumps({"task": "edit-session", "name": "apple",
                                "background": str(picture_file / "bg.png"), "steps": 4,
                                "edits": [{"add": "a red apple", "box": [4, 4, 36, 36]}]})
                    + "\n" + json.dumps({"task": "edit-session", "background": "a cat",
                                         "edits": [{"remove": 1}]}) + "\n")
    summary = run_batch(jobs, tmp_path / "out", ("zip",))
    assert (summary.done, summary.failed) == (1, 1)
    manifest = json.loads((tmp_path / "out" / "apple.json").read_text())
    assert manifest["layers"] == ["background", "a red apple"]
    assert "edit 1" in (tmp_path / "out" / "errors.jsonl").read_text()


def test_a_solved_layer_keeps_the_object_and_drops_the_card_and_specks():
    """An edit that painted a white card with a red disc (and one stray dark pixel) on a
    pale blue document whose decoded picture is whiter: the layer is the disc, recomposing
    exactly there; the card, the speck and everything outside the region stay out."""
    from scipy import ndimage

    from layerstudio.pipelines.layered_memory.layers import solved_layer

    below = np.full((64, 64, 3), (0.85, 0.88, 0.95), np.float32)
    previous = below * 0.5 + 0.5  # the model's picture of the document: whiter
    picture = previous.copy()
    picture[8:40, 8:40] = 1.0  # the card
    ys, xs = np.mgrid[0:64, 0:64]
    disc = (ys - 24) ** 2 + (xs - 24) ** 2 < 10**2
    picture[disc] = (0.9, 0.1, 0.1)
    picture[36, 12] = 0.0  # a speck on the card
    picture[56, 56] = 0.0  # a change outside the region
    layer = solved_layer(picture, previous, below, torch.from_numpy(_box(8, 8, 32, 32)))
    assert (layer[disc, 3] == 1).all()
    np.testing.assert_allclose(layer[disc, :3], picture[disc], atol=1e-5)
    card = np.zeros((64, 64), bool)
    card[8:40, 8:40] = True
    card &= ~ndimage.binary_dilation(disc, iterations=2)
    assert layer[card, 3].max() == 0 and layer[56, 56, 3] == 0
