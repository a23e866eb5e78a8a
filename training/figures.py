"""Pictures and numbers for the model card (docs/MODEL.md).

    python -m training figures --checkpoint W --images DIR --split-file S --out docs/images

Writes, for held-out photos (the test split):
  samples.png        rows of: photo | designer palette | PaletteNet | Chang 2015
  palette-sizes.png  one photo recoloured to palettes of 1, 2, 3, 6, 9 and 12 colours
  local-edit.png     one swatch changed: photo | palettes | PaletteNet | Chang 2015
and prints the permutation check: the mean CIEDE2000 between outputs for the same colour
pairs given in shuffled orders.
"""

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from skimage.color import deltaE_ciede2000

from backend.core.chang2015 import recolor_chang2015
from backend.core.color import lab_to_rgb_np, rgb_to_lab_np, to_uint8
from backend.core.palette import extract_palette
from backend.core.recolor import recolor_rgb
from backend.core.weights import WeightsError, load_weights
from training import TrainingError
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


def add_arguments(parser):
    parser.add_argument("--checkpoint", type=Path, required=True, help="PaletteNet weight file")
    parser.add_argument("--images", type=Path, required=True, help="folder of photos")
    parser.add_argument("--split-file", type=Path, help="split.json of `training prepare`")
    parser.add_argument("--split", default="test")
    parser.add_argument("--palettes", type=Path, help="designer palettes (JSON), as evaluate")
    parser.add_argument("--photos", type=int, default=4, help="photos per figure")
    parser.add_argument("--out", type=Path, required=True, help="folder for the PNGs")


def run(args):
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
