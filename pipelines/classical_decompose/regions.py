"""Flat-colour regions of a picture: the pieces a design is drawn from.

Two 4-neighbours belong to one region when their colours differ by at most ``tolerance`` in
every channel, so a smooth gradient is one region while a shape's edge separates it from what
lies around it. Connected components of that graph (scipy's sparse graph routines) label the
regions in one pass at any size.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

__all__ = ["base_region", "flat_regions", "region_sizes"]


def flat_regions(rgb: np.ndarray, tolerance: float) -> np.ndarray:
    """(h, w) int32 labels 0..n-1 of the colour-connected regions of ``rgb`` (float [0, 1])."""
    height, width = rgb.shape[:2]
    index = np.arange(height * width, dtype=np.int64).reshape(height, width)
    same_row = (np.abs(rgb[:, 1:] - rgb[:, :-1]).max(axis=-1) <= tolerance)
    same_col = (np.abs(rgb[1:] - rgb[:-1]).max(axis=-1) <= tolerance)
    rows = np.concatenate([index[:, :-1][same_row], index[:-1][same_col]])
    cols = np.concatenate([index[:, 1:][same_row], index[1:][same_col]])
    graph = coo_matrix((np.ones(rows.size, np.bool_), (rows, cols)),
                       shape=(height * width, height * width))
    _, labels = connected_components(graph, directed=False)
    return labels.reshape(height, width).astype(np.int32)


def region_sizes(labels: np.ndarray) -> np.ndarray:
    """Pixel count of every label."""
    return np.bincount(labels.ravel())


def base_region(labels: np.ndarray, within: np.ndarray | None = None) -> int:
    """The region a picture (or the part ``within`` a mask) is drawn on: the one with most
    pixels on the outline (of the picture, or of the mask), ties broken by size."""
    if within is None:
        outline = np.zeros(labels.shape, bool)
        outline[[0, -1], :] = True
        outline[:, [0, -1]] = True
    else:
        outline = within & ~ndimage.binary_erosion(within)
    on_outline = np.bincount(labels[outline], minlength=labels.max() + 1)
    sizes = np.bincount(labels[within] if within is not None else labels.ravel(),
                        minlength=labels.max() + 1)
    return int(np.lexsort((sizes, on_outline))[-1])
