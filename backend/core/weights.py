"""The weight file: a PaletteNet state dict plus a small metadata record.

The record says which architecture and which value scaling the weights were trained with, so
a file from an incompatible version is refused with a message instead of producing garbage.
"""

from pathlib import Path

import torch

from backend.core.color import NORMALISATION
from backend.core.model import ARCH_VERSION, PaletteNet

FILE_FORMAT = "palettenet-weights/1"


class WeightsError(RuntimeError):
    """A weight file is missing, corrupt or incompatible; the message names the file."""


def save_weights(model: PaletteNet, path, training: dict | None = None, half=False):
    """Write the model's weights; `training` summarises data, command, steps and metrics."""
    state = {
        k: (v.half() if half and v.is_floating_point() else v)
        for k, v in model.state_dict().items()
    }
    record = {
        "format": FILE_FORMAT,
        "arch_version": ARCH_VERSION,
        "normalisation": NORMALISATION,
        "condition": model.condition,
        "base": model.base,
        "training": training or {},
        "state_dict": state,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(path.suffix + ".tmp")
    torch.save(record, temporary)
    temporary.replace(path)  # never leave a half-written file under the real name


def read_metadata(path) -> dict:
    record = _read(path)
    return {k: v for k, v in record.items() if k != "state_dict"}


def load_weights(path, device="cpu") -> PaletteNet:
    """A PaletteNet in eval mode with the file's weights, or WeightsError saying why not."""
    record = _read(path)
    try:
        model = PaletteNet(record.get("condition", "target"), record.get("base", "none"))
    except ValueError as error:
        raise WeightsError(f"{path}: {error}") from None
    state = {k: v.float() if v.is_floating_point() else v for k, v in record["state_dict"].items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise WeightsError(f"{path}: weights do not fit this model ({error})") from None
    return model.to(device).eval()


def _read(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weight file not found: {path}")
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a damaged file
        raise WeightsError(f"{path}: not a readable weight file ({error})") from None
    if not isinstance(record, dict) or record.get("format") != FILE_FORMAT:
        raise WeightsError(f"{path}: not a PaletteNet weight file of format {FILE_FORMAT}")
    if record.get("arch_version") != ARCH_VERSION:
        raise WeightsError(
            f"{path}: made for architecture version {record.get('arch_version')}, "
            f"this program runs version {ARCH_VERSION}"
        )
    if record.get("normalisation") != NORMALISATION:
        raise WeightsError(
            f"{path}: trained with value scaling {record.get('normalisation')}, "
            f"this program uses {NORMALISATION}"
        )
    return record
