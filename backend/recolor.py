"""Recolouring an image with PaletteNet, in process.

This is the one path from user input (an RGB image, a palette of 1..12 colours) to the
network and back; the CLI, the benchmark and the daemon all call it.
"""

import numpy as np
import torch

from backend.color import lab_to_net, lab_to_rgb, net_to_lab, rgb_to_lab
from backend.model import PaletteNet
from backend.palette import to_model_palette


def palette_to_net(palette_lab, weights=None) -> torch.Tensor:
    """A user palette (n, 3) LAB -> the (18,) network input, canonical order and size."""
    six = torch.as_tensor(to_model_palette(palette_lab, weights), dtype=torch.float32)
    return lab_to_net(six).reshape(-1)


@torch.no_grad()
def predict_lab(model: PaletteNet, lab: torch.Tensor, palette_net: torch.Tensor) -> torch.Tensor:
    """LAB images (B, H, W, 3) and network palettes (B, 18) -> recoloured LAB (source L kept)."""
    source = lab_to_net(lab).permute(0, 3, 1, 2)
    ab = model(source, palette_net)
    out = torch.cat([source[:, :1], ab], 1).permute(0, 2, 3, 1)
    return net_to_lab(out)


def recolor_rgb(model: PaletteNet, rgb: np.ndarray, palette_lab) -> np.ndarray:
    """float RGB (H, W, 3) in 0..1 -> recoloured float RGB, run at the image's own size."""
    device = next(model.parameters()).device
    lab = rgb_to_lab(torch.as_tensor(rgb, dtype=torch.float32, device=device))[None]
    palette = palette_to_net(palette_lab).to(device)[None]
    return lab_to_rgb(predict_lab(model, lab, palette))[0].cpu().numpy()
