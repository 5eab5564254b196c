"""Diffusion pipelines, one module or sub-package per method (installed as
``layerstudio.pipelines``).

- ``dit_text_to_image``: prompt -> image with a FLUX-style MMDiT (the ``tiny-dit`` preset),
  the base the DiT layer methods fine-tune; ``flow_matching`` holds its rectified-flow maths.
"""
