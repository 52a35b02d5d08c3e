"""Rules on the source tree itself: layering, module sizes, references."""
