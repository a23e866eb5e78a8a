"""Palettes as the plug-ins handle them: lists of "#rrggbb" strings, 1 to 12 colours.

The designer palettes bundled with the plug-in (designer_palettes.json) are the 255
six-colour palettes of @thi.ng/color-palettes 1.5.36, Apache-2.0 (the file says so too).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from . import wire

MIN_COLORS = 1
MAX_COLORS = wire.MAX_PALETTE_COLORS
DEFAULT_COLORS = wire.DEFAULT_PALETTE_COLORS  # taken from a layer
BUNDLED = Path(__file__).with_name("designer_palettes.json")
_HEX = re.compile(r"#?([0-9a-fA-F]{3}|[0-9a-fA-F]{6})")


def normalize_hex(text: str) -> str:
    """'#ABC', 'abc', '#aabbcc' -> '#aabbcc'; ValueError for anything else."""
    match = _HEX.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a colour like #1b2a3c")
    digits = match.group(1).lower()
    if len(digits) == 3:
        digits = "".join(digit * 2 for digit in digits)
    return "#" + digits


def hex_to_rgb(color: str) -> tuple[int, int, int]:
    digits = normalize_hex(color)[1:]
    return int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16)


def rgb_to_hex(red: int, green: int, blue: int) -> str:
    return "#{:02x}{:02x}{:02x}".format(*(min(255, max(0, round(c))) for c in (red, green, blue)))


@dataclass(frozen=True)
class NamedPalette:
    name: str
    colors: tuple[str, ...]


@lru_cache(maxsize=1)
def designer_palettes() -> tuple[NamedPalette, ...]:
    """The bundled designer palettes, in their published order."""
    record = json.loads(BUNDLED.read_text(encoding="utf-8"))
    return tuple(
        NamedPalette(entry["name"], tuple(normalize_hex(c) for c in entry["colors"]))
        for entry in record["palettes"]
    )


def fit_palette(colors) -> list[str]:
    """A palette the daemon accepts: valid colours, at most MAX_COLORS (extra ones dropped:
    a Krita palette resource can hold hundreds), at least one."""
    fitted = [normalize_hex(color) for color in colors][:MAX_COLORS]
    if not fitted:
        raise ValueError("the palette has no colours")
    return fitted


def layer_name(palette_name: str | None, colors) -> str:
    """The name of a result layer: the palette's name, or its colours where it has none."""
    if palette_name:
        return f"Recolor: {palette_name}"
    shown = " ".join(colors[:6])
    return f"Recolor: {shown}" + (" …" if len(colors) > 6 else "")


def distinct_colors(colors) -> list[str]:
    """Each colour once, in the order given ("#AABBCC" and "#abc" are one colour): a
    one-colour fill shows one swatch, not six copies of it."""
    return list(dict.fromkeys(normalize_hex(color) for color in colors))
