"""The model card's artwork figure (python -m training figures --artwork), on a small
generated artwork folder (no shared data needed)."""

import json

import numpy as np
import pytest
from PIL import Image

from backend import DEFAULT_WEIGHTS
from tests.test_artwork_bench import SOURCES_HEADER, flat_layer, line_art_layer, pixel_art_layer
from training.__main__ import main
from training.figures import CAPTION_HEIGHT, CELL_HEIGHT, CELL_WIDTH, GAP, PALETTE_WIDTH

# name -> (package, kind, licence, notes, layer maker, split)
LAYERS = {
    "pkg-a__flat-one.png": ("pkg-a", "flat", "GPL-2+", "", flat_layer, "test"),
    "pkg-a__flat-two.png": ("pkg-a", "flat", "GPL-2+", "", flat_layer, "test"),
    "pkg-b__lines.png": ("pkg-b", "lineart", "CC-BY-SA-3.0", "", line_art_layer, "test"),
    "pkg-c__pixels.png": ("pkg-c", "pixelart", "LGPL-3+", "native size; pixel art",
                          pixel_art_layer, "test"),
    "pkg-d__painted.png": ("pkg-d", "painted", "Zlib", "", flat_layer, "train"),
}  # fmt: skip
SHOWN = ["pkg-a__flat-one.png", "pkg-b__lines.png", "pkg-c__pixels.png"]  # first of each kind


@pytest.fixture(scope="module")
def artwork(tmp_path_factory):
    """An artwork folder (SOURCES.tsv as in ../shared/datasets/artwork) and its split file
    (the form of training/splits/artwork.json)."""
    folder = tmp_path_factory.mktemp("artwork")
    rows = [SOURCES_HEADER]
    splits = {"train": [], "validation": [], "test": []}
    for name, (package, kind, licence, notes, make, split) in LAYERS.items():
        layer = make()
        Image.fromarray(layer).save(folder / name)
        size = f"{layer.shape[1]}x{layer.shape[0]}"
        rows.append([name, package, "1.0-1", f"/usr/share/{name}", licence, kind, size, notes])
        splits[split].append(name)
    (folder / "SOURCES.tsv").write_text("\n".join("\t".join(row) for row in rows) + "\n")
    split_file = folder.parent / "artwork-split.json"
    record = {"group_by": "package", "how": "by hand, for this test", "splits": splits,
              "groups": {name: spec[0] for name, spec in LAYERS.items()},
              "kinds": {name: spec[1] for name, spec in LAYERS.items()}}  # fmt: skip
    split_file.write_text(json.dumps(record))
    return folder, split_file


def figure_command(folder, out, *extra):
    return ["figures", "--checkpoint", str(DEFAULT_WEIGHTS), "--artwork", str(folder),
            "--artwork-only", "--out", str(out), *extra]  # fmt: skip


def cell(picture, row, column_left, width):
    """The pixels of one cell (row index, column's left edge) of artwork-kinds.png."""
    top = CAPTION_HEIGHT + row * (CAPTION_HEIGHT + CELL_HEIGHT + GAP) + CAPTION_HEIGHT
    return np.asarray(picture)[top : top + CELL_HEIGHT, column_left : column_left + width]


def test_one_row_per_kind_of_the_test_split(artwork, tmp_path, capsys):
    folder, split_file = artwork
    out = tmp_path / "figures"
    extra = ["--artwork-split", str(split_file), "--before", str(DEFAULT_WEIGHTS)]
    assert main(figure_command(folder, out, *extra)) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[0])["artwork"] == SHOWN

    with Image.open(out / "artwork-kinds.png") as picture:
        picture = picture.convert("RGB")
    rows, columns = len(SHOWN), 4  # layer, Chang 2015, PaletteNet before, PaletteNet
    assert picture.height == CAPTION_HEIGHT + rows * (CAPTION_HEIGHT + CELL_HEIGHT + GAP)
    assert picture.width == columns * CELL_WIDTH + PALETTE_WIDTH + columns * GAP

    # transparency shows as a checkerboard: the line art's cell has its light-grey squares
    lines = cell(picture, 1, 0, CELL_WIDTH)
    assert np.all(lines == 224, axis=-1).sum() > 100
    # pixel art is enlarged by whole pixels: 40 x 40 -> 200 x 200, each pixel a 5 x 5 block
    enlarged = pixel_art_layer()[..., :3].repeat(5, axis=0).repeat(5, axis=1)
    left = (CELL_WIDTH - 200) // 2
    assert np.array_equal(cell(picture, 2, 0, CELL_WIDTH)[:, left : left + 200], enlarged)
    # the recoloured columns are not the layer
    chang_left = CELL_WIDTH + PALETTE_WIDTH + 2 * GAP
    assert not np.array_equal(cell(picture, 0, 0, CELL_WIDTH),
                              cell(picture, 0, chang_left, CELL_WIDTH))  # fmt: skip

    sources = (out / "artwork-kinds-SOURCES.txt").read_text()
    for name in SHOWN:
        package, _, licence, *_ = LAYERS[name]
        line = next(line for line in sources.splitlines() if name in line)
        assert package in line and line.rstrip().endswith(licence)
    assert "flat-two" not in sources and "painted" not in sources


def test_chosen_files_and_no_before_column(artwork, tmp_path, capsys):
    folder, _ = artwork
    out = tmp_path / "figures"
    assert main(figure_command(folder, out, "--artwork-files", "pkg-d__painted.png")) == 0
    with Image.open(out / "artwork-kinds.png") as picture:
        assert picture.height == 2 * CAPTION_HEIGHT + CELL_HEIGHT + GAP  # one row
        assert picture.width == 3 * CELL_WIDTH + PALETTE_WIDTH + 3 * GAP  # no "before"
    assert "pkg-d__painted.png" in (out / "artwork-kinds-SOURCES.txt").read_text()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--artwork", "/no-such-artwork-folder"], "SOURCES.tsv"),
        (["--artwork-files", "missing.png"], "missing.png"),
        (["--artwork-palette", "#0b1d51,#12345"], "--artwork-palette entry 2"),
        (["--before", "NOT-A-FILE.pt"], "--before"),
    ],
)
def test_bad_input_is_a_training_error(artwork, tmp_path, capsys, extra, message):
    folder, _ = artwork
    command = figure_command(folder, tmp_path / "figures") + extra
    assert main(command) == 2
    error = capsys.readouterr().err
    assert error.startswith("training: ") and message in error
    assert "Traceback" not in error
