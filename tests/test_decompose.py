"""The decompose door: Studio.decompose, its method table, the classical method on designs
with known layers, the CLI and batch lines."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image, ImageDraw

from layerstudio import LayerStack
from layerstudio.cli import main
from layerstudio.datasets.generate import generate
from layerstudio.decompose import DECOMPOSITION
from layerstudio.document import Layer
from layerstudio.errors import InvalidInputError
from layerstudio.eval.layers_edit_dist import layers_edit_distance
from layerstudio.studio import GENERATION, MODE_MODELS, Studio


def _label_design(size: int = 160) -> LayerStack:
    """A gradient, a red disc, and a white label with a dark word on it: four true layers."""
    ys, xs = np.mgrid[:size, :size].astype(np.float32) / (size - 1)
    background = np.dstack([40 + 150 * xs, 90 + 60 * ys, 200 - 80 * xs,
                            np.full_like(xs, 255)]).astype(np.uint8)
    disc = Image.new("RGBA", (60, 60))
    ImageDraw.Draw(disc).ellipse((2, 2, 57, 57), fill=(220, 40, 40, 255))
    plate = Image.new("RGBA", (90, 40))
    ImageDraw.Draw(plate).rounded_rectangle((0, 0, 89, 39), radius=10, fill=(245, 245, 245, 255))
    word = Image.new("RGBA", (70, 24))
    ImageDraw.Draw(word).text((2, 2), "SALE 50", fill=(20, 20, 20, 255))
    return LayerStack(size, size, [
        Layer("background", background, kind="background"),
        Layer("disc", np.asarray(disc), offset=(12, 14), kind="object"),
        Layer("label", np.asarray(plate), offset=(55, 100), kind="object"),
        Layer("text", np.asarray(word), offset=(65, 108), kind="text")])


@pytest.fixture(scope="module")
def studio() -> Studio:
    return Studio(device="cpu")


def test_a_design_comes_back_as_its_layers(studio):
    truth = _label_design()
    stack = studio.decompose(truth.composite())
    assert stack.metadata["method"] == "classical" and stack.metadata["task"] == "decompose"
    assert stack.metadata["recomposition_psnr"] >= 40
    assert [layer.kind for layer in stack.layers] == ["background", "object", "object",
                                                      "object"]
    scores = layers_edit_distance(stack, truth)[0]
    assert scores.alpha_iou > 0.95 and scores.rgb_l1 < 0.02
    # the label lies under its text, the background is whole under everything

    def at(x: int, y: int) -> int:
        return next(i for i, layer in enumerate(stack.layers)
                    if abs(layer.offset[0] - x) <= 2 and abs(layer.offset[1] - y) <= 4)

    assert 0 < at(55, 100) < at(66, 109)
    assert (stack.layers[0].pixels[..., 3] == 255).all()


@pytest.mark.parametrize("index", range(6))
def test_generated_designs_recompose(studio, index):
    sample = generate("design", index, size=128, split="heldout")
    stack = studio.decompose(sample.stack.composite())
    assert stack.metadata["recomposition_psnr"] >= 30
    assert stack.size == sample.stack.size


def test_budget_region_and_transparent_input(studio):
    truth = _label_design()
    picture = truth.composite()
    assert len(studio.decompose(picture, layers=2)) == 2
    assert len(studio.decompose(picture, layers="auto")) == 4
    boxed = studio.decompose(picture, box="10,10,40,40")  # the disc only
    assert len(boxed) == 2 and boxed.layers[1].offset[0] < 20
    mask = np.zeros((160, 160), np.uint8)
    mask[105:120, 60:140] = 255  # the label and its word
    assert len(studio.decompose(picture, mask=mask)) == 3
    see_through = np.asarray(picture).copy()
    see_through[:10, :10, 3] = 0
    noted = studio.decompose(see_through)
    assert "flattened onto white" in noted.metadata["notes"][0]


@pytest.mark.parametrize(("options", "message"), [
    ({"method": "magic"}, "unknown decompose method 'magic'; available: classical, "
                          "tiny-layerd, effects-classical, effects, alpha, anime-classical, "
                          "anime, qwen-image-layered"),
    ({"prompt": "a poster"}, "prompt is for methods 'alpha', 'anime', 'qwen-image-layered'; "
                             "'classical' takes layers, mask, box"),
    ({"layers": 0}, "whole number from 1 to 64"),
    ({"layers": "many"}, "a number or 'auto'"),
    ({"box": "1,2,3"}, "x,y,w,h"),
    ({"box": (500, 0, 10, 10)}, "outside"),
    ({"box": (0, 0, 8, 8), "mask": np.ones((160, 160), np.uint8)}, "not both"),
    ({"mask": np.ones((10, 10), np.uint8)}, "the mask is 10x10"),
    ({"mask": np.zeros((160, 160), np.uint8)}, "selects nothing"),
])
def test_bad_requests_are_named(studio, options, message):
    with pytest.raises(InvalidInputError, match=message.replace("(", r"\(")):
        studio.decompose(_label_design().composite(), **options)


def test_the_generation_modes_live_in_one_table():
    assert tuple(GENERATION) == ("fg", "bg2fg", "fg2bg", "joint", "layers")
    assert MODE_MODELS["layers"] == "tiny-art"
    assert GENERATION.taking("boxes") == ["layers"]
    assert DECOMPOSITION.default == "classical"


def test_a_photo_without_a_flat_background_stays_whole(studio):
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    stack = studio.decompose(noise)
    assert len(stack) == 1 and stack.metadata["recomposition_psnr"] >= 45


def test_the_command_line_and_batch(tmp_path, capsys):
    picture = tmp_path / "poster.png"
    _label_design().save(picture)
    out = tmp_path / "poster.psd"
    assert main(["decompose", str(picture), "-o", str(out), "--layers", "3", "--preview"]) == 0
    assert "3 layers by classical" in capsys.readouterr().out
    assert len(LayerStack.load(out)) == 3 and out.with_suffix(".preview.png").is_file()
    with pytest.raises(SystemExit):
        main(["decompose", "--help"])
    assert "classical" in capsys.readouterr().out.split("methods:")[1]
    assert main(["decompose", str(picture), "-o", str(out), "--box", "0,0,0,0"]) == 2
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("\n".join([
        json.dumps({"task": "decompose", "image": str(picture), "name": "poster"}),
        json.dumps({"task": "decompose", "prompt": "no image"}),
        json.dumps({"task": "decompose", "image": str(picture), "boxes": "0,0,8,8"}),
        json.dumps({"task": "paint", "prompt": "x"})]), encoding="utf-8")
    assert main(["batch", str(jobs), "--out", str(tmp_path / "out"), "--format", "ora"]) == 2
    manifest = json.loads((tmp_path / "out" / "poster.json").read_text())
    assert manifest["task"] == "decompose" and manifest["metadata"]["layers"] == 4
    errors = [json.loads(line)["error"] for line in
              (tmp_path / "out" / "errors.jsonl").read_text().splitlines()]
    assert errors[0] == 'every decompose job needs a "image" string'
    assert errors[1].startswith("unknown key(s) boxes for task decompose")
    assert errors[2].startswith("task must be one of generate, decompose")


def test_design_scenes_are_layered_and_reproducible():
    first = generate("design", 4, size=96)
    again = generate("design", 4, size=96)
    assert np.array_equal(first.stack.composite_array(), again.stack.composite_array())
    kinds = {layer.kind for index in range(12)
             for layer in generate("design", index, size=96).stack.layers}
    assert {"background", "object", "text"} <= kinds


def test_one_layer_splits_into_a_group_in_place(studio, tmp_path, capsys):
    truth = _label_design()
    paper = np.full((160, 160, 4), 255, np.uint8)
    document = LayerStack(160, 160, [Layer("paper", paper, kind="background"),
                                     Layer("poster", np.asarray(truth.composite()),
                                           opacity=0.8)])
    split = studio.decompose_layer(document, "poster")
    assert [layer.group for layer in split.layers] == [()] + [("poster",)] * 4
    assert split.groups[("poster",)].opacity == 0.8
    difference = np.abs(split.composite_array() - document.composite_array())
    assert difference.mean() <= 0.5 / 255 and np.quantile(difference, 0.99) <= 2 / 255
    assert split.metadata["splits"][0]["layer"] == "poster"
    # a transparent layer: its alpha limits the parts
    sticker = np.zeros((40, 40, 4), np.uint8)
    sticker[5:35, 5:35] = (240, 200, 30, 255)
    sticker[15:25, 15:25] = (20, 20, 20, 255)
    with_sticker = LayerStack(160, 160, [Layer("paper", paper),
                                         Layer("sticker", sticker, offset=(60, 60))])
    parts = studio.decompose(with_sticker, layer="sticker")
    assert all(layer.offset[0] >= 60 for layer in parts.layers[1:])
    assert np.abs(parts.composite_array() - with_sticker.composite_array()).mean() <= 0.5 / 255
    saved = tmp_path / "doc.psd"
    document.save(saved)
    out = tmp_path / "split.psd"
    assert main(["decompose", str(saved), "--layer", "poster", "-o", str(out)]) == 0
    assert "layer 'poster' split into a group of 4 layers" in capsys.readouterr().out
    assert LayerStack.load(out).groups[("poster",)].opacity == pytest.approx(0.8, abs=0.01)
    with pytest.raises(InvalidInputError, match="not with layer"):
        studio.decompose(document, layer="poster", box="0,0,8,8")
