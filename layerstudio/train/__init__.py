"""Training: recipes (one TOML per shipped preset) and the accelerate loop that runs them."""

from .loop import train
from .recipe import Recipe, Stage, load_recipe, recipe_names

__all__ = ["Recipe", "Stage", "load_recipe", "recipe_names", "train"]
