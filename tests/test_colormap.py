"""Flat art through PaletteNet at full resolution (backend.core.colormap): fills stay flat,
pixel art keeps its colours, line art's ink stays one colour; photos keep the local path."""

import numpy as np
import pytest
from skimage import data

from backend import DEFAULT_WEIGHTS
from backend.core.colormap import ColourMap, fit_lut, is_flat_art
from backend.core.pixels import FORMATS, Layer
from backend.core.recolor import recolor_layer
from backend.core.weights import load_weights
from backend.service.protocol import parse_palette

ISSUE_PALETTE = "#0b1d51,#725ac1,#f7ece1,#e0b1cb,#cac4ce,#8d86c9"


@pytest.fixture(scope="module")
def model():
    return load_weights(DEFAULT_WEIGHTS)


def palette_lab(text):
    from backend.core.color import rgb_to_lab_np

    return rgb_to_lab_np(parse_palette(text))


def pixel_art(colours=90, fat=8, cells=(80, 96), seed=0) -> np.ndarray:
    """An RGBA sprite of `colours` distinct colours in fat pixels (cells of fat x fat),
    larger than the working size so the network sees it reduced."""
    rng = np.random.default_rng(seed)
    swatches = rng.integers(0, 256, (colours, 3), dtype=np.uint8)
    index = rng.integers(0, colours, cells)
    index.flat[:colours] = np.arange(colours)  # every colour present
    rgb = np.repeat(np.repeat(swatches[index], fat, 0), fat, 1)
    return np.concatenate([rgb, np.full((*rgb.shape[:2], 1), 255, np.uint8)], axis=-1)


def distinct(pixels: np.ndarray) -> int:
    visible = pixels[..., 3] > 0
    return len(np.unique(pixels[..., :3][visible].reshape(-1, 3), axis=0))


def test_a_90_colour_pixel_art_sprite_keeps_at_most_90_colours_and_flat_fat_pixels(model):
    sprite = pixel_art()
    assert sprite.shape[1] > 512  # reduced for the network, carried back by the colour map
    out = recolor_layer(model, Layer(sprite, FORMATS["RGBA8"]), palette_lab(ISSUE_PALETTE))
    assert distinct(out) <= 90
    fat = out[..., :3].reshape(80, 8, 96, 8, 3)
    assert (fat == fat[:, :1, :, :1]).all()  # every fat pixel is one colour
    assert np.abs(out[..., :3].astype(int) - sprite[..., :3]).mean() > 5  # recoloured


@pytest.mark.parametrize("size", [(64, 64), (700, 900)])
def test_a_one_colour_fill_stays_one_colour(model, size):
    fill = np.zeros((*size, 4), np.uint8)
    fill[...] = (200, 60, 50, 255)
    out = recolor_layer(model, Layer(fill, FORMATS["RGBA8"]), palette_lab("#264653,#e76f51"))
    assert distinct(out) == 1


def test_black_line_art_on_transparency_stays_one_ink(model):
    """Anti-aliased black strokes on a transparent layer: the opaque ink is one colour."""
    pixels = np.zeros((600, 800, 4), np.uint8)
    pixels[100:104, 50:750, 3] = 255
    pixels[200:500, 398:402, 3] = 255
    pixels[99, 50:750, 3] = pixels[104, 50:750, 3] = 96  # anti-aliased edges
    out = recolor_layer(model, Layer(pixels, FORMATS["RGBA8"]), palette_lab(ISSUE_PALETTE))
    ink = out[pixels[..., 3] == 255][:, :3]
    assert len(np.unique(ink, axis=0)) == 1
    assert np.array_equal(out[..., 3], pixels[..., 3])


