"""Measures of how a recolouring treats artwork and photos (benchmark B4, issue 17).

None of them needs a ground truth: each compares a layer (the input) with what a method made
of it (the output), both 8-bit sRGB (H, W, 3), over the layer's visible pixels (alpha > 0) or,
for flat fills and gradients, its opaque ones (alpha = 255). Colour distances are CIEDE2000
(skimage.color.deltaE_ciede2000) in CIELAB (D65), lightness L* 0..100, chroma
C* = sqrt(a*^2 + b*^2).

Most measures only depend on which output colour each input colour became and on how many
pixels that concerns, so they work on ColourPairs: the distinct (input colour, output colour)
pairs of the pixels, with pixel counts. A 4-megapixel sprite sheet has a few tens of thousands
of them, so every colour conversion and CIEDE2000 runs on those, not on every pixel.

    measure            definition (issue 17)                                         bar
    fills broken       share of flat fills (an input colour on >= 100 opaque pixels) <= 1 %
                       whose output spreads over more than 1 dE at the 95th
                       percentile against the fill's most common output colour
    colour growth      distinct output colours / distinct input colours (visible)    <= 1.0
    ink excess         mean, over ink pixels (input L* < 25 and C* < 6), of how far   <= 3
                       the output's C* exceeds the C* of the target colour the ink
                       is paired with (its nearest source swatch's target)
    palette adherence  median dE from the output pixels to the nearest target colour
    untouched          mean dE input -> output of the pixels whose nearest source     <= 1.0
                       swatch the edit left as it was
    swatch miss        for the pixels equal to a source swatch (its 8-bit colour),   <= 1.0
                       the median dE of their output from that swatch's target;
                       the largest over the swatches
    gradient steps     in each smooth-gradient region of the input, the largest       <= 1.5
                       adjacent-pixel dE of the output over that of the input; the
                       largest over the regions
    lightness kept     mean |output L* - input L*| (photos)
    shadow slope       the largest local slope of the lightness mapping (output L*    <= 3
                       against input L*) over the darkest 10 % of pixels (photos)
"""

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy import ndimage
from skimage.color import deltaE_ciede2000

from backend.core.color import lab_to_rgb_np, rgb_to_lab_np, to_uint8

FILL_MIN_PIXELS = 100  # an input colour on at least this many opaque pixels is a flat fill
FILL_SPREAD = 1.0  # dE: a fill whose output spreads further than this is broken
FILL_PERCENTILE = 95
INK_LIGHTNESS, INK_CHROMA = 25.0, 6.0  # input L* and C* below these: ink (outlines, text)
UNCHANGED_SWATCH = 0.5  # dE: a target this close to its source swatch is an unchanged swatch
SMOOTH_STEP = 2.0  # dE: neighbours in a smooth gradient differ by at most this much
GRADIENT_MIN_PIXELS = 256  # a gradient region has at least this many pixels
GRADIENT_MIN_COLOURS = 8  # and at least this many distinct colours (a flat fill has one)
SHADOW_SHARE = 0.10  # the darkest 10 % of pixels
SHADOW_BIN = 2.0  # L* width of the bins the lightness mapping is read in
SHADOW_MIN_SPAN = 4.0  # L*: the shadow range looked at is at least two bins wide
SHADOW_MIN_STEP = 0.5  # L*: bins whose input medians differ less give no slope


# --- colours ------------------------------------------------------------------------------
def colour_codes(rgb8: np.ndarray) -> np.ndarray:
    """uint8 RGB (..., 3) -> one int64 per pixel, 0xRRGGBB."""
    rgb = np.asarray(rgb8, dtype=np.int64)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def codes_to_lab(codes: np.ndarray) -> np.ndarray:
    """int64 0xRRGGBB codes (N,) -> CIELAB (N, 3)."""
    rgb = np.stack([(codes >> 16) & 255, (codes >> 8) & 255, codes & 255], axis=-1)
    return rgb_to_lab_np(rgb / 255.0)


def chroma(lab: np.ndarray) -> np.ndarray:
    return np.hypot(lab[..., 1], lab[..., 2])


def nearest_distance(lab: np.ndarray, palette_lab: np.ndarray) -> np.ndarray:
    """For colours (N, 3) and a palette (k, 3): CIEDE2000 to the nearest palette colour (N,)."""
    palette_lab = np.asarray(palette_lab, dtype=np.float64)
    return deltaE_ciede2000(lab[:, None, :], palette_lab[None, :, :]).min(axis=1)


def weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    """The smallest value v with at least a share q of the total weight on values <= v
    (numpy's 'inverted_cdf' percentile, for weighted values). NaN for no values."""
    if len(values) == 0:
        return float("nan")
    order = np.argsort(values, kind="stable")
    cumulative = np.cumsum(weights[order])
    index = np.searchsorted(cumulative, q * cumulative[-1], side="left")
    return float(values[order][min(index, len(values) - 1)])


@dataclass
class ColourPairs:
    """The distinct (input colour, output colour) pairs of some pixels, with pixel counts.

    source, output: int64 0xRRGGBB codes (M,); count: pixels of each pair (M,)."""

    source: np.ndarray
    output: np.ndarray
    count: np.ndarray

    @classmethod
    def of(cls, source_rgb8, output_rgb8, where=None) -> "ColourPairs":
        """The pairs of the pixels where `where` (bool (H, W); all pixels without it)."""
        source, output = colour_codes(source_rgb8), colour_codes(output_rgb8)
        if source.shape != output.shape:
            raise ValueError(f"input {source.shape} and output {output.shape} differ in size")
        if where is not None:
            source, output = source[where], output[where]
        keys, count = np.unique(source.ravel() << 24 | output.ravel(), return_counts=True)
        return cls(keys >> 24, keys & 0xFFFFFF, count)

    @property
    def pixels(self) -> int:
        return int(self.count.sum())

    @cached_property
    def _sources(self) -> tuple[np.ndarray, np.ndarray]:
        """(LAB of the distinct input colours, index of each pair's input colour in it)."""
        unique, inverse = np.unique(self.source, return_inverse=True)
        return codes_to_lab(unique), inverse.ravel()

    @cached_property
    def source_lab(self) -> np.ndarray:
        lab, inverse = self._sources
        return lab[inverse]

    @cached_property
    def output_lab(self) -> np.ndarray:
        unique, inverse = np.unique(self.output, return_inverse=True)
        return codes_to_lab(unique)[inverse.ravel()]

    def source_distances(self, palette_lab) -> np.ndarray:
        """CIEDE2000 from each pair's input colour to each palette colour (M, k), computed
        once per distinct input colour."""
        lab, inverse = self._sources
        palette_lab = np.asarray(palette_lab, dtype=np.float64)
        return deltaE_ciede2000(lab[:, None, :], palette_lab[None, :, :])[inverse]

    def nearest_swatch(self, palette_lab) -> np.ndarray:
        """Index of the palette colour nearest (CIEDE2000) each pair's input colour (M,)."""
        return self.source_distances(palette_lab).argmin(axis=1)

    @cached_property
    def shift(self) -> np.ndarray:
        """CIEDE2000 from each pair's input colour to its output colour (M,)."""
        return deltaE_ciede2000(self.source_lab, self.output_lab)


def visible_mask(alpha: np.ndarray | None, shape) -> np.ndarray:
    """alpha (H, W) uint8 or None -> bool (H, W): pixels with alpha > 0 (all without alpha)."""
    return np.ones(shape[:2], bool) if alpha is None else np.asarray(alpha) > 0


def opaque_mask(alpha: np.ndarray | None, shape) -> np.ndarray:
    """alpha (H, W) uint8 or None -> bool (H, W): pixels with alpha = 255 (all without)."""
    return np.ones(shape[:2], bool) if alpha is None else np.asarray(alpha) == 255


