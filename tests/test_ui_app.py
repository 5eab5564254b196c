"""The web UI served for real and driven through ``gradio_client``: generate with a shipped
tiny preset, change a layer, export a PSD, open it again; errors arrive as messages and two
clients never see each other's documents."""

from __future__ import annotations

import socket

import numpy as np
import pytest

pytest.importorskip("gradio")
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from layerstudio import BlendMode, Layer, LayerStack
from layerstudio.studio import Studio
from layerstudio.ui.app import build_app, launch, theme

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    app = launch(port=free_port(), block=False, quiet=True, max_upload_mb=1)
    yield app
    app.close()


def client(server) -> Client:
    return Client(server.local_url, verbose=False, download_files=True)


def generate(c: Client, prompt: str, mode: str = "fg", model: str = "tiny-layerdiffuse",
             seed: int = 1, boxes: str = "", layout: str = "Type boxes", randomise=False):
    return c.predict(prompt, "", mode, model, seed, randomise, 4, 4.0, 64, None, None, "",
                     "", layout, boxes, None, 3, False, 1.0, api_name="/generate")


def status(result) -> str:
    return result[1]


def test_generate_edit_export_and_reopen(server, tmp_path):
    c = client(server)
    result = generate(c, "a cat and a ball", mode="layers", model="tiny-art",
                      boxes="4,8,28,28;30,28,28,28")
    assert status(result).startswith("64x64 px · 4 layers · model tiny-art, seed 1, steps 4")
    assert result[-2] == 1  # the seed that was used comes back
    assert result[-1].startswith("Made 4 layers in")
    assert "Note: tiny-art was trained on" in result[-1]  # "a cat and a ball" is not an emoji
    result = c.predict(1, api_name="/select_layer")
    assert result[4]["value"] == "region 1"
    c.predict("cat", "object", True, 50, "multiply", api_name="/set_layer")
    result = c.predict(api_name="/duplicate")
    assert status(result).split(" · ")[1] == "5 layers"
    c.predict(api_name="/undo")
    c.predict(api_name="/move_up")
    exported = c.predict("PSD", api_name="/export")
    assert exported.endswith("layerstudio-a-cat-and-a-ball.psd")
    stack = LayerStack.load(exported)
    assert [layer.name for layer in stack.layers] == \
        ["background", "region 2", "cat", "merged (as generated)"]
    cat = stack.layers[2]
    assert cat.blend_mode is BlendMode.MULTIPLY and abs(cat.opacity - 0.5) < 1 / 255
    assert not stack.layers[3].visible  # the model's own merge stays a hidden reference
    reopened = c.predict(handle_file(exported), api_name="/open")
    assert status(reopened).startswith("64x64 px · 4 layers")
    assert [choice[0] for choice in reopened[3]["choices"]][1] == "2: cat"


def test_open_a_real_photoshop_file_and_export_it_again(server, psd_fixtures):
    c = client(server)
    opened = c.predict(handle_file(str(psd_fixtures / "group.psd")), api_name="/open")
    assert status(opened) == "100x200 px · 2 layers"
    assert [item["caption"] for item in opened[2]["value"]] == ["Group 1 / Shape 1", "Background"]
    stack = LayerStack.load(c.predict("PSD", api_name="/export"))
    original = LayerStack.load(psd_fixtures / "group.psd")
    assert [(layer.name, layer.group) for layer in stack.layers] == \
        [(layer.name, layer.group) for layer in original.layers]
    assert (np.asarray(stack.composite()) == np.asarray(original.composite())).all()


