"""How training pairs and benchmark ground truth are made from one photo and its palette.

Three kinds of variant, all keeping the photo's own lightness:
- hue shift (the seed project's recipe): RGB -> HSV, rotate the hue, -> RGB -> LAB, then the
  ORIGINAL L is put back; the palette is shifted the same way and keeps its own L.
- local edit: one or two palette colours move (hue and chroma) and only the pixels that
  belong to them follow, through soft, feathered membership masks. Artists mostly change one
  or two colours of a palette; global shifts alone do not teach that.
- multi edit: the same with three to six colours, each moved its own way (any hue turn,
  chroma from near grey to 1.6x): what applying a designer palette asks for, where every
  colour changes and not by one common rotation.
"""

import numpy as np
from scipy.ndimage import gaussian_filter
from skimage.color import hsv2rgb, rgb2hsv

from backend.core.color import lab_to_rgb_np, rgb_to_lab_np

MEMBERSHIP_SIGMA = 6.0  # LAB units: how softly a pixel belongs to its nearest palette colours
FEATHER_PIXELS = 1.0  # spatial blur of the membership masks, so edits have no hard seams


def hue_shift_rgb(rgb: np.ndarray, turns: float) -> np.ndarray:
    """Rotate the HSV hue of RGB colours (..., 3) in 0..1 by `turns` (1 = 360 degrees)."""
    hsv = rgb2hsv(np.asarray(rgb, dtype=np.float64).reshape(-1, 1, 3))
    hsv[..., 0] = (hsv[..., 0] + turns) % 1.0
    return hsv2rgb(hsv).reshape(np.shape(rgb))


def hue_shift(lab: np.ndarray, palette_lab: np.ndarray, turns: float):
    """Hue-shifted LAB image and palette, each keeping its own original L."""

    def shift(colours):
        shifted = rgb_to_lab_np(hue_shift_rgb(lab_to_rgb_np(colours), turns))
        shifted[..., 0] = colours[..., 0]
        return shifted

    return shift(lab), shift(palette_lab)


def membership(lab: np.ndarray, palette_lab: np.ndarray) -> np.ndarray:
    """Soft assignment (H, W, k) of every pixel to the palette colours, summing to 1.

    A softmax of -distance^2 with a narrow width: pixels clearly nearest one colour belong to
    it alone, pixels between two colours are shared, then the masks are feathered spatially.
    """
    distance2 = ((lab[..., None, :] - palette_lab) ** 2).sum(-1)
    logits = -(distance2 - distance2.min(-1, keepdims=True)) / (2 * MEMBERSHIP_SIGMA**2)
    weights = np.exp(logits)
    weights /= weights.sum(-1, keepdims=True)
    if FEATHER_PIXELS > 0 and lab.ndim == 3:
        weights = gaussian_filter(weights, sigma=(FEATHER_PIXELS, FEATHER_PIXELS, 0))
    return weights


def rotate_ab(lab: np.ndarray, turns: float, chroma_scale: float) -> np.ndarray:
    angle = 2 * np.pi * turns
    cos, sin = np.cos(angle), np.sin(angle)
    a, b = lab[..., 1], lab[..., 2]
    out = lab.copy()
    out[..., 1] = chroma_scale * (cos * a - sin * b)
    out[..., 2] = chroma_scale * (sin * a + cos * b)
    return out


def keep_displayable(lab: np.ndarray, lightness: np.ndarray) -> np.ndarray:
    """Clip to the sRGB gamut and put the given L back (the seed's 'original L' rule)."""
    out = rgb_to_lab_np(lab_to_rgb_np(lab))
    out[..., 0] = lightness
    return out


def local_edit(lab, palette_lab, edits):
    """Move some palette colours and the pixels that belong to them.

    `edits` maps palette index -> (hue turns, chroma scale). Returns the edited LAB image,
    the edited palette (each keeping its L) and the edit mask (H, W) in 0..1.
    """
    weights = membership(lab, palette_lab)
    out = lab.copy()
    mask = np.zeros(lab.shape[:-1])
    for index, (turns, chroma_scale) in edits.items():
        w = weights[..., index]
        out += w[..., None] * (rotate_ab(lab, turns, chroma_scale) - lab)
        mask += w
    out = keep_displayable(out, lab[..., 0])
    return out, edit_palette(palette_lab, edits), np.clip(mask, 0, 1)


def edit_palette(palette_lab, edits) -> np.ndarray:
    """The palette (k, 3) LAB with the colours of `edits` (index -> (hue turns, chroma
    scale)) moved, each keeping its L, brought into the sRGB gamut."""
    new_palette = np.array(palette_lab, dtype=np.float64)
    for index, (turns, chroma_scale) in edits.items():
        new_palette[index] = rotate_ab(new_palette[index], turns, chroma_scale)
    return keep_displayable(new_palette, np.asarray(palette_lab)[:, 0])


def random_edits(palette_lab, rng: np.random.Generator) -> dict:
    """One or two palette colours, each with a hue turn of 30..180 degrees either way and a
    chroma change of 0.6..1.5x. Near-grey colours get a chroma boost so the edit is visible."""
    return _edits(palette_lab, rng, colours=(1, 2), degrees=(30, 180), scales=(0.6, 1.5))


def random_one_edit(palette_lab, rng: np.random.Generator) -> dict:
    """One palette colour, moved as random_edits moves its colours (an artist changing one
    swatch)."""
    return _edits(palette_lab, rng, colours=(1, 1), degrees=(30, 180), scales=(0.6, 1.5))


def random_multi_edits(palette_lab, rng: np.random.Generator) -> dict:
    """Three to six palette colours, each with its own hue turn (0..180 degrees either way)
    and chroma change (0.3..1.6x; near-grey colours 1.5..3x)."""
    return _edits(palette_lab, rng, colours=(3, 6), degrees=(0, 180), scales=(0.3, 1.6))


def _edits(palette_lab, rng, colours, degrees, scales) -> dict:
    most = min(colours[1], len(palette_lab))  # a flat layer's palette may be short
    count = int(rng.integers(min(colours[0], most), most + 1))
    chosen = rng.choice(len(palette_lab), size=count, replace=False)
    edits = {}
    for index in sorted(int(i) for i in chosen):
        turns = rng.uniform(*degrees) / 360 * rng.choice([-1, 1])
        chroma = float(np.hypot(*palette_lab[index, 1:]))
        scale = rng.uniform(*scales) if chroma > 15 else rng.uniform(1.5, 3.0)
        edits[index] = (float(turns), float(scale))
    return edits
