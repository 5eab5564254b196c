"""Training recipes: TOML files, one per shipped preset, so anyone can reproduce a checkpoint.

A recipe has a name, a seed, the preset folder layout it produces and one or more stages run in
order (tiny-sd: the VAE first, then the U-Net with its text encoder on the frozen VAE).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import InvalidInputError

__all__ = ["Recipe", "Stage", "load_recipe", "recipe_names"]


@dataclass
class Stage:
    """One training stage: a task (what is trained on what) and its optimisation settings."""

    name: str
    task: str
    steps: int
    batch_size: int = 32
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 100
    ema_decay: float = 0.0
    save_every: int = 500
    sample_every: int = 500
    gradient_checkpointing: bool = False
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Recipe:
    name: str
    seed: int
    stages: list[Stage]
    description: str = ""


def recipe_names() -> list[str]:
    """The recipes shipped with LayerStudio."""
    folder = resources.files("layerstudio.train") / "recipes"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def load_recipe(name_or_path: str | Path) -> Recipe:
    """A shipped recipe by name (``tiny-sd``) or a TOML file path."""
    path = Path(name_or_path)
    if path.suffix == ".toml" and path.is_file():
        text = path.read_text(encoding="utf-8")
    else:
        resource = resources.files("layerstudio.train") / "recipes" / f"{name_or_path}.toml"
        if not resource.is_file():
            raise InvalidInputError(f"no recipe {str(name_or_path)!r}; shipped recipes: "
                                    f"{', '.join(recipe_names())}, or give a .toml path")
        text = resource.read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text)
        stages = [Stage(**stage) for stage in data.pop("stages")]
        return Recipe(stages=stages, **data)
    except (tomllib.TOMLDecodeError, TypeError, KeyError) as exc:
        raise InvalidInputError(f"recipe {str(name_or_path)!r} is malformed: {exc}") from None
