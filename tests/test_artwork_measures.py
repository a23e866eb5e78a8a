"""The artwork measures (training.artwork_measures) on synthetic layers with known answers."""

import numpy as np
import pytest
from skimage.color import deltaE_ciede2000, lab2rgb, rgb2lab

from training.artwork_measures import (
    ColourPairs,
    GradientRegions,
    colour_growth,
    fill_spreads,
    fills_broken,
    gradient_steps,
    ink_excess,
    lightness_kept,
    opaque_mask,
    palette_adherence,
    shadow_slope,
    swatch_miss,
    untouched,
    visible_mask,
)

RED, BLUE, BLACK, WHITE = (200, 30, 40), (30, 60, 200), (0, 0, 0), (255, 255, 255)


def lab_of(rgb8):
    """LAB (3,) of an 8-bit colour, by scikit-image (not the project's own conversion)."""
    return rgb2lab(np.array(rgb8, dtype=np.float64).reshape(1, 1, 3) / 255)[0, 0]


def two_fills(size=20):
    """A layer with a red left half and a blue right half (200 pixels each)."""
    image = np.zeros((size, size, 3), np.uint8)
    image[:, : size // 2] = RED
    image[:, size // 2 :] = BLUE
    return image


def pairs(source, output, where=None):
    return ColourPairs.of(source, output, where)


# --- fills --------------------------------------------------------------------------------
def test_a_flat_fill_made_noisy_is_broken_and_an_untouched_one_is_not():
    layer = two_fills()
    noisy = layer.copy()
    rng = np.random.default_rng(0)
    noise = rng.integers(-8, 9, size=(20, 10, 3))
    noisy[:, :10] = np.clip(noisy[:, :10].astype(int) + noise, 0, 255).astype(np.uint8)
    assert fills_broken(pairs(layer, noisy)) == (1, 2)
    assert fills_broken(pairs(layer, layer)) == (0, 2)


def test_a_fill_recoloured_to_one_other_colour_stays_flat():
    layer = two_fills()
    recoloured = layer.copy()
    recoloured[:, :10] = (20, 180, 90)
    assert fills_broken(pairs(layer, recoloured)) == (0, 2)
    assert fill_spreads(pairs(layer, recoloured)) == pytest.approx([0, 0])


def test_fill_spread_is_the_95th_percentile_against_the_most_common_output():
    layer = np.zeros((10, 20, 3), np.uint8)
    layer[:] = RED  # one fill of 200 pixels
    output = layer.copy()
    off = (215, 30, 40)
    output.reshape(-1, 3)[:9] = off  # 4.5 % off: the 95th percentile is still the fill
    assert fill_spreads(pairs(layer, output)) == pytest.approx([0.0])
    output.reshape(-1, 3)[:11] = off  # 5.5 % off: now it is the off colour's distance
    expected = float(deltaE_ciede2000(lab_of(off), lab_of(RED)))
    assert fill_spreads(pairs(layer, output)) == pytest.approx([expected], abs=1e-6)
    assert expected > 1  # so the fill is broken
    assert fills_broken(pairs(layer, output)) == (1, 1)


def test_a_layer_without_flat_fills_has_none():
    layer = np.arange(64 * 3, dtype=np.uint8).reshape(8, 8, 3)  # 64 colours of one pixel
    assert fills_broken(pairs(layer, layer)) == (0, 0)
    nothing_opaque = np.zeros((8, 8), bool)
    assert fills_broken(pairs(layer, layer, nothing_opaque)) == (0, 0)


def test_small_colours_and_transparent_pixels_are_not_fills():
    layer = two_fills()
    layer[0, :3] = WHITE  # three white pixels: not a fill
    alpha = np.full((20, 20), 255, np.uint8)
    alpha[:, 10:] = 128  # the blue half is half transparent: not opaque
    noisy = layer.copy()
    noisy[0, 0], noisy[5:, 12:] = (250, 250, 250), (90, 90, 90)
    opaque = opaque_mask(alpha, layer.shape)
    assert fills_broken(pairs(layer, noisy, opaque)) == (0, 1)


# --- colour growth ------------------------------------------------------------------------
def test_colour_growth_is_one_for_the_same_picture_and_counts_split_colours():
    layer = two_fills()
    assert colour_growth(pairs(layer, layer)) == 1.0
    split = layer.copy()
    split[0, 0], split[1, 0] = (201, 30, 40), (202, 30, 40)  # the red fill becomes 3 colours
    assert colour_growth(pairs(layer, split)) == pytest.approx(4 / 2)
    merged = np.zeros_like(layer)  # everything black: one colour out of two
    assert colour_growth(pairs(layer, merged)) == pytest.approx(1 / 2)


def test_colour_growth_looks_at_visible_pixels_only():
    layer = two_fills()
    alpha = np.full((20, 20), 255, np.uint8)
    alpha[0, :5] = 0
    output = layer.copy()
    output[0, :5] = [(i, i, i) for i in range(5)]  # hidden pixels that changed
    visible = visible_mask(alpha, layer.shape)
    assert colour_growth(pairs(layer, output, visible)) == 1.0


# --- ink ----------------------------------------------------------------------------------
def ink_layer():
    """Black strokes on white; palette black -> navy, white -> white."""
    layer = np.full((16, 16, 3), 255, np.uint8)
    layer[4:12, 4:12] = BLACK
    source = np.array([lab_of(BLACK), lab_of(WHITE)])
    target = np.array([lab_of((11, 29, 81)), lab_of(WHITE)])  # #0b1d51
    return layer, source, target


def chroma_of(rgb8):
    lab = lab_of(rgb8)
    return float(np.hypot(lab[1], lab[2]))


def test_ink_that_takes_its_target_or_a_duller_colour_has_no_excess():
    layer, source, target = ink_layer()
    for colour in ((11, 29, 81), (20, 20, 30), BLACK):
        output = layer.copy()
        output[4:12, 4:12] = colour
        assert ink_excess(pairs(layer, output), source, target) == pytest.approx(0, abs=0.05)


def test_ink_mapped_more_saturated_than_its_target_gives_the_excess():
    layer, source, target = ink_layer()
    output = layer.copy()
    maroon = (110, 0, 20)
    output[4:12, 4:12] = maroon
    expected = chroma_of(maroon) - chroma_of((11, 29, 81))
    assert expected > 10
    assert ink_excess(pairs(layer, output), source, target) == pytest.approx(expected, abs=0.05)
    output[4:8, 4:12] = (11, 29, 81)  # half the ink right: half the excess
    excess = ink_excess(pairs(layer, output), source, target)
    assert excess == pytest.approx(expected / 2, abs=0.05)


def test_no_ink_no_number():
    layer = two_fills()
    source = np.array([lab_of(RED), lab_of(BLUE)])
    assert np.isnan(ink_excess(pairs(layer, layer), source, source))


# --- palette adherence, untouched, swatch miss --------------------------------------------
def test_palette_adherence_is_the_median_distance_to_the_nearest_target():
    layer = two_fills()
    target = np.array([lab_of(RED), lab_of(BLUE)])
    assert palette_adherence(pairs(layer, layer), target) == pytest.approx(0, abs=1e-6)
    output = layer.copy()
    grey = (128, 128, 128)
    output[:, :12] = grey  # 60 % of the pixels grey
    expected = float(deltaE_ciede2000(lab_of(grey)[None], target).min())
    assert palette_adherence(pairs(layer, output), target) == pytest.approx(expected, abs=1e-6)
    output[:, :8] = RED  # 40 % grey: the median pixel is on the palette
    assert palette_adherence(pairs(layer, output), target) == pytest.approx(0, abs=1e-6)


def test_untouched_is_the_mean_change_of_pixels_of_unchanged_swatches():
    layer = two_fills()
    source = np.array([lab_of(RED), lab_of(BLUE)])
    target = np.array([lab_of((30, 160, 60)), lab_of(BLUE)])  # only red is edited
    output = layer.copy()
    output[:, :10] = (30, 160, 60)
    assert untouched(pairs(layer, output), source, target) == pytest.approx(0, abs=1e-9)
    shifted = (40, 70, 190)
    output[:10, 10:] = shifted  # half the blue pixels moved
    expected = float(deltaE_ciede2000(lab_of(shifted), lab_of(BLUE))) / 2
    assert untouched(pairs(layer, output), source, target) == pytest.approx(expected)
    assert np.isnan(untouched(pairs(layer, output), source, target[::-1]))


def test_swatch_miss_reports_the_worst_swatch_off_its_target():
    """A flat black layer and a three-colour palette: black must land on its own target,
    not on the mean of the three (issue 17's chang2015 failure)."""
    layer = np.zeros((8, 8, 3), np.uint8)
    hexes = [(11, 29, 81), (114, 90, 193), (247, 236, 225)]
    source = np.array([lab_of(BLACK), lab_of((128, 128, 128)), lab_of(WHITE)])
    target = np.array([lab_of(c) for c in hexes])
    right = np.zeros_like(layer) + np.array(hexes[0], np.uint8)
    assert swatch_miss(pairs(layer, right), source, target) == pytest.approx(0, abs=1e-6)
    mean = (127, 113, 165)
    wrong = np.zeros_like(layer) + np.array(mean, np.uint8)
    expected = float(deltaE_ciede2000(lab_of(mean), lab_of(hexes[0])))
    assert swatch_miss(pairs(layer, wrong), source, target) == pytest.approx(expected)


def test_swatch_miss_counts_the_pixels_of_the_swatchs_own_8_bit_colour_only():
    """A grey ramp whose middle level is the swatch: the swatch's pixels land on the target,
    the neighbouring levels (0.3 to 0.5 dE away) are moved apart by the edit. Only the
    swatch's own colour counts, also when the swatch is given as an unrounded mean."""
    levels = np.arange(120, 137, dtype=np.uint8)  # one grey level per column
    layer = np.repeat(np.repeat(levels[None, :, None], 4, axis=0), 3, axis=2)
    target = (180, 40, 60)
    output = np.zeros_like(layer)
    output[:, :, 0] = np.clip(180 + 12 * (levels.astype(int) - 128), 0, 255)[None]
    output[:, :, 1:] = (40, 60)
    assert tuple(output[0, 8]) == target and levels[8] == 128
    swatch = lab_of((128, 128, 128))
    for level in (127, 129):  # a ball of 0.5 dE took these in: a miss of 2.6 dE
        assert deltaE_ciede2000(swatch, lab_of((level,) * 3)) < 0.5
    assert swatch_miss(pairs(layer, output), swatch[None], lab_of(target)[None]) == 0
    mean = lab_of((128.4, 128.4, 128.4))  # a palette's mean colour: rounds to the level 128
    assert swatch_miss(pairs(layer, output), mean[None], lab_of(target)[None]) == 0


# --- lightness ----------------------------------------------------------------------------
def grey_ramp(lightness_of):
    """Input: 101 grey columns of L* 0..100 (8 rows); output: L* mapped by lightness_of."""
    lightness = np.repeat(np.linspace(0, 100, 101)[None, :], 8, axis=0)

    def grey(values):
        lab = np.stack([values, np.zeros_like(values), np.zeros_like(values)], -1)
        return np.round(lab2rgb(lab) * 255).astype(np.uint8)

    return grey(lightness), grey(np.clip(lightness_of(lightness), 0, 100))


def test_lightness_kept_is_the_mean_lightness_change():
    layer, output = grey_ramp(lambda L: L + 5)
    assert lightness_kept(pairs(layer, layer)) == 0
    # 90 columns move by 5, the 6 top ones by less (clipped at 100); 8-bit rounding on top
    expected = np.mean(np.minimum(np.linspace(0, 100, 101) + 5, 100) - np.linspace(0, 100, 101))
    assert lightness_kept(pairs(layer, output)) == pytest.approx(expected, abs=0.3)


def test_shadow_slope_is_one_for_identity_and_finds_a_steep_shadow_curve():
    layer, _ = grey_ramp(lambda L: L)
    assert shadow_slope(pairs(layer, layer)) == pytest.approx(1.0)
    layer, steep = grey_ramp(lambda L: np.where(L < 12, 3 * L, 36 + (L - 12) * 64 / 88))
    assert shadow_slope(pairs(layer, steep)) == pytest.approx(3.0, abs=0.35)
    # a steep curve outside the darkest 10 % is not counted
    layer, bright = grey_ramp(lambda L: np.where(L > 60, 60 + 2 * (L - 60), L))
    assert shadow_slope(pairs(layer, bright)) == pytest.approx(1.0, abs=0.2)


# --- gradients ----------------------------------------------------------------------------
def blue_ramp(width=200, height=40):
    """A smooth horizontal gradient from dark to light blue (steps well under 2 dE)."""
    lab = np.zeros((height, width, 3))
    lab[..., 0] = np.linspace(30, 80, width)[None, :]
    lab[..., 2] = -40
    return np.round(lab2rgb(lab) * 255).astype(np.uint8)


def test_a_gradient_kept_has_steps_one_and_a_banded_one_more():
    layer = blue_ramp()
    regions = GradientRegions.find(layer)
    assert regions.count == 1
    assert gradient_steps(regions, layer) == pytest.approx(1.0)
    banded = layer.copy()
    for start in range(0, 200, 25):  # eight flat bands
        banded[:, start : start + 25] = layer[:, start + 12][:, None]
    ratio = gradient_steps(regions, banded)
    assert ratio > 3


def test_a_gradient_with_twice_the_contrast_has_steps_about_two():
    layer = blue_ramp()
    lab = rgb2lab(layer / 255)
    lab[..., 0] = 55 + 2 * (lab[..., 0] - 55)
    lab[..., 0] = np.clip(lab[..., 0], 0, 100)
    steeper = np.round(lab2rgb(lab) * 255).astype(np.uint8)
    ratio = gradient_steps(GradientRegions.find(layer[:, 50:150]), steeper[:, 50:150])
    assert 1.6 < ratio < 2.5


def test_flat_fills_and_hard_edges_are_not_gradients():
    regions = GradientRegions.find(two_fills(40))
    assert regions.count == 0
    assert np.isnan(gradient_steps(regions, two_fills(40)))


def test_transparent_pixels_are_left_out_of_gradients():
    layer = blue_ramp()
    opaque = np.ones(layer.shape[:2], bool)
    opaque[:, 100:] = False
    regions = GradientRegions.find(layer, opaque)
    assert regions.count == 1
    assert not regions.labels[:, 100:].any()
    output = layer.copy()
    output[:, 100:] = np.random.default_rng(1).integers(0, 256, (40, 100, 3))
    assert gradient_steps(regions, output) == pytest.approx(1.0)


def test_fill_spreads_agree_with_a_per_pixel_computation():
    """Random fills and outputs: the pooled computation equals numpy's percentile per fill."""
    rng = np.random.default_rng(3)
    layer = rng.choice([0, 60, 120, 180], size=(60, 60, 1)).repeat(3, axis=2).astype(np.uint8)
    output = np.clip(layer + rng.integers(0, 3, size=layer.shape) * 4, 0, 255).astype(np.uint8)
    expected = []
    for value in np.unique(layer[..., 0]):
        out = output[layer[..., 0] == value]
        codes, counts = np.unique(out, axis=0, return_counts=True)
        mode = codes[counts.argmax()]
        distance = deltaE_ciede2000(rgb2lab(out[None] / 255)[0], rgb2lab(mode[None, None] / 255)[0])
        expected.append(np.percentile(distance, 95, method="inverted_cdf"))
    assert fill_spreads(pairs(layer, output)) == pytest.approx(expected, abs=1e-3)
