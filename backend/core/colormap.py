"""A recolouring carried to full resolution as one global colour mapping.

The network recolours the layer at a working size; what comes back to the full-resolution
layer is a function of colour alone: every pixel of one colour gets one new colour, wherever
it is. On flat art this is what an artist expects (a fill stays one flat colour, pixel art
keeps its colour count, line art's ink stays one ink), and it cannot spread one colour over
neighbouring fills the way a local transfer fitted in windows can.

Two parts (in the spirit of the image-adaptive 3D LUTs of Zeng et al. 2020, here fitted to
one network output instead of predicted):

1. Exact colours. Each colour the working image holds exactly, on at least
   EXACT_MIN_PIXELS working pixels and EXACT_MIN_SHARE of them, and standing out from the
   colours within a few levels of it (a fill, an ink, a pixel-art colour; not one of a
   gradient's many colours: stands_out), gets the median of the network's output over
   those pixels: a robust average, so the few pixels the network got wrong (another
   fill's colour bleeding in near an edge) do not count. The colours around a fill lead up
   to its output smoothly (continue_fills), so a gradient that touches a fill's colour
   has no step there.
2. Everything in between (anti-aliased edges, gradients, colours the reduction blended away)
   goes through a smooth 3D lookup table: a LUT_SIZE^3 RGB lattice holding the change of
   colour, fitted by least squares to the network's (input, output) pairs with a
   smoothness penalty (squared differences of neighbouring lattice points), so lattice
   points without data take the change of their neighbours. It is applied by trilinear
   interpolation (chang2015.apply_lattice).

Only flat art goes this way (is_flat_art): on photos and painted art the network's output
varies with place as well as colour (2 to 10 dE76 from any global mapping of it on the
photos tried), and the local transfer of backend.core.fullres keeps that.

The cost per full-resolution pixel is one lattice lookup and one table search; fitting
takes well under a second at the working size.
"""

import functools

import cv2
import numpy as np
import scipy.sparse as sparse
import scipy.sparse.linalg as sparse_linalg
import torch

from backend.core.chang2015 import (
    apply_lattice,
    lattice_points,
    rbf_weights,
    transfer_luminance,
)
from backend.core.color import lab_to_rgb_np, rgb_to_lab_np, to_uint8
from backend.core.palette import (
    distinct_colours,
    distinct_pairs,
    is_flat_art_counted,
    stands_out,
)

LUT_SIZE = 17  # points per RGB axis: cells of 16/255 (the network's colour detail is coarser)
SMOOTHNESS = 1e-5  # weight of the smoothness penalty against one working pixel's error (validation)
EXACT_MIN_PIXELS = 16  # working pixels a colour needs to get its own exact output
EXACT_MIN_SHARE = 0.001  # and the share of the visible working pixels (a fill, not one of
# the thousands of colours of a gradient, which the smooth table keeps smooth)
FINE_LUT_SIZE = 65  # points per RGB axis of the table fills are continued in: 4 levels apart
FILL_REACH = 0.6  # a fill's difference from the smooth table is spread over this x its size
FILL_MIN_REACH = 8 / 255  # and at least over this RGB distance (Gaussian sigma)
SWATCH_REACH = 3.0  # LAB units: the colours whose output says where a swatch went
UNCHANGED_SWATCH = 0.5  # LAB units: a target this close to its swatch leaves it as it was


def colour_codes(rgb8: np.ndarray) -> np.ndarray:
    """uint8 RGB (..., 3) -> int64 0xRRGGBB codes (...)."""
    rgb8 = rgb8.astype(np.int64)
    return (rgb8[..., 0] << 16) | (rgb8[..., 1] << 8) | rgb8[..., 2]


