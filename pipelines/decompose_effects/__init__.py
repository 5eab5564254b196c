"""Layer decomposition with visual effects (LayerDecomp, DESIGN.md 3.3): an object pulled out
of a picture together with its shadows, reflections and glow, above a clean background."""
