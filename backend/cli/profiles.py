"""Colour profiles of image files, through LittleCMS (imagecodecs' cms_transform).

Recolouring works in sRGB: palettes are sRGB colours (`#e63946` means the sRGB red) and the
network was trained on sRGB photos. So a file with a colour profile (ICC in PNG, JPEG,
WebP and TIFF; a PNG's gAMA and cHRM chunks, which describe one) is converted to sRGB to
be recoloured, and the result is converted back and written with the file's own profile.
The way back adds only what the recolouring changed, converted into the profile's space,
to the values as stored: pixels the recolouring left as they were come back bit for bit,
colours outside sRGB included (so an identity edit is an identity on any screen), and
changed pixels get the stored values of their new colour.

Grey and CMYK files are converted to sRGB the same way (a recoloured grey or CMYK image is
an RGB one); CMYK without a profile as Pillow converts it, (1 - C)(1 - K) and so on. Both
directions use relative colorimetric rendering with black point compensation, the usual
choice for showing a file on a screen.
"""

import imagecodecs
import numpy as np

# The model a file's pixels are in -> (ICC colour space signature, LittleCMS pixel type,
# colour channels).
MODELS = {"grey": (b"GRAY", "gray", 1), "rgb": (b"RGB ", "rgb", 3), "cmyk": (b"CMYK", "cmyk", 4)}
SRGB_WHITE = (0.3127, 0.3290)  # D65
SRGB_PRIMARIES = (0.64, 0.33, 0.30, 0.60, 0.15, 0.06)
INTENT = imagecodecs.CMS.INTENT.RELATIVE_COLORIMETRIC
FLAGS = imagecodecs.CMS.FLAGS.BLACKPOINTCOMPENSATION
BAND_PIXELS = 1 << 20  # converted back at once: about 12 MB of float32 per band


def srgb_profile() -> bytes:
    """LittleCMS's built-in sRGB profile, embedded in results converted to sRGB."""
    return imagecodecs.cms_profile("srgb")


def png_profile(info: dict, model: str) -> bytes | None:
    """The profile a PNG's gAMA chunk (with cHRM's primaries, else sRGB's) describes, as
    Pillow reads them into `info`; None when there is none or an sRGB chunk overrides it
    (the iCCP chunk, when there is one, is used before this is asked); ValueError when they
    describe none LittleCMS can make."""
    gamma = info.get("gamma")
    if "srgb" in info or not isinstance(gamma, int | float) or not 0.01 <= gamma <= 100:
        return None
    chromaticity = info.get("chromaticity")
    white = chromaticity[:2] if chromaticity else SRGB_WHITE
    primaries = chromaticity[2:] if chromaticity else SRGB_PRIMARIES
    try:
        if model == "grey":
            return imagecodecs.cms_profile("gray", whitepoint=white, gamma=1 / gamma)
        return imagecodecs.cms_profile("rgb", whitepoint=white, primaries=primaries,
                                       gamma=1 / gamma)  # fmt: skip
    except imagecodecs.CmsError as error:
        raise ValueError(f"its gAMA and cHRM chunks describe no colour space ({error})") from None


def _transform(values: np.ndarray, profile: bytes, target: bytes, model: str, dtype):
    space = MODELS[model][1]
    values = values[..., 0] if model == "grey" else values
    return imagecodecs.cms_transform(
        values, profile, target, colorspace=space, outcolorspace="rgb", outdtype=dtype,
        intent=INTENT, flags=FLAGS,
    )  # fmt: skip


def usable(profile: bytes | None, model: str) -> str | None:
    """Why `profile` cannot convert pixels of `model`, None if it can (or there is none)."""
    if not profile:
        return None
    if len(profile) < 128 or profile[36:40] != b"acsp":
        return "its colour profile is not an ICC profile"
    space = profile[16:20]
    if space != MODELS[model][0]:
        return f"its colour profile is for {space.decode('latin-1').strip()}, the pixels {model}"
    try:
        _transform(np.zeros((1, 1, MODELS[model][2]), np.uint8), profile, srgb_profile(), model,
                   np.uint8)  # fmt: skip
    except (imagecodecs.CmsError, ValueError) as error:
        return f"LittleCMS cannot use its colour profile ({error})"
    return None


def to_srgb(colour: np.ndarray, model: str, profile: bytes | None):
    """The colour channels of a file (H, W, channels of `model`, uint8, uint16 or float32)
    -> (sRGB (H, W, 3) of the same type, the profile to write results with (None: plain
    sRGB), the stored values results are written onto (None: results are written as they
    are)). `profile` must be usable() (or None)."""
    if profile:
        srgb = _transform(colour, profile, srgb_profile(), model, colour.dtype)
        if colour.dtype.kind == "f":
            # recolouring clips to 0..1 anyway; NaN is kept for the engine to report
            srgb = np.where(np.isfinite(colour).all(axis=-1, keepdims=True), srgb, np.nan)
            srgb = np.clip(srgb, 0, 1, out=srgb)
        if model == "rgb":
            return srgb, profile, colour
        return srgb, srgb_profile(), None
    if model == "grey":
        return np.repeat(colour, 3, axis=2), None, None
    if model == "cmyk":
        maximum = 1.0 if colour.dtype.kind == "f" else np.iinfo(colour.dtype).max
        ink = colour.astype(np.float32) / maximum
        rgb = (1 - ink[..., :3]) * (1 - ink[..., 3:])
        if colour.dtype.kind == "f":
            return rgb, None, None
        return np.round(rgb * maximum).astype(colour.dtype), None, None
    return colour, None, None


def onto_stored(stored: np.ndarray, before: np.ndarray, after: np.ndarray, profile: bytes):
    """Results back in the profile's space: `stored` (the file's colour values) plus the
    change from sRGB `before` to sRGB `after`, both converted by the profile; pixels where
    they are equal keep their stored values exactly. The change is taken at 16 bits for
    integer files (LittleCMS's float transforms are 15 times slower) and as float for
    float ones (unbounded, like their values); a band of rows at a time."""
    out = stored.copy()
    if stored.dtype.kind == "f":
        dtype, scale, maximum = np.float32, 1.0, None
    else:
        maximum = np.iinfo(stored.dtype).max
        dtype, scale = np.uint16, maximum / 65535

    def in_profile(srgb):  # (rows, W, 3) -> float32 in stored's units
        values = _transform(srgb, srgb_profile(), profile, "rgb", dtype)
        return values.astype(np.float32) * np.float32(scale)

    rows = max(1, BAND_PIXELS // stored.shape[1])  # (not core.pixels.bands: it loads torch)
    for top in range(0, stored.shape[0], rows):
        bottom = top + rows
        changed = (before[top:bottom] != after[top:bottom]).any(axis=-1, keepdims=True)
        if not changed.any():
            continue
        values = stored[top:bottom] + (
            in_profile(after[top:bottom]) - in_profile(before[top:bottom])
        )
        if maximum is not None:
            values = np.clip(np.round(values), 0, maximum)
        out[top:bottom] = np.where(changed, values, stored[top:bottom])
    return out
