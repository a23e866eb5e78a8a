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

import numpy as np
import torch
import torch.nn.functional as F

from backend.core.pixels import Layer, bands

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
def _area_1d(values: np.ndarray, size: int, axis: int) -> np.ndarray:
    """Exact area averaging of `values` along `axis` down to `size` samples (float64).

    Output sample j covers input [j * n / size, (j + 1) * n / size): the whole input samples
    inside are summed (one np.add.reduceat pass), and the samples cut by either end count by
    the fraction covered, so any ratio, including non-integer ones, is exact."""
    n = values.shape[axis]
    if size > n:
        raise ValueError(f"area averaging reduces: {n} samples cannot become {size}")
    edges = np.arange(size + 1) * n / size  # exact at both ends
    start = np.floor(edges).astype(np.int64)
    shape = [1] * values.ndim
    shape[axis] = size
    cut = (edges - start).reshape(shape[:axis] + [-1] + shape[axis + 1 :])
    ends = np.take(values, np.minimum(start, n - 1), axis=axis).astype(np.float64) * cut
    total = np.add.reduceat(values, start[:-1], axis=axis, dtype=np.float64)
    total -= np.take(ends, np.arange(size), axis=axis)  # the part before the start edge
    total += np.take(ends, np.arange(1, size + 1), axis=axis)  # the part up to the end edge
    return total / (n / size)


def area_resize(read_rows, height: int, width: int, size: tuple[int, int]) -> np.ndarray:
    """Area-average an image to `size` (h, w), reading it a band of rows at a time.

    read_rows(top, bottom) -> float (rows, width, C). Returns float64 (h, w, C). Memory is
    one band plus a (height, w, C) intermediate, never the full image in float."""
    out_h, out_w = size
    columns = [_area_1d(read_rows(top, bottom), out_w, 1) for top, bottom in bands(height, width)]
    return _area_1d(np.concatenate(columns), out_h, 0)


def weighted_resize(read_rows, read_weight, height, width, size):
    """Area-average of colours weighted by read_weight (e.g. visibility), and the mean
    weight of each output pixel. Output pixels with no weight at all take the mean colour,
    so the network's input holds no invented black regions."""

    def rows(top, bottom):
        weight = read_weight(top, bottom)[..., None]
        return np.concatenate([read_rows(top, bottom) * weight, weight], axis=-1)

    summed = area_resize(rows, height, width, size)
    colour, weight = summed[..., :-1], summed[..., -1]
    empty = weight <= 1e-12
    colour = colour / np.where(empty, 1, weight)[..., None]
    if empty.any() and not empty.all():
        colour[empty] = np.average(colour[~empty], axis=0, weights=weight[~empty])
    return colour, weight


