"""Palette files (backend/cli/palettefile.py): every format read from files made here,
good and malformed; .gpl and .kpl written and read back; the plug-in's copy kept equal.

Malformed files must fail with a PaletteFileError naming the file and where (line, or byte
offset for binary formats) and what was wrong; hostile ones (huge, zip bombs, entity
expansion) must be refused quickly.
"""

import io
import struct
import time
import zipfile
from pathlib import Path

import pytest

from backend.cli import palettefile
from backend.cli.palettefile import (
    MAX_FILE_BYTES,
    MAX_FILE_COLORS,
    PaletteFileError,
    kpl_bytes,
    read_palette,
    strip_palette,
    write_palette,
)

ROOT = Path(__file__).resolve().parents[1]


def test_the_plugin_carries_an_identical_copy():
    """The plug-in cannot import the backend, so it has its own copy: byte for byte."""
    ours = (ROOT / "backend/cli/palettefile.py").read_bytes()
    theirs = (ROOT / "plugin/recolor_with_palette/palettefile.py").read_bytes()
    assert ours == theirs


def test_standard_library_only():
    import ast

    tree = ast.parse((ROOT / "backend/cli/palettefile.py").read_text())
    modules = {alias.name.split(".")[0] for node in ast.walk(tree)
               if isinstance(node, ast.Import) for alias in node.names}  # fmt: skip
    modules |= {node.module.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom) and node.module}  # fmt: skip
    import sys

    assert modules <= set(sys.stdlib_module_names), modules - set(sys.stdlib_module_names)


def write(tmp_path, name, data) -> Path:
    path = tmp_path / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def refused(path, *words):
    with pytest.raises(PaletteFileError) as caught:
        read_palette(path)
    message = str(caught.value)
    assert path.name in message, message
    for word in words:
        assert word in message, message
    assert "\n" not in message
    return message


# --- GIMP .gpl -----------------------------------------------------------------------------
GPL = """GIMP Palette
Name: Sunset
Columns: 4
# made by hand
255   0   0\tRed
  0 128 255 Sky blue

 16  32  48
"""


def test_gpl(tmp_path):
    palette = read_palette(write(tmp_path, "sunset.gpl", GPL))
    assert palette.name == "Sunset"
    assert palette.colors == ("#ff0000", "#0080ff", "#102030")


@pytest.mark.parametrize(
    "text, words",
    [
        ("Palette\n1 2 3\n", ["line 1", "GIMP Palette"]),
        ("GIMP Palette\nName: x\n1 2 3\n4 5\n", ["line 4", "R G B"]),
        ("GIMP Palette\n1 2 3\n1 2 300 big\n", ["line 3", "0-255"]),
        ("GIMP Palette\n1 two 3\n", ["line 2"]),
        ("GIMP Palette\nName: empty\n# nothing\n", ["no colours"]),
    ],
)
def test_gpl_malformed(tmp_path, text, words):
    refused(write(tmp_path, "bad.gpl", text), *words)


def test_not_text_is_refused_with_the_offset(tmp_path):
    refused(write(tmp_path, "bad.hex", b"#102030\n\xff\xfe 405060\n"), "byte 8")


def test_gpl_names_in_windows_1252_are_read_as_gimp_and_krita_read_them(tmp_path):
    """Old palettes made on Windows have names in Windows-1252; GIMP (gimp_any_to_utf8)
    and Krita 5.1 load them, so they are read, and the colours are what the lines say."""
    text = "GIMP Palette\r\nName: Café crème\r\n255 0 0\tRouge été\r\n0 128 255\tBleu\r\n"
    palette = read_palette(write(tmp_path, "old.gpl", text.encode("cp1252")))
    assert palette.colors == ("#ff0000", "#0080ff")
    assert palette.name == "Café crème"
    # what is not text at all still fails on its line
    garbage = b"GIMP Palette\n1 2 3\n\xff\xfe 4 5 6\n"
    refused(write(tmp_path, "bad.gpl", garbage), "line 3", "R G B")


def test_gpl_with_a_byte_order_mark_is_told_by_its_content(tmp_path):
    """Notepad puts a BOM before 'GIMP Palette'; a .txt name must not make it a hex list."""
    text = "\ufeffGIMP Palette\nName: Notepad\n255 0 0 red\n"
    assert read_palette(write(tmp_path, "saved-by-notepad.txt", text)).colors == ("#ff0000",)


# --- hex lists ----------------------------------------------------------------------------
def test_hex_list_as_palette_sites_export_it(tmp_path):
    text = "; from a palette site\n\n#FF0000\n00ff00 green\n# a comment\n#abc\n// more\n"
    palette = read_palette(write(tmp_path, "site.hex", text))
    assert palette.colors == ("#ff0000", "#00ff00", "#aabbcc")
    assert palette.name == "site"


