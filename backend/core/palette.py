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


def colour_histogram(rgb8: np.ndarray, weight: np.ndarray | None = None):
    """uint8 RGB pixels -> (mean LAB colour, weight) of each non-empty histogram bin.

    `weight` (H, W), optional: how much each pixel counts, e.g. its alpha (0..1) times its
    selection; any non-negative scale. A pixel at alpha 2/255 counts 2/255 of an opaque one,
    a fully transparent one (weight 0) not at all; each bin's colour is its pixels' weighted
    mean. Without it every pixel counts once. Above HISTOGRAM_SAMPLE pixels an evenly
    strided sample is counted instead: the palette of a 24-megapixel layer does not change,
    and extraction stays well under a second.
    """
    pixels = rgb8.reshape(-1, 3)
    stride = max(1, -(-len(pixels) // HISTOGRAM_SAMPLE))
    pixels = pixels[::stride]
    if weight is not None:
        weight = weight.reshape(-1)[::stride]
        seen = weight > 0
        pixels, weight = pixels[seen], weight[seen].astype(np.float64)
    shift = 8 - int(np.log2(HISTOGRAM_BINS))
    bits = int(np.log2(HISTOGRAM_BINS))
    quantised = pixels >> shift
    index = (
        (quantised[:, 0].astype(np.uint16) << (2 * bits))
        | (quantised[:, 1].astype(np.uint16) << bits)
        | quantised[:, 2]
    )
    nbins = HISTOGRAM_BINS**3
    counts = np.bincount(index, weights=weight, minlength=nbins)
    values = pixels if weight is None else pixels * weight[:, None]
    sums = np.stack(
        [np.bincount(index, weights=values[:, c], minlength=nbins) for c in range(3)], axis=1
    )
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


def extract_palette(rgb8: np.ndarray, k: int = MODEL_PALETTE_SIZE, weight=None, black_anchor=False):
    """Dominant colours of a uint8 RGB image (H, W, 3), each pixel counted by `weight`
    (see colour_histogram; None: every pixel once).

    Returns (LAB colours (k, 3) sorted by lightness, share of each, summing to 1).
    Images with fewer distinct colours than k give repeated colours, so the shape is fixed.
    """
    if not 1 <= k <= MAX_PALETTE_COLORS:
        raise PaletteError(f"k must be between 1 and {MAX_PALETTE_COLORS}, got {k}")
    bins, counts = colour_histogram(rgb8, weight)
    if len(bins) == 0:
        raise PaletteError("the image has no visible pixels to take a palette from")
    fixed = np.array([[0.0, 0.0, 0.0]]) if black_anchor else None
    centres, shares = weighted_kmeans(bins, counts, k, fixed=fixed)
    if len(centres) < k:  # fewer bins than colours asked for
        repeat = np.resize(np.arange(len(centres)), k)
        centres, shares = centres[repeat], shares[repeat] / np.bincount(repeat)[repeat]
    shares = shares / max(shares.sum(), 1e-12)
    order = canonical_order(centres)
    return centres[order], shares[order]


# --- the model's six-colour form ---------------------------------------------------------
def canonical_order(lab) -> np.ndarray:
    """Dark to light; ties broken by a then b, so any permutation sorts the same way."""
    lab = np.asarray(lab)
    return np.lexsort((lab[:, 2], lab[:, 1], lab[:, 0]))


def pair_with_image(target_lab, rgb8: np.ndarray, weight=None):
    """A palette given without the colours it replaces -> (target, source): the image's own
    palette of as many colours (what the `palette` op gives, dark to light, each pixel
    counted by `weight`) and the target in the same canonical order, so the colours pair by
    lightness rank."""
    target = np.asarray(target_lab, dtype=np.float64).reshape(-1, 3)
    source, _ = extract_palette(rgb8, len(target), weight=weight)
    return target[canonical_order(target)], source


def to_model_palette(lab, weights=None, paired=None):
    """Any palette of 1..12 LAB colours -> the (6, 3) palette the network takes.

    The colours are sorted dark to light. Fewer than six are repeated (evenly, never
    inventing colours the user did not pick); more than six are reduced by repeatedly
    merging the two closest colours into their weighted mean. The result depends only on
    the set of colours, not on the order the user gave them in.

    `paired`: colours in correspondence with `lab` entry by entry (the targets of a source
    palette); they are sorted, repeated and merged along with `lab`, and (lab6, paired6) is
    returned.
    """
    lab = np.asarray(lab, dtype=np.float64).reshape(-1, 3)
    n = len(lab)
    if not 1 <= n <= MAX_PALETTE_COLORS:
        raise PaletteError(f"a palette needs 1 to {MAX_PALETTE_COLORS} colours, got {n}")
    other = lab if paired is None else np.asarray(paired, dtype=np.float64).reshape(-1, 3)
    if len(other) != n:
        raise PaletteError(f"{n} source colours but {len(other)} target colours")
    weights = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
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
