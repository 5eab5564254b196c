"""`layerstudio eval PRESET`: quality and speed of a shipped preset, as one JSON object.

- tiny-judge: top-1 / top-5 accuracy on renders from a seed stream training never draws.
- tiny-sd, tiny-dit, tiny-layerdiffuse: images for the captions of ``transparent`` samples
  (solid style) from a seed stream training never uses: with ``split='train'`` naming the emoji
  pool of its recipe (unseen samples of its vocabulary), with ``'heldout'`` naming held-out
  emoji it never saw; scored by tiny-judge (the named emoji among its top-1 / top-5 guesses,
  and a forced choice within the pool), with the VAE's own ceiling, and seconds per image.
- tiny-layerdiffuse also: alpha soft IoU and alpha-weighted RGB L1 of its transparent VAE
  round trip on held-out ground truth (layerstudio.eval.transparency); its RGBA images are
  judged over white.
All report peak memory (resident set on CPU, allocated on CUDA).
"""

from __future__ import annotations

import resource
import time
from typing import Any

import numpy as np
import torch

from ..presets import get_preset, load_preset, training_pool

__all__ = ["evaluate"]


def _peak_memory_mb() -> float:
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _judge_images(judge, images: torch.Tensor, captions: list[str]) -> dict[str, float]:
    return {"judge_top1": round(judge.accuracy(images, captions, top_k=1), 4),
            "judge_top5": round(judge.accuracy(images, captions, top_k=5), 4)}


def judge_report(judge, n: int) -> dict[str, float]:
    """Top-1 / top-5 of ``judge`` on the first ``n`` renders of the evaluation stream."""
    from ..train.tasks import JudgeTask, judge_batch

    images, labels = judge_batch(JudgeTask.EVAL_SEED, 0, n)
    return {"judge_top1": round(judge.label_accuracy(images, labels, top_k=1), 4),
            "judge_top5": round(judge.label_accuracy(images, labels, top_k=5), 4)}


def evaluate_judge(n: int) -> dict[str, Any]:
    judge = load_preset("tiny-judge").eval()
    start = time.perf_counter()
    result = judge_report(judge, n)
    result["seconds_per_image"] = round((time.perf_counter() - start) / n, 5)
    return result


def evaluate_text_to_image(preset: str, split: str, n: int, seed: int,
                           pipeline=None, judge=None) -> dict[str, Any]:
    """Generate one image per caption and score it (``pipeline``/``judge`` may be given, e.g.
    an untrained baseline, instead of the shipped presets)."""
    from ..datasets.assets.emoji import emoji_pool
    from ..train.tasks import _to_tensor
    from .transparency import over
    from .vae import eval_samples, flattened, round_trip

    pipe = pipeline or load_preset(preset)
    pipe.set_progress_bar_config(disable=True)
    judge = judge or load_preset("tiny-judge").eval()
    info = get_preset(preset)
    pool = training_pool(preset) if split == "train" else None
    samples = eval_samples(split, n, seed, pool)
    captions = [sample.caption for sample in samples]
    start = time.perf_counter()
    images = pipe(captions, num_inference_steps=info.steps, guidance_scale=info.guidance,
                  height=info.resolution, width=info.resolution,
                  generator=torch.Generator().manual_seed(seed)).images
    seconds = (time.perf_counter() - start) / n
    white = np.full((info.resolution, info.resolution, 3), 255, np.uint8)
    batch = torch.stack([_to_tensor(over(np.asarray(image), white) if image.mode == "RGBA"
                                    else np.asarray(image.convert("RGB")))
                         for image in images])
    result = _judge_images(judge, batch, captions)
    if pool is not None:  # forced choice among the emoji the model was trained on
        names = {e.caption for e in emoji_pool("train", pool)}
        among = [i for i, name in enumerate(judge.config.class_names) if name in names]
        result["judge_top1_in_pool"] = round(judge.accuracy(batch, captions, 1, among), 4)
    # The ceiling: the real renders of the same captions through the VAE alone. A latent
    # model cannot score above what its VAE lets the judge see.
    decoded = round_trip(pipe.vae, flattened(samples))
    result["vae_ceiling_top1"] = round(judge.accuracy(decoded, captions, 1), 4)
    return {**result, "seconds_per_image": round(seconds, 4)}


def evaluate(preset: str, split: str = "heldout", n: int = 64, seed: int = 0) -> dict[str, Any]:
    """Evaluate a shipped preset; returns the JSON-able report."""
    info = get_preset(preset)
    if preset == "tiny-judge":
        result = evaluate_judge(n)
    elif preset in ("tiny-sd", "tiny-dit"):
        result = evaluate_text_to_image(preset, split, n, seed)
    elif preset == "tiny-layerdiffuse":
        from .transparency import alpha_reconstruction

        pipe = load_preset(preset)
        result = evaluate_text_to_image(preset, split, n, seed, pipeline=pipe)
        native = alpha_reconstruction(pipe, n)["native"]
        result["alpha_soft_iou_heldout"] = native["alpha_soft_iou"]
        result["alpha_weighted_rgb_l1_heldout"] = native["alpha_weighted_rgb_l1"]
    else:
        from ..errors import InvalidInputError

        raise InvalidInputError(f"no evaluation is defined for {preset!r} yet")
    return {"preset": info.name, "split": split, "n": n, "seed": seed, **result,
            "peak_memory_mb": round(_peak_memory_mb(), 1),
            "device": "cuda" if torch.cuda.is_available() else "cpu"}
