import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from scipy.ndimage import binary_dilation
from scipy.optimize import linear_sum_assignment

from backend.core.color import lab_to_rgb_np, rgb_to_lab_np
from backend.core.palette import extract_palette
from tests.test_palette import KNOWN, patch_image
from training.dataset import PairDataset, parse_mix, training_batch
from training.prepare import split_by_group
from training.variants import hue_shift, local_edit, membership


def prepare(images, out, *extra):
    command = [
        sys.executable,
        "-m",
        "training",
        "prepare",
        "--images",
        str(images),
        "--out",
        str(out),
        "--size",
        "64x48",
        "--variants",
        "4",
        "--local-variants",
        "2",
        "--multi-variants",
        "1",
        "--workers",
        "1",
        *extra,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="session")
def dataset(photo_folder, tmp_path_factory):
    (photo_folder / "not-a-photo.png").write_bytes(b"this is not a PNG")
    out = tmp_path_factory.mktemp("dataset")
    result = prepare(photo_folder, out, "--split", "0.5,0.25,0.25")
    assert result.returncode == 0, result.stderr
    assert "skipping not-a-photo.png" in result.stderr
    return out


def test_prepare_writes_a_compact_split_dataset(dataset):
    meta = json.loads((dataset / "meta.json").read_text())
    assert meta["kinds"] == ["original", "hue", "hue", "hue", "local", "local", "multi"]
    assert sum(meta["counts"].values()) == 6
    files = sorted(p.name for p in dataset.rglob("*") if p.is_file())
    assert len(files) == 2 + 3 * 4  # a handful of files, not one per image
    train = np.load(dataset / "train" / "ab.npy")
    assert train.shape[1:] == (7, 48, 64, 2) and train.dtype == np.int8


def test_split_is_by_source_photo_and_reproducible(dataset, photo_folder, tmp_path):
    splits = json.loads((dataset / "split.json").read_text())["splits"]
    names = [n for members in splits.values() for n in members]
    assert len(names) == len(set(names)) == 6  # no photo (hence no variant) in two splits
    assert all(splits[s] for s in ("train", "validation", "test"))
    for split, members in splits.items():
        assert json.loads((dataset / split / "names.json").read_text()) == members
    assert prepare(photo_folder, tmp_path, "--split", "0.5,0.25,0.25").returncode == 0
    assert json.loads((tmp_path / "split.json").read_text())["splits"] == splits


def test_split_by_group_keeps_groups_together():
    groups = {f"photo{i}": f"package{i % 4}" for i in range(40)}
    split = split_by_group(groups, [0.5, 0.25, 0.25], seed=3)
    for package in set(groups.values()):
        assert len({split[n] for n, g in groups.items() if g == package}) == 1
    chosen = split_by_group(groups, [0.8, 0.1, 0.1], 0, {"test": ["package2"]})
    assert {chosen[n] for n, g in groups.items() if g == "package2"} == {"test"}


def test_hue_shift_keeps_image_and_palette_consistent():
    image = patch_image(KNOWN, [1] * 6, size=60)
    lab = rgb_to_lab_np(image / 255.0)
    palette, _ = extract_palette(image)
    for turns in (0.1, 0.35, 0.5, 0.8):
        shifted, shifted_palette = hue_shift(lab, palette, turns)
        assert np.allclose(shifted[..., 0], lab[..., 0])  # original L put back
        assert np.allclose(shifted_palette[:, 0], palette[:, 0])
        # Putting the original L back can leave the sRGB gamut; compare what is displayed.
        shifted8 = (lab_to_rgb_np(shifted) * 255).round().astype(np.uint8)
        found, _ = extract_palette(shifted8)
        displayed_palette = rgb_to_lab_np(lab_to_rgb_np(shifted_palette))
        distance = np.linalg.norm(found[:, None] - displayed_palette[None], axis=-1)
        rows, cols = linear_sum_assignment(distance)
        assert distance[rows, cols].max() < 3


def test_local_edit_changes_only_the_chosen_colours():
    image = patch_image(KNOWN, [1] * 6, size=60)
    lab = rgb_to_lab_np(image / 255.0)
    palette = rgb_to_lab_np(KNOWN / 255.0)
    edited, new_palette, mask = local_edit(lab, palette, {2: (0.4, 1.0)})
    nearest = membership(lab, palette).argmax(-1)
    change = np.linalg.norm(edited - lab, axis=-1)
    # pixels of other colours stay, apart from a feathered seam a few pixels wide
    others = nearest != 2
    away = ~binary_dilation(nearest == 2, iterations=4)
    assert change[away].max() < 0.5
    assert change[nearest == 2].mean() > 20
    # the chosen colour's pixels go to the edited palette colour, lightness kept
    moved = edited[nearest == 2]
    assert np.median(np.linalg.norm(moved - new_palette[2], axis=-1)) < 3
    assert np.allclose(np.delete(new_palette, 2, 0), np.delete(palette, 2, 0))
    assert mask[nearest == 2].mean() > 0.9 and np.median(mask[others]) < 0.01


def test_batches_are_a_function_of_step_and_rank(dataset):
    data = PairDataset(dataset, "train", parse_mix("hue=1,local=1"))
    first = training_batch(data, 7, seed=0, rank=0, batch=4, size=32)
    again = training_batch(data, 7, seed=0, rank=0, batch=4, size=32)
    other_rank = training_batch(data, 7, seed=0, rank=1, batch=4, size=32)
    assert all(np.array_equal(first[k], again[k]) for k in first)
    assert not np.array_equal(first["source"], other_rank["source"])
    assert first["source"].shape == (4, 3, 32, 32) and first["target_palette"].shape == (4, 18)


def test_mix_option_is_validated():
    assert parse_mix("hue=3,local=1") == {"hue": 0.75, "local": 0.25}
    with pytest.raises(ValueError, match="unknown variant kind"):
        parse_mix("hue=1,stripes=1")


def test_prepare_design_seeds_layout_reads_the_attached_strip(tmp_path):
    from tests.test_design_seeds import _compose, _photo

    colours = np.array(
        [
            [20, 30, 60],
            [200, 40, 40],
            [240, 200, 60],
            [90, 160, 80],
            [230, 230, 240],
            [120, 80, 160],
        ],
        dtype=np.uint8,
    )
    images = tmp_path / "images"
    images.mkdir()
    for name in ("astronaut", "coffee", "chelsea"):
        Image.fromarray(_compose(_photo(name, 120, 160), colours)).save(images / f"{name}.png")
    out = tmp_path / "ds"
    result = prepare(images, out, "--layout", "design-seeds", "--split", "1,1,1")
    assert result.returncode == 0, result.stderr
    expected = np.sort(rgb_to_lab_np(colours / 255.0)[:, 0])
    for split in ("train", "validation", "test"):
        palettes = np.load(out / split / "palettes.npy")
        original = palettes[:, 0]  # variant 0 is the photo itself, with the strip's palette
        assert np.allclose(original[..., 0], expected, atol=1.0)
        rgb = np.load(out / split / "rgb.npy")
        # the stored photo is the photo alone: no white gap column at its right edge
        assert rgb[:, :, -1].mean() < 240
