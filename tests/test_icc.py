"""Layers in a wide-gamut ICC profile (backend/service/icc.py and a request's icc_profile):
LittleCMS converts them to linear sRGB and back. Checked against Pillow's ImageCms (its
LittleCMS, 8-bit) for 8-bit pixels; round trips at every depth keep the layer's values and
colours outside sRGB; a wide-gamut copy of a picture recolours to what the sRGB picture
gives; bad profiles get a clear error and the daemon answers the next request."""

import base64
import io
import json

import imagecodecs
import numpy as np
import pytest
from PIL import Image, ImageCms
from skimage import data
from skimage.color import deltaE_ciede2000, rgb2lab

from backend.core.color import linear_to_srgb_np
from backend.core.pixels import FORMATS
from backend.service import icc
from backend.service.client import Client
from backend.service.engine import Engine
from backend.service.protocol import ProtocolError, encode_request, parse_request
from backend.wire import MAX_ICC_PROFILE_BYTES, PROTOCOL

D65 = (0.3127, 0.3290)
D50 = (0.3457, 0.3585)
# Profiles made by LittleCMS (no file needed): Rec. 2020 primaries with gamma 2.2 and with
# linear light, and ProPhoto's primaries and white with gamma 1.8.
REC2020 = imagecodecs.cms_profile(
    "rgb", whitepoint=D65, primaries=(0.708, 0.292, 0.170, 0.797, 0.131, 0.046), gamma=2.2
)
REC2020_LINEAR = imagecodecs.cms_profile(
    "rgb", whitepoint=D65, primaries=(0.708, 0.292, 0.170, 0.797, 0.131, 0.046), gamma=1.0
)
PROPHOTO = imagecodecs.cms_profile(
    "rgb", whitepoint=D50, primaries=(0.7347, 0.2653, 0.1596, 0.8404, 0.0366, 0.0001), gamma=1.8
)
PALETTE = ["#203040", "#c05020", "#e0d0a0"]
TARGET = ["#102060", "#20a040", "#f0e060"]


def pillow_to_srgb8(rgb8: np.ndarray, profile: bytes) -> np.ndarray:
    """8-bit RGB in `profile` -> 8-bit sRGB by Pillow's ImageCms (relative colorimetric)."""
    transform = ImageCms.buildTransform(
        ImageCms.ImageCmsProfile(io.BytesIO(profile)),
        ImageCms.createProfile("sRGB"),
        "RGB",
        "RGB",
        renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC,
    )
    return np.asarray(ImageCms.applyTransform(Image.fromarray(rgb8), transform))


def srgb8(linear_rgba: np.ndarray) -> np.ndarray:
    """Linear sRGB floats -> 8-bit sRGB (clipped), as a display shows them."""
    encoded = linear_to_srgb_np(np.clip(linear_rgba[..., :3], 0, 1))
    return np.round(encoded * 255).astype(np.uint8)


@pytest.mark.parametrize("profile", [REC2020, PROPHOTO], ids=["rec2020", "prophoto"])
def test_8bit_conversion_agrees_with_pillow_imagecms(profile):
    rgb = data.astronaut()[::4, ::4]
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    linear = icc.to_linear_srgb(rgba[..., [2, 1, 0, 3]].copy(), FORMATS["BGRA8"], profile)
    ours = srgb8(linear).astype(int)
    theirs = pillow_to_srgb8(rgb, profile).astype(int)
    outside = ((linear[..., :3] < 0) | (linear[..., :3] > 1)).any(axis=-1)
    assert outside.mean() > 0.2  # read in a wide gamut, the photo leaves sRGB: both clip
    difference = np.abs(ours - theirs)
    # Pillow's 8-bit transform interpolates a precalculated table: a level apart at most
    assert difference.max() <= 1 and difference.mean() < 0.1
    assert np.array_equal(linear[..., 3], np.ones(rgb.shape[:2], np.float32))


