"""Image files for the CLI: read as a viewer shows them, written so they show the same.

Reading gives upright sRGB pixels in one of the protocol's formats (backend.core.pixels):
RGB8 or RGBA8 for 8-bit files, RGBA16 for 16-bit ones (and 2- to 15-bit TIFFs, scaled),
RGBAF32 for float TIFFs; an alpha channel is added (opaque) only where the format needs one.

- Readers, chosen by the file's first bytes, not its name: TIFF through tifffile, 16-bit PNG
  through imagecodecs (libpng; Pillow reads it only as 8-bit), PNG, JPEG (MPO too), WebP,
  GIF, BMP, TGA, PPM, QOI and JPEG 2000 through Pillow (no other Pillow plug-in: EPS would
  run Ghostscript). Animations are refused; a TIFF's later pages are left out, with a note.
- Size: width and height come from the file's header and are checked against the pixel
  limit before any pixel is decoded, so an image bomb costs a header read.
- Orientation: EXIF Orientation (JPEG, PNG eXIf, WebP; read by Pillow, which also looks in
  XMP) and the TIFF Orientation tag are applied as ImageOps.exif_transpose does; results
  are written upright, without the tag.
- Colour models: grey (1-bit too; min-is-white TIFFs inverted), RGB, indexed (palette PNG,
  GIF, TIFF), CMYK and YCbCr become RGB; premultiplied alpha is divided out. CIE Lab TIFFs,
  separations other than CMYK, more than one extra channel and sample types other than
  unsigned 1- to 16-bit integers and floats are refused, with the reason.
- Colour profiles: see profiles.py (converted to sRGB through LittleCMS, written back in
  the file's own profile).

Writing goes by the output's extension (OUTPUT_TYPES), checked before any work: the folder
must exist (none is created), the type must hold the image's transparency (no silent
flattening into JPEG) and, where it cannot hold the profile, the result is written in sRGB
with a note. Depth is kept where the type can hold it (16-bit and float results written to
an 8-bit-only type are rounded, with a note). A file is written whole or not at all (a
temporary file in the same folder, then renamed).
"""

import contextlib
import logging
import os
import sys
import tempfile
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import imagecodecs
import numpy as np
import tifffile
from PIL import Image

from backend.cli import pngwrite, profiles
from backend.service.protocol import DEFAULT_MAX_PIXELS

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TIFF_SIGNATURES = (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+")  # classic and BigTIFF
ALPHA = tifffile.EXTRASAMPLE
PILLOW_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "DIB", "TGA", "PPM", "QOI",
                  "JPEG2000")  # fmt: skip
EXIF_ORIENTATION = 0x0112
# EXIF orientation -> (quarter turns anticlockwise, then mirror top to bottom) that shows
# the stored pixels upright (the same as PIL.ImageOps.exif_transpose; tested against it).
UPRIGHT = {1: (0, False), 2: (2, True), 3: (2, False), 4: (0, True), 5: (1, True),
           6: (-1, False), 7: (-1, True), 8: (1, False)}  # fmt: skip


class ImageFileError(ValueError):
    """A file that cannot be read or written; the message says why, in one line."""


@dataclass
class Picture:
    pixels: np.ndarray  # (H, W, C) upright, sRGB-encoded, in `pixel_format`
    pixel_format: str  # a backend.core.pixels.FORMATS name
    has_alpha: bool  # whether the file had alpha (an added opaque one is not written)
    profile: bytes | None = None  # the ICC profile results are written with (None: sRGB)
    stored: np.ndarray | None = None  # (H, W, 3) colour as stored, in `profile`'s space
    notes: list[str] = field(default_factory=list)  # said when a result is written


@dataclass(frozen=True)
class FileType:
    name: str  # Pillow's format name (TIFF: written by tifffile)
    alpha: bool  # holds transparency
    profile: bool  # holds an ICC profile
    depth: str  # the deepest it holds: "8", "16" or "float"


