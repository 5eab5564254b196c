"""``layerstudio batch``: many generations from a JSON Lines file, on the same ``Studio`` API as
the CLI and the UI.

One job a line, e.g. ``{"prompt": "a cat and a dog", "boxes": "4,8,24,24;34,30,24,24",
"seed": 3, "name": "pets"}`` (generation; the keys are :data:`JOB_KEYS`), ``{"task":
"decompose", "image": "poster.png", "layers": 5}`` (decomposition; :data:`DECOMPOSE_KEYS`) or
``{"task": "edit-session", "background": "beach.png", "edits": [{"add": "a crab", "box": [8,
30, 28, 28]}]}`` (a step-by-step edit; :data:`EDIT_KEYS`).
Each finished job leaves its files (``NAME.psd``, ``NAME.zip``, ``NAME.png``, ... as asked)
and last ``NAME.json``, its manifest (the job, the stack's metadata, the files); every file is
written atomically, so a manifest means the job is complete and ``--resume`` skips it. A
failing job (bad line, bad argument, model error) is appended to ``errors.jsonl``
and the rest go on.

Data-parallel: under ``accelerate launch --multi_gpu --num_processes N -m layerstudio batch
...``, ``torchrun --nproc_per_node N -m layerstudio batch ...`` or an MPI launcher, process
``r`` of ``n`` takes the jobs whose index is ``r`` modulo ``n``: every job runs exactly once.
``accelerate launch --multi_gpu`` works on CPU-only machines too (it runs torchrun's
launcher; the tests use it with two CPU processes); ``accelerate launch --cpu`` with several
processes goes through MPI instead.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import jsonsafe
from .errors import InvalidInputError, LayerStudioError
from .io.atomic import atomic_path

__all__ = ["DECOMPOSE_KEYS", "EDIT_KEYS", "FORMATS", "JOB_KEYS", "TASKS", "BatchSummary", "Job",
           "read_jobs", "run_batch", "share_of"]

FORMATS = ("psd", "ora", "zip", "png")
JOB_KEYS = {"prompt": "prompt", "model": "model", "mode": "mode", "boxes": "boxes",
            "regions": "boxes", "seed": "seed", "size": "size", "steps": "steps",
            "guidance": "guidance", "negative": "negative_prompt",
            "background": "background", "foreground": "foreground", "fit": "fit",
            "stop_at": "stop_at",
            "foreground_prompt": "foreground_prompt",
            "background_prompt": "background_prompt", "upscale": "upscale", "name": None,
            "task": None}
"""Generation job keys -> ``Studio.generate`` arguments (``regions`` is a number of boxes to
plan)."""
DECOMPOSE_KEYS = {"image": "image", "method": "method", "layers": "layers", "mask": "mask",
                  "box": "box", "prompt": "prompt", "seed": "seed", "steps": "steps",
                  "layer": "layer", "upscale": "upscale", "separate_effects": "separate_effects",
                  "blend": "blend", "convention": "convention",
                  "name": None, "task": None}
"""Decomposition job keys -> ``Studio.decompose`` arguments."""
EDIT_KEYS = {"background": "background", "edits": "edits", "model": "model", "seed": "seed",
             "steps": "steps", "size": "size", "guidance": "guidance",
             "negative": "negative_prompt", "name": None, "task": None}
"""Edit-session job keys (a script, see :mod:`layerstudio.edit_session`) ->
``Studio.edit_sequence`` arguments."""
TASKS = {"generate": (JOB_KEYS, "prompt", "generate"),
         "decompose": (DECOMPOSE_KEYS, "image", "decompose"),
         "edit-session": (EDIT_KEYS, "background", "edit_sequence")}
"""Task -> (its job keys, the key every job of it needs, the Studio method that runs it)."""
MAX_JOB_BYTES = 100_000
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


@dataclass
class Job:
    """Line ``line`` of the jobs file: its output ``name`` and Studio arguments, or the
    ``error`` that makes it unusable."""

    line: int
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    task: str = "generate"


@dataclass
class BatchSummary:
    done: int = 0
    skipped: int = 0
    failed: int = 0
    seconds: float = 0.0
    notes: dict[str, int] = field(default_factory=dict)
    """Each distinct note of the finished jobs (vocabulary, size, fit) and how many had it."""

    def line(self) -> str:
        return (f"{self.done} done, {self.skipped} skipped (already finished), "
                f"{self.failed} failed, {self.seconds:.1f} s")


def _job(line: int, text: str) -> Job:
    name = f"job-{line:05d}"
    if len(text) > MAX_JOB_BYTES:
        return Job(line, name, error=f"line over {MAX_JOB_BYTES} bytes")
    try:
        data = jsonsafe.loads(text, "the line", MAX_JOB_BYTES)
    except InvalidInputError as exc:
        return Job(line, name, error=str(exc))
    if not isinstance(data, dict):
        return Job(line, name, error="a job is a JSON object")
    given = data.get("name", name)
    if not isinstance(given, str) or not _NAME.match(given):
        return Job(line, name, error=f"name {given!r} must be letters, digits, '.', '_' or "
                                     "'-' (at most 100, not a path)")
    task = data.get("task", "generate")
    if task not in TASKS:
        return Job(line, given, error=f"task must be one of {', '.join(TASKS)}, got {task!r}")
    keys, needed, _ = TASKS[task]
    unknown = sorted(set(data) - set(keys))
    if unknown:
        return Job(line, given, error=f"unknown key(s) {', '.join(unknown)} for task {task}; "
                                      f"known: {', '.join(keys)}")
    if not isinstance(data.get(needed), str):
        return Job(line, given, error=f"every {task} job needs a \"{needed}\" string")
    if "boxes" in data and "regions" in data:
        return Job(line, given, error="give boxes or regions, not both")
    arguments = {keys[key]: value for key, value in data.items() if keys[key]}
    if task == "generate" and "boxes" in arguments and "mode" not in arguments:
        arguments["mode"] = "layers"
    return Job(line, given, arguments, task=task)


def read_jobs(path: str | Path) -> list[Job]:
    """Every non-blank line of ``path`` as a :class:`Job` (bad lines carry their error)."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"jobs file {path} does not exist")
    jobs, names = [], set()
    with path.open(encoding="utf-8", errors="replace") as handle:
        for number, text in enumerate(handle, 1):
            if text.strip():
                job = _job(number, text)
                if job.name in names and job.error is None:
                    job.error = f"name {job.name!r} is used by an earlier job"
                names.add(job.name)
                jobs.append(job)
    return jobs