def test_a_three_pixel_dot_stays_one_colour(model):
    """QA: a 3 x 3 dot of one colour on a 600 x 600 transparent layer came back in 8
    colours: under 16 pixels it was not flat art and kept the network's pixel-by-pixel
    output. A layer of one colour is flat art at any size."""
    pixels = np.zeros((600, 600, 4), np.uint8)
    pixels[300:303, 300:303] = (50, 160, 140, 255)
    assert is_flat_art(pixels[..., :3], pixels[..., 3] / 255)
    out = recolor_layer(model, Layer(pixels, FORMATS["RGBA8"]), palette_lab("#ff00ff,#00ff00"))
    assert distinct(out) == 1
    assert np.array_equal(out[..., 3], pixels[..., 3])


def test_flat_art_is_told_from_photos():
    assert is_flat_art(pixel_art()[..., :3])
    assert not is_flat_art(data.astronaut())
    assert not is_flat_art(data.coffee())


def test_colour_map_is_robust_to_bleeding_and_smooth_in_between():
    """A fill whose network output has 10 % of another fill's colour bled in still maps to
    its own colour, and a colour between two fills maps between their outputs."""
    source = np.zeros((40, 40, 3), np.float32)
    source[:, :20] = (0.8, 0.2, 0.2)
    source[:, 20:] = (0.2, 0.2, 0.8)
    result = np.where(source[..., :1] > 0.5, [0.1, 0.7, 0.1], [0.9, 0.9, 0.1]).astype(np.float32)
    result[:4, :20] = (0.9, 0.9, 0.1)  # bled in from the neighbour
    mapping = ColourMap(source, result, np.ones((40, 40)))
    fills = mapping(np.array([[[0.8, 0.2, 0.2], [0.2, 0.2, 0.8]]], np.float32))
    assert np.allclose(fills[0], [[0.1, 0.7, 0.1], [0.9, 0.9, 0.1]], atol=1 / 255)
    middle = mapping(np.array([[[0.5, 0.2, 0.5]]], np.float32))[0, 0]
    assert np.all(middle >= np.array([0.1, 0.7, 0.1]) - 1e-4)
    assert np.all(middle <= np.array([0.9, 0.9, 0.1]) + 1e-4)


def test_lut_reproduces_a_smooth_mapping():
    rng = np.random.default_rng(0)
    source = rng.random((3000, 3))
    output = np.clip(source * 0.8 + [0.1, 0.05, 0.0], 0, 1)
    lut = fit_lut(source, output, np.ones(len(source)))
    from backend.core.chang2015 import apply_lattice

    probe = rng.random((200, 3))
    mapped = apply_lattice(probe[None].astype(np.float32), lut)[0]
    # within 8/255 (the smoothness penalty flattens the slope a little)
    assert np.abs(mapped - np.clip(probe * 0.8 + [0.1, 0.05, 0.0], 0, 1)).max() < 8 / 255


def test_palettenet_takes_the_palettes_lightness_on_flat_art(model):
    """Designer palettes have their own lightness; the network keeps the layer's, so a fill
    paired with a much lighter swatch stayed dark. Now each fill takes its target's L*."""
    from backend.core.color import rgb_to_lab_np

    pixels = np.zeros((100, 300, 4), np.uint8)
    pixels[..., 3] = 255
    pixels[:, :100, :3] = (30, 30, 90)  # dark blue
    pixels[:, 100:200, :3] = (120, 60, 40)  # mid brown
    pixels[:, 200:, :3] = (230, 230, 200)  # light cream
    target = palette_lab("#5a7bd6,#d9a066,#fff4e0")  # each much lighter than its fill
    out = recolor_layer(model, Layer(pixels, FORMATS["RGBA8"]), target)
    lightness = rgb_to_lab_np(out[50, [50, 150, 250], :3] / 255)[:, 0]
    assert np.abs(lightness - np.sort(target[:, 0])).max() < 1


