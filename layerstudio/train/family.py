"""Training several presets in one go, each on the new runs of the presets it builds on.

The shipped tiny models form a family: tiny-sd's VAE and U-Net under tiny-layerdiffuse, that
under its bg2fg / fg2bg / joint models, tiny-sd under tiny-dit, tiny-dit under tiny-art. After
a change at the root (issue 18's new latent space) the whole family is retrained in order:
each recipe into OUTPUT/NAME, with every base preset a recipe names read from OUTPUT when it
was trained there (`presets.weights_from(OUTPUT, fallback=True)`), from the package if not.
"""

from __future__ import annotations

from pathlib import Path

from ..presets import weights_from
from .loop import train
from .recipe import load_recipe

__all__ = ["FAMILY", "train_in_order"]

FAMILY = ("tiny-sd", "tiny-layerdiffuse", "tiny-layerdiffuse-bg2fg", "tiny-layerdiffuse-fg2bg",
          "tiny-layerdiffuse-joint", "tiny-dit", "tiny-art")
"""Every preset built on tiny-sd's latent space, bases first."""


def train_in_order(recipes: list[str], output: str | Path, steps: int | None = None,
                   resume: bool = False, workers: int = 0) -> list[Path]:
    """Train ``recipes`` (names or .toml paths; "family" stands for :data:`FAMILY`) one after
    another into OUTPUT/NAME; returns the run folders."""
    names = [name for recipe in recipes
             for name in (FAMILY if recipe == "family" else (recipe,))]
    output = Path(output)
    runs = []
    with weights_from(output, fallback=True):
        for name in names:
            recipe = load_recipe(name)
            runs.append(train(recipe, output / recipe.name, steps=steps, resume=resume,
                              workers=workers))
    return runs
