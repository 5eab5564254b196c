"""Bad input gets a clear error naming the problem and never leaves a partial file."""

from __future__ import annotations

import json
import struct
import zipfile

import numpy as np
import pytest

from layerstudio import InvalidInputError, Layer, LayerStack
from layerstudio.errors import ImageTooLargeError, LayerStudioError, UnsupportedFormatError
from layerstudio.limits import set_max_pixels

from conftest import sample_stack


@pytest.fixture
def saved(tmp_path):
    stack = sample_stack()
    return {suffix: stack.save(tmp_path / f"good{suffix}") for suffix in (".psd", ".ora",
                                                                          ".zip", ".png")}


@pytest.mark.parametrize("suffix", [".psd", ".ora", ".zip", ".png"])
@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9])
def test_truncated_files(tmp_path, saved, suffix, keep):
    data = saved[suffix].read_bytes()
    bad = tmp_path / f"cut{suffix}"
    bad.write_bytes(data[: max(30, int(len(data) * keep))])
    with pytest.raises(InvalidInputError):
        LayerStack.load(bad)


@pytest.mark.parametrize("suffix", [".ora", ".zip"])
def test_corrupt_bytes_in_the_middle(tmp_path, saved, suffix):
    # ZIP containers carry CRCs; PSD has no checksum, so flipped pixel bytes are undetectable
    # there and its structural damage is tested below.
    data = bytearray(saved[suffix].read_bytes())
    rng = np.random.default_rng(0)
    for i in rng.integers(len(data) // 3, len(data), 200):
        data[i] ^= 0xFF
    bad = tmp_path / f"corrupt{suffix}"
    bad.write_bytes(bytes(data))
    with pytest.raises(InvalidInputError):
        LayerStack.load(bad)


@pytest.mark.parametrize("offset", [26, 30])
def test_psd_with_impossible_section_length(tmp_path, saved, offset):
    data = bytearray(saved[".psd"].read_bytes())
    data[offset:offset + 4] = struct.pack(">I", 0x7FFFFFF0)
    bad = tmp_path / "broken.psd"
    bad.write_bytes(bytes(data))
    with pytest.raises(InvalidInputError, match="truncated"):
        LayerStack.load(bad)


def test_wrong_format_for_extension(tmp_path, saved):
    fake = tmp_path / "really-a-png.psd"
    fake.write_bytes(saved[".png"].read_bytes())
    with pytest.raises(UnsupportedFormatError, match=r"named \.psd but its contents"):
        LayerStack.load(fake)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(UnsupportedFormatError, match="cannot open"):
        LayerStack.load(text)
    empty = tmp_path / "empty.psd"
    empty.write_bytes(b"")
    with pytest.raises(InvalidInputError, match="is empty"):
        LayerStack.load(empty)
    with pytest.raises(InvalidInputError, match="does not exist"):
        LayerStack.load(tmp_path / "missing.psd")
    plain_zip = tmp_path / "other.zip"
    with zipfile.ZipFile(plain_zip, "w") as z:
        z.writestr("readme.txt", "hi")
    with pytest.raises(InvalidInputError, match=r"no manifest\.json"):
        LayerStack.load(plain_zip)


def test_psd_header_bomb_is_rejected_before_parsing(tmp_path, saved):
    data = bytearray(saved[".psd"].read_bytes())
    data[14:22] = struct.pack(">II", 300_000, 300_000)  # height, width
    bomb = tmp_path / "bomb.psd"
    bomb.write_bytes(bytes(data))
    with pytest.raises(ImageTooLargeError, match="above the limit"):
        LayerStack.load(bomb)


def test_png_bomb_and_configurable_limit(tmp_path):
    stack = LayerStack(64, 64, [Layer("a", np.zeros((64, 64, 4), np.uint8))])
    path = stack.save(tmp_path / "a.png")
    set_max_pixels(1000)
    try:
        with pytest.raises(ImageTooLargeError, match="LAYERSTUDIO_MAX_PIXELS"):
            LayerStack.load(path)
    finally:
        set_max_pixels(None)
    assert len(LayerStack.load(path)) == 1


def test_zip_slip_and_bad_manifest_are_rejected(tmp_path, saved):
    with zipfile.ZipFile(saved[".zip"]) as z:
        manifest = json.loads(z.read("manifest.json"))
    for evil in ("../outside.png", "/etc/passwd", "layers\\x.png", "a/../../b.png"):
        manifest["layers"][0]["file"] = evil
        bad = tmp_path / "evil.zip"
        with zipfile.ZipFile(bad, "w") as z:
            z.writestr("manifest.json", json.dumps(manifest))
        with pytest.raises(InvalidInputError, match="unsafe path"):
            LayerStack.load(bad)
    bad = tmp_path / "garbage.zip"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("manifest.json", "{not json")
    with pytest.raises(InvalidInputError, match="not valid JSON"):
        LayerStack.load(bad)


@pytest.mark.parametrize(("stack_xml", "message"), [
    ('<image w="4" h="4"><stack><layer name="x" src="../../etc/passwd"/></stack></image>',
     "unsafe path"),
    ('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><image w="4" h="4"><stack/>'
     "</image>", "DTD"),
])
def test_hostile_ora_is_rejected(tmp_path, stack_xml, message):
    bad = tmp_path / "hostile.ora"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("mimetype", "image/openraster")
        z.writestr("stack.xml", stack_xml)
    with pytest.raises(InvalidInputError, match=message):
        LayerStack.load(bad)


def test_zero_layers_cannot_be_saved(tmp_path):
    for suffix in (".psd", ".ora", ".zip", ".png"):
        target = tmp_path / f"empty{suffix}"
        with pytest.raises(InvalidInputError, match="no layers"):
            LayerStack(4, 4).save(target)
        assert not target.exists()


def test_failed_write_leaves_no_partial_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    from layerstudio.io import zip_bundle

    target = tmp_path / "keep.zip"
    target.write_bytes(b"previous contents")

    def explode(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(zip_bundle, "encode_png", explode)
    with pytest.raises(LayerStudioError, match=r"could not write keep.zip .RuntimeError: disk"):
        sample_stack().save(target)
    assert target.read_bytes() == b"previous contents"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.zip"]


def test_unknown_save_format_and_options(tmp_path):
    with pytest.raises(UnsupportedFormatError, match=r"use \.psd, \.psb, \.ora, \.zip"):
        sample_stack().save(tmp_path / "x.docx")
    with pytest.raises(InvalidInputError, match="only to PSD"):
        sample_stack().save(tmp_path / "x.zip", depth=16)
    with pytest.raises(InvalidInputError, match="bit depth"):
        sample_stack().save(tmp_path / "x.psd", depth=12)
    assert list(tmp_path.iterdir()) == []
