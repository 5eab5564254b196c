"""Nothing a user sends can exhaust memory, crash a reader or writer, or leave a broken file:
one test per class of attack from the hardening review (issue 14)."""

from __future__ import annotations

import io
import logging
import os
import stat
import struct
import time
import zipfile

import numpy as np
import pytest
from PIL import Image

from layerstudio import InvalidInputError, Layer, LayerStack
from layerstudio.document import unique_group_name
from layerstudio.errors import ImageTooLargeError, LayerStudioError
from layerstudio.io import load_stack
from layerstudio.io.atomic import atomic_path
from layerstudio.limits import MAX_LAYERS, set_max_pixels

from conftest import sample_stack


def _png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGBA", (width, height), (200, 10, 10, 255)).save(buffer, "PNG")
    return buffer.getvalue()


def _bundle(path, layers: list[dict], files: dict[str, bytes], **top) -> None:
    import json

    manifest = {"format": "layerstudio", "version": 1, "width": 64, "height": 64,
                "layers": layers, **top}
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("manifest.json", json.dumps(manifest))
        for name, data in files.items():
            archive.writestr(name, data)


# --- memory is bounded per document ----------------------------------------------------------

@pytest.fixture
def small_budget(monkeypatch):
    """Per-image limit 64x64, per-document 4 images: the same proportions as the defaults."""
    set_max_pixels(64 * 64)
    monkeypatch.setenv("LAYERSTUDIO_MAX_DOCUMENT_PIXELS", str(4 * 64 * 64))
    yield
    set_max_pixels(None)


def test_one_png_named_forty_times_is_refused_by_the_document_budget(tmp_path, small_budget):
    path = tmp_path / "forty.zip"
    _bundle(path, [{"name": f"l{i}", "file": "big.png"} for i in range(40)],
            {"big.png": _png(64, 64)})
    with pytest.raises(ImageTooLargeError, match="LAYERSTUDIO_MAX_DOCUMENT_PIXELS"):
        load_stack(path)
    ora = tmp_path / "forty.ora"
    with zipfile.ZipFile(ora, "w") as archive:
        archive.writestr("mimetype", "image/openraster")
        archive.writestr("stack.xml", '<image w="64" h="64"><stack>'
                         + '<layer src="big.png"/>' * 40 + "</stack></image>")
        archive.writestr("big.png", _png(64, 64))
    with pytest.raises(ImageTooLargeError, match="add up to more than"):
        load_stack(ora)


def test_every_path_that_adds_layers_respects_the_caps(small_budget):
    stack = LayerStack(64, 64)
    for i in range(4):
        stack.add(Layer(f"l{i}", np.zeros((64, 64, 4), np.uint8)))
    with pytest.raises(ImageTooLargeError):
        stack.add(Layer("one more", np.zeros((8, 8, 4), np.uint8)))
    with pytest.raises(ImageTooLargeError):
        stack.duplicate(0)
    assert len(stack) == 4


def test_duplicate_obeys_the_layer_count_cap():
    stack = LayerStack(4, 4, layers=[Layer(f"l{i}", np.zeros((1, 1, 4), np.uint8))
                                     for i in range(MAX_LAYERS)])
    with pytest.raises(InvalidInputError, match=f"at most {MAX_LAYERS} layers"):
        stack.duplicate(0)


def test_merge_down_refuses_a_huge_canvas_before_rendering():
    stack = LayerStack(16, 16)
    stack.add(Layer("a", np.full((2, 2, 4), 255, np.uint8)))
    stack.add(Layer("b", np.full((2, 2, 4), 255, np.uint8), offset=(15_000, 15_000)))
    started = time.perf_counter()
    with pytest.raises(ImageTooLargeError, match="merging 'b' into 'a'"):
        stack.merge_down("b")
    assert time.perf_counter() - started < 1.0  # refused, not rendered
    assert len(stack) == 2


def test_hostile_batch_lines_are_recorded_not_fatal(tmp_path):
    from layerstudio.batch import read_jobs
    from layerstudio.pipelines.anonymous_region import plan_boxes

    with pytest.raises(InvalidInputError, match="at most 1000"):
        plan_boxes(10**9, 64, 64)  # refused before any allocation sized by the count
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text('{"prompt": "a"}\n' + "[" * 2000 + "]" * 2000 + '\n{"prompt": "b", '
                    '"size": 1e400}\n{"prompt": "c"}\n')
    errors = [job.error for job in read_jobs(jobs)]
    assert errors[0] is None and errors[3] is None
    assert "nested deeper" in errors[1] and "out of range" in errors[2]
    from layerstudio.studio import Studio

    for bad in ({"seed": 10**100}, {"seed": "1"}, {"steps": "many"}):  # before any model loads
        with pytest.raises(InvalidInputError, match=r"seed|steps"):
            Studio().generate("an apple", **bad)


