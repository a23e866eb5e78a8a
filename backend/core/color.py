"""All colour maths of the backend, in one place: the sRGB transfer curve (IEC 61966-2-1),
sRGB <-> CIELAB (D65, 2 degree observer), Delta E, float <-> 8-bit rounding, and the network's
value scaling. Used by both methods, the pixel formats, training and evaluation.

The formulas and constants are those of scikit-image (`skimage.color.rgb2lab`), so results
agree with it. The torch functions are batched (channels last), differentiable and
device-agnostic; the `_np` ones are the same maths on numpy arrays (float64 for palettes,
float32 for pixels).
"""

import numpy as np
import torch

# sRGB primaries to XYZ, D65 white (same matrix as scikit-image).
XYZ_FROM_RGB = torch.tensor(
    [
        [0.412453, 0.357580, 0.180423],
        [0.212671, 0.715160, 0.072169],
        [0.019334, 0.119193, 0.950227],
    ],
    dtype=torch.float64,
)
RGB_FROM_XYZ = torch.linalg.inv(XYZ_FROM_RGB)
WHITE_D65 = torch.tensor([0.95047, 1.0, 1.08883], dtype=torch.float64)

_EPSILON = 0.008856  # (6/29)^3
_KAPPA_SLOPE = 7.787  # (29/6)^2 / 3


def _constant(table: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return table.to(device=like.device, dtype=like.dtype)


def srgb_to_linear(rgb: torch.Tensor) -> torch.Tensor:
    return torch.where(
        rgb > 0.04045, ((rgb.clamp_min(0.04045) + 0.055) / 1.055) ** 2.4, rgb / 12.92
    )


def linear_to_srgb(linear: torch.Tensor) -> torch.Tensor:
    return torch.where(
        linear > 0.0031308,
        1.055 * linear.clamp_min(0.0031308) ** (1 / 2.4) - 0.055,
        12.92 * linear,
    )


def srgb_to_linear_np(encoded: np.ndarray) -> np.ndarray:
    """sRGB-encoded values -> linear light, float32 in 0..1 (srgb_to_linear on numpy)."""
    encoded = np.clip(encoded, 0, 1)
    curve = np.power((encoded + 0.055) / 1.055, 2.4, dtype=np.float32)
    return np.where(encoded <= 0.04045, encoded / 12.92, curve).astype(np.float32)


def linear_to_srgb_np(linear: np.ndarray) -> np.ndarray:
    """Linear light -> sRGB-encoded values, float32 in 0..1 (linear_to_srgb on numpy)."""
    linear = np.clip(linear, 0, 1)
    curve = 1.055 * np.power(linear, 1 / 2.4, dtype=np.float32) - 0.055
    return np.where(linear <= 0.0031308, linear * 12.92, curve).astype(np.float32)


def to_uint8(rgb) -> np.ndarray:
    """Float RGB in 0..1 -> 8-bit values, rounded to nearest and clipped: the one rounding
    rule of the project (palettes, image files, training figures, benchmarks)."""
    return np.clip(np.round(np.asarray(rgb, dtype=np.float64) * 255), 0, 255).astype(np.uint8)


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB in 0..1, shape (..., 3) -> LAB (L in 0..100, a and b roughly -128..127)."""
    xyz = srgb_to_linear(rgb) @ _constant(XYZ_FROM_RGB, rgb).T
    xyz = xyz / _constant(WHITE_D65, rgb)
    # clamp_min keeps the cube root's gradient finite at zero (that branch is not taken there).
    f = torch.where(
        xyz > _EPSILON, xyz.clamp_min(_EPSILON) ** (1 / 3), _KAPPA_SLOPE * xyz + 16 / 116
    )
    fx, fy, fz = f.unbind(-1)
    return torch.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], dim=-1)


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """LAB, shape (..., 3) -> sRGB clamped to 0..1 (out-of-gamut colours are clipped)."""
    L, a, b = lab.unbind(-1)
    fy = (L + 16) / 116
    fx = fy + a / 500
    fz = (fy - b / 200).clamp_min(0)  # as scikit-image: negative Z is not a colour
    f = torch.stack([fx, fy, fz], dim=-1)
    xyz = torch.where(f > 0.2068966, f**3, (f - 16 / 116) / _KAPPA_SLOPE)
    xyz = xyz * _constant(WHITE_D65, lab)
    linear = xyz @ _constant(RGB_FROM_XYZ, lab).T
    return linear_to_srgb(linear.clamp(0, 1)).clamp(0, 1)


def delta_e76(lab1: torch.Tensor, lab2: torch.Tensor) -> torch.Tensor:
    """Euclidean distance in LAB (CIE76), the unit every tolerance in this project uses."""
    return torch.linalg.vector_norm(lab1 - lab2, dim=-1)


# ---------------------------------------------------------------------------------------
# The network's value range. Training and inference both go through these two functions,
# so the scaling cannot drift apart (a known defect of public reimplementations).
L_SCALE = 50.0  # L in 0..100  ->  -1..1
AB_SCALE = 110.0  # a, b of sRGB colours lie within about +-110 -> about -1..1 (tanh output)


def lab_to_net(lab: torch.Tensor) -> torch.Tensor:
    """LAB (..., 3) -> network range (..., 3)."""
    L, ab = lab[..., :1], lab[..., 1:]
    return torch.cat([L / L_SCALE - 1, ab / AB_SCALE], dim=-1)


def net_to_lab(net: torch.Tensor) -> torch.Tensor:
    L, ab = net[..., :1], net[..., 1:]
    return torch.cat([(L + 1) * L_SCALE, ab * AB_SCALE], dim=-1)


NORMALISATION = {"L": f"L/{L_SCALE}-1", "ab": f"ab/{AB_SCALE}", "white": "D65"}


def _as_tensor(array) -> torch.Tensor:
    """float64 tensor of an array; a read-only one (a cached lattice) is copied, as torch
    cannot share memory it may not write."""
    array = np.asarray(array)
    if not array.flags.writeable:
        array = array.copy()
    return torch.as_tensor(array, dtype=torch.float64)


def rgb_to_lab_np(rgb) -> np.ndarray:
    """rgb_to_lab on a numpy array (float64)."""
    return rgb_to_lab(_as_tensor(rgb)).numpy()


def lab_to_rgb_np(lab) -> np.ndarray:
    """lab_to_rgb on a numpy array (float64)."""
    return lab_to_rgb(_as_tensor(lab)).numpy()


def lab_to_linear_np(lab: np.ndarray) -> np.ndarray:
    """LAB (..., 3) -> linear-light RGB, NOT clipped: values outside 0..1 show colours that
    sRGB cannot display (what a gamut test needs). float64."""
    L, a, b = lab[..., 0], lab[..., 1], lab[..., 2]
    fy = (L + 16) / 116
    f = np.stack([fy + a / 500, fy, fy - b / 200], axis=-1)
    xyz = np.where(f > 0.2068966, f**3, (f - 16 / 116) / _KAPPA_SLOPE) * WHITE_D65.numpy()
    return xyz @ RGB_FROM_XYZ.numpy().T
