"""Procedural datasets: determinism, exact ground truth, boxes, held-out partition."""

from __future__ import annotations

import numpy as np
import pytest

from layerstudio.datasets import GENERATORS, generate
from layerstudio.datasets.assets.emoji import catalog, emoji_for_split, render_emoji, split_of
from layerstudio.datasets.scenes.alpha_blend import SUBTASKS
from layerstudio.datasets.scenes.effects import EFFECTS

KINDS = list(GENERATORS)


@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_same_bytes_and_different_seeds_differ(kind):
    a = generate(kind, 3, seed=7, size=64)
    b = generate(kind, 3, seed=7, size=64)
    c = generate(kind, 4, seed=7, size=64)
    assert a.caption == b.caption and a.boxes == b.boxes and a.meta == b.meta
    assert [layer.pixels.tobytes() for layer in a.stack] == [
        layer.pixels.tobytes() for layer in b.stack]
    assert a.composite().tobytes() != c.composite().tobytes()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("index", range(6))
def test_boxes_contain_their_layers_alpha(kind, index):
    sample = generate(kind, index, size=96)
    assert len(sample.boxes) == len(sample.stack.layers)
    for layer, (x0, y0, x1, y1) in zip(sample.stack.layers, sample.boxes, strict=True):
        alpha = np.zeros((96, 96), bool)
        x, y = layer.offset
        ys, xs = np.nonzero(layer.pixels[..., 3])
        ys, xs = ys + y, xs + x
        inside = (ys >= 0) & (ys < 96) & (xs >= 0) & (xs < 96)
        alpha[ys[inside], xs[inside]] = True
        assert alpha.any(), f"{kind}: layer {layer.name} is empty"
        assert not alpha[:y0].any() and not alpha[y1:].any(), layer.name
        assert not alpha[:, :x0].any() and not alpha[:, x1:].any(), layer.name
        assert 0 <= x0 < x1 <= 96 and 0 <= y0 < y1 <= 96