def _process() -> tuple[int, int]:
    """(rank, world size) under a data-parallel launcher (torchrun / ``accelerate launch
    --multi_gpu`` set RANK and WORLD_SIZE; MPI launchers, which ``accelerate launch --cpu``
    uses for several processes, set OMPI_COMM_WORLD_* or PMI_*), else (0, 1)."""
    for rank_key, world_key in (("RANK", "WORLD_SIZE"),
                                ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"),
                                ("PMI_RANK", "PMI_SIZE")):
        if world_key in os.environ:
            rank, world = int(os.environ.get(rank_key, 0)), int(os.environ[world_key])
            break
    else:
        rank, world = 0, 1
    if not 0 <= rank < world:
        raise InvalidInputError(f"RANK {rank} is not within WORLD_SIZE {world}")
    return rank, world


def _record_error(out: Path, job: Job, message: str) -> None:
    """One line appended to errors.jsonl (a single small write: whole lines even when
    several processes append)."""
    line = json.dumps({"line": job.line, "name": job.name, "error": message}) + "\n"
    with (out / "errors.jsonl").open("a", encoding="utf-8") as handle:
        handle.write(line)


def _write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(manifest, indent=2, default=str), encoding="utf-8")


def share_of(jobs: list[Job], rank: int, world: int) -> Iterator[Job]:
    """This process's share: job index modulo the world size."""
    return (job for index, job in enumerate(jobs) if index % world == rank)


def _run_one(studio, job: Job, out: Path, formats: tuple[str, ...], resume: bool,
             rank: int, summary: BatchSummary) -> str:
    """Run one job; returns the summary field it counts in: done, skipped or failed (its
    notes are counted in ``summary``)."""
    manifest_path = out / f"{job.name}.json"
    if resume and manifest_path.is_file():
        return "skipped"
    if job.error:
        _record_error(out, job, job.error)
        return "failed"
    try:
        stack = getattr(studio, TASKS[job.task][2])(**job.arguments)
        files = [stack.save(out / f"{job.name}.{suffix}").name for suffix in formats]
    except LayerStudioError as exc:
        _record_error(out, job, str(exc))
        return "failed"
    except Exception as exc:  # one broken job must not stop the batch
        _record_error(out, job, f"internal error: {type(exc).__name__}: {exc}")
        return "failed"
    for note in stack.metadata.get("notes", []):
        summary.notes[note] = summary.notes.get(note, 0) + 1
    _write_manifest(manifest_path, {"line": job.line, "name": job.name, "process": rank,
                                    "task": job.task, "job": job.arguments, "files": files,
                                    "metadata": stack.metadata,
                                    "layers": [layer.name for layer in stack.layers]})
    return "done"


def run_batch(jobs_path: str | Path, out: str | Path, formats: tuple[str, ...] = ("psd",),
              resume: bool = False, device: str | None = None,
              progress: bool = True) -> BatchSummary:
    """Run this process's share of the jobs into ``out``; see the module docstring."""
    import time

    from tqdm.auto import tqdm

    from .studio import Studio

    bad = sorted(set(formats) - set(FORMATS))
    if bad or not formats:
        raise InvalidInputError(f"formats must be among {', '.join(FORMATS)}, got "
                                f"{', '.join(formats) or 'none'}")
    jobs = read_jobs(jobs_path)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rank, world = _process()
    share = list(share_of(jobs, rank, world))
    studio, summary, started = Studio(device=device), BatchSummary(), time.perf_counter()
    bar = tqdm(share, desc=f"batch {rank + 1}/{world}" if world > 1 else "batch",
               unit="job", disable=None if progress else True)  # None: only on a terminal
    for job in bar:
        outcome = _run_one(studio, job, out, formats, resume, rank, summary)
        setattr(summary, outcome, getattr(summary, outcome) + 1)
        bar.set_postfix(done=summary.done, failed=summary.failed)
    summary.seconds = time.perf_counter() - started
    return summary
