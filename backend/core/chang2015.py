"""Chang et al. 2015, "Palette-based Photo Recoloring" (SIGGRAPH): the classical method.

The source and target palettes are in correspondence: entry i of the source becomes entry i
of the target. Every colour x of the image is moved in two parts:

1. lightness: a monotone piecewise-linear curve through (0, 0), the palette lightnesses
   (source L -> target L) and (100, 100), so the tonal order of the photo never flips;
2. chroma (a, b): each palette entry proposes a translation of x by its own ab offset, made
   gamut-aware (colours near the sRGB boundary move less, and never across it), and the
   proposals are blended with normalised Gaussian RBF weights of x's distance to the source
   palette colours (sigma = mean distance between palette colours in the paper; here a
   fifth of it, RBF_SIGMA_SCALE, see rbf_weights).

The transfer is evaluated once on a 13 x 13 x 13 RGB lattice and applied to the pixels by
trilinear interpolation: the cost per pixel does not depend on the palette, and a
24-megapixel layer is processed in row chunks so memory stays bounded.

One addition to the paper: the transfer has kinks (the clamped RBF weights, the gamut-aware
moves), which a 12-cell lattice smooths by up to about 5 dE exactly at the palette colours.
The lattice values around each source palette colour are therefore nudged so the palette
colours land on their targets (_pin_palette). On the benchmark's B1 and inside its B2 edits
this is more accurate than both the plain lattice and the exact per-pixel transfer (outside
the edits it costs about 0.3 dE against the exact transfer; docs/BENCHMARK.md). Elsewhere the
lattice differs from the exact transfer (recolor_chang2015_direct) by under 1 dE on average
for moderate edits (hue turns up to about 20 degrees), but by 1 to 3 CIEDE2000 (1.5 to 4
CIE76) on average for the benchmark's large edits, where the clamped weights vary fastest.
"""

import functools

import numpy as np
import torch

from backend.core.color import lab_to_linear_np, lab_to_rgb_np, rgb_to_lab_np
from backend.core.palette import MODEL_PALETTE_SIZE, distinct_pairs, extract_palette
from backend.wire import MAX_PALETTE_COLORS

LATTICE_SIZE = 13  # points per RGB axis (12 cells), as in the paper
PIN_WIDTH = 0.12  # RGB units: the width of the bump that pins a palette colour
CHUNK_PIXELS = 1 << 20  # pixels interpolated at once: about 60 MB of temporaries
BISECTION_STEPS = 22  # ray-to-gamut-boundary search: 400 / 2^22 LAB units is exact enough
RAY_LENGTH = 400.0  # LAB units along ab: from any sRGB colour this leaves the gamut
MAX_END_SLOPE = 3.0  # steepest lightness curve from black to the darkest swatch (and white)
RBF_SIGMA_SCALE = 0.2  # RBF width as a share of the mean distance between palette colours
RBF_FAR_SCALE = 0.5  # far from the palette: RBF width as a share of the distance to it
RBF_WIDTH_STEP = 0.01  # far widths rounded to relative steps of this (rbf_weights)
GAMUT_TOLERANCE = 1e-6  # linear RGB slack, so colours exactly on the boundary count as inside


# --- inputs -------------------------------------------------------------------------------
def _palette(values, name: str) -> np.ndarray:
    lab = np.asarray(values, dtype=np.float64)
    if lab.ndim != 2 or lab.shape[1] != 3:
        raise ValueError(f"{name} must have shape (k, 3) (LAB colours), got {lab.shape}")
    if not 1 <= len(lab) <= MAX_PALETTE_COLORS:
        raise ValueError(f"{name} needs 1 to {MAX_PALETTE_COLORS} colours, got {len(lab)}")
    if not np.isfinite(lab).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return lab


