"""Training: recipes (one TOML per shipped preset) and the accelerate loop that runs them.

The loop (accelerate, every training task and the pipelines they build) loads only when
``train`` is first used, so reading a recipe (``presets.known_prompts`` does, for every
``generate``) stays cheap.
"""

from typing import Any

from .recipe import Recipe, Stage, load_recipe, recipe_names

__all__ = ["Recipe", "Stage", "load_recipe", "recipe_names", "train"]


def __getattr__(name: str) -> Any:
    if name == "train":
        from .loop import train

        return train
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
