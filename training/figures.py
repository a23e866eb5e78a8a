"""Pictures and numbers for the model card (docs/MODEL.md).

    python -m training figures --checkpoint W --images DIR --split-file S --out docs/images
    python -m training figures --checkpoint NEW --before OLD --artwork DIR --artwork-split S
                               [--artwork-only] --out docs/images

Writes, for held-out photos (the test split):
  samples.png        rows of: photo | designer palette | PaletteNet | Chang 2015
  palette-sizes.png  one photo recoloured to palettes of 1, 2, 3, 6, 9 and 12 colours
  local-edit.png     one swatch changed: photo | palettes | PaletteNet | Chang 2015
and prints the permutation check: the mean CIEDE2000 between outputs for the same colour
pairs given in shuffled orders. With --artwork (issue 17; --artwork-only: this figure only):
  artwork-kinds.png  one row per artwork kind of the test split (its first file, or
                     --artwork-files): layer | palette | Chang 2015 | PaletteNet before
                     (--before; left out without it) | PaletteNet (--checkpoint)
  artwork-kinds-SOURCES.txt  file, package and licence of each layer shown
The edit is the plug-in's "apply palette" (B4's designer case): one designer palette sent
without source colours, through the daemon's own Engine (training.artwork_bench.Recolourer),
at the layer's FULL resolution. Only the display is reduced (see display_of): pixel art is
enlarged by whole pixels (nearest neighbour) and cropped to the cell; other layers are
reduced (Lanczos, never enlarged) at most MAX_REDUCTION times, a centred crop beyond that.
Each row's caption says which. Transparency is shown over a light checkerboard.
"""

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from skimage.color import deltaE_ciede2000

from backend.core.chang2015 import recolor_chang2015
from backend.core.color import lab_to_rgb_np, rgb_to_lab_np, to_uint8
from backend.core.palette import extract_palette
from backend.core.recolor import recolor_rgb
from backend.core.weights import WeightsError, load_weights
from backend.service.protocol import ProtocolError, parse_palette
from training import TrainingError
from training.artwork_bench import Recolourer, lab_of_hex, list_artwork
from training.artwork_data import KINDS, is_pixel_art, load_layer, read_sources
from training.evaluate import designer_case, list_images, load_designer_palettes, load_photo

SIDE = 256  # long side of each picture in a figure
LABEL = 18  # pixels of caption above each column


def swatches(lab, height, width=64) -> np.ndarray:
    """A column of colour bands, dark to light as given."""
    rgb = to_uint8(lab_to_rgb_np(np.asarray(lab)))
    rows = np.array_split(np.arange(height), len(rgb))
    out = np.zeros((height, width, 3), np.uint8)
    for colour, band in zip(rgb, rows):
        out[band] = colour
    return out


def grid(rows, captions) -> Image.Image:
    """Rows of uint8 pictures of one height -> one image with a caption over each column."""
    widths = [picture.shape[1] for picture in rows[0]]
    height = sum(row[0].shape[0] for row in rows) + LABEL
    canvas = Image.new("RGB", (sum(widths) + 4 * len(widths), height), "white")
    draw = ImageDraw.Draw(canvas)
    x = 0
    for width, caption in zip(widths, captions):
        draw.text((x + 2, 2), caption, fill="black")
        x += width + 4
    y = LABEL
    for row in rows:
        x = 0
        for picture in row:
            canvas.paste(Image.fromarray(picture), (x, y))
            x += picture.shape[1] + 4
        y += row[0].shape[0]
    return canvas


def photo_palette(rgb, k=6):
    return extract_palette(to_uint8(rgb), k)[0]


