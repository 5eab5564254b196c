"""Real-ESRGAN upscaling: the ncnn reader on a model written here, the shipped conversion
against Lanczos, alpha handling, tiling, documents and the command line."""

from __future__ import annotations

import struct

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from layerstudio.cli import main
from layerstudio.datasets.assets.emoji import catalog, render_emoji
from layerstudio.document import Layer, LayerStack
from layerstudio.errors import InvalidInputError
from layerstudio.pipelines.realesrgan import from_ncnn
from layerstudio.pipelines.realesrgan.ncnn import FP16_TAG
from layerstudio.pipelines.realesrgan.upscale import upscale_rgba
from layerstudio.presets import load_preset
from layerstudio.upscale import upscale_stack

PARAM = """7767517
9 10
Input            in      0 1 data
Split            split   1 2 data a b
Convolution      c0      1 1 b c 0=4 1=3 4=1 5=1 6=108
PReLU            p0      1 1 c d 0=4
Convolution      c1      1 1 d e 0=4 1=3 4=1 5=1 6=144
PReLU            p1      1 1 e f 0=4
Convolution      c2      1 1 f g 0=12 1=3 4=1 5=1 6=432
PixelShuffle     ps      1 1 g h 0=2
Interp           up      1 1 a i 0=1 1=2.000000e+00 2=2.000000e+00
"""
TAIL = "BinaryOp         add     2 1 h i out\n"


def _write_model(tmp_path, weights: list[np.ndarray], extra: bytes = b"",
                 param: str = PARAM + TAIL):
    """An ncnn model in files: c0 stored fp16 (tagged), c1 fp32 (tag 0), c2 fp16."""
    data = b""
    for number, (weight, bias) in enumerate(zip(weights[0::3], weights[1::3], strict=True)):
        if number == 1:
            data += struct.pack("<I", 0) + weight.astype("<f4").tobytes()
        else:
            data += struct.pack("<I", FP16_TAG) + weight.astype("<f2").tobytes()
        data += bias.astype("<f4").tobytes()
        if number < 2:
            data += weights[3 * number + 2].astype("<f4").tobytes()
    (tmp_path / "m.param").write_text(param.replace("9 10", f"{param.count(chr(10)) - 2} 10"))
    (tmp_path / "m.bin").write_bytes(data + extra)
    return tmp_path / "m.param", tmp_path / "m.bin"


def _weights(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    shapes = [(4, 3, 3, 3), (4,), (4,), (4, 4, 3, 3), (4,), (4,), (12, 4, 3, 3), (12,), (0,)]
    return [rng.normal(0, 0.3, s).astype(np.float16).astype(np.float32) for s in shapes]


def test_the_ncnn_reader_puts_every_weight_in_its_place(tmp_path):
    weights = _weights()
    model = from_ncnn(*_write_model(tmp_path, weights))
    assert (model.config.num_feat, model.config.num_conv, model.config.upscale) == (4, 1, 2)
    image = torch.rand(1, 3, 8, 8)
    t = [torch.from_numpy(w) for w in weights]
    x = F.prelu(F.conv2d(image, t[0], t[1], padding=1), t[2])
    x = F.prelu(F.conv2d(x, t[3], t[4], padding=1), t[5])
    x = F.pixel_shuffle(F.conv2d(x, t[6], t[7], padding=1), 2)
    expected = x + F.interpolate(image, scale_factor=2, mode="nearest")
    with torch.no_grad():
        torch.testing.assert_close(model(image), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("change", "message"), [
    ({"extra": b"\0" * 8}, "left over"),
    ({"param": PARAM + TAIL.replace("BinaryOp", "Softmax ")}, "not supported"),
    ({"param": "123\n"}, "not an ncnn .param file"),
])
def test_a_wrong_ncnn_model_is_refused_by_name(tmp_path, change, message):
    with pytest.raises(ValueError, match=message):
        from_ncnn(*_write_model(tmp_path, _weights(), **change))


def test_truncated_weights_are_refused(tmp_path):
    param, weights = _write_model(tmp_path, _weights())
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ValueError, match="ends before"):
        from_ncnn(param, weights)