def test_a_photo_like_layer_keeps_its_large_flat_fill_flat(model):
    """Not flat art (a noisy photo-like texture over most of it), but one large exactly flat
    fill: the local transfer keeps its detail elsewhere, the fill comes out one colour."""
    rng = np.random.default_rng(1)
    pixels = np.zeros((300, 400, 4), np.uint8)
    pixels[..., 3] = 255
    texture = np.cumsum(rng.normal(0, 6, (300, 400, 3)), axis=1) + 110
    pixels[..., :3] = np.clip(texture, 0, 255).astype(np.uint8)
    pixels[100:200, 150:300, :3] = (40, 160, 90)  # a flat green fill
    assert not is_flat_art(pixels[..., :3])
    out = recolor_layer(model, Layer(pixels, FORMATS["RGBA8"]), palette_lab(ISSUE_PALETTE))
    fill = out[100:200, 150:300, :3].reshape(-1, 3)
    assert len(np.unique(fill, axis=0)) == 1
    assert distinct(out[:90]) > 1000  # the texture keeps its detail


def test_palettenet_sends_each_swatch_colour_to_its_target(model):
    """A one-swatch edit of a flat layer: the fill that is the edited swatch becomes its
    target exactly, the fills of the swatches left alone stay exactly as they were."""
    from backend.core.color import rgb_to_lab_np

    colours = np.array([(30, 30, 90), (120, 60, 40), (230, 230, 200), (40, 160, 90)], np.uint8)
    pixels = np.zeros((120, 400, 4), np.uint8)
    pixels[..., 3] = 255
    for i, colour in enumerate(colours):
        pixels[:, 100 * i : 100 * (i + 1), :3] = colour
    source = rgb_to_lab_np(colours / 255)
    target = source.copy()
    target[3] = rgb_to_lab_np(np.array([200, 40, 160]) / 255)  # the green becomes magenta
    out = recolor_layer(model, Layer(pixels, FORMATS["RGBA8"]), target, source_lab=source)
    assert np.array_equal(out[60, 350, :3], [200, 40, 160])
    for i in range(3):
        assert np.array_equal(out[60, 100 * i + 50, :3], colours[i])


def test_a_swatch_the_working_image_never_sees_still_lands_on_its_target(model):
    """Flat art larger than the working size whose colours sit in a one-pixel checker (a
    dithered wallpaper, pixel-level texture): reduced, the two colours of each checker are
    one mixed colour, so the network never sees either. A one-swatch edit still sends
    every full-resolution pixel of the edited colour to its target, and leaves the other
    checker colour and the plain fill where they were (before, both checker colours took
    the mixed colour's output: the edited one 20 dE short of its target, the other moved)."""
    from backend.core.color import rgb_to_lab_np

    light, dark, fill = (224, 188, 159), (179, 149, 123), (40, 70, 150)
    pixels = np.zeros((600, 1400, 4), np.uint8)
    pixels[..., 3] = 255
    checker = (np.indices((600, 1000)).sum(0) % 2).astype(bool)
    pixels[:, :1000, :3] = np.where(checker[..., None], light, dark)
    pixels[:, 1000:, :3] = fill
    colours = np.array([dark, light, fill], np.uint8)
    source = rgb_to_lab_np(colours / 255)
    target = source.copy()
    target[1] = rgb_to_lab_np(np.array([129, 208, 163]) / 255)  # the light beige: mint
    out = recolor_layer(model, Layer(pixels, FORMATS["RGBA8"]), target, source_lab=source)
    assert (out[:, :1000, :3][checker] == (129, 208, 163)).all()
    kept = out[:, :1000, :3][~checker].astype(int)
    assert np.abs(kept - dark).max() <= 2
    assert (out[:, 1000:, :3] == fill).all()


def _rounded_codes(rgb):
    """The rule ExactColours must follow: to_uint8, then 0xRRGGBB."""
    from backend.core.color import to_uint8

    rgb8 = to_uint8(rgb[..., :3]).astype(np.int64)
    return (rgb8[..., 0] << 16) | (rgb8[..., 1] << 8) | rgb8[..., 2]