def test_paint_net_palette(tmp_path):
    text = ";paint.net Palette File\n;Colors: 2\nFFFF0000\nFF0000FF\n"
    assert read_palette(write(tmp_path, "p.txt", text)).colors == ("#ff0000", "#0000ff")


def test_hex_list_malformed(tmp_path):
    refused(write(tmp_path, "bad.txt", "#ff0000\n#ff00\nred\n"), "line 2", "'#ff00'")
    # colours with a comma (a CSV line) are an error naming the line, not a skipped comment
    commas = "#0b1d51\n#e63946, #f1faee, #a8dadc\n"
    refused(write(tmp_path, "csv.txt", commas), "line 2", "'#e63946,'")
    refused(write(tmp_path, "only.hex", "#e63946,\n#f1faee,\n"), "line 1")
    refused(write(tmp_path, "empty.hex", "# only a comment\n\n"), "no colours")


# --- Krita .kpl ---------------------------------------------------------------------------
COLORSET = """<?xml version="1.0" encoding="UTF-8"?>
<Colorset version="2.0" name="Krita set" columns="2" rows="2" readonly="false" comment="">
 <ColorSetEntry name="second" id="b" spot="false" bitdepth="U8">
  <RGB space="sRGB-elle-V2-srgbtrc.icc" r="0" g="1" b="0"/>
  <Position row="0" column="1"/>
 </ColorSetEntry>
 <ColorSetEntry name="first" id="a" spot="false" bitdepth="U8">
  <RGB space="sRGB-elle-V2-srgbtrc.icc" r="1" g="0" b="0"/>
  <Position row="0" column="0"/>
 </ColorSetEntry>
 <ColorSetEntry name="linear grey" id="c" spot="false" bitdepth="F32">
  <RGB space="sRGB-elle-V2-g10.icc" r="0.21586" g="0.21586" b="0.21586"/>
  <Position row="1" column="0"/>
 </ColorSetEntry>
 <Group name="More" rows="1">
  <ColorSetEntry name="lab" id="d" spot="false" bitdepth="U16">
   <Lab space="Lab identity built-in" L="100" a="0" b="0"/>
   <Position row="0" column="0"/>
  </ColorSetEntry>
  <ColorSetEntry name="ink" id="e" spot="false" bitdepth="U8">
   <CMYK space="Chemical proof" c="0" m="1" y="1" k="0"/>
   <Position row="0" column="1"/>
  </ColorSetEntry>
 </Group>
</Colorset>
"""


def entry(colour: str) -> str:
    return f"<Colorset><ColorSetEntry name='x'>{colour}</ColorSetEntry></Colorset>"


def kpl(members: dict) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_kpl_groups_positions_and_colour_models(tmp_path):
    path = write(tmp_path, "set.kpl", kpl({"mimetype": "krita/x-colorset",
                                             "colorset.xml": COLORSET}))  # fmt: skip
    palette = read_palette(path)
    assert palette.name == "Krita set"
    # row by row within each group; the linear grey is sRGB #808080; Lab 100 is white
    assert palette.colors == ("#ff0000", "#00ff00", "#808080", "#ffffff", "#ff0000")
    assert any("CMYK" in note for note in palette.notes)


@pytest.mark.parametrize(
    "members, words",
    [
        ({"mimetype": "krita/x-colorset"}, ["without colorset.xml"]),
        ({"colorset.xml": "<Colorset><ColorSetEntry>\n<RGB r='1'"}, ["line 2", "XML"]),
        ({"colorset.xml": "<Palette/>"}, ["<Palette>"]),
        ({"colorset.xml": entry("<RGB r='a' g='0' b='0'/>")}, ["'x'", "r, g, b"]),
        ({"colorset.xml": entry("<HSV h='1' s='0' v='0'/>")}, ["<HSV>"]),
        ({"colorset.xml": entry("<RGB r='nan' g='0' b='0'/>")}, ["finite"]),
        ({"colorset.xml": "<Colorset name='none'/>"}, ["no colours"]),
    ],
)
def test_kpl_malformed(tmp_path, members, words):
    refused(write(tmp_path, "bad.kpl", kpl(members)), *words)


def test_kpl_that_is_no_zip(tmp_path):
    refused(write(tmp_path, "bad.kpl", b"PK\x03\x04 not really a zip"), "zip")