@pytest.mark.parametrize("name", ["BGRA8", "RGBA8", "BGRA16", "RGBA16", "RGBAF16", "RGBAF32"])
def test_round_trip_keeps_the_layers_values(name):
    fmt = FORMATS[name]
    rng = np.random.default_rng(3)
    if fmt.is_float:
        pixels = rng.random((40, 50, 4)).astype(fmt.dtype)
    else:
        pixels = rng.integers(0, int(fmt.maximum) + 1, (40, 50, 4)).astype(fmt.dtype)
    linear = icc.to_linear_srgb(pixels, fmt, PROPHOTO)
    alpha = pixels[..., fmt.alpha].astype(np.float32) / np.float32(fmt.maximum)
    assert np.allclose(linear[..., 3], alpha, atol=1e-6)  # alpha carried, rescaled
    assert linear[..., :3].min() < 0 or linear[..., :3].max() > 1  # outside sRGB, kept
    back = np.empty_like(pixels)
    icc.from_linear_srgb(linear, fmt, PROPHOTO, back)
    if fmt.is_float:
        tolerance = 1e-3 if name == "RGBAF16" else 1e-5  # a half float's last bit
        assert np.allclose(back, pixels, atol=tolerance)
    else:
        assert np.array_equal(back, pixels)


def test_colours_outside_srgb_survive_in_float():
    green = np.array([[[0.0, 1.0, 0.0, 1.0]]], np.float32)  # Rec. 2020's own green
    linear = icc.to_linear_srgb(green, FORMATS["RGBAF32"], REC2020_LINEAR)
    assert linear[0, 0, 0] < -0.5 and linear[0, 0, 1] > 1  # far outside sRGB, not clipped
    back = np.empty_like(green)
    icc.from_linear_srgb(linear, FORMATS["RGBAF32"], REC2020_LINEAR, back)
    assert np.allclose(back, green, atol=1e-5)


def recolour(engine, pixels, pixel_format, profile=None, mask=None, **extra):
    height, width = pixels.shape[:2]
    header = {"op": "recolor", "width": width, "height": height, "pixel_format": pixel_format,
              "palette": TARGET, "source_palette": PALETTE, "method": "chang2015",
              **extra}  # fmt: skip
    if profile is not None:
        header["icc_profile"] = base64.b64encode(profile).decode()
    frames = engine.handle(encode_request(header, pixels, mask), 10**8)
    reply = json.loads(bytes(frames[0]))
    return reply, (bytes(frames[1]) if len(frames) > 1 else None)


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    return Engine(tmp_path_factory.mktemp("none") / "none.pt", "cpu", load_model=False)


def wide_gamut_copy(rgb8: np.ndarray, profile: bytes) -> np.ndarray:
    """The picture converted from sRGB into `profile` as 16-bit B, G, R, A (what Krita's
    Image > Convert Image Color Space makes of it), by LittleCMS."""
    rgba = np.dstack([rgb8, np.full(rgb8.shape[:2], 255, np.uint8)]).astype(np.float32) / 255
    linear = rgba.copy()
    linear[..., :3] = np.where(rgba[..., :3] <= 0.04045, rgba[..., :3] / 12.92,
                               ((rgba[..., :3] + 0.055) / 1.055) ** 2.4)  # fmt: skip
    out = np.empty(rgb8.shape[:2] + (4,), np.uint16)
    icc.from_linear_srgb(np.ascontiguousarray(linear), FORMATS["BGRA16"], profile, out)
    return out


def test_a_wide_gamut_copy_recolours_like_the_srgb_picture(engine):
    """Issue 15's bar: the same picture in sRGB and in a wide gamut, the same edit, results
    within CIEDE2000 2 once shown in sRGB."""
    rgb = data.coffee()[::3, ::3]
    height, width = rgb.shape[:2]
    rgba = np.dstack([rgb, np.full((height, width), 255, np.uint8)])
    srgb_reply, srgb_result = recolour(engine, rgba, "RGBA8")
    assert srgb_reply["ok"], srgb_reply
    srgb_result = np.frombuffer(srgb_result, np.uint8).reshape(height, width, 4)[..., :3]
    changed = deltaE_ciede2000(rgb2lab(rgb), rgb2lab(srgb_result))
    assert np.percentile(changed, 90) > 5  # the edit changed much of the picture
    for profile in (REC2020, PROPHOTO):
        wide = wide_gamut_copy(rgb, profile)
        reply, result = recolour(engine, wide, "BGRA16", profile)
        assert reply["ok"] and reply["icc_profile"] is True, reply
        assert reply["pixel_format"] == "BGRA16"
        result = np.frombuffer(result, "<u2").reshape(height, width, 4)
        assert np.array_equal(result[..., 3], wide[..., 3])
        shown = srgb8(icc.to_linear_srgb(result, FORMATS["BGRA16"], profile))
        difference = deltaE_ciede2000(rgb2lab(srgb_result), rgb2lab(shown))
        assert np.percentile(difference, 99) <= 2 and difference.mean() <= 1


