"""Anonymous-region multi-layer generation (ART: Pu et al. 2025, "ART: Anonymous Region
Transformer for Variable Multi-Layer Transparent Image Generation").

One global prompt and a list of boxes (regions without their own captions) give a background
and one transparent layer per box. Only the tokens inside each layer's box are processed
(:mod:`.regions`), so cost grows with the boxes' total area, not with layers x canvas. See
``docs/anonymous_region.md``.
"""

from .decoder import MultiLayerTransparentDecoder
from .layout import (
    boxes_from_sketch,
    load_layout,
    parse_boxes,
    plan_boxes,
    snap_boxes,
    token_box_pixels,
)
from .pipeline import AnonymousRegionPipeline, AnonymousRegionPipelineOutput
from .regions import box_mask, crop_tokens, region_ids, scatter_tokens, token_count
from .transformer import AnonymousRegionTransformer

__all__ = [
    "AnonymousRegionPipeline",
    "AnonymousRegionPipelineOutput",
    "AnonymousRegionTransformer",
    "MultiLayerTransparentDecoder",
    "box_mask",
    "boxes_from_sketch",
    "crop_tokens",
    "load_layout",
    "parse_boxes",
    "plan_boxes",
    "region_ids",
    "scatter_tokens",
    "snap_boxes",
    "token_box_pixels",
    "token_count",
]