# --- the measures -------------------------------------------------------------------------
def fill_spreads(opaque_pairs: ColourPairs, min_pixels: int = FILL_MIN_PIXELS) -> np.ndarray:
    """The spread of every flat fill: for each input colour on at least `min_pixels` of the
    pixels (give the pairs of the OPAQUE pixels), the 95th percentile over its pixels of the
    CIEDE2000 between their output colour and the fill's most common output colour.
    Returns (fills,) dE, in the order of the fills' colour codes."""
    pairs = opaque_pairs
    fills, fill_of_pair = np.unique(pairs.source, return_inverse=True)
    fill_of_pair = fill_of_pair.ravel()
    fill_pixels = np.bincount(fill_of_pair, weights=pairs.count)
    selected = fill_pixels[fill_of_pair] >= min_pixels
    fill = fill_of_pair[selected]
    if len(fill) == 0:  # no colour covers enough opaque pixels: no flat fill
        return np.zeros(0)
    count = pairs.count[selected]
    output_lab = pairs.output_lab[selected]
    # the most common output colour of each fill: the first pair of its run, by count
    order = np.lexsort((-count, fill))
    first = order[np.r_[True, np.diff(fill[order]) != 0]]
    mode_lab = np.zeros((len(fills), 3))
    mode_lab[fill[first]] = output_lab[first]
    distance = deltaE_ciede2000(output_lab, mode_lab[fill])
    # per fill, the smallest distance with 95 % of the fill's pixels at or below it
    order = np.lexsort((distance, fill))
    fill, distance, count = fill[order], distance[order], count[order]
    starts = np.flatnonzero(np.r_[True, np.diff(fill) != 0])
    cumulative = np.cumsum(count)
    before = np.r_[0, cumulative[starts[1:] - 1]]  # pixels of the fills before each fill
    total = fill_pixels[fill[starts]]
    threshold = np.repeat(before + FILL_PERCENTILE / 100 * total, np.diff(np.r_[starts, len(fill)]))
    reached = cumulative >= threshold - 1e-9
    # the first pair of each fill that reaches its threshold
    first_reached = np.full(len(starts), -1)
    run = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(fill)]))
    hits = np.flatnonzero(reached)
    first_hits = hits[np.r_[True, np.diff(run[hits]) != 0]]
    first_reached[run[first_hits]] = first_hits
    return distance[first_reached]


def fills_broken(opaque_pairs: ColourPairs) -> tuple[int, int]:
    """(broken fills, flat fills): a flat fill (see fill_spreads) is broken when its output
    spreads over more than FILL_SPREAD = 1 dE. The benchmark pools the counts over images."""
    spreads = fill_spreads(opaque_pairs)
    return int((spreads > FILL_SPREAD).sum()), len(spreads)


def colour_growth(visible_pairs: ColourPairs) -> float:
    """Distinct output colours / distinct input colours (8-bit sRGB) of the pixels: 1.0 for
    an output that maps one colour to one colour, more when colours split (noise, bleeding,
    new shades); less when several input colours land on one."""
    if visible_pairs.pixels == 0:
        return float("nan")
    return len(np.unique(visible_pairs.output)) / len(np.unique(visible_pairs.source))


def ink_excess(visible_pairs: ColourPairs, source_lab, target_lab) -> float:
    """Mean over the ink pixels (input L* < 25 and C* < 6: outlines, text, black fills) of
    max(0, output C* - C* of the target its nearest source swatch (CIEDE2000) has), in C*
    units: ink may take its target's colour, never a more saturated one. `source_lab`,
    `target_lab`: the edit's palettes, (k, 3) LAB in correspondence. NaN without ink."""
    pairs = visible_pairs
    lab = pairs.source_lab
    ink = (lab[:, 0] < INK_LIGHTNESS) & (chroma(lab) < INK_CHROMA)
    if not ink.any():
        return float("nan")
    swatch = pairs.nearest_swatch(source_lab)[ink]
    allowed = chroma(np.asarray(target_lab, dtype=np.float64))[swatch]
    excess = np.maximum(0.0, chroma(pairs.output_lab[ink]) - allowed)
    return float(np.average(excess, weights=pairs.count[ink]))


def palette_adherence(visible_pairs: ColourPairs, target_lab) -> float:
    """Median over the pixels of the CIEDE2000 from the output colour to the nearest target
    colour: how far the result is from the palette asked for (designer palettes)."""
    unique, inverse = np.unique(visible_pairs.output, return_inverse=True)
    distance = nearest_distance(codes_to_lab(unique), target_lab)[inverse.ravel()]
    return weighted_quantile(distance, visible_pairs.count, 0.5)


def untouched(visible_pairs: ColourPairs, source_lab, target_lab) -> float:
    """Mean CIEDE2000 input -> output of the pixels whose nearest source swatch (CIEDE2000)
    the edit left unchanged (its target within UNCHANGED_SWATCH = 0.5 dE of it): what a
    one-swatch edit does to the rest of the layer. NaN when every swatch changed."""
    source_lab, target_lab = np.asarray(source_lab), np.asarray(target_lab)
    unchanged = deltaE_ciede2000(source_lab, target_lab) < UNCHANGED_SWATCH
    if not unchanged.any():
        return float("nan")
    kept = unchanged[visible_pairs.nearest_swatch(source_lab)]
    if not kept.any():
        return float("nan")
    return float(np.average(visible_pairs.shift[kept], weights=visible_pairs.count[kept]))