_TIFF = FileType("TIFF", True, True, "float")
_JPEG = FileType("JPEG", False, True, "8")
OUTPUT_TYPES = {".png": FileType("PNG", True, True, "16"), ".tif": _TIFF, ".tiff": _TIFF,
                ".jpg": _JPEG, ".jpeg": _JPEG, ".webp": FileType("WEBP", True, True, "8"),
                ".bmp": FileType("BMP", False, False, "8")}  # fmt: skip


# JPEG and lossy WebP: Pillow's defaults (75, 80) change flat saturated colours by up to 11
# levels; at 95 an identity edit stays within 3.
LOSSY_QUALITY = 95
# PNG, 8- and 16-bit alike. By default fast (pngwrite: the Up filter and ISA-L's deflate on
# every core): a 24-megapixel photo in about a quarter of the CPU time of libpng's fastest
# useful setting (zlib level 1, Z_RLE, Paeth), 3 to 10 percent larger than that on photos,
# up to 27 percent on smooth (enlarged) ones. small=True: the shortest of libpng's
# (imagecodecs) encodings at level 9 with these settings and the fast one (no single setting
# was smallest on every photo tried), at 20 to 100 times the time.
_FILTER = imagecodecs.PNG.FILTER
PNG_SMALL = [{"level": 9, "strategy": 1, "filter": _FILTER.PAETH},
             {"level": 9, "strategy": 3, "filter": _FILTER.PAETH},
             {"level": 9, "filter": _FILTER.ALL}]  # fmt: skip


def _note(text: str) -> None:
    print(f"note: {text}", file=sys.stderr)


# --- reading ----------------------------------------------------------------------------
@dataclass
class _Stored:
    """Pixels as a reader gives them, before they are made upright and sRGB."""

    array: np.ndarray  # (H, W, C): the colour channels of `model`, then alpha if any
    model: str  # "grey", "rgb" or "cmyk"
    alpha: bool = False
    premultiplied: bool = False
    profile: bytes | None = None
    orientation: int = 1


