"""The UI's document logic without a browser: layer operations and undo, the Generate form's
translation into Studio arguments, export/open, previews and the Stop flag."""

from __future__ import annotations

import threading

import numpy as np
import pytest

pytest.importorskip("gradio")

from layerstudio import BlendMode, LayerStack
from layerstudio.errors import Cancelled, InvalidInputError
from layerstudio.ui.generate import models_for, studio_arguments
from layerstudio.ui.layers_panel import EXPORT_FORMATS, export_document
from layerstudio.ui.mask import mask_canvas, painted_mask
from layerstudio.ui.open_tab import open_document
from layerstudio.ui.runs import StopFlags
from layerstudio.ui.session import UNDO_DEPTH, Session
from layerstudio.ui.views import layer_list, preview, status_line

from conftest import sample_stack

FORM = dict(prompt="a cat", negative="", mode="fg", model="tiny-layerdiffuse", seed=7,
            randomise=False, steps=5, guidance=4.0, size=64)


def names(session: Session) -> list[str]:
    return [layer.name for layer in session.require().layers]


def test_operations_edit_copies_and_undo_restores_each_step():
    session = Session()
    original = sample_stack()
    session.replace(original)
    assert session.selected == 4  # the top layer is visible, so it is selected
    session.select(2)
    session.set_properties(name="hero 2", kind="effect", visible=False, opacity=0.25,
                           blend_mode="multiply")
    hero = session.require().layers[2]
    assert (hero.name, hero.visible, hero.opacity, hero.blend_mode) == \
        ("hero 2", False, 0.25, BlendMode.MULTIPLY)
    assert original.layers[2].name == "hero"  # never edited in place
    assert session.require().layers[0] is original.layers[0]  # unchanged layers are shared
    session.move_up()
    assert names(session)[3] == "hero 2" and session.selected == 3
    session.duplicate()
    assert names(session)[4] == "hero 2 copy" and session.selected == 4
    session.delete()
    assert len(session.require()) == 5 and session.selected == 3
    session.merge_down()
    assert len(session.require()) == 4 and session.selected == 2
    for expected in (5, 6, 5, 5, 5):
        session.undo()
        assert len(session.require()) == expected
    assert names(session) == names(Session(stack=original))
    with pytest.raises(InvalidInputError, match="nothing to undo"):
        session.undo()


def test_no_change_adds_no_undo_step_and_history_is_bounded():
    session = Session()
    session.replace(sample_stack())
    layer = session.require().layers[session.current()]
    session.set_properties(name=layer.name, kind=layer.kind, visible=layer.visible,
                           opacity=layer.opacity, blend_mode=layer.blend_mode.value)
    assert session.history == []
    for i in range(UNDO_DEPTH + 5):
        session.set_properties(name=f"n{i}", kind="object", visible=True, opacity=1.0,
                               blend_mode="normal")
    assert len(session.history) == UNDO_DEPTH


def test_bad_operations_name_the_problem_and_change_nothing():
    session = Session()
    with pytest.raises(InvalidInputError, match="no document yet"):
        session.duplicate()
    session.replace(LayerStack(8, 8, [sample_stack().layers[0]]))
    before = session.require()
    for call, message in ((session.delete, "only layer"), (session.merge_down, "bottom layer"),
                          (session.move_up, "already at the top"),
                          (session.move_down, "already at the bottom"),
                          (lambda: session.select(3), "no layer at index 3"),
                          (lambda: session.set_properties(name="x", kind="object", visible=True,
                                                          opacity=1.0, blend_mode="glow"),
                           "glow")):
        with pytest.raises(InvalidInputError, match=message):
            call()
        assert session.require() is before


def test_hidden_reference_layers_are_not_selected_by_default():
    stack = sample_stack()
    stack.layers[-1].visible = False
    session = Session()
    session.replace(stack)
    assert session.selected == 2  # layer 3 is hidden too


def test_form_becomes_studio_arguments_for_each_mode():
    fg = studio_arguments(**FORM, background="/etc/passwd", boxes="1,1,1,1")
    assert fg == dict(prompt="a cat", mode="fg", model="tiny-layerdiffuse", seed=7, steps=5,
                      guidance=4.0, size=64, negative_prompt=None)  # stray fields ignored
    typed = studio_arguments(**{**FORM, "mode": "layers", "model": "tiny-art"},
                             boxes="0,0,10,10; 20,20,8,8")
    assert typed["boxes"] == [(0, 0, 10, 10), (20, 20, 8, 8)]
    auto = studio_arguments(**{**FORM, "mode": "layers"}, layout="Automatic", regions=4)
    assert auto["boxes"] == 4
    joint = studio_arguments(**{**FORM, "mode": "joint"}, foreground_prompt=" a cat ",
                             background_prompt="")
    assert (joint["foreground_prompt"], joint["background_prompt"]) == ("a cat", None)
    seeds = {studio_arguments(**{**FORM, "randomise": True})["seed"] for _ in range(5)}
    assert len(seeds) > 1 and all(0 <= seed < 2**31 for seed in seeds)
    with pytest.raises(InvalidInputError, match="box 1"):
        studio_arguments(**{**FORM, "mode": "layers"}, boxes="1,2,3")