def test_special_files_are_not_read(tmp_path):
    link = tmp_path / "endless.png"
    link.symlink_to("/dev/zero")
    with pytest.raises(InvalidInputError, match="not a regular file"):
        load_stack(link)
    fifo = tmp_path / "pipe.psd"
    os.mkfifo(fifo)
    with pytest.raises(InvalidInputError, match="not a regular file"):
        load_stack(fifo)


# --- empty layers export everywhere ----------------------------------------------------------

@pytest.mark.parametrize("suffix", [".ora", ".zip", ".psd", ".psb"])
def test_fully_transparent_layers_save_and_load(tmp_path, suffix):
    stack = sample_stack()
    stack.add(Layer("nothing", np.zeros((10, 10, 4), np.uint8), offset=(3, 4)))
    again = load_stack(stack.save(tmp_path / f"empty{suffix}"))
    assert [layer.name for layer in again] == [layer.name for layer in stack]
    assert again["nothing"].is_empty
    np.testing.assert_array_equal(again.composite_array(), stack.composite_array())


# --- every failure is one clear error ---------------------------------------------------------

def test_the_fuzz_corpus_crafted_cases_end_cleanly(tmp_path, monkeypatch):
    """Each crafted attack (deep JSON, Infinity sizes, offsets past 2^31, encrypted and
    unknown-method members, corrupt deflate, deep ORA stacks, bombs, ...) is a clean error or
    a success, quickly."""
    from fuzz import crafted, exercise

    monkeypatch.setenv("LAYERSTUDIO_MAX_DOCUMENT_PIXELS", str(64 * 1024 * 1024))
    for name, suffix, data in crafted():
        path = tmp_path / f"{name}{suffix}"
        path.write_bytes(data)
        started = time.perf_counter()
        assert exercise(path, tmp_path) in ("clean error", "success"), name
        assert time.perf_counter() - started < 20, name


def test_a_psd_layer_offset_past_2_31_is_a_clean_error(tmp_path):
    stack = LayerStack(8, 8, layers=[Layer("a", np.full((2, 2, 4), 255, np.uint8))])
    data = bytearray(stack.save(tmp_path / "a.psd").read_bytes())
    position = 26
    for _ in range(2):  # colour mode data, image resources
        position += 4 + struct.unpack(">I", data[position:position + 4])[0]
    record = position + 4 + 4 + 2  # layer-and-mask length, layer-info length, layer count
    data[record:record + 16] = struct.pack(">iiii", 0x7FFFFFF0, 0x7FFFFFF0, 0x7FFFFFF2,
                                           0x7FFFFFF2)
    bad = tmp_path / "far.psd"
    bad.write_bytes(bytes(data))
    with pytest.raises(LayerStudioError):
        load_stack(bad)


def test_deep_and_non_finite_values_never_reach_a_file(tmp_path):
    with pytest.raises(InvalidInputError, match="nested deeper"):
        Layer("a", np.zeros((1, 1, 4), np.uint8), provenance={"x": _deep(100)})
    with pytest.raises(InvalidInputError, match="non-finite"):
        LayerStack(4, 4, metadata={"seconds": float("nan")})
    stack = sample_stack()
    stack.metadata["seconds"] = float("nan")  # set after construction, as code may do
    for suffix in (".zip", ".ora", ".psd"):
        with pytest.raises(InvalidInputError, match=r"non-finite|JSON"):
            stack.save(tmp_path / f"nan{suffix}")
    assert list(tmp_path.iterdir()) == []


def _deep(depth: int):
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


def test_metadata_too_large_to_read_back_is_refused_on_write(tmp_path):
    stack = sample_stack()
    stack.metadata["notes"] = "x" * (17 * 1024 * 1024)
    with pytest.raises(InvalidInputError, match=r"too large|above the limit"):
        stack.save(tmp_path / "big.zip")
    assert list(tmp_path.iterdir()) == []


def test_names_that_cannot_be_encoded_are_refused():
    with pytest.raises(InvalidInputError, match="surrogate"):
        Layer("bad \ud800 name", np.zeros((1, 1, 4), np.uint8))
    with pytest.raises(InvalidInputError, match="nested 40 groups deep"):
        Layer("a", np.zeros((1, 1, 4), np.uint8), group=tuple(f"g{i}" for i in range(40)))
    with pytest.raises(InvalidInputError, match="offset"):
        Layer("a", np.zeros((1, 1, 4), np.uint8), offset=(2**31, 0))
    with pytest.raises(InvalidInputError, match="integers"):
        LayerStack(float("inf"), 4)


def test_group_naming_is_linear_and_unique():
    taken: dict = {}
    names = [unique_group_name(taken, (), "a") for _ in range(5000)]
    assert len(set(names)) == 5000 and names[1] == "a (2)" and names[-1] == "a (5000)"
    taken = {}
    assert [unique_group_name(taken, (), n) for n in ("a (2)", "a", "a")] == \
        ["a (2)", "a", "a (3)"]


# --- whatever we write, we can read back --------------------------------------------------------

