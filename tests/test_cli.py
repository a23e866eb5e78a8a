import numpy as np
import pytest
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
