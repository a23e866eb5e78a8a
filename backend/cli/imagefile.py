"""Image files for the CLI, read and written at their own precision.

Pillow reads 16-bit RGB PNGs only as 8-bit and cannot write them, so 16-bit PNGs go through
imagecodecs (libpng) and TIFFs through tifffile (8- and 16-bit, float); every other format
through Pillow at 8 bits. The pixels become one of the protocol's formats (backend.core.pixels):
RGB8 or RGBA8 for 8-bit files, RGBA16 for 16-bit ones, RGBAF32 for float TIFFs; grey
becomes RGB, and an alpha channel is added (opaque) only where the format needs one.
Writing keeps the depth where the file type can hold it: 16-bit and float results written to
an 8-bit-only type (JPEG, WebP, ...) are rounded to 8 bits, with a note on stderr.
"""

import sys
from dataclasses import dataclass
from pathlib import Path

import imagecodecs
import numpy as np
import tifffile
from PIL import Image

TIFF_SUFFIXES = {".tif", ".tiff"}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass
class Picture:
    pixels: np.ndarray  # (H, W, C) in `pixel_format`
    pixel_format: str  # a backend.core.pixels.FORMATS name
    has_alpha: bool  # whether the file had alpha (an added opaque one is not written)


def _from_array(array: np.ndarray) -> Picture:
    """An (H, W), (H, W, 1..4) array of any depth -> a Picture in a protocol format."""
    if array.ndim == 2:
        array = array[..., None]
    channels = array.shape[2]
    if channels not in (1, 2, 3, 4):
        raise ValueError(f"{channels} channels per pixel: only grey, RGB and RGBA are supported")
    has_alpha = channels in (2, 4)
    colour = array[..., : channels - has_alpha]
    colour = np.repeat(colour, 3, axis=2) if colour.shape[2] == 1 else colour
    alpha = array[..., -1:] if has_alpha else None
    if array.dtype == np.uint8:
        if alpha is None:
            return Picture(np.ascontiguousarray(colour), "RGB8", False)
        return Picture(np.concatenate([colour, alpha], axis=2), "RGBA8", True)
    if array.dtype == np.uint16:
        dtype, opaque, name = np.dtype("<u2"), 65535, "RGBA16"
    elif array.dtype.kind == "f":
        dtype, opaque, name = np.dtype("<f4"), 1.0, "RGBAF32"
    else:
        raise ValueError(f"pixel type {array.dtype} is not supported (8-bit, 16-bit or float)")
    if alpha is None:
        alpha = np.full((*colour.shape[:2], 1), opaque, dtype)
    return Picture(np.concatenate([colour, alpha], axis=2).astype(dtype), name, has_alpha)


def _png_bit_depth(path: Path) -> int:
    with open(path, "rb") as file:
        head = file.read(26)
    return head[24] if head[:8] == PNG_SIGNATURE and len(head) == 26 else 0


def read_image(path: Path) -> Picture:
    """ValueError or OSError with the reason if the file cannot be used."""
    path = Path(path)
    if path.suffix.lower() in TIFF_SUFFIXES:
        with tifffile.TiffFile(path) as tiff:
            page = tiff.pages[0]
            array = page.asarray()
            if page.axes.startswith("S"):  # planar: one plane per channel
                array = np.moveaxis(array, 0, -1)
        return _from_array(array)
    if _png_bit_depth(path) == 16:
        return _from_array(imagecodecs.png_decode(path.read_bytes()))
    with Image.open(path) as image:
        image.load()
        has_alpha = "A" in image.getbands() or "transparency" in image.info
        return _from_array(np.asarray(image.convert("RGBA" if has_alpha else "RGB")))


def write_image(path: Path, picture: Picture) -> None:
    path = Path(path)
    pixels = picture.pixels if picture.has_alpha else picture.pixels[..., :3]
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix in TIFF_SUFFIXES:
        extra = {"extrasamples": ["unassalpha"]} if picture.has_alpha else {}
        tifffile.imwrite(path, pixels, photometric="rgb", compression="zlib", **extra)
        return
    if pixels.dtype.kind == "f" and suffix == ".png":  # PNG has no float: 16 bits it is
        pixels = np.round(np.clip(pixels, 0, 1) * 65535).astype(np.uint16)
    if pixels.dtype == np.uint16 and suffix == ".png":
        path.write_bytes(imagecodecs.png_encode(np.ascontiguousarray(pixels)))
        return
    if pixels.dtype != np.uint8:
        print(
            f"note: {path.name} holds 8 bits per channel; the result was rounded", file=sys.stderr
        )
        maximum = 65535 if pixels.dtype == np.uint16 else 1
        pixels = np.round(np.clip(pixels / maximum, 0, 1) * 255).astype(np.uint8)
    image = Image.fromarray(np.ascontiguousarray(pixels))
    if image.mode == "RGBA" and suffix in (".jpg", ".jpeg"):
        image = image.convert("RGB")  # JPEG has no alpha
    image.save(path)
