"""Benchmark B4 (python -m training evaluate --artwork) and the artwork split, on small
generated layers (no shared data needed)."""

import contextlib
import csv
import io
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.__main__ import main
from training.artwork_bench import check_bars, summary
from training.artwork_data import KINDS, make_split, source_group

SOURCES_HEADER = ["file", "package", "package_version", "original_path", "licence", "kind",
                  "size", "notes"]  # fmt: skip


def flat_layer():
    """Three flat fills with a transparent border and a half-transparent edge."""
    rgba = np.zeros((48, 48, 4), np.uint8)
    rgba[4:44, 4:24] = (200, 30, 40, 255)
    rgba[4:44, 24:44] = (30, 60, 200, 255)
    rgba[20:28, 8:40] = (250, 250, 250, 255)
    rgba[4:44, 44] = (30, 60, 200, 128)
    return rgba


def pixel_art_layer():
    """4x4 blocks of five colours, opaque."""
    rng = np.random.default_rng(0)
    colours = np.array(
        [(20, 20, 30), (90, 160, 60), (220, 200, 90), (140, 60, 40), (240, 240, 235)]
    )
    blocks = colours[rng.integers(0, 5, size=(10, 10))].astype(np.uint8)
    rgb = blocks.repeat(4, axis=0).repeat(4, axis=1)
    return np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])


def line_art_layer():
    """Black strokes on a transparent layer."""
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[8:12, 4:36] = rgba[4:36, 18:21] = (0, 0, 0, 255)
    return rgba


LAYERS = {
    "pkg-a__flat.png": ("pkg-a", "flat", "", flat_layer),
    "pkg-b__pixel.png": ("pkg-b", "pixelart", "native size; pixel art", pixel_art_layer),
    "pkg-c__lines.png": ("pkg-c", "lineart", "", line_art_layer),
}


@pytest.fixture(scope="module")
def artwork(tmp_path_factory):
    folder = tmp_path_factory.mktemp("artwork")
    rows = [SOURCES_HEADER]
    for name, (package, kind, notes, make) in LAYERS.items():
        Image.fromarray(make()).save(folder / name)
        rows.append([name, package, "1", f"/usr/share/{name}", "GPL-2+", kind, "", notes])
    (folder / "SOURCES.tsv").write_text("\n".join("\t".join(row) for row in rows) + "\n")
    return folder


def run_b4(folder, out, *extra):
    """The command line; (stdout, CSV rows)."""
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        code = main(["evaluate", "--artwork", str(folder), "--no-synthetic", "--quiet",
                     "--b4-csv", str(out), *extra])  # fmt: skip
    assert code == 0
    with open(out) as handle:
        return output.getvalue(), list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def chang_run(artwork, tmp_path_factory):
    return run_b4(artwork, tmp_path_factory.mktemp("b4") / "b4.csv", "--methods",
                  "identity,chang2015")  # fmt: skip


def test_every_layer_case_and_method_is_measured_and_printed_with_the_bars(chang_run):
    text, rows = chang_run
    assert Counter((row["method"], row["case"]) for row in rows) == {
        (method, case): 3
        for method in ("identity", "chang2015")
        for case in ("designer", "one-swatch", "multi-swatch", "hue-shift")
    }
    assert "B4 artwork" in text and "B4 bars (issue 17)" in text
    for kind in ("flat", "pixelart", "lineart", "all artwork"):
        assert kind in text
    assert "fills broken <= 1 %" in text and "ink excess <= 3" in text
    assert any(line.lstrip().startswith(("pass", "FAIL")) for line in text.splitlines())


