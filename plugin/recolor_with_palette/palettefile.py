"""Palette files in and out: GIMP .gpl, Krita .kpl, Adobe .ase and .aco, plain hex lists
(.hex, .txt: one colour per line, as palette sites export them) and palette strip images.

Read: every format above. Written: .gpl and .kpl. Colours come out as "#rrggbb" sRGB
strings, the protocol's form (docs/PROTOCOL.md), in the file's order.

Standard library only: the editor plug-ins carry a copy of this file
(plugin/recolor_with_palette/palettefile.py; an editor's Python may have no numpy) and
tests/test_palettefile.py keeps the two equal. For the same reason a palette strip image is
decoded by the caller (the CLI through backend/cli/imagefile.py, Krita through QImage) and
handed here as RGBA8 bytes (strip_palette).

Why own readers: no well-kept Python library reads these formats (on PyPI, `swatch`, 2014,
reads ASE only; `colourswatch`, 2024, reads ASE but not ACO or KPL and needs Pillow and
YAML; the others are abandoned one-file scripts), and none is standard-library. So each
reader here is small, strict and follows its format's published description:
- .gpl: GIMP's palette loader (app/core/gimppalette-load.c): "GIMP Palette" on line 1,
  optional "Name:" and "Columns:" lines, "#" comments, then "R G B [name]" per line.
- .kpl: Krita's KPL description (docs.krita.org, "The Krita Palette format KPL"): a zip
  holding colorset.xml, a <Colorset> of <ColorSetEntry> elements (directly or in <Group>s),
  each with one colour element (sRGB, RGB, Gray, Lab, CMYK, XYZ) and a <Position>.
- .ase: Adobe Swatch Exchange as Adobe's applications write it (no official public spec;
  the layout all readers agree on): "ASEF", version 1.0, a block count, then blocks of
  type (0x0001 colour, 0xC001 group start, 0xC002 group end) and length; a colour block
  holds a UTF-16BE name, a model ("RGB ", "CMYK", "LAB ", "Gray"), float32 values and a
  type. All big-endian.
- .aco: Adobe's "Photoshop File Formats Specification", section "Color Swatches": a
  version 1 section (count, then colour space and four uint16 values per colour),
  optionally followed by a version 2 section that repeats the colours with UTF-16 names.
  RGB, HSB, CMYK, Lab, grey and wide CMYK are read; colour-book spaces (Pantone, ...) are
  refused, since their values are book ids, not colours.
CMYK has no profile in these files, so it is converted naively (R = (1 - C)(1 - K)) and a
note says so; Lab (D50, as Adobe and ICC store it) is converted exactly, with Bradford
adaptation to sRGB's D65. (These few conversions live here, not in backend/core/color.py,
because the plug-in's copy cannot import the backend; they run once per swatch.)

Every error is a PaletteFileError whose message names the file and where it went wrong
(line, or byte offset for binary files) and what was expected. Hostile files are refused
early: at most MAX_FILE_BYTES are read, a zip member is read only up to MAX_XML_BYTES
whatever its header says, XML with a DOCTYPE (entity expansion) is refused, and at most
MAX_FILE_COLORS colours are taken. The protocol itself takes 1 to 12 colours (wire.py's
MAX_PALETTE_COLORS): the caller decides what to do with a file that holds more.
"""

from __future__ import annotations

import colorsys
import io
import math
import os
import re
import struct
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree
from xml.parsers import expat

MAX_FILE_BYTES = 4 * 1024 * 1024  # the largest palette file read; real ones are a few KiB
MAX_XML_BYTES = 4 * 1024 * 1024  # the largest colorset.xml unpacked from a .kpl
MAX_FILE_COLORS = 4096  # colours taken from one file (Krita's largest bundled set has 768)
MAX_STRIP_PIXELS = 16 * 1024 * 1024  # a strip's width x height, at most (4096 x 4096)

READ_FORMATS = {
    ".gpl": "GIMP palette",
    ".kpl": "Krita palette",
    ".ase": "Adobe Swatch Exchange",
    ".aco": "Adobe Photoshop swatches",
    ".hex": "hex list",
    ".txt": "hex list",
}
WRITE_FORMATS = {".gpl": "GIMP palette", ".kpl": "Krita palette"}
KPL_MIMETYPE = b"krita/x-colorset"
_HEX = re.compile(r"#?([0-9a-fA-F]{6}|[0-9a-fA-F]{3})")
# a '#' token that starts like a colour ("#e63946,", "#ff00"): an error, not a comment
_HEX_LIKE = re.compile(r"#[0-9a-fA-F]+(?![0-9A-Za-z_])")
UTF8_BOM = b"\xef\xbb\xbf"