def test_regenerate_one_layer_keeps_the_others(server, tmp_path):
    from PIL import Image

    from layerstudio.preview import placed

    c = client(server)
    generate(c, "a cat and a ball", mode="layers", model="tiny-art", boxes="4,8,28,28;30,28,28,28")
    before = LayerStack.load(c.predict("ZIP", api_name="/export"))
    c.predict(2, api_name="/select_layer")
    result = c.predict("a red apple", 0.8, 5, False, "tiny-layerdiffuse", None,
                       api_name="/regenerate_layer")
    assert result[-2] == 5 and result[-1].startswith("Regenerated 'region 2' (the whole layer)")
    after = LayerStack.load(c.predict("ZIP", api_name="/export"))
    assert after.layers[2].provenance["edit"]["prompt"] == "a red apple"
    for index in (0, 1, 3):
        assert (after.layers[index].pixels == before.layers[index].pixels).all()

    # a painted mask over the left half (the painting is the canvas enlarged 6x): the right
    # half of the layer, alpha included, stays exactly as it was
    paint = np.zeros((384, 384, 4), np.uint8)
    paint[:, :192] = (255, 0, 255, 255)
    Image.fromarray(paint).save(tmp_path / "paint.png")
    Image.new("RGB", (384, 384)).save(tmp_path / "background.png")
    painting = {"background": handle_file(str(tmp_path / "background.png")),
                "layers": [handle_file(str(tmp_path / "paint.png"))],
                "composite": handle_file(str(tmp_path / "background.png")), "id": None}
    result = c.predict("a blue ball", 1.0, 6, False, "tiny-layerdiffuse", painting,
                       api_name="/regenerate_layer")
    assert "(inside the painted mask)" in result[-1]
    masked = LayerStack.load(c.predict("ZIP", api_name="/export"))
    old = np.asarray(placed(after, after.layers[2]))
    new = np.asarray(placed(masked, masked.layers[2]))
    assert (new[:, 32:] == old[:, 32:]).all() and (new[:, :32] != old[:, :32]).any()


def test_errors_are_messages_and_sessions_are_separate(server, tmp_path):
    first, second = client(server), client(server)
    with pytest.raises(AppError, match="the prompt is empty"):
        generate(first, "   ")
    with pytest.raises(AppError, match=r"box 1 \('1,2,3'\): a box is 4 numbers"):
        generate(first, "a cat", mode="layers", model="tiny-art", boxes="1,2,3")
    with pytest.raises(AppError, match="there is no document yet"):
        first.predict("PSD", api_name="/export")
    generate(first, "an apple", randomise=True)
    with pytest.raises(AppError, match="there is no document yet"):
        second.predict(api_name="/duplicate")  # the first client's document is not here
    big = tmp_path / "big.png"
    big.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(2 * 1024 * 1024))
    with pytest.raises(Exception, match=r"(?i)file.*(large|size)|413"):
        second.predict(handle_file(str(big)), api_name="/open")  # over max_upload_mb=1


def test_app_is_local_by_default_and_queues_model_work():
    app = build_app(Studio(device="cpu"), concurrency=2)
    generate_event = next(d for d in app.fns.values() if d.api_name == "generate")
    assert generate_event.concurrency_limit == 2
    assert generate_event.concurrency_id == "model"
    assert app._queue.max_size == 64
    assert launch.__defaults__[0] == "127.0.0.1"
    fonts = theme().font
    assert all("googleapis" not in str(getattr(font, "stylesheet", lambda: "")())
               for font in fonts)


def test_a_server_path_sent_as_a_file_is_refused(server):
    import httpx

    secret = {"path": __file__, "meta": {"_type": "gradio.FileData"}}
    url = server.local_url
    event = httpx.post(url + "gradio_api/call/open", json={"data": [secret]}).json()["event_id"]
    with httpx.stream("GET", url + f"gradio_api/call/open/{event}") as reply:
        lines = list(reply.iter_lines())
    assert "event: error" in lines and "test_ui_app" not in "".join(lines)


def test_ui_command_checks_its_options(capsys):
    from layerstudio.cli import main

    assert main(["ui", "--concurrency", "0"]) == 2
    assert "--concurrency must be between 1 and 16" in capsys.readouterr().err
    assert main(["ui", "--max-upload-mb", "0"]) == 2
    assert "--max-upload-mb" in capsys.readouterr().err


def test_fifty_clients_opening_one_file_at_once_get_whole_pictures(server, tmp_path):
    """Identical previews for concurrent clients once shared one cache file that Gradio
    rewrote while others downloaded it (truncated pictures): every picture must decode."""
    from concurrent.futures import ThreadPoolExecutor

    from PIL import Image

    rng = np.random.default_rng(0)  # noise: large PNGs, so a rewrite takes long enough to see
    source = LayerStack(300, 240, layers=[
        Layer("noise", rng.integers(0, 256, (240, 300, 4), dtype=np.uint8))]).save(
        tmp_path / "shared.psd")  # under the test server's 1 MB upload cap

    def one_client(index: int) -> list[tuple[int, int]]:
        c = Client(server.local_url, verbose=False, download_files=str(tmp_path / str(index)),
                   httpx_kwargs={"timeout": 120})  # 50 uploads at once on two cores are slow
        opened = c.predict(handle_file(str(source)), api_name="/open")
        pictures = [opened[0]] + [item["image"] for item in opened[2]["value"]]
        sizes = []
        for picture in pictures:
            with Image.open(picture) as image:
                image.load()  # a truncated download raises here
                sizes.append(image.size)
        return sizes

    with ThreadPoolExecutor(50) as pool:
        results = list(pool.map(one_client, range(50)))
    assert len(results) == 50 and all(sizes == results[0] for sizes in results)