@pytest.fixture(scope="module")
def upscaler():
    return load_preset("realesr-animevideov3")


def test_the_shipped_upscaler_computes_what_the_ncnn_runtime_computes(upscaler):
    """tests/data/realesrgan_ncnn_reference.npz: a 12 px input and the output of the PyPI
    ``ncnn`` runtime (1.0.20261020, CPU, fp32) on the released realesr-animevideov3-x4 files."""
    from pathlib import Path

    reference = np.load(Path(__file__).parent / "data" / "realesrgan_ncnn_reference.npz")
    with torch.no_grad():
        made = upscaler(torch.from_numpy(reference["input"])[None])[0].numpy()
    np.testing.assert_allclose(made, reference["output"], atol=1e-5)


def test_the_shipped_upscaler_beats_lanczos_on_emoji(upscaler):
    ours, lanczos = [], []
    for name in catalog()[:400:50]:
        art = render_emoji(name, 128).astype(np.float32) / 255
        truth = np.ones((128, 128, 3), np.float32)
        truth[:art.shape[0], :art.shape[1]] = art[..., :3] * art[..., 3:] + 1 - art[..., 3:]
        small = cv2.resize(truth, (32, 32), interpolation=cv2.INTER_AREA)
        opaque = np.concatenate([small, np.ones((32, 32, 1), np.float32)], -1)
        made = upscale_rgba(upscaler, opaque, 4)
        assert made.shape == (128, 128, 4) and (made[..., 3] == 1).all()
        ours.append(np.mean((made[..., :3] - truth) ** 2))
        lanczos.append(np.mean((np.clip(cv2.resize(small, (128, 128),
                                                   interpolation=cv2.INTER_LANCZOS4), 0, 1)
                                - truth) ** 2))
    gain = 10 * np.log10(np.mean(lanczos) / np.mean(ours))
    assert gain > 1.0  # dB; measured 2.6 on these


def test_transparent_pixels_do_not_bleed_into_the_colour(upscaler):
    rgba = np.zeros((40, 40, 4), np.float32)
    rgba[..., 1] = 1.0  # green under the transparent pixels: must not show
    yy, xx = np.mgrid[:40, :40]
    disc = (yy - 20) ** 2 + (xx - 20) ** 2 < 12 ** 2
    rgba[disc] = (0.9, 0.1, 0.1, 1.0)
    made = upscale_rgba(upscaler, rgba, 2)
    assert made.shape == (80, 80, 4)
    visible = made[..., 3] > 0.5
    assert made[visible, 1].max() < 0.25
    assert made[0:10, 0:10, 3].max() == 0 and made[38:42, 38:42, 3].min() == 1


def test_tiles_leave_no_seams(upscaler):
    rng = np.random.default_rng(1)
    picture = cv2.resize(rng.random((12, 12, 3)).astype(np.float32), (50, 40))
    rgba = np.concatenate([picture, np.ones((40, 50, 1), np.float32)], -1)
    whole = upscale_rgba(upscaler, rgba, 4, tile=256)
    tiled = upscale_rgba(upscaler, rgba, 4, tile=16, overlap=18)
    np.testing.assert_allclose(tiled, whole, atol=2e-4)


def _document() -> LayerStack:
    background = np.full((24, 32, 4), (200, 220, 240, 255), np.uint8)
    sticker = np.zeros((10, 12, 4), np.uint8)
    sticker[2:8, 2:10] = (250, 40, 40, 255)
    stack = LayerStack(32, 24, [Layer("background", background, kind="background")])
    stack.add(Layer("sticker", sticker, offset=(5, 7), opacity=0.8))
    return stack


