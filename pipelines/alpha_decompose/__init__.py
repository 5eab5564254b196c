"""DiffDecompose: a picture with a see-through layer over it -> background + that layer."""
