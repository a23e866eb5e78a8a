"""Linear-light and half-float pixel formats: what GIMP and Krita store in linear-precision
images, sent as they are so the editor can write the answer back without rounding it again.
The same picture sent sRGB-encoded or linear must come back as the same colours."""

import numpy as np
import pytest

from backend.core.color import srgb_to_linear_np
from backend.core.pixels import FORMATS
from backend.service.engine import Engine
from backend.service.protocol import decode_reply, encode_request
from tests.conftest import small_photo
from tests.servers import as_pixels, photo_pixels, random_weights, recolor_header


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    return Engine(random_weights(tmp_path_factory.mktemp("weights")), "cpu")


def as_linear(pixels: np.ndarray, encoded_format: str, linear_format: str) -> np.ndarray:
    """The same picture in a linear format: colour channels decoded, alpha kept."""
    source, target = FORMATS[encoded_format], FORMATS[linear_format]
    values = pixels.astype(np.float32) / source.maximum
    values[..., :3] = srgb_to_linear_np(values[..., :3])
    if target.is_float:
        return values.astype(target.dtype)
    return np.round(values * target.maximum).astype(target.dtype)


def recolor(engine, pixels, pixel_format, method) -> np.ndarray:
    header = recolor_header(pixels, pixel_format, method)
    reply, frames = decode_reply(engine.handle(encode_request(header, pixels), 10**6))
    assert reply["ok"], reply
    return as_pixels(frames[0], pixels)


@pytest.mark.parametrize("method", ["chang2015", "palettenet"])
@pytest.mark.parametrize(
    "encoded, linear, tolerance",
    [("RGBAF32", "RGBAF32_LINEAR", 1e-4), ("RGBA16", "RGBA16_LINEAR", 2e-3),
     ("RGBAF32", "RGBAF16_LINEAR", 2e-3)],
)  # fmt: skip
def test_linear_formats_give_the_same_colours(engine, method, encoded, linear, tolerance):
    pixels = photo_pixels(small_photo("coffee", 48), encoded)
    linear_pixels = as_linear(pixels, encoded, linear)
    expected = recolor(engine, pixels, encoded, method).astype(np.float32)
    expected /= FORMATS[encoded].maximum
    answer = recolor(engine, linear_pixels, linear, method)
    assert answer.dtype == linear_pixels.dtype and answer.shape == linear_pixels.shape
    assert np.array_equal(answer[..., 3], linear_pixels[..., 3])  # alpha untouched
    got = answer.astype(np.float32) / FORMATS[linear].maximum
    seen = pixels[..., 3] > 0
    # the linear answer, encoded, is the sRGB answer (up to the formats' own rounding)
    assert np.abs(srgb_to_linear_np(expected[..., :3])[seen] - got[..., :3][seen]).max() < tolerance


def test_half_float_keeps_its_precision_and_untouched_pixels(engine):
    pixels = photo_pixels(small_photo("astronaut", 40), "RGBAF32").astype(np.float16)
    answer = recolor(engine, pixels, "RGBAF16", "chang2015")
    transparent = pixels[..., 3] == 0
    assert np.array_equal(answer[transparent], pixels[transparent])  # bit for bit
    assert not np.array_equal(answer[~transparent], pixels[~transparent])


@pytest.mark.parametrize("method", ["chang2015", "palettenet"])
@pytest.mark.parametrize(
    "rgba, bgra",
    [("RGBA16", "BGRA16"), ("RGBA16_LINEAR", "BGRA16_LINEAR"), ("RGBA8_LINEAR", "BGRA8_LINEAR")],
)
def test_bgra_formats_are_their_rgba_twins_with_red_and_blue_swapped(engine, method, rgba, bgra):
    """Krita's integer layers as pixelData gives them (B, G, R, A): the same picture in
    either order comes back as exactly the same colours, in the order it was sent (and the
    RGBA twins give the encoded formats' colours, above)."""
    assert FORMATS[bgra].dtype == FORMATS[rgba].dtype
    assert FORMATS[bgra].linear == FORMATS[rgba].linear
    pixels = photo_pixels(small_photo("coffee", 48), "RGBA16")
    if FORMATS[rgba].linear:
        pixels = as_linear(pixels, "RGBA16", rgba)
    swapped = np.ascontiguousarray(pixels[..., [2, 1, 0, 3]])
    expected = recolor(engine, pixels, rgba, method)
    answer = recolor(engine, swapped, bgra, method)
    assert np.array_equal(answer[..., [2, 1, 0, 3]], expected)
