import itertools

import numpy as np
import pytest
import torch

from backend.core.color import rgb_to_lab_np
from backend.core.model import ARCH_VERSION, Discriminator, PaletteNet
from backend.core.recolor import network_outputs, recolor_rgb
from backend.core.weights import WeightsError, load_weights, read_metadata, save_weights
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


# --- the source+target options ----------------------------------------------------------------
def soft_palette_transfer(lab, source, target, sigma=8.0, grey=(5, 15)):
    """What the palette base does, written out in numpy: per palette colour a turn and
    scaling of ab (a shift for grey colours), blended by softmax weights."""
    distance2 = ((lab[..., None, :] - source) ** 2).sum(-1)
    weights = np.exp(-(distance2 - distance2.min(-1, keepdims=True)) / (2 * sigma**2))
    weights /= weights.sum(-1, keepdims=True)
    s, t, p = source[:, 1:], target[:, 1:], lab[..., None, 1:]
    turn = np.arctan2(t[:, 1], t[:, 0]) - np.arctan2(s[:, 1], s[:, 0])
    scale = np.clip(np.hypot(*t.T) / np.maximum(np.hypot(*s.T), 1e-6), 0, 3)
    c, si = np.cos(turn) * scale, np.sin(turn) * scale
    turned = np.stack([c * p[..., 0] - si * p[..., 1], si * p[..., 0] + c * p[..., 1]], -1)
    chromatic = np.clip((np.hypot(*s.T) - grey[0]) / (grey[1] - grey[0]), 0, 1)[:, None]
    moved = chromatic * turned + (1 - chromatic) * (p + t - s)
    out = lab.copy()
    out[..., 1:] = (weights[..., None] * moved).sum(-2)
    return out


def test_an_untrained_palette_base_model_gives_the_soft_palette_transfer():
    from backend.core.color import lab_to_rgb_np
    from backend.core.palette import extract_palette

    rgb = (small_photo("coffee", 64) / 255).astype(np.float32)
    source, _ = extract_palette(np.round(rgb * 255).astype(np.uint8), 6)
    target = source.copy()
    target[:, 1:] = np.roll(source[:, 1:], 1, axis=0)  # every colour takes another's hue
    model = PaletteNet("source+target", "palette").eval()
    # The network alone: recolor_rgb then sends the swatches to their targets (follow_pairs)
    (result,), _ = network_outputs(model, [rgb], [target], sources=[source])
    expected = np.clip(
        lab_to_rgb_np(soft_palette_transfer(rgb_to_lab_np(rgb), source, target)), 0, 1
    )
    assert np.abs(result - expected).max() < 1e-4
    identity_model = PaletteNet("source+target", "source").eval()
    (identity,), _ = network_outputs(identity_model, [rgb], [target], sources=[source])
    assert np.abs(identity - rgb).max() < 1e-4  # the source base starts as "change nothing"


def test_model_options_are_checked_and_kept_in_the_weight_file(tmp_path):
    with pytest.raises(ValueError, match="needs condition 'source\\+target'"):
        PaletteNet("target", "palette")
    with pytest.raises(ValueError, match="base 'tint'"):
        PaletteNet("source+target", "tint")
    save_weights(PaletteNet("source+target", "palette"), tmp_path / "w.pt")
    loaded = load_weights(tmp_path / "w.pt")
    assert (loaded.condition, loaded.base) == ("source+target", "palette")
    with pytest.raises(ValueError, match="source palette too"):
        loaded(torch.zeros(1, 3, 32, 32), torch.zeros(1, 18))


def test_a_palette_without_sources_pairs_with_the_photo_by_lightness():
    torch.manual_seed(0)
    model = PaletteNet("source+target", "palette").eval()
    rgb = (small_photo("coffee", 64) / 255).astype(np.float32)
    palette = rgb_to_lab_np(np.array([[0.1, 0.1, 0.4], [0.9, 0.8, 0.2], [0.5, 0.2, 0.2]]))
    first = recolor_rgb(model, rgb, palette)
    shuffled = recolor_rgb(model, rgb, palette[[2, 0, 1]])
    assert np.abs(first - shuffled).max() < 1e-5