def _corner_weights(rgb: np.ndarray, size: int):
    """Trilinear interpolation of a size^3 lattice at rgb (N, 3) in 0..1 as a sparse
    (N, size^3) matrix, lattice indexed [r, g, b] as apply_lattice reads it."""
    position = np.clip(rgb, 0, 1) * (size - 1)
    cell = np.minimum(position.astype(np.int64), size - 2)
    fraction = position - cell
    rows, columns, values = [], [], []
    for corner in range(8):
        bits = np.array([(corner >> 2) & 1, (corner >> 1) & 1, corner & 1])
        index = cell + bits
        weight = np.prod(np.where(bits, fraction, 1 - fraction), axis=1)
        rows.append(np.arange(len(rgb)))
        columns.append((index[:, 0] * size + index[:, 1]) * size + index[:, 2])
        values.append(weight)
    shape = (len(rgb), size**3)
    return sparse.csr_matrix(
        (np.concatenate(values), (np.concatenate(rows), np.concatenate(columns))), shape
    )


def _neighbour_differences(size: int):
    """Differences between lattice neighbours along each axis, sparse (3 * edges, size^3)."""
    index = np.arange(size**3).reshape(size, size, size)
    pieces = []
    for axis in range(3):
        first = np.take(index, np.arange(size - 1), axis=axis).ravel()
        second = np.take(index, np.arange(1, size), axis=axis).ravel()
        count = len(first)
        pieces.append(
            sparse.csr_matrix(
                (
                    np.concatenate([np.ones(count), -np.ones(count)]),
                    (np.concatenate([np.arange(count)] * 2), np.concatenate([first, second])),
                ),
                shape=(count, size**3),
            )
        )
    return sparse.vstack(pieces).tocsr()


def fit_lut(source_rgb, output_rgb, weight, size=LUT_SIZE, smoothness=SMOOTHNESS) -> np.ndarray:
    """A smooth colour lookup table: source_rgb and output_rgb (N, 3) float in 0..1 (pairs
    of colours), weight (N,) how much each pair counts (pixels). Returns float32 (size,
    size, size, 3): the output colour at each lattice point [r, g, b].

    The change output - source is fitted (least squares through trilinear interpolation,
    plus `smoothness` times the squared differences between neighbouring lattice points),
    so where there are no colours the change of the nearest ones continues and an empty
    lattice keeps colours as they are."""
    source_rgb = np.asarray(source_rgb, dtype=np.float64)
    change = np.asarray(output_rgb, dtype=np.float64) - source_rgb
    weight = np.asarray(weight, dtype=np.float64)
    interpolate = _corner_weights(source_rgb, size)
    weighted = sparse.diags(weight) @ interpolate
    difference = _neighbour_differences(size)
    # Scaled by the total weight, so the penalty means the same for any number of pixels.
    system = interpolate.T @ weighted + smoothness * weight.sum() * (difference.T @ difference)
    system = (system + 1e-9 * sparse.identity(size**3)).tocsc()
    solve = sparse_linalg.factorized(system)
    right = weighted.T @ change
    lattice_change = np.column_stack([solve(right[:, c]) for c in range(3)])
    grid = lattice_points(size).reshape(-1, 3)
    return (grid + lattice_change).reshape(size, size, size, 3).astype(np.float32)


def continue_fills(lut: np.ndarray, fills_rgb: np.ndarray, outputs: np.ndarray) -> np.ndarray:
    """The smooth table `lut` (n, n, n, 3) carried to a FINE_LUT_SIZE^3 table that also
    leads up to the fills' exact outputs: fills_rgb (m, 3) in 0..1, the colours that get
    their own output (ExactColours), outputs (m, 3) those outputs. Returns float32
    (FINE_LUT_SIZE,) * 3 + (3,).

    The smooth table cannot follow every fill (its cells are 16 levels wide, and the
    network may send two fills of one cell far apart), so a fill's exact output can be 20 dE
    from what the table gives the colours one level from it: in a gradient that touches
    the fill, a step. Each fill's difference (its output minus the table's) is added
    around it with a Gaussian of its colour distance, wide enough for the difference to be
    spread over many levels (FILL_REACH times the difference, at least FILL_MIN_REACH):
    where several fills reach, their differences are averaged by weight; far from every
    fill the table is as it was."""
    size = FINE_LUT_SIZE
    grid = lattice_points(size)
    fine = apply_lattice(grid.reshape(-1, 3), lut).reshape(size, size, size, 3)
    if len(fills_rgb) == 0:
        return fine
    difference = np.asarray(outputs, np.float64) - apply_lattice(np.asarray(fills_rgb), lut)
    reach = np.maximum(FILL_MIN_REACH, FILL_REACH * np.linalg.norm(difference, axis=1))
    pulled = np.zeros((size, size, size, 3))
    weight = np.zeros((size, size, size))
    for colour, change, width in zip(fills_rgb, difference, reach):
        low = np.clip(np.floor((colour - 3 * width) * (size - 1)), 0, size - 1).astype(int)
        high = np.clip(np.ceil((colour + 3 * width) * (size - 1)), 0, size - 1).astype(int) + 1
        box = tuple(slice(a, b) for a, b in zip(low, high))
        distance2 = ((grid[box] - colour) ** 2).sum(-1)
        bump = np.exp(-distance2 / (2 * width**2))
        pulled[box] += bump[..., None] * change
        weight[box] += bump
    fine += pulled / np.maximum(weight, 1.0)[..., None]
    return fine.astype(np.float32)