def swatch_miss(visible_pairs: ColourPairs, source_lab, target_lab) -> float:
    """For each source swatch, the pixels whose input colour is that swatch (the same 8-bit
    sRGB colour as the swatch rounded to 8 bits: what "a layer colour equal to a source
    swatch" means for an 8-bit layer), the median CIEDE2000 of their output from the
    swatch's target; the largest over the swatches that have such pixels (NaN if none
    has). 0 when every layer colour equal to a swatch lands exactly on its target.

    Not a distance ball: a ball of 0.5 dE around a swatch that sits inside a smooth
    gradient takes in neighbouring levels of it, which an edit of that swatch must move
    apart (the steeper the edit, the further), so it measured the edit's steepness."""
    pairs = visible_pairs
    source_lab, target_lab = np.asarray(source_lab), np.asarray(target_lab)
    swatch_codes = colour_codes(to_uint8(lab_to_rgb_np(source_lab)))
    worst = float("nan")
    for i, code in enumerate(swatch_codes):
        rows = pairs.source == code
        if rows.any():
            miss = deltaE_ciede2000(pairs.output_lab[rows], target_lab[i][None, :])
            worst = np.nanmax([worst, weighted_quantile(miss, pairs.count[rows], 0.5)])
    return float(worst)


def lightness_kept(visible_pairs: ColourPairs) -> float:
    """Mean |output L* - input L*| over the pixels, in L* units."""
    pairs = visible_pairs
    change = np.abs(pairs.output_lab[:, 0] - pairs.source_lab[:, 0])
    return float(np.average(change, weights=pairs.count))


def shadow_slope(visible_pairs: ColourPairs) -> float:
    """The largest local slope of the lightness mapping in the shadows.

    The mapping is read in bins of SHADOW_BIN = 2 L* of input lightness, from 0 up to the
    lightness of the darkest 10 % of the pixels (at least SHADOW_MIN_SPAN = 4 L* above the
    darkest pixel): each bin gives the median input and median output L* of its pixels, and
    neighbouring bins (whose input medians differ by >= 0.5 L*) the slope
    |output difference| / input difference. Identity gives 1; a curve that stretches the
    shadows gives its steepness. NaN when fewer than two bins have pixels."""
    pairs = visible_pairs
    lightness_in, lightness_out = pairs.source_lab[:, 0], pairs.output_lab[:, 0]
    darkest = weighted_quantile(lightness_in, pairs.count, SHADOW_SHARE)
    top = max(darkest, lightness_in.min() + SHADOW_MIN_SPAN)
    medians = []
    for low in np.arange(0.0, top, SHADOW_BIN):
        rows = (lightness_in >= low) & (lightness_in < low + SHADOW_BIN)
        if rows.any():
            medians.append(
                (
                    weighted_quantile(lightness_in[rows], pairs.count[rows], 0.5),
                    weighted_quantile(lightness_out[rows], pairs.count[rows], 0.5),
                )
            )
    slopes = [
        abs(out_b - out_a) / (in_b - in_a)
        for (in_a, out_a), (in_b, out_b) in zip(medians, medians[1:])
        if in_b - in_a >= SHADOW_MIN_STEP
    ]
    return max(slopes) if slopes else float("nan")


