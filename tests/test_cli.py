"""The command line: inspect, convert, flatten, demo, --version, and exit code 2 on bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from layerstudio import LayerStack, __version__
from layerstudio.cli import main

from conftest import sample_stack


def test_version_via_module_entry_point():
    out = subprocess.run([sys.executable, "-m", "layerstudio", "--version"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"layerstudio {__version__}"


def test_inspect_table_and_json(tmp_path, capsys):
    path = sample_stack().save(tmp_path / "s.psd")
    assert main(["inspect", str(path)]) == 0
    table = capsys.readouterr().out
    assert "5 layers" in table and "Ünïcødé 日本語 🎨" in table and "multiply" in table
    assert table.index("top") < table.index("Фон")  # top of the stack listed first
    assert main(["inspect", "--json", str(path)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["width"] == 40 and len(data["layers"]) == 5
    hidden = next(row for row in data["layers"] if row["name"] == "hidden one")
    assert hidden["visible"] is False and hidden["group"] == "Characters/Hero"


@pytest.mark.parametrize(("source", "target"), [(".psd", ".ora"), (".ora", ".zip"),
                                                (".zip", ".psd")])
def test_convert_between_layered_formats(tmp_path, source, target):
    stack = sample_stack()
    src = stack.save(tmp_path / f"in{source}")
    dst = tmp_path / f"out{target}"
    assert main(["convert", str(src), str(dst)]) == 0
    back = LayerStack.load(dst)
    assert [layer.name for layer in back] == [layer.name for layer in stack]
    assert np.array_equal(np.asarray(back.composite()), np.asarray(stack.composite()))


def test_convert_to_16_bit_zip_compressed_psd(tmp_path):
    src = sample_stack().save(tmp_path / "in.zip")
    assert main(["convert", str(src), str(tmp_path / "deep.psd"), "--depth", "16",
                 "--compression", "zip"]) == 0
    back = LayerStack.load(tmp_path / "deep.psd")
    assert back[0].pixels.dtype == np.uint16


def test_flatten_writes_the_composite(tmp_path):
    stack = sample_stack()
    src = stack.save(tmp_path / "in.ora")
    assert main(["flatten", str(src), str(tmp_path / "flat.png")]) == 0
    flat = LayerStack.load(tmp_path / "flat.png")
    assert np.array_equal(np.asarray(flat.composite()), np.asarray(stack.composite()))


def test_demo_writes_a_layered_psd_and_preview(tmp_path, capsys):
    assert main(["demo", "-o", str(tmp_path / "demo.psd")]) == 0
    stack = LayerStack.load(tmp_path / "demo.psd")
    assert len(stack) >= 10 and ("Birds",) in stack.groups
    assert {layer.blend_mode.value for layer in stack} >= {"normal", "screen", "multiply"}
    assert (tmp_path / "demo.preview.png").exists()
    # the shipped transparent model's objects, 64 px upscaled 4x, in their own group
    from layerstudio.demo import GENERATED

    generated = [layer for layer in stack if layer.group == ("Generated",)]
    assert [layer.name for layer in generated] == [prompt for prompt, _ in GENERATED]
    for layer in generated:
        alpha = layer.pixels[..., 3]
        assert 64 < max(alpha.shape) <= 256 and 0 < (alpha == 0).mean() < 1
        assert 0 <= layer.offset[0] < stack.width and 0 <= layer.offset[1] < stack.height


def test_procedural_demo_needs_no_model(tmp_path, monkeypatch):
    import layerstudio.studio

    monkeypatch.setattr(layerstudio.studio.Studio, "generate", None)  # would fail if called
    assert main(["demo", "--procedural", "-o", str(tmp_path / "demo.ora")]) == 0
    stack = LayerStack.load(tmp_path / "demo.ora")
    assert ("Generated",) not in stack.groups and ("Birds",) in stack.groups


@pytest.mark.parametrize("argv", [
    ["inspect", "{tmp}/missing.psd"],
    ["inspect", "{tmp}/garbage.psd"],
    ["convert", "{tmp}/garbage.psd", "{tmp}/out.ora"],
    ["convert", "{tmp}/good.zip", "{tmp}/out.png"],
    ["flatten", "{tmp}/good.zip", "{tmp}/out.psd"],
    ["flatten", "{tmp}/good.zip", "{tmp}/out.docx"],
])
def test_bad_input_exits_2_with_one_clear_line(tmp_path, argv):
    (tmp_path / "garbage.psd").write_bytes(b"8BPS" + b"\x00" * 10)
    sample_stack().save(tmp_path / "good.zip")
    args = [a.format(tmp=tmp_path) for a in argv]
    out = subprocess.run([sys.executable, "-m", "layerstudio", *args], capture_output=True,
                         text=True)
    assert out.returncode == 2
    assert out.stderr.startswith("error: ") and "Traceback" not in out.stderr
    assert not any(p.name.startswith("out") for p in tmp_path.iterdir())


def test_import_warnings_are_printed(psd_fixtures, capsys):
    assert main(["inspect", str(psd_fixtures / "clipping-mask.psd")]) == 0
    assert "warning: layer 'Shape 2': clipping mask baked" in capsys.readouterr().err


def test_a_piped_generate_prints_only_its_own_lines(tmp_path):
    """No torchvision warnings from transformers and no progress bars when stderr is not a
    terminal: the output is LayerStudio's own line."""
    out = subprocess.run([sys.executable, "-m", "layerstudio", "generate", "an ice cream",
                          "-o", str(tmp_path / "a.psd"), "--seed", "0", "--steps", "2"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    assert out.stdout.startswith("wrote ") and out.stdout.count("\n") == 1


def test_light_commands_do_not_import_the_model_stack():
    """`inspect`, `convert` and friends answer fast: importing the CLI loads no torch,
    diffusers, transformers, Gradio, training loop or Numba (compiled on first composite)."""
    code = ("import sys, layerstudio.cli, layerstudio.presets; "
            "print(sorted(m for m in ('torch', 'diffusers', 'transformers', 'gradio', "
            "'accelerate', 'numba', 'layerstudio.train.loop') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"