def test_exact_colours_hit_exactly_the_pixels_whose_rounded_colour_is_listed():
    from backend.core.colormap import ExactColours

    rng = np.random.default_rng(3)
    # float32 values on both sides of every rounding boundary k + 0.5 (in 0..255 units),
    # where rounding in float32 instead of float64 would go the other way
    half = (np.arange(256) + 0.5) / 255
    edges = np.concatenate([np.nextafter(half.astype(np.float32), 0), half.astype(np.float32),
                            np.nextafter(half.astype(np.float32), 1)])  # fmt: skip
    rgb = rng.choice(edges, size=(64, 96, 4)).astype(np.float32)
    rgb[..., 3] = 1
    rgb[:8] = np.float32(12 / 255)  # one exact colour on many pixels
    codes = _rounded_codes(rgb)
    listed = np.unique(codes)[::3][:200]
    listed = np.append(listed, (12 << 16) | (12 << 8) | 12)
    outputs = rng.random((len(listed), 3)).astype(np.float32)
    out = rng.random((64, 96, 3)).astype(np.float32)
    expected = out.copy()
    for code, output in zip(listed, outputs):
        expected[codes == code] = output
    assert np.array_equal(ExactColours(listed, outputs)(out.copy(), rgb), expected)
    # into a view that is not contiguous (numpy's indexing instead of OpenCV's copy)
    wide = np.zeros((64, 192, 3), np.float32)
    wide[:, ::2] = out
    columns = wide[:, ::2]
    ExactColours(listed, outputs)(columns, rgb)
    assert np.array_equal(columns, expected)
    # the same with the codes given (an 8-bit layer's own bytes)
    assert np.array_equal(ExactColours(listed, outputs)(out.copy(), rgb, codes), expected)
    # a code listed twice keeps its first output; none listed changes nothing
    twice = ExactColours([listed[0], listed[0]], outputs[:2])(out.copy(), rgb)
    assert np.array_equal(twice[codes == listed[0]][0], outputs[0])
    assert np.array_equal(ExactColours(np.zeros(0, int), np.zeros((0, 3)))(out.copy(), rgb), out)


def test_fills_stand_out_from_their_edges_and_gradient_levels_do_not():
    from backend.core.colormap import colour_codes, stands_out

    fill = colour_codes(np.array([[100, 100, 100]]))[0]
    edges = colour_codes(np.array([[100, 100, 101], [99, 100, 100], [102, 102, 102]]))
    ramp = colour_codes(np.stack([np.arange(50, 70), np.full(20, 9), np.full(20, 9)], 1))
    far = colour_codes(np.array([[100, 100, 110]]))[0]  # 10 levels away: not an edge
    codes = np.concatenate([[fill, far], edges, ramp])
    counts = np.concatenate([[500.0, 900], [200, 200, 90], np.full(20, 300.0)])
    order = np.argsort(codes)
    found = stands_out(codes[order], counts[order], np.ones(len(codes), bool))
    found = dict(zip(codes[order], found))
    assert found[fill] and found[far]  # 500 against 490 around it
    assert not any(found[c] for c in ramp[1:-1])  # each level: 300 against 1800 around
    counts[0] = 480  # now outnumbered by its edges
    order = np.argsort(codes)
    assert not dict(zip(codes[order], stands_out(codes[order], counts[order], order >= 0)))[fill]


def test_a_gradient_through_a_fills_colour_has_no_step_at_the_fill():
    """A large fill (130, 80, 80) that the network sent 60 levels redder, and a ramp of reds
    100..160 beside it that it left alone. The fill keeps its own output exactly; the ramp's
    levels next to the fill's colour follow it gradually (the smooth table alone had them
    40 levels from the fill's output: a band wherever the ramp touches the fill's colour)."""
    ramp = np.arange(100, 161)
    source = np.zeros((61, 40, 3), np.float32)
    source[:, :20] = np.stack([ramp, np.full(61, 80), np.full(61, 80)], 1)[:, None] / 255
    source[:, 20:] = np.array([130, 80, 80]) / 255  # the fill: 1220 of 2440 pixels
    result = source.copy()
    result[:, 20:, 0] = 190 / 255
    mapping = ColourMap(source, result, np.ones((61, 40)))
    out = np.round(mapping(source[:, :1].reshape(1, 61, 3))[0] * 255)
    assert out[30, 0] == 190  # the fill's own colour, exactly
    steps = np.abs(np.diff(out[:, 0]))
    assert steps.max() <= 4, steps


