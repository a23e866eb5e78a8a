"""Counting the distinct 8-bit colours of many pixels on every core, without sorting them.

palette.distinct_colours counts the colours of up to two million sampled pixels for every
palette a layer is asked for. Sorting their 24-bit codes (np.sort) takes about 0.1 s on one
core; a 2^24-entry bincount is no faster (its 128 MB table costs as much in page faults).
Here the pixels are first grouped by their red byte (a stable counting sort: each core takes
a part of the pixels), then each core counts the green-blue halves of its reds in a table of
2^16 entries that stays in its cache, and reads the colours seen off that table in order. A
red with few pixels is sorted instead of scanning the whole table.

The answer is exactly np.unique's: the distinct codes ascending and how many pixels hold each,
or with weights their sum, added in the pixels' order as np.bincount adds them (so the same
float64 sums to the last bit). histogram_sums does the same for palette.colour_histogram's
coarse bins, in one pass.
"""

import os

import numba
import numpy as np

from backend.core.pixels import on_all_cores

PARALLEL_MIN = 1 << 16  # fewer pixels are counted in the calling thread alone
TABLE_MIN = 1 << 11  # a red with this many pixels is counted in the table, fewer are sorted
_GREEN_BLUE = 1 << 16


def count_colours(rgb: np.ndarray, weight: np.ndarray | None = None):
    """The distinct colours of uint8 RGB pixels (n, 3) (any strides) and their counts.

    weight (n,), optional: how much each pixel counts (non-negative). Returns (codes uint32
    (m,) 0xRRGGBB ascending, float64 (m,) the number of pixels of each, or the sum of their
    weights). With weights, colours whose weights sum to zero are left out. Not to be called
    from inside pixels.on_all_cores work (it uses those workers)."""
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 2 or rgb.shape[1] != 3:
        raise ValueError(f"expected uint8 RGB (n, 3), got {rgb.dtype} {rgb.shape}")
    count = len(rgb)
    weighted = weight is not None
    if weighted:
        weight = np.asarray(weight).reshape(-1)
        if len(weight) != count:
            raise ValueError(f"{len(weight)} weights for {count} pixels")
    else:
        weight = np.zeros(1, np.float32)  # not read
    parts = 1 if count < PARALLEL_MIN else min(8, os.cpu_count() or 1)
    edges = np.linspace(0, count, parts + 1).astype(np.int64)

    def each_part(work):  # work(part) in parallel, one part per core
        if parts == 1:
            return [work(0)]
        return on_all_cores(lambda top, bottom: work(top), parts, 1, 1)

    # 1. How many pixels of each red in each part, so each part knows where its pixels go.
    reds = np.stack(each_part(lambda p: _red_histogram(rgb, edges[p], edges[p + 1])))
    ends = np.cumsum(reds.T.ravel()).reshape(256, parts)  # red-major: a red's parts in order
    starts = (ends - reds.T).T.copy()  # (parts, 256): each part's first slot for each red
    bucket = np.concatenate([[0], ends[:, -1]])  # red r's pixels: bucket[r]..bucket[r + 1]
    # 2. Each pixel's green-blue half (and weight) into its red's slots, in pixel order.
    green_blue = np.empty(count, np.uint16)
    sorted_weight = np.empty(count if weighted else 1, np.float64)

    def scatter(p):
        _scatter(rgb, weight, weighted, edges[p], edges[p + 1], starts[p], green_blue,
                 sorted_weight)  # fmt: skip

    each_part(scatter)
    # 3. Each part counts a run of reds holding about an equal share of the work.
    sizes = np.diff(bucket)
    work = np.where(sizes >= TABLE_MIN, sizes + _GREEN_BLUE // 8, sizes)
    cut = np.searchsorted(np.cumsum(work), np.linspace(0, work.sum(), parts + 1)[1:-1])
    red_edges = np.concatenate([[0], cut + 1, [256]]).clip(0, 256)
    codes = np.empty(count, np.uint32)
    counts = np.empty(count, np.float64)
    found = np.zeros(256, np.int64)

    def tally(p):
        _count_reds(green_blue, sorted_weight, weighted, bucket, red_edges[p],
                    red_edges[p + 1], codes, counts, found)  # fmt: skip

    each_part(tally)
    total = _close_gaps(bucket, found, codes, counts)
    return codes[:total].copy(), counts[:total].copy()  # copies: the rest is let go


@numba.njit(nogil=True, cache=True)
def _red_histogram(rgb, start, stop):
    """How many of the pixels start..stop have each red value (256,)."""
    histogram = np.zeros(256, np.int64)
    for i in range(start, stop):
        histogram[rgb[i, 0]] += 1
    return histogram


@numba.njit(nogil=True, cache=True)
def _scatter(rgb, weight, weighted, start, stop, slots, green_blue, sorted_weight):
    """Pixels start..stop: green << 8 | blue (and the weight) into the next slot of the red,
    slots (256,) the part's first slot per red, in pixel order (a stable counting sort)."""
    slots = slots.copy()
    for i in range(start, stop):
        red = rgb[i, 0]
        slot = slots[red]
        slots[red] = slot + 1
        green_blue[slot] = (np.uint16(rgb[i, 1]) << 8) | np.uint16(rgb[i, 2])
        if weighted:
            sorted_weight[slot] = np.float64(weight[i])


@numba.njit(nogil=True, cache=True)
def _count_reds(green_blue, sorted_weight, weighted, bucket, first_red, last_red, codes,
                counts, found):  # fmt: skip
    """Reds first_red..last_red - 1: their distinct colours into codes and counts, from
    bucket[r] on, ascending, found[r] of them."""
    table = np.zeros(1 << 16, np.float64)
    for red in range(first_red, last_red):
        start, stop = bucket[red], bucket[red + 1]
        high = np.uint32(red) << 16
        written = start
        if stop - start >= TABLE_MIN:  # count in the table, read it off in order
            for i in range(start, stop):
                table[green_blue[i]] += sorted_weight[i] if weighted else 1.0
            for value in range(1 << 16):
                if table[value] != 0.0:
                    codes[written] = high | np.uint32(value)
                    counts[written] = table[value]
                    written += 1
                    table[value] = 0.0
        elif stop > start:  # a few pixels: sorted (stably, so weights add in pixel order)
            order = np.argsort(green_blue[start:stop], kind="mergesort")
            previous = -1
            for index in order:
                value = np.int64(green_blue[start + index])
                add = sorted_weight[start + index] if weighted else 1.0
                if value != previous:
                    codes[written] = high | np.uint32(value)
                    counts[written] = 0.0
                    written += 1
                    previous = value
                counts[written - 1] += add
            if weighted:  # as the table: colours of zero total weight are left out
                kept = start
                for i in range(start, written):
                    if counts[i] != 0.0:
                        codes[kept], counts[kept] = codes[i], counts[i]
                        kept += 1
                written = kept
        found[red] = written - start


@numba.njit(nogil=True, cache=True)
def _close_gaps(bucket, found, codes, counts):
    """Move each red's found[r] colours (from bucket[r] on) down to follow the previous
    red's, in place; returns how many there are in all."""
    total = 0
    for red in range(256):
        for i in range(bucket[red], bucket[red] + found[red]):
            codes[total], counts[total] = codes[i], counts[i]
            total += 1
    return total


def histogram_sums(rgb: np.ndarray, weight: np.ndarray | None, bits: int):
    """Pixels into 2^(3 * bits) bins by the top `bits` bits of each channel (red highest):
    rgb uint8 (n, 3), weight (n,) or None (each pixel counts 1). Returns (float64 (bins,)
    the weight in each bin, float64 (bins, 3) the sum of weight times R, G, B in 0..255).
    Pixels of weight 0 or less are left out. The sums are np.bincount's (each pixel's
    weight, and each channel times that weight, added in pixel order)."""
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 2 or rgb.shape[1] != 3:
        raise ValueError(f"expected uint8 RGB (n, 3), got {rgb.dtype} {rgb.shape}")
    if weight is None:
        return _histogram_sums(rgb, np.zeros(1), False, bits)
    weight = np.asarray(weight).reshape(-1)
    if len(weight) != len(rgb):
        raise ValueError(f"{len(weight)} weights for {len(rgb)} pixels")
    return _histogram_sums(rgb, weight, True, bits)


@numba.njit(nogil=True, cache=True)
def _histogram_sums(rgb, weight, weighted, bits):
    shift = 8 - bits
    counts = np.zeros(1 << (3 * bits))
    sums = np.zeros((1 << (3 * bits), 3))
    for i in range(len(rgb)):
        red, green, blue = rgb[i, 0], rgb[i, 1], rgb[i, 2]
        index = ((np.int64(red >> shift) << (2 * bits)) | (np.int64(green >> shift) << bits)
                 | np.int64(blue >> shift))  # fmt: skip
        if weighted:
            share = np.float64(weight[i])
            if not share > 0:
                continue
            counts[index] += share
            sums[index, 0] += np.float64(red) * share
            sums[index, 1] += np.float64(green) * share
            sums[index, 2] += np.float64(blue) * share
        else:
            counts[index] += 1.0
            sums[index, 0] += np.float64(red)
            sums[index, 1] += np.float64(green)
            sums[index, 2] += np.float64(blue)
    return counts, sums
