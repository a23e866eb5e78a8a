"""Recolor with Palette: the backend, in layers (tests/test_layers.py keeps them so):
backend.wire (the protocol's constants), backend.core (recolouring), backend.service (the
daemon and its protocol), backend.cli (the command line)."""

from pathlib import Path

__version__ = "0.1.0"
# The shipped default model (docs/MODEL.md), loaded by the daemon, the CLI and the plug-ins.
DEFAULT_WEIGHTS = Path(__file__).resolve().parent / "data" / "palettenet.pt"
