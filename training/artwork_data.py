"""The artwork and extra-photo data of benchmark B4: kinds, source groups, splits, layers.

    python -m training split --sources DIR --out FILE      (writes a split file, see below)

A data folder holds images and a SOURCES.tsv with the columns file, package, kind and notes
(../shared/datasets/artwork and photos-extra, see their READMEs). Images are split into
train/validation/test by SOURCE GROUP: the Debian package, except the one big package of
landscape photos (endless-sky-data), which is split by photographer or file-name prefix
("endless-sky-data:sfiera", "endless-sky-data:canyon", ...), as its README asks.

The artwork test and validation packages are chosen by hand, so that every kind of artwork
is in the test split and most in validation (kinds are unevenly spread over packages: the
only pixel-art files come from two packages); the other packages train. The photo groups
(and the groups of a folder without those packages) are split at random (seeded), 70/15/15,
like `prepare` does. The split file has the form `prepare`
writes (`splits` and `groups`), so `training evaluate --split-file` reads it; the ones
used for the published numbers are committed in training/splits/.

Layers are read at full resolution as RGBA8, transparency kept: the benchmark recolours
each artwork at its own size, as the plug-in would (pixel art is never rescaled here).
"""

import csv
import json
import re
from pathlib import Path

import numpy as np
from PIL import Image

from training import TrainingError
from training.prepare import SPLITS, split_by_group

KINDS = ("flat", "lineart", "celshade", "pixelart", "sprites", "icon", "painted", "comic")
PHOTO_KIND = "photo"
PIXEL_ART_NOTE = "pixel art"  # SOURCES.tsv notes of files to scale with nearest neighbour only

ARTWORK_TEST = (
    "tecnoballz-data",  # pixel art, sprites
    "pingus-data",  # pixel-art sprites, line art
    "pysiogame",  # comic, painted
    "tuxpaint-data",  # line art
    "papirus-icon-theme",  # icons
    "gnome-backgrounds",  # flat (vector wallpapers with gradients)
    "khangman",  # flat
    "killbots",  # cel shading, painted
    "tuxmath-data",  # cel shading
    "lincity-ng-data",  # painted
    "kdegames-mahjongg-data-kf5",  # flat, painted
)
ARTWORK_VALIDATION = (
    "hedgewars-data",  # cel shading, comic, flat, sprites
    "open-invaders-data",  # pixel-art sprites
    "breeze-icon-theme",  # icons
    "gnome-cards-data",  # flat, line art, painted
    "frozen-bubble-data",  # painted, flat, cel shading
)
PHOTO_FRACTIONS = (0.7, 0.15, 0.15)
SPLITTING_BY_PREFIX = ("endless-sky-data",)


def read_sources(folder) -> list[dict]:
    """SOURCES.tsv of a data folder: one dict per file (file, package, kind, notes, ...)."""
    path = Path(folder) / "SOURCES.tsv"
    try:
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle, delimiter="\t"))
    except OSError as error:
        raise TrainingError(f"cannot read {path}: {error.strerror or error}") from None
    if not rows or not {"file", "package", "kind"} <= set(rows[0]):
        raise TrainingError(f"{path} needs the columns file, package and kind")
    return rows


def source_group(row: dict) -> str:
    """The group a file is split with: its package, or package:prefix for the packages of
    SPLITTING_BY_PREFIX (photographer suffix like '-sfiera', else the name's leading word)."""
    package = row["package"]
    if package not in SPLITTING_BY_PREFIX:
        return package
    stem = Path(row["file"]).stem.split("__", 1)[-1]
    suffix = re.search(r"-([a-z]+)$", stem)
    prefix = suffix.group(1) if suffix else re.match(r"[a-z]*", stem).group(0) or stem
    return f"{package}:{prefix}"


def is_pixel_art(row: dict) -> bool:
    """Pixel art or a pixel-art sprite sheet (scale only with nearest neighbour)."""
    return row["kind"] == "pixelart" or PIXEL_ART_NOTE in row.get("notes", "")


def make_split(rows: list[dict], seed: int = 0) -> dict:
    """The split record ({'splits': {split: [files]}, 'groups': {file: group}, ...}) of a
    data folder: artwork by the hand-chosen packages, photos (and a folder without those
    packages) at random by group."""
    groups = {row["file"]: source_group(row) for row in rows}
    present = set(groups.values())
    chosen = {
        "test": [p for p in ARTWORK_TEST if p in present],
        "validation": [p for p in ARTWORK_VALIDATION if p in present],
    }
    if chosen["test"] and any(row["kind"] != PHOTO_KIND for row in rows):
        split_of = split_by_group(groups, (1, 0, 0), seed, chosen)
        how = "artwork packages chosen by hand (training/artwork_data.py)"
    else:  # photos, or a folder of other packages
        split_of = split_by_group(groups, PHOTO_FRACTIONS, seed)
        how = f"source groups at random, fractions {PHOTO_FRACTIONS}, seed {seed}"
    return {
        "group_by": "package (endless-sky-data by photographer / file prefix)",
        "how": how,
        "splits": {s: sorted(f for f in groups if split_of[f] == s) for s in SPLITS},
        "groups": groups,
        "kinds": {row["file"]: row["kind"] for row in rows},
    }


def load_layer(path) -> np.ndarray:
    """An image file -> uint8 RGBA (H, W, 4) at its own size (palette images and grey are
    converted; an image without alpha gets alpha 255)."""
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGBA"))
    except (OSError, ValueError) as error:
        raise TrainingError(f"cannot read {path}: {error}") from None


# --- command line -------------------------------------------------------------------------
def add_arguments(parser):
    parser.add_argument("--sources", required=True, type=Path, help="folder with SOURCES.tsv")
    parser.add_argument("--out", required=True, type=Path, help="split file to write (JSON)")
    parser.add_argument("--seed", type=int, default=0, help="for the photo split (0)")


def run(args):
    record = make_split(read_sources(args.sources), args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    counts = ", ".join(f"{len(record['splits'][s])} {s}" for s in SPLITS)
    print(f"wrote {args.out}: {counts}")
    return 0
