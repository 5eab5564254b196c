"""The web UI in a real browser: Playwright drives Debian's chromium package (browsers cannot be
downloaded here, so it is started through ``executable_path``), headless, with no sandbox (CI
runs as root) and with background networking off (this machine has no outside network).

Set LAYERSTUDIO_UI_SCREENSHOT=docs/images/ui.png to refresh the README's screenshot.
"""

from __future__ import annotations

import os
import shutil
import socket

import pytest

pytest.importorskip("gradio")
pytest.importorskip("playwright.sync_api")
from playwright.sync_api import sync_playwright

from layerstudio import LayerStack
from layerstudio.ui.app import launch

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync"]


@pytest.fixture(scope="module")
def page():
    if CHROMIUM is None:
        pytest.skip("Debian's chromium package is not installed (.ci/setup installs it)")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = launch(port=port, block=False, quiet=True)
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, headless=True,
                                         args=CHROMIUM_FLAGS)
        tab = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
        tab.goto(app.local_url)
        yield tab
        browser.close()
    app.close()


def shows(page, selector: str, text: str, timeout: int) -> None:
    """Wait until the element ``selector`` shows ``text``."""
    page.wait_for_function("([selector, text]) => document.querySelector(selector)"
                           "?.innerText.includes(text)", arg=[selector, text], timeout=timeout)


def model_choices(page) -> list[str]:
    page.locator("#model input").click()
    options = page.locator("ul[role=listbox] li")
    options.first.wait_for(timeout=10_000)
    names = [text.replace("✓", "").strip() for text in options.all_inner_texts()]
    page.keyboard.press("Escape")
    return names


def test_the_model_list_follows_the_mode(page):
    assert model_choices(page) == ["tiny-layerdiffuse", "tiny-sd", "tiny-dit",
                                   "tiny-layerdiffuse-laptop30"]
    page.get_by_label("Layers in boxes").check()
    page.wait_for_function(
        "document.querySelector('#model input')?.value === 'tiny-art'", timeout=10_000)
    assert model_choices(page) == ["tiny-art", "tiny-art-tf2x"]
    page.get_by_label("Transparent layer").check()


def test_generate_see_layers_and_download_psd(page, tmp_path):
    page.get_by_label("Prompt").fill("a cat and a ball")
    page.get_by_label("Layers in boxes").check()
    page.locator("#generate").click()
    shows(page, "#status", "4 layers", timeout=60_000)
    page.locator("#layers .caption-label").nth(3).wait_for(timeout=20_000)
    captions = page.locator("#layers .caption-label").all_inner_texts()
    assert captions == ["merged (as generated) (hidden)", "region 2", "region 1", "background"]
    assert page.locator("#composite img").get_attribute("src").split("?")[0].endswith(".png")

    page.locator("#layers .thumbnail-item").nth(3).click()  # select the background in the list
    page.wait_for_function(
        "document.querySelector('#layer-name textarea, #layer-name input')?.value"
        " === 'background'", timeout=20_000)
    name = page.locator("#layer-name textarea, #layer-name input").first
    name.fill("sky")
    name.press("Enter")
    page.wait_for_function(
        "[...document.querySelectorAll('#layers .caption-label')].some(e => e.innerText"
        " === 'sky')", timeout=20_000)

    page.locator("#export").click()
    link = page.locator("#download a").first
    link.wait_for(timeout=30_000)
    with page.expect_download() as download:
        link.click()
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    assert saved.name == "layerstudio-a-cat-and-a-ball.psd"
    stack = LayerStack.load(saved)
    assert [layer.name for layer in stack.layers] == \
        ["sky", "region 1", "region 2", "merged (as generated)"]
    if os.environ.get("LAYERSTUDIO_UI_SCREENSHOT"):
        page.screenshot(path=os.environ["LAYERSTUDIO_UI_SCREENSHOT"], full_page=True)


def stroke(page, editor: str) -> None:
    """Pick the brush of the image editor ``editor`` and draw a short diagonal stroke."""
    page.locator(editor).get_by_role("button", name="Brush").first.click()
    canvas = page.locator(f"{editor} canvas").first
    canvas.scroll_into_view_if_needed()  # mouse events outside the viewport are lost
    box = canvas.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x - 40, y - 40)
    page.mouse.down()
    for i in range(1, 11):
        page.mouse.move(x - 40 + 5 * i, y - 40 + 4 * i)
    page.mouse.up()


def test_a_drawn_region_becomes_a_layer(page):
    page.get_by_label("Layers in boxes").check()
    page.get_by_label("Draw regions").check()
    stroke(page, "#sketch")
    page.locator("#generate").click()
    shows(page, "#status", "3 layers", timeout=60_000)
    page.locator("#layers .caption-label").nth(2).wait_for(timeout=20_000)
    assert page.locator("#layers .caption-label").all_inner_texts() == \
        ["merged (as generated) (hidden)", "region 1", "background"]
    page.get_by_label("Type boxes").check()


