"""``layerstudio generate`` and the Studio API, on tiny random transparent pipelines saved as
the ``tiny-layerdiffuse`` preset folders (fg, bg2fg, fg2bg), and on the shipped ``tiny-sd``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from layerstudio import Layer, LayerStack, presets
from layerstudio.cli import main
from layerstudio.errors import Cancelled, InvalidInputError
from layerstudio.studio import Studio


@pytest.fixture(scope="module")
def random_presets(tmp_path_factory):
    """Tiny random pipelines saved as the three LayerDiffuse preset folders."""
    from diffusers import DDIMScheduler

    from layerstudio.pipelines.latent_transparency import (
        AttentionSharingAdapter,
        ConditionedTransparencyPipeline,
        JointTransparencyPipeline,
        LatentTransparencyPipeline,
    )
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
    vocab = tokenizer.get_vocab()
    folders = {}
    for name, mode in (("tiny-layerdiffuse", None), ("tiny-layerdiffuse-bg2fg", "bg2fg"),
                       ("tiny-layerdiffuse-fg2bg", "fg2bg"),
                       ("tiny-layerdiffuse-joint", "joint")):
        torch.manual_seed(0)
        parts = dict(vae=tiny_vae(), tokenizer=tokenizer,
                     text_encoder=tiny_text_encoder(len(vocab), tokenizer.bos_token_id,
                                                    tokenizer.eos_token_id),
                     scheduler=DDIMScheduler(clip_sample=False),
                     transparent_decoder=tiny_transparent_decoder(),
                     transparent_encoder=tiny_transparent_encoder())
        if mode is None:
            pipe = LatentTransparencyPipeline(unet=tiny_unet(), **parts)
        elif mode == "joint":
            unet = tiny_unet()
            pipe = JointTransparencyPipeline(
                unet=unet, attention_sharing=AttentionSharingAdapter.for_unet(unet, rank=4),
                **parts)
        else:
            pipe = ConditionedTransparencyPipeline(unet=tiny_unet(in_channels=8), mode=mode,
                                                   **parts)
        pipe.save_pretrained(folder / name)
        folders[name] = folder / name
    return folders


@pytest.fixture
def use_random_preset(monkeypatch, random_presets):
    real = presets.preset_path
    monkeypatch.setattr(presets, "preset_path",
                        lambda name: random_presets.get(name) or real(name))


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


def test_studio_reports_steps_and_stops_when_asked(use_random_preset):
    studio = Studio(device="cpu")
    seen = []
    studio.generate("a cat face", steps=3, seed=1, on_step=lambda *step: seen.append(step))
    assert seen == [(1, 3), (2, 3), (3, 3)]

    def stop_at_two(done: int, total: int) -> None:
        if done == 2:
            raise Cancelled("stopped")

    with pytest.raises(Cancelled):
        studio.generate("a cat face", steps=3, seed=1, on_step=stop_at_two)
    # the pipeline is fine afterwards: the same seed gives the same layer as before
    again = studio.generate("a cat face", steps=3, seed=1)
    first = studio.generate("a cat face", steps=3, seed=1, on_step=lambda *_: None)
    assert (again.layers[0].pixels == first.layers[0].pixels).all()
    edited = []
    studio.edit_layer(again, 0, "a dog face", strength=0.5, steps=4,
                      on_step=lambda *step: edited.append(step))
    assert edited == [(1, 2), (2, 2)]  # img2img runs strength x steps


def test_one_studio_serves_threads_in_turn(use_random_preset):
    from concurrent.futures import ThreadPoolExecutor

    studio = Studio(device="cpu")
    alone = studio.generate("a cat face", steps=2, seed=4).layers[0].pixels
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: studio.generate("a cat face", steps=2, seed=4),
                                range(4)))
    assert all((stack.layers[0].pixels == alone).all() for stack in results)


@pytest.mark.parametrize("argv, message", [
    (["   "], "prompt is empty"),
    (["x", "--size", "70"], "multiple of 16"),
    (["x", "--steps", "0"], "steps must be"),
    (["x", "--guidance", "-1"], "guidance must be"),
    (["x", "--model", "nope"], "unknown model preset"),
    (["x", "--model", "tiny-sd", "--augment"], "needs a transparent model"),
    (["x", "--mode", "bg2fg"], "needs a background image"),
    (["x", "--mode", "fg2bg", "--background", "b.png"], "takes no background"),
    (["x", "--background", "b.png"], "use mode bg2fg"),
    (["x", "--mode", "bg2fg", "--model", "tiny-layerdiffuse", "--background", "b.png"],
     "generates in mode 'fg'"),
    (["x", "--mode", "bg2fg", "--background", "missing.png"], "missing.png"),
    (["x", "--mode", "bg2fg", "--background", "b.png", "--stop-at", "1.5"], "stop_at"),
    (["x", "--foreground-prompt", "y"], "are for mode 'joint'"),
    (["x", "--boxes", "1,2,3"], "4 numbers"),
    (["x", "--boxes", "0,0,8,8", "--regions", "2"], "give one of"),
    (["x", "--mode", "layers"], "needs a layout"),
    (["x", "--mode", "fg", "--boxes", "0,0,8,8"], "boxes are for mode 'layers'"),
    (["x", "--layout", "missing.json"], "does not exist"),
])
def test_generate_rejects_bad_arguments(use_random_preset, tmp_path, capsys, monkeypatch,
                                       argv, message):
    monkeypatch.chdir(tmp_path)
    Image.new("RGB", (40, 30), "navy").save("b.png")
    out = tmp_path / "x.psd"
    assert main(["generate", *argv, "-o", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("mode", ["bg2fg", "fg2bg"])
def test_generate_around_a_given_layer(use_random_preset, tmp_path, capsys, mode):
    """The conditioned modes take the given layer from any supported file (here a PNG for the
    background, an ORA for the foreground) and write a two-layer document."""
    if mode == "bg2fg":
        given = tmp_path / "beach.png"
        Image.new("RGB", (96, 80), (240, 210, 120)).save(given)
        flag = "--background"
    else:
        given = tmp_path / "object.ora"
        sprite = LayerStack(64, 64)
        pixels = torch.zeros(40, 40, 4, dtype=torch.uint8).numpy()
        pixels[..., 0], pixels[..., 3] = 220, 255
        sprite.add(Layer("apple", pixels, offset=(12, 12)))
        sprite.save(given)
        flag = "--foreground"
    out = tmp_path / "scene.psd"
    assert main(["generate", "an ice cream on a beach", "--mode", mode, flag, str(given),
                 "-o", str(out), "--steps", "2", "--stop-at", "0.5"]) == 0
    assert "2 layers" in capsys.readouterr().out
    stack = LayerStack.load(out)
    assert [layer.name for layer in stack.layers] == ["background", "foreground"]
    assert stack.metadata["model"] == f"tiny-layerdiffuse-{mode}"
    assert stack.metadata["stop_at"] == 0.5
    background = stack.layers[0].pixels
    assert (background[..., 3] == 255).all()
    if mode == "bg2fg":  # the given background, resized to the output, is kept as it was
        assert (abs(background[..., :3].astype(int) - (240, 210, 120)) <= 1).all()
    else:  # the given foreground is kept, in place
        front = stack.layers[1]
        assert front.offset == (12, 12) and (front.pixels[..., 0] == 220).all()


def test_generate_joint_layers_from_text(use_random_preset, tmp_path, capsys):
    out = tmp_path / "scene.ora"
    assert main(["generate", "a turtle on a blue to red gradient", "--mode", "joint",
                 "-o", str(out), "--steps", "2"]) == 0
    assert "3 layers" in capsys.readouterr().out
    stack = LayerStack.load(out)
    assert [layer.name for layer in stack.layers] == ["background", "foreground",
                                                      "blend (as generated)"]
    assert [layer.visible for layer in stack.layers] == [True, True, False]
    assert stack.metadata["foreground_prompt"] == "a turtle"
    assert stack.metadata["background_prompt"] == "a blue to red gradient"
    assert main(["generate", "a turtle", "--mode", "joint", "--background-prompt", "grass",
                 "-o", str(out), "--steps", "1"]) == 0
    assert LayerStack.load(out).metadata["background_prompt"] == "grass"


@pytest.mark.parametrize("prompt, given, expected", [
    ("a cat on a mat", (None, None), ("a cat", "a mat")),
    ("a cat on a mat on a floor", (None, None), ("a cat on a mat", "a floor")),
    ("a cat", (None, None), ("a cat", "")),
    ("a cat on a mat", ("a dog", None), ("a dog", "a mat")),
    ("on a mat", (None, "grass"), ("on a mat", "grass")),
])
def test_layer_prompts_split_x_on_y(prompt, given, expected):
    from layerstudio.studio import layer_prompts

    assert layer_prompts(prompt, *given) == expected


def test_generate_with_an_rgb_model_gives_one_opaque_layer(tmp_path):
    stack = Studio(device="cpu").generate("a cat face", model="tiny-sd", steps=4)
    assert len(stack) == 1 and stack.layers[0].kind == "background"
    assert (stack.layers[0].pixels[..., 3] == 255).all()


def _poster() -> LayerStack:
    from layerstudio.blend import BlendMode

    stack = LayerStack(64, 64)
    sky = np.zeros((64, 64, 4), np.uint8)
    sky[...] = (120, 180, 240, 255)
    stack.add(Layer("sky", sky, kind="background"))
    square = np.zeros((30, 30, 4), np.uint8)
    square[...] = (220, 40, 40, 255)
    stack.add(Layer("square", square, offset=(20, 18), opacity=0.7,
                    blend_mode=BlendMode.MULTIPLY, group=("Things",)))
    dot = np.zeros((6, 6, 4), np.uint8)
    dot[...] = (0, 0, 0, 255)
    stack.add(Layer("dot", dot, offset=(2, 2)))
    return stack


def _on_canvas(stack: LayerStack, layer: Layer) -> np.ndarray:
    alone = layer.copy(opacity=1.0, blend_mode="normal", group=(), visible=True)
    return np.asarray(LayerStack(stack.width, stack.height, [alone]).composite())


def test_edit_layer_changes_one_layer_inside_the_mask(use_random_preset, tmp_path, capsys):
    poster = _poster()
    path = tmp_path / "poster.psd"
    poster.save(path)
    mask = np.zeros((64, 64), np.uint8)
    mask[:, :32] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    out = tmp_path / "edited.psd"
    assert main(["edit", str(path), "a blue square", "--layer", "square", "--mask",
                 str(tmp_path / "mask.png"), "--strength", "0.8", "--steps", "3",
                 "-o", str(out)]) == 0
    assert "layer 'square' regenerated" in capsys.readouterr().out
    edited = LayerStack.load(out)
    before, after = poster["square"], edited["square"]
    assert after.opacity == pytest.approx(before.opacity, abs=1 / 255)  # PSD: 8-bit opacity
    assert (after.blend_mode, after.group) == (before.blend_mode, before.group)
    assert after.provenance["edit"]["prompt"] == "a blue square"
    for name in ("sky", "dot"):  # the other layers are untouched
        assert np.array_equal(edited[name].pixels, poster[name].pixels)
        assert edited[name].offset == poster[name].offset
    old, new = _on_canvas(poster, before), _on_canvas(edited, after)
    assert np.array_equal(new[:, 40:], old[:, 40:])  # outside the mask: exactly as before
    assert not np.array_equal(new[:, :28], old[:, :28])


@pytest.mark.parametrize("kwargs, message", [
    ({"layer": "nope"}, "no layer named"),
    ({"strength": 0.0}, "strength"),
    ({"mask": np.zeros((10, 10), np.uint8)}, "the mask is 10x10"),
    ({"model": "tiny-layerdiffuse-bg2fg"}, "bg2fg model"),
    ({"prompt": " "}, "prompt is empty"),
])
def test_edit_layer_rejects_bad_input(use_random_preset, kwargs, message):
    options = {"layer": "square", "prompt": "a cat", **kwargs}
    with pytest.raises(InvalidInputError, match=message):
        Studio(device="cpu").edit_layer(_poster(), options.pop("layer"), options.pop("prompt"),
                                        steps=1, **options)


def test_ship_stores_shared_components_once(random_presets, tmp_path, monkeypatch):
    """A run whose VAE, tokenizer and transparent codec are copies of tiny-layerdiffuse's
    ships only its own parts; loading puts the pipeline back together, same outputs."""
    import json
    import shutil

    from layerstudio.train.ship import ship

    run = tmp_path / "run"
    shutil.copytree(random_presets["tiny-layerdiffuse-bg2fg"], run)
    for part in ("vae", "tokenizer", "transparent_encoder", "transparent_decoder"):
        shutil.rmtree(run / part)
        shutil.copytree(random_presets["tiny-layerdiffuse"] / part, run / part)
    folders = {"tiny-layerdiffuse": random_presets["tiny-layerdiffuse"],
               "tiny-layerdiffuse-bg2fg": tmp_path / "shipped" / "bg2fg"}
    real = presets.preset_path
    monkeypatch.setattr(presets, "preset_path", lambda name: folders.get(name) or real(name))
    shared = ship(run, "tiny-layerdiffuse-bg2fg")
    assert {"vae", "tokenizer", "transparent_encoder", "transparent_decoder"} <= set(shared)
    assert set(shared.values()) == {"tiny-layerdiffuse"} and "unet" not in shared
    target = folders["tiny-layerdiffuse-bg2fg"]
    assert not (target / "vae").exists() and (target / "unet").is_dir()
    assert json.loads((target / "shared.json").read_text()) == shared
    from layerstudio.pipelines.latent_transparency import ConditionedTransparencyPipeline

    def run_once(pipe):
        pipe.set_progress_bar_config(disable=True)
        return pipe("a cat", condition=np.full((64, 64, 3), 90, np.uint8), output_type="np",
                    num_inference_steps=2, generator=torch.Generator().manual_seed(0)).images

    shipped = presets.load_preset("tiny-layerdiffuse-bg2fg")
    direct = ConditionedTransparencyPipeline.from_pretrained(run, dtype=torch.float32)
    assert np.allclose(run_once(shipped), run_once(direct))
    with pytest.raises(InvalidInputError, match="no trained pipeline"):
        ship(tmp_path, "tiny-layerdiffuse-bg2fg")


def test_reshipping_a_base_with_a_new_vae_keeps_its_borrowers_working(random_presets,
                                                                       tmp_path, monkeypatch):
    """A retrained base VAE must not slide under a preset trained on the old one: the
    borrower gets its own copy of the old VAE first and still gives the same pictures."""
    import json
    import shutil

    from layerstudio.tiny_models import tiny_vae
    from layerstudio.train.ship import ship

    folders = {"tiny-layerdiffuse": tmp_path / "base",
               "tiny-layerdiffuse-bg2fg": tmp_path / "bg2fg"}
    for name, folder in folders.items():
        shutil.copytree(random_presets[name], folder)
    shutil.rmtree(folders["tiny-layerdiffuse-bg2fg"] / "vae")
    (folders["tiny-layerdiffuse-bg2fg"] / "shared.json").write_text(
        json.dumps({"vae": "tiny-layerdiffuse"}))
    monkeypatch.setattr(presets, "preset_path",
                        lambda name: folders.get(name, tmp_path / "absent" / name))

    def picture():
        pipe = presets.load_preset("tiny-layerdiffuse-bg2fg")
        pipe.set_progress_bar_config(disable=True)
        return pipe("a cat", condition=np.full((64, 64, 3), 90, np.uint8), output_type="np",
                    num_inference_steps=2, generator=torch.Generator().manual_seed(0)).images

    before = picture()
    run = tmp_path / "run"
    shutil.copytree(random_presets["tiny-layerdiffuse"], run)
    torch.manual_seed(7)
    tiny_vae().save_pretrained(run / "vae")
    ship(run, "tiny-layerdiffuse")
    borrower = folders["tiny-layerdiffuse-bg2fg"]
    assert (borrower / "vae").is_dir() and not (borrower / "shared.json").exists()
    assert np.allclose(picture(), before)
    from layerstudio.train.ship import _same_folder

    assert _same_folder(borrower / "vae", random_presets["tiny-layerdiffuse"] / "vae")
    assert not _same_folder(borrower / "vae", folders["tiny-layerdiffuse"] / "vae")


def test_notes_come_after_validation_and_travel_with_the_document(tmp_path, capsys):
    """A prompt outside the vocabulary and a size the model was not trained at give notes,
    after the run (a bad option gives its error and no note), kept in the metadata for the
    UI and batch; a non-generator model says what it is."""
    out = tmp_path / "big.png"
    assert main(["generate", "a red apple", "--size", "256", "--steps", "2", "-o",
                 str(out)]) == 0
    err = capsys.readouterr().err
    assert "note: tiny-layerdiffuse was trained on 128 emoji prompts" in err
    assert "trained at 64 px; at 256 px expect noise" in err
    assert main(["generate", "a red apple", "--steps", "0", "-o", str(out)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("error: steps must be")
    assert main(["generate", "an apple", "--model", "tiny-judge", "-o", str(out)]) == 2
    assert "'tiny-judge' is not a generator" in capsys.readouterr().err
    stack = Studio(device="cpu").generate("a red apple", steps=2)
    assert any("128 emoji prompts" in note for note in stack.metadata["notes"])
    assert "notes" not in Studio(device="cpu").generate("an ice cream", steps=2).metadata


def test_formats_without_alpha_say_so_and_flatten_over_white(tmp_path, capsys):
    stack = LayerStack(4, 2, layers=[Layer("half", np.concatenate(
        [np.full((2, 2, 4), (200, 0, 0, 255), np.uint8), np.zeros((2, 2, 4), np.uint8)],
        axis=1))])
    source = stack.save(tmp_path / "half.png")
    assert main(["flatten", str(source), str(tmp_path / "flat.jpg")]) == 0
    assert "JPEG has no transparency" in capsys.readouterr().err
    pixels = np.asarray(Image.open(tmp_path / "flat.jpg").convert("RGB"), int)
    assert (pixels[:, 2:] > 245).all()  # white where it was transparent, not black
    assert main(["flatten", str(source), str(tmp_path / "flat.webp")]) == 0
    assert "warning" not in capsys.readouterr().err


def test_a_non_square_background_keeps_its_aspect(use_random_preset, tmp_path):
    from layerstudio.imaging import fit_square

    wide = np.zeros((384, 512, 4), np.uint8)
    wide[..., 3] = 255
    wide[:, :64, 0] = 255  # a red strip on the left edge: cropped away by the centre crop
    path = tmp_path / "wide.png"
    Image.fromarray(wide).save(path)
    stack = Studio(device="cpu").generate("an ice cream", mode="bg2fg", background=path,
                                          steps=2)
    assert any("512x384 background was centre-cropped to the 64x64" in note
               for note in stack.metadata["notes"])
    padded = fit_square(wide, 64, "pad")
    assert padded.shape == (64, 64, 4)
    assert (padded[:4, :, 3] == 0).all() and (padded[32, :, 3] == 255).all()
    assert (fit_square(wide, 64, "crop")[..., 0] == 0).all()  # the strip is outside the crop
    with pytest.raises(InvalidInputError, match="fit must be one of"):
        fit_square(wide, 64, "zoom")
    with pytest.raises(InvalidInputError, match="fit is for a given"):
        Studio(device="cpu").generate("an ice cream", fit="crop")


def test_edit_without_a_layer_changes_the_top_visible_one(use_random_preset, tmp_path, capsys):
    poster = _poster()
    poster.add(Layer("reference", np.full((64, 64, 4), 90, np.uint8), visible=False))
    path = poster.save(tmp_path / "poster.psd")
    assert main(["edit", str(path), "a blue square", "--steps", "2", "-o",
                 str(tmp_path / "out.psd")]) == 0
    top = [layer.name for layer in poster if layer.visible][-1]
    assert f"layer {top!r} regenerated" in capsys.readouterr().out
    edited = LayerStack.load(tmp_path / "out.psd")
    assert np.array_equal(edited["reference"].pixels, poster["reference"].pixels)


def test_a_sketch_of_any_size_is_scaled_to_the_canvas(tmp_path):
    from layerstudio.studio import resolve_boxes

    sketch = np.full((256, 256, 3), 255, np.uint8)
    sketch[64:128, 32:96] = (255, 0, 0)
    Image.fromarray(sketch).save(tmp_path / "sketch.png")
    assert resolve_boxes(str(tmp_path / "sketch.png"), 64) == [(8, 16, 16, 16)]