# --- the colour transform -----------------------------------------------------------------
def _box(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Window sums (unnormalised) of (C, h, w) over (2r+1)^2, zero outside the image."""
    return F.avg_pool2d(x[None], 2 * radius + 1, 1, radius, count_include_pad=True)[0]


def fit_local_affine(guide, change, weight, radius=RADIUS, epsilon=EPSILON) -> np.ndarray:
    """Local affine maps guide -> change, one per working pixel (a guided filter).

    guide (h, w, G) and change (h, w, C) float; weight (h, w): how much each pixel counts
    (0 for transparent ones, which must not steer the fit). In every window the least-squares
    map change ~ [guide, 1] @ M is found, slopes damped by `epsilon` (in guide units
    squared); each pixel then gets the mean of the maps of the windows that hold it.
    Returns float32 (h, w, G + 1, C)."""
    x = torch.as_tensor(guide, dtype=torch.float64).permute(2, 0, 1)
    y = torch.as_tensor(change, dtype=torch.float64).permute(2, 0, 1)
    w = torch.as_tensor(weight, dtype=torch.float64)[None]
    total = _box(w, radius).clamp_min(1e-12)

    def mean(values):  # weighted window means, (C, h, w)
        return _box(w * values, radius) / total

    def outer(a, b):  # (A, h, w), (B, h, w) -> (A, B, h, w)
        return torch.einsum("ihw,jhw->ijhw", a, b)

    mean_x, mean_y = mean(x), mean(y)
    covariance = mean(outer(x, x).flatten(0, 1)).unflatten(0, (len(x), len(x)))
    covariance = covariance - outer(mean_x, mean_x)
    cross = mean(outer(x, y).flatten(0, 1)).unflatten(0, (len(x), len(y))) - outer(mean_x, mean_y)
    damping = epsilon * torch.eye(len(x), dtype=torch.float64)
    slope = torch.linalg.solve(covariance.permute(2, 3, 0, 1) + damping, cross.permute(2, 3, 0, 1))
    offset = mean_y.permute(1, 2, 0) - torch.einsum("hwi,hwij->hwj", mean_x.permute(1, 2, 0), slope)
    maps = torch.cat([slope, offset[:, :, None]], dim=2)  # (h, w, G + 1, C)
    # Every pixel lies in (2r+1)^2 windows: averaging their maps (the guided filter's second
    # step) makes the field smooth, so no window's fit shows as a block.
    flat = maps.flatten(2).permute(2, 0, 1)
    smooth = F.avg_pool2d(flat[None], 2 * radius + 1, 1, radius, count_include_pad=False)[0]
    return smooth.permute(1, 2, 0).unflatten(2, maps.shape[2:]).float().numpy()


def _row_taps(full: int, working: int):
    """For each full-resolution row: the two working rows around it and the weight of the
    second, pixel centres aligned (the convention of F.interpolate, align_corners=False,
    which interpolates the columns)."""
    position = np.clip((np.arange(full) + 0.5) * (working / full) - 0.5, 0, working - 1)
    first = np.floor(position).astype(np.int64)
    second = np.minimum(first + 1, working - 1)
    fraction = (position - first).astype(np.float32)
    return torch.from_numpy(first), torch.from_numpy(second), torch.from_numpy(fraction)


class AffineField:
    """Fitted local maps (fit_local_affine) at full size: field(guide rows, top) -> change
    rows, the maps interpolated bilinearly to each pixel, for a band loop over the layer.

    Channels come first inside, so the interpolation and the small matrix product are a
    dozen whole-plane operations per band instead of millions of tiny products."""

    def __init__(self, maps: np.ndarray, height: int, width: int):
        self.inputs, self.outputs = maps.shape[2] - 1, maps.shape[3]
        flat = torch.from_numpy(np.ascontiguousarray(maps)).flatten(2)
        self.maps = flat.permute(2, 0, 1).contiguous()  # (K, h, w), K = (G + 1) * C
        self.rows = _row_taps(height, maps.shape[0])
        self.width = width

    def __call__(self, guide: torch.Tensor, top: int) -> torch.Tensor:
        """guide (rows, W, G) -> change (rows, W, C)."""
        first, second, fraction = (t[top : top + len(guide)] for t in self.rows)
        band = torch.lerp(self.maps[:, first], self.maps[:, second], fraction[None, :, None])
        band = F.interpolate(band.flatten(0, 1)[None], self.width, mode="linear")[0]
        band = band.unflatten(0, (self.inputs + 1, self.outputs, len(guide)))
        change = band[-1].clone()  # the offsets, (C, rows, W)
        for index, channel in enumerate(guide.permute(2, 0, 1).contiguous()):
            change.addcmul_(band[index], channel)
        return change.permute(1, 2, 0)


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
        rgb = layer.rgb(top, bottom)
        alpha = layer.alpha(top, bottom)
        alpha = np.ones(rgb.shape[:2], np.float32) if alpha is None else alpha
        parts = [rgb * alpha[..., None], alpha[..., None]]
        if layer.mask is not None:
            parts.append(layer.mask[top:bottom, :, None].astype(np.float32))
        return np.concatenate(parts, axis=-1)

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
