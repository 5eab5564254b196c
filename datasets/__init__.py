"""Procedural layered datasets with exact ground truth (installed as ``layerstudio.datasets``,
never as a top-level ``datasets``, which is Hugging Face's). Not built yet; see README."""
