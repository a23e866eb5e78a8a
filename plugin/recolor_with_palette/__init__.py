"""Recolor with Palette: the plug-in package installed into Krita and GIMP 3.

Self-contained: install.py copies this folder and nothing else. Shared by both editors:
client.py (palettenet/1 over transport.py, which uses pyzmq or the built-in ZeroMQ client
zmtp.py), wire.py (the protocol's constants), autostart.py, pixels.py, palettes.py,
palettefile.py, settings.py, errors.py, controller.py, latest_only.py (a live preview's
one request in flight). Krita's part (krita_api.py, krita_plugin.py, widgets.py, qt.py,
qt_runner.py) is loaded only inside Krita; GIMP's (gimp_api.py, gimp_plugin.py,
gimp_preview.py) only by the GIMP entry script. Needs the standard library and the editor's
Qt (Krita) or GObject introspection (GIMP); pyzmq only where the editor's Python loads it.
"""

import importlib.util
import os
import sys

__version__ = "0.1.0"

# install.py may vendor a pyzmq built for this editor's Python here. Appended, so a pyzmq the
# editor already has wins; one that fails to load makes transport.py use its built-in client.
_VENDOR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "vendor")
if os.path.isdir(_VENDOR) and _VENDOR not in sys.path:
    sys.path.append(_VENDOR)


def _inside_krita() -> bool:
    if "krita" in sys.modules:
        return True
    try:
        return importlib.util.find_spec("krita") is not None
    except (ImportError, ValueError):
        return False


# Krita imports this package as a Python plug-in (pykrita/recolor_with_palette.desktop):
# that is when the docker and the action get registered.
if _inside_krita():
    from .krita_plugin import register

    register()
