"""Normal compositing run backwards: which layer over a known backdrop gives a known picture.

``picture = alpha * colour + (1 - alpha) * below`` has a colour in [0, 1] for a pixel only when
alpha is at least :func:`least_alpha` there; with such an alpha the colour is unique
(:func:`over_layer`), so a layer built this way re-composites to the picture exactly. The
decomposition methods use it to push what a background estimate misses into the layer instead
of leaving a ghost behind, and layered editing to turn an edited picture into a layer.
"""

from __future__ import annotations

import numpy as np

__all__ = ["least_alpha", "over_layer"]

_EPS = 1e-6


def least_alpha(picture: np.ndarray, below: np.ndarray) -> np.ndarray:
    """(h, w) least alpha with which some colour in [0, 1] over ``below`` gives ``picture``
    (float RGB arrays): per channel ``(I - B) / (1 - B)`` where the picture is lighter,
    ``(B - I) / B`` where darker, the largest channel."""
    lighter = np.where(picture > below, (picture - below) / np.maximum(1 - below, _EPS), 0)
    darker = np.where(picture < below, (below - picture) / np.maximum(below, _EPS), 0)
    return np.clip(np.maximum(lighter, darker).max(-1), 0, 1)


def over_layer(picture: np.ndarray, below: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Straight float RGBA (h, w, 4) of the layer with ``alpha`` (raised to
    :func:`least_alpha` where lower) whose normal composite over ``below`` is ``picture``;
    where alpha is zero the colour is zero."""
    alpha = np.maximum(alpha, np.where(alpha > 0, least_alpha(picture, below), 0))
    safe = np.maximum(alpha, _EPS)[..., None]
    colour = np.where(alpha[..., None] > 0, np.clip(below + (picture - below) / safe, 0, 1), 0)
    return np.concatenate([colour, alpha[..., None]], -1).astype(np.float32)