def test_regenerate_inside_a_painted_mask(page):
    page.get_by_text("Regenerate the selected layer").click()
    page.locator("#mask-load").click()
    # the layer is on the canvas: strokes from now on are kept
    shows(page, "#regenerate-notice", "Paint over", timeout=30_000)
    page.wait_for_timeout(300)
    page.locator("#regen-prompt textarea").fill("a red apple")
    notice = ""
    for _attempt in range(3):
        # the editor hands its painted layer over some time after the stroke ends, later on a
        # busy machine (and a stroke on a canvas still loading is lost): a regenerate before
        # that redoes the whole layer, so paint and try again
        stroke(page, "#mask")
        page.wait_for_timeout(1500)
        before = page.locator("#regenerate-notice").inner_text()
        page.locator("#regenerate").click()
        page.wait_for_function(
            "([before]) => { const t = document.querySelector('#regenerate-notice')?.innerText;"
            " return t && t !== before && t.includes('Regenerated'); }", arg=[before],
            timeout=60_000)
        notice = page.locator("#regenerate-notice").inner_text()
        if "(inside the painted mask)" in notice:
            break
    assert "(inside the painted mask)" in notice


def test_bad_input_shows_a_message_not_a_traceback(page):
    page.get_by_label("Layers in boxes").check()
    page.locator("#boxes textarea, #boxes input").first.fill("1,2,3")
    page.locator("#generate").click()
    toast = page.locator(".toast-body").filter(has_text="a box is 4 numbers")
    toast.first.wait_for(timeout=20_000)
    assert "Traceback" not in page.content()


def test_stop_ends_a_long_run_and_keeps_the_document(page):
    page.get_by_label("Transparent layer").check()
    page.get_by_text("Settings").click()
    for label, value in (("number input for Steps", "100"),):
        page.locator(f"input[aria-label='{label}']").fill(value)
        page.locator(f"input[aria-label='{label}']").press("Enter")
    size = page.get_by_label("Size (px)")
    size.fill("256")
    size.press("Enter")
    before = page.locator("#status").inner_text()
    page.locator("#generate").click()
    # the progress bar counts steps on the notice line; the first step waits for the model
    # to load, and CI machines are busy
    shows(page, "#generate-notice", "/100", timeout=90_000)
    page.locator("#stop").click()
    shows(page, "#generate-notice", "stopped at step", timeout=30_000)
    notice = page.locator("#generate-notice").inner_text()
    assert "Generating stopped at step" in notice and "of 100" in notice
    assert page.locator("#status").inner_text() == before


def test_the_decompose_tab_turns_a_picture_into_layers(page, tmp_path):
    from layerstudio.datasets.generate import generate

    picture = tmp_path / "design.png"
    generate("design", 3, size=96, split="heldout").stack.save(picture)
    page.get_by_role("tab", name="Decompose").click()
    page.locator("#decompose-picture input[type=file]").first.set_input_files(str(picture))
    page.locator("#decompose-picture canvas").first.wait_for(timeout=20_000)
    page.wait_for_timeout(500)
    page.locator("#decompose").click()
    shows(page, "#decompose-notice", "Made", timeout=60_000)
    notice = page.locator("#decompose-notice").inner_text()
    assert "by classical" in notice and "re-composite to the picture at" in notice
    assert page.locator("#status").inner_text().startswith("96x96 px")
    page.get_by_role("tab", name="Generate").click()


def test_upscale_the_document(page):
    """Runs after the Decompose test: the 96 px design becomes 192 px."""
    assert page.locator("#status").inner_text().startswith("96x96 px")
    page.get_by_text("Upscale (Real-ESRGAN)").click()
    page.locator("#upscale-scale").get_by_text("2x").click()
    page.locator("#upscale").click()
    shows(page, "#upscale-notice", "Upscaled", timeout=60_000)
    assert "192x192" in page.locator("#upscale-notice").inner_text()
    assert page.locator("#status").inner_text().startswith("192x192 px")