# --- gradients ----------------------------------------------------------------------------
@dataclass
class GradientRegions:
    """The smooth-gradient regions of an input image and its neighbour steps in them.

    A pixel is smooth when every 4-neighbour differs from it by at most SMOOTH_STEP = 2 dE
    (CIEDE2000; only opaque neighbours count). A gradient region is a 4-connected component
    of opaque smooth pixels with at least GRADIENT_MIN_PIXELS = 256 pixels and at least
    GRADIENT_MIN_COLOURS = 8 distinct colours (so flat fills, which have one, are not
    gradients). The steps measured are between neighbours both in one region."""

    labels: np.ndarray  # (H, W) int: 0 outside, region number inside
    count: int  # number of regions
    horizontal: np.ndarray  # (H, W-1) region of each horizontal pair (0: not measured)
    vertical: np.ndarray  # (H-1, W)
    input_steps: tuple  # (horizontal dE (H, W-1), vertical dE (H-1, W)) of the input

    @classmethod
    def find(cls, source_rgb8, opaque=None) -> "GradientRegions":
        codes = colour_codes(source_rgb8)
        opaque = np.ones(codes.shape, bool) if opaque is None else opaque
        steps = neighbour_steps(codes)
        smooth = opaque.copy()
        for step, axis in zip(steps, (1, 0)):
            rough = (step > SMOOTH_STEP) & _both(opaque, axis)
            smooth &= ~_pad(rough, axis, first=True) & ~_pad(rough, axis, first=False)
        labels, count = ndimage.label(smooth)
        keep = np.zeros(count + 1, bool)
        if count:
            sizes = np.bincount(labels.ravel(), minlength=count + 1)
            pairs = np.unique(labels.ravel().astype(np.int64) << 24 | codes.ravel())
            colours = np.bincount(pairs >> 24, minlength=count + 1)
            keep = (sizes >= GRADIENT_MIN_PIXELS) & (colours >= GRADIENT_MIN_COLOURS)
            keep[0] = False
        renumber = np.zeros(count + 1, np.int64)
        renumber[keep] = np.arange(1, keep.sum() + 1)
        labels = renumber[labels]
        horizontal = np.where(labels[:, 1:] == labels[:, :-1], labels[:, 1:], 0)
        vertical = np.where(labels[1:, :] == labels[:-1, :], labels[1:, :], 0)
        return cls(labels, int(keep.sum()), horizontal, vertical, steps)


def neighbour_steps(codes: np.ndarray, where=(None, None)) -> tuple[np.ndarray, np.ndarray]:
    """CIEDE2000 between horizontal (H, W-1) and vertical (H-1, W) neighbours of an image
    given as colour codes (H, W); 0 for pairs of equal colours and pairs not in `where` (bool
    masks of those two shapes, or None for all pairs)."""
    steps = []
    pairs = ((codes[:, 1:], codes[:, :-1]), (codes[1:, :], codes[:-1, :]))
    for (a, b), wanted in zip(pairs, where):
        step = np.zeros(a.shape)
        differ = a != b if wanted is None else (a != b) & wanted
        if differ.any():  # neighbouring colour pairs repeat: each distinct pair computed once
            keys, inverse = np.unique(a[differ] << 24 | b[differ], return_inverse=True)
            colours, index = np.unique(np.r_[keys >> 24, keys & 0xFFFFFF], return_inverse=True)
            lab = codes_to_lab(colours)[index.ravel()]
            distance = deltaE_ciede2000(lab[: len(keys)], lab[len(keys) :])
            step[differ] = distance[inverse.ravel()]
        steps.append(step)
    return steps[0], steps[1]


def _both(mask, axis):
    """Whether both pixels of each neighbour pair along `axis` are in the mask."""
    return mask[:, 1:] & mask[:, :-1] if axis == 1 else mask[1:, :] & mask[:-1, :]


def _pad(pair_values, axis, first):
    """Pair values along `axis` -> per pixel: the pair's first (or second) pixel gets it."""
    width = [(0, 0), (0, 0)]
    width[axis] = (0, 1) if first else (1, 0)
    return np.pad(pair_values, width)


def gradient_steps(regions: GradientRegions, output_rgb8) -> float:
    """In each smooth-gradient region of the input (GradientRegions), the largest
    adjacent-pixel CIEDE2000 of the output over the largest of the input (over the
    neighbour pairs inside the region); the largest ratio over the regions. 1 for an output
    that keeps the gradient's steps, more when it bands; NaN without gradient regions."""
    if regions.count == 0:
        return float("nan")
    inside = (regions.horizontal > 0, regions.vertical > 0)
    output_steps = neighbour_steps(colour_codes(output_rgb8), inside)
    largest_in = np.zeros(regions.count + 1)
    largest_out = np.zeros(regions.count + 1)
    for pair_regions, step_in, step_out in zip(
        (regions.horizontal, regions.vertical), regions.input_steps, output_steps
    ):
        np.maximum.at(largest_in, pair_regions.ravel(), step_in.ravel())
        np.maximum.at(largest_out, pair_regions.ravel(), step_out.ravel())
    ratio = largest_out[1:] / np.maximum(largest_in[1:], 1e-6)
    return float(ratio.max())
