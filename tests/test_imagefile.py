"""The CLI keeps a file's depth: 16-bit PNG and TIFF, float TIFF, alpha."""

import imagecodecs
import numpy as np
import pytest
import tifffile
from PIL import Image

from backend.cli.imagefile import read_image
from backend.cli.main import main

PALETTE = "#0b1d51,#725ac1,#f7ece1"


def gradient(channels, dtype, maximum):
    ramp = np.linspace(0, 1, 1024)
    pixels = np.ones((4, 1024, channels))
    pixels[..., :3] = np.stack([ramp, 0.3 + 0.5 * ramp, 0.8 - 0.6 * ramp], axis=-1)
    if channels == 4:
        pixels[:, :100, 3] = 0.25
    return np.round(pixels * maximum).astype(dtype) if maximum > 1 else pixels.astype(dtype)


def recolor(source, output):
    main(["recolor", str(source), "-p", PALETTE, "-o", str(output), "--method", "chang2015"])


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16_bit_files_stay_16_bit_with_alpha(tmp_path, suffix):
    pixels = gradient(4, np.uint16, 65535)
    source = tmp_path / f"in{suffix}"
    if suffix == ".png":
        source.write_bytes(imagecodecs.png_encode(pixels))
    else:
        tifffile.imwrite(source, pixels, photometric="rgb", extrasamples=["unassalpha"])
    recolor(source, tmp_path / f"out{suffix}")
    out = read_image(tmp_path / f"out{suffix}")
    assert out.pixel_format == "RGBA16" and out.has_alpha
    np.testing.assert_array_equal(out.pixels[..., 3], pixels[..., 3])
    assert len(np.unique(out.pixels[..., 0])) > 256
    assert np.abs(out.pixels[..., :3].astype(float) - pixels[..., :3]).mean() > 500


def test_float_and_rgb_tiffs_keep_their_kind(tmp_path):
    floats = gradient(3, np.float32, 1)
    tifffile.imwrite(tmp_path / "f.tif", floats, photometric="rgb")
    recolor(tmp_path / "f.tif", tmp_path / "f-out.tif")
    out = tifffile.imread(tmp_path / "f-out.tif")
    assert out.dtype == np.float32 and out.shape == floats.shape  # no alpha added
    assert len(np.unique(out[..., 1])) > 256


def test_8_bit_files_go_through_pillow(tmp_path):
    pixels = gradient(3, np.uint8, 255)
    Image.fromarray(pixels).save(tmp_path / "in.jpg", quality=95)
    recolor(tmp_path / "in.jpg", tmp_path / "out.png")
    with Image.open(tmp_path / "out.png") as image:
        assert image.mode == "RGB" and image.size == (1024, 4)
