"""split_design_seeds on synthetic Design-Seeds composites built from skimage's sample photos."""

import io
from functools import cache

import numpy as np
import pytest
from PIL import Image
from skimage import data
from skimage.transform import resize

from training.design_seeds import LayoutError, split_design_seeds

WHITE = (255, 255, 255)
# Six distinct swatch colours, including a dark, a light and two close-ish neighbours.
COLOURS = np.array(
    [
        [178, 34, 52],
        [236, 201, 120],
        [46, 92, 140],
        [60, 80, 150],
        [18, 24, 20],
        [140, 190, 160],
    ],
    dtype=np.uint8,
)


@cache
def _photo(name: str, height: int, width: int) -> np.ndarray:
    """A bundled skimage sample photo resized to (height, width), uint8 RGB."""
    image = getattr(data, name)()
    return (resize(image, (height, width), anti_aliasing=True) * 255).round().astype(np.uint8)


def _compose(
    photo: np.ndarray,
    colours: np.ndarray,
    side: str = "right",
    gap: int = 12,
    separator: int = 5,
    strip: int = 70,
    gap_colour=WHITE,
) -> np.ndarray:
    """Photo + gap + a strip of equal swatches (with separators in the gap colour)."""
    if side == "bottom":
        # Build the right-hand layout on the transposed photo and transpose back.
        transposed = _compose(
            photo.transpose(1, 0, 2), colours, "right", gap, separator, strip, gap_colour
        )
        return np.ascontiguousarray(transposed.transpose(1, 0, 2))
    height, width = photo.shape[:2]
    out = np.empty((height, width + gap + strip, 3), dtype=np.uint8)
    out[...] = gap_colour
    out[:, :width] = photo
    count = len(colours)
    swatch = (height - (count - 1) * separator) / count
    for i, colour in enumerate(colours):
        top = round(i * (swatch + separator))
        out[top : round(top + swatch), width + gap :] = colour
    return out


def _jpeg(image: np.ndarray, quality: int = 90) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))


def _check(composite, photo, colours, tolerance):
    cropped, palette = split_design_seeds(composite)
    assert cropped.dtype == np.uint8 and cropped.ndim == 3
    assert palette.shape == (6, 3)
    assert np.all((palette >= 0) & (palette <= 1))
    error = np.abs(palette * 255 - colours).max()
    assert error <= tolerance, f"palette off by {error} levels:\n{np.round(palette * 255)}"
    assert abs(cropped.shape[0] - photo.shape[0]) <= 2, (cropped.shape, photo.shape)
    assert abs(cropped.shape[1] - photo.shape[1]) <= 2, (cropped.shape, photo.shape)
    return cropped


@pytest.mark.parametrize("side", ["right", "bottom"])
@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea"])
def test_white_gap(side, name):
    photo = _photo(name, 420, 300) if side == "right" else _photo(name, 300, 420)
    cropped = _check(_compose(photo, COLOURS, side), photo, COLOURS, tolerance=2)
    # Lossless input: the crop is the photo itself, pixel for pixel.
    assert cropped.shape == photo.shape
    np.testing.assert_array_equal(cropped, photo)


@pytest.mark.parametrize("side", ["right", "bottom"])
def test_no_gap_no_separators(side):
    photo = _photo("coffee", 360, 280) if side == "right" else _photo("coffee", 280, 360)
    composite = _compose(photo, COLOURS, side, gap=0, separator=0)
    _check(composite, photo, COLOURS, tolerance=2)


@pytest.mark.parametrize("side", ["right", "bottom"])
@pytest.mark.parametrize("name", ["astronaut", "chelsea"])
def test_jpeg_quality_90(side, name):
    photo = _photo(name, 400, 320) if side == "right" else _photo(name, 320, 400)
    composite = _jpeg(_compose(photo, COLOURS, side))
    _check(composite, photo, COLOURS, tolerance=4)


def test_jpeg_without_gap():
    photo = _photo("astronaut", 400, 300)
    composite = _jpeg(_compose(photo, COLOURS, gap=0, separator=3))
    _check(composite, photo, COLOURS, tolerance=4)


def test_grey_gap_and_thin_strip():
    photo = _photo("chelsea", 300, 400)
    composite = _compose(photo, COLOURS, gap=6, separator=3, strip=30, gap_colour=(90, 90, 90))
    _check(composite, photo, COLOURS, tolerance=2)


def test_white_swatch_and_repeated_swatch():
    # A swatch in the gap colour still counts (the separators around it merge into it), and two
    # equal neighbours stay two because a separator lies between them.
    colours = COLOURS.copy()
    colours[2] = WHITE
    colours[5] = colours[4]
    photo = _photo("astronaut", 420, 300)
    _check(_jpeg(_compose(photo, colours)), photo, colours, tolerance=4)


def test_outer_frame_is_trimmed():
    photo = _photo("coffee", 360, 280)
    framed = np.full((360 + 2 * 15, 280 + 12 + 70 + 2 * 15, 3), 255, dtype=np.uint8)
    framed[15:-15, 15:-15] = _compose(photo, COLOURS)
    _check(framed, photo, COLOURS, tolerance=2)


@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea", "rocket"])
def test_plain_photo_raises(name):
    with pytest.raises(LayoutError, match="no six-swatch palette strip") as caught:
        split_design_seeds(_photo(name, 300, 400))
    # The message says what was seen on each edge.
    assert "right edge:" in str(caught.value) and "bottom edge:" in str(caught.value)


@pytest.mark.parametrize("count", [5, 7])
def test_wrong_swatch_count_raises(count):
    photo = _photo("coffee", 360, 280)
    colours = np.resize(COLOURS, (count, 3))
    with pytest.raises(LayoutError, match="expected 6"):
        split_design_seeds(_compose(photo, colours))


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((40, 40), np.uint8),
        np.zeros((40, 40, 3), np.float32),
        np.zeros((8, 8, 3), np.uint8),
    ],
)
def test_bad_input_raises(image):
    with pytest.raises(LayoutError):
        split_design_seeds(image)