def read_image(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> Picture:
    """ImageFileError, with the reason in one line, if the file cannot be used."""
    path = Path(path)
    try:
        if path.exists() and not path.is_file():  # a folder, a FIFO or a device never ends
            raise ImageFileError("not a regular file")
        with open(path, "rb") as file:
            head = file.read(32)
        if head[:4] in TIFF_SIGNATURES:
            stored, notes = _read_tiff(path, max_pixels)
        else:
            stored, notes = _read_with_pillow(path, head, max_pixels)
        return _picture(path, stored, notes)
    except ImageFileError:
        raise
    except MemoryError:
        raise ImageFileError("not enough memory to decode it") from None
    except Exception as error:  # a decoder's complaint about a damaged or hostile file
        reason = error.strerror if isinstance(error, OSError) and error.strerror else error
        raise ImageFileError(str(reason).splitlines()[0] or type(error).__name__) from None


def _check_size(width: int, height: int, max_pixels: int) -> None:
    if width < 1 or height < 1:
        raise ImageFileError(f"it is {width} x {height} pixels: there is nothing to recolour")
    if width * height > max_pixels:
        raise ImageFileError(
            f"too large: {width} x {height} is {width * height:,} pixels, over the limit of "
            f"{max_pixels:,} (--max-pixels)"
        )


@contextlib.contextmanager
def _quiet(logger_name: str):
    """No log lines from a library while it reads a damaged file: its exception says why."""
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(level)


def _read_tiff(path: Path, max_pixels: int) -> tuple[_Stored, list]:
    notes = []
    with _quiet("tifffile"), tifffile.TiffFile(path) as tiff:
        page = tiff.pages.first
        _check_size(page.imagewidth, page.imagelength, max_pixels)
        model, convert = _tiff_model(page)
        colours = {"grey": 1, "indexed": 1, "rgb": 3, "cmyk": 4}[model]
        # Extra samples: the first is alpha if it says so; unspecified ones are not alpha
        # (TIFF 6.0; Pillow reads such RGB as RGBX) and are left out.
        alpha = page.extrasamples[:1] in ((ALPHA.ASSOCALPHA,), (ALPHA.UNASSALPHA,))
        if page.samplesperpixel - colours > alpha:
            notes.append(f"{page.samplesperpixel - colours - alpha} extra channel(s) that are "
                         "not alpha are left out")  # fmt: skip
        if page.dtype is None or not (page.dtype.kind in "f" or page.dtype in (
                np.uint8, np.uint16, np.bool_)):  # fmt: skip
            raise ImageFileError(f"{page.dtype} samples are not supported")
        try:
            second = tiff.pages[1]
            if not second.is_reduced:
                notes.append("only its first page is read")
        except IndexError:
            pass
        array = page.asarray()
        if page.planarconfig == tifffile.PLANARCONFIG.SEPARATE and array.ndim == 3:
            array = np.moveaxis(array, 0, -1)
        if array.ndim == 3:
            array = array[..., : colours + alpha]
        stored = _Stored(
            convert(page, array),
            "rgb" if model == "indexed" else model,
            alpha=alpha,
            premultiplied=page.extrasamples[:1] == (ALPHA.ASSOCALPHA,),
            profile=page.tags.valueof("InterColorProfile"),
            orientation=page.tags.valueof("Orientation", 1),
        )
    return stored, notes


def _tiff_model(page):
    """(model, convert(page, array) -> array in that model) for a TIFF page's photometric
    interpretation; ImageFileError for the ones this cannot show right."""
    kind = tifffile.PHOTOMETRIC
    photometric = page.photometric
    if photometric in (kind.MINISBLACK, kind.MINISWHITE):
        return "grey", _tiff_grey
    if photometric == kind.RGB:
        return "rgb", _tiff_scaled
    if photometric == kind.PALETTE:
        return "indexed", _tiff_indexed
    if photometric == kind.SEPARATED and page.tags.valueof("InkSet", 1) == 1:
        return "cmyk", _tiff_scaled
    if photometric == kind.YCBCR:
        if page.compression in (tifffile.COMPRESSION.JPEG, tifffile.COMPRESSION.OJPEG):
            return "rgb", _tiff_scaled  # the JPEG decoder gives RGB
        if page.dtype == np.uint8 and page.samplesperpixel == 3:
            return "rgb", _tiff_ycbcr
    if photometric in (kind.CIELAB, kind.ICCLAB, kind.ITULAB):
        raise ImageFileError("CIE L*a*b* TIFF files are not supported: save it as RGB")
    name = getattr(photometric, "name", photometric)
    if photometric == kind.SEPARATED:
        inks = page.samplesperpixel - len(page.extrasamples)
        name = f"a separation of {page.tags.valueof('NumberOfInks', inks)} inks, not CMYK"
    raise ImageFileError(f"TIFF colour model {name} is not supported: save it as RGB")


def _tiff_scaled(page, array):
    """Samples of 2 to 15 bits (in uint8 or uint16) stretched to the full range."""
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    bits = page.bitspersample
    if array.dtype.kind == "u" and bits < array.dtype.itemsize * 8:
        maximum = np.iinfo(array.dtype).max
        return np.round(array * (maximum / ((1 << bits) - 1))).astype(array.dtype)
    return array


def _tiff_grey(page, array):
    array = _tiff_scaled(page, array)
    if page.photometric == tifffile.PHOTOMETRIC.MINISWHITE:  # 0 is white: turn it round
        maximum = 1.0 if array.dtype.kind == "f" else np.iinfo(array.dtype).max
        colour = maximum - array[..., :1] if array.ndim == 3 else maximum - array
        array = np.concatenate([colour, array[..., 1:]], axis=2) if array.ndim == 3 else colour
    return array


def _tiff_indexed(page, array):
    """Palette indices -> the colour map's RGB (TIFF colour maps are 16-bit; 8-bit ones
    written as value * 257 become 8-bit again)."""
    if array.ndim == 3:
        raise ImageFileError("indexed TIFF with extra channels is not supported")
    colours = np.asarray(page.colormap, np.uint16).T  # (entries, 3)
    if np.all(colours % 257 == 0):
        colours = (colours // 257).astype(np.uint8)
    if array.max(initial=0) >= len(colours):
        raise ImageFileError("an index beyond the end of its colour map")
    return colours[array]


def _tiff_ycbcr(page, array):
    return np.asarray(Image.fromarray(array, "YCbCr").convert("RGB"))


def _pillow(path: Path) -> Image.Image:
    """Image.open, only for the formats in PILLOW_FORMATS, with Pillow's own bomb check off:
    the size is checked right after, against this tool's limit, with the size in the
    message (Pillow's would be a DecompressionBombError traceback). Warnings (of damaged
    EXIF data Pillow reads past) are not shown: call it within warnings.catch_warnings()."""
    warnings.simplefilter("ignore")
    limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        return Image.open(path, formats=PILLOW_FORMATS)
    except Image.UnidentifiedImageError:
        kinds = "PNG, JPEG, WebP, TIFF, GIF, BMP, TGA, PPM, QOI, JPEG 2000"
        raise ImageFileError(f"not an image file this tool reads ({kinds})") from None
    finally:
        Image.MAX_IMAGE_PIXELS = limit


# Pillow mode -> (the mode to convert to, None: as it is; the model its pixels are in)
PILLOW_MODES = {"1": ("L", "grey"), "L": (None, "grey"), "LA": (None, "grey"),
                "La": ("LA", "grey"), "I;16": (None, "grey"), "I;16L": (None, "grey"),
                "I;16B": (None, "grey"), "I;16N": (None, "grey"), "F": (None, "grey"),
                "P": ("RGB", "rgb"), "PA": ("RGBA", "rgb"), "RGB": (None, "rgb"),
                "RGBA": (None, "rgb"), "RGBa": ("RGBA", "rgb"), "RGBX": ("RGB", "rgb"),
                "YCbCr": ("RGB", "rgb"), "CMYK": (None, "cmyk")}  # fmt: skip
WITH_TRANSPARENCY = {"1": "LA", "L": "LA", "P": "RGBA", "RGB": "RGBA"}  # a tRNS colour key


def _read_with_pillow(path: Path, head: bytes, max_pixels: int) -> tuple[_Stored, list]:
    notes = []
    with warnings.catch_warnings(), _pillow(path) as image:
        _check_size(*image.size, max_pixels)
        if image.format in ("GIF", "PNG", "WEBP") and getattr(image, "is_animated", False):
            frames = getattr(image, "n_frames", "several")
            raise ImageFileError(f"an animation ({frames} frames): recolour a still image")
        orientation = _exif_orientation(image, notes)
        # libpng decodes 16-bit PNGs (Pillow only gives 8 bits) and plain 8-bit RGB(A) ones
        # in half Pillow's time; Pillow still reads the metadata, and the other colour types.
        plain = image.mode in ("RGB", "RGBA") and "transparency" not in image.info
        if image.format == "PNG" and (_png_bit_depth(head) == 16 or plain):
            array = imagecodecs.png_decode(path.read_bytes())
            array = array if array.ndim == 3 else array[..., None]
            model, alpha = ("grey" if array.shape[2] < 3 else "rgb"), array.shape[2] in (2, 4)
        else:
            array, model, alpha = _pillow_pixels(image)
        profile = image.info.get("icc_profile")
        if not profile:
            try:
                profile = profiles.png_profile(image.info, model)
            except ValueError as error:
                notes.append(f"{error}: it is read as sRGB")
    return _Stored(array, model, alpha, False, profile, orientation), notes


def _exif_orientation(image: Image.Image, notes: list) -> int:
    try:
        if image.format == "PNG" and not _png_chunks_after_pixels(image):
            # Pillow's PNG getexif() decodes every pixel to look for metadata after them;
            # with none there, the metadata read so far is all (the base class reads it).
            exif = Image.Image.getexif(image)
        else:
            exif = image.getexif()
        orientation = exif.get(EXIF_ORIENTATION, 1)
        return orientation if isinstance(orientation, int) else 1
    except Exception:  # damaged EXIF: shown as stored, as viewers do
        notes.append("its EXIF data is damaged: its orientation tag, if any, is ignored")
        return 1


def _pillow_pixels(image: Image.Image) -> tuple[np.ndarray, str, bool]:
    if image.mode not in PILLOW_MODES and image.mode != "I":
        raise ImageFileError(f"Pillow colour mode {image.mode} is not supported")
    if image.mode == "I":  # 32-bit integers: only as 16-bit values
        array = np.asarray(image)
        if array.min(initial=0) < 0 or array.max(initial=0) > 65535:
            raise ImageFileError("32-bit integer samples are not supported")
        return array.astype(np.uint16)[..., None], "grey", False
    target, model = PILLOW_MODES[image.mode]
    if "transparency" in image.info and image.mode in WITH_TRANSPARENCY:
        target = WITH_TRANSPARENCY[image.mode]
    array = np.asarray(image.convert(target) if target else image)
    array = array if array.ndim == 3 else array[..., None]
    return array, model, array.shape[2] in (2, 4) and model != "cmyk"


def _png_chunks_after_pixels(image: Image.Image) -> bool:
    """Whether a PNG has chunks other than IEND after its image data (EXIF or XMP may be
    there), found by reading the chunk headers only."""
    file = image.fp
    position = file.tell()
    try:
        file.seek(8)  # the signature
        seen_pixels = False
        while len(header := file.read(8)) == 8:
            kind = header[4:]
            if kind == b"IEND":
                return False
            if kind == b"IDAT":
                seen_pixels = True
            elif seen_pixels:
                return True
            file.seek(int.from_bytes(header[:4], "big") + 4, os.SEEK_CUR)  # data and CRC
        return True  # damaged: let Pillow look
    finally:
        file.seek(position)


def _png_bit_depth(head: bytes) -> int:
    return head[24] if head[:8] == PNG_SIGNATURE and len(head) >= 26 else 0


def _picture(path: Path, stored: _Stored, notes: list) -> Picture:
    """Upright, unpremultiplied, sRGB pixels in a protocol format."""
    array = stored.array
    turns, mirror = UPRIGHT.get(stored.orientation, (0, False))
    array = np.rot90(array if array.ndim == 3 else array[..., None], turns)
    array = array[::-1] if mirror else array
    if array.dtype.kind == "f":
        array = array.astype(np.float32)
    elif array.dtype not in (np.uint8, np.uint16):
        raise ImageFileError(f"{array.dtype} samples are not supported")
    array = np.ascontiguousarray(array, array.dtype.newbyteorder("="))
    channels = profiles.MODELS[stored.model][2]
    colour = array[..., :channels]
    alpha = array[..., channels : channels + 1] if stored.alpha else None
    if stored.premultiplied:
        colour = _unpremultiplied(colour, alpha)
    profile = stored.profile
    reason = profiles.usable(profile, stored.model)
    if reason is not None:
        notes.append(f"{reason}: it is read as sRGB")
        profile = None
    srgb, profile, values = profiles.to_srgb(colour, stored.model, profile)
    for note in notes:
        _note(f"{path.name}: {note}")
    write_notes = []
    if stored.model == "cmyk":
        write_notes.append(f"{path.name} is CMYK; the result is RGB")
    # Colour and alpha as the file held them, already in a layer's order: no copy.
    as_stored = srgb is colour and not stored.premultiplied and alpha is not None
    whole = array if as_stored and array.shape[2] == 4 else None
    return _layer_picture(srgb, alpha, profile, values, write_notes, whole)


def _unpremultiplied(colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    maximum = 1.0 if colour.dtype.kind == "f" else np.iinfo(colour.dtype).max
    coverage = alpha.astype(np.float32) / maximum
    values = np.divide(colour, coverage, out=np.zeros(colour.shape, np.float32),
                       where=coverage > 0)  # fmt: skip
    if colour.dtype.kind == "f":
        return values
    return np.round(np.clip(values, 0, maximum)).astype(colour.dtype)


def _layer_picture(rgb, alpha, profile, stored, notes, whole=None) -> Picture:
    """sRGB (H, W, 3) and alpha (H, W, 1) or None -> a Picture in a protocol format.
    whole: an (H, W, 4) array that already holds rgb then alpha, used as it is."""
    if whole is None and alpha is not None:
        whole = np.concatenate([rgb, alpha], axis=2)
    if rgb.dtype == np.uint8:
        if alpha is None:
            return Picture(np.ascontiguousarray(rgb), "RGB8", False, profile, stored, notes)
        return Picture(whole, "RGBA8", True, profile, stored, notes)
    if rgb.dtype == np.uint16:
        dtype, opaque, name = np.dtype("<u2"), 65535, "RGBA16"
    else:
        dtype, opaque, name = np.dtype("<f4"), 1.0, "RGBAF32"
    has_alpha = alpha is not None
    if alpha is None:
        whole = np.concatenate([rgb, np.full((*rgb.shape[:2], 1), opaque, rgb.dtype)], axis=2)
    return Picture(whole.astype(dtype, copy=False), name, has_alpha, profile, stored, notes)


def to_8_bit(pixels: np.ndarray) -> np.ndarray:
    """uint8 as it is; uint16 and float (0..1) rounded to uint8."""
    if pixels.dtype == np.uint8:
        return pixels
    maximum = 65535 if pixels.dtype == np.uint16 else 1
    return np.round(np.clip(pixels / maximum, 0, 1) * 255).astype(np.uint8)


def read_mask(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """A selection mask (H, W) uint8 from any image file read_image reads: its lightness as
    Pillow's "L" conversion gives it (white recolours, black keeps), upright."""
    picture = read_image(path, max_pixels)
    rgb = np.ascontiguousarray(to_8_bit(picture.pixels[..., :3]))
    return np.asarray(Image.fromarray(rgb).convert("L"))


# --- writing ----------------------------------------------------------------------------
NAME_MAX = 255  # bytes in one file name, on Linux, macOS and Windows file systems alike


def output_type(path: Path, picture: Picture | None = None) -> FileType:
    """The type `path` is written as; ImageFileError, before any work, if it cannot be
    written there (no or an unknown extension, no such folder, a folder in the way) or,
    given the picture, cannot hold it (transparency in a type without alpha)."""
    path = Path(path)
    names = ", ".join(OUTPUT_TYPES)
    suffix = path.suffix.lower()
    if len(os.fsencode(path.name)) > NAME_MAX:
        raise ImageFileError(f"the file name is longer than {NAME_MAX} bytes")
    if path.is_dir():
        raise ImageFileError("it is a folder")
    if not suffix:
        raise ImageFileError(f"no file extension to tell its type by: end it in one of {names}")
    if suffix not in OUTPUT_TYPES:
        raise ImageFileError(f"{suffix} files are not written: use one of {names}")
    kind = OUTPUT_TYPES[suffix]
    folder = path.parent
    if folder.exists() and not folder.is_dir():
        raise ImageFileError(f"{folder} is a file, not a folder")
    if not folder.is_dir():
        raise ImageFileError(f"the folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ImageFileError(f"the folder {folder} is not writable")
    if picture is not None and picture.has_alpha and not kind.alpha:
        alpha = picture.pixels[..., 3]
        seen_through = int(np.count_nonzero(alpha < (1 if alpha.dtype.kind == "f" else
                                                     np.iinfo(alpha.dtype).max)))  # fmt: skip
        if seen_through:
            raise ImageFileError(
                f"{kind.name} has no transparency and {seen_through:,} pixels of the image "
                "are transparent or translucent: write .png, .tif or .webp"
            )
    return kind


def write_image(
    path: Path, picture: Picture, pixels: np.ndarray | None = None, small: bool = False
) -> None:
    """Write `pixels` (a result shaped and typed like picture.pixels; default the picture's
    own) as `path`'s type, in the picture's profile. small: the smallest PNG (slow), else a
    fast one (pngwrite)."""
    path = Path(path)
    kind = output_type(path)
    pixels = picture.pixels if pixels is None else pixels
    colour = pixels[..., :3]
    profile = picture.profile
    if profile is not None and not kind.profile:
        _note(f"{path.name} cannot hold a colour profile: the result is written in sRGB")
        profile = None
    elif picture.stored is not None:
        colour = profiles.onto_stored(picture.stored, picture.pixels[..., :3], colour, profile)
    for note in picture.notes:
        _note(note)
    if picture.has_alpha and not np.may_share_memory(colour, pixels):  # colour converted
        pixels = np.concatenate([colour, pixels[..., 3:]], axis=2)
    elif not picture.has_alpha:
        pixels = colour
    if pixels.dtype.kind == "f" and kind.depth == "16":
        pixels = np.round(np.clip(pixels, 0, 1) * 65535).astype(np.uint16)  # PNG has no float
    if pixels.dtype != np.uint8 and kind.depth == "8":
        _note(f"{path.name} holds 8 bits per channel; the result was rounded")
        pixels = to_8_bit(pixels)
    if not kind.alpha and pixels.shape[2] == 4:
        pixels = pixels[..., :3]  # all opaque (output_type refused anything else)
    _write_atomically(path, lambda file: _encode(file, kind, np.ascontiguousarray(pixels),
                                                 profile, small))  # fmt: skip


def _encode(file, kind: FileType, pixels: np.ndarray, profile: bytes | None, small: bool) -> None:
    if kind.name == "TIFF":
        extra = {"extrasamples": ["unassalpha"]} if pixels.shape[2] == 4 else {}
        tifffile.imwrite(file, pixels, photometric="rgb", compression="zlib",
                         iccprofile=profile, **extra)  # fmt: skip
    elif kind.name == "PNG":  # 8 and 16 bits (Pillow cannot write 16-bit colour)
        encoded = pngwrite.encode(pixels)
        if small:
            slow = (bytes(imagecodecs.png_encode(pixels, **settings)) for settings in PNG_SMALL)
            encoded = min(encoded, *slow, key=len)
        file.write(_with_iccp(encoded, profile))
    else:
        options = {} if profile is None else {"icc_profile": profile}
        if kind.name in ("JPEG", "WEBP"):
            options["quality"] = LOSSY_QUALITY
        Image.fromarray(pixels).save(file, kind.name, **options)


def _with_iccp(png: bytes, profile: bytes | None) -> bytes:
    """A PNG with an iCCP chunk added after its header chunk (IHDR, 33 bytes in all)."""
    if profile is None:
        return png
    body = b"iCCP" + b"ICC profile\0\0" + zlib.compress(profile)
    chunk = len(body[4:]).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")
    return png[:33] + chunk + png[33:]


def _write_atomically(path: Path, encode) -> None:
    """encode(file) into a temporary file next to `path`, renamed to it once complete."""
    # a short name: the output's own name may already be as long as the system allows
    handle, temporary = tempfile.mkstemp(prefix=".palettenet-", suffix=".tmp", dir=path.parent)
    os.close(handle)  # opened again by name: tifffile wants a file with a name
    try:
        with open(temporary, "wb") as file:
            encode(file)
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