def test_follow_swatches_brings_the_networks_output_to_the_palette():
    """Three fills with anti-aliased edges; the palette moves the red and leaves the blue
    and the cream. The (simulated) network output tints everything a little green and sends
    the red only half way: after follow_swatches each fill is on its target (the unchanged
    ones on themselves, within 1 dE), and the edges between blue and cream stay between."""
    from skimage.color import deltaE_ciede2000

    from backend.core.color import rgb_to_lab_np
    from backend.core.colormap import follow_swatches

    fills = np.array([[200, 40, 40], [30, 60, 200], [240, 230, 200]], np.uint8)
    row = np.concatenate([np.repeat(fills[:1], 40, 0), np.repeat(fills[1:2], 40, 0),
                          np.linspace(fills[1], fills[2], 8)[1:-1].round().astype(np.uint8),
                          np.repeat(fills[2:], 40, 0)])  # fmt: skip
    source8 = np.ascontiguousarray(np.broadcast_to(row, (30, *row.shape)))
    source_lab = rgb_to_lab_np(fills / 255)
    target_lab = source_lab.copy()
    target_lab[0] = rgb_to_lab_np(np.array([40, 160, 60]) / 255)  # red -> green
    tinted = source8 / 255 + np.array([-0.03, 0.04, -0.03])
    result = np.clip(tinted, 0, 1).astype(np.float32)
    result[:, :40] = (0.47, 0.38, 0.2)  # the red, half way to the green
    follow_swatches(source8, result, source_lab, target_lab)
    landed = rgb_to_lab_np(result[0, [20, 60, -20]].astype(np.float64))
    assert deltaE_ciede2000(landed, target_lab).max() < 1
    edges = result[0, 80:86]  # blue -> cream edge: still between the two, in order
    assert np.all(np.diff(edges.sum(1)) > 0)


def test_a_one_swatch_edit_of_a_photo_leaves_the_other_swatches_colours_alone(model):
    """A photo (not flat art) with one of its six swatches turned by a third of the hue
    circle: the pixels nearest a swatch left alone keep their colour (mean under 1 dE; the
    network alone moved them 3 dE) and the edited swatch's own colours land near its
    target (median under 3 dE; the network alone: 6)."""
    from skimage.color import deltaE_ciede2000

    from backend.core.color import rgb_to_lab_np
    from backend.core.palette import extract_palette
    from training.variants import rotate_ab

    rgb8 = data.chelsea()
    pixels = np.concatenate([rgb8, np.full((*rgb8.shape[:2], 1), 255, np.uint8)], axis=-1)
    source, _ = extract_palette(rgb8, 6)
    edited = 2
    target = source.copy()
    target[edited] = rotate_ab(source[edited], 1 / 3, 1.0)
    out = recolor_layer(model, Layer(pixels, FORMATS["RGBA8"]), target, source_lab=source)
    lab_in = rgb_to_lab_np(rgb8 / 255)
    lab_out = rgb_to_lab_np(out[..., :3] / 255)
    assert not is_flat_art(rgb8)
    nearest = np.argmin(((lab_in[..., None, :] - source) ** 2).sum(-1), axis=-1)
    assert deltaE_ciede2000(lab_in, lab_out)[nearest != edited].mean() < 1.0
    own = lab_out[np.linalg.norm(lab_in - source[edited], axis=-1) < 3]
    landed = deltaE_ciede2000(own, np.broadcast_to(target[edited], own.shape))
    assert np.median(landed) < 3
