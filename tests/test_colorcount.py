"""colorcount.count_colours gives np.unique's answer: every distinct colour once, ascending,
with its pixel count, or its weights summed in pixel order (np.bincount's sums, bit for bit)."""

import numpy as np
import pytest

from backend.core import colorcount
from backend.core.colorcount import count_colours


def by_numpy(rgb: np.ndarray, weight=None):
    codes = (rgb[:, 0].astype(np.uint32) << 16) | (rgb[:, 1].astype(np.uint32) << 8) | rgb[:, 2]
    keys, inverse, counts = np.unique(codes, return_inverse=True, return_counts=True)
    if weight is None:
        return keys, counts.astype(np.float64)
    sums = np.bincount(inverse.ravel(), weight, len(keys))
    return keys[sums != 0], sums[sums != 0]


def pixels(kind: str, count: int, rng) -> np.ndarray:
    if kind == "noise":  # many reds with few pixels each: the sorting branch
        return rng.integers(0, 256, (count, 3), dtype=np.uint8)
    if kind == "photo":  # reds with thousands of pixels: the table branch
        return np.clip(rng.normal(120, 25, (count, 3)), 0, 255).astype(np.uint8)
    return (rng.integers(0, 3, (count, 3)) * 127).astype(np.uint8)  # a few fills


@pytest.mark.parametrize("kind", ["noise", "photo", "fills"])
@pytest.mark.parametrize("count", [1, 7, 5_000, 300_000])
def test_counts_and_weighted_sums_equal_numpy(kind, count):
    rng = np.random.default_rng(count)
    rgb = pixels(kind, count, rng)
    keys, counts = count_colours(rgb)
    expected_keys, expected_counts = by_numpy(rgb)
    assert keys.dtype == np.uint32
    np.testing.assert_array_equal(keys, expected_keys)
    np.testing.assert_array_equal(counts, expected_counts)
    # alpha-like weights, a third of the pixels not seen at all
    weight = (rng.random(count) * (rng.random(count) > 0.3)).astype(np.float32)
    keys, sums = count_colours(rgb, weight)
    expected_keys, expected_sums = by_numpy(rgb, weight)
    np.testing.assert_array_equal(keys, expected_keys)
    assert sums.tobytes() == expected_sums.tobytes()  # the same additions in the same order


def test_strided_view_one_core_and_all_cores_agree(monkeypatch):
    rng = np.random.default_rng(3)
    rgba = np.clip(rng.normal(100, 40, (200_000, 1, 4)), 0, 255).astype(np.uint8)
    view = rgba.reshape(-1, 4)[:, :3]  # as palette_sample gives them: every 4th byte skipped
    on_all = count_colours(view)
    monkeypatch.setattr(colorcount, "PARALLEL_MIN", len(view) + 1)
    alone = count_colours(view)
    for got, want in zip(on_all, alone):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(on_all[0], by_numpy(np.ascontiguousarray(view))[0])


def test_nothing_and_bad_input():
    keys, counts = count_colours(np.zeros((0, 3), np.uint8))
    assert len(keys) == len(counts) == 0
    with pytest.raises(ValueError, match="uint8 RGB"):
        count_colours(np.zeros((4, 3), np.float32))
    with pytest.raises(ValueError, match="3 weights for 4 pixels"):
        count_colours(np.zeros((4, 3), np.uint8), np.ones(3))


@pytest.mark.parametrize("weighted", [False, True])
def test_histogram_sums_are_bincounts_in_pixel_order(weighted):
    rng = np.random.default_rng(7)
    rgb = rng.integers(0, 256, (50_000, 3), dtype=np.uint8)
    weight = (rng.random(len(rgb)) * (rng.random(len(rgb)) > 0.2)) if weighted else None
    counts, sums = colorcount.histogram_sums(rgb, weight, 4)
    index = (
        ((rgb[:, 0] >> 4).astype(int) << 8) | ((rgb[:, 1] >> 4).astype(int) << 4) | (rgb[:, 2] >> 4)
    )
    counted = np.ones(len(rgb)) if weight is None else weight
    assert counts.tobytes() == np.bincount(index, counted, 4096).tobytes()
    for channel in range(3):
        expected = np.bincount(index, rgb[:, channel] * counted, 4096)
        assert sums[:, channel].tobytes() == expected.tobytes()