def test_wide_canvases_need_psb(tmp_path, monkeypatch):
    monkeypatch.setenv("LAYERSTUDIO_MAX_PIXELS", str(31_000 * 2))
    stack = LayerStack(31_000, 2, layers=[Layer("a", np.full((2, 2, 4), 255, np.uint8))])
    with pytest.raises(InvalidInputError, match=r"save it as \.psb"):
        stack.save(tmp_path / "wide.psd")
    again = load_stack(stack.save(tmp_path / "wide.psb"))
    assert again.size == (31_000, 2) and again["a"].offset == (0, 0)
    assert (tmp_path / "wide.psb").read_bytes()[4:6] == b"\x00\x02"


# --- atomic writes ----------------------------------------------------------------------------

def test_a_write_keeps_the_mode_of_the_file_it_replaces(tmp_path):
    target = tmp_path / "private.psd"
    target.write_bytes(b"old")
    target.chmod(0o600)
    sample_stack().save(target)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    fresh = sample_stack().save(tmp_path / "new.psd")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o666 & ~umask


def test_stranded_temporary_files_are_cleared_by_the_next_write(tmp_path):
    target = tmp_path / "doc.zip"
    dead = tmp_path / ".doc.zip.999999999.abc.part"  # no such process
    alive = tmp_path / f".doc.zip.{os.getpid()}.def.part"  # a write still in progress
    other = tmp_path / ".other.zip.999999999.ghi.part"
    for path in (dead, alive, other):
        path.write_bytes(b"half")
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"done")
    assert target.read_bytes() == b"done"
    assert not dead.exists() and alive.exists() and other.exists()


def test_a_killed_save_leaves_nothing_after_the_next_one(tmp_path):
    import subprocess
    import sys

    script = ("import os, sys; from layerstudio.io.atomic import atomic_path\n"
              "with atomic_path(sys.argv[1]) as tmp:\n"
              "    tmp.write_bytes(b'half'); os.kill(os.getpid(), 9)\n")
    target = tmp_path / "killed.psd"
    subprocess.run([sys.executable, "-c", script, str(target)], check=False)
    assert [p.suffix for p in tmp_path.iterdir()] == [".part"]
    sample_stack().save(target)
    assert [p.name for p in tmp_path.iterdir()] == ["killed.psd"]


# --- quiet libraries, no server paths, racing uploads ----------------------------------------

def test_psd_tools_log_lines_become_import_warnings(tmp_path, monkeypatch, capsys):
    from layerstudio.io import psd

    path = sample_stack().save(tmp_path / "a.psd")
    real_open = psd._open

    def chatty(path):
        logging.getLogger("psd_tools.psd.base").warning("odd block skipped")
        return real_open(path)

    monkeypatch.setattr(psd, "_open", chatty)
    with pytest.warns(UserWarning, match="psd-tools: odd block skipped"):
        load_stack(path)
    assert "odd block" not in capsys.readouterr().err


def test_ui_errors_do_not_show_server_folders(tmp_path):
    pytest.importorskip("gradio")
    import gradio as gr

    from layerstudio.ui.runs import friendly

    upload = tmp_path / "gradio" / "0123abcd" / "photo.psd"

    @friendly
    def fails():
        raise InvalidInputError(f"{upload} is truncated; {upload}:layers/a.png too")

    with pytest.raises(gr.Error) as caught:
        fails()
    assert str(tmp_path) not in caught.value.message
    assert caught.value.message == "photo.psd is truncated; photo.psd:layers/a.png too"


def test_identical_pictures_for_two_clients_get_their_own_cache_files(tmp_path):
    """Gradio writes an output image to a path named by the hash of its bytes: identical
    previews for concurrent clients must not share (and rewrite) one file."""
    pytest.importorskip("gradio")
    from gradio.processing_utils import save_pil_to_cache

    from layerstudio.ui.views import layer_list, preview

    stack = sample_stack()
    first, second = preview(stack), preview(stack)
    assert np.array_equal(np.asarray(first), np.asarray(second))
    paths = {save_pil_to_cache(image, str(tmp_path), format="png")
             for image in (first, second, layer_list(stack)[0][0], layer_list(stack)[0][0])}
    assert len(paths) == 4


def test_the_cli_answers_hostile_files_with_one_error_line(tmp_path, capsys):
    from fuzz import crafted

    from layerstudio.cli import main

    for name, suffix, data in crafted():
        if "big-png" in name or "png-40x" in name:
            continue  # decoding 64 MP images: covered by the budget tests above
        path = tmp_path / f"{name}{suffix}"
        path.write_bytes(data)
        for argv in (["inspect", str(path)], ["convert", str(path), str(tmp_path / "o.psd")]):
            code = main(argv)
            err = capsys.readouterr().err.strip().splitlines()
            errors = [line for line in err if not line.startswith("warning:")]
            assert code in (0, 2), (name, argv[0], err)
            assert len(errors) == (1 if code == 2 else 0), (name, err)
            assert code == 0 or errors[0].startswith("error: "), (name, err)
