import itertools

import numpy as np
import pytest
import torch

from backend.model import ARCH_VERSION, Discriminator, PaletteNet
from backend.palette import rgb_to_lab_np
from backend.recolor import recolor_rgb
from backend.weights import WeightsError, load_weights, read_metadata, save_weights
from tests.conftest import small_photo


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return PaletteNet().eval()


@pytest.mark.parametrize("height,width", [(1, 1), (17, 23), (32, 32), (33, 100), (90, 61)])
def test_any_input_size_gives_ab_of_that_size(model, height, width):
    with torch.no_grad():
        ab = model(torch.rand(2, 3, height, width) * 2 - 1, torch.rand(2, 18))
    assert ab.shape == (2, 2, height, width)
    assert ab.abs().max() <= 1


def test_discriminator_gives_logit_grid_without_final_norm():
    logits = Discriminator()(torch.randn(3, 3, 64, 64), torch.randn(3, 18))
    assert logits.shape == (3, 1, 4, 4)
    assert not isinstance(Discriminator().net[-1], torch.nn.InstanceNorm2d)


def test_recolour_keeps_lightness(model):
    rgb = small_photo("coffee", 64) / 255.0
    out = recolor_rgb(model, rgb, rgb_to_lab_np(np.random.default_rng(0).random((6, 3))))
    lightness_in, lightness_out = rgb_to_lab_np(rgb)[..., 0], rgb_to_lab_np(out)[..., 0]
    # only out-of-gamut clipping can change L
    assert np.median(np.abs(lightness_in - lightness_out)) < 1.0


@pytest.mark.parametrize("n", [1, 2, 5, 6, 7, 12])
def test_palette_sizes_and_permutations_give_the_same_result(model, n):
    rgb = small_photo("astronaut", 48) / 255.0
    palette = rgb_to_lab_np(np.random.default_rng(n).random((n, 3)))
    reference = rgb_to_lab_np(recolor_rgb(model, rgb, palette))
    permutations = itertools.islice(itertools.permutations(range(n)), 1, None, 37)
    for permutation in itertools.islice(permutations, 3):
        out = rgb_to_lab_np(recolor_rgb(model, rgb, palette[list(permutation)]))
        assert np.linalg.norm(out - reference, axis=-1).mean() < 0.5


def test_weights_round_trip_with_metadata(tmp_path, model):
    path = tmp_path / "w.pt"
    save_weights(model, path, {"steps": 5, "data": "tests"}, half=True)
    loaded = load_weights(path)
    meta = read_metadata(path)
    assert meta["arch_version"] == ARCH_VERSION and meta["training"]["steps"] == 5
    x, p = torch.rand(1, 3, 32, 32), torch.rand(1, 18)
    with torch.no_grad():
        assert torch.allclose(loaded(x, p), model(x, p), atol=2e-2)  # half precision file


def test_bad_weight_files_are_refused_with_the_file_name(tmp_path, model):
    missing = tmp_path / "missing.pt"
    with pytest.raises(WeightsError, match="not found.*missing.pt"):
        load_weights(missing)
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x80\x02garbage" * 100)
    with pytest.raises(WeightsError, match="corrupt.pt"):
        load_weights(corrupt)
    other = tmp_path / "other.pt"
    torch.save({"state_dict": model.state_dict()}, other)
    with pytest.raises(WeightsError, match="not a PaletteNet weight file"):
        load_weights(other)
    future = tmp_path / "future.pt"
    save_weights(model, future)
    record = torch.load(future, weights_only=True)
    record["arch_version"] = 99
    torch.save(record, future)
    with pytest.raises(WeightsError, match="architecture version 99"):
        load_weights(future)
