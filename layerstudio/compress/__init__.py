"""Model compression (issue 23): smaller, faster denoisers that are still ordinary diffusers
models.

- :mod:`.unet_layers`, :mod:`.laptop`: LAPTOP-Diff layer pruning of ``UNet2DConditionModel``s
  (removable units, rebuilt U-Nets, one-shot output criterion, knapsack, baselines).
- :mod:`.depth`, :mod:`.tinyfusion`: depth pruning of diffusion transformers (rebuilt block
  lists; TinyFusion's learned N:M selection with LoRA; ShortGPT, evenly spaced, random).
- :mod:`.calibration`, :mod:`.distill`: what the model is shown (a preset's training task, or
  its own sampling runs) and the retraining (task loss + output and feature distillation).
- :mod:`.prune`: one run start to finish, what ``layerstudio prune`` does.
"""
