"""The quality benchmark (python -m training evaluate), on scikit-image's bundled photos."""

import contextlib
import csv
import io
import json

import numpy as np
import pytest
from PIL import Image
from skimage import data

from backend.core.color import lab_to_rgb_np, rgb_to_lab_np
from backend.core.palette import extract_palette
from training import TrainingError
from training.__main__ import main
from training.evaluate import (
    BUILTIN_PALETTES,
    TASK_TITLES,
    designer_case,
    fit_chroma,
    list_images,
    load_designer_palettes,
    local_case,
    palette_adherence,
    rotation_angle,
)
from training.variants import rotate_ab

PHOTOS = {"astronaut": "png", "coffee": "jpg", "chelsea": "png"}
SIZE = 128


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Three bundled photos written at long side 128 (one as JPEG)."""
    folder = tmp_path_factory.mktemp("photos")
    for name, suffix in PHOTOS.items():
        image = Image.fromarray(getattr(data, name)())
        image.thumbnail((SIZE, SIZE), Image.Resampling.LANCZOS)
        image.save(folder / f"{name}.{suffix}")
    (folder / "notes.txt").write_text("not a photo")
    return folder


@pytest.fixture(scope="module")
def benchmark(photos, tmp_path_factory):
    """One run of the command line with the default methods; (stdout, CSV rows)."""
    table = tmp_path_factory.mktemp("out") / "table.csv"
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        code = main(["evaluate", "--images", str(photos), "--size", str(SIZE), "--csv",
                     str(table), "--quiet"])  # fmt: skip
    assert code == 0
    with table.open() as handle:
        rows = list(csv.DictReader(handle))
    return output.getvalue(), rows


def test_prints_every_method_and_task(benchmark):
    output, rows = benchmark
    for title in TASK_TITLES.values():
        assert title in output
    methods = ["identity", "rotation", "chang2015"]
    assert {(row["task"], row["method"]) for row in rows} == {
        (task, method) for task in ("B1", "B2", "B3") for method in methods
    }
    for row in rows:
        assert int(row["images"]) == len(PHOTOS)
        assert float(row["de_mean"]) >= 0 and float(row["ms_per_image"]) >= 0
    b2 = [row for row in rows if row["task"] == "B2"]
    assert all(row["inside_mean"] and row["outside_mean"] for row in b2)


def test_b1_chang_and_rotation_beat_identity(benchmark):
    _, rows = benchmark
    b1 = {row["method"]: float(row["de_mean"]) for row in rows if row["task"] == "B1"}
    assert b1["chang2015"] < b1["identity"]
    assert b1["rotation"] < b1["identity"]


def test_b2_identity_is_exposed_inside_the_edit(benchmark):
    _, rows = benchmark
    b2 = {row["method"]: row for row in rows if row["task"] == "B2"}
    identity = b2["identity"]
    # Changing nothing is nearly perfect outside the edit and clearly wrong inside it.
    assert float(identity["inside_mean"]) > 3 * float(identity["outside_mean"])
    assert float(b2["chang2015"]["inside_mean"]) < float(identity["inside_mean"])


def test_b2_truth_changes_only_the_chosen_palette_colours():
    rng = np.random.default_rng(0)
    palette = fit_chroma(
        np.array(
            [
                [25.0, 30, -40],
                [40, -35, 30],
                [55, 45, 40],
                [65, -20, -30],
                [75, 5, 60],
                [88, -10, 15],
            ]
        )  # fmt: skip
    )
    block, margin = 16, 4  # the masks are feathered by a pixel or two
    image = np.repeat(np.repeat(lab_to_rgb_np(palette)[None], block, 0), block, 1)
    case = local_case(image, rgb_to_lab_np(image), palette, rng)
    changed = np.flatnonzero(np.linalg.norm(case.target - case.source, axis=1) > 1e-6)
    assert 1 <= len(changed) <= 2
    difference = np.linalg.norm(case.truth_lab - rgb_to_lab_np(image), axis=-1)
    for i in range(len(palette)):
        interior = difference[margin:-margin, i * block + margin : (i + 1) * block - margin]
        if i in changed:
            assert interior.min() > 5, f"palette colour {i} was edited but did not change"
        else:
            assert interior.max() < 0.5, f"palette colour {i} changed without an edit"
    assert np.all(case.mask[margin:-margin, [i * block + block // 2 for i in changed]] > 0.5)


def test_split_file_selects_photos(photos, tmp_path, capsys):
    split = tmp_path / "split.json"
    split.write_text(
        json.dumps({"splits": {"train": ["coffee.jpg"], "test": ["chelsea.png", "gone.png"]}})
    )
    assert [p.name for p in list_images(photos, split, "test")] == ["chelsea.png"]
    assert "gone.png" in capsys.readouterr().err
    assert [p.name for p in list_images(photos)] == ["astronaut.png", "chelsea.png", "coffee.jpg"]
    assert [p.name for p in list_images(photos, limit=1)] == ["astronaut.png"]
    with pytest.raises(TrainingError, match="validation"):
        list_images(photos, split, "validation")


def test_palettenet_runs_from_a_checkpoint(photos, tmp_path, capsys):
    torch = pytest.importorskip("torch")
    from backend.core.model import PaletteNet
    from backend.core.weights import save_weights

    torch.manual_seed(0)
    checkpoint = tmp_path / "random.pt"
    save_weights(PaletteNet(), checkpoint)
    code = main(["evaluate", "--images", str(photos), "--size", "64", "--limit", "1",
                 "--checkpoint", str(checkpoint), "--methods", "identity,palettenet",
                 "--quiet"])  # fmt: skip
    assert code == 0
    output = capsys.readouterr().out
    assert output.count("palettenet") == 3  # one row per task


def test_palettenet_without_checkpoint_is_refused(photos, capsys):
    assert main(["evaluate", "--images", str(photos), "--methods", "palettenet", "--quiet"]) == 2
    assert "training: the palettenet method needs --checkpoint FILE" in capsys.readouterr().err


def test_rotation_angle_recovers_a_rotation():
    palette = np.array([[30.0, 40, 10], [50, -20, 35], [70, 5, -45], [60, 2, 1]])
    for turns in (-0.4, -0.1, 0.05, 0.3):
        angle = rotation_angle(palette, rotate_ab(palette, turns, 1.0))
        assert np.isclose(angle, 2 * np.pi * turns)


def test_palette_adherence_and_designer_targets():
    palette = fit_chroma(np.array([[20.0, 20, -30], [45, -30, 30], [60, 40, 30], [85, 0, 10]]))
    image = np.repeat(np.repeat(lab_to_rgb_np(palette)[None], 16, 0), 16, 1)
    assert palette_adherence(image, palette) < 0.5
    assert palette_adherence(image, rotate_ab(palette, 0.25, 1.0)) > 10
    designer = load_designer_palettes()[0]
    own, _ = extract_palette(np.round(image * 255).astype(np.uint8), len(designer))
    case = designer_case(image, own, designer)
    np.testing.assert_allclose(case.target[:, 0], own[:, 0])  # the photo's lightness kept
    assert len(load_designer_palettes()) == len(BUILTIN_PALETTES)


def test_designer_palette_file(tmp_path):
    good = tmp_path / "palettes.json"
    good.write_text(json.dumps([["#000000", "#ff0000", "#ffffff"], ["#123", "#456"]]))
    palettes = load_designer_palettes(good)
    assert [len(p) for p in palettes] == [3, 2]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"palettes": []}))
    with pytest.raises(TrainingError, match="expected a JSON list"):
        load_designer_palettes(bad)
    bad.write_text(json.dumps([["#000000", "#ff0000"], ["#12345"]]))
    with pytest.raises(TrainingError, match="palette 2"):
        load_designer_palettes(bad)


def test_figures_for_the_model_card(photos, tmp_path, capsys):
    from backend.core.model import PaletteNet
    from backend.core.weights import save_weights

    weights = tmp_path / "palette-base.pt"
    save_weights(PaletteNet("source+target", "palette"), weights)
    assert main(["figures", "--checkpoint", str(weights), "--images", str(photos),
                 "--photos", "3", "--out", str(tmp_path / "figures")]) == 0  # fmt: skip
    for name in ("samples.png", "palette-sizes.png", "local-edit.png"):
        with Image.open(tmp_path / "figures" / name) as picture:
            assert picture.width > 3 * 100 and picture.height > 100
    report = json.loads(capsys.readouterr().out.splitlines()[0])
    assert report["permutation_mean_ciede2000"] < 0.5  # shuffled colour pairs, same result
