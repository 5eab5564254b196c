"""Regenerate the sample pictures of the README and docs from the shipped checkpoints.

Each text-to-image preset draws prompts of its own vocabulary (the first of its sorted
known prompts, spread over the list) at its 64 px, through the one door users take
(`Studio.generate(..., upscale=4)`): the result is 256 px from the shipped Real-ESRGAN
upscaler. Transparent results are shown over a checkerboard. Writes
docs/images/PRESET-samples.png.

    python docs/pictures.py [--only tiny-sd tiny-layerdiffuse] [--count 8]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from layerstudio.imaging import over_checkerboard
from layerstudio.presets import known_prompts
from layerstudio.studio import Studio

IMAGES = Path(__file__).resolve().parent / "images"
PRESETS = ("tiny-sd", "tiny-dit", "tiny-layerdiffuse")
TILE, LABEL = 256, 18


def prompts(preset: str, count: int) -> list[str]:
    """``count`` prompts spread evenly over the preset's sorted vocabulary."""
    known = known_prompts(preset)
    return [known[i * len(known) // count] for i in range(count)]


def sheet(studio: Studio, preset: str, count: int, columns: int = 4) -> Image.Image:
    font = ImageFont.load_default(size=12)
    rows = (count + columns - 1) // columns
    out = Image.new("RGB", (columns * (TILE + 4), rows * (TILE + LABEL + 4)), "white")
    draw = ImageDraw.Draw(out)
    for i, prompt in enumerate(prompts(preset, count)):
        stack = studio.generate(prompt, model=preset, seed=i, upscale=4)
        picture = over_checkerboard(stack.composite(), cell=16, light=150, dark=110)
        x, y = (i % columns) * (TILE + 4), (i // columns) * (TILE + LABEL + 4)
        out.paste(picture.resize((TILE, TILE)), (x, y))
        draw.rectangle((x, y + TILE, x + TILE, y + TILE + LABEL), fill="black")
        draw.text((x + 3, y + TILE + 2), prompt, fill="white", font=font)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=PRESETS, default=list(PRESETS))
    parser.add_argument("--count", type=int, default=8)
    args = parser.parse_args()
    studio = Studio()
    for preset in args.only:
        path = IMAGES / f"{preset}-samples.png"
        sheet(studio, preset, args.count).save(path)
        print(path)


if __name__ == "__main__":
    main()