def test_the_lab_rotation_reference_turns_hue_only_and_is_printed(artwork, tmp_path):
    """The reference asked for by name: every colour turned 30 degrees in a* b*, lightness
    and chroma kept (to 8-bit rounding), alpha kept; its row is printed with the others,
    and a method nobody knows is one clear error."""
    from backend.core.color import rgb_to_lab_np
    from training.artwork_bench import lab_rotation

    rgba = flat_layer()
    rgba[4:44, 4:24, :3] = (170, 120, 100)  # colours whose turn stays inside sRGB
    rgba[4:44, 24:45, :3] = (100, 130, 160)
    turned = lab_rotation(rgba, 30.0)
    before, after = rgb_to_lab_np(rgba[..., :3] / 255), rgb_to_lab_np(turned[..., :3] / 255)
    assert np.array_equal(turned[..., 3], rgba[..., 3])
    assert np.abs(after[..., 0] - before[..., 0]).max() < 1.0
    hue = np.degrees(
        np.arctan2(after[..., 2], after[..., 1]) - np.arctan2(before[..., 2], before[..., 1])
    )
    colourful = np.hypot(before[..., 1], before[..., 2]) > 20
    assert np.allclose((hue[colourful] + 180) % 360 - 180, 30, atol=2)
    text, rows = run_b4(artwork, tmp_path / "b4.csv", "--methods", "lab-rotation")
    assert {row["method"] for row in rows} == {"lab-rotation"}
    assert "  lab-rotation" in text and "B4 bars (issue 17), all files" in text
    assert main(["evaluate", "--artwork", str(artwork), "--methods", "hue-turn"]) == 2


@pytest.mark.parametrize(
    "methods, with_artwork",
    [("lab-rotation", False), ("rotation", True), (",,", True)],
)
def test_methods_that_run_nothing_are_one_clear_error(artwork, tmp_path, capsys, methods,
                                                      with_artwork):  # fmt: skip
    """qa17: lab-rotation without --artwork, B1-B3's rotation on B4 alone, and an empty
    list ran nothing and exited 0 (or named lab-rotation unknown)."""
    args = ["evaluate", "--methods", methods, "--images", str(artwork), "--quiet"]
    if with_artwork:
        args = ["evaluate", "--methods", methods, "--artwork", str(artwork), "--quiet"]
    assert main(args) == 2
    error = capsys.readouterr().err
    assert error.startswith("training: ") and "Traceback" not in error


def test_a_split_file_that_is_not_json_is_one_clear_error(artwork, tmp_path, capsys):
    broken = tmp_path / "split.json"
    broken.write_text("splits: test")
    code = main(["evaluate", "--artwork", str(artwork), "--artwork-split", str(broken),
                 "--methods", "identity", "--quiet"])  # fmt: skip
    assert code == 2 and "not a readable split file" in capsys.readouterr().err


def test_identity_keeps_fills_colours_and_the_untouched(chang_run):
    _, rows = chang_run
    for row in rows:
        if row["method"] == "identity":
            assert float(row["colour_growth"]) == 1.0
            assert row["fills_broken"] == "0"
            assert int(row["fills"]) == {"pkg-a__flat.png": 3, "pkg-b__pixel.png": 5,
                                         "pkg-c__lines.png": 1}[row["file"]]  # fmt: skip
            if row["untouched"]:
                assert float(row["untouched"]) == 0


def test_transparency_is_kept_and_pixel_art_is_marked(chang_run):
    _, rows = chang_run
    assert all(float(row["alpha_changed"]) == 0 for row in rows)
    assert {row["file"] for row in rows if row["pixel_art"] == "True"} == {"pkg-b__pixel.png"}


def test_ink_is_found_on_line_art(chang_run):
    _, rows = chang_run
    lines = [row for row in rows if row["file"] == "pkg-c__lines.png"]
    assert all(row["ink_excess"] != "" for row in lines)


def test_the_cases_are_the_same_on_every_run(artwork, chang_run, tmp_path):
    _, again = run_b4(artwork, tmp_path / "again.csv", "--methods", "identity,chang2015")
    _, first = chang_run
    for row in (*first, *again):
        row.pop("ms", None)
    assert again == first


def test_worker_processes_give_the_same_numbers(artwork, chang_run, tmp_path):
    _, parallel = run_b4(artwork, tmp_path / "parallel.csv", "--methods", "identity,chang2015",
                         "--workers", "2")  # fmt: skip
    _, first = chang_run
    for row in (*first, *parallel):
        row.pop("ms", None)
    assert parallel == first


def test_the_daemon_gives_the_same_numbers_as_in_process(artwork, tmp_path):
    """--server: the same requests through a running daemon (random seeded weights)."""
    from tests.servers import Server, random_weights

    weights = random_weights(tmp_path)
    extra = ["--methods", "palettenet", "--checkpoint", str(weights)]
    _, local = run_b4(artwork, tmp_path / "local.csv", *extra)
    server = Server("serve", "--bind", "tcp://127.0.0.1:*", "--weights", weights, "--device", "cpu")
    try:
        text, remote = run_b4(artwork, tmp_path / "remote.csv", *extra, "--server", server.address)
    finally:
        server.stop()
    assert f"through {server.address}" in text
    for row in (*local, *remote):
        del row["ms"]
    assert remote == local