def test_move_scale_turn_and_flip_a_layer_then_undo(server, tmp_path):
    pixels = np.zeros((4, 6, 4), np.uint8)
    pixels[..., 3] = 255
    pixels[0, 0] = (255, 0, 0, 255)
    source = LayerStack(64, 64, layers=[
        Layer("ground", np.full((64, 64, 4), 255, np.uint8)),
        Layer("mark", pixels, offset=(10, 20))]).save(tmp_path / "mark.psd")
    c = client(server)

    def corner(result) -> tuple[int, int]:
        return tuple(int(field["value"]) for field in result[-2:])

    opened = c.predict(handle_file(str(source)), api_name="/open")
    assert corner(opened) == (10, 20)  # the selected (top) layer's X and Y
    assert corner(c.predict(30, 40, api_name="/move_layer")) == (30, 40)
    turned = c.predict(api_name="/rotate_right")
    assert corner(turned) == (31, 39)
    c.predict(200, api_name="/scale_layer")
    c.predict(api_name="/flip_horizontal")
    mark = LayerStack.load(c.predict("PSD", api_name="/export"))["mark"]
    assert mark.pixels.shape[:2] == (12, 8) and mark.offset == (29, 36)
    assert tuple(mark.pixels[0, 0]) == (255, 0, 0, 255)  # turned right, then mirrored back
    for _ in range(3):
        undone = c.predict(api_name="/undo")
    assert corner(undone) == (30, 40)


def test_decompose_a_picture_then_split_a_layer(server, tmp_path):
    from layerstudio.datasets.generate import generate as sample

    picture = tmp_path / "design.png"
    sample("design", 3, size=96, split="heldout").stack.save(picture)
    c = client(server)
    drawn = {"background": handle_file(str(picture)), "layers": [], "composite": None}
    result = c.predict(drawn, "classical", "auto", "", "", 0, None, False, "auto",
                       api_name="/decompose")
    assert result[-1].startswith("Made ") and "by classical" in result[-1]
    made = int(result[-1].split()[1])
    assert status(result).startswith(f"96x96 px · {made} layers")
    result = c.predict(0, api_name="/select_layer")
    result = c.predict("classical", "2", "", 0, None, api_name="/decompose_layer")
    assert result[-1].startswith("Split the layer into")
    boxed = c.predict(drawn, "classical", "auto", "0,0,2,2", "", 0, None, False, "auto",
                      api_name="/decompose")
    assert boxed[-1].startswith("Made 1 layer")
    with pytest.raises(AppError, match="upload a picture"):
        c.predict({"background": None, "layers": [], "composite": None}, "classical", "auto",
                  "", "", 0, None, False, "auto", api_name="/decompose")


def test_extract_an_object_with_its_shadow_on_layers_of_their_own(server, tmp_path):
    from layerstudio.datasets.generate import generate as sample

    scene = sample("effects", 4, size=128)  # a cast shadow
    picture = tmp_path / "photo.png"
    scene.stack.save(picture)
    ys, xs = np.nonzero(scene.extras["mask"] > 127)
    box = f"{xs.min()},{ys.min()},{np.ptp(xs) + 1},{np.ptp(ys) + 1}"
    c = client(server)
    drawn = {"background": handle_file(str(picture)), "layers": [], "composite": None}
    result = c.predict(drawn, "effects-classical", "auto", box, "", 0, None, True, "auto",
                       api_name="/decompose")
    assert "by effects-classical" in result[-1] and "99.0 dB" in result[-1]
    names = [layer.name for layer in LayerStack.load(c.predict("PSD", api_name="/export"))]
    assert names[0] == "background" and names[-1] == "object" and "shadow" in names
    # the tab's own button: with a method that is no effects method chosen, the first effects
    # method installed; one layer by default
    result = c.predict(drawn, "classical", box, 0, None, False, api_name="/extract_effects")
    assert "by effects-classical" in result[-1]
    names = [layer.name for layer in LayerStack.load(c.predict("PSD", api_name="/export"))]
    assert names == ["background", "object with effects"]
    with pytest.raises(AppError, match="brush over the object or type a box"):
        c.predict(drawn, "classical", "", 0, None, False, api_name="/extract_effects")