def test_pixels_the_recolour_keeps_come_back_bit_for_bit(engine):
    rng = np.random.default_rng(5)
    pixels = rng.integers(0, 65536, (30, 40, 4)).astype("<u2")
    pixels[:5, :, 3] = 0  # fully transparent
    mask = np.full((30, 40), 255, np.uint8)
    mask[:, :10] = 0  # not selected
    reply, result = recolour(engine, pixels, "BGRA16", PROPHOTO, mask)
    assert reply["ok"], reply
    result = np.frombuffer(result, "<u2").reshape(30, 40, 4)
    assert np.array_equal(result[:5], pixels[:5]) and np.array_equal(result[:, :10], pixels[:, :10])
    assert not np.array_equal(result[5:, 10:], pixels[5:, 10:])
    # an edit that maps every colour to itself gives the layer back exactly
    reply, same = recolour(engine, pixels, "BGRA16", PROPHOTO, source_palette=TARGET)
    assert reply["ok"] and same == pixels.tobytes()


def test_palette_and_preview_take_a_profile(engine):
    rgb = data.coffee()[::6, ::6]
    wide = wide_gamut_copy(rgb, PROPHOTO)
    height, width = wide.shape[:2]
    header = {"op": "palette", "width": width, "height": height, "pixel_format": "BGRA16",
              "icc_profile": base64.b64encode(PROPHOTO).decode(), "options": {"k": 4}}  # fmt: skip
    wide_palette = json.loads(bytes(engine.handle(encode_request(header, wide), 10**8)[0]))
    rgba = np.dstack([rgb, np.full((height, width), 255, np.uint8)])
    header.update(pixel_format="RGBA8", icc_profile=None)
    srgb_palette = json.loads(bytes(engine.handle(encode_request(header, rgba), 10**8)[0]))
    for ours, theirs in zip(wide_palette["palette"], srgb_palette["palette"]):
        a, b = (np.array([int(c[i : i + 2], 16) for i in (1, 3, 5)]) for c in (ours, theirs))
        assert np.abs(a - b).max() <= 3, (wide_palette, srgb_palette)
    reply, preview = recolour(engine, wide, "BGRA16", PROPHOTO, options={"max_side": 32})
    assert reply["ok"] and max(reply["width"], reply["height"]) == 32
    assert len(preview) == reply["width"] * reply["height"] * 8


def profile_text(profile: bytes) -> str:
    return base64.b64encode(profile).decode()


