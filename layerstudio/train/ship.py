"""Shipping a trained run as a preset inside the package, each set of weights stored once.

A run folder is a complete diffusers pipeline, but several of its components are often exact
copies of another shipped preset's (the frozen VAE and tokenizer, a frozen U-Net). ``ship``
copies only what is new and records the rest in ``shared.json``, which
``layerstudio.presets.load_preset`` reads back.
"""

from __future__ import annotations

import filecmp
import json
import shutil
from pathlib import Path

from .. import presets
from ..errors import InvalidInputError
from ..presets import PRESETS, SHARED_FILE, get_preset, is_available, pipeline_parts

__all__ = ["ship"]


_PROVENANCE = {"_name_or_path", "_diffusers_version", "transformers_version"}
"""Config keys that say where and with which library version a folder was saved, not what
it holds."""


def _same_file(a: Path, b: Path) -> bool:
    """Same bytes; for JSON configs, the same content apart from provenance keys."""
    if a.suffix == ".json":
        def content(path: Path):
            data = json.loads(path.read_text())
            return {k: v for k, v in data.items() if k not in _PROVENANCE} \
                if isinstance(data, dict) else data
        return content(a) == content(b)
    return filecmp.cmp(a, b, shallow=False)


def _same_folder(a: Path, b: Path) -> bool:
    """Whether every file of folder ``a`` is in ``b`` with the same weights and settings
    (``b`` may hold more: a tokenizer saved by an older library also has its vocab files)."""
    names = [p.name for p in a.iterdir() if p.is_file()]
    return bool(names) and all((b / name).is_file() and _same_file(a / name, b / name)
                               for name in names)


def _borrowed(name: str) -> dict[str, str]:
    """The ``shared.json`` of a shipped preset: part -> preset it is taken from."""
    path = presets.preset_path(name) / SHARED_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def _write_borrowed(folder: Path, borrowed: dict[str, str]) -> None:
    """A preset folder's ``shared.json`` (part -> preset it is taken from); none if empty."""
    path = folder / SHARED_FILE
    if borrowed:
        path.write_text(json.dumps(borrowed, indent=2, sort_keys=True) + "\n")
    else:
        path.unlink(missing_ok=True)


def _keep_for_borrowers(preset: str, run: Path, parts: list[str]) -> None:
    """Before ``preset`` changes a part other presets borrow (a retrained VAE), give each
    borrower its own copy of the old one: its other weights were trained on it, so it must
    keep working until it is retrained and shipped again (sharing resumes then)."""
    old_folder = presets.preset_path(preset)
    for other in PRESETS:
        borrowed = _borrowed(other)
        changed = [part for part, source in borrowed.items() if source == preset and (
            part not in parts or not _same_folder(run / part, old_folder / part))]
        if not changed:
            continue
        folder = presets.preset_path(other)
        for part in changed:
            staged = folder / (part + ".shipping")
            shutil.rmtree(staged, ignore_errors=True)
            shutil.copytree(old_folder / part, staged)
            staged.rename(folder / part)
            del borrowed[part]
        _write_borrowed(folder, borrowed)


def ship(run: str | Path, preset: str) -> dict[str, str]:
    """Install the pipeline in ``run`` as shipped preset ``preset`` (replacing what is there,
    atomically); returns the components taken from other presets."""
    run, info = Path(run), get_preset(preset)
    if not info.shipped:
        raise InvalidInputError(f"{preset!r} is not a shipped preset")
    if not (run / "model_index.json").is_file():
        raise InvalidInputError(f"{run} holds no trained pipeline (no model_index.json)")
    parts = pipeline_parts(run / "model_index.json")
    target = presets.preset_path(preset)
    staging = target.with_name(target.name + ".shipping")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    # share only from presets listed before this one (its bases), and never drop a part a
    # later preset borrows from this one, so re-shipping cannot break another preset
    names = list(PRESETS)
    earlier = [n for n in names[:names.index(preset)] if PRESETS[n].shipped
               and is_available(PRESETS[n])]
    _keep_for_borrowers(preset, run, parts)
    lent = {part for other in names if other != preset
            for part, source in _borrowed(other).items() if source == preset}
    shared = {}
    for part in parts:
        source = None if part in lent else next(
            (other for other in earlier if (presets.preset_path(other) / part).is_dir()
             and _same_folder(run / part, presets.preset_path(other) / part)), None)
        if source:
            shared[part] = source
        else:
            shutil.copytree(run / part, staging / part)
    shutil.copy2(run / "model_index.json", staging / "model_index.json")
    for record in ("training.json", "compression.json"):  # how it was made, on what
        if (run / record).is_file():
            shutil.copy2(run / record, staging / record)
    _write_borrowed(staging, shared)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return shared