def _palettes(source_lab, target_lab):
    source = _palette(source_lab, "source palette")
    target = _palette(target_lab, "target palette")
    if source.shape != target.shape:
        raise ValueError(
            f"source and target palettes must correspond entry by entry, got {len(source)} "
            f"and {len(target)} colours"
        )
    # A source colour listed twice can only go to one target (averaging the targets would
    # send it to a colour in none of them): the copy the user moved furthest wins.
    keep, chosen = distinct_pairs(source, target)
    return source[keep], target[chosen]


def chang_palette(rgb8: np.ndarray, k: int = MODEL_PALETTE_SIZE):
    """The paper's palette: histogram k-means with the extra fixed black centre.

    Returns (LAB colours (k, 3) sorted by lightness, pixel shares), as extract_palette."""
    return extract_palette(rgb8, k, black_anchor=True)


# --- lightness ----------------------------------------------------------------------------
def _isotonic(values: np.ndarray) -> np.ndarray:
    """Closest non-decreasing sequence in least squares (pool adjacent violators).

    A target palette need not have its lightnesses in the source's order; averaging the
    entries that disagree is the smallest change that makes the curve monotone."""
    blocks = []  # [mean, count]
    for value in values:
        blocks.append([float(value), 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            mean, count = blocks.pop()
            blocks[-1][0] = (blocks[-1][0] * blocks[-1][1] + mean * count) / (blocks[-1][1] + count)
            blocks[-1][1] += count
    return np.concatenate([np.full(count, mean) for mean, count in blocks])


def luminance_knots(source_lab, target_lab):
    """The knots (x, y) of the monotone lightness curve, x strictly increasing in 0..100."""
    source, target = _palettes(source_lab, target_lab)
    order = np.argsort(source[:, 0], kind="stable")
    x = np.clip(source[order, 0], 0, 100)
    y = np.clip(target[order, 0], 0, 100)
    # Entries with the same source lightness (repeated colours) become one knot.
    x, first, count = np.unique(x, return_index=True, return_counts=True)
    y = np.add.reduceat(y, first) / count
    y = _isotonic(y)
    # Black stays black and white stays white unless a palette entry sits there or that
    # would make the curve steeper than MAX_END_SLOPE: a dark swatch at L 3 asked to become
    # L 40 would otherwise stretch the shadows 13-fold (black trees in a night photo turn
    # bright and their noise into bands); black then rises, just enough.
    if x[0] > 0:
        start = max(0.0, y[0] - MAX_END_SLOPE * x[0])
        x, y = np.concatenate([[0.0], x]), np.concatenate([[start], y])
    if x[-1] < 100:
        end = min(100.0, y[-1] + MAX_END_SLOPE * (100 - x[-1]))
        x, y = np.concatenate([x, [100.0]]), np.concatenate([y, [end]])
    return x, y


def transfer_luminance(L, source_lab, target_lab) -> np.ndarray:
    """Lightness curve applied to L values (any shape); monotone non-decreasing."""
    x, y = luminance_knots(source_lab, target_lab)
    return np.interp(np.asarray(L, dtype=np.float64), x, y)


# --- chroma -------------------------------------------------------------------------------
def in_gamut(lab: np.ndarray) -> np.ndarray:
    """Whether LAB colours (..., 3) are displayable sRGB colours (no clipping needed)."""
    linear = lab_to_linear_np(lab)
    return ((linear >= -GAMUT_TOLERANCE) & (linear <= 1 + GAMUT_TOLERANCE)).all(-1)


def into_gamut(lab: np.ndarray) -> np.ndarray:
    """LAB colours (N, 3) with those outside the sRGB gamut moved towards the grey of their
    lightness (L* clipped to 0..100) until they are displayable: hue and lightness kept,
    chroma reduced. Colours inside are returned as they are.

    A colour whose lightness the curve raised (or lowered) can leave the gamut in its new
    plane; the gamut-aware moves of _move_ab measure room from a displayable start, and
    from a start outside they found none and left the colour where it was: on a red -> green
    edit (255, 0, 0) turned green but (250, 0, 0) stayed orange, a step of 60 dE between
    neighbours of a gradient."""
    lab = np.array(lab, dtype=np.float64)
    outside = ~in_gamut(lab)
    if outside.any():
        grey = np.column_stack([np.clip(lab[outside, 0], 0, 100), np.zeros((outside.sum(), 2))])
        ends = np.ones(outside.sum())
        lab[outside] = _boundary(grey, lab[outside] - grey, np.zeros_like(ends), ends)
    return lab


def _boundary(origin, direction, low, high) -> np.ndarray:
    """Where the rays origin + s * direction leave the gamut, s in [low, high].

    Bisection, vectorised over rays; origin + low * direction must be inside the gamut and
    origin + high * direction outside (a ray outside all along ends at its start)."""
    low, high = np.array(low, dtype=np.float64), np.array(high, dtype=np.float64)
    for _ in range(BISECTION_STEPS):
        middle = (low + high) / 2
        inside = in_gamut(origin + middle[..., None] * direction)
        low, high = np.where(inside, middle, low), np.where(inside, high, middle)
    return origin + low[..., None] * direction


def _move_ab(lab, centre, offset):
    """Single-colour ab transfer: where colours `lab` (N, 3) go when the palette colour
    `centre` (at their lightness plane, see transfer_colours) moves by `offset` (a, b).

    Every colour moves in ab only. If x + offset is displayable, x moves along the offset
    direction, but by the fraction of its own room to the gamut boundary that the palette
    colour used of its room (at most by the offset itself): colours near the boundary are
    compressed instead of clipped. Otherwise x moves towards the boundary point between the
    target colour and x + offset, as in the paper."""
    distance = float(np.hypot(*offset))
    if distance < 1e-9:
        return lab[:, 1:].copy()
    step = np.array([0.0, offset[0] / distance, offset[1] / distance])
    target = centre + distance * step

    # How far the palette colour itself could go in its direction before leaving the gamut.
    start = distance if in_gamut(target) else 0.0
    room = np.linalg.norm(_boundary(centre, step, start, RAY_LENGTH) - centre)
    ratio = min(1.0, distance / room) if room > 1e-9 else 1.0

    n = len(lab)
    shifted = lab + distance * step
    fits = in_gamut(shifted)
    edge = np.empty_like(lab)
    edge[fits] = _boundary(
        lab[fits], step, np.full(fits.sum(), distance), np.full(fits.sum(), RAY_LENGTH)
    )
    # Out of gamut after the plain shift: the boundary on the segment target -> x + offset,
    # with the target colour taken at x's lightness. Where that colour is not displayable
    # (a saturated target in a darker or lighter plane) it is first brought into the gamut
    # at its hue (into_gamut). Starting at x instead, as before, drew a chord across the
    # plane (red to green passes olive), which can leave the gamut midway and stopped
    # x there: (240, 0, 0) moved to orange while (255, 0, 0) reached green.
    out = ~fits
    origin = np.column_stack([lab[out, 0], np.broadcast_to(target[1:], (out.sum(), 2))])
    origin = into_gamut(origin)
    edge[out] = _boundary(origin, shifted[out] - origin, np.zeros(out.sum()), np.ones(out.sum()))

    toward = edge[:, 1:] - lab[:, 1:]
    reach = np.linalg.norm(toward, axis=1)
    move = np.minimum(ratio * reach, distance)
    scale = np.divide(move, reach, out=np.zeros(n), where=reach > 1e-9)
    return lab[:, 1:] + scale[:, None] * toward


def rbf_weights(lab, source_lab) -> np.ndarray:
    """Normalised Gaussian RBF weights (N, k) of colours to the source palette colours.

    Interpolating: a palette colour gets weight 1 on itself. Negative weights are dropped
    and the rest renormalised (the paper's rule). The width is RBF_SIGMA_SCALE (a fifth) of
    the mean distance between palette colours, not the paper's whole mean distance: with
    the paper's width every palette colour's move reached far into its neighbours' colours
    (a swatch left alone saw its colours moved 8 to 17 dE on the artwork benchmark's
    multi-swatch edits; the untouched measure 1.48 -> 0.97), and the photo tasks B1-B3
    are better too (docs/MODEL.md). The Gaussians are taken relative to the nearest
    palette colour's (the common factor cancels in the normalisation), so colours far from
    every palette colour still get smooth weights instead of underflowing to nothing."""
    lab = np.asarray(lab, dtype=np.float64)
    source = np.asarray(source_lab, dtype=np.float64)
    k = len(source)
    if k == 1:
        return np.ones((len(lab), 1))
    pairwise = np.linalg.norm(source[:, None] - source[None], axis=-1)
    sigma = max(RBF_SIGMA_SCALE * pairwise[np.triu_indices(k, 1)].mean(), 1e-3)
    distance2 = ((lab[:, None] - source[None]) ** 2).sum(-1)
    nearest2 = distance2.min(axis=1)
    # Far from every palette colour the width grows with the distance (RBF_FAR_SCALE of
    # it), so the weights there follow distance ratios and change smoothly; near the
    # palette colours it is sigma.
    width = np.maximum(sigma, RBF_FAR_SCALE * np.sqrt(nearest2))
    # One matrix per distinct width: most colours are near the palette and share sigma's,
    # and the far ones' widths are rounded to steps of RBF_WIDTH_STEP (a photo's 24,000
    # distinct widths become about 100 matrices; the weights move by < 0.01).
    steps = np.round(np.log(width / sigma) / np.log1p(RBF_WIDTH_STEP))
    width = sigma * np.exp(steps * np.log1p(RBF_WIDTH_STEP))
    widths, which = np.unique(width, return_inverse=True)
    phi = np.exp(-(pairwise**2)[None] / (2 * widths[:, None, None] ** 2))
    # pinv, not inv: repeated palette colours (an image with few colours) make phi singular.
    lam = np.linalg.pinv(phi, rcond=1e-10)[which.ravel()]
    relative = distance2 - nearest2[:, None]
    gauss = np.exp(-relative / (2 * width[:, None] ** 2))
    weights = np.clip(np.einsum("nij,nj->ni", lam, gauss), 0, None)
    total = weights.sum(1, keepdims=True)
    lost = total[:, 0] < 1e-12  # every weight negative: follow the nearest palette colour
    weights[lost] = np.eye(k)[np.argmin(distance2[lost], axis=1)]
    total[lost] = 1
    return weights / total


def transfer_colours(lab, source_lab, target_lab) -> np.ndarray:
    """The exact (per-colour) Chang 2015 transfer of LAB colours (..., 3) -> LAB.

    This is what the lattice samples; it is also usable directly on a few colours."""
    source, target = _palettes(source_lab, target_lab)
    lab = np.asarray(lab, dtype=np.float64)
    shape = lab.shape
    lab = lab.reshape(-1, 3)
    lightness = transfer_luminance(lab[:, 0], source, target)
    centre_lightness = transfer_luminance(source[:, 0], source, target)
    # The ab transfer runs in each colour's new lightness plane, so the gamut it respects is
    # the one the colour ends up in.
    moved_plane = into_gamut(np.column_stack([lightness, lab[:, 1:]]))
    weights = rbf_weights(lab, source)
    ab = np.zeros((len(lab), 2))
    for i in range(len(source)):
        # The palette colour in its new plane, displayable, as its own pixels are taken
        # (moved_plane); its offset is to its target from there, so it lands on it.
        centre = into_gamut(np.array([[centre_lightness[i], *source[i, 1:]]]))[0]
        ab += weights[:, i : i + 1] * _move_ab(moved_plane, centre, target[i, 1:] - centre[1:])
    return np.column_stack([lightness, ab]).reshape(shape)


# --- lattice ------------------------------------------------------------------------------
def _corners(position: np.ndarray, size: int):
    """The 8 lattice corners of each point (positions (N, 3) in lattice units 0..size-1):
    yields (flat corner index (N,), trilinear weight (N,)) corner by corner. The same
    interpolation as grid_sample in apply_lattice, written out for _pin_palette."""
    cell = np.minimum(position.astype(np.int32), size - 2)  # the last point has no cell
    fraction = position - cell
    base = (cell[:, 0] * size + cell[:, 1]) * size + cell[:, 2]
    for corner in range(8):
        bits = (corner >> 2, (corner >> 1) & 1, corner & 1)
        weight = np.ones(len(position), dtype=position.dtype)
        for axis, bit in enumerate(bits):
            weight *= fraction[:, axis] if bit else 1 - fraction[:, axis]
        yield base + (bits[0] * size + bits[1]) * size + bits[2], weight


def _pin_palette(table: np.ndarray, size: int, points_rgb: np.ndarray, wanted_rgb: np.ndarray):
    """Nudge lattice values (in place) so interpolation gives exactly `wanted_rgb` at
    `points_rgb` (the source palette colours).

    The transfer has kinks (clamped RBF weights, the gamut-aware moves), and a 12-cell lattice
    smooths them by up to 5 dE right at the palette colours, the colours the user asked for.
    The correction is a smooth bump around each palette colour (a Gaussian of PIN_WIDTH in
    RGB, about one and a half cells), scaled so that the interpolated lattice meets every
    palette colour exactly: table += G (A G)^+ r, where G holds the bumps at the lattice
    points and A interpolates the lattice at the palette colours. Nudging only the 8 corners
    of each palette colour's cell (the smallest change) made a step one cell wide, seen as a
    band across smooth gradients (twice the gradient's steps on icons)."""
    points = np.clip(points_rgb, 0, 1)
    position = points * (size - 1)
    interpolation = np.zeros((len(position), size**3))
    rows = np.arange(len(position))
    for index, weight in _corners(position, size):
        np.add.at(interpolation, (rows, index), weight)
    grid = lattice_points(size).reshape(-1, 3)
    bumps = np.exp(-((grid[:, None] - points[None]) ** 2).sum(-1) / (2 * PIN_WIDTH**2))
    residual = wanted_rgb - interpolation @ table
    # pinv: repeated palette colours give repeated rows; they are then met on average.
    table += bumps @ (np.linalg.pinv(interpolation @ bumps, rcond=1e-10) @ residual)


@functools.cache
def lattice_points(size: int) -> np.ndarray:
    """The RGB colours (0..1) of the points of a size^3 lattice indexed [r, g, b], as
    apply_lattice reads it: float64 (size, size, size, 3), read-only (made once per size)."""
    levels = np.linspace(0.0, 1.0, size)
    grid = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), axis=-1)
    grid.flags.writeable = False
    return grid