def _over(top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    at, ab = top[..., 3:4], bottom[..., 3:4]
    out_a = at + ab * (1 - at)
    rgb = (top[..., :3] * at + bottom[..., :3] * ab * (1 - at)) / np.maximum(out_a, 1e-12)
    return np.concatenate([rgb, out_a], axis=-1)


def _canvas(layer, size) -> np.ndarray:
    out = np.zeros((size, size, 4))
    x, y = layer.offset
    h, w = layer.pixels.shape[:2]
    out[y:y + h, x:x + w] = layer.pixels / 255.0
    return out


@pytest.mark.parametrize("effect", EFFECTS)
def test_effects_recompose_from_their_parts(effect):
    sample = generate("effects", 1, size=96, effect=effect)
    extras = {k: v.astype(np.float64) / 255 for k, v in sample.extras.items()}
    background = np.dstack([extras["background"], np.ones((96, 96))])
    foreground = _canvas(sample.stack.layers[1], 96)
    # the composite is exactly the stored foreground over the clean background...
    assert np.abs(sample.composite() / 255.0 - _over(foreground, background)).max() <= 1.01 / 255
    # ...and the foreground is the object over its effect (up to 8-bit rounding of each part)
    rebuilt = _over(extras["object"], extras["effect"])
    premultiplied = [x[..., :3] * x[..., 3:4] for x in (foreground, rebuilt)]
    assert np.abs(premultiplied[0] - premultiplied[1]).max() <= 2.01 / 255
    assert np.array_equal(sample.extras["mask"], sample.extras["object"][..., 3])
    assert sample.meta["effect"] == effect


@pytest.mark.parametrize("subtask", sorted(SUBTASKS))
def test_alpha_blend_composite_follows_the_labelled_formula(subtask):
    sample = generate("alpha_blend", 2, size=96, subtask=subtask)
    bg = sample.extras["background"].astype(np.float64) / 255
    layer = _canvas(sample.stack.layers[1], 96)
    a, cs = layer[..., 3:4], layer[..., :3]
    blended = {"normal": cs, "screen": bg + cs - bg * cs, "multiply": bg * cs,
               "linear-dodge": np.minimum(1, bg + cs)}[sample.meta["blend"]]
    expected = bg * (1 - a) + blended * a
    assert np.abs(sample.composite()[..., :3] / 255.0 - expected).max() <= 1.01 / 255
    assert sample.stack.layers[1].blend_mode.value == sample.meta["blend"]


@pytest.mark.parametrize("convention", ["artist", "normal"])
def test_anime_layers_recombine_exactly(convention):
    sample = generate("anime", 5, size=96, convention=convention)
    paper, flat, shadow, highlight, line = (_canvas(layer, 96) for layer in sample.stack)
    image = _over(flat, paper)
    for layer, mode in ((shadow, sample.stack[2].blend_mode.value),
                        (highlight, sample.stack[3].blend_mode.value)):
        cb, cs, a = image[..., :3], layer[..., :3], layer[..., 3:4]
        mixed = {"multiply": cb * cs, "screen": cb + cs - cb * cs, "normal": cs}[mode]
        image = np.concatenate([cb * (1 - a) + mixed * a, image[..., 3:4]], axis=-1)
    image = _over(line, image)
    assert np.abs(sample.composite() / 255.0 - image).max() <= 1.01 / 255
    kinds = [layer.kind for layer in sample.stack]
    assert kinds == ["background", "flat", "shadow", "highlight", "lineart"]
    # shadow and highlight stay inside the colour region
    assert (shadow[..., 3][flat[..., 3] == 0] == 0).all()


def test_line_art_and_colour_parts_rebuild_the_full_emoji():
    # Exact for emoji drawn as black strokes over colour; emoji with black *fills* (black
    # squares, chess pieces) put those fills in the line part, so only most must match.
    colour_errors, alpha_errors = [], []
    for emoji in catalog()[::40]:
        full, line, colour = (render_emoji(emoji, 64, part).astype(np.float64) / 255
                              for part in ("full", "line", "color"))
        assert line.shape == colour.shape == full.shape
        rebuilt = _over(line, colour)
        visible = full[..., 3] > 0.5
        alpha_errors.append(np.abs(rebuilt[..., 3] - full[..., 3]).mean())
        colour_errors.append(np.abs(rebuilt[..., :3] - full[..., :3])[visible].mean())
    for errors in (colour_errors, alpha_errors):
        assert np.median(errors) < 0.02
        assert np.mean(np.array(errors) < 0.03) >= 0.85


def test_heldout_emoji_never_appear_in_training_samples():
    heldout = {f"emoji:{e.id}" for e in emoji_for_split("heldout")}
    train = {f"emoji:{e.id}" for e in emoji_for_split("train")}
    assert heldout and train and not heldout & train
    assert len(heldout) / (len(heldout) + len(train)) == pytest.approx(0.1, abs=0.03)
    seen = set()
    for kind in KINDS:
        for i in range(20):
            sample = generate(kind, i, size=64)
            seen |= {layer.provenance.get("source", "") for layer in sample.stack}
            seen.add(sample.meta.get("source", ""))
    assert not seen & heldout
    held = generate("objects", 0, size=64, split="heldout", min_objects=5, max_objects=5)
    assert {layer.provenance["source"] for layer in held.stack.layers[1:]
            if layer.provenance["source"].startswith("emoji")} <= heldout
    assert all(split_of(e.codepoint) == "heldout" for e in emoji_for_split("heldout"))


def test_objects_scales_to_fifty_layers():
    sample = generate("objects", 0, size=128, min_objects=50, max_objects=50)
    assert len(sample.stack) == 51 and sample.caption.endswith(
        sample.stack[0].provenance["caption"])


def test_bad_arguments_are_clear():
    with pytest.raises(ValueError, match="unknown generator"):
        generate("nope")
    with pytest.raises(ValueError, match="split"):
        generate("objects", split="test")
    with pytest.raises(ValueError, match="subtask"):
        generate("alpha_blend", subtask="fog")
    with pytest.raises(ValueError, match="max_objects"):
        generate("objects", max_objects=51)


def test_catalog_has_captions_and_categories():
    emoji = catalog()
    assert len(emoji) > 1300
    assert all(e.caption and e.caption == e.caption.lower() for e in emoji)
    assert {"faces", "symbols"} <= {e.category for e in emoji}
