"""Layer pixels <-> wire pixels in the plug-in (plugin/recolor_with_palette/pixels.py): each of
Krita's layouts goes as the wire format with exactly its bytes (the `_LINEAR` one for a
linear profile), so the editor's Python does no per-pixel work, with or without numpy; the
backend reads those bytes as the colours Krita means."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from backend.core.pixels import FORMATS
from plugin.recolor_with_palette import pixels
from plugin.recolor_with_palette.pixels import (
    WIRE_BYTES_PER_PIXEL,
    Pixels,
    is_linear_profile,
    layer_to_wire,
    tile_parts,
    wire_format,
    wire_to_layer,
    within_reference_limit,
)
from plugin.recolor_with_palette.wire import PIXEL_FORMATS

ROOT = Path(__file__).resolve().parents[1]
DEPTHS = ["U8", "U16", "F16", "F32"]


def krita_layer(depth: str, count: int = 64, seed: int = 0) -> tuple[np.ndarray, bytes]:
    """Random RGBA values (R, G, B, A order, 0..1) and Krita's raw bytes for them: B, G, R, A
    for integer depths, R, G, B, A for float ones, native byte order."""
    rng = np.random.default_rng(seed)
    rgba = rng.random((count, 4))
    rgba[: count // 4, 3] = 0.0
    if depth == "U8":
        raw = np.round(rgba[:, [2, 1, 0, 3]] * 255).astype("u1")
    elif depth == "U16":
        raw = np.round(rgba[:, [2, 1, 0, 3]] * 65535).astype("=u2")
    elif depth == "F16":
        raw = rgba.astype("=f2")
    else:
        raw = rgba.astype("=f4")
    return rgba, raw.tobytes()


@pytest.mark.parametrize("linear", [False, True])
@pytest.mark.parametrize("depth", DEPTHS)
def test_each_depth_goes_as_its_own_bytes_in_the_matching_wire_format(depth, linear):
    rgba, raw = krita_layer(depth)
    pixel_format, wire = layer_to_wire(raw, depth, linear)
    assert wire == raw  # not converted: sent as Krita gave it
    assert PIXEL_FORMATS[pixel_format][2] is linear  # the daemon applies the curve itself
    assert pixel_format.endswith("_LINEAR") is linear
    # The backend reads those bytes as the colours Krita means, at the layer's precision.
    fmt = FORMATS[pixel_format]
    values = np.frombuffer(wire, fmt.dtype).reshape(-1, 4).astype(np.float64) / fmt.maximum
    channels = [*fmt.rgb, fmt.alpha]
    step = {"U8": 1 / 255, "U16": 1 / 65535, "F16": 1e-3, "F32": 1e-7}[depth]
    assert np.abs(values[:, channels] - rgba).max() <= step
    assert fmt.bytes_per_pixel == pixels.BYTES_PER_PIXEL[depth]


@pytest.mark.parametrize("depth", DEPTHS)
def test_the_reply_is_written_back_as_it_is(depth):
    _, raw = krita_layer(depth, seed=1)
    assert wire_to_layer(raw, depth) == raw


def test_formats_of_each_depth():
    assert [wire_format(d, False) for d in DEPTHS] == ["BGRA8", "BGRA16", "RGBAF16", "RGBAF32"]
    assert [wire_format(d, True) for d in DEPTHS] == [
        "BGRA8_LINEAR", "BGRA16_LINEAR", "RGBAF16_LINEAR", "RGBAF32_LINEAR"]  # fmt: skip
    with pytest.raises(ValueError, match="U32"):
        layer_to_wire(b"", "U32", False)


def test_a_big_endian_machine_swaps_to_the_wires_little_endian(monkeypatch):
    monkeypatch.setattr(pixels, "LITTLE_ENDIAN", False)
    _, raw = krita_layer("U16")
    _, wire = layer_to_wire(raw, "U16", True)
    assert wire == np.frombuffer(raw, "=u2").byteswap().tobytes()
    assert wire_to_layer(wire, "U16") == raw
    _, raw = krita_layer("F32")
    assert layer_to_wire(raw, "F32", False)[1] == np.frombuffer(raw, "=f4").byteswap().tobytes()
    _, raw = krita_layer("U8")
    assert layer_to_wire(raw, "U8", True)[1] == raw


def test_no_per_pixel_python_without_numpy():
    """As in Krita's numpy-less Python: a 12 megapixel 16-bit layer costs no per-pixel work
    (was 7 s of pure Python)."""
    script = (
        "import sys, time; sys.modules['numpy'] = None\n"
        "from plugin.recolor_with_palette.pixels import layer_to_wire, wire_to_layer\n"
        "raw = bytes(4000 * 3000 * 8); t = time.perf_counter()\n"
        "fmt, wire = layer_to_wire(raw, 'U16', True); back = wire_to_layer(wire, 'U16')\n"
        "assert back == raw and fmt == 'BGRA16_LINEAR'\n"
        "print(time.perf_counter() - t)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                         text=True, timeout=120, env=env)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert float(run.stdout) < 1.0


def test_profile_names_that_mean_linear():
    for name in ("sRGB-elle-V2-g10.icc", "scRGB (linear)", "Rec2020-elle-V4-g10.icc",
                 "krita-2.5, lcms sRGB built-in with linear gamma TRC"):  # fmt: skip
        assert is_linear_profile(name), name
    for name in ("sRGB-elle-V2-srgbtrc.icc", "sRGB built-in", "ClayRGB-elle-V2-g22.icc"):
        assert not is_linear_profile(name), name


def test_pixels_refuse_a_wrong_byte_count():
    with pytest.raises(ValueError, match="needs 32 bytes"):
        Pixels(2, 4, "BGRA8", b"\0" * 31)


@pytest.mark.parametrize("pixel_format", ["BGRA8", "BGRA16_LINEAR", "RGBAF32"])
def test_a_reference_image_is_thinned_to_the_limit_keeping_exact_pixels(pixel_format):
    size = WIRE_BYTES_PER_PIXEL[pixel_format]
    width, height = 10, 7
    data = b"".join(bytes([x, y]) * (size // 2) for y in range(height) for x in range(width))
    image = Pixels(width, height, pixel_format, data)
    assert within_reference_limit(image, 70) is image
    thinned = within_reference_limit(image, 20)  # every 2nd pixel of every 2nd row: 5 x 4
    assert (thinned.width, thinned.height, thinned.pixel_format) == (5, 4, pixel_format)
    for y in range(4):
        for x in range(5):
            pixel = thinned.data[(y * 5 + x) * size : (y * 5 + x + 1) * size]
            assert pixel == bytes([2 * x, 2 * y]) * (size // 2)


def test_pieces_are_tiled_in_a_square_grid_with_transparent_gaps():
    def solid(width, height, value):
        return Pixels(width, height, "BGRA8", bytes([value, value, value, 255]) * width * height)

    parts = [solid(3, 2, 10), solid(2, 3, 20), solid(3, 3, 30), solid(1, 1, 40), solid(2, 2, 50)]
    grid = tile_parts(parts)  # 3 columns of width 3: rows of heights 3 and 2
    assert (grid.width, grid.height) == (9, 5)
    image = np.frombuffer(grid.data, np.uint8).reshape(5, 9, 4)
    assert (image[:2, 0:3, 0] == 10).all() and (image[2, 0:3] == 0).all()
    assert (image[:3, 3:5, 0] == 20).all() and (image[:, 5] == 0).all()
    assert (image[:3, 6:9, 0] == 30).all()
    assert image[3, 0, 0] == 40 and (image[3:, 1:3] == 0).all() and (image[4, 0] == 0).all()
    assert (image[3:5, 3:5, 0] == 50).all() and (image[3:, 6:] == 0).all()
    assert tile_parts(parts[:1]) == parts[0]
