"""Carrying a result computed at a working size to the full-resolution layer.

PaletteNet's cost grows with the pixel count (its deepest features cover 16 x 16 pixels), and
a 24-megapixel canvas is far beyond both its training size and a GPU's memory. So the network
runs on the layer reduced to a working size (long side WORKING_SIDE, a multiple of 16), and
its result comes back to full size as a colour transform, not as pixels:

1. In every small window of the working image, the change the network made (result minus
   source, in RGB) is fitted as an affine function of the source colour: a guided filter
   with the colour image as its own guide (He, Sun and Tang 2013), fitted on the change so
   the regularisation pulls towards "shift every colour alike" rather than "flatten".
2. The coefficients (3 x 3 matrix + offset per working pixel) vary smoothly over the image,
   so they are interpolated bilinearly to full size (He and Sun's fast guided filter), and
   every full-resolution pixel is mapped through the transform at its own position.

Detail and edges come from the full-resolution source itself: two colours meeting at an
edge pass through the same local transform and each gets its own new colour, so there are no
halos and no blocks, whatever the scale factor. The cost per full-resolution pixel is a
bilinear lookup of 12 numbers and a 3 x 3 product, independent of the network.
"""

import os

import cv2
import numba
import numpy as np

from backend.core.pixels import Layer, on_all_cores

WORKING_SIDE = 512  # long side of the image the network sees
MULTIPLE = 16  # the network's total stride
RADIUS = 2  # guided-filter window (2 * RADIUS + 1 working pixels square)
EPSILON = 1e-5  # regularisation: colour variance (RGB 0..1) below which slopes are damped


def working_size(height: int, width: int, side: int = WORKING_SIDE) -> tuple[int, int]:
    """The size the network runs at: the layer's own if its long side is at most `side`,
    else scaled so the long side is `side`, each dimension a multiple of MULTIPLE (a short
    side that would round to nothing keeps up to MULTIPLE pixels; none is enlarged)."""
    if max(height, width) <= side:
        return height, width
    scale = side / max(height, width)

    def reduced(n: int) -> int:
        return min(n, max(MULTIPLE, round(n * scale / MULTIPLE) * MULTIPLE))

    return reduced(height), reduced(width)


# --- reduction ----------------------------------------------------------------------------
def area_resize(read_rows, height: int, width: int, size: tuple[int, int]) -> np.ndarray:
    """Area-average an image to `size` (h, w), reading it a band of rows at a time.

    read_rows(top, bottom) -> float (rows, width, C). Returns float32 (h, w, C). Exact area
    averaging for any ratio, including non-integer ones (OpenCV's INTER_AREA when reducing):
    each band is reduced across on all cores, then the (height, w, C) intermediate down.
    Memory is a band per core plus that intermediate, never the full image in float."""
    out_h, out_w = size
    if out_h > height or out_w > width:
        raise ValueError(f"area averaging reduces: {width} x {height} cannot become {size}")

    def across(top, bottom):
        rows = np.asarray(read_rows(top, bottom), np.float32)
        return _channels(cv2.resize(rows, (out_w, bottom - top), interpolation=cv2.INTER_AREA))

    columns = np.concatenate(on_all_cores(across, height, width))
    return _channels(cv2.resize(columns, (out_w, out_h), interpolation=cv2.INTER_AREA))


def _channels(image: np.ndarray) -> np.ndarray:
    """OpenCV returns a one-channel image as (h, w): back to (h, w, 1)."""
    return image[..., None] if image.ndim == 2 else image


def weighted_resize(read_weighted, height, width, size):
    """Area-average of colours weighted by e.g. visibility, and the mean weight of each
    output pixel. read_weighted(top, bottom) -> float (rows, width, C + 1): colours already
    multiplied by their weight, then the weight. Output pixels with no weight at all take
    the mean colour, so the network's input holds no invented black regions.

    Returns (colour float32 (h, w, C), weight float32 (h, w))."""
    summed = area_resize(read_weighted, height, width, size)
    return _divided_by_weight(summed[..., :-1], summed[..., -1])


