"""Training with artwork in the mix: transparent layers, pixel art scaled with nearest
neighbour, splits kept from split files, and the flat-fill loss (issue 17)."""

import argparse
import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from tests.servers import random_weights
from tests.test_data import prepare
from training import train
from training.prepare import fit, flatten_visible
from training.train import flat_variation

PIXEL_COLOURS = np.array([(20, 20, 30), (90, 160, 60), (220, 200, 90), (140, 60, 40)], np.uint8)


def pixel_art():
    """A 24x16 sprite of four flat colours (2x2-pixel blocks), transparent corners."""
    blocks = PIXEL_COLOURS[np.random.default_rng(0).integers(0, 4, size=(8, 12))]
    rgb = blocks.repeat(2, axis=0).repeat(2, axis=1)
    alpha = np.full(rgb.shape[:2], 255, np.uint8)
    alpha[:4, :4] = alpha[-4:, -4:] = 0
    return np.dstack([rgb, alpha])


def test_a_transparent_layer_is_cut_to_its_visible_pixels_and_filled_with_their_mean():
    rgba = np.zeros((20, 30, 4), np.uint8)
    rgba[5:15, 10:20] = (200, 0, 0, 255)
    rgba[5:15, 20:25] = (0, 0, 200, 255)
    rgba[5, 10] = (0, 0, 0, 0)  # a hole inside the visible rectangle
    rgb = flatten_visible(rgba)
    assert rgb.shape == (10, 15, 3)
    mean = (99 * np.array([200, 0, 0]) + 50 * np.array([0, 0, 200])) / 149
    assert np.abs(rgb[0, 0].astype(float) - mean).max() <= 0.5
    with pytest.raises(ValueError, match="no visible pixel"):
        flatten_visible(np.zeros((4, 4, 4), np.uint8))


def test_pixel_art_scaled_with_nearest_neighbour_keeps_its_colours():
    rgb = flatten_visible(pixel_art())
    colours = {tuple(c) for c in rgb.reshape(-1, 3)}
    scaled = fit(rgb, 64, 48, nearest=True)
    assert scaled.shape == (48, 64, 3)
    assert {tuple(c) for c in scaled.reshape(-1, 3)} <= colours
    smooth = fit(rgb, 64, 48)  # Lanczos makes new colours between the blocks
    assert len({tuple(c) for c in smooth.reshape(-1, 3)}) > len(colours)


def test_flat_variation_counts_output_changes_only_where_the_input_is_flat():
    source = torch.zeros(1, 3, 8, 8)
    source[:, 1, :, 4:] = 0.5  # two flat halves with one edge between them
    flat_out = torch.zeros(1, 2, 8, 8)
    flat_out[:, 0, :, 4:] = 0.3  # the output changes at the input's edge only
    assert flat_variation(source, flat_out).item() == 0
    noisy = flat_out.clone()
    noisy[:, 0, 2, 1] = 0.1  # one pixel inside the left fill
    # horizontal: 2 of the 7*8 - 8 = 48 flat pairs change by 0.1; vertical: 2 of 56
    expected = (0.2 / 48 + 0.2 / 56) / 2
    assert flat_variation(source, noisy).item() == pytest.approx(expected, rel=1e-5)


@pytest.fixture(scope="module")
def mixed_dataset(photo_folder, tmp_path_factory):
    """Photos and an artwork folder (a pixel-art sprite and a flat drawing) prepared together,
    the artwork's split taken from a split file."""
    art = tmp_path_factory.mktemp("art")
    Image.fromarray(pixel_art()).save(art / "pkg-a__sprite.png")
    flat = np.zeros((40, 60, 4), np.uint8)
    flat[5:35, 5:55] = (30, 120, 200, 255)
    flat[15:25, 20:40] = (250, 240, 220, 255)
    Image.fromarray(flat).save(art / "pkg-b__drawing.png")
    (art / "SOURCES.tsv").write_text(
        "file\tpackage\tkind\tnotes\n"
        "pkg-a__sprite.png\tpkg-a\tsprites\tnative size; pixel art\n"
        "pkg-b__drawing.png\tpkg-b\tflat\t\n"
    )
    photos = tmp_path_factory.mktemp("groups") / "photos.tsv"
    names = sorted(p.name for p in photo_folder.glob("*.jpg"))
    photos.write_text("file\tpackage\n" + "".join(f"{n}\t{n[:3]}\n" for n in names))
    split = tmp_path_factory.mktemp("split") / "art.json"
    split.write_text(json.dumps({"splits": {"train": ["pkg-a__sprite.png"], "validation": [],
                                            "test": ["pkg-b__drawing.png"]}}))  # fmt: skip
    out = tmp_path_factory.mktemp("mixed")
    result = prepare(photo_folder, out, "--images", str(art), "--groups", str(photos),
                     "--groups", str(art / "SOURCES.tsv"), "--split-from", str(split),
                     "--split", "0.6,0.2,0.2")  # fmt: skip
    assert result.returncode == 0, result.stderr
    return out


def test_artwork_joins_the_photos_in_the_splits_its_split_file_gives(mixed_dataset):
    record = json.loads((mixed_dataset / "split.json").read_text())
    assert "pkg-a__sprite.png" in record["splits"]["train"]
    assert "pkg-b__drawing.png" in record["splits"]["test"]
    assert sum(len(names) for names in record["splits"].values()) >= 8


def test_the_prepared_sprite_has_only_its_own_colours(mixed_dataset):
    names = json.loads((mixed_dataset / "train" / "names.json").read_text())
    rgb = np.load(mixed_dataset / "train" / "rgb.npy")[names.index("pkg-a__sprite.png")]
    colours = {tuple(c) for c in rgb.reshape(-1, 3)}
    own = {tuple(c) for c in PIXEL_COLOURS}
    mean_fill = colours - own  # the transparent corners took the mean colour
    assert len(mean_fill) <= 1 and own <= colours


def test_a_fine_tune_with_the_flat_loss_runs_and_records_it(mixed_dataset, tmp_path):
    parser = argparse.ArgumentParser()
    train.add_arguments(parser)
    args = parser.parse_args(["--phase", "1", "--data", str(mixed_dataset), "--out",
                              str(tmp_path / "run"), "--init", str(random_weights(tmp_path)),
                              "--steps", "2", "--batch", "2", "--size", "32", "--threads", "1",
                              "--flat-weight", "1", "--mix", "hue=1,local=1,multi=1"])  # fmt: skip
    assert train.run(args) == 0
    with open(tmp_path / "run" / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["step"] for row in rows] == ["1", "2"]
    assert all(float(row["loss_flat"]) >= 0 for row in rows)
    assert (tmp_path / "run" / "weights.pt").exists()
