"""PSD, ORA and ZIP round trips keep everything a designer would notice."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from PIL import Image

from layerstudio import Layer, LayerStack

from conftest import sample_stack


def assert_same_stack(a: LayerStack, b: LayerStack) -> None:
    assert (a.width, a.height) == (b.width, b.height)
    assert [x.name for x in a] == [y.name for y in b]
    for x, y in zip(a.cropped_to_content(), b.cropped_to_content(), strict=True):
        assert x.offset == y.offset, x.name
        assert np.array_equal(x.pixels, y.pixels), x.name
        assert x.blend_mode is y.blend_mode, x.name
        assert x.opacity == pytest.approx(y.opacity, abs=1e-9), x.name
        assert x.visible == y.visible, x.name
        assert x.group == y.group, x.name
        assert x.kind == y.kind, x.name
        assert x.provenance == y.provenance, x.name
    used = {layer.group[:d] for layer in a for d in range(1, len(layer.group) + 1)}
    for path in used:
        assert a.groups[path].blend_mode is b.groups[path].blend_mode
        assert a.groups[path].opacity == pytest.approx(b.groups[path].opacity)
        assert a.groups[path].visible == b.groups[path].visible
    assert np.array_equal(np.asarray(a.composite()), np.asarray(b.composite()))


@pytest.mark.parametrize("suffix", [".psd", ".ora", ".zip"])
def test_round_trip_is_lossless(tmp_path, suffix):
    stack = sample_stack()
    path = stack.save(tmp_path / f"doc{suffix}")
    back = LayerStack.load(path)
    assert_same_stack(stack, back)
    assert back.metadata["prompt"] == "a test"


@pytest.mark.parametrize("compression", ["rle", "zip", "raw"])
def test_psd_compressions(tmp_path, compression):
    stack = sample_stack(1)
    back = LayerStack.load(stack.save(tmp_path / f"{compression}.psd", compression=compression))
    assert_same_stack(stack, back)


@pytest.mark.parametrize("suffix", [".psd", ".zip", ".ora"])
def test_16_bit_layers_keep_16_bits(tmp_path, suffix):
    rng = np.random.default_rng(5)
    stack = LayerStack(6, 5)
    stack.add(Layer("deep", rng.integers(0, 65536, (5, 6, 4), dtype=np.uint16)))
    stack[0].pixels[..., 3] = np.maximum(stack[0].pixels[..., 3], 1)
    back = LayerStack.load(stack.save(tmp_path / f"deep{suffix}"))
    assert back[0].pixels.dtype == np.uint16
    assert np.array_equal(back[0].pixels, stack[0].pixels)


def test_float_layers_survive_zip_to_16_bit_precision(tmp_path):
    pixels = np.random.default_rng(1).random((4, 4, 4), dtype=np.float32)
    stack = LayerStack(4, 4, [Layer("f", pixels)])
    back = LayerStack.load(stack.save(tmp_path / "f.zip"))
    assert back[0].pixels.dtype == np.float32
    assert np.abs(back[0].pixels - pixels).max() <= 0.5 / 65535 + 1e-7


def test_psd_metadata_survives_editing_in_another_program(tmp_path):
    from psd_tools import PSDImage

    path = sample_stack().save(tmp_path / "s.psd")
    psd = PSDImage.open(path)
    next(layer for layer in psd.descendants() if layer.name == "Фон").name = "Background 2"
    psd.save(tmp_path / "edited.psd")
    back = LayerStack.load(tmp_path / "edited.psd")
    assert back["hero"].kind == "effect" and back["hero"].provenance["prompt"] == "héros"
    assert back["Background 2"].kind == "object"  # renamed elsewhere: no longer matched
    assert back.metadata["prompt"] == "a test"


def test_psd_stores_our_composite_as_the_merged_image(tmp_path):
    from layerstudio.io.psd import merged_image

    stack = sample_stack(2)
    path = stack.save(tmp_path / "m.psd")
    merged = np.asarray(merged_image(path).convert("RGBA"), float) / 255
    ours = np.asarray(stack.composite(), float) / 255
    # Photoshop stores merged colour matted on white in 8 bits; matting and un-matting each
    # round once, so premultiplied values agree to 2/255.
    premultiplied = [x[..., :3] * x[..., 3:4] for x in (merged, ours)]
    assert np.abs(premultiplied[0] - premultiplied[1]).max() <= 2 / 255
    assert np.array_equal(merged[..., 3], ours[..., 3])


def test_ora_layout_follows_the_spec(tmp_path):
    path = sample_stack().save(tmp_path / "s.ora")
    with zipfile.ZipFile(path) as ora:
        first = ora.infolist()[0]
        assert first.filename == "mimetype" and first.compress_type == zipfile.ZIP_STORED
        assert ora.read("mimetype") == b"image/openraster"
        names = set(ora.namelist())
        assert {"stack.xml", "mergedimage.png", "Thumbnails/thumbnail.png"} <= names
        assert max(Image.open(ora.open("Thumbnails/thumbnail.png")).size) <= 256
        xml = ora.read("stack.xml").decode()
    assert 'composite-op="svg:multiply"' in xml and 'isolation="isolate"' in xml
    assert xml.index('name="top"') < xml.index('name="Фон"')  # first child is the top


def test_zip_bundle_layout_and_safe_names(tmp_path):
    stack = sample_stack()
    stack.add(Layer("../../evil/name", np.full((2, 2, 4), 255, np.uint8)))
    path = stack.save(tmp_path / "b.zip")
    with zipfile.ZipFile(path) as bundle:
        names = bundle.namelist()
        manifest = json.loads(bundle.read("manifest.json"))
    assert "composite.png" in names
    assert all(n.startswith("layers/") or n in ("manifest.json", "composite.png")
               for n in names)
    assert not any(".." in n for n in names)
    assert manifest["layers"][-1]["name"] == "../../evil/name"
    assert LayerStack.load(path)[-1].name == "../../evil/name"


@pytest.mark.parametrize("suffix", [".png", ".webp", ".tif"])
def test_flat_export_and_plain_image_import(tmp_path, suffix):
    stack = sample_stack()
    path = stack.save(tmp_path / f"flat{suffix}")
    back = LayerStack.load(path)
    assert len(back) == 1 and back[0].kind == "background"
    assert np.array_equal(np.asarray(back.composite()), np.asarray(stack.composite()))
