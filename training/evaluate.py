"""Quality benchmark of recolouring methods against ground truth.

    python -m training evaluate --images DIR [--checkpoint FILE] [--methods ...] [--csv FILE]

Every photo (resized so its long side is at most --size) gives three tasks:

  B1 global   the photo hue-shifted (training.variants.hue_shift) and the original's palette:
              reconstruct the original. Methods get the shifted palette as the source.
  B2 local    the original and its palette with one or two colours moved: reproduce the
              locally edited photo made as in the local-edit training variants. The error is
              also reported inside the edited region (mask > 0.5) and outside it
              (mask < 0.05), so a method that changes nothing cannot look good.
  B3 designer a designer palette (--palettes FILE, else a few built-in ones), paired with the
              photo's palette by lightness rank and given the photo palette's lightness (no
              ground truth). Palette adherence: the output's extracted palette is matched
              one-to-one to the target (Hungarian assignment) and the matched CIEDE2000
              distances are averaged.

B1 and B2 report, per image, the mean and the 90th percentile of CIEDE2000 against the
ground truth, averaged over the images; B3 reports the mean and the 90th percentile over the
images of the per-image adherence. Times are milliseconds of the method alone per image.

Methods: identity (no change), rotation (one global ab rotation, estimated from the two
palettes), chang2015 (backend.core.chang2015) and palettenet (needs --checkpoint). Every photo
uses its own seeded random numbers, so results do not depend on which other photos run.
--bench-chang also times Chang 2015 per image at 1 and 24 megapixels. docs/BENCHMARK.md has
the held-out results.
"""

import csv
import json
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.optimize import linear_sum_assignment
from skimage.color import deltaE_ciede2000
from tqdm import tqdm

from backend.core.chang2015 import in_gamut, recolor_chang2015
from backend.core.color import lab_to_rgb_np, rgb_to_lab_np, to_uint8
from backend.core.palette import (
    MODEL_PALETTE_SIZE,
    extract_palette,
    pair_by_lightness,
)
from backend.service.protocol import ProtocolError, parse_palette
from training import TrainingError
from training.variants import hue_shift, local_edit, random_edits, rotate_ab

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}
TASKS = ("B1", "B2", "B3")
TASK_TITLES = {
    "B1": "B1 global: hue-shifted photo + original palette -> original (CIEDE2000)",
    "B2": "B2 local: one or two palette colours moved -> locally edited photo (CIEDE2000)",
    "B3": "B3 designer palettes: palette adherence (CIEDE2000, no ground truth)",
}
ALL_METHODS = ("identity", "rotation", "chang2015", "palettenet")
B4_ONLY_METHODS = ("lab-rotation",)  # B4's reference: a rigid CIELAB hue turn (artwork_bench)
INSIDE, OUTSIDE = 0.5, 0.05  # edit-mask levels for "inside" and "outside" the edited region
MIN_HUE_TURNS = 1 / 18  # B1 shifts are at least 20 degrees either way: smaller ones are easy

# Used for B3 when no --palettes file is given (dark to light, six colours each).
BUILTIN_PALETTES = [
    ["#2b2d42", "#5c4d7d", "#8d99ae", "#d90429", "#ef8354", "#edf2f4"],
    ["#0b3d20", "#1e6f3a", "#4f9d69", "#a7c957", "#f2e8cf", "#fefae0"],
    ["#03045e", "#023e8a", "#0077b6", "#00b4d8", "#90e0ef", "#caf0f8"],
    ["#3d0c02", "#7f2704", "#c2410c", "#f97316", "#fdba74", "#fff7ed"],
]

CSV_FIELDS = [
    "task", "method", "metric", "images", "de_mean", "de_p90",
    "inside_mean", "inside_p90", "outside_mean", "outside_p90", "ms_per_image",
]  # fmt: skip


