"""The local transfer carried to an 8-bit sRGB layer in one compiled pass per band.

What recolor.finish does for a photo, step by step in NumPy and OpenCV (decode to float,
interpolate twelve map planes to every pixel, apply them, look up the exact fill colours,
round back to 8 bits, keep alpha and transparent pixels), costs about 0.8 s of CPU at 24
megapixels, mostly in moving whole float images through memory between the steps. Here one
loop per pixel does all of it while the pixel is in a register (0.21 s of CPU for the same
layer), compiled by Numba; bands of rows run on every core as before (the compiled
function releases the GIL). Results equal the step-by-step path's within one 8-bit level
(float rounding order).

Only for what is common and simple: RGBA8, BGRA8 and RGB8 layers without a selection mask.
Everything else keeps the step-by-step path (pixels.Layer.recolor_into).
"""

import numba
import numpy as np

from backend.core.colormap import ExactColours
from backend.core.fullres import AffineField, _row_taps
from backend.core.pixels import Layer, on_all_cores

FORMATS = ("RGBA8", "BGRA8", "RGB8")


def applies(layer: Layer) -> bool:
    """Whether `layer` can take this path: an 8-bit sRGB format above, no mask."""
    return layer.format.name in FORMATS and layer.mask is None


def recolor_into(layer: Layer, out: np.ndarray, field: AffineField, exact: ExactColours):
    """Write into `out` (an array shaped like layer.pixels, contents not read) what
    layer.recolor_into(out, FillKeeper(field, ...)) writes, within one 8-bit level: each
    pixel's colour through the bilinearly interpolated local affine map of `field`, or its
    exact fill colour's output where `exact` has one; alpha kept; fully transparent pixels
    copied as they are. ValueError where `applies(layer)` is False."""
    if not applies(layer):
        raise ValueError(f"no compiled path for {layer.format.name} with a mask")
    maps = np.ascontiguousarray(np.stack(field.outputs, axis=2))  # (h, w, C, G + 1)
    maps = maps.reshape(*maps.shape[:2], -1)  # (h, w, 12): channel c's map at 4c..4c+3
    row_first, row_second, row_fraction = field.rows
    column_first, _, column_fraction = _row_taps(field.width, maps.shape[1])
    order = np.array([*layer.format.rgb, -1 if layer.format.alpha is None else layer.format.alpha])
    slots = exact.slots if exact.slots is not None else np.zeros(1, np.uint8)

    def band(top, bottom):
        _affine_band(layer.pixels[top:bottom], out[top:bottom], order, top, row_first,
                     row_second, row_fraction, maps, column_first, column_fraction, slots,
                     exact.by_slot, exact.slots is not None)  # fmt: skip

    on_all_cores(band, layer.height, layer.width)


@numba.njit(nogil=True, cache=True)
def _affine_band(pixels, out, order, top, row_first, row_second, row_fraction, maps,
                 column_first, column_fraction, slots, by_slot, with_exact):  # fmt: skip
    """One band of rows: pixels and out (rows, W, channels) uint8, order = positions of R,
    G, B and alpha (-1: none); maps (h, w, 12) float32 at the working size, taps as
    fullres._row_taps gives them for rows (indexed from `top`) and columns."""
    rows, width = pixels.shape[0], pixels.shape[1]
    working_width = maps.shape[1]
    red, green, blue, alpha = order[0], order[1], order[2], order[3]
    # the maps interpolated to the row at the working width, and the step from each
    # working column to the next: a pixel's map is then near + fraction * step, computed
    # as it is used (as fast as reading it from a buffer, and no buffer to fill)
    near_row = np.empty((working_width, 12), np.float32)
    step_row = np.empty((working_width, 12), np.float32)
    scale = np.float32(1.0 / 255.0)
    for i in range(rows):
        first, second, fraction = row_first[top + i], row_second[top + i], row_fraction[top + i]
        for j in range(working_width):
            for k in range(12):
                near = maps[first, j, k]
                near_row[j, k] = near + fraction * (maps[second, j, k] - near)
        for j in range(working_width):
            right = min(j + 1, working_width - 1)  # the second column tap (_row_taps)
            for k in range(12):
                step_row[j, k] = near_row[right, k] - near_row[j, k]
        for x in range(width):
            r, g, b = pixels[i, x, red], pixels[i, x, green], pixels[i, x, blue]
            if alpha >= 0:
                out[i, x, alpha] = pixels[i, x, alpha]
                if pixels[i, x, alpha] == 0:  # not seen: kept as it is
                    out[i, x, red], out[i, x, green], out[i, x, blue] = r, g, b
                    continue
            slot = 0
            if with_exact:
                slot = slots[(np.int64(r) << 16) | (np.int64(g) << 8) | np.int64(b)]
            if slot != 0:
                new_r, new_g, new_b = by_slot[slot, 0], by_slot[slot, 1], by_slot[slot, 2]
            else:
                rf, gf, bf = r * scale, g * scale, b * scale
                n, d, w = near_row[column_first[x]], step_row[column_first[x]], column_fraction[x]
                new_r = ((n[0] + w * d[0]) * rf + (n[1] + w * d[1]) * gf + (n[2] + w * d[2]) * bf
                         + (n[3] + w * d[3]))  # fmt: skip
                new_g = ((n[4] + w * d[4]) * rf + (n[5] + w * d[5]) * gf + (n[6] + w * d[6]) * bf
                         + (n[7] + w * d[7]))  # fmt: skip
                new_b = ((n[8] + w * d[8]) * rf + (n[9] + w * d[9]) * gf
                         + (n[10] + w * d[10]) * bf + (n[11] + w * d[11]))  # fmt: skip
            out[i, x, red] = _to_u8(new_r)
            out[i, x, green] = _to_u8(new_g)
            out[i, x, blue] = _to_u8(new_b)


@numba.njit(inline="always")
def _to_u8(value):
    """A colour value in 0..1 (clipped) to 0..255, rounded half to even as np.round."""
    return np.uint8(min(max(np.rint(value * np.float32(255.0)), 0.0), 255.0))