def build_lattice(source_lab, target_lab, size: int = LATTICE_SIZE) -> np.ndarray:
    """Recoloured sRGB (size, size, size, 3) float32 at the lattice points [r, g, b].

    The lattice holds RGB, not LAB: interpolating RGB makes an unchanged palette reproduce
    every pixel exactly, since trilinear interpolation of the identity is the identity. The
    values are then adjusted so that the source palette colours land exactly on their
    target colours (see _pin_palette), also where the transfer itself cannot send them
    there: targets whose lightness order differs from the sources' (the monotone curve
    averages them) or whose ab move the gamut cuts short."""
    source, target = _palettes(source_lab, target_lab)
    grid = lattice_points(size).reshape(-1, 3)
    table = lab_to_rgb_np(transfer_colours(rgb_to_lab_np(grid), source, target))
    # The palette colours as an 8-bit image holds them (a pixel equal to a swatch, clipped
    # and rounded), and their targets as it can show them (clipped to sRGB), moved by the
    # same rounding: a palette mapped to itself stays the identity.
    source_rgb = lab_to_rgb_np(source)
    held = np.round(source_rgb * 255) / 255
    _pin_palette(table, size, held, lab_to_rgb_np(target) + held - source_rgb)
    return table.reshape(size, size, size, 3).astype(np.float32)


