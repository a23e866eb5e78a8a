import warnings

import numpy as np
import pytest
import torch
from skimage import color

from backend.core.color import lab_to_net, lab_to_rgb, net_to_lab, rgb_to_lab

EDGE_RGB = np.array(
    [
        [0, 0, 0],
        [1, 1, 1],
        [1, 0, 0],
        [0, 1, 0],
        [0, 0, 1],
        [1, 1, 0],
        [0, 1, 1],
        [1, 0, 1],
        [0.5, 0.5, 0.5],
        [1e-4, 0, 0],
    ]
)


def random_rgb(n=20000):
    return np.concatenate([np.random.default_rng(0).random((n, 3)), EDGE_RGB])


def test_rgb_to_lab_matches_scikit_image():
    rgb = random_rgb()
    ours = rgb_to_lab(torch.tensor(rgb, dtype=torch.float32)).numpy()
    reference = color.rgb2lab(rgb)
    assert np.linalg.norm(ours - reference, axis=-1).max() < 0.05


def test_lab_to_rgb_matches_scikit_image_including_out_of_gamut():
    rng = np.random.default_rng(1)
    lab = np.concatenate(
        [
            color.rgb2lab(random_rgb()),
            rng.uniform([0, -128, -128], [100, 127, 127], (20000, 3)),
            [[100, 0, 0], [0, 0, 0], [50, 127, 127], [50, -128, -128]],
        ]
    )
    ours = lab_to_rgb(torch.tensor(lab, dtype=torch.float32)).numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scikit-image warns about the negative-Z colours it clips
        reference = color.lab2rgb(lab)
    assert ours.min() >= 0 and ours.max() <= 1
    difference = np.linalg.norm(
        color.rgb2lab(ours.astype(np.float64)) - color.rgb2lab(reference), axis=-1
    )
    assert difference.max() < 0.05


def test_batched_shapes_and_round_trip():
    rgb = torch.rand(2, 5, 7, 3)
    back = lab_to_rgb(rgb_to_lab(rgb))
    assert back.shape == rgb.shape
    assert torch.allclose(back, rgb, atol=1e-4)


def test_conversions_are_differentiable_everywhere():
    rgb = torch.tensor(
        np.concatenate([EDGE_RGB, random_rgb(100)]), dtype=torch.float32, requires_grad=True
    )
    lab_to_rgb(rgb_to_lab(rgb) * 0.9).sum().backward()
    assert torch.isfinite(rgb.grad).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_agrees_with_cpu():
    rgb = torch.rand(1000, 3)
    assert torch.allclose(rgb_to_lab(rgb.cuda()).cpu(), rgb_to_lab(rgb), atol=1e-3)


def test_network_scaling_round_trips_and_spans_minus_one_to_one():
    lab = rgb_to_lab(torch.tensor(random_rgb(), dtype=torch.float32))
    net = lab_to_net(lab)
    assert net.abs().max() <= 1.0
    assert torch.allclose(net_to_lab(net), lab, atol=1e-4)
