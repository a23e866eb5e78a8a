"""Recolor with Palette: the backend (colour maths, palettes, PaletteNet, inference)."""

__version__ = "0.1.0"
