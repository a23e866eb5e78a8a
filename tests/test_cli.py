import os
import socket
import subprocess
import sys
import time

import imagecodecs
import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from backend.cli.main import main
from backend.core.model import PaletteNet
from backend.core.palette import extract_palette
from backend.core.weights import save_weights
from tests.conftest import small_photo


@pytest.fixture
def rgba_photo(tmp_path):
    rgb = small_photo("coffee", 64)
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    rgba[:5, :, 3] = 0  # a transparent band
    rgba[5:10, :, 3] = 128
    path = tmp_path / "in.png"
    Image.fromarray(rgba).save(path)
    return path


def test_palette_command_prints_hex_and_shares(rgba_photo, capsys):
    main(["palette", str(rgba_photo), "-k", "3"])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and all(line.startswith("#") for line in lines)
    assert abs(sum(float(line.split()[1].rstrip("%")) for line in lines) - 100) < 0.5


def test_recolor_with_weights_keeps_size_and_alpha(rgba_photo, tmp_path):
    torch.manual_seed(0)
    weights = tmp_path / "w.pt"
    save_weights(PaletteNet(), weights)
    out = tmp_path / "out.png"
    main(
        [
            "recolor",
            str(rgba_photo),
            "-p",
            "#102030,#ffaa00,#3c9",
            "-o",
            str(out),
            "--weights",
            str(weights),
        ]
    )
    before, after = np.asarray(Image.open(rgba_photo)), np.asarray(Image.open(out))
    assert after.shape == before.shape
    assert np.array_equal(after[..., 3], before[..., 3])


def test_recolor_chang2015_moves_the_palette_toward_the_target(rgba_photo, tmp_path):
    out = tmp_path / "out.png"
    main(
        [
            "recolor",
            str(rgba_photo),
            "-p",
            "#0b1d51,#725ac1,#8d86c9,#cac4ce,#f7ece1,#e0b1cb",
            "-o",
            str(out),
            "--method",
            "chang2015",
        ]
    )
    rgb = np.asarray(Image.open(out).convert("RGB"))
    before, _ = extract_palette(np.asarray(Image.open(rgba_photo).convert("RGB")))
    after, _ = extract_palette(rgb)
    # the coffee photo is brown-orange; the target is blue-violet: b (yellow-blue) must drop
    assert after[:, 2].mean() < before[:, 2].mean() - 5


@pytest.mark.parametrize("palette,message", [("#12,#fff", "entry 1"), ("", "1 to 12")])
def test_bad_palettes_and_missing_weights_give_clear_errors(rgba_photo, tmp_path, palette, message):
    with pytest.raises(SystemExit, match=message):
        main(["recolor", str(rgba_photo), "-p", palette, "-o", str(tmp_path / "o.png")])
    with pytest.raises(SystemExit, match="not found.*nothing.pt"):
        main(
            [
                "recolor",
                str(rgba_photo),
                "-p",
                "#fff",
                "-o",
                str(tmp_path / "o.png"),
                "--weights",
                str(tmp_path / "nothing.pt"),
            ]
        )