def apply_lattice(rgb: np.ndarray, lattice: np.ndarray) -> np.ndarray:
    """Trilinear interpolation of the lattice at every pixel of rgb (..., 3) -> float32.

    rgb is uint8 (or another unsigned integer type, scaled by its maximum) or float in 0..1;
    the lattice is (n, n, n, 3) for any n >= 2. torch's grid_sample does the interpolation
    (the trilinear lookup, about twice as fast as the same thing in numpy). It runs one batch
    entry per thread, so each chunk of about CHUNK_PIXELS pixels is split into a batch of as
    many entries as torch has threads; the temporaries stay near 60 MB whatever the size."""
    # grid_sample's volume is (N, C, D, H, W) and its grid points are (x, y, z) = (W, H, D):
    # with the lattice indexed [r, g, b] that is D = r, H = g, W = b, so points are (b, g, r).
    volume = torch.from_numpy(np.ascontiguousarray(lattice, dtype=np.float32))
    volume = volume.permute(3, 0, 1, 2)[None]
    maximum = float(np.iinfo(rgb.dtype).max) if rgb.dtype.kind == "u" else 1.0
    pixels = rgb.reshape(-1, 3)
    out = np.empty((len(pixels), 3), dtype=np.float32)
    parts = max(1, torch.get_num_threads())
    with torch.no_grad():
        for start in range(0, len(pixels), CHUNK_PIXELS):
            chunk = pixels[start : start + CHUNK_PIXELS].astype(np.float32)  # a fresh copy
            grid = torch.from_numpy(chunk).mul_(2 / maximum).sub_(1).clamp_(-1, 1).flip(-1)
            count = len(grid)
            each = -(-count // parts)
            grid = torch.nn.functional.pad(grid, (0, 0, 0, each * parts - count))
            sampled = torch.nn.functional.grid_sample(
                volume.expand(parts, -1, -1, -1, -1),
                grid.reshape(parts, 1, 1, each, 3),
                mode="bilinear",
                padding_mode="border",
                align_corners=True,
            )  # (parts, 3, 1, 1, each)
            sampled = sampled.reshape(parts, 3, each).transpose(1, 2).reshape(-1, 3)[:count]
            # Pinned lattice values may leave 0..1 slightly; the output may not.
            out[start : start + count] = sampled.clamp_(0, 1).numpy()
    return out.reshape(*rgb.shape[:-1], 3)


def _image(rgb) -> np.ndarray:
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"the image must have shape (H, W, 3) (RGB), got {rgb.shape}")
    if rgb.dtype.kind not in "uf":
        raise ValueError(f"the image must be unsigned integer or float RGB, got {rgb.dtype}")
    return rgb


def recolor_chang2015(rgb, source_palette_lab, target_palette_lab) -> np.ndarray:
    """Recolour an RGB image (H, W, 3), uint8 or float in 0..1, so that the source palette's
    colours become the target palette's (both (k, 3) LAB, k = 1..12, in correspondence).

    Returns float32 RGB in 0..1 of the same size."""
    rgb = _image(rgb)
    lattice = build_lattice(source_palette_lab, target_palette_lab)
    return apply_lattice(rgb, lattice)


def recolor_chang2015_direct(rgb, source_palette_lab, target_palette_lab) -> np.ndarray:
    """The same transfer evaluated exactly at every pixel (slow; for tests and checks)."""
    rgb = _image(rgb)
    if rgb.dtype.kind == "u":
        rgb = rgb / np.iinfo(rgb.dtype).max
    lab = transfer_colours(rgb_to_lab_np(rgb), source_palette_lab, target_palette_lab)
    return lab_to_rgb_np(lab).astype(np.float32)
