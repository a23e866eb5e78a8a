"""Pixel formats of the wire protocol as numpy types, and the layer a request carries.

A layer is W*H tightly packed pixels in one of backend.wire.PIXEL_FORMATS: sRGB-encoded values (what
an 8-bit PNG holds) or, for the `_LINEAR` formats, linear light (what GIMP and Krita store in
linear-precision images; the layer's own encoding, so an editor writes the answer back
without a conversion that would round it). Recolouring needs float RGB in
0..1, but everything else must come back untouched: alpha bytes identical, 16-bit and float
layers at their own precision. So a Layer keeps the request's buffer as it is, hands out
float RGB a band of rows at a time, and writes results into a copy of that buffer, colour
channel by colour channel: alpha is never converted and never written, and pixels the
result does not touch (mask 0, fully transparent) keep their original values bit for bit.
"""

from dataclasses import dataclass

import numpy as np

from backend.core.color import linear_to_srgb_np, srgb_to_linear_np
from backend.wire import PIXEL_FORMATS

BAND_PIXELS = 1 << 20  # pixels converted to float at once: about 12 MB per float RGB band


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


def bands(height: int, width: int, pixels: int = BAND_PIXELS):
    """(top, bottom) row ranges covering the image, about `pixels` pixels each."""
    rows = max(1, pixels // max(width, 1))
    for top in range(0, height, rows):
        yield top, min(top + rows, height)


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
        rows = self.pixels[top:bottom, :, list(self.format.rgb)].astype(np.float32)
        if self.format.is_float:
            rows = np.clip(rows, 0, 1, out=rows)
        else:
            rows = np.multiply(rows, 1 / self.format.maximum, out=rows)
        return linear_to_srgb_np(rows) if self.format.linear else rows

    def alpha(self, top=0, bottom=None) -> np.ndarray | None:
        """Rows top..bottom of alpha as float32 in 0..1, None for formats without alpha."""
        if self.format.alpha is None:
            return None
        rows = self.pixels[top:bottom, :, self.format.alpha].astype(np.float32)
        return np.clip(rows / self.format.maximum, 0, 1)

    def visible(self, top=0, bottom=None) -> np.ndarray:
        """Rows top..bottom as float32 (rows, W): 1 where the pixel is seen (alpha > 0),
        0 where it is fully transparent; all 1 for formats without alpha."""
        if self.format.alpha is None:
            return np.ones((len(self.pixels[top:bottom]), self.width), np.float32)
        return (self.pixels[top:bottom, :, self.format.alpha] > 0).astype(np.float32)

    def weight(self, top=0, bottom=None) -> np.ndarray:
        """How much each pixel of rows top..bottom may change (rows, W) in 0..1: the mask,
        and nothing where the pixel is fully transparent (its colour is not seen)."""
        weight = self.visible(top, bottom)
        if self.mask is not None:
            weight *= self.mask[top:bottom] / np.float32(255)
        return weight

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
        weight = self.alpha()
        if self.mask is not None:
            selected = self.mask / np.float32(255)
            weight = selected if weight is None else np.multiply(weight, selected, out=weight)
        return weight

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
            return self.pixels[..., list(self.format.rgb)]
        out = np.empty((self.height, self.width, 3), np.uint8)
        for top, bottom in bands(self.height, self.width):
            out[top:bottom] = np.round(self.rgb(top, bottom) * 255)
        return out

    # --- writing --------------------------------------------------------------------------
    def recolor_into(self, out: np.ndarray, transform) -> None:
        """Write transform(rgb rows, top) -> new rgb rows into `out` (an array shaped like
        this layer's pixels, holding a copy of them), band by band, blended by weight().

        Only the colour channels of pixels with weight > 0 are written: alpha, unselected
        and fully transparent pixels keep their exact original values."""
        for top, bottom in bands(self.height, self.width):
            source = self.rgb(top, bottom)
            weight = self.weight(top, bottom)[..., None]
            result = transform(source, top)
            blended = source + weight * (result - source)
            target = out[top:bottom]
            for channel, position in enumerate(self.format.rgb):
                values = self.encode(blended[..., channel])
                target[..., position] = np.where(weight[..., 0] > 0, values, target[..., position])

    def encode(self, values: np.ndarray) -> np.ndarray:
        """sRGB-encoded float values in 0..1 -> this format's channel values (rounded for
        integers; converted to linear light first for the linear formats)."""
        if self.format.linear:
            values = srgb_to_linear_np(values)
        if self.format.is_float:
            return np.clip(values, 0, 1).astype(self.format.dtype)
        scaled = np.clip(np.round(values * self.format.maximum), 0, self.format.maximum)
        return scaled.astype(self.format.dtype)
