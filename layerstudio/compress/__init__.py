"""Model compression (issue 23): depth pruning of diffusion transformers (:mod:`.depth`,
TinyFusion's setting and its baselines); U-Net layer pruning (LAPTOP-Diff) is to come."""
