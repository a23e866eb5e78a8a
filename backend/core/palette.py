"""Palettes: extraction from an image, pairing, and the canonical six-colour form.

Extraction follows Chang et al. 2015 ("Palette-based Photo Recoloring"): the image is reduced
to a 16x16x16 RGB histogram, the bins' mean colours are clustered by weighted k-means in LAB,
seeded greedily at the densest bins. Working on at most 4096 bins keeps it fast and
deterministic at any image size.
"""

import numpy as np

from backend.core.color import rgb_to_lab_np, to_uint8
from backend.wire import MAX_PALETTE_COLORS

MODEL_PALETTE_SIZE = 6


class PaletteError(ValueError):
    """No palette can be taken or formed (no visible pixel, a size out of range)."""


def to_hex(rgb) -> str:
    return "#{:02x}{:02x}{:02x}".format(*to_uint8(rgb))


# --- extraction --------------------------------------------------------------------------
HISTOGRAM_BINS = 16  # per RGB channel, as in Chang et al.
SEED_FALLOFF = 80.0  # LAB distance over which a chosen seed suppresses its neighbours
KMEANS_ITERATIONS = 20
HISTOGRAM_SAMPLE = 2_000_000


def colour_histogram(rgb8: np.ndarray, weight: np.ndarray | None = None, counted=None):
    """uint8 RGB pixels -> (mean LAB colour, weight) of each non-empty histogram bin.

    `weight` (H, W), optional: how much each pixel counts, e.g. its alpha (0..1) times its
    selection; any non-negative scale. A pixel at alpha 2/255 counts 2/255 of an opaque one,
    a fully transparent one (weight 0) not at all; each bin's colour is its pixels' weighted
    mean. Without it every pixel counts once. Above HISTOGRAM_SAMPLE pixels an evenly
    strided sample is counted instead: the palette of a 24-megapixel layer does not change,
    and extraction stays well under a second. counted: distinct_colours(rgb8, weight), if
    counted already.
    """
    from backend.core.colorcount import histogram_sums  # (see distinct_colours)

    pixels = rgb8.reshape(-1, 3)
    stride = max(1, -(-len(pixels) // HISTOGRAM_SAMPLE))
    pixels = pixels[::stride]
    if weight is None and counted is not None:
        # Each distinct colour once, counted by its pixels: the same whole-number sums as
        # over the pixels (exact in float64), from far fewer rows.
        pixels, weight = counted
    elif weight is not None:
        weight = weight.reshape(-1)[::stride]  # pixels of weight 0 are left out
    # One compiled pass over the pixels (each bin's sums added in pixel order)
    counts, sums = histogram_sums(pixels, weight, int(np.log2(HISTOGRAM_BINS)))
    filled = counts > 0
    mean_rgb = sums[filled] / counts[filled, None] / 255
    return rgb_to_lab_np(mean_rgb), counts[filled].astype(np.float64)


def weighted_kmeans(points, weights, k, *, fixed=None, iterations=KMEANS_ITERATIONS):
    """Weighted k-means with greedy density seeding; deterministic.

    `fixed` centres (e.g. Chang's black anchor) take part in the assignment but never move
    and are not returned. Returns (centres (k, 3), weight of each centre).
    """
    fixed = np.zeros((0, 3)) if fixed is None else np.asarray(fixed, dtype=np.float64)
    k = min(k, len(points))
    density = weights.astype(np.float64).copy()
    for centre in fixed:
        density *= 1 - np.exp(-np.sum((points - centre) ** 2, axis=1) / SEED_FALLOFF**2)
    seeds = []
    for _ in range(k):
        best = int(np.argmax(density))
        seeds.append(points[best])
        density *= 1 - np.exp(-np.sum((points - points[best]) ** 2, axis=1) / SEED_FALLOFF**2)
    centres = np.array(seeds, dtype=np.float64)
    for _ in range(iterations):
        everything = np.concatenate([fixed, centres])
        distance = ((points[:, None, :] - everything[None]) ** 2).sum(-1)
        label = np.argmin(distance, axis=1) - len(fixed)
        moved = centres.copy()
        for i in range(k):
            member = label == i
            if weights[member].sum() > 0:
                moved[i] = np.average(points[member], axis=0, weights=weights[member])
        if np.allclose(moved, centres, atol=1e-6):
            break
        centres = moved
    everything = np.concatenate([fixed, centres])
    label = np.argmin(((points[:, None, :] - everything[None]) ** 2).sum(-1), axis=1) - len(fixed)
    shares = np.array([weights[label == i].sum() for i in range(k)])
    return centres, shares


SNAP_SHARE = 0.5  # a cluster whose most common exact colour holds this share is that colour
SNAP_MAX_COLOURS = 65_536  # above this many distinct colours (a photo) no colour dominates
SNAP_DOMINANCE = 2.0  # on flat art: a fill colour on twice the pixels of any other in its cluster
FILL_COLOUR_SHARE = 0.00025  # a colour on this share of the counted pixels is a fill colour
FILL_MIN_PIXELS = 16  # (and on at least this many, or on FLAT_ART_SHARE of a tiny layer)
FLAT_ART_SHARE = 0.5  # a layer whose fill colours cover this share of it is flat art
NEIGHBOUR_LEVELS = 3  # a fill outnumbers the colours within this many 8-bit levels (stands_out)


def fill_colours(counts: np.ndarray) -> np.ndarray:
    """Which of a layer's distinct colours (their weights, distinct_colours) are fill
    colours: each on FILL_COLOUR_SHARE of the counted pixels and on FILL_MIN_PIXELS of
    them (fills, inks, pixel-art colours; not one of a gradient's or a photo's many
    colours). A layer too small for FILL_MIN_PIXELS (a 3 x 3 dot) needs FLAT_ART_SHARE of
    its pixels instead. Returns bool (n,)."""
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    least = min(max(FILL_MIN_PIXELS, FILL_COLOUR_SHARE * total), FLAT_ART_SHARE * total)
    return (counts >= least) & (counts > 0)


def stands_out(codes: np.ndarray, counts: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """Which of the colours `chosen` (a bool mask over codes) stand out from the colours
    around them: their own pixels at least as many as those of all other colours within
    NEIGHBOUR_LEVELS 8-bit levels in every channel. codes: sorted distinct 0xRRGGBB codes
    (n,), counts: pixels of each (n,). Returns bool (n,), False where not chosen.

    A flat fill stands out from its anti-aliased edges; a level of a smooth gradient does
    not (its neighbouring levels cover as much), and giving it its own exact output would
    step it off the neighbouring levels that go through the smooth table."""
    codes, counts = np.asarray(codes, np.int64), np.asarray(counts, np.float64)
    result = np.zeros(len(codes), bool)
    candidates = np.flatnonzero(chosen)
    if len(candidates) == 0:
        return result
    cumulative = np.concatenate([[0.0], np.cumsum(counts)])
    red, green, blue = (
        (codes[candidates] >> 16) & 255,
        (codes[candidates] >> 8) & 255,
        codes[candidates] & 255,
    )
    around = np.zeros(len(candidates))
    reach = NEIGHBOUR_LEVELS
    for dr in range(-reach, reach + 1):
        for dg in range(-reach, reach + 1):
            r, g = red + dr, green + dg
            inside = (r >= 0) & (r <= 255) & (g >= 0) & (g <= 255)
            base = (r << 16) | (g << 8)
            low = np.searchsorted(codes, base + np.maximum(blue - reach, 0), "left")
            high = np.searchsorted(codes, base + np.minimum(blue + reach, 255), "right")
            around += np.where(inside, cumulative[high] - cumulative[low], 0.0)
    own = counts[candidates]
    result[candidates] = own >= around - own
    return result


def colour_codes_of(rgb8: np.ndarray) -> np.ndarray:
    """uint8 RGB (n, 3) -> int64 0xRRGGBB codes (n,), sorted as distinct_colours gives them."""
    rgb = np.asarray(rgb8, dtype=np.int64)
    return (rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2]


def is_flat_art_counted(counts: np.ndarray) -> bool:
    """Whether a layer is flat art, from the weights of its distinct colours
    (distinct_colours): at least FLAT_ART_SHARE of what is seen is in fill colours
    (fill_colours). Pixel art, nearly all flat art, line art and icons are; photos are not,
    unless mostly flat areas (night sky, studio backgrounds)."""
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    if total <= 0:
        return False
    return bool(counts[fill_colours(counts)].sum() >= FLAT_ART_SHARE * total)


def distinct_colours(rgb8: np.ndarray, weight=None):
    """The exact colours of a uint8 RGB image and how much of it each covers.

    Returns (uint8 RGB (n, 3), weight of each (n,)), only colours with a positive weight;
    counted on the same evenly strided sample as colour_histogram above HISTOGRAM_SAMPLE
    pixels."""
    pixels = rgb8.reshape(-1, 3)
    stride = max(1, -(-len(pixels) // HISTOGRAM_SAMPLE))
    pixels = pixels[::stride]
    sampled_weight = None if weight is None else weight.reshape(-1)[::stride]
    # Counted on all cores without sorting; weights added in the pixels' order, as always.
    # (Imported here: colorcount uses pixels, which imports this module.)
    from backend.core.colorcount import count_colours

    keys, counts = count_colours(pixels, sampled_weight)
    seen = counts > 0
    keys, counts = keys[seen], counts[seen].astype(np.float64)
    rgb = np.stack([(keys >> 16) & 255, (keys >> 8) & 255, keys & 255], axis=1).astype(np.uint8)
    return rgb, counts


def _snap_to_fills(centres, colours, counts):
    """Replace each centre by the exact colour that dominates its cluster, if one does.

    Flat art is a few exact fill colours plus anti-aliased edges between them; k-means on
    the histogram averages the edge pixels into the fill's centre, a colour a little off
    every fill (black line art's ink asked for two colours came out #222222). A user editing
    that swatch expects the fill itself to move. So on flat art (is_flat_art_counted) a
    cluster is represented by its most common exact colour when that is a fill colour
    (fill_colours) standing out from the colours around it (stands_out: not a level of a
    photo's shaded sky) and on SNAP_DOMINANCE times the weight of any other colour of the
    cluster:
    the ink, not the mean of the ink and its grey edges; one colour asked of pixel art with
    a dominant colour is that colour. A smooth gradient's levels are each about as common
    as their neighbours, so a cluster inside one stays its mean (two clusters of one
    gradient do not become two neighbouring levels of it). On any layer a cluster in which
    one exact colour holds SNAP_SHARE of the weight is that colour; in photos no exact
    colour dominates a cluster and the centres stay as they are."""
    if len(colours) > SNAP_MAX_COLOURS:
        return centres
    flat = is_flat_art_counted(counts)
    fill = stands_out(colour_codes_of(colours), counts, fill_colours(counts)) if flat else None
    lab = rgb_to_lab_np(colours / 255)
    label = np.argmin(((lab[:, None] - centres[None]) ** 2).sum(-1), axis=1)
    snapped = centres.copy()
    for i in range(len(centres)):
        member = np.flatnonzero(label == i)
        if len(member) == 0:
            continue
        order = member[np.argsort(counts[member])[::-1]]
        heaviest, runner_up = order[0], counts[order[1]] if len(order) > 1 else 0.0
        dominant = flat and fill[heaviest] and counts[heaviest] >= SNAP_DOMINANCE * runner_up
        if dominant or counts[heaviest] >= SNAP_SHARE * counts[member].sum():
            snapped[i] = lab[heaviest]
    return snapped


def extract_palette(
    rgb8: np.ndarray, k: int = MODEL_PALETTE_SIZE, weight=None, black_anchor=False, counted=None
):
    """Dominant colours of a uint8 RGB image (H, W, 3), each pixel counted by `weight`
    (see colour_histogram; None: every pixel once).

    Returns (LAB colours (n, 3) sorted by lightness, share of each, summing to 1), n <= k.
    An image with at most k distinct colours gives exactly those colours (n may be below
    k: black line art gives one colour, not six copies of it). Otherwise a cluster that one
    exact colour dominates (a flat fill with its anti-aliased edges) gives that colour.
    counted: distinct_colours(rgb8, weight), if counted already (so it is counted once).
    """
    if not 1 <= k <= MAX_PALETTE_COLORS:
        raise PaletteError(f"k must be between 1 and {MAX_PALETTE_COLORS}, got {k}")
    colours, counts = distinct_colours(rgb8, weight) if counted is None else counted
    if len(colours) == 0:
        raise PaletteError("the image has no visible pixels to take a palette from")
    if len(colours) <= k:
        centres, shares = rgb_to_lab_np(colours / 255), counts
    else:
        bins, bin_counts = colour_histogram(rgb8, weight, (colours, counts))
        fixed = np.array([[0.0, 0.0, 0.0]]) if black_anchor else None
        centres, shares = weighted_kmeans(bins, bin_counts, k, fixed=fixed)
        keep = shares > 0  # a seed no bin chose (fewer bins than k) is no colour of the image
        centres, shares = _snap_to_fills(centres[keep], colours, counts), shares[keep]
    shares = shares / max(shares.sum(), 1e-12)
    order = canonical_order(centres)
    return centres[order], shares[order]


# --- the model's six-colour form ---------------------------------------------------------
def canonical_order(lab) -> np.ndarray:
    """Dark to light; ties broken by a then b, so any permutation sorts the same way."""
    lab = np.asarray(lab)
    return np.lexsort((lab[:, 2], lab[:, 1], lab[:, 0]))


def pair_with_image(target_lab, rgb8: np.ndarray, weight=None):
    """A palette given without the colours it replaces -> (target, source) of equal length:
    the image's own palette of up to as many colours (what the `palette` op gives, dark to
    light, each pixel counted by `weight`), each paired with a target colour by lightness
    (pair_by_lightness). A layer with fewer distinct colours than the palette gets fewer
    pairs: black line art and a six-colour palette pair black with the darkest target."""
    target = np.asarray(target_lab, dtype=np.float64).reshape(-1, 3)
    source, _ = extract_palette(rgb8, len(target), weight=weight)
    return pair_by_lightness(target, source), source


def pair_by_lightness(target_lab, source_lab) -> np.ndarray:
    """The target colour for each source colour (both LAB; source sorted dark to light, as
    extract_palette gives it, and no longer than target): the targets in canonical order,
    of which as many as there are source colours are chosen, keeping their order, so that
    the summed lightness difference to the source colours is least. With as many source as
    target colours this is pairing by lightness rank; with fewer, each source colour takes
    the target nearest its lightness that keeps the order (black and white take the
    darkest and the lightest). Returns (len(source), 3)."""
    target = np.asarray(target_lab, dtype=np.float64).reshape(-1, 3)
    source = np.asarray(source_lab, dtype=np.float64).reshape(-1, 3)
    target = target[canonical_order(target)]
    m, n = len(source), len(target)
    if m > n:
        raise PaletteError(f"{m} source colours cannot pair with {n} target colours")
    # cost[i, j]: the least total difference pairing source 0..i with targets among 0..j,
    # source i with target j (dynamic programming over order-keeping choices).
    gap = np.abs(source[:, None, 0] - target[None, :, 0])
    cost = np.full((m, n), np.inf)
    cost[0] = gap[0]
    for i in range(1, m):
        best_before = np.minimum.accumulate(cost[i - 1])  # best with target < j
        cost[i, 1:] = best_before[:-1] + gap[i, 1:]
    chosen = np.empty(m, dtype=int)
    chosen[-1] = int(np.argmin(cost[-1]))
    for i in range(m - 2, -1, -1):
        chosen[i] = int(np.argmin(cost[i, : chosen[i + 1]]))
    return target[chosen]


def distinct_pairs(source_lab, target_lab, tolerance=0.5):
    """Source/target pairs with repeated source colours made one: (source index, target
    index), each (n,) int, n <= the number of pairs given; first occurrences in order.

    A source colour listed several times with different targets (a palette that repeats a
    layer colour, as older clients send for a layer of few colours) cannot go to all of
    them; averaging the targets gives a colour in none of them. The copy whose target moved
    furthest from the source wins: that is the swatch the user edited. Source colours within
    `tolerance` (LAB distance) count as the same."""
    source = np.asarray(source_lab, dtype=np.float64).reshape(-1, 3)
    target = np.asarray(target_lab, dtype=np.float64).reshape(-1, 3)
    keep, chosen = [], []
    for i in range(len(source)):
        for slot, j in enumerate(keep):
            if np.linalg.norm(source[i] - source[j]) <= tolerance:
                if np.linalg.norm(target[i] - source[i]) > np.linalg.norm(
                    target[chosen[slot]] - source[j]
                ):
                    chosen[slot] = i
                break
        else:
            keep.append(i)
            chosen.append(i)
    return np.array(keep), np.array(chosen)


def to_model_palette(lab, weights=None, paired=None):
    """Any palette of 1..12 LAB colours -> the (6, 3) palette the network takes.

    The colours are sorted dark to light. Fewer than six are repeated (evenly, never
    inventing colours the user did not pick); more than six are reduced by repeatedly
    merging the two closest colours into their weighted mean. The result depends only on
    the set of colours, not on the order the user gave them in.

    `paired`: colours in correspondence with `lab` entry by entry (the targets of a source
    palette); a source colour given more than once keeps one target (distinct_pairs), then
    they are sorted, repeated and merged along with `lab`, and (lab6, paired6) is returned.
    """
    lab = np.asarray(lab, dtype=np.float64).reshape(-1, 3)
    n = len(lab)
    if not 1 <= n <= MAX_PALETTE_COLORS:
        raise PaletteError(f"a palette needs 1 to {MAX_PALETTE_COLORS} colours, got {n}")
    other = lab if paired is None else np.asarray(paired, dtype=np.float64).reshape(-1, 3)
    if len(other) != n:
        raise PaletteError(f"{n} source colours but {len(other)} target colours")
    weights = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    if paired is not None:  # one target per source colour (distinct_pairs)
        keep, chosen = distinct_pairs(lab, other)
        lab, other, weights = lab[keep], other[chosen], weights[keep]
    order = canonical_order(lab)
    lab, other, weights = lab[order], other[order], weights[order]
    while len(lab) > MODEL_PALETTE_SIZE:
        distance = ((lab[:, None] - lab[None]) ** 2).sum(-1)
        distance[np.tril_indices(len(lab))] = np.inf
        i, j = np.unravel_index(np.argmin(distance), distance.shape)
        share = np.array([weights[i], weights[j]]) / (weights[i] + weights[j])
        lab[i], other[i] = share @ lab[[i, j]], share @ other[[i, j]]
        weights[i] += weights[j]
        lab, other, weights = (np.delete(x, j, axis=0) for x in (lab, other, weights))
        order = canonical_order(lab)
        lab, other, weights = lab[order], other[order], weights[order]
    if len(lab) < MODEL_PALETTE_SIZE:
        spread = np.round(np.linspace(0, len(lab) - 1, MODEL_PALETTE_SIZE)).astype(int)
        lab, other = lab[spread], other[spread]
    return lab if paired is None else (lab, other)