def visible_resize(layer: Layer, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The layer's colours area-averaged to `size` (h, w) over its visible pixels (alpha >
    0; a transparent pixel's colour is never seen), and the visible share of each output
    pixel: weighted_resize of rgb() weighted by visibility(). Returns (RGB float32 (h, w,
    3) in 0..1, share float32 (h, w) in 0..1); output pixels with nothing visible take the
    mean colour.

    8-bit sRGB layers (RGBA8, BGRA8, RGB8) are summed straight from their bytes in whole
    numbers (_visible_sums: exact, on all cores, no float copy of the layer); others go
    through weighted_resize. The two agree to float32 rounding (test)."""
    if layer.format.name not in _BYTE_FORMATS:

        def weighted(top, bottom):  # R, G, B times visibility, then visibility
            rows = layer.rgb1(top, bottom)
            visible = layer.visibility(top, bottom)
            return rows if visible is None else np.multiply(rows, visible[..., None], out=rows)

        return weighted_resize(weighted, layer.height, layer.width, size)
    out_h, out_w = size
    if out_h > layer.height or out_w > layer.width:
        raise ValueError(f"area averaging reduces: {layer.width} x {layer.height} cannot "
                         f"become {size}")  # fmt: skip
    fmt = layer.format
    order = np.array([*fmt.rgb, -1 if fmt.alpha is None else fmt.alpha])
    rows, columns = _area_taps(layer.height, out_h), _area_taps(layer.width, out_w)
    sums = np.empty((out_h, out_w, 4), np.int64)  # R, G, B (0..255) and visible pixels
    parts = -(-out_h // (os.cpu_count() or 1))  # output rows per core

    def band(top, bottom):
        _visible_sums(layer.pixels, order, *rows, *columns, top, bottom, sums)

    on_all_cores(band, out_h, out_w, parts * out_w)
    # Each output pixel's weights add up to height * width (see _area_taps).
    visible = sums[..., 3]
    colour = sums[..., :3] / (255.0 * np.maximum(visible, 1))[..., None]
    colour[visible == 0] = 0
    share = visible / float(layer.height * layer.width)
    return _divided_by_weight(colour.astype(np.float32), share.astype(np.float32), True)


def _divided_by_weight(colour, weight, divided=False):
    """(colour, weight) of weighted_resize from summed colour times weight and the weight
    (or, `divided`, colour already divided where the weight is positive)."""
    empty = weight <= 1e-12
    if not divided:
        colour = colour / np.where(empty, 1, weight)[..., None]
    if empty.any() and not empty.all():
        colour[empty] = np.average(colour[~empty], axis=0, weights=weight[~empty])
    return colour, weight


_BYTE_FORMATS = ("RGBA8", "BGRA8", "RGB8")  # 8-bit sRGB: a colour value is byte / 255


def _area_taps(full: int, reduced: int):
    """Area averaging of `full` pixels to `reduced` as whole numbers: output j covers input
    [j * full / reduced, (j + 1) * full / reduced), so input pixel k lies in output
    first[k] with weight share[k] and in first[k] + 1 with weight reduced - share[k] (0
    unless it straddles the border), in units of 1 / reduced of a pixel. Each output's
    weights add up to `full`. Returns (first int64 (full,), share int64 (full,))."""
    k = np.arange(full, dtype=np.int64)
    first = k * reduced // full
    straddles = (k + 1) * reduced > (first + 1) * full
    share = np.where(straddles, (first + 1) * full - k * reduced, reduced)
    return first, share


@numba.njit(nogil=True, cache=True)
def _visible_sums(pixels, order, row_first, row_share, column_first, column_share, top,
                  bottom, sums):  # fmt: skip
    """Output rows top..bottom of sums (h, w, 4) int64: per output pixel the area-weighted
    sums (weights from _area_taps, rows times columns) of R, G and B of the visible pixels
    (alpha > 0; order = positions of R, G, B, alpha or -1) and of their count."""
    height, width = pixels.shape[0], pixels.shape[1]
    out_w = sums.shape[1]
    reduced_rows, reduced_columns = sums.shape[0], out_w
    red, green, blue, alpha = order[0], order[1], order[2], order[3]
    sums[top:bottom] = 0
    line = np.empty((out_w + 1, 4), np.int64)  # one input row summed across (+1: spill)
    first_row = 0
    while first_row < height and row_first[first_row] + 1 < top:
        first_row += 1
    for y in range(first_row, height):
        upper, upper_share = row_first[y], row_share[y]
        if upper >= bottom:
            break
        line[:] = 0
        for x in range(width):
            if alpha >= 0 and pixels[y, x, alpha] == 0:
                continue
            left, share = column_first[x], column_share[x]
            r, g, b = (
                np.int64(pixels[y, x, red]),
                np.int64(pixels[y, x, green]),
                np.int64(pixels[y, x, blue]),
            )
            line[left, 0] += share * r
            line[left, 1] += share * g
            line[left, 2] += share * b
            line[left, 3] += share
            rest = reduced_columns - share
            if rest:
                line[left + 1, 0] += rest * r
                line[left + 1, 1] += rest * g
                line[left + 1, 2] += rest * b
                line[left + 1, 3] += rest
        for target, weight in ((upper, upper_share), (upper + 1, reduced_rows - upper_share)):
            if weight and top <= target < bottom:
                for j in range(out_w):
                    for c in range(4):
                        sums[target, j, c] += weight * line[j, c]


# --- the colour transform -----------------------------------------------------------------
def _window_sums(values: np.ndarray, radius: int) -> np.ndarray:
    """Sums of (h, w, C) float64 over (2r+1)^2 windows, zero outside the image."""
    size = 2 * radius + 1
    sums = cv2.boxFilter(values, -1, (size, size), normalize=False, borderType=cv2.BORDER_CONSTANT)
    return _channels(sums)


def fit_local_affine(guide, change, weight, radius=RADIUS, epsilon=EPSILON) -> np.ndarray:
    """Local affine maps guide -> change, one per working pixel (a guided filter).

    guide (h, w, G) and change (h, w, C) float; weight (h, w): how much each pixel counts
    (0 for transparent ones, which must not steer the fit). In every window the least-squares
    map change ~ [guide, 1] @ M is found, slopes damped by `epsilon` (in guide units
    squared); each pixel then gets the mean of the maps of the windows that hold it.
    Returns float32 (h, w, G + 1, C). float64 inside.

    Colour guides and changes (G = C = 3, what the recolouring fits) take one compiled
    pass on all cores (_fit_rgb_band); other shapes whole planes in NumPy and OpenCV's box
    filter. Both give the same maps up to float64 rounding (test)."""
    if np.shape(guide)[-1] == np.shape(change)[-1] == 3:
        return _fit_rgb(guide, change, weight, radius, epsilon)
    return _fit_planes(guide, change, weight, radius, epsilon)


def _fit_planes(guide, change, weight, radius: int, epsilon: float) -> np.ndarray:
    """fit_local_affine for any number of channels, as whole planes: OpenCV's box filter
    for the window sums, the products and the solve in NumPy."""
    x = np.asarray(guide, np.float64)
    y = np.asarray(change, np.float64)
    w = np.asarray(weight, np.float64)[..., None]
    height, width, inputs = x.shape
    outputs = y.shape[2]

    def outer(a, b):  # (h, w, A), (h, w, B) -> (h, w, A * B), as whole planes
        return np.einsum("hwi,hwj->hwij", a, b).reshape(height, width, -1)

    total = np.maximum(_window_sums(w, radius), 1e-12)
    # Weighted window means of x, y, x x^T and x y^T, all in one box filter pass.
    means = _window_sums(w * np.concatenate([x, y, outer(x, x), outer(x, y)], -1), radius) / total
    mean_x, mean_y, mean_xx, mean_xy = np.split(
        means, np.cumsum([inputs, outputs, inputs * inputs]), axis=-1
    )
    covariance = (mean_xx - outer(mean_x, mean_x)).reshape(height, width, inputs, inputs)
    cross = (mean_xy - outer(mean_x, mean_y)).reshape(height, width, inputs, outputs)
    slope = _solve(covariance + epsilon * np.eye(inputs), cross)  # (h, w, G, C)
    offset = mean_y - np.einsum("hwi,hwij->hwj", mean_x, slope)
    maps = np.concatenate([slope, offset[:, :, None]], axis=2)  # (h, w, G + 1, C)
    # Every pixel lies in (2r+1)^2 windows (fewer at the border): averaging their maps (the
    # guided filter's second step) makes the field smooth, so no window's fit shows as a block.
    count = _window_sums(np.ones((height, width, 1)), radius)
    smooth = _window_sums(maps.reshape(height, width, -1), radius) / count
    return smooth.reshape(maps.shape).astype(np.float32)


def _fit_rgb(guide, change, weight, radius: int, epsilon: float) -> np.ndarray:
    """fit_local_affine for colour guides and changes (h, w, 3) each: bands of rows on
    every core, each band computing the window sums it needs (2 * radius rows beyond it)."""
    x = np.ascontiguousarray(guide, np.float64)
    y = np.ascontiguousarray(change, np.float64)
    w = np.ascontiguousarray(weight, np.float64)
    height, width = x.shape[:2]
    maps = np.empty((height, width, 4, 3), np.float32)
    rows = -(-height // (os.cpu_count() or 1))  # one band per core

    def band(top, bottom):
        _fit_rgb_band(x, y, w, radius, epsilon, top, bottom, maps)

    on_all_cores(band, height, width, rows * width)
    return maps


_PRODUCTS = 22  # per pixel: w, then w times x (3), y (3), x x^T (6 distinct), x y^T (9)


@numba.njit(nogil=True, cache=True)
def _fit_rgb_band(x, y, w, radius, epsilon, top, bottom, out):
    """Rows top..bottom of fit_local_affine(x, y, w) into out (h, w, 4, 3): the weighted
    window sums of the products (separable: along rows, then down columns), each window's
    least-squares map (the adjugate solve of _solve), then the mean of the maps of the
    windows holding each pixel."""
    height, width = x.shape[0], x.shape[1]
    first_map, last_map = max(top - radius, 0), min(bottom + radius, height)
    first_row, last_row = max(first_map - radius, 0), min(last_map + radius, height)
    along = np.zeros((last_row - first_row, width, _PRODUCTS))  # summed along the row
    products = np.empty((width, _PRODUCTS))
    for i in range(first_row, last_row):
        for j in range(width):
            p, weight = products[j], w[i, j]
            x0, x1, x2 = x[i, j, 0], x[i, j, 1], x[i, j, 2]
            y0, y1, y2 = y[i, j, 0], y[i, j, 1], y[i, j, 2]
            p[0] = weight
            p[1], p[2], p[3] = weight * x0, weight * x1, weight * x2
            p[4], p[5], p[6] = weight * y0, weight * y1, weight * y2
            p[7], p[8], p[9] = weight * (x0 * x0), weight * (x0 * x1), weight * (x0 * x2)
            p[10], p[11], p[12] = weight * (x1 * x1), weight * (x1 * x2), weight * (x2 * x2)
            p[13], p[14], p[15] = weight * (x0 * y0), weight * (x0 * y1), weight * (x0 * y2)
            p[16], p[17], p[18] = weight * (x1 * y0), weight * (x1 * y1), weight * (x1 * y2)
            p[19], p[20], p[21] = weight * (x2 * y0), weight * (x2 * y1), weight * (x2 * y2)
        row = along[i - first_row]
        for j in range(width):
            for jj in range(max(j - radius, 0), min(j + radius + 1, width)):
                for k in range(_PRODUCTS):
                    row[j, k] += products[jj, k]
    maps = np.zeros((last_map - first_map, width, 12))  # per window: slope (3 x 3), offset
    sums = np.empty(_PRODUCTS)
    for i in range(first_map, last_map):
        for j in range(width):
            sums[:] = 0.0
            for ii in range(max(i - radius, 0), min(i + radius + 1, height)):
                for k in range(_PRODUCTS):
                    sums[k] += along[ii - first_row, j, k]
            total = max(sums[0], 1e-12)
            mx0, mx1, mx2 = sums[1] / total, sums[2] / total, sums[3] / total
            my0, my1, my2 = sums[4] / total, sums[5] / total, sums[6] / total
            # covariance of x (symmetric) with epsilon on the diagonal
            a00 = sums[7] / total - mx0 * mx0 + epsilon
            a01 = sums[8] / total - mx0 * mx1
            a02 = sums[9] / total - mx0 * mx2
            a11 = sums[10] / total - mx1 * mx1 + epsilon
            a12 = sums[11] / total - mx1 * mx2
            a22 = sums[12] / total - mx2 * mx2 + epsilon
            # adjugate (symmetric too) and determinant
            c00, c01, c02 = a11 * a22 - a12 * a12, a02 * a12 - a01 * a22, a01 * a12 - a02 * a11
            c11, c12 = a00 * a22 - a02 * a02, a02 * a01 - a00 * a12
            c22 = a00 * a11 - a01 * a01
            determinant = a00 * c00 + a01 * c01 + a02 * c02
            m = maps[i - first_map, j]
            for c in range(3):
                means_y = (my0, my1, my2)[c]
                b0 = sums[13 + c] / total - mx0 * means_y  # cross-covariance of x and y_c
                b1 = sums[16 + c] / total - mx1 * means_y
                b2 = sums[19 + c] / total - mx2 * means_y
                s0 = (c00 * b0 + c01 * b1 + c02 * b2) / determinant
                s1 = (c01 * b0 + c11 * b1 + c12 * b2) / determinant
                s2 = (c02 * b0 + c12 * b1 + c22 * b2) / determinant
                m[c], m[3 + c], m[6 + c] = s0, s1, s2
                m[9 + c] = means_y - (mx0 * s0 + mx1 * s1 + mx2 * s2)
    # each pixel: the mean of the maps of the windows holding it
    along_maps = np.zeros((last_map - first_map, width, 12))
    for i in range(last_map - first_map):
        for j in range(width):
            for jj in range(max(j - radius, 0), min(j + radius + 1, width)):
                for k in range(12):
                    along_maps[i, j, k] += maps[i, jj, k]
    for i in range(top, bottom):
        rows = min(i + radius + 1, height) - max(i - radius, 0)
        for j in range(width):
            count = rows * (min(j + radius + 1, width) - max(j - radius, 0))
            for k in range(12):
                total = 0.0
                for ii in range(max(i - radius, 0), min(i + radius + 1, height)):
                    total += along_maps[ii - first_map, j, k]
                out[i, j, k // 3, k % 3] = total / count


def _solve(matrices: np.ndarray, right: np.ndarray) -> np.ndarray:
    """matrices (..., n, n) symmetric positive definite, right (..., n, m) -> solutions.

    For n = 3 (colour guides) by the adjugate, whole planes at a time: a tenth of the time
    of np.linalg.solve's loop over 3 x 3 systems."""
    if matrices.shape[-1] != 3:
        return np.linalg.solve(matrices, right)
    a = np.moveaxis(matrices, (-2, -1), (0, 1))  # a[i, j] is a plane
    adjugate = np.array([
        [a[1, 1] * a[2, 2] - a[1, 2] * a[2, 1], a[0, 2] * a[2, 1] - a[0, 1] * a[2, 2],
         a[0, 1] * a[1, 2] - a[0, 2] * a[1, 1]],
        [a[1, 2] * a[2, 0] - a[1, 0] * a[2, 2], a[0, 0] * a[2, 2] - a[0, 2] * a[2, 0],
         a[0, 2] * a[1, 0] - a[0, 0] * a[1, 2]],
        [a[1, 0] * a[2, 1] - a[1, 1] * a[2, 0], a[0, 1] * a[2, 0] - a[0, 0] * a[2, 1],
         a[0, 0] * a[1, 1] - a[0, 1] * a[1, 0]],
    ])  # fmt: skip
    determinant = a[0, 0] * adjugate[0, 0] + a[0, 1] * adjugate[1, 0] + a[0, 2] * adjugate[2, 0]
    b = np.moveaxis(right, (-2, -1), (0, 1))
    solution = np.einsum("ik...,kj...->ij...", adjugate, b) / determinant
    return np.moveaxis(solution, (0, 1), (-2, -1))


def _row_taps(full: int, working: int):
    """For each full-resolution row: the two working rows around it and the weight of the
    second, pixel centres aligned (the convention of OpenCV's INTER_LINEAR, which
    interpolates the columns, and of F.interpolate with align_corners=False)."""
    position = np.clip((np.arange(full) + 0.5) * (working / full) - 0.5, 0, working - 1)
    first = np.floor(position).astype(np.int64)
    second = np.minimum(first + 1, working - 1)
    fraction = (position - first).astype(np.float32)
    return first, second, fraction


class AffineField:
    """Fitted local maps (fit_local_affine) at full size, for a band loop over the layer:
    field(guide rows with a constant 1 appended, top) -> the guide's new values, the maps
    interpolated bilinearly to each pixel.

    The identity is folded into the maps (they map a colour to its new colour, not to its
    change), and they are kept as one (h, w, G + 1) image per output channel: OpenCV
    interpolates such 4-channel images fastest, and the map at a pixel is then one
    elementwise product with the guide and a sum over the last axis."""

    def __init__(self, maps: np.ndarray, height: int, width: int):
        maps = np.array(maps, dtype=np.float32)  # (h, w, G + 1, C), a copy to change
        inputs, outputs = maps.shape[2] - 1, maps.shape[3]
        for channel in range(min(inputs, outputs)):
            maps[:, :, channel, channel] += 1  # change -> new value
        self.outputs = [np.ascontiguousarray(maps[..., c]) for c in range(outputs)]
        self.rows = _row_taps(height, maps.shape[0])
        self.width = width

    def __call__(self, guide: np.ndarray, top: int) -> np.ndarray:
        """guide (rows, W, G + 1) float32, the last channel 1 -> new values (rows, W, C)."""
        first, second, fraction = (t[top : top + len(guide)] for t in self.rows)
        out = np.empty((*guide.shape[:2], len(self.outputs)), np.float32)
        for channel, maps in enumerate(self.outputs):
            near, far = maps[first], maps[second]
            rows = near + fraction[:, None, None] * (far - near)  # at the working width
            full = cv2.resize(rows, (self.width, len(guide)), interpolation=cv2.INTER_LINEAR)
            full *= guide
            np.add(full[..., 0], full[..., 1], out=out[..., channel])
            for index in range(2, full.shape[2]):
                out[..., channel] += full[..., index]
        return out


# --- previews -----------------------------------------------------------------------------
def preview_size(height: int, width: int, max_side: int) -> tuple[int, int]:
    """The size of a preview whose long side is at most max_side (never enlarged)."""
    if max(height, width) <= max_side:
        return height, width
    scale = max_side / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def shrink_layer(layer: Layer, size: tuple[int, int]) -> Layer:
    """The layer area-averaged to `size`, in its own pixel format, mask included.

    Colours are averaged weighted by alpha, so transparent pixels' (invisible) colours do
    not bleed into the edges of what is seen."""
    fmt = layer.format

    def rows(top, bottom):
        rgb1 = layer.rgb1(top, bottom)  # R, G, B, 1
        alpha = layer.alpha(top, bottom)
        if alpha is not None:
            rgb1 *= alpha[..., None]  # R, G, B premultiplied, then alpha
        if layer.mask is None:
            return rgb1
        return np.concatenate([rgb1, layer.mask[top:bottom, :, None].astype(np.float32)], -1)

    small = area_resize(rows, layer.height, layer.width, size)
    alpha = small[..., 3]
    pixels = np.empty((*size, fmt.channels), fmt.dtype)
    colour = small[..., :3] / np.maximum(alpha, 1e-12)[..., None]
    for channel, position in enumerate(fmt.rgb):
        pixels[..., position] = layer.encode(colour[..., channel])
    if fmt.alpha is not None:
        pixels[..., fmt.alpha] = layer.encode(alpha)
    mask = None
    if layer.mask is not None:
        mask = np.clip(np.round(small[..., 4]), 0, 255).astype(np.uint8)
    return Layer(pixels, fmt, mask)