# --- one line and an exit status for every bad input, path, port and address (#14) -------
def palettenet(*args, timeout=60):
    """The command as a user runs it: (exit status, stdout, stderr)."""
    command = [sys.executable, "-m", "backend.cli.main", *map(str, args)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    return done.returncode, done.stdout, done.stderr


def assert_one_line_error(status, stderr, *words):
    assert status == 1, stderr
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1, stderr
    for word in words:
        assert word in stderr, stderr


def test_serve_on_a_used_port_or_without_a_port_says_so_in_one_line():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        began = time.monotonic()
        status, _, stderr = palettenet("serve", "--bind", f"tcp://127.0.0.1:{port}")
        assert_one_line_error(status, stderr, "Address already in use", str(port))
        assert time.monotonic() - began < 20  # before the model loads
    status, _, stderr = palettenet("serve", "--bind", "tcp://127.0.0.1")
    assert_one_line_error(status, stderr, "tcp://HOST:PORT")
    status, _, stderr = palettenet("info", "--server", "tcp://127.0.0.1")
    assert_one_line_error(status, stderr, "tcp://HOST:PORT")


def test_bad_output_paths_fail_in_one_line_before_any_work(rgba_photo, tmp_path):
    cases = [
        (tmp_path / "out", "no file extension"),
        (tmp_path / "out.xyz", ".xyz files are not written"),
        (tmp_path / "missing" / "folder" / "out.png", "does not exist"),
        (tmp_path, "it is a folder"),
        (tmp_path / "out.jpg", "JPEG has no transparency"),  # the photo has a see-through band
    ]
    for output, reason in cases:
        began = time.monotonic()
        status, _, stderr = palettenet("recolor", rgba_photo, "-p", "#123456", "-o", output)
        assert_one_line_error(status, stderr, reason)
        assert time.monotonic() - began < 10  # nothing recoloured (the model is never loaded)
    assert not (tmp_path / "missing").exists()  # no folder is made
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png"]
    status, _, stderr = palettenet("palette", tmp_path / "nothing.png")
    assert_one_line_error(status, stderr, "No such file or directory")
    (tmp_path / "text.png").write_text("not an image")
    status, _, stderr = palettenet("palette", tmp_path / "text.png")
    assert_one_line_error(status, stderr, "not an image file")


def test_hex_without_hash_is_the_same_colour(rgba_photo, tmp_path):
    """Documented: '#' is optional (handy in a shell, where an unquoted # starts a comment)."""
    for name, palette in (("with.png", "#e63946,#1d3557"), ("without.png", "e63946,1D3557")):
        main(["recolor", str(rgba_photo), "-p", palette, "--method", "chang2015",
              "-o", str(tmp_path / name)])  # fmt: skip
    with_hash, without = (np.asarray(Image.open(tmp_path / n)) for n in ("with.png", "without.png"))
    assert np.array_equal(with_hash, without)


def test_in_process_and_through_a_daemon_read_files_alike(daemon, tmp_path, capsys):
    """The file is read (oriented, converted to sRGB) on the client's side: a CMYK TIFF's
    palette and a profiled, rotated PNG's recolouring are the same both ways."""
    tifffile.imwrite(tmp_path / "cmyk.tif", np.tile([255, 0, 0, 40], (20, 30, 1)).astype(
        np.uint8), photometric="separated")  # fmt: skip
    main(["palette", str(tmp_path / "cmyk.tif"), "-k", "2"])
    here = capsys.readouterr().out
    main(["palette", str(tmp_path / "cmyk.tif"), "-k", "2", "--server", daemon.address])
    assert capsys.readouterr().out == here and here.startswith("#00d7d7")
    rgb = small_photo("coffee", 48)
    tags = Image.Exif()
    tags[0x0112] = 8
    Image.fromarray(rgb).save(tmp_path / "in.png", exif=tags.tobytes(),
                              icc_profile=imagecodecs.cms_profile("adobergb"))  # fmt: skip
    for name, server in (("here.png", []), ("there.png", ["--server", daemon.address])):
        main(["recolor", str(tmp_path / "in.png"), "-p", "#0b1d51,#f7ece1", "--method",
              "chang2015", "-o", str(tmp_path / name), *server])  # fmt: skip
    here, there = (Image.open(tmp_path / name) for name in ("here.png", "there.png"))
    assert here.size == (rgb.shape[0], rgb.shape[1])  # turned upright
    assert np.array_equal(np.asarray(here), np.asarray(there))
    assert here.info["icc_profile"] == there.info["icc_profile"]


@pytest.mark.parametrize("value", ["nan", "inf", "1e17", "0", "-1"])
def test_a_timeout_that_is_no_usable_number_is_refused_in_one_line(value):
    run = subprocess.run(
        [sys.executable, "-m", "backend.cli.main", "info", "--server", "tcp://127.0.0.1:9",
         "--timeout", value], capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert run.stderr.strip().count("\n") == 0 and "--timeout" in run.stderr


def test_odd_paths_fail_in_one_line_before_any_work(tmp_path):
    """A FIFO as input (reading it would never end), an output name longer than the system
    allows, a port out of range: one line, exit 1, no traceback."""
    fifo = tmp_path / "in.png"
    os.mkfifo(fifo)
    Image.new("RGB", (4, 4), "red").save(tmp_path / "red.png")
    long_name = tmp_path / ("a" * 300 + ".png")
    cases = [
        ["recolor", str(fifo), "-p", "#0b1d51", "-o", str(tmp_path / "o.png")],
        ["recolor", str(tmp_path / "red.png"), "-p", "#0b1d51", "-o", str(long_name)],
        ["serve", "--bind", "tcp://127.0.0.1:70000"],
        ["info", "--server", "tcp://127.0.0.1:99999", "--timeout", "30"],
    ]
    for args in cases:
        run = subprocess.run([sys.executable, "-m", "backend.cli.main", *args],
                             capture_output=True, text=True, timeout=60)  # fmt: skip
        assert run.returncode == 1 and "Traceback" not in run.stderr, (args, run.stderr)
        assert run.stderr.strip().count("\n") == 0, (args, run.stderr)