def test_conditioned_modes_read_uploads_with_size_checks(tmp_path):
    from PIL import Image

    picture = tmp_path / "bg.png"
    Image.new("RGB", (32, 24), (10, 200, 30)).save(picture)
    arguments = studio_arguments(**{**FORM, "mode": "bg2fg"}, background=str(picture),
                                 stop_at=0.5)
    assert arguments["background"].shape == (24, 32, 4) and arguments["stop_at"] == 0.5
    with pytest.raises(InvalidInputError, match="needs a background"):
        from layerstudio.studio import GENERATION, Studio

        Studio._condition(GENERATION.get("bg2fg"), None, None)


def test_drawn_regions_are_scaled_to_the_canvas():
    sketch = np.zeros((256, 256, 4), np.uint8)
    sketch[0:128, 0:64] = (255, 0, 0, 255)  # large region: bottom layer
    sketch[192:256, 192:256] = (0, 0, 255, 255)
    sketch[100:101, 100:101] = (0, 255, 0, 255)  # a stray pixel (anti-aliasing) is ignored
    boxes = studio_arguments(**{**FORM, "mode": "layers"}, layout="Draw regions",
                             sketch={"composite": sketch})["boxes"]
    assert boxes == [(0, 0, 16, 32), (48, 48, 16, 16)]
    with pytest.raises(InvalidInputError, match="drawing is empty"):
        studio_arguments(**{**FORM, "mode": "layers"}, layout="Draw regions",
                         sketch={"composite": np.zeros((8, 8, 4), np.uint8)})


def test_models_for_lists_generators_here_with_the_default_first():
    assert models_for("fg")[0] == "tiny-layerdiffuse"
    assert "tiny-judge" not in models_for("fg")
    assert models_for("layers") == ["tiny-art", "tiny-art-tf2x"]
    assert set(models_for("fg")) | {"tiny-art"} <= set(models_for(None))


@pytest.mark.parametrize("fmt", list(EXPORT_FORMATS))
def test_export_writes_each_format_and_open_reads_it_back(tmp_path, fmt):
    stack = sample_stack()
    path = export_document(stack, fmt, tmp_path)
    assert path.parent.parent == tmp_path and path.name.startswith("layerstudio-a-test")
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind
    opened, _ = open_document(path)
    if fmt == "PNG (flattened)":
        assert len(opened) == 1
    else:
        assert [layer.name for layer in opened.layers] == [layer.name for layer in stack.layers]
    with pytest.raises(InvalidInputError, match="unknown export format"):
        export_document(stack, "GIF", tmp_path)


def test_open_refuses_what_it_cannot_read(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(InvalidInputError, match=r"cannot open 'notes\.txt'"):
        open_document(text)
    fake = tmp_path / "fake.psd"
    fake.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(40))
    with pytest.raises(InvalidInputError, match="contents are not a layered file"):
        open_document(fake)


def test_previews_show_the_document():
    stack = sample_stack()
    image = preview(stack)
    assert image.mode == "RGB" and image.size == (360, 270)  # 40x30 enlarged 9x
    items = layer_list(stack)
    assert [caption for _, caption in items][:2] == \
        ["top", "Characters / Hero / hidden one (hidden)"]
    assert status_line(stack).startswith("40x30 px · 5 layers · seed 0")
    assert status_line(None).startswith("No document yet")


def test_painted_mask_is_scaled_to_the_canvas_and_empty_means_whole_layer():
    stack = sample_stack()  # 40x30 canvas, shown 9x as 360x270
    canvas = mask_canvas(stack, 0)
    assert canvas.size == (360, 270) and canvas.mode == "RGB"
    stroke = np.zeros((270, 360, 4), np.uint8)
    stroke[90:180, 180:360, 3] = 255  # rows 10-20, columns 20-40 of the canvas
    mask = painted_mask({"background": None, "layers": [stroke]}, stack.size)
    assert mask.shape == (30, 40) and mask[10:20, 20:].min() == 255
    assert mask[:10].max() == 0 and mask[:, :20].max() == 0
    assert painted_mask({"layers": [np.zeros((270, 360, 4), np.uint8)]}, stack.size) is None
    assert painted_mask(None, stack.size) is None


def test_stop_flag_cancels_at_the_next_step():
    flags = StopFlags()
    flag = flags.arm("session-a")
    assert flags.take("session-a") is flag  # the run takes the flag Generate armed
    seen = []
    on_step = flags.step_callback(flag, lambda value, **_: seen.append(value), "generating")
    on_step(1, 10)
    assert not flags.stop("session-b")  # another session's Stop does not touch it
    assert flags.stop("session-a")
    with pytest.raises(Cancelled, match="stopped at step 2 of 10"):
        on_step(2, 10)
    assert seen == [(1, 10)]
    newer = flags.arm("session-a")
    flags.finish("session-a", flag)  # an old run ending does not drop the newer flag
    assert flags.stop("session-a") and newer.is_set()
    flags.finish("session-a", newer)
    assert not flags.stop("session-a")  # nothing running: nothing to stop
    fresh = flags.take("session-c")  # a direct API call gets a flag of its own
    assert isinstance(fresh, threading.Event) and not fresh.is_set()
