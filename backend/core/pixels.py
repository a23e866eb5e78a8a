"""Pixel formats of the wire protocol as numpy types, and the layer a request carries.

A layer is W*H tightly packed pixels in one of backend.wire.PIXEL_FORMATS: sRGB-encoded values (what
an 8-bit PNG holds) or, for the `_LINEAR` formats, linear light (what GIMP and Krita store in
linear-precision images; the layer's own encoding, so an editor writes the answer back
without a conversion that would round it). Recolouring needs float RGB in
0..1, but everything else must come back untouched: alpha bytes identical, 16-bit and float
layers at their own precision. So a Layer keeps the request's buffer as it is, hands out
float RGB a band of rows at a time, and writes results into a new buffer, colour channels
from the result: alpha is copied, never converted, and pixels the result does not touch
(mask 0, fully transparent) keep their original values bit for bit.

Per-pixel work runs band by band on all cores (on_all_cores), each band small enough that
its float temporaries stay in the CPU's cache.
"""

import functools
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np

from backend.core.color import linear_to_srgb_np, srgb_to_linear_np
from backend.core.palette import HISTOGRAM_SAMPLE
from backend.wire import PIXEL_FORMATS

# Pixels converted to float at once. Small enough that a band's float temporaries (a few MB)
# stay in the CPU's cache while a dozen operations pass over them; large enough that the
# Python overhead per band is negligible (about 180 bands for 24 megapixels).
BAND_PIXELS = 1 << 17
# Bands are worked on by a thread per core: NumPy and OpenCV release the GIL inside each
# operation, so every per-pixel stage uses all cores without extra processes or copies.
_BAND_WORKERS = ThreadPoolExecutor(os.cpu_count() or 1, thread_name_prefix="bands")


def _new_band_workers() -> None:
    """A forked child (training's data workers) has none of its parent's threads: a pool
    that still counted them would never run a band."""
    global _BAND_WORKERS
    _BAND_WORKERS = ThreadPoolExecutor(os.cpu_count() or 1, thread_name_prefix="bands")


os.register_at_fork(after_in_child=_new_band_workers)
# 8-bit sRGB formats whose pixels OpenCV reorders to R, G, B, A in one pass (None: already).
_TO_RGBA = {"RGBA8": None, "BGRA8": cv2.COLOR_BGRA2RGBA, "RGB8": cv2.COLOR_RGB2RGBA}


@dataclass(frozen=True)
class PixelFormat:
    name: str
    dtype: np.dtype  # of one channel, with its byte order
    channels: int
    rgb: tuple[int, int, int]  # positions of R, G, B within a pixel
    alpha: int | None  # position of alpha, None without
    linear: bool = False  # linear light instead of the sRGB transfer curve

    @property
    def bytes_per_pixel(self) -> int:
        return self.channels * self.dtype.itemsize

    @property
    def is_float(self) -> bool:
        return self.dtype.kind == "f"

    @property
    def maximum(self) -> float:
        """The channel value that means 1.0 (full intensity, opaque)."""
        return 1.0 if self.is_float else float(np.iinfo(self.dtype).max)


# The wire's channel types (backend.wire.CHANNEL_BYTES) as numpy types, little-endian.
DTYPES = {"u8": np.dtype("u1"), "u16": np.dtype("<u2"), "f16": np.dtype("<f2"),
          "f32": np.dtype("<f4")}  # fmt: skip


def _pixel_format(name: str) -> PixelFormat:
    channel_type, order, linear = PIXEL_FORMATS[name]
    alpha = order.index("A") if "A" in order else None
    rgb = tuple(order.index(channel) for channel in "RGB")
    return PixelFormat(name, DTYPES[channel_type], len(order), rgb, alpha, linear)


FORMATS = {name: _pixel_format(name) for name in PIXEL_FORMATS}


@functools.cache
def _decoding_table(name: str) -> np.ndarray:
    """Every value of an integer format's channel -> float32 sRGB-encoded 0..1, as rgb()
    gives it: one lookup per value instead of a conversion, and for the linear formats a
    power, per value (65536 entries for 16 bits: 256 KB, held in the CPU's cache)."""
    fmt = FORMATS[name]
    values = np.arange(int(fmt.maximum) + 1, dtype=np.float32) * np.float32(1 / fmt.maximum)
    return linear_to_srgb_np(values) if fmt.linear else values


