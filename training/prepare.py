"""Build a training dataset from a folder of photos.

    python -m training prepare --images DIR --out DIR [--variants 18] [--local-variants 6]
                               [--multi-variants 6] [--size 432x288] [--layout plain|design-seeds]
                               [--groups SOURCES.tsv --group-column package]

Every photo is resized to cover --size and centre-cropped (portrait photos are turned to
landscape first, which changes nothing about their colours). Its palette comes from the
attached strip (--layout design-seeds) or from palette extraction. Then it gets
--variants hue-shift variants (evenly spaced, the first is the photo itself) and
--local-variants local palette edits of one or two colours and --multi-variants edits of
three to six colours (see training/variants.py); which kinds training uses, and how often, is
a training option.

The photos are split into train/validation/test by SOURCE GROUP, so variants of one photo
(and, with --groups, photos of one source package) never land in two splits. The split is
written to split.json and is reproducible from --seed.

Output (a handful of files, memory-mappable):
    meta.json        sizes, variant kinds, counts, arguments
    split.json       which photo is in which split, and its group
    SPLIT/rgb.npy    (P, H, W, 3) uint8   the photos (their L is the L of every variant)
    SPLIT/ab.npy     (P, V, H, W, 2) int8 the a and b channels of every variant
    SPLIT/palettes.npy (P, V, 6, 3) float32 LAB palette of every variant
    SPLIT/names.json the photo file names, in order
"""

import csv
import json
import multiprocessing
import os
import sys
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from backend.core.color import rgb_to_lab_np
from backend.core.palette import extract_palette, to_model_palette
from training import TrainingError
from training.variants import hue_shift, local_edit, random_edits, random_multi_edits

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}
SPLITS = ("train", "validation", "test")
KIND_ORIGINAL, KIND_HUE, KIND_LOCAL, KIND_MULTI = "original", "hue", "local", "multi"


def add_arguments(parser):
    parser.add_argument(
        "--images",
        required=True,
        type=Path,
        action="append",
        help="folder of photos or artwork (may be given more than once)",
    )
    parser.add_argument("--out", required=True, type=Path, help="dataset folder to write")
    parser.add_argument(
        "--variants",
        type=int,
        default=18,
        help="hue-shift variants per photo, including the photo itself",
    )
    parser.add_argument(
        "--local-variants", type=int, default=6, help="local palette-edit variants per photo"
    )
    parser.add_argument(
        "--multi-variants",
        type=int,
        default=6,
        help="edits of three to six palette colours per photo",
    )
    parser.add_argument("--size", default="432x288", help="WxH of the stored photos")
    parser.add_argument(
        "--layout",
        choices=["plain", "design-seeds"],
        default="plain",
        help="design-seeds: each photo has its six-colour palette strip attached",
    )
    parser.add_argument(
        "--split",
        default="0.8,0.1,0.1",
        help="train,validation,test fractions of the source groups",
    )
    parser.add_argument(
        "--groups",
        type=Path,
        action="append",
        help="TSV naming each photo's source group (column 'file' + --group-column); one per "
        "--images folder when there are several. A 'kind' of pixelart or 'pixel art' in its "
        "'notes' makes that file scale with nearest neighbour only",
    )
    parser.add_argument(
        "--split-from",
        type=Path,
        action="append",
        default=[],
        help="split file (training/splits/*.json) whose files keep their split there; "
        "may be given more than once",
    )
    parser.add_argument("--group-column", default="package")
    parser.add_argument(
        "--validation-groups",
        default="",
        help="comma-separated group-name prefixes to put in validation",
    )
    parser.add_argument(
        "--test-groups", default="", help="comma-separated group-name prefixes to put in test"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=0, help="processes (0: one per core)")


def parse_size(text):
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise TrainingError(f"--size must look like 432x288, got {text!r}") from None
    if width < 32 or height < 32:
        raise TrainingError(f"--size must be at least 32x32, got {text!r}")
    return width, height


