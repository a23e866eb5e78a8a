import itertools
import time

import numpy as np
import pytest

from backend.core.color import lab_to_rgb_np, rgb_to_lab_np
from backend.core.palette import (
    PaletteError,
    distinct_colours,
    distinct_pairs,
    extract_palette,
    fill_colours,
    is_flat_art_counted,
    pair_by_lightness,
    pair_with_image,
    to_hex,
    to_model_palette,
)
from backend.service.protocol import ProtocolError, parse_hex, parse_palette

KNOWN = np.array(
    [[200, 30, 40], [20, 160, 60], [30, 40, 200], [240, 230, 210], [40, 30, 20], [250, 180, 0]],
    dtype=np.uint8,
)


def patch_image(colours, shares, size=120, noise=0.0, seed=0):
    """Stripes of the given colours with the given pixel shares (plus optional noise)."""
    counts = np.round(np.array(shares) / sum(shares) * size * size).astype(int)
    pixels = np.repeat(np.asarray(colours, dtype=np.float64), counts, axis=0)
    pixels = np.resize(pixels, (size * size, 3))
    pixels += np.random.default_rng(seed).normal(0, noise, pixels.shape)
    return np.clip(pixels, 0, 255).round().astype(np.uint8).reshape(size, size, 3)


def test_hex_forms_and_errors_name_the_entry():
    assert np.allclose(parse_hex("#FFF"), [1, 1, 1])
    assert np.allclose(parse_hex("#ff8000"), [1, 128 / 255, 0])
    assert to_hex(parse_hex("#aB12cD")) == "#ab12cd"
    for bad in ["#ff", "#gggggg", "red", "#12345", "", "#1234567"]:
        with pytest.raises(ProtocolError):
            parse_hex(bad)
    with pytest.raises(ProtocolError, match="entry 2.*#zz0000"):
        parse_palette(["#000", "#zz0000"])
    with pytest.raises(ProtocolError, match="1 to 12"):
        parse_palette([])
    with pytest.raises(ProtocolError, match="1 to 12"):
        parse_palette(["#000"] * 13)
    assert parse_palette("#000, #fff").shape == (2, 3)


def test_extraction_finds_known_colours_and_shares():
    shares = [0.3, 0.2, 0.15, 0.15, 0.1, 0.1]
    palette, found_shares = extract_palette(patch_image(KNOWN, shares, noise=2.0))
    truth = rgb_to_lab_np(KNOWN / 255)
    # every known colour is found, within a few delta E
    distance = np.linalg.norm(palette[:, None] - truth[None], axis=-1)
    assert distance.min(axis=0).max() < 3
    # shares come back with the colours they belong to
    nearest = distance.argmin(axis=0)
    assert np.allclose(found_shares[nearest], shares, atol=0.02)
    assert np.all(np.diff(palette[:, 0]) >= 0)  # dark to light


