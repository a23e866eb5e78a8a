"""Pixels in an ICC profile's RGB space <-> linear-light sRGB floats, by LittleCMS.

A layer in a wide-gamut RGB space (Rec. 2020, ProPhoto, ACEScg, Large RGB...) travels in
its own pixel format with its ICC profile (a request's icc_profile, docs/PROTOCOL.md). The
daemon recolours it in linear-light sRGB floats (RGBAF32_LINEAR, the engine's widest
format) and converts the result back to the layer's profile and format, so the editor
writes back exactly what it would have stored and never converts a pixel itself.

LittleCMS (through imagecodecs, which releases the GIL while it converts) does all the
colour maths, band by band on every core. Its float transforms between matrix-shaper
profiles are unbounded: a colour outside sRGB comes out with components below 0 or above 1
and goes back to the colour it was, so pixels the recolour leaves alone survive the round
trip. Alpha is carried by LittleCMS too (cmsFLAGS_COPY_ALPHA rescales it from one channel
type to another), never colour-converted. Rendering intent: relative colorimetric (a
matrix-shaper profile has no other; for LUT profiles it keeps in-gamut colours as they are).
"""

import functools

import imagecodecs
import numpy as np

from backend.core.pixels import FORMATS, PixelFormat, on_all_cores

LINEAR_SRGB = FORMATS["RGBAF32_LINEAR"]  # what a profiled layer is recoloured in
RELATIVE_COLORIMETRIC = 1  # LittleCMS's INTENT_RELATIVE_COLORIMETRIC
_FLAGS = int(imagecodecs.CMS.FLAGS.COPY_ALPHA)
# sRGB's primaries and white (IEC 61966-2-1) as CIE xy, for the linear-light sRGB profile.
SRGB_PRIMARIES = (0.64, 0.33, 0.30, 0.60, 0.15, 0.06)
D65_WHITE = (0.3127, 0.3290)
# Pixels per LittleCMS call: each call builds its transform anew (well under a millisecond
# for matrix-shaper profiles), and bands keep both cores busy.
BAND_PIXELS = 1 << 18


class ProfileError(ValueError):
    """An ICC profile LittleCMS cannot use to convert these pixels; the message says why."""


@functools.cache
def linear_srgb_profile() -> bytes:
    """An ICC profile of linear-light sRGB (sRGB's primaries and D65 white, gamma 1.0),
    made by LittleCMS: the space RGBAF32_LINEAR pixels are in."""
    return imagecodecs.cms_profile("rgb", whitepoint=D65_WHITE, primaries=SRGB_PRIMARIES, gamma=1.0)


# check_profile's probe: sRGB colours any usable RGB profile can hold (the corners, edges
# and inside of the sRGB cube), sent into the profile and back.
_PROBE_LEVELS = np.linspace(0, 1, 5, dtype=np.float32)
# Where the probe may land in the profile's own encoding (nominally 0..1: scRGB and esRGB
# stay within -0.1..1.1, wide gamuts within 0..1) and how close it must come back (PQ's
# LUT profile: 0.003; a gamma-0 curve: 1.0).
ENCODED_RANGE = (-2.0, 3.0)
ROUND_TRIP_TOLERANCE = 0.01