def bands(height: int, width: int, pixels: int = BAND_PIXELS):
    """(top, bottom) row ranges covering the image, about `pixels` pixels each."""
    rows = max(1, pixels // max(width, 1))
    for top in range(0, height, rows):
        yield top, min(top + rows, height)


def on_all_cores(work, height: int, width: int, pixels: int = BAND_PIXELS) -> list:
    """[work(top, bottom) for every band of rows], the bands shared out over all cores.

    `work` must write only its own rows and must not call on_all_cores itself (the workers
    would wait for themselves)."""
    return list(_BAND_WORKERS.map(lambda band: work(*band), bands(height, width, pixels)))


# map_colours: 8-bit sRGB layers of 4 bytes per pixel, alpha last, whose colour is then the
# low 24 bits of a little-endian 32-bit word; and only large ones, where one 16-megabyte
# table of colours seen costs less than mapping every pixel.
_WORD_FORMATS = ("RGBA8", "BGRA8")
COLOUR_TABLE_MIN_PIXELS = 1 << 22
_COLOURS = 1 << 24


class Layer:
    """The pixels of a request (H, W, channels) in their own format, plus an optional
    selection mask (H, W) uint8: 0 keep, 255 recolour, in between blend."""

    def __init__(self, pixels: np.ndarray, pixel_format: PixelFormat, mask=None):
        self.pixels = pixels
        self.format = pixel_format
        self.mask = mask
        self.height, self.width = pixels.shape[:2]

    @classmethod
    def from_buffer(cls, buffer, width, height, pixel_format: PixelFormat, mask=None):
        """A zero-copy view of a received frame (its length is checked by the protocol)."""
        pixels = np.frombuffer(buffer, dtype=pixel_format.dtype)
        pixels = pixels.reshape(height, width, pixel_format.channels)
        if mask is not None:
            mask = np.frombuffer(mask, dtype=np.uint8).reshape(height, width)
        return cls(pixels, pixel_format, mask)

    def crop(self, top, bottom, left, right) -> "Layer":
        """A view of a rectangle; results written for it land in the same place."""
        mask = None if self.mask is None else self.mask[top:bottom, left:right]
        return Layer(self.pixels[top:bottom, left:right], self.format, mask)

    # --- reading --------------------------------------------------------------------------
    def rgb(self, top=0, bottom=None) -> np.ndarray:
        """Rows top..bottom as float32 sRGB-encoded RGB (rows, W, 3), clipped to 0..1."""
        channels = self.pixels[top:bottom, :, list(self.format.rgb)]
        if not self.format.is_float:
            return _decoding_table(self.format.name)[channels]
        rows = np.clip(channels.astype(np.float32), 0, 1)
        return linear_to_srgb_np(rows) if self.format.linear else rows

    def rgb1(self, top=0, bottom=None) -> np.ndarray:
        """Rows top..bottom as float32 (rows, W, 4): R, G, B as rgb() gives them, then a
        constant 1, so that an affine colour map is one product per pixel. The 8-bit sRGB
        formats take a fast path (one reorder in OpenCV, one conversion, one scaling)."""
        if self.format.name in _TO_RGBA:
            band = self.pixels[top:bottom]
            code = _TO_RGBA[self.format.name]
            rows = (band if code is None else cv2.cvtColor(band, code)).astype(np.float32)
            rows *= np.float32(1 / 255)
        else:
            band = self.rgb(top, bottom)
            rows = np.empty((*band.shape[:2], 4), np.float32)
            rows[..., :3] = band
        rows[..., 3] = 1
        return rows

    def codes8(self, top=0, bottom=None) -> np.ndarray | None:
        """Rows top..bottom as 0xRRGGBB colour codes, uint32 (rows, W), for the 8-bit sRGB
        formats, None for others. These are exactly the codes of rgb() rounded to 8 bits
        (color.to_uint8: value / 255 in float32 comes back to the value), without
        rounding anything."""
        if self.format.name not in _TO_RGBA:
            return None
        band = self.pixels[top:bottom]
        red, green, blue = (band[..., channel].astype(np.uint32) for channel in self.format.rgb)
        red <<= 16
        green <<= 8
        red |= green
        red |= blue
        return red

    def visibility(self, top=0, bottom=None) -> np.ndarray | None:
        """Rows top..bottom as float32 (rows, W): 1 where the pixel is seen (alpha > 0), 0
        where it is fully transparent; None when every pixel there is seen (the common case,
        which then costs one pass over alpha and no float array)."""
        if self.format.alpha is None:
            return None
        seen = self.pixels[top:bottom, :, self.format.alpha] > 0
        return None if seen.all() else seen.astype(np.float32)

    def alpha(self, top=0, bottom=None) -> np.ndarray | None:
        """Rows top..bottom of alpha as float32 in 0..1, None for formats without alpha."""
        if self.format.alpha is None:
            return None
        rows = self.pixels[top:bottom, :, self.format.alpha].astype(np.float32)
        return np.clip(rows / self.format.maximum, 0, 1)

    def visible_box(self) -> tuple[int, int, int, int] | None:
        """(top, bottom, left, right) around the pixels with alpha > 0, None if none is."""
        if self.format.alpha is None:
            return 0, self.height, 0, self.width
        rows = np.zeros(self.height, bool)
        columns = np.zeros(self.width, bool)
        for top, bottom in bands(self.height, self.width):
            seen = self.pixels[top:bottom, :, self.format.alpha] > 0
            rows[top:bottom] = seen.any(axis=1)
            columns |= seen.any(axis=0)
        if not rows.any():
            return None
        (row_index,), (column_index,) = np.nonzero(rows), np.nonzero(columns)
        return row_index[0], row_index[-1] + 1, column_index[0], column_index[-1] + 1

    def palette_weight(self) -> np.ndarray | None:
        """(H, W) float32: how much each pixel counts for palette statistics, its alpha
        (0..1) times its selection (mask / 255); None when every pixel counts fully (no
        alpha channel, no mask). A pixel at alpha 2/255 is all but invisible, so it counts
        2/255 of an opaque one; a fully transparent or unselected one counts 0."""
        weight = None if self.opaque() else self.alpha()
        if self.mask is not None:
            selected = self.mask / np.float32(255)
            weight = selected if weight is None else np.multiply(weight, selected, out=weight)
        return weight

    def palette_sample(self) -> tuple[np.ndarray, np.ndarray | None]:
        """The pixels that palette statistics count (palette.extract_palette and
        distinct_colours on rgb8() and palette_weight()), as (uint8 RGB (n, 1, 3), weight
        (n, 1) float32 or None).

        Above HISTOGRAM_SAMPLE pixels those count an evenly strided sample; taking that same
        sample here first gives the same answers (a sample whose pixels are all opaque
        weighs each 1, as its weight would) while only the sample is converted, not the
        whole layer."""
        count = self.height * self.width
        stride = max(1, -(-count // HISTOGRAM_SAMPLE))
        pixels = self.pixels.reshape(count, 1, self.format.channels)[::stride]
        mask = None if self.mask is None else self.mask.reshape(count, 1)[::stride]
        sample = Layer(pixels, self.format, mask)
        return sample.rgb8(), sample.palette_weight()

    def opaque(self) -> bool:
        """Whether every pixel is fully opaque (always, for formats without alpha)."""
        if self.format.alpha is None:
            return True
        return all(
            self.pixels[top:bottom, :, self.format.alpha].min() >= self.format.maximum
            for top, bottom in bands(self.height, self.width)
        )

    def non_finite(self) -> tuple[int, int] | None:
        """(x, y) of the first pixel with a NaN or infinite channel, None if there is none."""
        if not self.format.is_float:
            return None
        for top, bottom in bands(self.height, self.width):
            bad = ~np.isfinite(self.pixels[top:bottom]).all(axis=-1)
            if bad.any():
                y, x = np.argwhere(bad)[0]
                return int(x), int(top + y)
        return None

    def rgb8(self) -> np.ndarray:
        """uint8 RGB (H, W, 3) for palette statistics only (16^3 histogram bins): never
        used for pixels that are sent back."""
        if self.format.dtype == np.uint8 and not self.format.linear:
            red, _, blue = self.format.rgb  # R, G, B are adjacent: a view, no copy
            step = 1 if blue > red else -1
            stop = blue + step
            return self.pixels[..., red : stop if stop >= 0 else None : step]
        out = np.empty((self.height, self.width, 3), np.uint8)
        for top, bottom in bands(self.height, self.width):
            out[top:bottom] = np.round(self.rgb(top, bottom) * 255)
        return out

    # --- writing --------------------------------------------------------------------------
    def recolor_into(self, out: np.ndarray, transform) -> None:
        """Write transform(rgb1 rows, top) -> new RGB rows into `out`, blended by the mask,
        band by band on all cores.

        transform gets float32 (rows, W, 4) as rgb1() gives them and returns float32
        (rows, W, 3) sRGB-encoded RGB (clipped to 0..1 here). `out` is an array shaped like
        this layer's pixels; what it holds is never read, and every pixel of it is written:
        the colour channels of pixels with weight() > 0 from the result, everything else
        (alpha, unselected and fully transparent pixels) copied from the layer bit for bit."""

        def band(top, bottom):
            rgb1 = self.rgb1(top, bottom)
            result = transform(rgb1, top)
            visible = self.visibility(top, bottom)
            keep = None if visible is None else visible == 0
            if self.mask is not None:
                weight = self.mask[top:bottom] * np.float32(1 / 255)
                if visible is not None:
                    weight *= visible
                source = rgb1[..., :3]
                result = source + weight[..., None] * (result - source)
                keep = weight == 0
            self._write_rgb(self.pixels[top:bottom], out[top:bottom], result)
            if keep is not None and keep.any():
                np.copyto(out[top:bottom], self.pixels[top:bottom], where=keep[..., None])

        on_all_cores(band, self.height, self.width)

    def map_colours(self, out: np.ndarray, colour_map) -> bool:
        """Recolour by a function of colour alone, each distinct colour mapped once: write
        into `out` what recolor_into(out, transform) writes for a transform that maps every
        pixel by colour_map, bit for bit, at a fraction of the cost on large layers (a photo
        of 24 megapixels holds a few million distinct colours; flat art a handful).

        colour_map: float32 RGB (n, 3) in 0..1 -> float32 RGB (n, 3). Returns False, having
        done nothing, where this way does not apply (a mask, a format other than RGBA8 or
        BGRA8, a small layer, or more distinct colours than half the pixels)."""
        if self.format.name not in _WORD_FORMATS or self.mask is not None:
            return False
        if sys.byteorder != "little":  # the words below are read as little-endian
            return False
        if any(array.strides[-2:] != (4, 1) for array in (self.pixels, out)):
            return False  # pixels not 4 bytes apart: no 32-bit view
        if self.height * self.width < COLOUR_TABLE_MIN_PIXELS:
            return False
        words = self.pixels.view(np.uint32)[..., 0]  # (H, W): 0xAABBGGRR or 0xAARRGGBB
        seen = np.zeros(_COLOURS, np.bool_)

        def mark(top, bottom):  # threads may set the same entry: each writes True
            seen[words[top:bottom] & 0xFFFFFF] = True

        on_all_cores(mark, self.height, self.width)
        if np.count_nonzero(seen) > self.height * self.width // 2:
            return False
        table = np.empty(_COLOURS, np.uint32)  # only entries that are seen are ever read
        span = BAND_PIXELS * 8  # colours per piece of the table

        def fill(piece, _):
            first = piece * span
            keys = np.flatnonzero(seen[first : first + span]).astype(np.uint32) + np.uint32(first)
            if len(keys) == 0:
                return
            colours = keys.view(np.uint8).reshape(-1, 1, 4)  # the same byte order as a pixel
            source = Layer(colours, self.format)
            mapped = np.empty_like(colours)
            source._write_rgb(colours, mapped, colour_map(source.rgb1()[:, 0, :3])[:, None])
            table[keys] = mapped.view(np.uint32)[:, 0, 0] & 0xFFFFFF

        on_all_cores(fill, _COLOURS // span, span, 1)
        out_words = out.view(np.uint32)[..., 0]

        def look_up(top, bottom):
            rows = words[top:bottom]
            new = table[rows & 0xFFFFFF] | (rows & 0xFF000000)
            out_words[top:bottom] = np.where(rows < 0x01000000, rows, new)  # alpha 0: kept

        on_all_cores(look_up, self.height, self.width)
        return True

    def _write_rgb(self, source: np.ndarray, target: np.ndarray, rgb: np.ndarray) -> None:
        """target rows <- source rows with the colour channels replaced by `rgb` (rows, W, 3)
        encoded in this format (channels other than colour copied as they are)."""
        pixel_rows = target.strides[-1] == 1 and target.strides[-2] == self.format.channels
        if self.format.name in _TO_RGBA and pixel_rows:  # OpenCV rounds, saturates, interleaves
            rgb = np.maximum(rgb, np.float32(0))  # convertScaleAbs takes abs() of negatives
            encoded = cv2.convertScaleAbs(rgb, alpha=255)  # rounds half to even, as np.round
            pairs = [value for channel, position in enumerate(self.format.rgb)
                     for value in (channel, position)]  # fmt: skip
            others = [c for c in range(self.format.channels) if c not in self.format.rgb]
            pairs += [value for c in others for value in (3 + c, c)]
            cv2.mixChannels([encoded, source], [target], pairs)
            return
        np.copyto(target, source)
        for channel, position in enumerate(self.format.rgb):
            target[..., position] = self.encode(rgb[..., channel])

    def encode(self, values: np.ndarray) -> np.ndarray:
        """sRGB-encoded float values in 0..1 -> this format's channel values (rounded for
        integers; converted to linear light first for the linear formats)."""
        if self.format.linear:
            values = srgb_to_linear_np(values)
        if self.format.is_float:
            return np.clip(values, 0, 1).astype(self.format.dtype)
        scaled = np.clip(np.round(values * self.format.maximum), 0, self.format.maximum)
        return scaled.astype(self.format.dtype)
