"""Full-resolution pixel work (backend.core.pixels): band decoding, writing, colour tables."""

import numpy as np
import pytest

import backend.core.pixels as pixels
from backend.core.chang2015 import apply_lattice, build_lattice
from backend.core.color import rgb_to_lab_np
from backend.core.pixels import FORMATS, Layer
from backend.service.protocol import parse_palette

PALETTE = rgb_to_lab_np(parse_palette(["#0b1d51", "#725ac1", "#cac4ce", "#f7ece1", "#e0b1cb"]))
LATTICE = build_lattice(PALETTE, PALETTE[[1, 2, 0, 4, 3]])


def noisy_rgba(height=300, width=500, noise=20.0, seed=0) -> np.ndarray:
    """RGBA8 with smooth colour, noise, a fully transparent block and a faint one."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x / width, y / height, (x + y) / (width + height)], -1) * 200
    rgb = np.clip(rgb + rng.normal(0, noise, rgb.shape), 0, 255).astype(np.uint8)
    alpha = np.full((height, width), 255, np.uint8)
    alpha[20:60, 30:90] = 0
    alpha[100:110, :] = 3
    return np.dstack([rgb, alpha])


def by_lattice(rgb1, top):
    return apply_lattice(rgb1[..., :3], LATTICE)


@pytest.mark.parametrize("name", list(FORMATS))
def test_rgb1_is_rgb_with_a_constant_one(name):
    fmt = FORMATS[name]
    rng = np.random.default_rng(1)
    if fmt.is_float:
        values = rng.random((7, 9, fmt.channels)).astype(fmt.dtype)
    else:
        values = rng.integers(0, int(fmt.maximum) + 1, (7, 9, fmt.channels)).astype(fmt.dtype)
    layer = Layer(values, fmt)
    rgb1 = layer.rgb1(2, 6)
    np.testing.assert_allclose(rgb1[..., :3], layer.rgb(2, 6), atol=1e-6)
    assert (rgb1[..., 3] == 1).all()


@pytest.mark.parametrize("name", ["RGBA8", "BGRA8", "RGBA16", "RGBAF32_LINEAR"])
def test_recolor_into_writes_every_pixel_and_keeps_what_it_must(name):
    fmt = FORMATS[name]
    rgba8 = noisy_rgba()
    values = rgba8[..., [2, 1, 0, 3]] if fmt.rgb == (2, 1, 0) else rgba8
    if fmt.dtype != np.uint8:
        values = (
            (values / 255).astype(fmt.dtype) if fmt.is_float else values.astype(fmt.dtype) * 257
        )
    mask = np.full(values.shape[:2], 255, np.uint8)
    mask[:, :100] = 0  # unselected
    mask[:, 100:120] = 128  # half
    layer = Layer(np.ascontiguousarray(values), fmt, mask)
    out = np.full_like(layer.pixels, 77)  # what out held before must not matter
    layer.recolor_into(out, by_lattice)
    alpha = fmt.alpha
    np.testing.assert_array_equal(out[..., alpha], layer.pixels[..., alpha])
    kept = (mask == 0) | (rgba8[..., 3] == 0)
    np.testing.assert_array_equal(out[kept], layer.pixels[kept])
    changed = (mask == 255) & (rgba8[..., 3] > 0)
    assert (out[changed][:, list(fmt.rgb)] != layer.pixels[changed][:, list(fmt.rgb)]).any()


@pytest.mark.parametrize("name", ["RGBA8", "BGRA8"])
def test_the_colour_table_gives_what_mapping_every_pixel_gives(name, monkeypatch):
    monkeypatch.setattr(pixels, "COLOUR_TABLE_MIN_PIXELS", 1)
    rgba8 = noisy_rgba()
    rgba8[..., :3] &= 0xF8  # fewer distinct colours than half the pixels, as in photos
    rgba8[200:260, 300:400, :3] = (40, 160, 90)  # a flat fill
    values = np.ascontiguousarray(rgba8[..., [2, 1, 0, 3]] if name == "BGRA8" else rgba8)
    layer = Layer(values, FORMATS[name])
    every_pixel, table = np.empty_like(values), np.full_like(values, 9)
    layer.recolor_into(every_pixel, by_lattice)
    assert layer.map_colours(table, lambda rgb: apply_lattice(rgb, LATTICE))
    np.testing.assert_array_equal(table, every_pixel)
    fill = table[200:260, 300:400].reshape(-1, 4)
    assert len(np.unique(fill, axis=0)) == 1  # a flat fill stays flat
    hidden = rgba8[..., 3] == 0
    np.testing.assert_array_equal(table[hidden], values[hidden])


def test_the_colour_table_declines_what_it_cannot_do(monkeypatch):
    monkeypatch.setattr(pixels, "COLOUR_TABLE_MIN_PIXELS", 1)
    rgba8 = noisy_rgba(40, 50)
    out = np.zeros_like(rgba8)
    mask = np.full((40, 50), 255, np.uint8)
    assert not Layer(rgba8, FORMATS["RGBA8"], mask).map_colours(out, lambda rgb: rgb)
    assert not Layer(rgba8, FORMATS["RGBA8_LINEAR"]).map_colours(out, lambda rgb: rgb)
    assert not Layer(rgba8[..., :3].copy(), FORMATS["RGB8"]).map_colours(out, lambda rgb: rgb)
    assert not out.any()  # nothing written


def test_bands_still_run_in_a_forked_child():
    """Training's data workers are forked: the band pool must work there too."""
    import multiprocessing

    pixels.on_all_cores(lambda top, bottom: None, 8, 8, 16)  # the parent's threads started
    context = multiprocessing.get_context("fork")
    with context.Pool(1) as pool:
        result = pool.apply_async(pixels.on_all_cores, (_band_sum, 64, 100, 1000))
        assert result.get(timeout=60) == [_band_sum(top, bottom) for top, bottom in
                                          pixels.bands(64, 100, 1000)]  # fmt: skip


