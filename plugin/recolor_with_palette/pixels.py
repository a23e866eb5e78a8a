"""Layer pixels as the editor stores them <-> pixels as palettenet/1 carries them.

Krita hands out integer layers in B, G, R, A channel order and float layers in R, G, B, A,
in the machine's byte order; the wire wants one of RGBA8, BGRA8, RGBA16 or RGBAF32, little
endian. Half floats (F16) have no wire format, so they travel as float32, which holds every
half value exactly: the round trip changes nothing the daemon did not change.

The network and the classical method both expect sRGB-encoded values, while Krita's default
profiles for 16-bit and float images are linear ("...-g10.icc", "scRGB (linear)"). Pixels
of a linear layer are therefore encoded with the sRGB curve on the way out and decoded on
the way back; alpha never goes through the curve. Where a colour comes back exactly as it
was sent, the layer's own original value is restored, so pixels the daemon kept (outside
the selection, fully transparent) stay bit for bit what they were even where the curve's
round trip is not exact (16-bit linear values that share an sRGB code).

Only the standard library is needed (the editors' Pythons rarely have numpy); numpy is
used when it happens to be there, with the same results, because the pure Python path
costs about 0.1 microseconds per channel value (a few seconds for a 24 megapixel layer).
"""

from __future__ import annotations  # editors may embed a Python older than 3.10

import array
import struct
import sys
from dataclasses import dataclass

from . import wire

try:  # optional: only speed depends on it
    import numpy
except ImportError:  # pragma: no cover - depends on the editor's Python
    numpy = None

DEPTHS = ("U8", "U16", "F16", "F32")
BYTES_PER_PIXEL = {"U8": 4, "U16": 8, "F16": 8, "F32": 16}
WIRE_FORMAT = {"U8": "BGRA8", "U16": "RGBA16", "F16": "RGBAF32", "F32": "RGBAF32"}
WIRE_BYTES_PER_PIXEL = {name: wire.bytes_per_pixel(name) for name in wire.PIXEL_FORMATS}
CHUNK = 1 << 20  # values converted per struct call on the pure Python path (bounds memory)
LITTLE_ENDIAN = sys.byteorder == "little"


@dataclass
class Pixels:
    """A rectangle of pixels in a wire format: what a request carries and a reply returns."""

    width: int
    height: int
    pixel_format: str
    data: bytes

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


_LUTS: dict = {}


def _integer_lut(bits: int, encode: bool) -> list:
    """Curve lookup table over every integer code of a depth (256 or 65536 entries)."""
    key = (bits, encode)
    if key not in _LUTS:
        top = (1 << bits) - 1
        curve = srgb_encode if encode else srgb_decode
        _LUTS[key] = [round(curve(code / top) * top) for code in range(top + 1)]
    return _LUTS[key]


# --- converting -----------------------------------------------------------------------------
def layer_to_wire(raw: bytes, depth: str, linear: bool) -> tuple[str, bytes]:
    """Layer pixels (Krita's layout for `depth`) -> (wire pixel_format, wire bytes)."""
    if depth not in DEPTHS:
        raise ValueError(f"colour depth {depth!r} is not one of {', '.join(DEPTHS)}")
    fmt = WIRE_FORMAT[depth]
    if depth == "U8":
        return fmt, _curve_u8(bytes(raw), encode=True) if linear else bytes(raw)
    if depth == "U16":
        values = _u16(raw)
        _swap_red_blue(values)
        if linear:
            _curve_u16(values, encode=True)
        return fmt, _u16_bytes(values)
    values = _half_to_float32(raw) if depth == "F16" else _f32(raw)
    if linear:
        _curve_float(values, encode=True)
    return fmt, _f32_bytes(values)


def wire_to_layer(
    wire: bytes, depth: str, linear: bool, original: bytes, sent: bytes | None = None
) -> bytes:
    """A reply's pixels -> layer pixels in Krita's layout for `depth`.

    `original` is the layer's raw pixels and `sent` the wire bytes made from them; where the
    reply equals what was sent, the original value is restored (see the module docstring).
    Only needed for linear layers: every other conversion is exact both ways."""
    if depth == "U8":
        if not linear:
            return bytes(wire)
        return _restore(_curve_u8(bytes(wire), encode=False), wire, sent, original, "B")
    if depth == "U16":
        values = _u16(wire)
        if linear:
            _curve_u16(values, encode=False)
        _swap_red_blue(values)
        result = _u16_bytes(values)
        return _restore(result, _swapped_u16(wire), _swapped_u16(sent), original, "H")
    values = _f32(wire)
    if linear:
        _curve_float(values, encode=False)
    if depth == "F16":
        result = _float32_to_half(values)
        return _restore(result, _half_bytes_of(wire), _half_bytes_of(sent), original, "e")
    return _restore(_f32_bytes(values), wire, sent, original, "f") if linear else bytes(wire)


