"""The training loop every recipe stage runs: accelerate, AdamW with warm-up and cosine decay,
optional EMA, gradient clipping, checkpoints with resume, a JSON-lines log, sample grids, and
a progress bar. One CPU process by default; ``accelerate launch -m layerstudio train ...``
spreads it over GPUs (bf16 mixed precision on CUDA).

Output folder layout::

    OUTPUT/
      log.jsonl                    one line per logged step: stage, step, loss, lr, seconds
      samples/STAGE-STEP.png       sample grids
      checkpoints/STAGE/           accelerate state (model, optimiser, EMA) + progress.json
      training.json                per stage: steps, seconds and the hardware that ran them
      PRESET FILES                 what each stage exports (diffusers folder layout)
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from .recipe import Recipe, Stage
from .registry import TASKS
from .tasks import Task

__all__ = ["train"]

LOG_EVERY = 10


def _lr_lambda(stage: Stage):
    def schedule(step: int) -> float:
        if step < stage.warmup_steps:
            return (step + 1) / max(1, stage.warmup_steps)
        progress = (step - stage.warmup_steps) / max(1, stage.steps - stage.warmup_steps)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return schedule


def train(recipe: Recipe, output: str | Path, steps: int | None = None,
          resume: bool = False, workers: int = 0) -> Path:
    """Run every stage of ``recipe`` into ``output``; ``steps`` overrides each stage's count.

    With ``resume`` a stage continues from its last checkpoint, and finished stages are
    skipped. ``workers`` > 0 draws batches in that many processes (a GPU outruns one CPU
    drawing renders); 0 draws them on a thread beside the training. Returns the output folder.
    """
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    for number, stage in enumerate(recipe.stages):
        # A fresh Accelerator per stage: it numbers the models it prepares, and a checkpoint
        # must hold this stage's model as model 0 whether or not earlier stages ran.
        accelerator = Accelerator(mixed_precision="bf16" if torch.cuda.is_available()
                                  else "no")
        if steps is not None:
            stage = Stage(**{**stage.__dict__, "steps": steps,
                             "warmup_steps": min(stage.warmup_steps, steps)})
        set_seed(recipe.seed + number)
        task = TASKS[stage.task](stage, output, accelerator.device)
        _run_stage(accelerator, task, stage, output, resume, recipe.name, workers)
    return output


def hardware() -> str:
    """What is doing the training, in words: the GPU's name, else the CPU model and cores."""
    if torch.cuda.is_available():
        return f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        model = next((line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                      if line.startswith("model name")), model)
    return f"CPU {model}, {len(os.sched_getaffinity(0))} cores, {torch.get_num_threads()} threads"


def _record_stage(output: Path, recipe: str, stage: Stage, steps_run: int,
                  seconds: float) -> None:
    """Add this run of a stage to OUTPUT/training.json (shipped with the preset), so every
    checkpoint says which hardware made it and how long it took; a resumed stage lists
    each run."""
    path = output / "training.json"
    record = json.loads(path.read_text()) if path.is_file() else {"recipe": recipe,
                                                                  "stages": {}}
    runs = record["stages"].setdefault(stage.name, [])
    runs.append({"steps": steps_run, "of": stage.steps, "seconds": round(seconds, 1),
                 "hardware": hardware(), "torch": torch.__version__,
                 "date": date.today().isoformat()})
    path.write_text(json.dumps(record, indent=2) + "\n")