def test_a_bad_server_address_is_one_clear_line(artwork, tmp_path, capsys):
    code = main(["evaluate", "--artwork", str(artwork), "--methods", "chang2015", "--quiet",
                 "--server", "tcp://nowhere"])  # fmt: skip
    assert code == 2
    assert "--server" in capsys.readouterr().err


# --- bars ---------------------------------------------------------------------------------
def case(method, kind="flat", **numbers):
    return {"file": f"{kind}.png", "kind": kind, "pixel_art": False, "case": "designer",
            "method": method, "ms": 1.0, **numbers}  # fmt: skip


def test_fills_broken_is_pooled_over_all_fills_and_checked_against_one_percent():
    rows = [
        case("chang2015", fills_broken=0, fills=150),
        case("chang2015", fills_broken=2, fills=50),
    ]
    assert summary(rows)["fills_broken_pct"] == pytest.approx(1.0)
    rows.append(case("palettenet", fills_broken=3, fills=100))
    verdicts = {(v["bar"], v["method"]): v for v in check_bars(rows)}
    assert verdicts[("fills broken <= 1 %", "chang2015")]["passed"] is True
    failed = verdicts[("fills broken <= 1 %", "palettenet")]
    assert failed["passed"] is False and failed["value"] == pytest.approx(3.0)
    assert failed["worst"] == [("flat.png", "designer", pytest.approx(3.0))]


def test_palettenet_adherence_is_compared_with_chang2015s_and_swatch_miss_with_the_worst():
    rows = [case("chang2015", palette_adherence=6.0, swatch_miss=0.2),
            case("chang2015", palette_adherence=8.0, swatch_miss=1.5),
            case("palettenet", palette_adherence=7.5)]  # fmt: skip
    verdicts = {(v["bar"], v["method"]): v for v in check_bars(rows)}
    adherence = verdicts[("palette adherence: palettenet <= chang2015", "palettenet")]
    assert adherence["limit"] == pytest.approx(7.0) and adherence["passed"] is False
    miss = verdicts[("swatch miss <= 1 dE, every case (chang2015)", "chang2015")]
    assert miss["value"] == pytest.approx(1.5) and miss["passed"] is False
    slope = verdicts[("shadow slope <= 3 (chang2015, photos)", "chang2015")]
    assert slope["passed"] is None  # no photos: nothing to measure


# --- split --------------------------------------------------------------------------------
def test_the_committed_artwork_split_holds_out_every_kind_by_whole_package():
    record = json.loads((Path(__file__).parents[1] / "training/splits/artwork.json").read_text())
    kinds, groups = record["kinds"], record["groups"]
    assert {kinds[name] for name in record["splits"]["test"]} == set(KINDS)
    owners = {}
    for split, names in record["splits"].items():
        for name in names:
            owners.setdefault(groups[name], set()).add(split)
    assert all(len(splits) == 1 for splits in owners.values())


def test_the_landscape_package_is_split_by_photographer_or_prefix():
    rows = [
        {"file": f"endless-sky-data__{stem}.jpg", "package": "endless-sky-data", "kind": "photo"}
        for stem in ("beach10-sfiera", "canyon02", "canyon4", "bwerner0")
    ]
    rows.append({"file": "gimp-help-en__a.jpg", "package": "gimp-help-en", "kind": "photo"})
    assert [source_group(row) for row in rows] == [
        "endless-sky-data:sfiera", "endless-sky-data:canyon", "endless-sky-data:canyon",
        "endless-sky-data:bwerner", "gimp-help-en"]  # fmt: skip
    record = make_split(rows)
    splits = {name: split for split, names in record["splits"].items() for name in names}
    assert len(splits) == 5
    assert splits["endless-sky-data__canyon02.jpg"] == splits["endless-sky-data__canyon4.jpg"]


def test_the_split_command_writes_a_split_file_evaluate_reads(artwork, tmp_path):
    out = tmp_path / "split.json"
    assert main(["split", "--sources", str(artwork), "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert sorted(sum(record["splits"].values(), [])) == sorted(LAYERS)