def samples(model, photos, designer_palettes, out: Path):
    rows = []
    for index, rgb in enumerate(photos):
        designer = designer_palettes[(7 * index + 3) % len(designer_palettes)]
        case = designer_case(rgb, photo_palette(rgb), designer)
        ours = recolor_rgb(model, rgb.astype(np.float32), case.target, case.source)
        theirs = recolor_chang2015(rgb, case.source, case.target)
        rows.append(
            [
                to_uint8(rgb),
                swatches(designer, rgb.shape[0], 48),
                to_uint8(ours),
                to_uint8(theirs),
            ]
        )
    grid(rows, ["photo", "palette", "PaletteNet", "Chang 2015"]).save(out / "samples.png")


def palette_sizes(model, rgb, designer, out: Path):
    """The same photo, palettes of k colours: the designer palette's colours paired with
    the photo's own k-colour palette by lightness rank (repeated beyond its six)."""
    row, captions = [to_uint8(rgb)], ["photo"]
    for k in (1, 2, 3, 6, 9, 12):
        colours = designer[np.round(np.linspace(0, len(designer) - 1, k)).astype(int)]
        if k > len(designer):  # more colours than the palette has: vary the lightness
            colours = colours.copy()
            colours[:, 0] = np.linspace(15, 90, k)
        result = recolor_rgb(model, rgb.astype(np.float32), colours)
        row += [swatches(colours[np.argsort(colours[:, 0])], rgb.shape[0], 16), to_uint8(result)]
        captions += [f"{k}", f"{k} colour{'s' if k > 1 else ''}"]
    grid([row], captions).save(out / "palette-sizes.png")


def local_edit_figure(model, photos, out: Path):
    rows = []
    for rgb in photos:
        source = photo_palette(rgb)
        target = source.copy()
        index = int(np.argmax(np.hypot(source[:, 1], source[:, 2])))
        target[index, 1:] = -source[index, 1:]  # the most colourful swatch to its opposite
        ours = recolor_rgb(model, rgb.astype(np.float32), target, source)
        theirs = recolor_chang2015(rgb, source, target)
        height = rgb.shape[0]
        rows.append(
            [
                to_uint8(rgb),
                np.concatenate([swatches(source, height, 32), swatches(target, height, 32)], 1),
                to_uint8(ours),
                to_uint8(theirs),
            ]
        )
    grid(rows, ["photo", "from / to", "PaletteNet", "Chang 2015"]).save(out / "local-edit.png")


def permutation_check(model, photos, designer_palettes, seed=0) -> float:
    """Mean CIEDE2000 between outputs for the same pairs in two random orders."""
    rng = np.random.default_rng(seed)
    differences = []
    for index, rgb in enumerate(photos):
        designer = designer_palettes[index % len(designer_palettes)]
        case = designer_case(rgb, photo_palette(rgb), designer)
        order = rng.permutation(len(case.target))
        first = recolor_rgb(model, rgb.astype(np.float32), case.target, case.source)
        second = recolor_rgb(model, rgb.astype(np.float32), case.target[order], case.source[order])
        differences.append(deltaE_ciede2000(rgb_to_lab_np(first), rgb_to_lab_np(second)).mean())
    return float(np.mean(differences))


# --- artwork of each kind, before and after (issue 17) -------------------------------------
ARTWORK_PALETTE = "#0b1d51,#725ac1,#f7ece1,#e0b1cb,#cac4ce,#8d86c9"  # the example
CELL_HEIGHT = 200  # display size of each artwork picture (pixels)
CELL_WIDTH = 300  # wider layers are cropped to this
PALETTE_WIDTH = 60
GAP = 4  # between columns
CAPTION_HEIGHT = 22  # text strip over the columns and over each row
FONT_SIZE = 14
MAX_REDUCTION = 3  # a layer (not pixel art) is reduced at most 3x; beyond, a centred crop
CHECKER = 8  # side of the checkerboard squares behind transparency


@dataclass
class Display:
    """How a layer is shown in a cell: `box` (left, top, right, bottom) of the layer, in layer
    pixels, resized to `size` (width, height) display pixels with `resample`; `note` says
    how, for the row's caption."""

    box: tuple
    size: tuple
    resample: Image.Resampling
    note: str


