#!/usr/bin/env python3
"""GIMP 3 starts this file (plug-ins/recolor-with-palette/recolor-with-palette.py) as its own
process; the plug-in itself is the recolor_with_palette package installed next to it."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from recolor_with_palette.gimp_plugin import main  # noqa: E402

main()