def _run_stage(accelerator, task: Task, stage: Stage, output: Path, resume: bool,
               recipe: str, workers: int) -> None:
    from diffusers.training_utils import EMAModel

    checkpoint = output / "checkpoints" / stage.name
    progress_file = checkpoint / "progress.json"
    done = json.loads(progress_file.read_text())["step"] if progress_file.is_file() else 0
    if not resume:
        done = 0
    if resume and done >= stage.steps and task.exported():
        return

    module = task.trainable()
    if stage.gradient_checkpointing and hasattr(module, "enable_gradient_checkpointing"):
        module.enable_gradient_checkpointing()
    optimizer = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad],
                                  lr=stage.learning_rate, weight_decay=stage.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(stage))
    module, optimizer, scheduler = accelerator.prepare(module, optimizer, scheduler)
    ema = None
    if stage.ema_decay > 0:
        ema = EMAModel(accelerator.unwrap_model(module).parameters(), decay=stage.ema_decay)
        accelerator.register_for_checkpointing(ema)
    if resume and done:
        accelerator.load_state(str(checkpoint))

    batches = _batches(task, done, workers)
    log = (output / "log.jsonl").open("a", encoding="utf-8")
    bar = tqdm(range(done, stage.steps), desc=stage.name, unit="step",
               disable=not accelerator.is_local_main_process, initial=done, total=stage.steps)
    started = time.perf_counter()
    for step in bar:
        module.train()
        with accelerator.accumulate(module):
            loss = task.loss(module, next(batches))
            accelerator.backward(loss)
            if accelerator.sync_gradients:
                accelerator.clip_grad_norm_(module.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        if ema is not None:
            ema.step(accelerator.unwrap_model(module).parameters())
        number = step + 1
        if number % LOG_EVERY == 0 or number == stage.steps:
            value = accelerator.gather(loss.detach()).mean().item()
            bar.set_postfix(loss=f"{value:.4f}")
            if accelerator.is_main_process:
                log.write(json.dumps({"stage": stage.name, "step": number, "loss": value,
                                      "lr": scheduler.get_last_lr()[0],
                                      "seconds": round(time.perf_counter() - started, 2)})
                          + "\n")
                log.flush()
        if number % stage.save_every == 0 or number == stage.steps:
            accelerator.save_state(str(checkpoint))
            if accelerator.is_main_process:
                progress_file.write_text(json.dumps({"step": number}))
        if accelerator.is_main_process and (number % stage.sample_every == 0 or
                                            number == stage.steps):
            with _ema_weights(ema, accelerator.unwrap_model(module)):
                task.sample_grid(accelerator.unwrap_model(module), output / "samples" /
                                 f"{stage.name}-{number:06d}.png")
    log.close()
    if accelerator.is_main_process:
        with _ema_weights(ema, accelerator.unwrap_model(module)):
            task.export(accelerator.unwrap_model(module))
        _record_stage(output, recipe, stage, stage.steps - done, time.perf_counter() - started)
    accelerator.wait_for_everyone()


class _Steps(torch.utils.data.IterableDataset):
    """Batches ``start``, ``start + 1``, ... of a task, worker k of n making every n-th: the
    DataLoader takes them from the workers in turn, so the order is the single-process one."""

    def __init__(self, task: Task, start: int) -> None:
        self.task, self.start = task, start

    def __iter__(self) -> Iterator[Any]:
        info = torch.utils.data.get_worker_info()
        step, stride = self.start + info.id, info.num_workers
        while True:
            yield self.task.batch(step)
            step += stride


def _one_thread(_: int) -> None:
    torch.set_num_threads(1)


def _as_is(batch: Any) -> Any:
    return batch


def _batches(task: Task, start: int, workers: int) -> Iterator[Any]:
    """The task's batches from ``start`` on, drawn ahead of the training (every batch is a
    pure function of its step, so how they are drawn never changes what is trained)."""
    if workers <= 0:
        return _prefetched(task.batches(start_step=start))
    # fork: workers share the task's frozen models instead of pickling them
    loader = torch.utils.data.DataLoader(_Steps(task, start), batch_size=None,
                                         num_workers=workers, prefetch_factor=4,
                                         worker_init_fn=_one_thread, collate_fn=_as_is,
                                         multiprocessing_context="fork")
    return iter(loader)


def _prefetched(batches: Iterator[Any]) -> Iterator[Any]:
    """``batches`` with the next one made on a worker thread while the model trains on this
    one: drawing a batch of renders takes about a third of a CPU step, and rendering and the
    model's kernels both release the GIL for most of it. Order and content are unchanged."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(next, batches)
        while True:
            batch = pending.result()
            pending = pool.submit(next, batches)
            yield batch


class _ema_weights:
    """Context manager: swap EMA weights in (if any) and restore the live ones after."""

    def __init__(self, ema, module: torch.nn.Module) -> None:
        self.ema, self.module = ema, module

    def __enter__(self):
        if self.ema is not None:
            self.ema.store(self.module.parameters())
            self.ema.copy_to(self.module.parameters())
        return self.module

    def __exit__(self, *exc) -> None:
        if self.ema is not None:
            self.ema.restore(self.module.parameters())
