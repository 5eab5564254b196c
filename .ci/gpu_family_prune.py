"""Shrink a `layerstudio train family` output so it fits what a device call may return.

Finished stages keep only ``progress.json`` (enough for ``--resume`` to skip them); unfinished
ones lose their checkpoint (optimiser state is several times the weights) and start over on
the next call. Files identical across runs (a frozen VAE, the tokenizer) become hard links,
which tar stores once. Usage: python .ci/gpu_family_prune.py RUNS
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

from layerstudio.train.recipe import load_recipe


def prune_checkpoints(run: Path) -> None:
    steps = {stage.name: stage.steps for stage in load_recipe(run.name).stages}
    for folder in sorted((run / "checkpoints").glob("*")):
        progress = folder / "progress.json"
        done = json.loads(progress.read_text())["step"] if progress.is_file() else 0
        if done < steps.get(folder.name, 0):
            shutil.rmtree(folder)
            continue
        for path in folder.iterdir():
            if path != progress:
                shutil.rmtree(path) if path.is_dir() else path.unlink()


def link_duplicates(root: Path) -> int:
    """Replace every file whose bytes an earlier one has with a hard link; returns bytes saved."""
    seen: dict[tuple[int, str], Path] = {}
    saved = 0
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
        key = (path.stat().st_size, hashlib.sha256(path.read_bytes()).hexdigest())
        if key in seen:
            path.unlink()
            path.hardlink_to(seen[key])
            saved += key[0]
        else:
            seen[key] = path
    return saved


def main(root: Path) -> None:
    for run in sorted(p for p in root.iterdir() if (p / "checkpoints").is_dir()):
        prune_checkpoints(run)
    saved = link_duplicates(root)
    print(f"pruned {root}; {saved / 2**20:.1f} MiB of duplicates linked")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