class PaletteFileError(ValueError):
    """A palette file that cannot be read or written; the message names the file, where in
    it (line or byte offset) and what was wrong."""


@dataclass(frozen=True)
class PaletteFile:
    name: str  # the palette's own name, or the file's name without extension
    colors: tuple[str, ...]  # "#rrggbb" sRGB, in the file's order
    notes: tuple[str, ...] = field(default=())  # conversions worth telling the user


# --- colours ------------------------------------------------------------------------------
def _hex(red: float, green: float, blue: float) -> str:
    """sRGB components in 0..1 (clipped) -> "#rrggbb"."""
    return "#" + "".join(f"{round(min(1.0, max(0.0, c)) * 255):02x}" for c in (red, green, blue))


def _encode_srgb(linear: float) -> float:
    """IEC 61966-2-1's transfer curve, linear light -> sRGB value."""
    linear = min(1.0, max(0.0, linear))
    return linear * 12.92 if linear <= 0.0031308 else 1.055 * linear ** (1 / 2.4) - 0.055


def _from_linear(red: float, green: float, blue: float) -> str:
    return _hex(_encode_srgb(red), _encode_srgb(green), _encode_srgb(blue))


# XYZ relative to D50 (ICC's connection space) -> linear sRGB, Bradford-adapted to D65
# (B. Lindbloom's sRGB matrix for a D50 reference white).
_SRGB_FROM_XYZ_D50 = (
    (3.1338561, -1.6168667, -0.4906146),
    (-0.9787684, 1.9161415, 0.0334540),
    (0.0719453, -0.2289914, 1.4052427),
)
_WHITE_D50 = (0.96422, 1.0, 0.82521)


def _from_xyz_d50(x: float, y: float, z: float) -> str:
    return _from_linear(*(row[0] * x + row[1] * y + row[2] * z for row in _SRGB_FROM_XYZ_D50))


def _from_lab_d50(lightness: float, a: float, b: float) -> str:
    """CIE L*a*b* (D50, L in 0..100) -> "#rrggbb"."""
    fy = (lightness + 16) / 116
    fx, fz = fy + a / 500, fy - b / 200

    def inverse(f: float) -> float:
        return f**3 if f > 6 / 29 else 3 * (6 / 29) ** 2 * (f - 4 / 29)

    return _from_xyz_d50(*(w * inverse(f) for w, f in zip(_WHITE_D50, (fx, fy, fz))))


def _from_cmyk(cyan: float, magenta: float, yellow: float, black: float) -> str:
    """Naive CMYK (0..1 ink) -> sRGB: without the printer's profile nothing better exists."""
    return _hex(*((1 - ink) * (1 - black) for ink in (cyan, magenta, yellow)))


def _finite(values, where: str) -> None:
    if not all(math.isfinite(v) for v in values):
        raise PaletteFileError(f"{where}: a colour value is not a finite number")


# --- reading ------------------------------------------------------------------------------
def read_palette(path) -> PaletteFile:
    """A palette file's colours (the type is told by content, else by extension).
    PaletteFileError if it cannot be read or is malformed; an image file (a palette strip)
    is refused here with the hint to decode it and call strip_palette."""
    path = Path(path)
    try:
        if path.exists() and not path.is_file():
            raise PaletteFileError(f"{path}: not a regular file")
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise PaletteFileError(
                f"{path}: {size:,} bytes is too large for a palette file "
                f"(at most {MAX_FILE_BYTES:,})"
            )
        with open(path, "rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)
    except OSError as error:
        raise PaletteFileError(f"{path}: {error.strerror or error}") from None
    return parse_palette(data, path.name)


def palette_kind(data: bytes, file_name: str) -> str:
    """Which reader a file's bytes need: "gpl", "kpl", "ase", "aco", "hex" or "image" (a
    palette strip, to be decoded by the caller)."""
    suffix = os.path.splitext(file_name)[1].lower()
    if data.removeprefix(UTF8_BOM).startswith(b"GIMP Palette"):
        return "gpl"
    if data.startswith(b"ASEF"):
        return "ase"
    if data.startswith(b"PK\x03\x04"):
        return "kpl"
    if suffix in (".gpl", ".kpl", ".ase", ".aco"):  # damaged: its own reader says why
        return suffix[1:]
    if data[:2] in (b"\0\1", b"\0\2"):  # an .aco by another name: text never starts so
        return "aco"
    image_signatures = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"BM", b"II*\0", b"MM\0*",
                        b"RIFF", b"qoif")  # fmt: skip
    if data.startswith(image_signatures):
        return "image"
    return "hex"