CMYK_HEADER = REC2020[:16] + b"CMYK" + REC2020[20:]
BAD_PROFILES = [
    (12, "must be a base64 string"),
    ("not base64!", "not base64"),
    (base64.b64encode(b"x" * 200).decode(), "not an ICC profile"),
    (profile_text(CMYK_HEADER), "colour space 'CMYK'"),
    ("A" * (4 * (MAX_ICC_PROFILE_BYTES // 3 + 2)), "at most"),  # fits the header
]


@pytest.mark.parametrize("value, words", BAD_PROFILES)
def test_bad_profiles_are_refused_by_the_protocol(value, words):
    header = {"protocol": PROTOCOL, "op": "recolor", "width": 2, "height": 2,
              "pixel_format": "RGBA8", "palette": TARGET, "icc_profile": value}  # fmt: skip
    with pytest.raises(ProtocolError) as caught:
        parse_request(encode_request(header, bytes(16)))
    assert caught.value.code == "bad_request" and caught.value.field == "icc_profile"
    assert words in caught.value.message


def test_a_linear_format_with_a_profile_is_refused():
    header = {"protocol": PROTOCOL, "op": "recolor", "width": 2, "height": 2, "palette": TARGET,
              "pixel_format": "RGBA16_LINEAR", "icc_profile": profile_text(REC2020)}  # fmt: skip
    with pytest.raises(ProtocolError) as caught:
        parse_request(encode_request(header, bytes(32)))
    assert "RGBA16 with the profile" in caught.value.message


def test_a_profile_littlecms_cannot_read_is_a_clear_error_and_the_daemon_goes_on(daemon):
    broken = bytearray(PROPHOTO)
    broken[128:] = b"\xff" * (len(broken) - 128)  # the tag table destroyed
    pixels = np.full((4, 4, 4), 128, np.uint8)
    header = {"op": "recolor", "width": 4, "height": 4, "pixel_format": "BGRA8",
              "palette": TARGET, "method": "chang2015"}  # fmt: skip
    with Client(daemon.address, timeout_s=60) as client:
        reply, _ = client.request({**header, "icc_profile": profile_text(bytes(broken))}, pixels)
        assert reply["ok"] is False and reply["error"]["code"] == "bad_request", reply
        assert reply["error"]["field"] == "icc_profile"
        assert "LittleCMS cannot" in reply["error"]["message"]
        reply, frames = client.request({**header, "icc_profile": profile_text(PROPHOTO)}, pixels)
        assert reply["ok"] and reply["icc_profile"] is True and len(frames[0]) == 64
        assert client.request({"op": "info"})[0]["icc_profiles"].startswith("lcms2")


def test_through_shared_memory_the_result_lands_in_the_reply_file(daemon, engine):
    """A layer big enough for the client's shared memory: the daemon recolours the
    converted copy and writes the result, converted back, into the client's reply file."""
    from backend.service.client import SHARED_MEMORY_MIN_BYTES

    side = int((SHARED_MEMORY_MIN_BYTES / 8) ** 0.5) + 8
    rgb = np.asarray(Image.fromarray(data.coffee()).resize((side, side)))
    wide = wide_gamut_copy(rgb, PROPHOTO)
    header = {"op": "recolor", "width": side, "height": side, "pixel_format": "BGRA16",
              "palette": TARGET, "source_palette": PALETTE, "method": "chang2015",
              "icc_profile": profile_text(PROPHOTO)}  # fmt: skip
    with Client(daemon.address, timeout_s=120) as client:
        reply, frames = client.request(header, wide)
        assert client.no_shared_memory is None, client.no_shared_memory
    assert reply["ok"] and reply["icc_profile"] is True and "shared_memory" in reply, reply
    _, in_process = recolour(engine, wide, "BGRA16", PROPHOTO)
    assert bytes(frames[0]) == in_process


@pytest.mark.parametrize("gamma", [0.0, -2.0])
@pytest.mark.parametrize("pixel_format", ["RGBAF32", "RGBAF16", "BGRA8"])
def test_a_degenerate_tone_curve_is_refused_not_made_infinite(engine, gamma, pixel_format):
    """QA: a profile whose tone curve has gamma 0 passed LittleCMS's checks, and a float
    layer came back "ok" holding infinite values (RGBAF16) or 1e22 (RGBAF32)."""
    profile = imagecodecs.cms_profile("rgb", whitepoint=D65, primaries=icc.SRGB_PRIMARIES,
                                      gamma=gamma)  # fmt: skip
    dtype = FORMATS[pixel_format].dtype
    pixels = np.full((4, 4, 4), 128 if dtype == np.uint8 else 0.5, dtype)
    reply, pixels_back = recolour(engine, pixels, pixel_format, profile)
    assert reply["ok"] is False and reply["error"]["code"] == "bad_request", reply
    assert reply["error"]["field"] == "icc_profile" and pixels_back is None
    assert "does not carry sRGB colours" in reply["error"]["message"]