def test_kpl_hostile_files_are_refused_quickly(tmp_path):
    laughs = ('<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa">'
              + "".join(f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">'
                        for i in range(8))
              + ']><Colorset>&i;</Colorset>')  # fmt: skip
    began = time.monotonic()
    refused(write(tmp_path, "laughs.kpl", kpl({"colorset.xml": laughs})), "DOCTYPE")
    # the same in UTF-16, which a search for the bytes "<!DOCTYPE" does not see
    utf16 = laughs.replace('version="1.0"', 'version="1.0" encoding="UTF-16"')
    refused(write(tmp_path, "laughs16.kpl", kpl({"colorset.xml": utf16.encode("utf-16")})),
            "DOCTYPE")  # fmt: skip
    bomb = kpl({"colorset.xml": b"<Colorset>" + b" " * (64 << 20) + b"</Colorset>"})
    assert len(bomb) < 200_000  # 64 MiB of spaces compress to a few dozen KiB
    refused(write(tmp_path, "bomb.kpl", bomb), "unpacks to")
    assert time.monotonic() - began < 2


# --- Adobe .ase ---------------------------------------------------------------------------
def ase_name(text: str) -> bytes:
    units = (text + "\0").encode("utf-16-be")
    return struct.pack(">H", len(units) // 2) + units


def ase_color(name: str, model: bytes, values, kind=2) -> bytes:
    body = ase_name(name) + model + struct.pack(f">{len(values)}f", *values)
    body += struct.pack(">H", kind)
    return struct.pack(">HI", 0x0001, len(body)) + body


def ase(*blocks, count=None) -> bytes:
    count = len(blocks) if count is None else count
    return b"ASEF" + struct.pack(">HHI", 1, 0, count) + b"".join(blocks)


def ase_group(name: str) -> bytes:
    body = ase_name(name)
    return struct.pack(">HI", 0xC001, len(body)) + body


ASE_END = struct.pack(">HI", 0xC002, 0)


def test_ase_models_and_groups(tmp_path):
    data = ase(
        ase_color("red", b"RGB ", (1, 0, 0)),
        ase_group("Greys"),
        ase_color("grey", b"Gray", (0.5,)),
        ASE_END,
        ase_color("lab green", b"LAB ", (0.8782, -79.29, 80.99)),  # sRGB green, D50
        ase_color("ink", b"CMYK", (1, 0, 0, 0)),
    )
    palette = read_palette(write(tmp_path, "swatches.ase", data))
    assert palette.colors == ("#ff0000", "#808080", "#00ff00", "#00ffff")
    assert palette.notes and "CMYK" in palette.notes[0]


def test_ase_malformed(tmp_path):
    good = ase(ase_color("red", b"RGB ", (1, 0, 0)))
    refused(write(tmp_path, "cut.ase", good[:-5]), "byte 12", "past the end")
    refused(write(tmp_path, "short.ase", good[:10]), "byte 8", "truncated")
    refused(write(tmp_path, "model.ase", ase(ase_color("x", b"HSV ", (1, 0, 0)))),
            "HSV", "byte 24")  # fmt: skip
    refused(write(tmp_path, "many.ase", ase(count=10**9)), "1,000,000,000 blocks")
    refused(write(tmp_path, "v2.ase", b"ASEF" + struct.pack(">HHI", 2, 0, 0)), "version 2")
    block = struct.pack(">HI", 0x0042, 0)
    refused(write(tmp_path, "kind.ase", ase(block)), "unknown type 0x0042", "byte 12")
    nan = ase(ase_color("x", b"RGB ", (float("nan"), 0, 0)))
    refused(write(tmp_path, "nan.ase", nan), "finite")


# --- Adobe .aco ---------------------------------------------------------------------------
def aco_v1(*colours) -> bytes:
    return struct.pack(">HH", 1, len(colours)) + b"".join(struct.pack(">5H", *c) for c in colours)


def aco_v2(*named) -> bytes:
    out = struct.pack(">HH", 2, len(named))
    for colour, name in named:
        units = (name + "\0").encode("utf-16-be")
        out += struct.pack(">5H", *colour) + struct.pack(">I", len(units) // 2) + units
    return out


RED, HSB_BLUE, GREY, LAB_WHITE, CMYK_CYAN = ((0, 65535, 0, 0, 0), (1, 43690, 65535, 65535, 0),
                                             (8, 5000, 0, 0, 0), (7, 10000, 0, 0, 0),
                                             (2, 0, 65535, 65535, 65535))  # fmt: skip


def test_aco_version_1_and_2(tmp_path):
    colours = (RED, HSB_BLUE, GREY, LAB_WHITE, CMYK_CYAN)
    expected = ("#ff0000", "#0000ff", "#808080", "#ffffff", "#00ffff")
    assert read_palette(write(tmp_path, "v1.aco", aco_v1(*colours))).colors == expected
    named = aco_v1(*colours) + aco_v2(*((c, f"colour {i}") for i, c in enumerate(colours)))
    assert read_palette(write(tmp_path, "v2.aco", named)).colors == expected


def test_aco_malformed(tmp_path):
    refused(write(tmp_path, "cut.aco", aco_v1(RED, GREY)[:-3]), "byte 14", "truncated")
    refused(write(tmp_path, "book.aco", aco_v1((3, 1, 2, 3, 0))), "Pantone", "byte 4")
    refused(write(tmp_path, "space.aco", aco_v1((42, 1, 2, 3, 0))), "colour space 42")
    refused(write(tmp_path, "junk.aco", aco_v1(RED) + b"\0\7\0\0"), "version 2, found 7")
    refused(write(tmp_path, "tail.aco", aco_v1(RED) + aco_v2((RED, "r")) + b"xx"),
            "2 bytes after")  # fmt: skip
    name = aco_v1(RED) + struct.pack(">HH5HI", 2, 1, *RED, 10**6)
    refused(write(tmp_path, "name.aco", name), "1,000,000 characters")
    refused(write(tmp_path, "count.aco", struct.pack(">HH", 1, 60000)), "60,000 colours")


# --- limits -------------------------------------------------------------------------------
def test_huge_files_and_too_many_colours_are_refused_quickly(tmp_path):
    began = time.monotonic()
    huge = write(tmp_path, "huge.hex", b"#000000\n" * (MAX_FILE_BYTES // 8 + 1))
    refused(huge, "too large", f"{MAX_FILE_BYTES:,}")
    many = "".join(f"#{i:06x}\n" for i in range(MAX_FILE_COLORS + 1))
    refused(write(tmp_path, "many.hex", many), f"more than {MAX_FILE_COLORS}", "line 4097")
    assert time.monotonic() - began < 2
    refused(tmp_path / "missing.gpl", "No such file")
    refused(tmp_path, "not a regular file")


# --- palette strips -----------------------------------------------------------------------
def strip(colours, width=8, height=4, background=None) -> tuple[int, int, bytes]:
    """Swatches of `width` pixels side by side, each a full-height column."""
    row = b"".join(bytes(c) * width for c in colours)
    if background is not None:
        row = bytes(background) * width + row
    total = len(row) // 4
    return total, height, row * height


def test_strip_takes_swatches_left_to_right():
    colours = [(255, 0, 0, 255), (0, 0, 255, 255), (255, 0, 0, 255), (10, 20, 30, 255)]
    palette = strip_palette(*strip(colours, background=(0, 0, 0, 0)), "strip.png")
    assert palette.colors == ("#ff0000", "#0000ff", "#0a141e")
    assert palette.name == "strip"


def test_strip_refuses_photos_and_translucent_swatches():
    with pytest.raises(PaletteFileError, match=r"x=8, y=0 is translucent"):
        strip_palette(*strip([(1, 2, 3, 255), (1, 2, 3, 128)]), "s.png")
    with pytest.raises(PaletteFileError, match="too large for a palette strip"):
        strip_palette(5000, 5000, b"", "huge.png")  # refused before any pixel is looked at
    noise = bytes(b for i in range(5000) for b in (i % 256, i // 256, 7, 255))
    with pytest.raises(PaletteFileError, match="not a strip of flat swatches"):
        strip_palette(5000, 1, noise, "photo.png")


# --- writing ------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".gpl", ".kpl"])
def test_written_palettes_read_back(tmp_path, suffix):
    colours = ["#0b1d51", "#725ac1", "#f7ece1"]
    path = tmp_path / f"out{suffix}"
    write_palette(path, "Mine", colours, ["dark 31%", "violet", "cream"])
    palette = read_palette(path)
    assert palette.colors == tuple(colours) and palette.name == "Mine"


def test_kpl_is_laid_out_as_krita_writes_it():
    archive = zipfile.ZipFile(io.BytesIO(kpl_bytes("x", ["#ff0000"] * 20)))
    first = archive.infolist()[0]
    assert first.filename == "mimetype" and first.compress_type == zipfile.ZIP_STORED
    assert archive.read("mimetype") == b"krita/x-colorset"
    xml = archive.read("colorset.xml").decode()
    assert 'columns="16"' in xml and 'rows="2"' in xml and '<Position row="1" column="3"' in xml


def test_gpl_as_gimp_reads_it(tmp_path):
    text = palettefile.gpl_text("My palette", ["#ff0000", "#00ff00"], ["red", "lime\ngreen"])
    assert text.splitlines() == ["GIMP Palette", "Name: My palette", "Columns: 2", "#",
                                 "255   0   0\tred", "  0 255   0\tlime green"]  # fmt: skip


def test_only_gpl_and_kpl_are_written(tmp_path):
    with pytest.raises(PaletteFileError, match=".gpl or .kpl"):
        write_palette(tmp_path / "out.ase", "x", ["#ffffff"])
    with pytest.raises(PaletteFileError, match="No such file"):
        write_palette(tmp_path / "missing" / "out.gpl", "x", ["#ffffff"])