def colour_medians(source_rgb8, output_rgb, weight):
    """The network's output per working colour: source_rgb8 (N, 3) uint8, output_rgb (N, 3)
    float, weight (N,) (pixels with weight <= 0.5 are left out: mostly transparent working
    pixels mix the layer's colour with what is behind). Returns (sorted colour codes (M,),
    pixels of each (M,), float32 median output colour of each (M, 3), channel by channel:
    a robust average, so the few pixels where the network let a neighbouring fill's colour
    bleed in do not move the colour)."""
    keep = np.asarray(weight) > 0.5
    codes = colour_codes(source_rgb8[keep])
    output = np.asarray(output_rgb, dtype=np.float32)[keep]
    unique, count = np.unique(codes, return_counts=True)
    medians = np.empty((len(unique), 3), np.float32)
    for channel in range(3):
        order = np.lexsort((output[:, channel], codes))  # by colour, then by value
        sorted_values = output[order, channel]
        first = np.searchsorted(codes[order], unique)
        medians[:, channel] = sorted_values[first + (count - 1) // 2]
    return unique, count, medians


class ColourMap:
    """The network's result on a working image as a global colour mapping.

    ColourMap(source, result, weight): source and result float RGB (h, w, 3) in 0..1 (the
    working image and the network's output for it), weight (h, w) the visible share of
    each working pixel. Calling it on full-resolution rows (rows, W, C >= 3, the first
    three channels sRGB-encoded RGB in 0..1) gives the new RGB rows (rows, W, 3) float32.
    Pixels of one colour always get one colour, so no colour count can grow.
    `swatches`: the (source, target) LAB palettes the result was made for (the pairs of
    recolor.network_outputs), so that every colour of a source swatch lands on its target
    (follow_swatches_in_table); None, or a None source (a target-only model): not known."""

    def __init__(self, source, result, weight, swatches=None):
        source = np.asarray(source, dtype=np.float32).reshape(-1, 3)
        result = np.clip(np.asarray(result, dtype=np.float32).reshape(-1, 3), 0, 1)
        weight = np.asarray(weight, dtype=np.float64).reshape(-1)
        codes, count, medians = colour_medians(to_uint8(source), result, weight)
        colours = np.stack([(codes >> 16) & 255, (codes >> 8) & 255, codes & 255], axis=1) / 255
        large = (count >= EXACT_MIN_PIXELS) & (count >= EXACT_MIN_SHARE * count.sum())
        fill = stands_out(codes, count, large)
        # The fills' outputs are exact and continued to their neighbours (continue_fills);
        # in the smooth table a fill counts no more than the commonest other colour, so it
        # does not bend the table into a bump one cell wide around itself.
        cap = count[~fill].max() if (~fill).any() else count.max()
        smooth = fit_lut(colours, medians, np.minimum(count, cap))
        self.lut = continue_fills(smooth, colours[fill], medians[fill])
        exact_codes, outputs = codes[fill], medians[fill]
        if swatches is not None and swatches[0] is not None:
            self.lut, outputs, swatch_codes, targets = follow_swatches_in_table(
                self.lut, colours[fill], outputs, *swatches
            )
            # a swatch's own colour exactly on its target, also where it is a fill
            others = ~np.isin(exact_codes, swatch_codes)
            exact_codes = np.concatenate([swatch_codes, exact_codes[others]])
            outputs = np.concatenate([targets, outputs[others]])
        self.exact = ExactColours(exact_codes, outputs)

    def __call__(self, rows: np.ndarray, top: int = 0) -> np.ndarray:
        rgb = np.ascontiguousarray(rows[..., :3])
        return self.exact(apply_lattice(rgb, self.lut), rgb)


@functools.cache
def _lattice_lab(size: int) -> np.ndarray:
    """CIELAB of the points of a size^3 RGB lattice indexed [r, g, b], (size^3, 3)."""
    lab = rgb_to_lab_np(lattice_points(size).reshape(-1, 3))
    lab.flags.writeable = False
    return lab


@functools.lru_cache(maxsize=2)
def _lattice_weights(size: int, source_lab_bytes: bytes) -> np.ndarray:
    """rbf_weights of the points of a size^3 lattice on a source palette (LAB float64, as
    bytes: a cache key), float32 (size^3, k). Kept for the last two palettes: while a
    swatch is dragged the source palette stays the same and only the targets move, and the
    weights of 274,625 points are most of a live preview's colour-map time."""
    source_lab = np.frombuffer(source_lab_bytes, np.float64).reshape(-1, 3)
    weights = rbf_weights(_lattice_lab(size), source_lab).astype(np.float32)
    weights.flags.writeable = False
    return weights


def follow_swatches_in_table(lut, fill_rgb, fill_outputs, source_lab, target_lab):
    """The swatches' colours sent where the palette says, in a ColourMap's table: `lut`
    (n, n, n, 3) RGB table, fill_rgb and fill_outputs (m, 3) the fills' colours and exact
    outputs, source_lab and target_lab (k, 3) the palettes. Returns (table, fill outputs,
    8-bit codes of the distinct swatches (j,), their targets RGB (j, 3)).

    follow_swatches does this on the working image before the table is fitted, but the
    working image is an area average: a full-resolution colour of fine texture, thin ink
    or dithering may not be in it at all (a wallpaper's checker of two beiges is one mixed
    beige there, a thin black line a grey), so the table only guesses the output of those
    colours from their mixtures, and the swatches, found on the full-resolution layer, may
    land far from their targets (16.7 dE on the artwork benchmark's worst designer edit).
    So each swatch's miss (its target minus where the table sends it) is added to every
    colour of the table and every fill by the colour's RBF weights on the swatches
    (chang2015.rbf_weights: 1 at the swatch, 0 at the others, smooth between), in CIELAB:
    a swatch lands on its target, a swatch left alone keeps its colour, and the colours
    between follow smoothly."""
    keep, chosen = distinct_pairs(source_lab, target_lab)
    source_lab = np.asarray(source_lab, np.float64)[keep]
    target_lab = np.asarray(target_lab, np.float64)[chosen]
    swatch_rgb = to_uint8(np.clip(lab_to_rgb_np(source_lab), 0, 1)) / 255.0
    landed = rgb_to_lab_np(np.clip(apply_lattice(swatch_rgb, lut), 0, 1).astype(np.float64))
    miss = target_lab - landed

    def followed(weights, outputs_rgb):
        lab = rgb_to_lab_np(np.clip(outputs_rgb, 0, 1).astype(np.float64)) + weights @ miss
        return lab_to_rgb_np(lab).astype(np.float32)

    weights = _lattice_weights(lut.shape[0], source_lab.tobytes())
    table = followed(weights, lut.reshape(-1, 3)).reshape(lut.shape)
    fill_rgb = np.asarray(fill_rgb, np.float64).reshape(-1, 3)
    if len(fill_rgb):
        fill_outputs = followed(rbf_weights(rgb_to_lab_np(fill_rgb), source_lab), fill_outputs)
    targets = np.clip(lab_to_rgb_np(target_lab), 0, 1).astype(np.float32)
    return table, fill_outputs, colour_codes(to_uint8(swatch_rgb)), targets


# to_uint8's channels -> a 0xRRGGBB code by one product (exact: whole numbers below 2^24)
_CODE_WEIGHTS = np.array([65536.0, 256.0, 1.0])


class ExactColours:
    """Pixels of chosen exact colours set to chosen outputs, one table lookup per pixel.

    ExactColours(codes, outputs): 0xRRGGBB colour codes (n,) (colour_codes) of distinct
    colours, and the float32 RGB (n, 3) each becomes. Calling it with out (rows, W, 3) and
    rgb (rows, W, C >= 3, float in 0..1, the first three channels R, G, B) sets the pixels
    whose colour rounded to 8 bits (to_uint8) is one of the codes to that colour's output,
    in place; returns out. `codes`, optional: those rounded colours' codes, uint32 (rows,
    W), where they are known without rounding (an 8-bit layer's own bytes).

    The table holds a slot for every 8-bit colour (2^24: 16 MB for up to 255 codes, mostly
    never touched), so a pixel costs one lookup, not a search among the codes; the rounding
    is to_uint8's (float64, half to even), so exactly the same pixels are hit."""

    def __init__(self, codes: np.ndarray, outputs: np.ndarray):
        codes, first = np.unique(np.asarray(codes, np.int64), return_index=True)
        self.outputs = np.asarray(outputs, np.float32)[first]  # a code given twice: the first
        self.by_slot = np.concatenate([np.zeros((1, 3), np.float32), self.outputs])
        self.slots = None
        if len(codes):  # slot 0: no exact colour; i + 1: codes[i]
            self.slots = np.zeros(1 << 24, np.min_scalar_type(len(codes)))
            self.slots[codes] = np.arange(1, len(codes) + 1)

    def __call__(self, out: np.ndarray, rgb: np.ndarray, codes=None) -> np.ndarray:
        if self.slots is None:
            return out
        if codes is None:
            channels = np.multiply(rgb, 255.0, dtype=np.float64)  # to_uint8, without the uint8
            np.rint(channels, out=channels)
            np.clip(channels, 0, 255, out=channels)
            weights = np.zeros(channels.shape[-1])
            weights[:3] = _CODE_WEIGHTS
            codes = (channels @ weights).astype(np.intp)
        slot = np.take(self.slots, codes)
        if not slot.any():
            return out
        if not out.flags.c_contiguous:
            hit = slot != 0
            out[hit] = self.by_slot[slot[hit]]
            return out
        # OpenCV's masked copy: a third less time than numpy's boolean indexing where many
        # pixels are hit (a photo's clipped white, a comic's fills)
        pixels = out.reshape(-1, 1, 3)
        hit = (slot != 0).view(np.uint8).reshape(-1, 1)
        written = cv2.copyTo(np.take(self.by_slot, slot.reshape(-1, 1), axis=0), hit, pixels)
        if not np.shares_memory(written, pixels):  # OpenCV made a new array after all
            np.copyto(pixels, written)
        return out


class FillKeeper:
    """A local transform (photos, painted art) whose large flat fills still come out flat:
    pixels of a colour on EXACT_MIN_SHARE of the working image (and EXACT_MIN_PIXELS) get
    that colour's median network output, as in ColourMap; all others the local transform.
    A photo rarely has such exact colours (clipped black or white); painted art and comics
    that are not quite flat art have a few, and a local transfer spreads each of them over
    the colours of its neighbourhood.

    `codes`, optional: codes(top, bottom) -> the 8-bit colour codes of the layer's rows
    top..bottom that it is called on, or None (pixels.Layer.codes8): saves rounding."""

    def __init__(self, transform, source, result, weight, codes=None):
        self.transform, self.codes = transform, codes
        source8 = to_uint8(np.asarray(source, dtype=np.float32).reshape(-1, 3))
        result = np.clip(np.asarray(result, dtype=np.float32).reshape(-1, 3), 0, 1)
        counted = np.ravel(weight) > 0.5  # the pixels colour_medians counts
        every_code = colour_codes(source8)
        colours, count = np.unique(every_code[counted], return_counts=True)
        # Every large colour, also one that does not stand out from its neighbours (a noisy
        # fill of a comic, whose shades outnumber it): the local transform would spread it
        # over its neighbourhood's outputs; so a gradient's large level can step off its
        # neighbours here, which ColourMap (flat art) avoids.
        fills = colours[(count >= EXACT_MIN_PIXELS) & (count >= EXACT_MIN_SHARE * count.sum())]
        # Medians of the fills' own pixels only (a photo has few): the same medians as over
        # all colours, for a fraction of the sorting.
        own = counted & np.isin(every_code, fills)
        codes, _, medians = colour_medians(source8[own], result[own], np.ones(own.sum()))
        self.exact = ExactColours(codes, medians)

    def __call__(self, rows: np.ndarray, top: int = 0) -> np.ndarray:
        out = self.transform(rows, top)
        if out.dtype != np.float32 or not out.flags.owndata:  # a view of something kept
            out = np.array(out, dtype=np.float32)
        codes = None if self.codes is None else self.codes(top, top + len(rows))
        return self.exact(out, rows, codes)


def transfer_lightness(lightness: torch.Tensor, source_lab, target_lab) -> torch.Tensor:
    """PaletteNet keeps every pixel's lightness, while a palette asks for its own: L* values
    (any shape, any device) through Chang 2015's monotone lightness curve
    (chang2015.transfer_luminance: exact at the source swatches, at most 3 x steep from
    black to the darkest swatch). A palette whose colours keep their lightness (hue edits,
    the benchmark's B1-B3) leaves L* as it is."""
    curve = transfer_luminance(lightness.detach().cpu().double().numpy(), source_lab, target_lab)
    return torch.from_numpy(curve).to(lightness.device, lightness.dtype)


def follow_swatches(source8: np.ndarray, result_rgb: np.ndarray, source_lab, target_lab):
    """Move the network's output, in place, so that each source swatch's colours go where
    the palette says: result_rgb (h, w, 3) float RGB, the output for source8 (h, w, 3)
    uint8; source_lab, target_lab (k, 3) LAB, one target per distinct swatch.

    The network alone moves colours the palette did not ask to move (greys under a hue
    shift by up to 12 dE on the artwork benchmark) and lands edited swatches a few dE short
    of their targets. Every colour is weighted to the swatches as chang2015 weights them
    (rbf_weights: 1 at a swatch, falling off between swatches, a partition of unity), and
    - by the weight of the swatches left as they were (target within UNCHANGED_SWATCH),
      it keeps its own colour: the network's move of it is scaled down by that weight, so
      a swatch left alone keeps its colours, and a colour between it and an edited swatch
      moves part of the way;
    - by the weight of each edited swatch, it moves by that swatch's residual: where the
      palette sends the swatch minus where the network sent it, read from the network's
      output for the colours within SWATCH_REACH of the swatch (a Gaussian of the LAB
      distance, by pixels).
    The network's variation between and within colours is kept. On the photo tasks (40
    training photos) this made B1, B2 and B3 better, and on the artwork validation split
    it brought the untouched measure from 1.45 to 0.83 dE (docs/MODEL.md)."""
    source_lab, target_lab = np.asarray(source_lab), np.asarray(target_lab)
    unchanged = np.linalg.norm(target_lab - source_lab, axis=1) <= UNCHANGED_SWATCH
    codes = colour_codes(source8).ravel()
    unique, inverse, count = np.unique(codes, return_inverse=True, return_counts=True)
    inverse = inverse.ravel()
    rgb = np.stack([(unique >> 16) & 255, (unique >> 8) & 255, unique & 255], axis=1) / 255
    lab_in = rgb_to_lab_np(rgb)
    lab_out = rgb_to_lab_np(np.clip(result_rgb.reshape(-1, 3), 0, 1).astype(np.float64))
    mean_out = np.stack([np.bincount(inverse, lab_out[:, c]) for c in range(3)], 1) / count[:, None]
    distance2 = ((lab_in[:, None] - source_lab[None]) ** 2).sum(-1)
    near = count[:, None] * np.exp(-distance2 / (2 * SWATCH_REACH**2))  # (colours, k)
    seen = near.sum(0)
    landed = (near.T @ mean_out) / np.maximum(seen, 1e-12)[:, None]
    residual = np.where(((seen >= 1) & ~unchanged)[:, None], target_lab - landed, 0.0)
    weights = rbf_weights(lab_in, source_lab)
    kept = weights[:, unchanged].sum(1)[inverse, None]
    moved = lab_out + kept * (lab_in[inverse] - lab_out) + (weights @ residual)[inverse]
    result_rgb[...] = lab_to_rgb_np(moved).reshape(result_rgb.shape)
    return result_rgb


def pin_swatches(source_rgb: np.ndarray, result_rgb: np.ndarray, source_lab, target_lab):
    """The network's output moved so that the swatches' colours go where the palette says
    (follow_swatches, on every layer), then, on flat art (is_flat_art), the pixels of a
    fill colour (EXACT_MIN_SHARE of the image) that is exactly a source swatch (8-bit sRGB)
    take that swatch's target colour exactly; in place in result_rgb (h, w, 3) float;
    source_rgb (h, w, 3) float 0..1.

    The swatches an artist sees are the layer's own fill colours (palette.extract_palette),
    so "this swatch becomes that colour" means every pixel of it, exactly, as with
    chang2015; a swatch left as it was keeps its pixels as they were. Only fills: a swatch
    colour that is one of a gradient's many colours would step off its neighbours. A
    repeated swatch keeps one target (palette.distinct_pairs)."""
    source8 = to_uint8(source_rgb)
    keep, chosen = distinct_pairs(source_lab, target_lab)
    source_lab, target_lab = np.asarray(source_lab)[keep], np.asarray(target_lab)[chosen]
    follow_swatches(source8, result_rgb, source_lab, target_lab)
    if not is_flat_art(source8):
        return result_rgb
    colours, count = np.unique(colour_codes(source8), return_counts=True)
    swatches = colour_codes(to_uint8(lab_to_rgb_np(source_lab)))
    targets = np.clip(lab_to_rgb_np(target_lab), 0, 1).astype(np.float32)
    # a fill, not one step of a gradient (whose neighbouring shades outnumber it)
    fills = colours[stands_out(colours, count, count >= EXACT_MIN_SHARE * count.sum())]
    fill = np.isin(swatches, fills)
    return ExactColours(swatches[fill], targets[fill])(result_rgb, source_rgb)


def is_flat_art(rgb8: np.ndarray, weight=None) -> bool:
    """Whether a layer (uint8 RGB (H, W, 3), pixels counted by `weight` as in
    palette.distinct_colours) is flat art: most of what is seen is exact colours each
    repeated over many pixels (fills, inks, pixel-art colours; palette.is_flat_art_counted,
    which the daemon's palette step calls on the colours it counted).

    On the artwork collection (docs/MODEL.md) this holds for all pixel art, nearly all flat
    art, line art and icons, most sprite sheets, half the painted art; and for a fifth of
    the photos, mostly those with large flat areas (night sky, studio backgrounds), where a
    global mapping is what Chang 2015 does for every photo anyway."""
    return is_flat_art_counted(distinct_colours(rgb8, weight)[1])


def full_resolution_transform(layer, source, result, weight, local, flat_art=None, swatches=None):
    """How a network result comes to full resolution: the ColourMap when `layer` (a
    backend.core.pixels.Layer, the visible rectangle) is flat art (is_flat_art), else the
    local transform local() (backend.core.fullres: photos and painted art keep the network's
    local detail) with its large fills kept flat (FillKeeper). source, result, weight: the
    working image, the network's output for it and its visible share. flat_art: whether
    `layer` is flat art, if known already (None: checked here). swatches: as ColourMap."""
    if flat_art is None:
        flat_art = is_flat_art(*layer.palette_sample())  # what is_flat_art counts, no more
    if flat_art:
        return ColourMap(source, result, weight, swatches)
    return FillKeeper(local(), source, result, weight, layer.codes8)
