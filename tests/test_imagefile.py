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


# --- files as they come (#14) -----------------------------------------------------------
# Each kind of file a user may have is made here, recoloured or read through the command
# line, and checked for what the user sees: orientation, displayed colour, real colours.
import io  # noqa: E402
import struct  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import zlib  # noqa: E402
from pathlib import Path  # noqa: E402

from PIL import ImageCms, ImageOps  # noqa: E402

from backend.cli.imagefile import ImageFileError  # noqa: E402

RED, BLUE = (220, 30, 40), (30, 40, 220)
IDENTITY = ["-p", "#ff0000,#0000ff", "--source-palette", "#ff0000,#0000ff"]
# A wide-gamut profile (Rec. 2020 primaries, gamma 2.2), made by LittleCMS
WIDE = imagecodecs.cms_profile(
    "rgb", whitepoint=(0.3127, 0.329), primaries=(0.708, 0.292, 0.17, 0.797, 0.131, 0.046),
    gamma=2.2,
)  # fmt: skip


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def with_chunk(png: bytes, kind: bytes, data: bytes) -> bytes:
    """A PNG with one more chunk right after IHDR."""
    return png[:33] + png_chunk(kind, data) + png[33:]


def exif(orientation: int) -> bytes:
    tags = Image.Exif()
    tags[0x0112] = orientation
    return tags.tobytes()


def save(path: Path, pixels: np.ndarray, orientation=None, profile=None) -> Path:
    """pixels as the type path names, with an EXIF orientation and an ICC profile."""
    suffix = path.suffix
    if suffix == ".tif":
        tags = [] if orientation is None else [(274, "H", 1, orientation, True)]
        extra = {"extrasamples": ["unassalpha"]} if pixels.shape[-1] == 4 else {}
        tifffile.imwrite(path, pixels, photometric="rgb", extratags=tags, iccprofile=profile,
                         **extra)  # fmt: skip
    elif pixels.dtype == np.uint16:  # 16-bit PNG: libpng, chunks added by hand
        png = bytes(imagecodecs.png_encode(pixels))
        if orientation is not None:
            png = with_chunk(png, b"eXIf", exif(orientation)[6:])  # no "Exif\0\0" in PNG
        if profile is not None:
            png = with_chunk(png, b"iCCP", b"p\0\0" + zlib.compress(profile))
        path.write_bytes(png)
    else:
        options = {"lossless": True} if suffix == ".webp" else {"quality": 95}
        if orientation is not None:
            options["exif"] = exif(orientation)
        if profile is not None:
            options["icc_profile"] = profile
        Image.fromarray(pixels).save(path, **options)
    return path


def stored(path: Path) -> tuple[np.ndarray, bytes | None]:
    """A file's pixels as stored (no orientation applied) and its embedded ICC profile."""
    if path.suffix == ".tif":
        with tifffile.TiffFile(path) as tiff:
            page = tiff.pages.first
            return page.asarray(), page.tags.valueof("InterColorProfile")
    with Image.open(path) as image:
        profile = image.info.get("icc_profile")
        if image.format == "PNG" and path.read_bytes()[24] == 16:
            return imagecodecs.png_decode(path.read_bytes()), profile
        return np.asarray(image), profile


def shown(path: Path) -> np.ndarray:
    """What a colour-managed viewer shows: the pixels upright, converted from the embedded
    profile to sRGB by LittleCMS (Pillow's ImageCms for 8-bit files), as floats 0..1."""
    if path.suffix != ".tif":
        with Image.open(path) as image:
            if image.mode == "RGB":
                turned = ImageOps.exif_transpose(image)
                profile = image.info.get("icc_profile")
                if profile:
                    turned = ImageCms.profileToProfile(
                        turned, ImageCms.ImageCmsProfile(io.BytesIO(profile)),
                        ImageCms.createProfile("sRGB"),
                    )  # fmt: skip
                return np.asarray(turned) / 255
    pixels, profile = stored(path)
    if path.suffix == ".tif":
        with tifffile.TiffFile(path) as tiff:
            pixels = upright(pixels, tiff.pages.first.tags.valueof("Orientation", 1))
    colour = pixels[..., :3]
    maximum = 1.0 if colour.dtype.kind == "f" else np.iinfo(colour.dtype).max
    if profile:
        srgb = imagecodecs.cms_profile("srgb")
        colour = imagecodecs.cms_transform(colour, profile, srgb, colorspace="rgb",
                                           outcolorspace="rgb", outdtype=np.float32)  # fmt: skip
        maximum = 1.0
    return colour / maximum


