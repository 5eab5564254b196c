"""Anime production layers ("Workflow-Aware Structured Layer Decomposition for Illustration
Production"): an illustration as line art, flat colour, shadow and highlight, by a model
(:mod:`.pipeline`) or without one (:mod:`.classical`); :mod:`.structure` holds the conventions
and their exact inverses, :mod:`.edits` the structure-aware edits."""