def load_photo(path: Path, layout: str):
    """-> (uint8 RGB photo, palette as LAB or None); raises for unreadable files.

    An image with transparency (artwork) is cropped to its visible pixels and its
    transparent parts take the mean visible colour, as the plug-in's layers reach the
    network (backend.core.recolor.prepare)."""
    with Image.open(path) as image:
        has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
        rgb8 = np.asarray(image.convert("RGBA" if has_alpha else "RGB"))
    if has_alpha:
        rgb8 = flatten_visible(rgb8)
    if layout == "design-seeds":
        from training.design_seeds import split_design_seeds

        rgb8, palette_rgb = split_design_seeds(rgb8)
        return rgb8, rgb_to_lab_np(palette_rgb)
    return rgb8, None


def flatten_visible(rgba8: np.ndarray) -> np.ndarray:
    """uint8 RGBA -> uint8 RGB of its visible rectangle (alpha > 0), each pixel blended over
    the alpha-weighted mean visible colour; ValueError when nothing is visible."""
    alpha = rgba8[..., 3] / 255.0
    rows, columns = np.flatnonzero(alpha.any(axis=1)), np.flatnonzero(alpha.any(axis=0))
    if len(rows) == 0:
        raise ValueError("no visible pixel (the image is fully transparent)")
    box = (slice(rows[0], rows[-1] + 1), slice(columns[0], columns[-1] + 1))
    rgb, alpha = rgba8[box][..., :3] / 255.0, alpha[box][..., None]
    mean = (rgb * alpha).sum((0, 1)) / alpha.sum()
    return np.round((rgb * alpha + mean * (1 - alpha)) * 255).astype(np.uint8)


def fit(rgb8: np.ndarray, width: int, height: int, nearest=False) -> np.ndarray:
    """Turn to the target's orientation, scale to cover it, centre-crop. nearest: scale
    with nearest neighbour (pixel art: no new colours), else Lanczos."""
    if (rgb8.shape[0] > rgb8.shape[1]) != (height > width):
        rgb8 = np.ascontiguousarray(np.rot90(rgb8))
    h, w = rgb8.shape[:2]
    scale = max(width / w, height / h)
    size = (max(width, round(w * scale)), max(height, round(h * scale)))
    resample = Image.Resampling.NEAREST if nearest else Image.Resampling.LANCZOS
    resized = np.asarray(Image.fromarray(rgb8).resize(size, resample))
    top, left = (size[1] - height) // 2, (size[0] - width) // 2
    return resized[top : top + height, left : left + width]


def make_variants(rgb8, palette_lab, hue_variants, local_variants, rng, multi_variants=0):
    """-> ab (V, H, W, 2) int8, palettes (V, 6, 3) LAB."""
    lab = rgb_to_lab_np(rgb8 / 255.0)
    abs_, palettes = [], []
    for i in range(hue_variants):
        shifted, shifted_palette = (
            hue_shift(lab, palette_lab, i / hue_variants) if i else (lab, palette_lab)
        )
        abs_.append(shifted[..., 1:])
        palettes.append(shifted_palette)
    edits = [random_edits] * local_variants + [random_multi_edits] * multi_variants
    for random_edit in edits:
        edited, edited_palette, _mask = local_edit(lab, palette_lab, random_edit(palette_lab, rng))
        abs_.append(edited[..., 1:])
        palettes.append(edited_palette)
    ab = np.clip(np.round(np.stack(abs_)), -127, 127).astype(np.int8)
    return ab, np.stack(palettes).astype(np.float32)


def prepare_one(job):
    """One photo -> its stored arrays, or a warning string (run in a worker process)."""
    path, layout, width, height, hue_variants, local_variants, multi_variants, seed, nearest = job
    try:
        rgb8, palette_lab = load_photo(path, layout)
    except (OSError, UnidentifiedImageError, ValueError) as error:
        return f"skipping {path.name}: {error}"
    rgb8 = fit(rgb8, width, height, nearest)
    if palette_lab is None:
        palette_lab, _shares = extract_palette(rgb8)
    palette_lab = to_model_palette(palette_lab)
    # Seeded by the file name, so a photo's variants do not depend on what else is in the folder.
    rng = np.random.default_rng([seed, *path.name.encode()])
    ab, palettes = make_variants(
        rgb8, palette_lab, hue_variants, local_variants, rng, multi_variants
    )
    return rgb8, ab, palettes


