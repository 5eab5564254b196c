"""LayerDiffuse's layer modes, each against the obvious baseline in the same run.

On unseen one-object scenes (objects of the models' 128-emoji vocabulary, new backgrounds):

- ``bg2fg``: a foreground for a given background. Native: ``tiny-layerdiffuse-bg2fg``.
  Baseline: ``tiny-layerdiffuse`` from the object's prompt alone (blind to the background).
  Score: tiny-judge top-1/top-5 of the foreground composited over that background, cropped
  to the foreground and rescaled (so object size does not decide).
- ``fg2bg``: a background behind a given foreground. Native: ``tiny-layerdiffuse-fg2bg``.
  Baseline: ``tiny-sd`` from the background's prompt alone (blind to the foreground). Score:
  judge top-1 of the given object over the generated background (a background made for the
  object keeps it readable).
- ``joint``: foreground + background + blend. Native: ``tiny-layerdiffuse-joint``. Baseline:
  the layers made independently (``tiny-layerdiffuse`` foreground, ``tiny-sd`` background and
  blend). Scores: judge top-1 of foreground over background, and the recomposition error
  (mean |blend - foreground over background|, 0-1): how well the layers add up to the picture.

    python benchmarks/layer_modes.py [-n 32]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from layerstudio.eval.transparency import SIZE, over
from layerstudio.eval.vae import EVAL_SEED
from layerstudio.presets import PRESETS, is_available, load_preset
from layerstudio.train.tasks import _to_tensor
from layerstudio.train.transparency import pair_batch

OPTIONS = dict(num_inference_steps=20, guidance_scale=4.0, height=SIZE, width=SIZE)


def _seeded() -> dict:
    return {**OPTIONS, "generator": torch.Generator().manual_seed(0)}


def _judge(judge, images: list[np.ndarray], captions: list[str]) -> dict:
    batch = torch.stack([_to_tensor(image[..., :3]) for image in images])
    return {"judge_top1": round(judge.accuracy(batch, captions, 1), 4),
            "judge_top5": round(judge.accuracy(batch, captions, 5), 4)}


def _object_view(rgba: np.ndarray, background: np.ndarray) -> np.ndarray:
    """The layer over the background, cropped to the layer's visible box (plus a margin) and
    resized back to SIZE: the judge then reads the object at one scale, whatever its size in
    the picture (scene objects are small, text-only ones fill the frame)."""
    from PIL import Image

    picture = over(rgba, background[..., :3])
    ys, xs = np.nonzero(rgba[..., 3] > 32)
    if len(ys) == 0:
        return picture
    side = max(ys.max() - ys.min(), xs.max() - xs.min()) + 1
    side = min(max(int(side * 1.25), 16), SIZE)
    cy, cx = (ys.max() + ys.min()) // 2, (xs.max() + xs.min()) // 2
    top = int(np.clip(cy - side // 2, 0, SIZE - side))
    left = int(np.clip(cx - side // 2, 0, SIZE - side))
    crop = picture[top:top + side, left:left + side]
    return np.asarray(Image.fromarray(crop).resize((SIZE, SIZE), Image.BICUBIC))


def _rgba(images) -> list[np.ndarray]:
    return [np.asarray(image.convert("RGBA")) for image in images]


def _timed(call):
    start = time.perf_counter()
    result = call()
    return result, time.perf_counter() - start


def bg2fg(judge, scenes, n: int) -> dict:
    _, backgrounds, captions, parts = scenes
    things = [p[0] for p in parts]
    native = load_preset("tiny-layerdiffuse-bg2fg")
    native.set_progress_bar_config(disable=True)
    made, seconds = _timed(lambda: [  # prompted as trained: the whole picture, "X on Y"
        np.asarray(native(caption, condition=ground, **_seeded()).images[0])
        for caption, ground in zip(captions, backgrounds, strict=True)])
    blind = load_preset("tiny-layerdiffuse")
    blind.set_progress_bar_config(disable=True)
    alone = _rgba(blind(things, **_seeded()).images)
    report = {"native": {**_judge(judge, [_object_view(f, b) for f, b in
                                          zip(made, backgrounds, strict=True)], things),
                         "seconds_per_image": round(seconds / n, 4)},
              "text_only": _judge(judge, [_object_view(f, b) for f, b in
                                          zip(alone, backgrounds, strict=True)], things)}
    report["ratio_top1"] = _ratio(report["native"]["judge_top1"],
                                  report["text_only"]["judge_top1"])
    return report


def fg2bg(judge, scenes, n: int) -> dict:
    foregrounds, _, captions, parts = scenes
    things, grounds = [p[0] for p in parts], [p[1] for p in parts]
    native = load_preset("tiny-layerdiffuse-fg2bg")
    native.set_progress_bar_config(disable=True)
    made, seconds = _timed(lambda: [
        np.asarray(native(caption, condition=thing_rgba, **_seeded()).images[0])
        for caption, thing_rgba in zip(captions, foregrounds, strict=True)])
    blind = load_preset("tiny-sd")
    blind.set_progress_bar_config(disable=True)
    plain = _rgba(blind(grounds, **_seeded()).images)
    report = {"native": {**_judge(judge, [over(f, b[..., :3]) for f, b in
                                          zip(foregrounds, made, strict=True)], things),
                         "seconds_per_image": round(seconds / n, 4)},
              "text_only": _judge(judge, [over(f, b[..., :3]) for f, b in
                                          zip(foregrounds, plain, strict=True)], things)}
    report["ratio_top1"] = _ratio(report["native"]["judge_top1"],
                                  report["text_only"]["judge_top1"])
    return report


def _recomposition_error(fg: list[np.ndarray], bg: list[np.ndarray], blend: list[np.ndarray]
                         ) -> float:
    errors = [np.abs(over(f, b[..., :3]).astype(np.float32) - m[..., :3]).mean() / 255
              for f, b, m in zip(fg, bg, blend, strict=True)]
    return round(float(np.mean(errors)), 4)


def joint(judge, scenes, n: int) -> dict:
    _, _, captions, parts = scenes
    things, grounds = [p[0] for p in parts], [p[1] for p in parts]
    native = load_preset("tiny-layerdiffuse-joint")
    native.set_progress_bar_config(disable=True)
    out, seconds = _timed(lambda: native(captions, foreground_prompt=things,
                                         background_prompt=grounds, **_seeded()))
    images = _rgba(out.images)
    fg, bg, blend = images[0::3], images[1::3], images[2::3]
    layerdiffuse, sd = load_preset("tiny-layerdiffuse"), load_preset("tiny-sd")
    for pipe in (layerdiffuse, sd):
        pipe.set_progress_bar_config(disable=True)
    alone_fg = _rgba(layerdiffuse(things, **_seeded()).images)
    alone_bg = _rgba(sd(grounds, **_seeded()).images)
    alone_blend = _rgba(sd(captions, **_seeded()).images)
    report = {
        "native": {**_judge(judge, [over(f, b[..., :3]) for f, b in zip(fg, bg, strict=True)],
                            things),
                   "recomposition_error": _recomposition_error(fg, bg, blend),
                   "seconds_per_picture": round(seconds / n, 4)},
        "independent": {**_judge(judge, [over(f, b[..., :3]) for f, b in
                                         zip(alone_fg, alone_bg, strict=True)], things),
                        "recomposition_error": _recomposition_error(alone_fg, alone_bg,
                                                                    alone_blend)}}
    report["ratio_recomposition_error"] = _ratio(
        report["independent"]["recomposition_error"], report["native"]["recomposition_error"])
    return report


def _ratio(numerator: float, denominator: float) -> float | None:
    return None if denominator == 0 else round(numerator / denominator, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=32)
    args = parser.parse_args()
    scenes = pair_batch(EVAL_SEED, 0, args.n, pool=128)
    judge = load_preset("tiny-judge").eval()
    report = {"benchmark": "layer_modes", "n": args.n}
    for name, run in (("bg2fg", bg2fg), ("fg2bg", fg2bg), ("joint", joint)):
        preset = f"tiny-layerdiffuse-{name}"
        if is_available(PRESETS[preset]):
            report[name] = run(judge, scenes, args.n)
        else:
            report[name] = f"{preset} is not trained here (layerstudio train {preset})"
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