def test_upscale_the_document_or_the_selected_layer(server, tmp_path):
    pixels = np.zeros((8, 8, 4), np.uint8)
    pixels[2:6, 2:6] = (200, 30, 30, 255)
    source = LayerStack(32, 24, layers=[
        Layer("ground", np.full((24, 32, 4), 240, np.uint8)),
        Layer("mark", pixels, offset=(4, 6))]).save(tmp_path / "small.psd")
    c = client(server)
    c.predict(handle_file(str(source)), api_name="/open")
    result = c.predict("2x", "Whole document", api_name="/upscale")
    assert result[-1] == "Upscaled every layer 2x: the document is now 64x48."
    result = c.predict("4x", "Selected layer only", api_name="/upscale")
    assert result[-1].startswith("Upscaled the selected layer 4x")
    mark = LayerStack.load(c.predict("PSD", api_name="/export"))["mark"]
    # the PSD keeps layers cropped: the mark opened as 4x4 at 6,8
    assert mark.offset == (48, 64) and mark.pixels.shape[:2] == (32, 32)
    assert status(c.predict(api_name="/undo")).startswith("64x48 px")


def _painting(tmp_path, name: str, rows: slice, columns: slice) -> dict:
    """An Edit-tab painting: the mask brushed over ``rows`` x ``columns`` of the 384 px
    editor (a 64 px canvas shown 6x)."""
    from PIL import Image

    paint = np.zeros((384, 384, 4), np.uint8)
    paint[rows, columns] = (255, 0, 255, 255)
    Image.fromarray(paint).save(tmp_path / f"{name}.png")
    Image.new("RGB", (384, 384)).save(tmp_path / "editor.png")
    return {"background": handle_file(str(tmp_path / "editor.png")),
            "layers": [handle_file(str(tmp_path / f"{name}.png"))],
            "composite": handle_file(str(tmp_path / "editor.png")), "id": None}


def test_edit_tab_adds_adds_removes_undoes_and_resumes(server, tmp_path):
    c = client(server)
    result = c.predict("a sun", "tiny-sd", 3, False, 6, api_name="/edit_session_start")
    assert result[-1].startswith("New session on tiny-sd (seed 3, 64 px)")
    assert result[-4] == "0. background 'a sun'"
    apple = _painting(tmp_path, "apple", slice(0, 216), slice(0, 216))
    result = c.predict("a red apple", apple, 3, api_name="/edit_session_add")
    assert result[-1].startswith("Done in ") and ": 1. add 'a red apple'." in result[-1]
    assert "'a red apple' is not one of them" in result[-1]  # outside tiny-sd's prompts
    cat = _painting(tmp_path, "cat", slice(168, 384), slice(168, 384))
    result = c.predict("a cat", cat, 3, api_name="/edit_session_add")
    assert status(result).split(" · ")[1] == "3 layers"
    c.predict(1, api_name="/select_layer")
    result = c.predict("", None, 3, api_name="/edit_session_remove")
    assert result[-1].endswith(": 3. remove layer 1.")  # no prompt, no note
    assert result[-4].splitlines()[-1] == "3. remove layer 1"
    exported = LayerStack.load(c.predict("PSD", api_name="/export"))
    assert [layer.name for layer in exported.layers] == ["background", "a cat"]
    result = c.predict(3, api_name="/edit_session_undo")
    assert status(result).split(" · ")[1] == "3 layers" and "(undone)" in result[-4]
    saved, message = c.predict(api_name="/edit_session_save")
    assert saved.endswith(".memory.safetensors") and "Resume" in message
    other = client(server)  # a fresh browser: resume the downloaded session there
    result = other.predict(handle_file(saved), 0, api_name="/edit_session_resume")
    assert result[-1].startswith("Resumed a session of 4 steps on tiny-sd")
    assert status(result).split(" · ")[1] == "3 layers"
    other.predict(0, api_name="/select_layer")
    with pytest.raises(AppError, match="not 'background'"):
        other.predict("a dog", None, 0, api_name="/edit_session_replace")
    fresh = client(server)
    with pytest.raises(AppError, match="start a session first"):
        fresh.predict("a cat", apple, 0, api_name="/edit_session_add")