def _one_thread():
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)


def read_tables(tsvs) -> list[dict]:
    """The rows of the --groups tables, all together."""
    rows = []
    for tsv in tsvs or []:
        with open(tsv, newline="") as file:
            rows += [dict(row, table=str(tsv)) for row in csv.DictReader(file, delimiter="\t")]
    return rows


def pixel_art_files(rows) -> set[str]:
    """Files the tables mark as pixel art (kind pixelart, or 'pixel art' in the notes)."""
    from training.artwork_data import is_pixel_art

    return {row["file"] for row in rows if "kind" in row and is_pixel_art(row)}


def read_groups(tsvs, column: str, names):
    if not tsvs:
        return {name: name for name in names}
    rows = read_tables(tsvs)
    if not rows or column not in rows[0] or "file" not in rows[0]:
        raise TrainingError(f"{tsvs[0]} needs the columns 'file' and {column!r}")
    if any(column not in row or "file" not in row for row in rows):
        raise TrainingError(f"every --groups table needs the columns 'file' and {column!r}")
    table = {row["file"]: row[column] for row in rows}
    missing = [n for n in names if n not in table]
    if missing:
        where = ", ".join(str(tsv) for tsv in tsvs)
        raise TrainingError(f"{where} name no group for {len(missing)} photos, e.g. {missing[0]}")
    return {name: table[name] for name in names}


def read_split_files(paths) -> dict:
    """file name -> split, from split files (the form this command and `training split`
    write: {"splits": {"train": [...], ...}})."""
    fixed = {}
    for path in paths:
        try:
            splits = json.loads(Path(path).read_text())["splits"]
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise TrainingError(f"--split-from {path}: not a split file ({error})") from None
        for split, names in splits.items():
            if split not in SPLITS:
                raise TrainingError(f"--split-from {path}: unknown split {split!r}")
            fixed.update(dict.fromkeys(names, split))
    return fixed


def split_by_group(groups: dict, fractions, seed: int, chosen=None) -> dict:
    """Assign whole groups to splits; every split gets at least one group when possible.

    `chosen` maps a split to group-name prefixes that go there; the other groups are split
    at random by `fractions`.
    """
    chosen = chosen or {}
    fixed = {}
    for split, prefixes in chosen.items():
        for prefix in prefixes:
            matches = {g for g in groups.values() if g.startswith(prefix)}
            if not matches:
                raise TrainingError(f"no source group starts with {prefix!r}")
            fixed.update(dict.fromkeys(matches, split))
    if fixed:
        rest = {n: g for n, g in groups.items() if g not in fixed}
        assigned = split_by_group(rest, [1, 0, 0], seed) if rest else {}
        return {n: assigned.get(n) or fixed[g] for n, g in groups.items()}
    unique = sorted(set(groups.values()))
    np.random.default_rng(seed).shuffle(unique)
    counts = np.floor(np.array(fractions) / sum(fractions) * len(unique)).astype(int)
    counts[0] += len(unique) - counts.sum()
    for i in (1, 2):  # validation and test are never left empty while train can spare a group
        if counts[i] == 0 and fractions[i] > 0 and counts[0] > 1:
            counts[i], counts[0] = 1, counts[0] - 1
    edges = np.cumsum(counts)
    split_of_group = {
        g: SPLITS[int(np.searchsorted(edges, i, side="right"))] for i, g in enumerate(unique)
    }
    return {name: split_of_group[group] for name, group in groups.items()}