@functools.lru_cache(maxsize=16)
def check_profile(profile: bytes) -> None:
    """ProfileError unless LittleCMS reads `profile` and carries sRGB colours into it and
    back: finite, within ENCODED_RANGE there, within ROUND_TRIP_TOLERANCE back. A
    device-link or a profile of another colour space cannot be used at all; a degenerate
    tone curve (gamma 0 or negative) or matrix sends colours to infinity or to one value.
    Remembered for the last 16 profiles: a layer's profile is checked once."""
    try:
        imagecodecs.cms_profile_validate(profile)
    except imagecodecs.CmsError:
        raise ProfileError("LittleCMS cannot read this ICC profile") from None
    levels = np.meshgrid(_PROBE_LEVELS, _PROBE_LEVELS, _PROBE_LEVELS, _PROBE_LEVELS[-1:])
    probe = np.stack(levels, -1).reshape(1, -1, 4)  # RGB and alpha 1
    try:
        there = _transform(probe, "rgba", linear_srgb_profile(), profile, np.empty_like(probe))
        back = _transform(there, "rgba", profile, linear_srgb_profile(), np.empty_like(probe))
    except (imagecodecs.CmsError, ValueError) as error:
        raise ProfileError(f"LittleCMS cannot convert RGB pixels with this ICC profile "
                           f"({error})") from None  # fmt: skip
    with np.errstate(invalid="ignore"):
        usable = (
            np.isfinite(there).all()
            and np.isfinite(back).all()
            and ENCODED_RANGE[0] <= there.min()
            and there.max() <= ENCODED_RANGE[1]
            and np.abs(back - probe).max() <= ROUND_TRIP_TOLERANCE
        )
    if not usable:
        raise ProfileError("this ICC profile does not carry sRGB colours into its space and "
                           "back (a degenerate tone curve or matrix)")  # fmt: skip


def to_linear_srgb(pixels: np.ndarray, pixel_format: PixelFormat, profile: bytes) -> np.ndarray:
    """A layer's pixels (H, W, channels) in `pixel_format` (any wire format that is not
    _LINEAR: the profile says the tone curve) and in `profile`'s colours -> float32
    (H, W, 4) linear-light sRGB R, G, B and alpha 0..1 (1 where the format has none).
    Colours outside sRGB keep components outside 0..1. ProfileError for a profile
    check_profile refuses."""
    check_profile(profile)
    height, width = pixels.shape[:2]
    out = np.empty((height, width, 4), np.float32)
    layout = _layout(pixel_format)
    target = out if pixel_format.alpha is not None else np.empty((height, width, 3), np.float32)

    def band(top, bottom):
        _transform(pixels[top:bottom], layout, profile, linear_srgb_profile(),
                   target[top:bottom], "rgba" if target is out else "rgb")  # fmt: skip

    on_all_cores(band, height, width, BAND_PIXELS)
    if target is not out:
        out[..., :3] = target
        out[..., 3] = 1
    return out


def from_linear_srgb(
    rgba: np.ndarray, pixel_format: PixelFormat, profile: bytes, out: np.ndarray
) -> None:
    """The inverse of to_linear_srgb: float32 (H, W, 4) linear-light sRGB with alpha ->
    `out` (H, W, channels) in `pixel_format` and `profile`'s colours (integers rounded and
    clipped to their range by LittleCMS, floats unbounded)."""
    check_profile(profile)
    height, width = rgba.shape[:2]
    source = rgba if pixel_format.alpha is not None else np.ascontiguousarray(rgba[..., :3])
    layout = _layout(pixel_format)

    def band(top, bottom):
        _transform(source[top:bottom], "rgba" if source is rgba else "rgb",
                   linear_srgb_profile(), profile, out[top:bottom], layout)  # fmt: skip

    on_all_cores(band, height, width, BAND_PIXELS)


def _layout(pixel_format: PixelFormat) -> str:
    """imagecodecs' name of a format's channel order: "rgba", "bgra" or "rgb"."""
    if pixel_format.alpha is None:
        return "rgb"
    return "bgra" if pixel_format.rgb == (2, 1, 0) else "rgba"


def _transform(source, layout, profile_in, profile_out, out, out_layout="rgba"):
    """One LittleCMS conversion of `source` (contiguous rows) into `out` (contiguous)."""
    return imagecodecs.cms_transform(
        source,
        profile_in,
        profile_out,
        colorspace=layout,
        outcolorspace=out_layout,
        intent=RELATIVE_COLORIMETRIC,
        flags=_FLAGS,
        out=out,
    )