def _restore(result, returned, sent, original, code: str) -> bytes:
    """result, with original values wherever `returned` equals `sent` (value by value)."""
    if sent is None or returned is None:
        return result
    size = struct.calcsize(code)
    if numpy is not None:
        bits = f"u{size}"  # compare bit patterns: exact, and NaN-proof for floats
        same = numpy.frombuffer(returned, dtype=bits) == numpy.frombuffer(sent, dtype=bits)
        out = numpy.frombuffer(result, dtype=bits).copy()
        out[same] = numpy.frombuffer(original, dtype=bits)[same]
        return out.tobytes()
    out = bytearray(result)
    for index in range(0, len(out), size):
        if returned[index : index + size] == sent[index : index + size]:
            out[index : index + size] = original[index : index + size]
    return bytes(out)


def _swapped_u16(wire):
    """RGBA16 wire bytes in Krita's BGRA order (to compare with Krita-layout results)."""
    if wire is None:
        return None
    values = _u16(wire)
    _swap_red_blue(values)
    return _u16_bytes(values)


def _half_bytes_of(wire):
    return None if wire is None else _float32_to_half(_f32(wire))


def _curve_u8(data: bytes, encode: bool) -> bytes:
    table = bytes(_integer_lut(8, encode))
    out = bytearray(data)
    for channel in range(3):  # B, G, R; alpha (channel 3) is never curved
        out[channel::4] = out[channel::4].translate(table)
    return bytes(out)


def _u16(data) -> array.array:
    values = array.array("H")
    values.frombytes(bytes(data))
    return values  # native order: Krita's layout, and the wire's on little-endian machines


def _u16_bytes(values: array.array) -> bytes:
    if not LITTLE_ENDIAN:  # pragma: no cover - the wire is little endian
        values = array.array("H", values)
        values.byteswap()
    return values.tobytes()


def _swap_red_blue(values: array.array) -> None:
    """B, G, R, A <-> R, G, B, A, in place."""
    first, third = values[0::4], values[2::4]
    values[0::4], values[2::4] = third, first


def _curve_u16(values: array.array, encode: bool) -> None:
    table = _integer_lut(16, encode)
    for channel in range(3):
        values[channel::4] = array.array("H", map(table.__getitem__, values[channel::4]))


def _f32(data) -> array.array:
    values = array.array("f")
    values.frombytes(bytes(data))
    if not LITTLE_ENDIAN:  # pragma: no cover
        values.byteswap()
    return values


def _f32_bytes(values: array.array) -> bytes:
    if not LITTLE_ENDIAN:  # pragma: no cover
        values = array.array("f", values)
        values.byteswap()
    return values.tobytes()


def _curve_float(values: array.array, encode: bool) -> None:
    if numpy is not None:
        view = numpy.frombuffer(values, dtype=numpy.float32).reshape(-1, 4)[:, :3]
        magnitude = numpy.abs(view).astype(numpy.float64)
        if encode:
            curved = numpy.where(
                magnitude <= 0.0031308, 12.92 * magnitude, 1.055 * magnitude ** (1 / 2.4) - 0.055
            )
        else:
            curved = numpy.where(
                magnitude <= 0.04045, magnitude / 12.92, ((magnitude + 0.055) / 1.055) ** 2.4
            )
        view[...] = numpy.copysign(curved, view)
        return
    curve = srgb_encode if encode else srgb_decode
    for channel in range(3):
        values[channel::4] = array.array("f", map(curve, values[channel::4]))


def _half_to_float32(data) -> array.array:
    data = bytes(data)
    if numpy is not None:
        return array.array("f", numpy.frombuffer(data, dtype="=f2").astype("f4").tobytes())
    values = array.array("f")
    step = CHUNK * 2
    for start in range(0, len(data), step):
        chunk = data[start : start + step]
        values.extend(struct.unpack(f"={len(chunk) // 2}e", chunk))
    return values


HALF_MAX = 65504.0


def _float32_to_half(values: array.array) -> bytes:
    """float32 -> half floats in Krita's (native) layout. Values beyond the half range are
    clamped to it rather than becoming infinities, which no painter wants in a layer."""
    if numpy is not None:
        floats = numpy.frombuffer(values, dtype=numpy.float32)
        return numpy.clip(floats, -HALF_MAX, HALF_MAX).astype("=f2").tobytes()
    out = bytearray()
    for start in range(0, len(values), CHUNK):
        chunk = [min(max(v, -HALF_MAX), HALF_MAX) for v in values[start : start + CHUNK]]
        out += struct.pack(f"={len(chunk)}e", *chunk)
    return bytes(out)


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