def parse_palette(data: bytes, file_name: str) -> PaletteFile:
    """A palette file's bytes -> its colours; `file_name` names it in messages and tells
    the type where the content does not (.aco)."""
    kind = palette_kind(data, file_name)
    stem = os.path.splitext(file_name)[0]
    if kind == "image":
        raise PaletteFileError(f"{file_name}: an image: read it as a palette strip")
    reader = {"gpl": _parse_gpl, "kpl": _parse_kpl, "ase": _parse_ase, "aco": _parse_aco,
              "hex": _parse_hex_list}[kind]  # fmt: skip
    name, colors, notes = reader(data, file_name)
    if not colors:
        raise PaletteFileError(f"{file_name}: holds no colours")
    return PaletteFile(name or stem, tuple(colors), tuple(notes))


def _text_lines(data: bytes, file_name: str, legacy: bool = False) -> list[str]:
    """The lines of a UTF-8 text file (a BOM skipped). `legacy`: text that is not UTF-8 is
    read as Windows-1252, as GIMP and Krita read old .gpl files (names typed on Windows);
    the colours are ASCII either way."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        if legacy:
            return data.decode("cp1252", errors="replace").splitlines()
        kinds = ", ".join(sorted(set(READ_FORMATS)))
        raise PaletteFileError(
            f"{file_name}: not a palette file this reads ({kinds}, or a palette strip image): "
            f"byte {error.start} is not UTF-8 text"
        ) from None
    return text.splitlines()


class _Colors(list):
    """A list of colours that refuses to grow past MAX_FILE_COLORS."""

    def __init__(self, file_name: str):
        super().__init__()
        self.file_name = file_name

    def add(self, color: str, where: str) -> None:
        if len(self) >= MAX_FILE_COLORS:
            raise PaletteFileError(
                f"{self.file_name}: {where}: more than {MAX_FILE_COLORS} colours"
            )
        self.append(color)


def _parse_gpl(data: bytes, file_name: str):
    lines = _text_lines(data, file_name, legacy=True)
    if not lines or not lines[0].startswith("GIMP Palette"):
        raise PaletteFileError(f"{file_name}: line 1: expected 'GIMP Palette'")
    name, colors = "", _Colors(file_name)
    for number, line in enumerate(lines[1:], start=2):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if text.startswith("Name:"):
            name = text[5:].strip()
            continue
        if text.startswith("Columns:"):
            continue  # the layout of GIMP's palette view: nothing to do with the colours
        fields = text.split(None, 3)
        try:
            values = [int(v) for v in fields[:3]]
        except ValueError:
            values = []
        if len(values) != 3:
            raise PaletteFileError(
                f"{file_name}: line {number}: expected 'R G B [name]' with R, G, B whole "
                f"numbers 0-255, got {text[:60]!r}"
            )
        if not all(0 <= v <= 255 for v in values):
            raise PaletteFileError(
                f"{file_name}: line {number}: {' '.join(fields[:3])}: R, G and B must be 0-255"
            )
        colors.add("#{:02x}{:02x}{:02x}".format(*values), f"line {number}")
    return name, colors, []


def _parse_hex_list(data: bytes, file_name: str):
    """One colour per line: #rrggbb, rrggbb, #rgb, optionally followed by a name; blank
    lines and comments (';', '//', or '#' followed by something that is not a colour)
    skipped. A Paint.NET palette (';paint.net Palette File' at the top) holds AARRGGBB."""
    lines = _text_lines(data, file_name)
    paint_net = any(line.strip().lower().startswith(";paint.net") for line in lines[:5])
    colors = _Colors(file_name)
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith((";", "//")):
            continue
        token = text.split(None, 1)[0]
        if paint_net and re.fullmatch(r"[0-9a-fA-F]{8}", token):
            colors.add("#" + token[2:].lower(), f"line {number}")
            continue
        match = _HEX.fullmatch(token)
        if match is None:
            if token.startswith("#") and not _HEX_LIKE.match(token):
                continue  # a comment: '# colours from ...', '#' alone, '#Colours'
            raise PaletteFileError(
                f"{file_name}: line {number}: {token[:40]!r} is not a colour: expected "
                "one per line as #rrggbb, rrggbb or #rgb"
            )
        digits = match.group(1).lower()
        if len(digits) == 3:
            digits = "".join(d * 2 for d in digits)
        colors.add("#" + digits, f"line {number}")
    return "", colors, []


def _parse_kpl(data: bytes, file_name: str):
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError) as error:
        raise PaletteFileError(f"{file_name}: not a Krita palette (a zip file): {error}") from None
    with archive:
        try:
            member = archive.getinfo("colorset.xml")
        except KeyError:
            raise PaletteFileError(f"{file_name}: a zip without colorset.xml: not a Krita "
                                   "palette") from None  # fmt: skip
        if member.file_size > MAX_XML_BYTES:
            raise PaletteFileError(
                f"{file_name}: colorset.xml unpacks to {member.file_size:,} bytes "
                f"(at most {MAX_XML_BYTES:,})"
            )
        try:
            with archive.open(member) as stream:
                xml = stream.read(MAX_XML_BYTES + 1)  # whatever the header claims
        except (zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError) as error:
            raise PaletteFileError(f"{file_name}: colorset.xml cannot be unpacked: "
                                   f"{error}") from None  # fmt: skip
    if len(xml) > MAX_XML_BYTES:
        raise PaletteFileError(f"{file_name}: colorset.xml is larger than {MAX_XML_BYTES:,} bytes")
    _refuse_doctype(xml, file_name)
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError as error:
        line, column = error.position
        raise PaletteFileError(f"{file_name}: colorset.xml line {line}, column {column}: "
                               f"not well-formed XML") from None  # fmt: skip
    if root.tag.lower() != "colorset":
        raise PaletteFileError(f"{file_name}: colorset.xml: the top element is <{root.tag}>, "
                               "expected <Colorset>")  # fmt: skip
    colors, notes = _Colors(file_name), set()
    groups = [root] + [group for group in root if group.tag == "Group"]
    for group in groups:
        entries = [entry for entry in group if entry.tag == "ColorSetEntry"]
        entries.sort(key=_kpl_position)  # Krita shows each group as a grid, row by row
        for entry in entries:
            where = f"colorset.xml, entry {entry.get('name')!r}"
            colors.add(_kpl_color(entry, f"{file_name}: {where}", notes), where)
    return root.get("name", ""), colors, sorted(notes)


def _refuse_doctype(xml: bytes, file_name: str) -> None:
    """PaletteFileError for XML that declares a DOCTYPE or entities (entity expansion), in
    whatever encoding it declares (a byte search misses "<!DOCTYPE" in UTF-16)."""

    def refuse(*_):
        raise PaletteFileError(f"{file_name}: colorset.xml declares a DOCTYPE or entities "
                               "(Krita writes none): refused")  # fmt: skip

    scanner = expat.ParserCreate()
    scanner.StartDoctypeDeclHandler = refuse
    scanner.EntityDeclHandler = refuse
    try:
        scanner.Parse(xml, True)
    except expat.ExpatError:
        pass  # not well-formed: ElementTree's parse says where


def _kpl_position(entry) -> tuple[int, int]:
    position = entry.find("Position")
    try:
        return int(position.get("row")), int(position.get("column"))
    except (AttributeError, TypeError, ValueError):
        return (1 << 30, 0)  # without a position: after the placed ones, in file order


KPL_ATTRIBUTES = {"sRGB": "rgb", "RGB": "rgb", "Gray": "g", "Lab": "Lab", "CMYK": "cmyk",
                  "XYZ": "xyz"}  # fmt: skip


def _kpl_color(entry, where: str, notes: set) -> str:
    """A ColorSetEntry's colour element -> "#rrggbb". RGB and Gray in a linear profile
    (Krita's "-g10" ones) are encoded with the sRGB curve; RGB in another named profile is
    taken as sRGB, with a note (the profile's primaries need a colour engine)."""
    element = next((child for child in entry if child.tag != "Position"), None)
    if element is None:
        raise PaletteFileError(f"{where}: no colour element")
    if element.tag not in KPL_ATTRIBUTES:
        models = ", ".join(KPL_ATTRIBUTES)
        raise PaletteFileError(f"{where}: colour model <{element.tag}> is not read ({models} are)")
    names = KPL_ATTRIBUTES[element.tag]
    try:
        values = [float(element.get(name)) for name in names]
    except (TypeError, ValueError):
        raise PaletteFileError(f"{where}: <{element.tag}> needs the numbers "
                               f"{', '.join(names)}") from None  # fmt: skip
    _finite(values, where)
    space = (element.get("space") or "").lower()
    linear = "g10" in space or "linear" in space
    if element.tag in ("sRGB", "RGB", "Gray"):
        rgb = values * 3 if element.tag == "Gray" else values
        if linear:
            return _from_linear(*rgb)
        if element.tag == "RGB" and space and "srgb" not in space:
            notes.add(f"RGB colours in {element.get('space')} are taken as sRGB")
        return _hex(*rgb)
    if element.tag == "Lab":
        return _from_lab_d50(*values)
    if element.tag == "XYZ":
        return _from_xyz_d50(*values)
    notes.add("CMYK colours are converted without a printer profile (approximate)")
    return _from_cmyk(*values)


class _Bytes:
    """A big-endian reader over a binary file that reports where it ran out."""

    def __init__(self, data: bytes, file_name: str):
        self.data, self.offset, self.file_name = data, 0, file_name

    def take(self, fmt: str, what: str):
        size = struct.calcsize(">" + fmt)
        if self.offset + size > len(self.data):
            raise PaletteFileError(f"{self.file_name}: byte {self.offset}: the file ends inside "
                                   f"{what} (truncated?)")  # fmt: skip
        values = struct.unpack_from(">" + fmt, self.data, self.offset)
        self.offset += size
        return values

    def utf16(self, units: int, what: str) -> str:
        start = self.offset
        raw = self.take(f"{2 * units}s", what)[0]
        try:
            return raw.decode("utf-16-be").rstrip("\0")
        except UnicodeDecodeError:
            raise PaletteFileError(f"{self.file_name}: byte {start}: {what} is not UTF-16 "
                                   "text") from None  # fmt: skip

    def fail(self, at: int, message: str):
        raise PaletteFileError(f"{self.file_name}: byte {at}: {message}")


ASE_COLOR, ASE_GROUP_START, ASE_GROUP_END = 0x0001, 0xC001, 0xC002
ASE_MODELS = {b"RGB ": 3, b"CMYK": 4, b"LAB ": 3, b"Gray": 1}


def _parse_ase(data: bytes, file_name: str):
    reader = _Bytes(data, file_name)
    reader.take("4s", "the signature")
    major, _minor = reader.take("HH", "the version")
    if major != 1:
        reader.fail(4, f"ASE version {major} is not read (1 is)")
    (blocks,) = reader.take("I", "the block count")
    if blocks > (len(data) - 12) // 6:  # every block takes at least 6 bytes
        reader.fail(8, f"{blocks:,} blocks cannot fit in {len(data):,} bytes")
    colors, notes = _Colors(file_name), set()
    for index in range(blocks):
        start = reader.offset
        kind, length = reader.take("HI", f"block {index + 1}'s header")
        end = reader.offset + length
        if end > len(data):
            reader.fail(start, f"block {index + 1} is {length:,} bytes long, past the end")
        if kind == ASE_COLOR:
            colors.add(_ase_color(reader, index + 1, notes), f"byte {start}")
        elif kind not in (ASE_GROUP_START, ASE_GROUP_END):
            reader.fail(start, f"block {index + 1} has unknown type 0x{kind:04x}")
        reader.offset = end  # a block's length is the truth (group blocks hold a name)
    return "", colors, sorted(notes)


def _ase_color(reader: _Bytes, index: int, notes: set) -> str:
    what = f"colour block {index}"
    (units,) = reader.take("H", what)
    reader.utf16(units, f"{what}'s name")
    at = reader.offset
    model = reader.take("4s", what)[0]
    if model not in ASE_MODELS:
        reader.fail(at, f"{what}: colour model {model!r} is not RGB, CMYK, LAB or Gray")
    values = reader.take("f" * ASE_MODELS[model], what)
    _finite(values, f"{reader.file_name}: byte {at}")
    if model == b"RGB ":
        return _hex(*values)
    if model == b"Gray":
        return _hex(*values * 3)
    if model == b"LAB ":
        return _from_lab_d50(values[0] * 100, values[1], values[2])  # L is stored 0..1
    notes.add("CMYK colours are converted without a printer profile (approximate)")
    return _from_cmyk(*values)


ACO_SPACES = {0: "RGB", 1: "HSB", 2: "CMYK", 7: "Lab", 8: "Grayscale", 9: "wide CMYK"}
ACO_BOOKS = {3: "Pantone", 4: "Focoltone", 5: "Trumatch", 6: "Toyo", 10: "HKS"}


def _parse_aco(data: bytes, file_name: str):
    """The version 2 section when there is one (it has the names; the colours are the
    same), else version 1."""
    reader = _Bytes(data, file_name)
    colors, notes = None, set()
    for expected in (1, 2):
        if reader.offset == len(data) and colors is not None:
            break  # a version 1 file
        start = reader.offset
        version, count = reader.take("HH", "a section header")
        if version != expected:
            reader.fail(start, f"expected swatches version {expected}, found {version}")
        if count > MAX_FILE_COLORS:
            reader.fail(start + 2, f"{count:,} colours, more than {MAX_FILE_COLORS}")
        section = _Colors(file_name)
        for index in range(count):
            at = reader.offset
            space, w, x, y, z = reader.take("HHHHH", f"colour {index + 1}")
            section.add(_aco_color(reader, at, space, (w, x, y, z), notes), f"byte {at}")
            if version == 2:
                (units,) = reader.take("I", f"colour {index + 1}'s name length")
                if units > (len(data) - reader.offset) // 2:
                    reader.fail(reader.offset - 4, f"a name of {units:,} characters runs past "
                                "the end")  # fmt: skip
                reader.utf16(units, f"colour {index + 1}'s name")
        colors = section
    if reader.offset != len(data):
        reader.fail(reader.offset, f"{len(data) - reader.offset} bytes after the last section")
    return "", colors, sorted(notes)


def _aco_color(reader: _Bytes, at: int, space: int, values, notes: set) -> str:
    w, x, y, z = values
    if space == 0:
        return _hex(w / 65535, x / 65535, y / 65535)
    if space == 1:
        return _hex(*colorsys.hsv_to_rgb(w / 65536, x / 65535, y / 65535))
    if space == 2:  # 0 is 100 % ink
        notes.add("CMYK colours are converted without a printer profile (approximate)")
        return _from_cmyk(*(1 - v / 65535 for v in values))
    if space == 7:  # L 0..10000, a and b signed hundredths
        a, b = (v - 65536 if v >= 32768 else v for v in (x, y))
        return _from_lab_d50(w / 100, a / 100, b / 100)
    if space == 8:  # 0..10000, 0 is black
        return _hex(*[w / 10000] * 3)
    if space == 9:  # 0..10000, 0 is no ink
        notes.add("CMYK colours are converted without a printer profile (approximate)")
        return _from_cmyk(*(v / 10000 for v in values))
    if space in ACO_BOOKS:
        reader.fail(at, f"a {ACO_BOOKS[space]} colour-book swatch holds a book id, not a "
                    "colour: export the swatches as RGB")  # fmt: skip
    reader.fail(at, f"unknown colour space {space}")


def strip_palette(width: int, height: int, rgba: bytes, file_name: str) -> PaletteFile:
    """A palette strip image (swatches side by side, as palette sites export them) ->
    its distinct colours in reading order: left to right, then top to bottom, as each
    first appears. `rgba`: width x height RGBA8 pixels, row by row. Fully transparent
    pixels (a background) are skipped; translucent ones are refused, as are images with
    more than MAX_FILE_COLORS colours (a photo or antialiased swatches, not a strip)."""
    if width * height > MAX_STRIP_PIXELS:
        raise PaletteFileError(f"{file_name}: {width} x {height} is too large for a palette "
                               f"strip (at most {MAX_STRIP_PIXELS:,} pixels)")  # fmt: skip
    if len(rgba) != width * height * 4:
        raise PaletteFileError(f"{file_name}: {len(rgba)} bytes for {width} x {height} RGBA8")
    seen: dict[bytes, None] = {}
    row_bytes, previous = width * 4, None
    for y in range(height):
        row = rgba[y * row_bytes : (y + 1) * row_bytes]
        if row == previous:  # swatches are usually many identical rows
            continue
        previous = row
        # one int per pixel (this machine's byte order); dict.fromkeys keeps the first
        # appearance of each, in order, at C speed
        pixels = memoryview(row).cast("I")
        for key in dict.fromkeys(pixels):
            pixel = struct.pack("=I", key)
            if pixel in seen or pixel[3] == 0:
                continue
            if pixel[3] != 255:
                x = pixels.tolist().index(key)
                raise PaletteFileError(f"{file_name}: pixel x={x}, y={y} is translucent: "
                                       "a palette strip has opaque swatches")  # fmt: skip
            seen[pixel] = None
            if len(seen) > MAX_FILE_COLORS:
                raise PaletteFileError(f"{file_name}: more than {MAX_FILE_COLORS} colours: "
                                       "not a strip of flat swatches (a photo?)")  # fmt: skip
    if not seen:
        raise PaletteFileError(f"{file_name}: no opaque pixel")
    colors = tuple("#" + pixel[:3].hex() for pixel in seen)
    return PaletteFile(os.path.splitext(file_name)[0], colors)


# --- writing ------------------------------------------------------------------------------
def gpl_text(name: str, colors, labels=None) -> str:
    """A GIMP palette: `colors` "#rrggbb", `labels` (optional) one name per colour."""
    labels = labels or [color for color in colors]
    lines = ["GIMP Palette", f"Name: {_one_line(name)}", f"Columns: {min(len(colors), 16)}",
             "#"]  # fmt: skip
    for color, label in zip(colors, labels):
        red, green, blue = _rgb(color)
        lines.append(f"{red:3d} {green:3d} {blue:3d}\t{_one_line(label)}")
    return "\n".join(lines) + "\n"


def kpl_bytes(name: str, colors, labels=None) -> bytes:
    """A Krita palette: a zip with mimetype, colorset.xml (8-bit sRGB entries in one row
    per 16 colours) and an empty profiles.xml (sRGB needs no profile file)."""
    labels = labels or [color for color in colors]
    columns = max(1, min(len(colors), 16))
    root = ElementTree.Element("Colorset", version="2.0", name=_one_line(name), comment="",
                               columns=str(columns), rows=str(-(-len(colors) // columns)),
                               readonly="false")  # fmt: skip
    for index, (color, label) in enumerate(zip(colors, labels)):
        entry = ElementTree.SubElement(root, "ColorSetEntry", name=_one_line(label),
                                       id=str(index), spot="false", bitdepth="U8")  # fmt: skip
        red, green, blue = _rgb(color)
        ElementTree.SubElement(entry, "RGB", space="sRGB-elle-V2-srgbtrc.icc",
                               r=_float(red), g=_float(green), b=_float(blue))  # fmt: skip
        ElementTree.SubElement(entry, "Position", row=str(index // columns),
                               column=str(index % columns))  # fmt: skip
    xml = ElementTree.tostring(root, encoding="UTF-8", xml_declaration=True)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("mimetype", KPL_MIMETYPE, zipfile.ZIP_STORED)  # first, as ODF does
        archive.writestr("colorset.xml", xml, zipfile.ZIP_DEFLATED)
        archive.writestr("profiles.xml", b'<?xml version="1.0" encoding="UTF-8"?>\n<Profiles/>\n',
                         zipfile.ZIP_DEFLATED)  # fmt: skip
    return buffer.getvalue()


def write_palette(path, name: str, colors, labels=None) -> None:
    """Write `colors` ("#rrggbb") as `path`'s type (.gpl or .kpl), whole or not at all;
    PaletteFileError for another extension or a folder that cannot be written."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in WRITE_FORMATS:
        raise PaletteFileError(f"{path}: palettes are written as {' or '.join(WRITE_FORMATS)}")
    data = (kpl_bytes if suffix == ".kpl" else _gpl_bytes)(name, list(colors), labels)
    try:
        handle, temporary = tempfile.mkstemp(prefix=".palette-", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(handle, "wb") as file:
                file.write(data)
            os.chmod(temporary, 0o644)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    except OSError as error:
        raise PaletteFileError(f"{path}: {error.strerror or error}") from None


def _gpl_bytes(name, colors, labels) -> bytes:
    return gpl_text(name, colors, labels).encode("utf-8")


def _rgb(color: str) -> tuple[int, int, int]:
    match = _HEX.fullmatch(color.strip())
    if match is None or len(match.group(1)) != 6:
        raise PaletteFileError(f"{color!r} is not a colour like #1b2a3c")
    digits = match.group(1)
    return int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16)


def _float(value: int) -> str:
    return f"{value / 255:.6f}"


def _one_line(text: str) -> str:
    return " ".join(str(text).split())
