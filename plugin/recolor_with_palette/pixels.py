"""Layer pixels as the editor stores them <-> pixels as palettenet/1 carries them.

Krita hands out integer layers in B, G, R, A channel order and float layers in R, G, B, A,
in the machine's byte order, and each has a wire format that is exactly that layout
(little endian): BGRA8, BGRA16, RGBAF16, RGBAF32. A layer whose profile has a linear tone
curve (Krita's default for 16-bit and float images: "...-g10.icc", "scRGB (linear)") goes as
the `_LINEAR` variant of its format, and the daemon applies the sRGB curve itself. So the
layer's bytes are sent as they are and the reply's bytes are written back as they are: no
per-pixel work in the editor's Python (which rarely has numpy), and pixels the daemon keeps
(outside the selection, fully transparent, alpha) come back bit for bit. Only a big-endian
machine swaps bytes (the wire is little endian).

The sRGB curve itself stays here for the GIMP plug-in's colour conversions.
"""

from __future__ import annotations  # editors may embed a Python older than 3.10

import array
import sys
from dataclasses import dataclass

from . import wire

DEPTHS = ("U8", "U16", "F16", "F32")
BYTES_PER_PIXEL = {"U8": 4, "U16": 8, "F16": 8, "F32": 16}
# Krita's layout of each depth -> the wire format with the same bytes: (sRGB, linear light).
WIRE_FORMATS = {
    "U8": ("BGRA8", "BGRA8_LINEAR"),
    "U16": ("BGRA16", "BGRA16_LINEAR"),
    "F16": ("RGBAF16", "RGBAF16_LINEAR"),
    "F32": ("RGBAF32", "RGBAF32_LINEAR"),
}
WIRE_BYTES_PER_PIXEL = {name: wire.bytes_per_pixel(name) for name in wire.PIXEL_FORMATS}
LITTLE_ENDIAN = sys.byteorder == "little"


@dataclass
class Pixels:
    """A rectangle of pixels in a wire format: what a request carries and a reply returns."""

    width: int
    height: int
    pixel_format: str
    data: bytes  # or any bytes-like object (a reply's frame: bytes or an mmap)

    def __post_init__(self):
        expected = self.width * self.height * WIRE_BYTES_PER_PIXEL[self.pixel_format]
        if len(self.data) != expected:
            raise ValueError(
                f"{self.width} x {self.height} {self.pixel_format} needs {expected} bytes, "
                f"got {len(self.data)}"
            )


def is_linear_profile(profile_name: str) -> bool:
    """Whether an ICC profile name says its tone curve is linear (gamma 1.0).

    Krita's own profiles say so in their names: "sRGB-elle-V2-g10.icc", "Rec2020-elle-V4-
    g10.icc", "scRGB (linear)", "lcms sRGB built-in with linear gamma TRC". Other profiles
    (sRGB, gamma 1.8-2.2) are close enough to sRGB for recolouring and are sent as they are.
    """
    name = profile_name.lower()
    return "g10" in name or "linear" in name or "scrgb" in name


# --- the sRGB curve -------------------------------------------------------------------------
def srgb_encode(value: float) -> float:
    """Linear light -> sRGB-encoded; mirrored for negatives and extended above 1 (HDR)."""
    magnitude = abs(value)
    if magnitude <= 0.0031308:
        encoded = 12.92 * magnitude
    else:
        encoded = 1.055 * magnitude ** (1 / 2.4) - 0.055
    return encoded if value >= 0 else -encoded


def srgb_decode(value: float) -> float:
    magnitude = abs(value)
    if magnitude <= 0.04045:
        decoded = magnitude / 12.92
    else:
        decoded = ((magnitude + 0.055) / 1.055) ** 2.4
    return decoded if value >= 0 else -decoded


# --- converting -----------------------------------------------------------------------------
def wire_format(depth: str, linear: bool) -> str:
    """The wire pixel format that holds a layer of `depth` (Krita's layout) as it is."""
    if depth not in DEPTHS:
        raise ValueError(f"colour depth {depth!r} is not one of {', '.join(DEPTHS)}")
    return WIRE_FORMATS[depth][1 if linear else 0]