def _band_sum(top, bottom):
    return top + bottom


@pytest.mark.parametrize("name", ["RGBA8", "BGRA8", "RGB8", "RGBA16", "RGBAF32"])
def test_codes8_are_the_8_bit_rounding_of_the_layers_colours(name):
    from backend.core.color import to_uint8

    fmt = FORMATS[name]
    rng = np.random.default_rng(5)
    values = rng.integers(0, int(fmt.maximum) + 1, (256, 3, fmt.channels))
    values[:, 0, :] = np.arange(256)[:, None] * (int(fmt.maximum) // 255)  # every level
    pixels = values.astype(fmt.dtype) if not fmt.is_float else rng.random((256, 3, 4))
    layer = Layer(np.ascontiguousarray(pixels.astype(fmt.dtype)), fmt)
    codes = layer.codes8(10, 200)
    if fmt.dtype != np.uint8:
        assert codes is None  # only 8-bit sRGB layers have them without rounding
        return
    rgb8 = to_uint8(layer.rgb(10, 200)).astype(np.uint32)
    assert np.array_equal(codes, (rgb8[..., 0] << 16) | (rgb8[..., 1] << 8) | rgb8[..., 2])


def test_the_palette_sample_is_what_palette_statistics_count():
    from backend.core.palette import HISTOGRAM_SAMPLE, distinct_colours

    rng = np.random.default_rng(6)
    pixels = rng.integers(0, 256, (1500, 1500, 4), dtype=np.uint8)  # above HISTOGRAM_SAMPLE
    pixels[..., 3] = 255
    pixels[::3, :, 3] = 0
    mask = rng.integers(0, 256, (1500, 1500), dtype=np.uint8)
    layer = Layer(pixels, FORMATS["RGBA8"], mask)
    rgb8, weight = layer.palette_sample()
    assert len(rgb8) <= HISTOGRAM_SAMPLE
    whole = distinct_colours(layer.rgb8(), layer.palette_weight())
    sample = distinct_colours(rgb8, weight)
    assert all(np.array_equal(a, b) for a, b in zip(whole, sample))
