"""Recolor with Palette: data preparation, training and the quality benchmark."""
