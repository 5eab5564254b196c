"""LayerD (``--method tiny-layerd``): a flat design peeled into layers, top first, by a learned
top-layer matting network, with the fill and unblending of the classical method."""

from .matting import TopLayerMatting
from .pipeline import LayerDOutput, LayerDPipeline

__all__ = ["LayerDOutput", "LayerDPipeline", "TopLayerMatting"]