def upright(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """pixels turned as Pillow's ImageOps.exif_transpose turns an image (for 16-bit and
    float pixels, which Pillow does not hold: it turns their indices)."""
    height, width = pixels.shape[:2]
    index = Image.fromarray(np.arange(height * width, dtype=np.int32).reshape(height, width))
    index.getexif()[0x0112] = orientation
    return pixels.reshape(height * width, -1)[np.asarray(ImageOps.exif_transpose(index))]


def patches(dtype=np.uint8, size=(40, 60)) -> np.ndarray:
    """Left half red, right half blue (stored); as dtype's full range."""
    pixels = np.zeros((*size, 3))
    pixels[:, : size[1] // 2] = RED
    pixels[:, size[1] // 2 :] = BLUE
    if dtype == np.uint8:
        return pixels.astype(np.uint8)
    return np.round(pixels / 255 * np.iinfo(dtype).max).astype(dtype)


@pytest.mark.parametrize("suffix,dtype", [(".jpg", np.uint8), (".png", np.uint8),
                         (".png", np.uint16), (".webp", np.uint8), (".tif", np.uint8),
                         (".tif", np.uint16)])  # fmt: skip
def test_exif_orientation_is_what_the_result_shows(tmp_path, suffix, dtype):
    """Stored 60 x 40 with Orientation 6 (turn right to show): shown 40 x 60, red on top.
    The result shows the same, whichever viewer opens it (upright, no tag)."""
    source = save(tmp_path / f"in{suffix}", patches(dtype), orientation=6)
    out = tmp_path / f"out{suffix}"
    main(["recolor", str(source), *IDENTITY, "--method", "chang2015", "-o", str(out)])
    for path in (source, out):
        seen = shown(path)
        assert seen.shape[:2] == (60, 40), path
        assert (
            np.abs(seen[5, 20] * 255 - RED).max() < 6
            and np.abs(seen[-5, 20] * 255 - BLUE).max() < 6
        )
    assert stored(out)[0].shape[:2] == (60, 40)  # upright as stored: no tag needed


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_all_eight_orientations_match_pillows_exif_transpose(tmp_path, suffix):
    pixels = np.arange(3 * 5 * 3, dtype=np.uint8).reshape(3, 5, 3) * 5
    for orientation in range(1, 9):
        path = save(tmp_path / f"o{orientation}{suffix}", pixels, orientation=orientation)
        with Image.open(path) as image:
            expected = np.asarray(ImageOps.exif_transpose(image))
        np.testing.assert_array_equal(read_image(path).pixels, expected)


@pytest.mark.parametrize("suffix,dtype", [(".png", np.uint8), (".png", np.uint16),
                         (".tif", np.uint16), (".tif", np.float32), (".jpg", np.uint8),
                         (".webp", np.uint8)])  # fmt: skip
def test_a_colour_profile_is_kept_so_an_identity_edit_shows_the_same(tmp_path, suffix, dtype):
    """Wide-gamut colours (a Rec. 2020 profile) through an identity edit: the result keeps
    the profile, and what LittleCMS shows of it is what it shows of the source."""
    pixels = np.zeros((24, 36, 3))
    pixels[:, :12], pixels[:, 12:24], pixels[:, 24:] = (255, 0, 30), (200, 40, 40), (40, 180, 60)
    if dtype == np.float32:
        pixels = (pixels / 255).astype(np.float32)
    else:
        pixels = np.round(pixels / 255 * np.iinfo(dtype).max).astype(dtype)
    source = save(tmp_path / f"in{suffix}", pixels, profile=WIDE)
    out = tmp_path / f"out{suffix}"
    main(["recolor", str(source), *IDENTITY, "--method", "chang2015", "-o", str(out)])
    assert stored(out)[1] is not None  # the profile is there
    lossy = suffix in (".jpg", ".webp")  # written at quality 95
    difference = np.abs(shown(out) - shown(source))[4:-4, [6, 18, 30]]  # patch centres
    assert difference.max() * 255 < (3.01 if lossy else 0.51)
    if not lossy:  # stored values come back as they were (floats to float precision)
        np.testing.assert_allclose(stored(out)[0], stored(source)[0], atol=1e-6)


def test_palette_reports_the_colours_shown_and_png_gamma_counts(tmp_path, capsys):
    pixels = np.zeros((10, 20, 3), np.uint8)
    pixels[:, :10], pixels[:, 10:] = (255, 0, 30), (128, 128, 128)
    source = save(tmp_path / "wide.png", pixels, profile=WIDE)
    main(["palette", str(source), "-k", "2"])
    shown_colours = {tuple(np.round(c * 255).astype(int)) for c in shown(source)[0, [0, 15]]}
    printed = {tuple(int(line[i : i + 2], 16) for i in (1, 3, 5))
               for line in capsys.readouterr().out.splitlines()}  # fmt: skip
    assert printed == shown_colours, (printed, shown_colours)
    # a PNG whose gAMA chunk says linear light (gamma 1.0): 128 stored is 188 in sRGB
    linear = tmp_path / "linear.png"
    png = io.BytesIO()
    Image.fromarray(np.full((4, 4, 3), 128, np.uint8)).save(png, "PNG")
    linear.write_bytes(with_chunk(png.getvalue(), b"gAMA", struct.pack(">I", 100000)))
    main(["palette", str(linear), "-k", "1"])
    assert capsys.readouterr().out.startswith("#bcbcbc")
    main(["recolor", str(linear), "-p", "#888", "--source-palette", "#888",
          "--method", "chang2015", "-o", str(tmp_path / "linear-out.png")])  # fmt: skip
    with Image.open(tmp_path / "linear-out.png") as image:  # written with the same meaning
        profile = ImageCms.ImageCmsProfile(io.BytesIO(image.info["icc_profile"]))
        seen = ImageCms.profileToProfile(image, profile, ImageCms.createProfile("sRGB"))
        assert np.abs(np.asarray(seen).astype(int) - 188).max() <= 1


def cmyk_patches(extra=0) -> np.ndarray:
    ink = np.zeros((20, 30, 4 + extra), np.uint8)
    ink[:, :15, :4] = (255, 0, 0, 0)  # cyan
    ink[:, 15:, :4] = (0, 255, 255, 0)  # magenta + yellow: red
    if extra:
        ink[..., 4] = 255
    return ink


@pytest.mark.parametrize("extra", [0, 1])
def test_cmyk_tiff_gives_its_real_colours(tmp_path, capsys, extra):
    """CMYK (K is not alpha), with and without an alpha channel after it; as Pillow shows a
    CMYK file without a profile, the same colours as a CMYK JPEG gives."""
    source = tmp_path / "cmyk.tif"
    tifffile.imwrite(source, cmyk_patches(extra), photometric="separated",
                     extrasamples=["unassalpha"] * extra)  # fmt: skip
    main(["palette", str(source), "-k", "2"])
    assert sorted(capsys.readouterr().out.split()[::2]) == ["#00ffff", "#ff0000"]
    Image.fromarray(cmyk_patches(), "CMYK").save(tmp_path / "cmyk.jpg", quality=100)
    main(["palette", str(tmp_path / "cmyk.jpg"), "-k", "2"])
    assert sorted(capsys.readouterr().out.split()[::2]) == ["#00ffff", "#ff0000"]
    out = tmp_path / "out.png"
    main(["recolor", str(source), *IDENTITY, "--method", "chang2015", "-o", str(out)])
    with Image.open(out) as image:
        assert image.mode == ("RGBA" if extra else "RGB")
        assert np.asarray(image)[..., 3].min() == 255 if extra else True  # not see-through


def test_cmyk_with_its_icc_profile_is_shown_as_littlecms_shows_it(tmp_path):
    profile_path = Path("/usr/share/color/icc/krita/cmyk.icm")  # Krita's, where installed
    if not profile_path.exists():
        pytest.skip("no CMYK ICC profile on this machine")
    profile = profile_path.read_bytes()
    tifffile.imwrite(tmp_path / "cmyk.tif", cmyk_patches(), photometric="separated",
                     iccprofile=profile)  # fmt: skip
    picture = read_image(tmp_path / "cmyk.tif")
    expected = ImageCms.profileToProfile(
        Image.fromarray(cmyk_patches(), "CMYK"), ImageCms.ImageCmsProfile(str(profile_path)),
        ImageCms.createProfile("sRGB"), renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC,
        flags=ImageCms.Flags.BLACKPOINTCOMPENSATION, outputMode="RGB",
    )  # fmt: skip
    assert np.abs(picture.pixels.astype(int) - np.asarray(expected)).max() <= 2


def test_indexed_tiff_gives_its_colour_map(tmp_path, capsys):
    index = np.zeros((20, 30), np.uint8)
    index[:, 10:20], index[:, 20:] = 1, 2
    colour_map = np.zeros((3, 256), np.uint16)
    colour_map[:, :3] = [[65535, 0, 0], [0, 65535, 0], [0, 0, 65535]]
    source = tmp_path / "indexed.tif"
    tifffile.imwrite(source, index, photometric="palette", colormap=colour_map)
    main(["palette", str(source), "-k", "3"])
    assert sorted(capsys.readouterr().out.split()[::2]) == ["#0000ff", "#00ff00", "#ff0000"]
    out = tmp_path / "out.png"
    main(["recolor", str(source), "-p", "#ff0000,#00ff00,#ffff00", "--source-palette",
          "#ff0000,#00ff00,#0000ff", "--method", "chang2015", "-o", str(out)])  # fmt: skip
    red, green, blue = np.asarray(Image.open(out))[0, [5, 15, 25]].astype(int)
    assert blue[0] > 150 and blue[1] > 150 and blue[2] < 60, blue  # the blue became yellow
    assert red[0] > 200 and red[1] < 120 and green[1] > 200 and green[0] < 120, (red, green)


def bomb_png(path: Path, width=20000, height=10000) -> Path:
    """A valid 1-bit PNG of width x height, a few hundred KB on disk."""
    rows = zlib.compress(b"\0" * ((width // 8 + 2) * height), 9)
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(PNG_SIGNATURE_FOR_TESTS + png_chunk(b"IHDR", header)
                     + png_chunk(b"IDAT", rows) + png_chunk(b"IEND", b""))  # fmt: skip
    return path


PNG_SIGNATURE_FOR_TESTS = b"\x89PNG\r\n\x1a\n"


def test_image_bombs_are_refused_before_decoding(tmp_path):
    tiff = tmp_path / "bomb.tif"
    tifffile.imwrite(tiff, np.zeros((8, 8), np.uint8))
    with tifffile.TiffFile(tiff, mode="r+b") as file:  # the header claims 100000 x 100000
        file.pages.first.tags["ImageWidth"].overwrite(100000)
        file.pages.first.tags["ImageLength"].overwrite(100000)
    for path in (bomb_png(tmp_path / "bomb.png"), tiff):
        began = time.perf_counter()
        with pytest.raises(SystemExit, match=r"too large: .* over the limit of 134,217,728 "
                                             r"\(--max-pixels\)"):  # fmt: skip
            main(["palette", str(path)])
        assert time.perf_counter() - began < 1.0
    # and the command refuses it before loading torch (a second and a quarter GB)
    code = "import sys, backend.cli.imagefile; print('torch' in sys.modules)"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert loaded.stdout.strip() == "False", loaded
    with pytest.raises(SystemExit, match="30 x 20 is 600 pixels, over the limit of 500"):
        main(["palette", str(save(tmp_path / "small.png", patches(size=(20, 30)))),
              "--max-pixels", "500"])  # fmt: skip


def grey_png(tmp_path, mode, pixels, **info):
    path = tmp_path / f"{mode}.png"
    Image.fromarray(pixels, mode).save(path, **info)
    return path


@pytest.mark.parametrize(
    "make,expected",
    [
        # (file, (format, displayed RGB(A) of pixel (0, 0), 8-bit units))
        (lambda t: grey_png(t, "L", np.full((4, 4), 90, np.uint8)), ("RGB8", (90, 90, 90))),
        (lambda t: Image.new("1", (4, 4), 1).save(t / "1.png") or t / "1.png",
         ("RGB8", (255, 255, 255))),
        (lambda t: grey_png(t, "LA", np.full((4, 4, 2), 90, np.uint8)),
         ("RGBA8", (90, 90, 90, 90))),
        (lambda t: save(t / "g16.png", np.full((4, 4, 2), 30000, np.uint16)),
         ("RGBA16", (117, 117, 117, 117))),
        (lambda t: save(t / "g16.tif", np.full((4, 4), 30000, np.uint16)[..., None]
                        .repeat(3, 2)), ("RGBA16", (117, 117, 117, 255))),
        (lambda t: save(t / "f.tif", np.full((4, 4, 3), 0.5, np.float32)),
         ("RGBAF32", (128, 128, 128, 255))),
    ],
)  # fmt: skip
def test_grey_1_bit_16_bit_and_float_files_read_as_shown(tmp_path, make, expected):
    picture = read_image(make(tmp_path))
    name, colour = expected
    assert picture.pixel_format == name
    first = picture.pixels[0, 0].astype(np.float64)
    scale = {"RGB8": 1, "RGBA8": 1, "RGBA16": 255 / 65535, "RGBAF32": 255}[name]
    assert np.abs(first[: len(colour)] * scale - colour).max() < 1, first


def test_more_tiff_colour_models(tmp_path):
    """1-bit min-is-white, 4-bit grey, planar RGB, premultiplied alpha, YCbCr."""
    tifffile.imwrite(tmp_path / "w.tif", np.array([[True, False]]), photometric="miniswhite")
    assert read_image(tmp_path / "w.tif").pixels[0, :, 0].tolist() == [0, 255]
    tifffile.imwrite(tmp_path / "g4.tif", np.array([[15, 5]], np.uint8), bitspersample=4,
                     photometric="minisblack")  # fmt: skip
    assert read_image(tmp_path / "g4.tif").pixels[0, :, 0].tolist() == [255, 85]
    rgb = patches(size=(4, 6))
    tifffile.imwrite(tmp_path / "p.tif", np.moveaxis(rgb, -1, 0), photometric="rgb",
                     planarconfig="separate")  # fmt: skip
    np.testing.assert_array_equal(read_image(tmp_path / "p.tif").pixels, rgb)
    half = np.dstack([rgb // 2, np.full(rgb.shape[:2], 128, np.uint8)])
    tifffile.imwrite(tmp_path / "a.tif", half, photometric="rgb", extrasamples=["assocalpha"])
    unpremultiplied = read_image(tmp_path / "a.tif").pixels
    assert np.abs(unpremultiplied[..., :3].astype(int) - rgb).max() <= 2
    tifffile.imwrite(tmp_path / "y.tif", np.full((4, 4, 3), (200, 50, 30), np.uint8),
                     photometric="ycbcr")  # fmt: skip
    expected = Image.new("YCbCr", (1, 1), (200, 50, 30)).convert("RGB").getpixel((0, 0))
    assert tuple(read_image(tmp_path / "y.tif").pixels[0, 0]) == expected


def test_files_that_cannot_be_shown_right_are_refused_with_the_reason(tmp_path):
    cases = {
        "lab.tif": (lambda p: tifffile.imwrite(p, np.zeros((4, 4, 3), np.uint8),
                                               photometric="cielab"), "L\\*a\\*b\\*"),
        "inks.tif": (lambda p: tifffile.imwrite(p, np.zeros((4, 4, 6), np.uint8),
                                                photometric="separated", extratags=[
                                                    (332, "H", 1, 2, True)]), "inks"),
        "signed.tif": (lambda p: tifffile.imwrite(p, np.zeros((4, 4), np.int16)), "int16"),
        "anim.gif": (lambda p: Image.new("RGB", (4, 4)).save(
            p, save_all=True, append_images=[Image.new("RGB", (4, 4), "red")]), "animation"),
        "text.png": (lambda p: p.write_text("not an image"), "not an image file"),
        "cut.png": (lambda p: p.write_bytes(bomb_png(tmp_path / "b.png", 64, 64)
                                            .read_bytes()[:45]), "."),
    }  # fmt: skip
    for name, (make, reason) in cases.items():
        make(tmp_path / name)
        with pytest.raises(ImageFileError, match=reason):
            read_image(tmp_path / name)


def test_damaged_or_odd_files_say_so_in_one_line(tmp_path, capsys):
    """A cut TIFF fails with tifffile's reason only (no log lines); damaged EXIF, a cHRM
    chunk LittleCMS cannot use and extra channels that are not alpha are read, with a note
    at most."""
    tiled = tmp_path / "tiled.tif"
    tifffile.imwrite(tiled, np.zeros((64, 64, 3), np.uint8), tile=(16, 16), photometric="rgb")
    (tmp_path / "cut.tif").write_bytes(tiled.read_bytes()[:400])
    with pytest.raises(ImageFileError):
        read_image(tmp_path / "cut.tif")
    png = io.BytesIO()
    Image.fromarray(np.full((4, 4, 3), 100, np.uint8)).save(png, "PNG", exif=b"Exif\0\0MM\0*\0")
    bad_chrm = png_chunk(b"gAMA", struct.pack(">I", 45455)) + png_chunk(b"cHRM", bytes(32))
    (tmp_path / "odd.png").write_bytes(png.getvalue()[:33] + bad_chrm + png.getvalue()[33:])
    assert read_image(tmp_path / "odd.png").pixels[0, 0].tolist() == [100, 100, 100]
    tifffile.imwrite(tmp_path / "extra.tif", np.full((4, 4, 2), 100, np.uint8),
                     photometric="minisblack", extrasamples=["unspecified"])  # fmt: skip
    picture = read_image(tmp_path / "extra.tif")  # not alpha (TIFF 6.0): left out
    assert picture.pixel_format == "RGB8" and picture.pixels[0, 0].tolist() == [100] * 3
    notes = capsys.readouterr().err.splitlines()
    assert len(notes) == 3 and all(line.startswith("note: ") for line in notes), notes
    assert "EXIF" in notes[0] and "cHRM" in notes[1] and "not alpha" in notes[2]


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_png_is_fast_by_default_and_smallest_on_request(tmp_path, dtype):
    from skimage import data

    from backend.cli.imagefile import write_image

    rgb = data.astronaut()[100:260, 150:400].astype(dtype) * (257 if dtype == np.uint16 else 1)
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], np.iinfo(dtype).max // 2, dtype)])
    picture = read_image(save(tmp_path / "in.png", rgba))
    sizes = {}
    for small in (False, True):
        path = tmp_path / f"out-{small}.png"
        write_image(path, picture, small=small)
        np.testing.assert_array_equal(read_image(path).pixels, picture.pixels)  # lossless
        sizes[small] = path.stat().st_size
    assert sizes[True] < sizes[False]


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_the_default_png_opens_in_other_tools_with_its_profile(tmp_path, dtype):
    """The fast PNG (backend.cli.pngwrite) of a wide-gamut picture with alpha: OpenCV gives
    the same samples, Pillow the same profile (and the same 8-bit samples)."""
    import cv2

    from backend.cli.imagefile import write_image

    rgba = np.dstack([patches(dtype), np.linspace(0, np.iinfo(dtype).max, 40 * 60).reshape(
        40, 60).astype(dtype)])  # fmt: skip
    picture = read_image(save(tmp_path / "in.png", rgba, profile=WIDE))
    write_image(tmp_path / "out.png", picture)
    opencv = cv2.imread(str(tmp_path / "out.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(cv2.cvtColor(opencv, cv2.COLOR_BGRA2RGBA), rgba)
    with Image.open(tmp_path / "out.png") as image:
        assert image.info["icc_profile"] == WIDE
        if dtype == np.uint8:
            np.testing.assert_array_equal(np.asarray(image), rgba)


@pytest.mark.parametrize("late", [False, True])
def test_png_orientation_is_found_before_or_after_the_pixels(tmp_path, late):
    """EXIF may follow the image data in a PNG: it is still found (and only then is the
    file read twice)."""
    pixels = patches()
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    png = buffer.getvalue()
    chunk = png_chunk(b"eXIf", exif(6)[6:])  # no "Exif\0\0" in PNG
    png = png[:-12] + chunk + png[-12:] if late else png[:33] + chunk + png[33:]
    path = tmp_path / "turned.png"
    path.write_bytes(png)
    np.testing.assert_array_equal(read_image(path).pixels, upright(pixels, 6))


def test_recolor_writes_the_smallest_png_on_request(tmp_path):
    from skimage import data

    source = tmp_path / "photo.png"
    Image.fromarray(data.astronaut()[::2, ::2]).save(source)
    sizes = {}
    for choice in ("fast", "small"):
        output = tmp_path / f"{choice}.png"
        main(["recolor", str(source), "-p", "#204080,#e0a040", "--method", "chang2015",
              "-o", str(output), "--png-compression", choice])  # fmt: skip
        sizes[choice] = output.stat().st_size
        assert read_image(output).pixels.shape == (256, 256, 3)
    np.testing.assert_array_equal(
        read_image(tmp_path / "fast.png").pixels, read_image(tmp_path / "small.png").pixels
    )
    assert sizes["small"] <= sizes["fast"]