def test_extraction_ignores_transparent_pixels_and_is_deterministic():
    image = patch_image(KNOWN[:2], [0.5, 0.5])
    alpha = np.full(image.shape[:2], 255, np.uint8)
    alpha[: image.shape[0] // 2] = 0  # hide the first colour entirely
    palette, _ = extract_palette(image, k=1, weight=alpha)
    visible = image[image.shape[0] // 2 :].reshape(-1, 3)[0]
    assert np.linalg.norm(palette[0] - rgb_to_lab_np(visible / 255)) < 2
    first = extract_palette(patch_image(KNOWN, [1] * 6, noise=5))
    again = extract_palette(patch_image(KNOWN, [1] * 6, noise=5))
    assert np.array_equal(first[0], again[0])


def test_extraction_of_a_flat_image_gives_its_one_colour_not_copies():
    palette, shares = extract_palette(np.full((10, 10, 3), 90, np.uint8), k=6)
    assert palette.shape == (1, 3) and np.allclose(shares, [1])
    assert np.allclose(lab_to_rgb_np(palette) * 255, 90, atol=1e-6)


def test_extraction_of_few_colours_gives_exactly_those_colours():
    """Black text on white asked for six colours: black and white, at their exact values."""
    image = np.full((40, 40, 3), 255, np.uint8)
    image[10:14, 5:35] = 0
    palette, shares = extract_palette(image, k=6)
    assert np.allclose(lab_to_rgb_np(palette) * 255, [[0, 0, 0], [255, 255, 255]], atol=1e-6)
    assert np.allclose(shares, [120 / 1600, 1480 / 1600])


def test_extraction_of_flat_art_gives_the_exact_fill_colours():
    """Three flat fills with anti-aliased edges (ramps between them): each swatch is the
    fill's own colour, not a mean dragged off it by the edge pixels."""
    fills = np.array([[200, 40, 40], [30, 90, 200], [240, 220, 120]], np.uint8)
    row = np.concatenate(
        [np.repeat(fills[:1], 30, 0), np.linspace(fills[0], fills[1], 6)[1:-1].round(),
         np.repeat(fills[1:2], 30, 0), np.linspace(fills[1], fills[2], 6)[1:-1].round(),
         np.repeat(fills[2:], 30, 0)]
    ).astype(np.uint8)  # fmt: skip
    image = np.broadcast_to(row, (20, *row.shape)).copy()
    palette, _ = extract_palette(image, k=3)
    found = np.round(lab_to_rgb_np(palette) * 255)
    assert sorted(map(tuple, found)) == sorted(map(tuple, fills.astype(float)))


def anti_aliased_line_art(size=200):
    """Black circles on white, anti-aliased: a thin core of pure black in each stroke with
    grey edges of many levels (the ink is under half of the dark pixels' weight)."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    radius = np.hypot(y - size / 2, x - size / 2)
    distance = np.abs(radius[..., None] - np.arange(10, size / 2, 12)).min(-1)
    ink = np.clip(1.3 - distance, 0, 1)  # coverage of a 1.6 px stroke
    return np.repeat((255 * (1 - ink)).round().astype(np.uint8)[..., None], 3, axis=2)


def test_two_colours_of_anti_aliased_line_art_are_its_ink_and_paper():
    """QA: `palette -k 2` gave #2a2a2a for black line art, the mean of the ink and its grey
    edges, so the ink was no swatch and a two-colour edit missed it. The swatch is the
    ink itself."""
    image = anti_aliased_line_art()
    colours, counts = distinct_colours(image)
    dark = colours[:, 0] < 128
    assert counts[(colours == 0).all(1)].sum() < 0.5 * counts[dark].sum()  # not a majority
    palette, _ = extract_palette(image, k=2)
    assert [to_hex(c) for c in lab_to_rgb_np(palette)] == ["#000000", "#ffffff"]


def test_one_colour_of_flat_art_is_its_most_common_colour_not_a_mean():
    """QA: `-k 1` on twelve-colour pixel art gave #976681, a colour nowhere in it."""
    rng = np.random.default_rng(2)
    colours = rng.integers(0, 256, (12, 3), dtype=np.uint8)
    shares = [30, *range(11, 0, -1)]  # colour 0 the most common, by far
    image = patch_image(colours, shares)
    palette, shares = extract_palette(image, k=1)
    assert np.array_equal(np.round(lab_to_rgb_np(palette) * 255), colours[:1].astype(float))
    assert np.allclose(shares, [1])


def test_two_swatches_of_one_gradient_are_not_two_neighbouring_levels_of_it():
    """Flat art with a smooth blue gradient whose middle levels are the most common: two
    clusters split it at its peak. Snapped to their most common levels they were two
    neighbours across the split (#000073 and #000081, 7 LAB units apart; on the test
    artwork pingus story1, #000078 and #00007e), two swatches for one colour whose targets
    no transfer can honour at once. No level dominates its cluster: the means stay."""
    levels = np.arange(40, 221)
    counts = np.round(400 * np.exp(-(((levels - 130) / 40.0) ** 2))).astype(int) + 20
    blue = np.zeros((counts.sum(), 3), np.uint8)
    blue[:, 2] = np.repeat(levels, counts)
    image = np.concatenate([blue, np.full_like(blue, 255)]).reshape(-1, 1, 3)
    assert is_flat_art_counted(distinct_colours(image)[1])  # every level is a fill colour
    palette, _ = extract_palette(image, k=3)
    assert np.linalg.norm(palette[0] - palette[1]) > 20
    assert to_hex(lab_to_rgb_np(palette[2])) == "#ffffff"


def test_a_photos_palette_is_not_snapped_to_its_most_common_pixel():
    """A layer that is not flat art (mostly noise, as a photo): a cluster whose most common
    exact colour holds under half of it stays the cluster's mean."""
    rng = np.random.default_rng(5)
    noisy = np.clip(rng.normal([170, 30, 40], 10, (200, 200, 3)), 0, 255).round()
    noisy.reshape(-1, 3)[: 200 * 60] = (230, 30, 40)  # 30 % exactly one colour
    image = noisy.astype(np.uint8)
    assert not is_flat_art_counted(distinct_colours(image)[1])
    palette, _ = extract_palette(image, k=1)
    red = np.round(lab_to_rgb_np(palette[0]) * 255)
    assert abs(red[0] - (0.3 * 230 + 0.7 * 170)) < 4, red


def test_fill_colours_and_flat_art_from_colour_counts():
    # a 3 x 3 dot on a transparent layer is one fill, flat art, though under 16 pixels
    assert fill_colours(np.array([9.0])).tolist() == [True]
    assert is_flat_art_counted(np.array([9.0]))
    # nine pixels of nine colours: no fill
    assert not is_flat_art_counted(np.ones(9))
    # a big layer: a colour needs 16 pixels and 1/4000 of the total
    counts = np.array([60_000.0, 30_000, 15, 20, *np.ones(9965)])
    assert fill_colours(counts)[:4].tolist() == [True, True, False, False]
    assert is_flat_art_counted(counts) and not is_flat_art_counted(counts[2:])
    assert not is_flat_art_counted(np.zeros(3))


def test_pairing_a_few_colour_layer_picks_one_target_per_colour():
    """Black line art + a six-colour palette: black pairs with the darkest target only;
    black and white with the darkest and the lightest; no target is averaged."""
    hexes = ["#0b1d51", "#725ac1", "#f7ece1", "#e0b1cb", "#cac4ce", "#8d86c9"]
    target = rgb_to_lab_np(np.array([parse_hex(h) for h in hexes]))
    strokes = np.zeros((30, 30, 3), np.uint8)
    alpha = np.zeros((30, 30), np.uint8)
    alpha[5:8] = 255
    paired, source = pair_with_image(target, strokes, alpha)
    assert len(source) == 1 and np.allclose(paired, target[[0]])
    text = strokes.copy()
    text[10:] = 255
    paired, source = pair_with_image(target, text)
    assert len(source) == 2 and np.allclose(paired, target[[0, 2]])


def test_pairing_by_lightness_keeps_order_and_takes_the_nearest_lightness():
    target = np.array([[10.0, 0, 0], [30, 0, 0], [50, 0, 0], [70, 0, 0], [90, 0, 0]])
    assert np.allclose(pair_by_lightness(target, target), target)  # rank pairing
    source = np.array([[28.0, 5, 5], [33, 0, 9], [88, 0, 0]])
    # 28 and 33 are both nearest 30; order is kept, so 33 takes the next one, 50
    assert np.allclose(pair_by_lightness(target[::-1], source)[:, 0], [30, 50, 90])


def test_a_repeated_source_colour_keeps_the_target_it_was_moved_to():
    black, red, cream = [0.0, 0, 0], [50.0, 70, 50], [94.0, 2, 7]
    source, target = np.array([black, black, black]), np.array([black, red, black])
    lab6, paired6 = to_model_palette(source, paired=target)
    assert np.allclose(lab6, black) and np.allclose(paired6, red)
    source = np.array([black, cream, black])
    keep, chosen = distinct_pairs(source, np.array([red, cream, black]))
    assert list(keep) == [0, 1] and list(chosen) == [0, 1]


def test_extraction_rejects_images_with_nothing_visible():
    with pytest.raises(PaletteError, match="no visible"):
        extract_palette(np.zeros((4, 4, 3), np.uint8), weight=np.zeros((4, 4), np.uint8))


def test_extraction_is_fast_at_24_megapixels():
    image = np.random.default_rng(0).integers(0, 256, (4000, 6000, 3), dtype=np.uint8)
    alpha = np.full((4000, 6000), 255, np.uint8)
    extract_palette(image[:100, :100])  # warm-up outside the timing
    began = time.perf_counter()
    extract_palette(image, weight=alpha)
    # ~0.2 s on a quiet 2-core machine; the bound only catches a return to reading every
    # pixel (several seconds), with room for a machine busy with other work.
    assert time.perf_counter() - began < 3.0


@pytest.mark.parametrize("n", [1, 2, 5, 6, 7, 12])
def test_model_palette_has_six_colours_from_the_users_palette(n):
    lab = rgb_to_lab_np(np.random.default_rng(n).random((n, 3)))
    six = to_model_palette(lab)
    assert six.shape == (6, 3)
    assert np.all(np.diff(six[:, 0]) >= 0)
    if n <= 6:  # only the user's own colours, each of them at least once
        distance = np.linalg.norm(six[:, None] - lab[None], axis=-1)
        assert distance.min(axis=1).max() < 1e-9 and distance.min(axis=0).max() < 1e-9


def test_model_palette_ignores_the_order_colours_are_given_in():
    lab = rgb_to_lab_np(np.random.default_rng(3).random((7, 3)))
    expected = to_model_palette(lab)
    for permutation in itertools.islice(itertools.permutations(range(7)), 0, 5040, 97):
        assert np.allclose(to_model_palette(lab[list(permutation)]), expected)


def test_lab_helpers_round_trip():
    rgb = np.random.default_rng(0).random((50, 3))
    assert np.allclose(lab_to_rgb_np(rgb_to_lab_np(rgb)), rgb, atol=1e-6)


def test_colours_count_by_their_alpha_in_the_palette_and_the_pairing():
    """An all but invisible green (alpha 2/255) over 96 % of a layer must not outweigh the
    opaque red on the rest: the palette is what is seen, and a one-colour palette given
    without source_palette is paired with the colour seen, the red."""
    from backend.service.engine import Engine
    from backend.service.protocol import decode_reply, encode_request

    pixels = np.zeros((50, 50, 4), np.uint8)
    pixels[...] = (0, 200, 0, 2)  # green, alpha 2/255
    pixels[:2] = (220, 20, 30, 255)  # opaque red: 4 % of the pixels
    engine = Engine("unused.pt", "cpu", load_model=False)
    header = {"op": "palette", "width": 50, "height": 50, "pixel_format": "RGBA8",
              "options": {"k": 2}}  # fmt: skip
    reply, _ = decode_reply(engine.handle(encode_request(header, pixels), 1 << 20))
    shares = dict(zip(reply["palette"], reply["weights"]))
    assert shares["#dc141e"] > 0.8, reply  # 100 opaque pixels against 2400 x 2/255
    header.update(op="recolor", method="chang2015", palette=["#2040d0"])
    del header["options"]
    reply, frames = decode_reply(engine.handle(encode_request(header, pixels), 1 << 20))
    out = np.frombuffer(frames[0], np.uint8).reshape(pixels.shape)
    red, green = out[0, 0, :3].astype(int), out[-1, -1, :3].astype(int)
    # counted fully, the green was the colour paired with the target: it became the target
    # and the red went dark red (146, 0, 0); weighed by alpha the red is the swatch and
    # lands on the target, the green (another colour) follows it only part of the way
    assert np.abs(red - (0x20, 0x40, 0xD0)).max() <= 1, red
    assert np.abs(green - (0x20, 0x40, 0xD0)).max() > 30, green
    assert np.array_equal(out[..., 3], pixels[..., 3])


def test_distinct_colours_are_the_sorted_exact_colours_with_their_weights():
    rng = np.random.default_rng(4)
    rgb8 = rng.integers(0, 4, (300, 200, 3), dtype=np.uint8) * 85
    weight = rng.random((300, 200)).astype(np.float32)
    weight[:50] = 0
    rgb8[:50] = (1, 2, 3)  # a colour only where nothing counts
    colours, counts = distinct_colours(rgb8, weight)
    codes = (rgb8[..., 0].astype(int) << 16) | (rgb8[..., 1].astype(int) << 8) | rgb8[..., 2]
    expected = sorted(set(codes[50:].ravel()))
    found = [(r << 16) | (g << 8) | b for r, g, b in colours.astype(int)]
    assert found == expected  # sorted, no colour without weight
    for code, count in zip(found, counts):
        assert count == pytest.approx(weight[codes == code].sum(dtype=np.float64), rel=1e-12)
    colours, counts = distinct_colours(rgb8)
    assert counts.sum() == rgb8.shape[0] * rgb8.shape[1] and counts.dtype == np.float64


def test_the_histogram_from_counted_colours_is_the_histogram_of_the_pixels():
    from backend.core.palette import colour_histogram

    rng = np.random.default_rng(8)
    rgb8 = rng.integers(0, 256, (500, 400, 3), dtype=np.uint8)
    rgb8[:200] = (7, 130, 250)
    lab, counts = colour_histogram(rgb8)
    shared = colour_histogram(rgb8, counted=distinct_colours(rgb8))
    assert np.array_equal(lab, shared[0]) and np.array_equal(counts, shared[1])
