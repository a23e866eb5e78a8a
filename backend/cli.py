"""palettenet: the command-line tool.

palettenet recolor IN -p "#hex,#hex,..." -o OUT [--method palettenet|chang2015]
palettenet palette IN [-k 6]
palettenet info
"""

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from backend import __version__
from backend.palette import (
    PaletteError,
    extract_palette,
    lab_to_rgb_np,
    parse_palette,
    rgb_to_lab_np,
    to_hex,
)
from backend.weights import WeightsError, load_weights, read_metadata

DEFAULT_WEIGHTS = Path(__file__).parent / "data" / "palettenet.pt"


def read_image(path: Path):
    """-> (float RGB (H, W, 3) in 0..1, alpha uint8 or None)."""
    try:
        with Image.open(path) as image:
            image.load()
            alpha = np.asarray(image.getchannel("A")) if "A" in image.getbands() else None
            rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255
    except (OSError, ValueError) as error:
        raise SystemExit(f"cannot read {path}: {error}") from None
    return rgb, alpha


def write_image(path: Path, rgb, alpha):
    rgb8 = np.clip(np.round(rgb * 255), 0, 255).astype(np.uint8)
    image = Image.fromarray(rgb8)
    if alpha is not None:
        image.putalpha(Image.fromarray(alpha))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def model_from(weights: Path | None):
    path = weights or DEFAULT_WEIGHTS
    try:
        import torch

        return load_weights(path, "cuda" if torch.cuda.is_available() else "cpu")
    except WeightsError as error:
        hint = "" if weights else " (no default model is installed: pass --weights FILE)"
        raise SystemExit(f"{error}{hint}") from None


def cmd_recolor(args):
    rgb, alpha = read_image(args.input)
    try:
        target = rgb_to_lab_np(parse_palette(args.palette))
        source = rgb_to_lab_np(parse_palette(args.source_palette)) if args.source_palette else None
    except PaletteError as error:
        raise SystemExit(f"bad palette: {error}") from None
    if args.method == "chang2015":
        from backend.chang2015 import recolor_chang2015

        if source is None:
            rgb8 = (rgb * 255).round().astype(np.uint8)
            source, _ = extract_palette(rgb8, k=len(target), alpha=alpha)
        if len(source) != len(target):
            raise SystemExit("--source-palette must have as many colours as --palette")
        out = recolor_chang2015(rgb, source, target)
    else:
        from backend.recolor import recolor_rgb

        out = recolor_rgb(model_from(args.weights), rgb, target)
    write_image(args.output, out, alpha)
    print(f"wrote {args.output}")


def cmd_palette(args):
    rgb, alpha = read_image(args.input)
    try:
        lab, shares = extract_palette((rgb * 255).round().astype(np.uint8), k=args.k, alpha=alpha)
    except PaletteError as error:
        raise SystemExit(str(error)) from None
    for colour, share in zip(lab_to_rgb_np(lab), shares):
        print(f"{to_hex(colour)}  {share:6.1%}")


def cmd_info(args):
    print(f"palettenet {__version__}")
    path = args.weights or DEFAULT_WEIGHTS
    try:
        meta = read_metadata(path)
        print(f"model: {path} (architecture {meta['arch_version']})")
        for key, value in meta.get("training", {}).items():
            print(f"  {key}: {value}")
    except WeightsError as error:
        print(f"model: none ({error})")


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="palettenet", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)

    recolor = commands.add_parser("recolor", help="recolour an image to a palette")
    recolor.add_argument("input", type=Path)
    recolor.add_argument("-p", "--palette", required=True, help='"#hex,#hex,..." (1-12 colours)')
    recolor.add_argument("-o", "--output", type=Path, required=True)
    recolor.add_argument("--method", choices=["palettenet", "chang2015"], default="palettenet")
    recolor.add_argument("--source-palette", help="chang2015: the colours to move, in order")
    recolor.add_argument("--weights", type=Path, help="PaletteNet weight file")
    recolor.set_defaults(run=cmd_recolor)

    palette = commands.add_parser("palette", help="print an image's palette")
    palette.add_argument("input", type=Path)
    palette.add_argument("-k", type=int, default=6, help="number of colours (1-12)")
    palette.set_defaults(run=cmd_palette)

    info = commands.add_parser("info", help="version and model")
    info.add_argument("--weights", type=Path)
    info.set_defaults(run=cmd_info)

    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
