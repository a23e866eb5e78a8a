"""Run inside headless Krita by tests/bench_krita_wide_gamut.py:

    kritarunner -s krita_wide_gamut_bench_job -f main CONFIG.json

Times the installed plug-in's own side of Apply on a big wide-gamut layer (KritaEditor's
read_layer and add_layer_above generators run to their end, libkis calls included, no
daemon: the pixels read are written back as the reply), once as it works now (the layer's
bytes and ICC profile go to the daemon, which converts) and once forced down the old way
(Krita converts each band to linear-sRGB floats and back, the fallback when the profile's
bytes cannot be found). Writes result.json; ends with os._exit (kritarunner exits 0).
"""

import json
import os
import sys
import time
import traceback
import types
from pathlib import Path

from krita_headless_job import HeadlessDocument, HeadlessKrita


def run(generator):
    """Drive a plug-in generator to its end (the docker gives the event loop a turn between
    steps; here nothing else runs), returning its value."""
    try:
        while True:
            next(generator)
    except StopIteration as stop:
        return stop.value


def time_case(krita, app, width, height, depth, profile, way) -> dict:
    from recolor_with_palette.krita_api import KritaEditor

    document = app.createDocument(width, height, "bench", "RGBA", depth, profile, 72.0)
    document.setBatchmode(True)
    layer = document.rootNode().childNodes()[0]
    size = {"U8": 4, "U16": 8, "F16": 8, "F32": 16}[depth]
    row = bytes((index * 37 + 11) % 251 for index in range(width * size))  # a pattern
    if depth == "F32":  # floats: the pattern as values in 0..1
        import struct

        row = struct.pack(f"={width * 4}f", *((i % 97) / 97 for i in range(width * 4)))
    band = row * 64
    for top in range(0, height, 64):
        rows = min(64, height - top)
        layer.setPixelData(band[: rows * len(row)], 0, top, width, rows)
    document.waitForDone()
    wrapped = HeadlessKrita(app, HeadlessDocument(document, layer))
    module = types.SimpleNamespace(Krita=types.SimpleNamespace(instance=lambda: wrapped),
                                   Palette=krita.Palette, InfoObject=krita.InfoObject,
                                   ManagedColor=krita.ManagedColor)  # fmt: skip
    editor = KritaEditor(module)
    started = time.perf_counter()
    found = editor.icc_profile(profile) if way == "icc" else None
    profile_s = time.perf_counter() - started
    if way != "icc":
        editor._profiles[profile] = None  # as if the profile's bytes could not be found
    started = time.perf_counter()
    pixels = run(editor.read_layer())
    read_s = time.perf_counter() - started
    started = time.perf_counter()
    run(editor.add_layer_above(pixels, "bench result", bytes(pixels.raw)))
    write_s = time.perf_counter() - started
    document.setModified(False)
    document.close()
    return {"depth": depth, "way": way, "profile_bytes": len(found or b""),
            "sent_depth": pixels.depth, "sent_linear": pixels.linear,
            "profile_s": round(profile_s, 3), "read_s": round(read_s, 3),
            "write_s": round(write_s, 3), "numpy_importable": numpy_importable()}  # fmt: skip


def numpy_importable() -> bool:
    try:
        import numpy  # noqa: F401
    except ImportError:
        return False
    return True


def main(args):
    config = json.loads(Path(args[0]).read_text())
    records, error = [], None
    try:
        sys.path.insert(0, config["pykrita"])
        import krita

        app = krita.Krita.instance()
        for depth in config["depths"]:
            for way in config["ways"]:
                records.append(time_case(krita, app, config["width"], config["height"], depth,
                                         config["profile"], way))  # fmt: skip
    except Exception:
        error = traceback.format_exc()
    Path(config["result"]).write_text(json.dumps({"records": records, "error": error}))
    sys.stdout.flush()
    os._exit(0)
