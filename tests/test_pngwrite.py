"""The fast PNG writer: files every decoder reads back exactly, on any number of bands."""

import io
import zlib

import cv2
import imagecodecs
import numpy as np
import pytest
from PIL import Image

from backend.cli import pngwrite


def photo(dtype, channels: int, height: int = 123, width: int = 77) -> np.ndarray:
    """A photo crop (smooth areas and edges) with a varying alpha when channels is 4."""
    from skimage import data

    rgb = data.astronaut()[:height, 100 : 100 + width].astype(dtype)
    if dtype == np.uint16:  # all 16 bits used, not only 8-bit values times 257
        rgb = rgb * 257 + np.arange(width, dtype=np.uint16)[None, :, None] % 251
    if channels == 3:
        return np.ascontiguousarray(rgb)
    maximum = np.iinfo(dtype).max
    alpha = np.linspace(0, maximum, width * height).reshape(height, width, 1).astype(dtype)
    return np.concatenate([rgb, alpha], axis=2)


def chunks(png: bytes) -> list[tuple[bytes, bytes]]:
    """(type, data) of every chunk, each CRC checked."""
    assert png[:8] == pngwrite.SIGNATURE
    found, position = [], 8
    while position < len(png):
        length = int.from_bytes(png[position : position + 4], "big")
        kind = png[position + 4 : position + 8]
        data = png[position + 8 : position + 8 + length]
        crc = int.from_bytes(png[position + 8 + length : position + 12 + length], "big")
        assert crc == zlib.crc32(kind + data), kind
        found.append((kind, data))
        position += 12 + length
    return found


def opencv_rgb(png: bytes) -> np.ndarray:
    bgr = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
    code = cv2.COLOR_BGRA2RGBA if bgr.shape[2] == 4 else cv2.COLOR_BGR2RGB
    return cv2.cvtColor(bgr, code)


@pytest.mark.parametrize("band_bytes", [1, 1000, pngwrite.BAND_BYTES])
@pytest.mark.parametrize("channels", [3, 4])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_libpng_opencv_and_pillow_read_back_every_pixel(monkeypatch, band_bytes, channels, dtype):
    """One row per band, a few rows per band (odd sizes, the last shorter) and one band."""
    monkeypatch.setattr(pngwrite, "BAND_BYTES", band_bytes)
    pixels = photo(dtype, channels)
    png = pngwrite.encode(pixels)
    np.testing.assert_array_equal(imagecodecs.png_decode(png), pixels)  # libpng
    np.testing.assert_array_equal(opencv_rgb(png), pixels)  # OpenCV's own libpng and zlib
    with Image.open(io.BytesIO(png)) as image:
        assert image.size == (pixels.shape[1], pixels.shape[0])
        if dtype == np.uint8:  # Pillow reads 16-bit colour only as 8 bits
            assert image.mode == ("RGBA" if channels == 4 else "RGB")
            np.testing.assert_array_equal(np.asarray(image), pixels)
    kinds = [kind for kind, _ in chunks(png)]
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND" and set(kinds[1:-1]) == {b"IDAT"}
    if band_bytes == 1:
        assert len(kinds) == 2 + pixels.shape[0] + 1  # a chunk per band, then the checksum


def test_the_image_data_is_one_zlib_stream_with_its_checksum():
    """zlib checks the Adler-32 combined from the bands; the scanlines are PNG's Up filter."""
    pixels = photo(np.uint8, 4, height=40)
    png = pngwrite.encode(pixels)
    stream = b"".join(data for kind, data in chunks(png) if kind == b"IDAT")
    scanlines = np.frombuffer(zlib.decompress(stream), np.uint8).reshape(40, -1)
    assert (scanlines[:, 0] == 2).all()
    rows = pixels.reshape(40, -1)
    np.testing.assert_array_equal(scanlines[0, 1:], rows[0])
    np.testing.assert_array_equal(scanlines[1:, 1:], rows[1:] - rows[:-1])


@pytest.mark.parametrize("shape", [(1, 1, 4), (1, 500, 3), (500, 1, 4), (3, 2, 3)])
def test_tiny_and_thin_images(monkeypatch, shape):
    monkeypatch.setattr(pngwrite, "BAND_BYTES", 16)
    pixels = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    np.testing.assert_array_equal(imagecodecs.png_decode(pngwrite.encode(pixels)), pixels)


def test_flat_art_stays_small():
    pixels = np.zeros((2000, 3000, 4), np.uint8)
    pixels[..., 3] = 255
    pixels[500:1500, 1000:2000, :3] = (200, 30, 60)
    png = pngwrite.encode(pixels)
    assert len(png) < pixels.nbytes / 200  # 77 KB for 24 MB (libpng at level 6: 28 KB)
    np.testing.assert_array_equal(imagecodecs.png_decode(png), pixels)


@pytest.mark.parametrize("lengths", [(0, 5), (5, 0), (1, 1), (70_000, 3), (65_521, 200_000)])
def test_adler32_combine_is_zlibs_checksum_of_the_joined_bytes(lengths):
    rng = np.random.default_rng(lengths[0])
    first, second = (rng.integers(0, 256, n, dtype=np.uint8).tobytes() for n in lengths)
    combined = pngwrite.adler32_combine(zlib.adler32(first), zlib.adler32(second), len(second))
    assert combined == zlib.adler32(first + second)


@pytest.mark.parametrize(
    "pixels",
    [np.zeros((4, 4, 2), np.uint8), np.zeros((4, 4), np.uint8), np.zeros((4, 4, 3), np.float32),
     np.zeros((0, 4, 3), np.uint8)],
)  # fmt: skip
def test_other_arrays_are_refused(pixels):
    with pytest.raises(ValueError, match="no PNG"):
        pngwrite.encode(pixels)