def display_of(height: int, width: int, pixel_art: bool) -> Display:
    """Pixel art: every layer pixel a whole block of zoom x zoom display pixels (nearest
    neighbour), zoom the most that keeps the height within CELL_HEIGHT (at least 1); other
    layers: reduced to fit the cell (Lanczos, never enlarged), but at most MAX_REDUCTION
    times, so that fills, lines and gradients stay visible. What does not fit the cell then
    is cropped, keeping the centre."""
    if pixel_art:
        zoom = max(1, CELL_HEIGHT // height)
        resample = Image.Resampling.NEAREST
    else:
        fit = min(CELL_HEIGHT / height, CELL_WIDTH / width, 1.0)
        zoom = max(fit, 1 / MAX_REDUCTION)
        resample = Image.Resampling.LANCZOS
    shown_w = min(width, int(CELL_WIDTH / zoom))
    shown_h = min(height, int(CELL_HEIGHT / zoom))
    left, top = (width - shown_w) // 2, (height - shown_h) // 2
    size = (max(1, round(shown_w * zoom)), max(1, round(shown_h * zoom)))
    how = [f"{width}x{height}"]
    if (shown_w, shown_h) != (width, height):
        how.append(f"centre {shown_w}x{shown_h}")
    if pixel_art:
        how.append(f"x{zoom} nearest")
    elif zoom < 1:
        how.append(f"reduced {1 / zoom:.1f}x")
    box = (left, top, left + shown_w, top + shown_h)
    return Display(box, size, resample, ", ".join(how))


def checkerboard(height, width) -> Image.Image:
    """Light grey and white squares (RGBA), the usual backdrop of transparent pixels."""
    y, x = np.mgrid[0:height, 0:width] // CHECKER
    grey = np.where((y + x) % 2 == 0, 255, 224).astype(np.uint8)
    return Image.fromarray(np.dstack([grey, grey, grey, np.full_like(grey, 255)]))


def shown(rgba: np.ndarray, display: Display) -> Image.Image:
    """uint8 RGBA (H, W, 4) -> the RGB picture of it in a cell (Display), transparency over
    the checkerboard (Pillow resizes RGBA with premultiplied alpha: no colour bleeds in from
    transparent pixels)."""
    picture = Image.fromarray(rgba).crop(display.box).resize(display.size, display.resample)
    backdrop = checkerboard(picture.height, picture.width)
    return Image.alpha_composite(backdrop, picture).convert("RGB")


def captioned_grid(columns, rows) -> Image.Image:
    """`columns`: (title, width) pairs; `rows`: (caption, pictures) pairs, one PIL picture per
    column, at most (width, CELL_HEIGHT). One image: the titles over the columns, and each row
    as a caption strip over its pictures, each picture centred in its cell."""
    font = ImageFont.load_default(size=FONT_SIZE)
    width = sum(w for _, w in columns) + GAP * (len(columns) - 1)
    row_height = CAPTION_HEIGHT + CELL_HEIGHT + GAP
    canvas = Image.new("RGB", (width, CAPTION_HEIGHT + row_height * len(rows)), "white")
    draw = ImageDraw.Draw(canvas)
    lefts = np.cumsum([0] + [w + GAP for _, w in columns])
    for (title, _), left in zip(columns, lefts):
        draw.text((int(left) + 2, 3), title, fill="black", font=font)
    for index, (caption, pictures) in enumerate(rows):
        top = CAPTION_HEIGHT + index * row_height
        draw.text((2, top + 4), caption, fill=(60, 60, 60), font=font)
        top += CAPTION_HEIGHT
        for (_, cell_width), left, picture in zip(columns, lefts, pictures):
            x = int(left) + (cell_width - picture.width) // 2
            canvas.paste(picture, (x, top + (CELL_HEIGHT - picture.height) // 2))
    return canvas


def choose_artwork(folder, split_file, names=None) -> list[tuple[Path, dict]]:
    """(path, SOURCES.tsv row) of the layers to show: the first file (by name) of each kind
    in the test split, in the order of KINDS (other kinds after them); or the files `names`
    (any in the folder's SOURCES.tsv), in their order."""
    if names:
        rows = {row["file"]: row for row in read_sources(folder)}
        chosen = []
        for name in names:
            path = Path(folder) / name
            if name not in rows or not path.is_file():
                raise TrainingError(f"--artwork-files: no {name} in {folder}/SOURCES.tsv")
            chosen.append((path, rows[name]))
        return chosen
    first_of_kind = {}
    for path, row in list_artwork(folder, split_file, "test"):
        first_of_kind.setdefault(row["kind"], (path, row))
    order = sorted(first_of_kind, key=lambda k: (KINDS.index(k) if k in KINDS else len(KINDS), k))
    return [first_of_kind[kind] for kind in order]


def open_recolourer(weights: Path, option: str) -> Recolourer:
    """A Recolourer (the daemon's Engine in this process) with these weights loaded, or
    TrainingError naming the option."""
    recolourer = Recolourer(weights)
    if recolourer.engine.model is None:
        raise TrainingError(f"{option} {weights}: {recolourer.engine.model_error}")
    return recolourer


def artwork_kinds(layers, palette: list[str], methods, out: Path) -> dict:
    """artwork-kinds.png and artwork-kinds-SOURCES.txt in `out` (see the module docstring).
    `layers`: (path, SOURCES.tsv row) pairs; `methods`: (column title, Recolourer, method)
    triples. Returns the seconds each column's recolouring took (all layers, full size)."""
    swatch_lab = lab_of_hex(palette)
    palette_picture = Image.fromarray(
        swatches(swatch_lab[np.argsort(swatch_lab[:, 0])], CELL_HEIGHT, PALETTE_WIDTH)
    )
    seconds = {title: 0.0 for title, _, _ in methods}
    rows = []
    for path, source in layers:
        rgba = load_layer(path)
        display = display_of(*rgba.shape[:2], is_pixel_art(source))
        pictures = [shown(rgba, display), palette_picture]
        for title, recolourer, method in methods:
            start = time.perf_counter()
            result = recolourer.recolor(rgba, method, palette, None)
            seconds[title] += time.perf_counter() - start
            pictures.append(shown(result, display))
        rows.append((f"{source['kind']}: {path.name} ({display.note})", pictures))
    columns = [("layer", CELL_WIDTH), ("palette", PALETTE_WIDTH)]
    columns += [(title, CELL_WIDTH) for title, _, _ in methods]
    captioned_grid(columns, rows).save(out / "artwork-kinds.png")
    (out / "artwork-kinds-SOURCES.txt").write_text(artwork_sources(layers, palette))
    return seconds


def artwork_sources(layers, palette) -> str:
    """The lines docs/images/SOURCES needs for artwork-kinds.png: each layer's file, Debian
    package (version), original path and licence, as SOURCES.tsv gives them."""
    lines = [
        "artwork-kinds.png: each method with the palette "
        f"{','.join(palette)} given without source colours (paired with the layer by "
        "lightness), recoloured at full size; reductions and crops of",
    ]
    width = max(len(path.name) for path, _ in layers)
    for path, row in layers:
        package = " ".join(filter(None, [row.get("package"), row.get("package_version")]))
        origin = row.get("original_path") or "original path not given"
        licence = row.get("licence") or "licence not given in SOURCES.tsv"
        lines.append(f"  {path.name:<{width}}  {package}, {origin}, {licence}")
    return "\n".join(lines) + "\n"


def artwork_figure(args) -> None:
    """--artwork: the before/after figure of each kind (artwork_kinds), timings printed."""
    try:
        palette = [colour.strip() for colour in args.artwork_palette.split(",") if colour.strip()]
        parse_palette(palette, "--artwork-palette")
    except ProtocolError as error:
        raise TrainingError(str(error)) from None
    names = list(
        dict.fromkeys(n.strip() for n in (args.artwork_files or "").split(",") if n.strip())
    )
    if args.artwork_files is not None and not names:
        raise TrainingError("--artwork-files names no file")
    layers = choose_artwork(args.artwork, args.artwork_split, names)
    recolourers = []
    try:
        now = open_recolourer(args.checkpoint, "--checkpoint")
        recolourers.append(now)
        methods = [("Chang 2015", now, "chang2015")]
        if args.before is not None:
            before = open_recolourer(args.before, "--before")
            recolourers.append(before)
            methods.append(("PaletteNet before", before, "palettenet"))
        methods.append(("PaletteNet", now, "palettenet"))
        args.out.mkdir(parents=True, exist_ok=True)
        seconds = artwork_kinds(layers, palette, methods, args.out)
    finally:
        for recolourer in recolourers:
            recolourer.close()
    timings = {title: round(s, 2) for title, s in seconds.items()}
    print(json.dumps({"artwork": [p.name for p, _ in layers], "recolour_seconds": timings}))
    print(f"wrote artwork-kinds.png, artwork-kinds-SOURCES.txt in {args.out}")


def add_arguments(parser):
    parser.add_argument("--checkpoint", type=Path, required=True, help="PaletteNet weight file")
    parser.add_argument("--images", type=Path, help="folder of photos (photo figures)")
    parser.add_argument("--split-file", type=Path, help="split.json of `training prepare`")
    parser.add_argument("--split", default="test")
    parser.add_argument("--palettes", type=Path, help="designer palettes (JSON), as evaluate")
    parser.add_argument("--photos", type=int, default=4, help="photos per figure")
    parser.add_argument("--out", type=Path, required=True, help="folder for the PNGs")
    artwork = parser.add_argument_group("artwork before/after (issue 17)")
    artwork.add_argument("--artwork", type=Path, help="artwork folder with SOURCES.tsv")
    artwork.add_argument("--artwork-split", type=Path, help="its split file (test split shown)")
    artwork.add_argument("--artwork-files", help="comma-separated files to show instead")
    artwork.add_argument("--artwork-palette", default=ARTWORK_PALETTE,
                         help=f"designer palette, hex (default {ARTWORK_PALETTE})")  # fmt: skip
    artwork.add_argument("--before", type=Path, help="weights of the 'PaletteNet before' column")
    artwork.add_argument("--artwork-only", action="store_true", help="skip the photo figures")


def run(args):
    if args.artwork_only and args.artwork is None:
        raise TrainingError("--artwork-only needs --artwork")
    if not args.artwork_only and args.images is None:
        raise TrainingError("--images is needed for the photo figures (or --artwork-only)")
    if args.artwork is not None:
        artwork_figure(args)
    if args.artwork_only:
        return 0
    try:
        model = load_weights(args.checkpoint)
    except WeightsError as error:
        raise TrainingError(str(error)) from None
    paths = list_images(args.images, args.split_file, args.split)
    step = max(1, len(paths) // args.photos)
    photos = [load_photo(path, SIDE) for path in paths[::step][: args.photos]]
    designer_palettes = load_designer_palettes(args.palettes)
    args.out.mkdir(parents=True, exist_ok=True)
    samples(model, photos, designer_palettes, args.out)
    palette_sizes(model, photos[0], designer_palettes[11 % len(designer_palettes)], args.out)
    local_edit_figure(model, photos[:3], args.out)
    difference = permutation_check(model, photos, designer_palettes)
    print(json.dumps({"photos": [p.name for p in paths[::step][: args.photos]],
                      "permutation_mean_ciede2000": round(difference, 4)}))  # fmt: skip
    print(f"wrote samples.png, palette-sizes.png, local-edit.png in {args.out}")
    return 0
