"""Loaders for real layered datasets a user has on disk (nothing is downloaded)."""

from .crello import CrelloDataset
from .mulan import MulanLayers
from .psd_folder import LayeredFileFolder

__all__ = ["CrelloDataset", "LayeredFileFolder", "MulanLayers"]
