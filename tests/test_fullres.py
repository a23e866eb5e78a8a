"""Carrying a working-size result to full resolution (backend.core: fullres, recolor)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from backend.core import fullres
from backend.core.color import delta_e76, rgb_to_lab, rgb_to_lab_np
from backend.core.fullres import (
    AffineField,
    area_resize,
    fit_local_affine,
    weighted_resize,
    working_size,
)
from backend.core.model import PaletteNet
from backend.core.pixels import FORMATS, Layer
from backend.core.recolor import recolor_layer
from backend.service.protocol import parse_palette


@pytest.mark.parametrize(
    "size,expected",
    [((4000, 6000), (336, 512)), ((6000, 4000), (512, 336)), ((300, 500), (300, 500)),
     ((8, 1024), (8, 512)), ((513, 513), (512, 512))],
)  # fmt: skip
def test_working_size_is_bounded_and_a_multiple_of_16(size, expected):
    assert working_size(*size) == expected


def test_area_averaging_is_exact_for_any_ratio():
    values = np.random.default_rng(0).random((3, 10, 2)).astype(np.float32)
    for size in (10, 7, 4, 3, 1):
        brute = np.zeros((3, size, 2))
        for j in range(size):
            start, end = j * 10 / size, (j + 1) * 10 / size
            for k in range(10):
                brute[:, j] += max(0, min(end, k + 1) - max(start, k)) * values[:, k]
            brute[:, j] /= end - start
        for height in (3, 2, 1):  # rows averaged too, 3 -> 2 is non-integer as well
            expected = np.stack([_area_rows(brute, height, i) for i in range(height)])
            reduced = area_resize(lambda top, bottom: values[top:bottom], 3, 10, (height, size))
            np.testing.assert_allclose(reduced, expected, atol=1e-6)


@pytest.mark.parametrize("size", [(1, 1), (3, 7), (40, 33), (161, 90)])
@pytest.mark.parametrize("radius", [1, 2, 3])
def test_the_compiled_colour_fit_gives_the_planes_fit(size, radius):
    rng = np.random.default_rng(radius)
    guide = rng.random((*size, 3)).astype(np.float32)
    change = (0.3 * guide[..., ::-1] - 0.1 + 0.02 * rng.random((*size, 3))).astype(np.float32)
    weight = (rng.random(size) * (rng.random(size) > 0.3)).astype(np.float32)  # some hidden
    compiled = fit_local_affine(guide, change, weight, radius)  # G = C = 3: compiled
    planes = fullres._fit_planes(guide, change, weight, radius, fullres.EPSILON)
    assert compiled.shape == planes.shape == (*size, 4, 3)
    np.testing.assert_allclose(compiled, planes, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("pixel_format", ["RGBA8", "BGRA8", "RGB8"])
@pytest.mark.parametrize("size,reduced", [((7, 13), (3, 5)), ((333, 501), (112, 160)),
                                          ((40, 40), (40, 40)), ((40, 40), (1, 1))])  # fmt: skip
def test_bytes_summed_whole_give_the_float_area_average(pixel_format, size, reduced):
    rng = np.random.default_rng(size[0])
    fmt = FORMATS[pixel_format]
    pixels = rng.integers(0, 256, (*size, fmt.channels), dtype=np.uint8)
    if fmt.alpha is not None:
        pixels[rng.random(size) < 0.3, fmt.alpha] = 0  # hidden: their colour must not count
    layer = Layer(pixels, fmt)

    def weighted(top, bottom):  # the float path: colours times visibility, visibility
        rows, visible = layer.rgb1(top, bottom), layer.visibility(top, bottom)
        return rows if visible is None else rows * visible[..., None]

    colour, share = fullres.visible_resize(layer, reduced)  # from the bytes
    expected_colour, expected_share = weighted_resize(weighted, *size, reduced)
    np.testing.assert_allclose(colour, expected_colour, atol=1e-6)
    np.testing.assert_allclose(share, expected_share, atol=1e-6)
    if fmt.alpha is not None:  # another colour under alpha 0 changes nothing
        pixels[pixels[..., fmt.alpha] == 0, fmt.rgb[0]] ^= 255
        np.testing.assert_array_equal(fullres.visible_resize(layer, reduced)[0], colour)


def _area_rows(values, height, index):
    """Row `index` of `values` (n, ...) area-averaged to `height` rows, by brute force."""
    n = len(values)
    start, end = index * n / height, (index + 1) * n / height
    cover = [max(0, min(end, k + 1) - max(start, k)) for k in range(n)]
    return np.tensordot(cover, values, axes=1) / (end - start)


def two_colour_photo(height=600, width=900, edge=451):
    """A reddish and a bluish textured region meeting at a hard vertical edge."""
    rng = np.random.default_rng(1)
    texture = (
        rng.normal(0, 0.015, (height, width, 1)) + np.linspace(-0.1, 0.1, height)[:, None, None]
    )
    rgb = np.where(np.arange(width)[None, :, None] < edge, [0.75, 0.3, 0.2], [0.2, 0.35, 0.7])
    return np.clip(rgb + texture, 0, 1).astype(np.float32)


def carried(method, rgb):
    """method run at the working size, carried to full size through the local maps."""
    height, width = rgb.shape[:2]
    size = working_size(height, width)
    rgb1 = np.concatenate([rgb, np.ones((height, width, 1), np.float32)], axis=-1)
    small, weight = weighted_resize(lambda top, bottom: rgb1[top:bottom], height, width, size)
    result = method(small)
    field = AffineField(fit_local_affine(small, result - small, weight), height, width)
    return np.clip(field(rgb1, 0), 0, 1), small, result


def smooth_transfer(image, sources, targets, width=0.25):
    """A per-pixel colour transfer whose full-size result is exactly known: each colour
    moved by the source -> target changes weighted by Gaussian radial basis functions of its
    RGB distance to the sources (the kind of map Chang 2015 builds, with a fixed width, so
    this test does not follow that method's tuning)."""
    sources, targets = np.asarray(sources, np.float32), np.asarray(targets, np.float32)
    distance = ((image[..., None, :] - sources) ** 2).sum(-1)
    weight = np.exp(-distance / (2 * width**2))
    weight /= weight.sum(-1, keepdims=True) + 1e-6
    return np.clip(image + weight @ (targets - sources), 0, 1).astype(np.float32)


def test_colour_edges_stay_sharp_without_halos():
    rgb = two_colour_photo(500, 2000, edge=1001)  # working size 128 x 512: 3.9 times smaller
    sources = [[0.75, 0.3, 0.2], [0.2, 0.35, 0.7]]  # the photo's red and blue
    targets = [[0.88, 0.75, 0.31], [0.18, 0.56, 0.31]]  # red -> yellow, blue -> green

    def method(image):  # a per-pixel colour transfer: its full-size result is the truth
        return smooth_transfer(image, sources, targets)

    ours, small, result = carried(method, rgb)
    truth = rgb_to_lab(torch.from_numpy(method(rgb)))
    # the usual alternative: upsample the change itself
    change = torch.from_numpy(result - small).permute(2, 0, 1)[None]
    upsampled = F.interpolate(change, size=rgb.shape[:2], mode="bilinear")[0].permute(1, 2, 0)
    naive = (torch.from_numpy(rgb) + upsampled).clamp(0, 1)
    error = delta_e76(rgb_to_lab(torch.from_numpy(ours)), truth)
    naive_error = delta_e76(rgb_to_lab(naive), truth)
    near_edge = slice(990, 1012)
    assert error.mean() < 2.0
    assert error[:, near_edge].mean(0).max() < 5  # sharp: within a few pixels, no band
    assert naive_error[:, near_edge].mean(0).max() > 10  # where upsampling leaves a halo


def test_transparent_pixels_do_not_steer_the_result():
    torch.manual_seed(0)
    model = PaletteNet().eval()
    palette = rgb_to_lab_np(parse_palette("#0b1d51,#725ac1,#f7ece1"))
    # visible: 350 x 800, so the network runs at 224 x 512 and its result is carried back
    rgba = np.dstack([np.round(two_colour_photo(400, 1000) * 255).astype(np.uint8),
                      np.full((400, 1000), 255, np.uint8)])  # fmt: skip
    rgba[:, :200, 3] = 0
    rgba[350:, :, 3] = 0
    outputs = []
    for hidden in ((255, 0, 255), (0, 0, 0)):  # whatever the invisible colour is
        rgba[rgba[..., 3] == 0, :3] = hidden
        outputs.append(recolor_layer(model, Layer(rgba.copy(), FORMATS["RGBA8"]), palette))
    visible = rgba[..., 3] > 0
    np.testing.assert_array_equal(outputs[0][visible], outputs[1][visible])
    np.testing.assert_array_equal(outputs[1][~visible], rgba[~visible])  # kept as they were


def test_flat_art_maps_each_colour_once_with_the_same_result(monkeypatch):
    """finish gives flat art's colour mapping to the colour table (each distinct colour
    mapped once): bit for bit what mapping every pixel gives, and every fill one colour."""
    import backend.core.pixels as pixels
    from backend.core.recolor import finish, predict, prepare

    torch.manual_seed(0)
    model = PaletteNet().eval()
    colours = np.array([[200, 40, 40], [30, 30, 30], [240, 240, 230], [40, 90, 200]], np.uint8)
    fills = np.add.outer(np.arange(700) // 70, np.arange(1000) // 90) % 4
    rgba = np.dstack([colours[fills], np.full(fills.shape, 255, np.uint8)])
    rgba[:50, :, 3] = 0
    layer = Layer(rgba, FORMATS["RGBA8"])
    palette = rgb_to_lab_np(parse_palette("#0b1d51,#725ac1,#f7ece1,#e0b1cb"))
    working = prepare(layer)
    (result,) = predict(model, [working.rgb], [palette])
    used, outputs = [], []
    map_colours = pixels.Layer.map_colours
    monkeypatch.setattr(pixels.Layer, "map_colours",
                        lambda *args: used.append(map_colours(*args)) or used[-1])  # fmt: skip
    for smallest_table in (1, 1 << 40):  # the table, then every pixel mapped
        monkeypatch.setattr(pixels, "COLOUR_TABLE_MIN_PIXELS", smallest_table)
        outputs.append(np.full_like(rgba, 7))
        finish(layer, working, result, outputs[-1])
    assert used == [True, False]
    np.testing.assert_array_equal(outputs[0], outputs[1])
    visible = rgba[..., 3] > 0
    for index in range(4):
        fill = outputs[0][(fills == index) & visible]
        assert len(np.unique(fill, axis=0)) == 1


@pytest.mark.parametrize("pixel_format", ["RGBA8", "BGRA8", "RGB8"])
def test_the_compiled_local_transfer_gives_the_step_by_step_result(pixel_format):
    """affine_u8 (one compiled pass) against Layer.recolor_into with the same transform
    (NumPy and OpenCV, step by step): within one 8-bit level everywhere, the exact fill
    colours and fully transparent pixels identical, alpha kept."""
    from backend.core import affine_u8
    from backend.core.colormap import FillKeeper
    from backend.core.recolor import predict, prepare

    torch.manual_seed(0)
    model = PaletteNet().eval()
    rng = np.random.default_rng(3)
    rgb = np.round(two_colour_photo(300, 700) * 255).astype(np.uint8)
    rgb[:60, :200] = (250, 250, 250)  # a clipped white: an exact fill colour
    channels = 3 if pixel_format == "RGB8" else 4
    pixels = np.empty((300, 700, channels), np.uint8)
    order = FORMATS[pixel_format].rgb
    for channel, position in enumerate(order):
        pixels[..., position] = rgb[..., channel]
    if channels == 4:
        pixels[..., 3] = rng.integers(0, 256, (300, 700))
        pixels[100:120, :, 3] = 0
    layer = Layer(pixels, FORMATS[pixel_format])
    palette = rgb_to_lab_np(parse_palette("#0b1d51,#725ac1,#f7ece1,#e0b1cb"))
    working = prepare(layer, 128)  # the network at 128: the maps are interpolated 5 x
    (result,) = predict(model, [working.rgb], [palette])
    cropped = layer.crop(*working.box)
    field = AffineField(fit_local_affine(working.rgb, result - working.rgb, working.weight),
                        cropped.height, cropped.width)  # fmt: skip
    keeper = FillKeeper(field, working.rgb, result, working.weight, cropped.codes8)
    assert keeper.exact.slots is not None  # the white is kept as one colour
    assert affine_u8.applies(cropped)
    compiled, step_by_step = np.full_like(pixels, 7), np.full_like(pixels, 9)
    affine_u8.recolor_into(cropped, compiled, field, keeper.exact)
    cropped.recolor_into(step_by_step, keeper)
    difference = np.abs(compiled.astype(int) - step_by_step)
    assert difference.max() <= 1 and (difference > 0).mean() < 1e-3
    white = np.all(rgb == 250, axis=-1)
    np.testing.assert_array_equal(compiled[white], step_by_step[white])
    if channels == 4:
        np.testing.assert_array_equal(compiled[..., 3], pixels[..., 3])
        hidden = pixels[..., 3] == 0
        np.testing.assert_array_equal(compiled[hidden], pixels[hidden])
    assert not np.array_equal(compiled[..., order], pixels[..., order])  # recoloured


def test_a_masked_or_deep_layer_keeps_the_step_by_step_path():
    from backend.core import affine_u8

    pixels = np.zeros((4, 4, 4), np.uint8)
    assert not affine_u8.applies(Layer(pixels, FORMATS["RGBA8"], np.zeros((4, 4), np.uint8)))
    assert not affine_u8.applies(Layer(pixels.astype(np.uint16), FORMATS["RGBA16"]))
    assert not affine_u8.applies(Layer(pixels, FORMATS["RGBA8_LINEAR"]))
    with pytest.raises(ValueError):
        affine_u8.recolor_into(Layer(pixels.astype(np.uint16), FORMATS["RGBA16"]), None, None,
                               None)  # fmt: skip