# --- photos -------------------------------------------------------------------------------
def list_images(directory, split_file=None, split="test", limit=None) -> list[Path]:
    """The photos to evaluate: all images in `directory` (sorted by name), or the names that
    split `split` of a `python -m training prepare` split file lists; the first `limit`."""
    directory = Path(directory)
    if not directory.is_dir():
        raise TrainingError(f"--images: not a folder: {directory}")
    if split_file is None:
        paths = sorted(p for p in directory.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    else:
        try:
            record = json.loads(Path(split_file).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise TrainingError(f"{split_file}: not a readable split file ({error})") from None
        splits = record.get("splits", {}) if isinstance(record, dict) else {}
        if split not in splits:
            raise TrainingError(f"{split_file}: no split {split!r} (has: {', '.join(splits)})")
        paths = []
        for name in splits[split]:
            path = directory / name
            if path.is_file():
                paths.append(path)
            else:
                print(f"warning: {path} is listed in {split_file} but missing", file=sys.stderr)
    if limit is not None:
        paths = paths[:limit]
    if not paths:
        raise TrainingError(f"no images to evaluate in {directory}")
    return paths


def load_photo(path, size: int) -> np.ndarray:
    """float RGB (H, W, 3) in 0..1, long side at most `size` (never enlarged)."""
    with Image.open(path) as image:
        image = image.convert("RGB")
        scale = size / max(image.size)
        if scale < 1:
            new_size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
            image = image.resize(new_size, Image.Resampling.LANCZOS)
        return np.asarray(image, dtype=np.float64) / 255


def photo_rng(seed: int, name: str, task: str) -> np.random.Generator:
    """Random numbers for one photo and task, independent of the other photos and tasks."""
    return np.random.default_rng([seed, zlib.crc32(name.encode()), zlib.crc32(task.encode())])


# --- tasks --------------------------------------------------------------------------------
@dataclass
class Case:
    input_rgb: np.ndarray  # what the method recolours, float RGB 0..1
    source: np.ndarray  # (k, 3) LAB, in correspondence with target
    target: np.ndarray  # (k, 3) LAB
    truth_lab: np.ndarray | None = None  # ground truth (B1, B2)
    mask: np.ndarray | None = None  # edit mask in 0..1 (B2)


def global_case(rgb, lab, palette, rng) -> Case:
    """B1: the photo hue-shifted by 20..340 degrees; the original palette is the target."""
    turns = rng.uniform(MIN_HUE_TURNS, 1 - MIN_HUE_TURNS)
    shifted_lab, shifted_palette = hue_shift(lab, palette, turns)
    return Case(lab_to_rgb_np(shifted_lab), shifted_palette, palette, truth_lab=lab)


def local_case(rgb, lab, palette, rng) -> Case:
    """B2: one or two palette colours moved; the truth is the local edit of the photo.

    The truth is taken through sRGB (as a method's output is) so it is a displayable image."""
    edited_lab, edited_palette, mask = local_edit(lab, palette, random_edits(palette, rng))
    truth = rgb_to_lab_np(lab_to_rgb_np(edited_lab))
    return Case(rgb, palette, edited_palette, truth_lab=truth, mask=mask)


def fit_chroma(lab) -> np.ndarray:
    """Bring LAB colours into the sRGB gamut by reducing chroma only (L and hue are kept)."""
    lab = np.array(lab, dtype=np.float64)
    low, high = np.zeros(len(lab)), np.ones(len(lab))
    fits = in_gamut(lab)
    for _ in range(30):
        middle = (low + high) / 2
        inside = in_gamut(np.column_stack([lab[:, 0], lab[:, 1:] * middle[:, None]]))
        low, high = np.where(inside, middle, low), np.where(inside, high, middle)
    scale = np.where(fits, 1.0, low)
    lab[:, 1:] *= scale[:, None]
    return lab


def designer_case(rgb, palette, designer_lab) -> Case:
    """B3: the designer palette's colours, dark to light, take the place of the photo's
    palette colours of the same lightness rank, with the photo colour's lightness (which all
    the methods keep) and chroma reduced where that colour is not displayable at it."""
    # A photo gives as many colours as the designer palette; flat art may give fewer.
    target = pair_by_lightness(designer_lab, palette)
    target[:, 0] = palette[:, 0]  # extract_palette sorts by lightness too
    return Case(rgb, palette, fit_chroma(target))


def palette_adherence(output_rgb, target_lab) -> float:
    """Mean CIEDE2000 between the target palette and the output's extracted palette, the
    colours matched one-to-one (Hungarian assignment on the CIEDE2000 costs)."""
    extracted, _ = extract_palette(to_uint8(output_rgb), len(target_lab))
    cost = deltaE_ciede2000(extracted[:, None, :], target_lab[None, :, :])
    rows, cols = linear_sum_assignment(cost)
    return float(cost[rows, cols].mean())


# --- methods ------------------------------------------------------------------------------
def recolor_identity(rgb, source, target):
    return rgb


def rotation_angle(source, target) -> float:
    """The single ab rotation (radians) that best maps the source palette onto the target in
    least squares (2-D Procrustes): saturated colours count more, greys hardly at all."""
    s, t = np.asarray(source)[:, 1:], np.asarray(target)[:, 1:]
    cross = np.sum(s[:, 0] * t[:, 1] - s[:, 1] * t[:, 0])
    dot = np.sum(s[:, 0] * t[:, 0] + s[:, 1] * t[:, 1])
    return float(np.arctan2(cross, dot))


def recolor_rotation(rgb, source, target):
    turns = rotation_angle(source, target) / (2 * np.pi)
    return lab_to_rgb_np(rotate_ab(rgb_to_lab_np(rgb), turns, 1.0))


def palettenet_method(checkpoint, device="cpu"):
    """PaletteNet from a weight file: a source+target model is told which colour each target
    entry replaces, as the plug-in tells it; a target-only model sees the target alone."""
    from backend.core.recolor import recolor_rgb  # torch model code: only loaded when asked for
    from backend.core.weights import WeightsError, load_weights
    from backend.service.engine import resolve_device

    try:
        model = load_weights(checkpoint, resolve_device(device))
    except WeightsError as error:
        raise TrainingError(str(error)) from None

    def recolor_palettenet(rgb, source, target):
        return recolor_rgb(model, rgb.astype(np.float32), target, source)

    return recolor_palettenet


def make_methods(names, checkpoint=None, device="cpu") -> dict:
    """name -> recolour(rgb, source palette, target palette) -> rgb, in the order given."""
    unknown = [name for name in names if name not in ALL_METHODS]
    if unknown:
        known = ", ".join(ALL_METHODS)
        raise TrainingError(f"unknown method(s) {', '.join(unknown)}; known: {known}")
    if "palettenet" in names and checkpoint is None:
        raise TrainingError("the palettenet method needs --checkpoint FILE")
    builders = {
        "identity": lambda: recolor_identity,
        "rotation": lambda: recolor_rotation,
        "chang2015": lambda: recolor_chang2015,
        "palettenet": lambda: palettenet_method(checkpoint, device),
    }
    return {name: builders[name]() for name in names}


# --- scoring ------------------------------------------------------------------------------
def score(case: Case, output_rgb) -> dict:
    """Per-image numbers for one method's output."""
    if case.truth_lab is None:
        return {"de_mean": palette_adherence(output_rgb, case.target)}
    error = deltaE_ciede2000(rgb_to_lab_np(output_rgb), case.truth_lab)
    result = {"de_mean": float(error.mean()), "de_p90": float(np.percentile(error, 90))}
    if case.mask is not None:
        for name, region in (("inside", case.mask > INSIDE), ("outside", case.mask < OUTSIDE)):
            if region.any():  # an edit of a rare colour can leave no pixel above 0.5
                result[f"{name}_mean"] = float(error[region].mean())
                result[f"{name}_p90"] = float(np.percentile(error[region], 90))
    return result


def evaluate(paths, methods: dict, size=512, designer_palettes=None, seed=0, progress=True):
    """Run every task and method on every photo. Returns {(task, method): [per-image dict]}."""
    designer_palettes = designer_palettes or []
    results = {(task, name): [] for task in TASKS for name in methods}
    for path in tqdm(paths, desc="evaluate", unit="photo", file=sys.stderr, disable=not progress):
        try:
            rgb = load_photo(path, size)
        except (OSError, ValueError) as error:  # PIL's UnidentifiedImageError is an OSError
            tqdm.write(f"warning: skipping {path.name}: {error}", file=sys.stderr)
            continue
        lab = rgb_to_lab_np(rgb)
        palette, _ = extract_palette(to_uint8(rgb), MODEL_PALETTE_SIZE)
        cases = {
            "B1": global_case(rgb, lab, palette, photo_rng(seed, path.name, "B1")),
            "B2": local_case(rgb, lab, palette, photo_rng(seed, path.name, "B2")),
        }
        if designer_palettes:
            choice = photo_rng(seed, path.name, "B3").integers(len(designer_palettes))
            designer = designer_palettes[choice]
            own = palette
            if len(designer) != len(palette):
                own, _ = extract_palette(to_uint8(rgb), len(designer))
            cases["B3"] = designer_case(rgb, own, designer)
        for task, case in cases.items():
            for name, recolor in methods.items():
                start = time.perf_counter()
                output = recolor(case.input_rgb, case.source, case.target)
                elapsed = time.perf_counter() - start
                numbers = score(case, np.asarray(output, dtype=np.float64))
                numbers["ms"] = 1000 * elapsed
                results[(task, name)].append(numbers)
    return results


def summarise(results) -> list[dict]:
    """One row per task and method, with the CSV_FIELDS."""
    rows = []
    for (task, method), images in results.items():
        if not images:
            continue
        row = {"task": task, "method": method, "images": len(images)}
        row["metric"] = "palette adherence" if task == "B3" else "CIEDE2000 vs truth"
        if task == "B3":  # one number per image: report its mean and spread over images
            values = [image["de_mean"] for image in images]
            row["de_mean"], row["de_p90"] = float(np.mean(values)), float(np.percentile(values, 90))
        else:
            for key in CSV_FIELDS[4:-1]:
                values = [image[key] for image in images if key in image]
                if values:
                    row[key] = float(np.mean(values))
        row["ms_per_image"] = float(np.mean([image["ms"] for image in images]))
        rows.append(row)
    return rows


def format_tables(rows) -> str:
    """A plain-text table per task."""
    lines = []
    for task in TASKS:
        task_rows = [row for row in rows if row["task"] == task]
        if not task_rows:
            continue
        if task == "B2":
            header = ["method", "images", "mean", "p90", "in mean", "in p90", "out mean",
                      "out p90", "ms/image"]  # fmt: skip
            keys = ["de_mean", "de_p90", "inside_mean", "inside_p90", "outside_mean",
                    "outside_p90"]  # fmt: skip
        else:
            header = ["method", "images", "mean", "p90", "ms/image"]
            keys = ["de_mean", "de_p90"]
        table = [header]
        for row in task_rows:
            cells = [row["method"], str(row["images"])]
            cells += [f"{row[key]:.2f}" if key in row else "-" for key in keys]
            cells.append(f"{row['ms_per_image']:.1f}")
            table.append(cells)
        widths = [max(len(line[i]) for line in table) for i in range(len(header))]
        lines.append(TASK_TITLES[task])
        for line in table:
            lines.append("  ".join(cell.rjust(width) for cell, width in zip(line, widths)))
        lines.append("")
    return "\n".join(lines)


def write_csv(rows, path):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for row in rows:
            writer.writerow({key: (f"{v:.4f}" if isinstance(v, float) else v)
                             for key, v in row.items()})  # fmt: skip


def load_designer_palettes(path=None) -> list[np.ndarray]:
    """LAB palettes from a JSON list of lists of hex colours, or the built-in ones."""
    entries = BUILTIN_PALETTES
    if path is not None:
        entries = json.loads(Path(path).read_text())
        if not isinstance(entries, list) or not entries:
            raise TrainingError(f"{path}: expected a JSON list of palettes (lists of hex colours)")
    palettes = []
    for i, entry in enumerate(entries):
        try:
            palettes.append(rgb_to_lab_np(parse_palette(entry)))
        except ProtocolError as error:
            raise TrainingError(f"{path}: palette {i + 1}: {error}") from None
    return palettes


# --- Chang 2015 timing --------------------------------------------------------------------
BENCH_SIZES = {1: (1224, 816), 24: (6000, 4000)}  # megapixels -> (width, height), 3:2


def bench_chang(photo_rgb, repeats=3) -> list[tuple[int, int, int, float]]:
    """Milliseconds per image of Chang 2015 (the whole call: lattice and interpolation) at
    1 and 24 megapixels.

    The photo is resized to each size (stretched to 3:2 if need be: only the pixel count
    matters); the source palette is its own, the target the same palette turned by a third
    of a turn. Returns (MP, width, height, ms), the best of `repeats` runs (one at 24 MP)."""
    image = Image.fromarray(to_uint8(photo_rgb))
    rows = []
    for mp, (width, height) in BENCH_SIZES.items():
        big = np.asarray(image.resize((width, height), Image.Resampling.BICUBIC))
        palette, _ = extract_palette(big, MODEL_PALETTE_SIZE)
        target = fit_chroma(rotate_ab(palette, 1 / 3, 1.0))
        best = np.inf
        for _ in range(1 if mp > 8 else repeats):
            start = time.perf_counter()
            recolor_chang2015(big, palette, target)
            best = min(best, time.perf_counter() - start)
        rows.append((mp, width, height, 1000 * best))
        del big
    return rows


# --- command line -------------------------------------------------------------------------
def add_arguments(parser):
    parser.add_argument("--images", type=Path, help="folder of photos (jpg, jpeg, png, webp)")
    parser.add_argument(
        "--split-file",
        type=Path,
        help="JSON from `python -m training prepare`; evaluate only one split",
    )
    parser.add_argument("--split", default="test", help="which split of --split-file (test)")
    parser.add_argument(
        "--size", type=int, default=512, help="long side the photos are reduced to (default 512)"
    )
    parser.add_argument("--limit", type=int, help="evaluate only the first N photos")
    parser.add_argument("--checkpoint", type=Path, help="PaletteNet weight file")
    parser.add_argument("--device", default="cpu", help="where PaletteNet runs: cpu, cuda, auto")
    parser.add_argument(
        "--methods",
        help=f"comma-separated, of {','.join(ALL_METHODS)} (default: all that "
        "can run; palettenet only with --checkpoint); B4 also lab-rotation, the reference "
        "of the gradient-steps measure",
    )
    parser.add_argument(
        "--palettes",
        type=Path,
        help="designer palettes for B3: a JSON list of palettes, each a list of hex colours "
        '(e.g. [["#2b2d42", "#8d99ae", "#edf2f4"]]; default: four built-in ones)',
    )
    parser.add_argument("--csv", type=Path, help="also write the table as CSV")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--bench-chang",
        action="store_true",
        help="also time Chang 2015 per image at 1 and 24 megapixels, on the "
        "first photo (or scikit-image's astronaut without --images)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")  # fmt: skip
    b4 = parser.add_argument_group("B4 artwork (training/artwork_bench.py)")
    b4.add_argument(
        "--artwork",
        type=Path,
        action="append",
        default=[],
        help="a data folder with SOURCES.tsv (artwork, or photos for the photo measures); "
        "may be given more than once",
    )
    b4.add_argument(
        "--artwork-split",
        type=Path,
        action="append",
        default=[],
        help="split file of each --artwork folder, in the same order (training/splits/)",
    )
    b4.add_argument("--b4-csv", type=Path, help="also write every B4 case as CSV")
    b4.add_argument(
        "--server",
        help="recolour B4 through the daemon at this address (tcp://HOST:PORT, ipc://PATH) "
        "instead of in this process",
    )
    b4.add_argument("--no-synthetic", action="store_true", help="B4 without the synthetic layers")
    b4.add_argument(
        "--workers",
        type=int,
        default=1,
        help="B4 layers recoloured and measured in this many processes at once (1)",
    )


def run(args):
    if args.images is None and not args.artwork and not args.bench_chang:
        raise TrainingError("--images DIR or --artwork DIR is required (or --bench-chang alone)")
    if args.methods:
        names = [name.strip() for name in args.methods.split(",") if name.strip()]
    else:
        names = [name for name in ALL_METHODS if name != "palettenet" or args.checkpoint]
    unknown = [name for name in names if name not in ALL_METHODS + B4_ONLY_METHODS]
    if unknown:
        known = ", ".join(ALL_METHODS + B4_ONLY_METHODS)
        raise TrainingError(f"unknown method(s) {', '.join(unknown)}; known: {known}")
    if not names:
        raise TrainingError("--methods names no method")
    b4_only = [name for name in names if name in B4_ONLY_METHODS]
    if b4_only and not args.artwork:
        raise TrainingError(f"{b4_only[0]} is a reference of B4: it needs --artwork DIR")
    names_b1_b3 = [name for name in names if name not in B4_ONLY_METHODS]
    if args.images is not None and not names_b1_b3:
        raise TrainingError(f"{', '.join(b4_only)} runs on B4 only: name a method for B1-B3")
    paths = []
    if args.images is not None:
        paths = list_images(args.images, args.split_file, args.split, args.limit)
        methods = make_methods(names_b1_b3, args.checkpoint, args.device)
        palettes = load_designer_palettes(args.palettes)
        results = evaluate(paths, methods, args.size, palettes, args.seed, not args.quiet)
        rows = summarise(results)
        print(f"{len(paths)} photos from {args.images}, long side {args.size}, seed {args.seed}")
        print(format_tables(rows))
        if args.csv:
            write_csv(rows, args.csv)
            print(f"wrote {args.csv}")
    if args.artwork:
        run_artwork(args, names)
    if args.bench_chang:
        if paths:
            photo = load_photo(paths[0], 10**6)
        else:
            from skimage import data

            photo = data.astronaut() / 255
        print("Chang 2015, time per image (lattice build + interpolation, best of runs):")
        for mp, width, height, ms in bench_chang(photo):
            print(f"  {mp:>3} MP ({width} x {height}): {ms:8.1f} ms")
    return 0


def run_artwork(args, names):
    """B4 on the --artwork folders (see training/artwork_bench.py)."""
    from training.artwork_bench import (
        B4_METHODS,
        Recolourer,
        format_b4,
        read_layers,
        run_b4,
        write_b4_csv,
    )

    if args.artwork_split and len(args.artwork_split) != len(args.artwork):
        raise TrainingError("give one --artwork-split per --artwork folder, or none")
    # the references (identity: no change; lab-rotation: a rigid hue turn, the floor of
    # the gradient-steps measure) only when asked for by name
    methods = [name for name in names if name in B4_METHODS]
    if not args.methods:
        methods = [name for name in methods if name not in ("identity", "lab-rotation")]
    if not methods:
        raise TrainingError(f"none of {', '.join(names)} runs on B4 (it knows "
                            f"{', '.join(B4_METHODS)})")  # fmt: skip
    if "palettenet" in methods and args.checkpoint is None and not args.server:
        raise TrainingError("the palettenet method needs --checkpoint FILE")
    splits = args.artwork_split or [None] * len(args.artwork)
    layers = read_layers(zip(args.artwork, splits), args.split, args.limit, not args.no_synthetic)
    Recolourer(args.checkpoint, args.server, args.device).close()  # bad settings: fail now
    palettes = load_designer_palettes(args.palettes)
    recolourer_args = (args.checkpoint, args.server, args.device)
    rows = run_b4(layers, methods, palettes, args.seed, not args.quiet, recolourer_args,
                  args.workers)  # fmt: skip
    where = f"through {args.server}" if args.server else "in process"
    folders = ", ".join(str(folder) for folder in args.artwork)
    which = f"{args.split} split" if args.artwork_split else "all files"
    print(f"B4: {len({r['file'] for r in rows})} layers from {folders} ({which}), "
          f"full size, {where}, seed {args.seed}")  # fmt: skip
    print(format_b4(rows, which))
    if args.b4_csv:
        write_b4_csv(rows, args.b4_csv)
        print(f"wrote {args.b4_csv}")