def layer_to_wire(raw: bytes, depth: str, linear: bool) -> tuple[str, bytes]:
    """Layer pixels (Krita's layout for `depth`) -> (wire pixel_format, wire bytes): the
    same bytes on little-endian machines."""
    return wire_format(depth, linear), _little_endian(raw, depth)


def wire_to_layer(wire: bytes, depth: str) -> bytes:
    """A reply's pixels (in the format layer_to_wire chose) -> layer pixels in Krita's layout
    for `depth`: the same bytes on little-endian machines."""
    if depth not in DEPTHS:
        raise ValueError(f"colour depth {depth!r} is not one of {', '.join(DEPTHS)}")
    return _little_endian(wire, depth)  # a byte swap is its own inverse


def _little_endian(data, depth: str) -> bytes:
    """Native-order channel values <-> little-endian ones (a no-op on little-endian hosts)."""
    data = bytes(data)
    if LITTLE_ENDIAN or depth == "U8":
        return data
    values = array.array({"U16": "H", "F16": "H", "F32": "I"}[depth])  # pragma: no cover
    values.frombytes(data)  # pragma: no cover
    values.byteswap()  # pragma: no cover
    return values.tobytes()  # pragma: no cover


def downsample_rgba8(data: bytes, width: int, height: int, max_side: int, fmt="RGBA8") -> Pixels:
    """Every n-th pixel of every n-th row (n chosen so the long side is at most max_side):
    a quick thumbnail of 4-byte pixels for the palette and the preview, standard library
    only. Nearest-neighbour is enough for both, and keeps colours exact (no blending)."""
    step = max(1, -(-max(width, height) // max_side))  # ceiling division
    if step == 1:
        return Pixels(width, height, fmt, bytes(data))
    pixels = memoryview(bytes(data)).cast("I")  # one 32-bit item per pixel, bytes untouched
    rows = [pixels[row * width : (row + 1) * width : step] for row in range(0, height, step)]
    out = b"".join(row.tobytes() for row in rows)
    return Pixels(len(range(0, width, step)), len(rows), fmt, out)


def tile_parts(parts: list) -> Pixels:
    """Pixels of one format and several sizes laid out in a grid (as square as it gets, row
    by row, each in the top-left corner of its cell), the rest transparent (zero bytes:
    no colour for a palette): the pieces of a many-piece Apply as one picture, for their
    palette and as the reference image. A grid, not a column: reduced to the network's
    working size, a column of twenty frames would leave each a sliver."""
    columns = 1
    while columns * columns < len(parts):
        columns += 1
    size = WIRE_BYTES_PER_PIXEL[parts[0].pixel_format]
    cell_width = max(part.width for part in parts)
    lines = []
    for first in range(0, len(parts), columns):
        row = parts[first : first + columns]
        blank = bytes(cell_width * size)
        for y in range(max(part.height for part in row)):
            line = []
            for part in row:
                if y < part.height:
                    width = part.width * size
                    line.append(part.data[y * width : (y + 1) * width])
                    line.append(bytes((cell_width - part.width) * size))
                else:
                    line.append(blank)
            line.append(blank * (columns - len(row)))
            lines.append(b"".join(line))
    return Pixels(cell_width * columns, len(lines), parts[0].pixel_format, b"".join(lines))


def within_reference_limit(pixels: Pixels, limit: int = wire.MAX_REFERENCE_PIXELS) -> Pixels:
    """A recolor request's reference image at most `limit` pixels: every n-th pixel of every
    n-th row where it is larger (nearest neighbour keeps its colours exact), any format."""
    step = 1
    while -(-pixels.width // step) * -(-pixels.height // step) > limit:
        step += 1
    if step == 1:
        return pixels
    size = WIRE_BYTES_PER_PIXEL[pixels.pixel_format]
    line = pixels.width * size
    data = memoryview(pixels.data)
    rows = []
    for row in range(0, pixels.height, step):
        start = row * line
        rows += [data[i : i + size] for i in range(start, start + line, step * size)]
    width, height = len(range(0, pixels.width, step)), len(range(0, pixels.height, step))
    return Pixels(width, height, pixels.pixel_format, b"".join(rows))
