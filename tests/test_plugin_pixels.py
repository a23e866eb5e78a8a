"""Layer pixels <-> wire pixels in the plug-in (plugin/recolor_with_palette/pixels.py): the
byte layouts Krita uses, precision kept, the sRGB curve for linear profiles, and pixels the
daemon did not change coming back bit for bit. Both the numpy and the pure-Python paths (the
editors' Pythons usually have no numpy) are checked, and must agree."""

import struct

import numpy as np
import pytest

from plugin.recolor_with_palette import pixels
from plugin.recolor_with_palette.pixels import (
    Pixels,
    is_linear_profile,
    layer_to_wire,
    srgb_decode,
    srgb_encode,
    wire_to_layer,
)


@pytest.fixture(params=["numpy", "pure"])
def path(request, monkeypatch):
    if request.param == "pure":
        monkeypatch.setattr(pixels, "numpy", None)
    return request.param


def krita_layer(depth: str, count: int = 64, seed: int = 0) -> tuple[np.ndarray, bytes]:
    """Random RGBA values (R, G, B, A order, 0..1) and Krita's raw bytes for them."""
    rng = np.random.default_rng(seed)
    rgba = rng.random((count, 4))
    rgba[: count // 4, 3] = 0.0  # some transparent pixels, whose colour must stay too
    if depth == "U8":
        raw = np.round(rgba[:, [2, 1, 0, 3]] * 255).astype("u1")
    elif depth == "U16":
        raw = np.round(rgba[:, [2, 1, 0, 3]] * 65535).astype("=u2")
    elif depth == "F16":
        raw = rgba.astype("=f2")
    else:
        raw = rgba.astype("=f4")
    return rgba, raw.tobytes()


@pytest.mark.parametrize("depth", ["U8", "U16", "F16", "F32"])
def test_wire_carries_red_green_blue_alpha_at_the_layers_precision(depth, path):
    rgba, raw = krita_layer(depth)
    pixel_format, wire = layer_to_wire(raw, depth, linear=False)
    expected = {"U8": "BGRA8", "U16": "RGBA16", "F16": "RGBAF32", "F32": "RGBAF32"}[depth]
    assert pixel_format == expected
    if depth == "U8":  # Krita's own byte order is a wire format: sent as it is
        assert wire == raw
        return
    dtype = "<u2" if depth == "U16" else "<f4"
    values = np.frombuffer(wire, dtype).reshape(-1, 4)
    if depth == "U16":
        assert np.array_equal(values, np.round(rgba * 65535))
    elif depth == "F16":  # every half value is exact in float32
        assert np.array_equal(values, rgba.astype(np.float16).astype(np.float32))
    else:
        assert np.array_equal(values, rgba.astype(np.float32))


@pytest.mark.parametrize("depth", ["U8", "U16", "F16", "F32"])
@pytest.mark.parametrize("linear", [False, True])
def test_unchanged_reply_gives_back_the_layer_bit_for_bit(depth, linear, path):
    _, raw = krita_layer(depth, seed=1)
    _, wire = layer_to_wire(raw, depth, linear)
    assert wire_to_layer(wire, depth, linear, raw, wire) == raw


@pytest.mark.parametrize("depth", ["U8", "U16", "F16", "F32"])
def test_a_changed_colour_lands_in_the_right_channel(depth, path):
    """The daemon writes pure red into pixel 0: Krita must see it as red."""
    _, raw = krita_layer(depth, count=4, seed=2)
    pixel_format, wire = layer_to_wire(raw, depth, linear=False)
    reply = bytearray(wire)
    if pixel_format == "BGRA8":
        reply[0:3] = bytes([0, 0, 255])
    elif pixel_format == "RGBA16":
        reply[0:6] = struct.pack("<3H", 65535, 0, 0)
    else:
        reply[0:12] = struct.pack("<3f", 1.0, 0.0, 0.0)
    back = wire_to_layer(bytes(reply), depth, False, raw, wire)
    if depth == "U8":
        assert back[0:3] == bytes([0, 0, 255])  # B, G, R
    elif depth == "U16":
        assert struct.unpack("=3H", back[0:6]) == (0, 0, 65535)
    elif depth == "F16":
        assert struct.unpack("=3e", back[0:6]) == (1.0, 0.0, 0.0)
    else:
        assert struct.unpack("=3f", back[0:12]) == (1.0, 0.0, 0.0)
    assert back[len(back) // 4 :] == raw[len(raw) // 4 :]  # the other pixels untouched


def test_linear_layers_travel_srgb_encoded_and_alpha_never_curved(path):
    rgba = np.array([[0.0, 0.002, 0.18, 0.5], [1.0, 0.5, 0.214, 0.25]])
    raw = rgba.astype("=f4").tobytes()
    _, wire = layer_to_wire(raw, "F32", linear=True)
    values = np.frombuffer(wire, "<f4").reshape(-1, 4)
    expected = [[srgb_encode(v) for v in row[:3]] for row in rgba]
    assert np.allclose(values[:, :3], expected, atol=1e-6)
    assert values[1, 1] == pytest.approx(0.7354, abs=1e-3)  # linear 0.5 is sRGB 188/255
    assert np.array_equal(values[:, 3], rgba[:, 3].astype(np.float32))


def test_linear_16_bit_round_trip_of_a_recoloured_value_is_close():
    raw = struct.pack("=4H", 1000, 20000, 65535, 65535)  # B, G, R, A
    _, wire = layer_to_wire(raw, "U16", linear=True)
    red, green, blue, alpha = struct.unpack("<4H", wire)
    assert alpha == 65535 and red == 65535
    assert blue == round(srgb_encode(1000 / 65535) * 65535)
    changed = struct.pack("<4H", red, green - 1, blue, alpha)  # the daemon moved green
    back = struct.unpack("=4H", wire_to_layer(changed, "U16", True, raw, wire))
    assert back[0] == 1000 and back[2] == 65535 and back[3] == 65535
    assert abs(back[1] - round(srgb_decode((green - 1) / 65535) * 65535)) <= 1


def test_numpy_and_pure_python_agree():
    _, raw = krita_layer("F16", count=256, seed=3)
    with_numpy = layer_to_wire(raw, "F16", linear=True)
    saved = pixels.numpy
    try:
        pixels.numpy = None
        pure = layer_to_wire(raw, "F16", linear=True)
        pure_back = wire_to_layer(pure[1], "F16", True, raw, None)
    finally:
        pixels.numpy = saved
    assert np.allclose(
        np.frombuffer(with_numpy[1], "<f4"), np.frombuffer(pure[1], "<f4"), atol=1e-6
    )
    assert wire_to_layer(with_numpy[1], "F16", True, raw, None) == pure_back


def test_half_float_results_beyond_the_half_range_are_clamped_not_infinite(path):
    raw = np.array([[0.5, 0.5, 0.5, 1.0]], "=f2").tobytes()
    reply = struct.pack("<4f", 1e6, -1e6, 0.25, 1.0)
    back = np.frombuffer(wire_to_layer(reply, "F16", False, raw, None), "=f2")
    assert np.isfinite(back).all() and back[0] == 65504 and back[1] == -65504


def test_profile_names_that_mean_linear():
    for name in ("sRGB-elle-V2-g10.icc", "scRGB (linear)", "Rec2020-elle-V4-g10.icc",
                 "krita-2.5, lcms sRGB built-in with linear gamma TRC"):  # fmt: skip
        assert is_linear_profile(name), name
    for name in ("sRGB-elle-V2-srgbtrc.icc", "sRGB built-in", "ClayRGB-elle-V2-g22.icc"):
        assert not is_linear_profile(name), name


def test_pixels_refuse_a_wrong_byte_count():
    with pytest.raises(ValueError, match="needs 32 bytes"):
        Pixels(2, 4, "BGRA8", b"\0" * 31)