def run(args):
    width, height = parse_size(args.size)
    if args.variants < 1 or args.local_variants < 0 or args.multi_variants < 0:
        raise TrainingError(
            "--variants must be at least 1, --local-variants and --multi-variants at least 0"
        )
    try:
        fractions = [float(v) for v in args.split.split(",")]
    except ValueError:
        fractions = []
    if len(fractions) != 3 or min(fractions) < 0 or fractions[0] <= 0:
        raise TrainingError("--split takes three fractions: train,validation,test")
    paths = []
    for folder in args.images:
        if not folder.is_dir():
            raise TrainingError(f"--images: not a folder: {folder}")
        found = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not found:
            raise TrainingError(f"no JPEG, PNG or WebP photos in {folder}")
        paths += found
    twice = [name for name, n in Counter(p.name for p in paths).items() if n > 1]
    if twice:
        raise TrainingError(f"{twice[0]} is in more than one --images folder")
    nearest = pixel_art_files(read_tables(args.groups))

    from tqdm import tqdm

    jobs = [
        (
            p,
            args.layout,
            width,
            height,
            args.variants,
            args.local_variants,
            args.multi_variants,
            args.seed,
            p.name in nearest,
        )
        for p in paths
    ]
    workers = args.workers or None
    results = {}
    # Fresh ("spawn") single-threaded workers: forked after torch has started its thread pool,
    # 16 workers hung without ever finishing a photo on a 16-core machine, and many workers
    # each starting a thread per core would only fight over the cores.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_one_thread) as pool:
        for path, result in tqdm(
            zip(paths, pool.map(prepare_one, jobs, chunksize=2)),
            total=len(paths),
            desc="preparing",
            unit="photo",
        ):
            if isinstance(result, str):
                tqdm.write(f"warning: {result}", file=sys.stderr)
            else:
                results[path.name] = result
    if not results:
        raise TrainingError("no readable photos")

    names = sorted(results)
    groups = read_groups(args.groups, args.group_column, names)
    chosen = {
        s: [p for p in text.split(",") if p.strip()]
        for s, text in (("validation", args.validation_groups), ("test", args.test_groups))
    }
    fixed = read_split_files(args.split_from)
    rest = {name: group for name, group in groups.items() if name not in fixed}
    chosen = {s: p for s, p in chosen.items() if p}
    split_of = split_by_group(rest, fractions, args.seed, chosen) if rest else {}
    split_of.update({name: fixed[name] for name in names if name in fixed})
    args.out.mkdir(parents=True, exist_ok=True)
    kinds = (
        [KIND_ORIGINAL]
        + [KIND_HUE] * (args.variants - 1)
        + [KIND_LOCAL] * args.local_variants
        + [KIND_MULTI] * args.multi_variants
    )
    counts = {}
    for split in SPLITS:
        members = [n for n in names if split_of[n] == split]
        counts[split] = len(members)
        folder = args.out / split
        folder.mkdir(exist_ok=True)
        shape = (len(members), height, width)
        arrays = {
            "rgb": np.zeros((*shape, 3), np.uint8),
            "ab": np.zeros((len(members), len(kinds), height, width, 2), np.int8),
            "palettes": np.zeros((len(members), len(kinds), 6, 3), np.float32),
        }
        for i, name in enumerate(members):
            for key, value in zip(("rgb", "ab", "palettes"), results[name]):
                arrays[key][i] = value
        for key, value in arrays.items():
            np.save(folder / f"{key}.npy", value)
        (folder / "names.json").write_text(json.dumps(members, indent=1))

    (args.out / "split.json").write_text(
        json.dumps(
            {
                "seed": args.seed,
                "fractions": fractions,
                "group_by": [str(tsv) for tsv in args.groups] if args.groups else "photo",
                "split_from": [str(path) for path in args.split_from],
                "group_column": args.group_column,
                "splits": {s: [n for n in names if split_of[n] == s] for s in SPLITS},
                "groups": groups,
            },
            indent=1,
        )
    )
    (args.out / "meta.json").write_text(
        json.dumps(
            {
                "format": "palettenet-dataset/1",
                "images": [str(folder.resolve()) for folder in args.images],
                "width": width,
                "height": height,
                "kinds": kinds,
                "layout": args.layout,
                "counts": counts,
                "seed": args.seed,
            },
            indent=1,
        )
    )
    print(
        f"wrote {args.out}: "
        + ", ".join(f"{counts[s]} {s}" for s in SPLITS)
        + f" photos, {len(kinds)} variants each, {width}x{height}"
    )
    return 0