def test_a_document_is_upscaled_layer_by_layer(upscaler):
    stack = _document()
    bigger = upscale_stack(stack, 2, model=upscaler)
    assert (bigger.width, bigger.height) == (64, 48)
    sticker = bigger.layers[1]
    assert sticker.offset == (10, 14) and sticker.pixels.shape == (20, 24, 4)
    assert sticker.pixels.dtype == np.uint8 and sticker.opacity == 0.8
    assert bigger.metadata["upscaled"]["scale"] == 2
    small = cv2.resize(np.asarray(bigger.composite()), (32, 24), interpolation=cv2.INTER_AREA)
    assert np.abs(small.astype(int) - np.asarray(stack.composite()).astype(int)).mean() < 6
    only = upscale_stack(stack, 4, model=upscaler, layer=1)
    assert only.layers[0].pixels.shape == (96, 128, 4)
    with pytest.raises(InvalidInputError, match="2 or 4"):
        upscale_stack(stack, 3, model=upscaler)


def test_the_upscale_command(tmp_path):
    source = tmp_path / "doc.psd"
    _document().save(source)
    out = tmp_path / "big.ora"
    assert main(["upscale", str(source), "-o", str(out), "--scale", "2"]) == 0
    loaded = LayerStack.load(out)
    assert (loaded.width, loaded.height) == (64, 48) and len(loaded) == 2


def test_generate_decompose_and_batch_take_upscale(tmp_path):
    from layerstudio.batch import read_jobs
    from layerstudio.studio import Studio

    studio = Studio(device="cpu")
    made = studio.generate("an ice cream", steps=2, upscale=2)
    assert (made.width, made.height) == (128, 128) and made.metadata["upscaled"]["scale"] == 2
    picture = np.asarray(_document().composite())
    split = studio.decompose(picture, upscale="4")
    assert (split.width, split.height) == (128, 96) and "recomposition_psnr" in split.metadata
    for wrong in (3, 2.5, "big", True):
        with pytest.raises(InvalidInputError, match="upscale must be 2 or 4"):
            studio.decompose(picture, upscale=wrong)
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text('{"prompt": "a cloud", "upscale": 4}\n'
                    '{"task": "decompose", "image": "x.png", "upscale": 2}\n')
    assert [job.arguments["upscale"] for job in read_jobs(jobs)] == [4, 2]


def test_the_upscale_pipeline_chains_after_a_generator(upscaler, tmp_path):
    from layerstudio.pipelines.realesrgan import RealESRGANPipeline

    pipe = RealESRGANPipeline(upscaler=upscaler)
    pipe.set_progress_bar_config(disable=True)
    made = load_preset("tiny-layerdiffuse")(["an ice cream"], num_inference_steps=2,
                                            generator=torch.Generator().manual_seed(0))
    big = pipe(made.images, scale=2).images
    assert big[0].size == (128, 128) and big[0].mode == "RGBA"
    batch = np.random.default_rng(0).random((2, 10, 12, 3)).astype(np.float32)
    as_np = pipe(batch, scale=4, output_type="np").images
    assert as_np.shape == (2, 40, 48, 4)
    as_pt = pipe(torch.from_numpy(batch).permute(0, 3, 1, 2), output_type="pt").images
    torch.testing.assert_close(as_pt, torch.from_numpy(as_np).permute(0, 3, 1, 2))
    assert pipe(batch[0], output_type="pil").images[0].mode == "RGB"

    def stop(pipeline, step, timestep, tensors):
        pipeline._interrupt = True
        return tensors

    assert len(pipe(list(batch), callback_on_step_end=stop, output_type="np").images) == 1
    pipe.save_pretrained(tmp_path)
    again = RealESRGANPipeline.from_pretrained(tmp_path, local_files_only=True)
    again.set_progress_bar_config(disable=True)
    np.testing.assert_allclose(again(batch, output_type="np").images, as_np, atol=1e-6)
    for options, message in (({"scale": 3}, "scale"), ({"output_type": "latent"}, "pil"),
                             ({"image": [batch[0], batch[0, :5]], "output_type": "np"},
                              "differ in size")):
        with pytest.raises(ValueError, match=message):
            pipe(**{"image": batch, **options})
