"""The recolouring core: colour maths, palettes, PaletteNet, weights, both methods, pixel
formats and the full-resolution transfer. No sockets and no files of images; imports only
from here and backend.wire."""