def test_brush_over_an_object_and_extract_it_with_its_shadow(page, tmp_path):
    """The brush path: strokes drawn on the picture in the editor become the region."""
    import numpy as np

    from layerstudio.datasets.generate import generate

    scene = generate("effects", 4, size=128)  # an object with a cast shadow
    picture = tmp_path / "photo.png"
    scene.stack.save(picture)
    ys, xs = np.nonzero(scene.extras["mask"] > 127)
    page.get_by_role("tab", name="Decompose").click()
    page.locator("#decompose-picture input[type=file]").first.set_input_files(str(picture))
    canvas = page.locator("#decompose-picture canvas").first
    canvas.wait_for(timeout=20_000)
    page.wait_for_timeout(500)
    page.locator("#decompose-picture button[aria-label='Brush']").first.click()
    box = canvas.bounding_box()
    scale = min(box["width"], box["height"]) / 128
    left = box["x"] + (box["width"] - 128 * scale) / 2
    top = box["y"] + (box["height"] - 128 * scale) / 2
    page.mouse.move(left + xs.min() * scale, top + ys.mean() * scale)
    page.mouse.down()
    for x in np.linspace(xs.min(), xs.max(), 8):
        page.mouse.move(left + x * scale, top + ys.mean() * scale, steps=2)
    page.mouse.up()
    page.locator("#extract-effects").click()
    shows(page, "#decompose-notice", "by effects-classical", timeout=60_000)
    notice = page.locator("#decompose-notice").inner_text()
    assert "by effects-classical" in notice and "99.0 dB" in notice
    # (gradio 6.31's editor hands back a brushed picture redrawn at its 800 px canvas)
    assert " · 2 layers" in page.locator("#status").inner_text()
    page.get_by_role("tab", name="Generate").click()


def test_split_an_illustration_and_recolour_a_region_by_clicking_it(page, tmp_path):
    """Anime layers in the UI: the method's convention list appears, the picture becomes the
    four production layers, and a click on the composite recolours the flat region there."""
    from layerstudio.datasets.generate import generate

    sample = generate("anime", 3, size=160, split="heldout", seed=13)
    picture = tmp_path / "art.png"
    sample.stack.save(picture)
    page.get_by_role("tab", name="Decompose").click()
    page.locator("#decompose-picture input[type=file]").first.set_input_files(str(picture))
    page.locator("#decompose-picture canvas").first.wait_for(timeout=20_000)
    page.wait_for_timeout(500)
    page.locator("#decompose-method input").fill("anime-classical")
    page.keyboard.press("Enter")
    page.locator("#decompose-convention").wait_for(state="visible", timeout=10_000)
    page.locator("#decompose").click()
    shows(page, "#decompose-notice", "by anime-classical", timeout=60_000)
    assert " · 4 layers" in page.locator("#status").inner_text()
    page.get_by_text("Illustration layers: recolour, shadow, line art").click()
    page.locator("#anime-click input[type=checkbox]").check()
    flat = sample.stack.layers[1]  # the illustration's own flat colour: click inside it
    ys, xs = (flat.pixels[..., 3] > 250).nonzero()
    x, y = xs[len(xs) // 2] + flat.offset[0], ys[len(ys) // 2] + flat.offset[1]
    image = page.locator("#composite img").first
    image.scroll_into_view_if_needed()
    box = image.bounding_box()
    shown = 320  # the 160 px canvas is sent enlarged 2x, and never drawn larger than that
    scale = min(box["width"] / shown, box["height"] / shown, 1)
    image.click(position={"x": (box["width"] - shown * scale) / 2 + (2 * x + 1) * scale,
                          "y": (box["height"] - shown * scale) / 2 + (2 * y + 1) * scale})
    shows(page, "#anime-notice", "Recoloured the region", timeout=30_000)
    page.locator("#anime-lines").click()
    shows(page, "#anime-notice", "Line art now", timeout=30_000)
    page.locator("#anime-click input[type=checkbox]").uncheck()
    page.get_by_role("tab", name="Generate").click()


def test_edit_step_by_step_add_add_remove(page):
    """The Edit tab: a session from a prompt, two objects added where the brush marks them,
    the first one's layer selected and removed, the history listing each step."""
    page.get_by_role("tab", name="Edit").click()
    page.locator("#edit-background textarea").fill("a sun behind cloud")
    page.locator("#edit-from-prompt").click()
    shows(page, "#edit-notice", "New session on tiny-sd", timeout=60_000)
    for prompt in ("a smiling cat face with heart shaped eyes", "a dove of peace"):
        page.locator("#edit-prompt textarea").fill(prompt)
        page.locator("#edit-paint").click()
        shows(page, "#edit-notice", "Brush roughly", timeout=30_000)
        page.wait_for_timeout(300)
        stroke(page, "#edit-mask")
        page.wait_for_timeout(1000)  # the editor sends its painted layer after the stroke
        page.locator("#edit-add").click()
        shows(page, "#edit-notice", f"add '{prompt}'", timeout=60_000)
    shows(page, "#status", "3 layers", timeout=20_000)
    page.locator("#layers .caption-label").nth(1).click()  # top first: the first edit's layer
    page.locator("#edit-remove").click()
    shows(page, "#edit-notice", "3. remove layer 1", timeout=60_000)  # "Done in ..: 3. ..."
    assert " · 2 layers" in page.locator("#status").inner_text()
    history = page.locator("#edit-history textarea").input_value()
    assert history.splitlines()[-1] == "3. remove layer 1"
    assert "Traceback" not in page.content()
    page.get_by_role("tab", name="Generate").click()
