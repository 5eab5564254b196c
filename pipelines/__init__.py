"""Diffusion pipelines, one module or sub-package per method (installed as
``layerstudio.pipelines``).

- ``dit_text_to_image``: prompt -> image with a FLUX-style MMDiT (the ``tiny-dit`` preset),
  the base the DiT layer methods fine-tune; ``flow_matching`` holds its rectified-flow maths.
"""

import logging

# diffusers' Stable Diffusion pipelines name transformers' CLIP and SigLIP image processors,
# which warn on every model command that torchvision is missing; LayerStudio never uses them.
logging.getLogger("transformers.utils.import_utils").addFilter(
    lambda record: "requires torchvision" not in record.getMessage())
