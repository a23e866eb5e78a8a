"""Run inside headless Krita by tests/test_plugin_krita_real.py:

    kritarunner -s krita_headless_job -f main CONFIG.json

The installed plug-in's own code (KritaEditor, Controller, QtRunner: the QThread path) reads
real layers, talks to a real daemon and adds the result layers; this script only opens the
documents, presses the controller's buttons, and writes what it saw to files the test checks
against the daemon's direct answers. kritarunner always exits 0, so the outcome is in
result.json (and the process ends with os._exit so that nothing after main() can hang).
"""

import json
import os
import sys
import time
import traceback
import types
from pathlib import Path

# (case, depth, profile): the picture as opened (sRGB), and converted to Rec. 2020 (linear,
# 16-bit) and to Large RGB (ProPhoto-like, gamma 2.2, 8-bit), profiles shipped with Krita.
WIDE_GAMUT_CASES = (("wide-srgb", "U8", ""), ("wide-rec2020", "U16", "Rec2020-elle-V4-g10.icc"),
                    ("wide-large", "U8", "LargeRGB-elle-V2-g22.icc"))  # fmt: skip
WIDE_GAMUT_SWATCH = 2  # the swatch edited (the layer's palette is dark to light)


class Recorder:
    """The controller's view: remembers what the docker would show."""

    def __init__(self):
        self.layer_palette, self.target, self.statuses, self.preview = [], [], [], None

    def show_layer_palette(self, colors):
        self.layer_palette = list(colors)

    def show_target(self, colors, name):
        self.target = list(colors)

    def show_preview(self, pixels):
        self.preview = pixels

    def show_preview_state(self, text):
        self.preview_state = text

    def show_status(self, text, kind, detail=""):
        self.statuses.append([kind, text])

    def set_applying(self, applying):
        pass


class Passthrough:
    def __init__(self, real):
        self.real = real

    def __getattr__(self, name):
        return getattr(self.real, name)

    def __eq__(self, other):  # as the real object compares (libkis: the same document)
        return self.real == getattr(other, "real", other)

    __hash__ = None


class HeadlessDocument(Passthrough):
    """kritarunner has no view, and Krita takes the active layer from the active view: this
    names the layer. Every other call goes to the real Document."""

    def __init__(self, document, layer):
        super().__init__(document)
        self.layer = layer

    def activeNode(self):  # noqa: N802 - Krita's name
        return self.layer

    def setActiveNode(self, node):  # noqa: N802
        self.real.setActiveNode(node)


class HeadlessKrita(Passthrough):
    """... and no window, hence no active document: this names ours."""

    def __init__(self, app, document):
        super().__init__(app)
        self.document = document

    def activeDocument(self):  # noqa: N802
        return self.document


def pump(condition, timeout_s):
    from PyQt5.QtCore import QCoreApplication

    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the plug-in did not finish in time")
        QCoreApplication.processEvents()
        time.sleep(0.01)


def run_case(krita, name, document, layer, config, out: Path, designer_index=1, edit=None):
    """Open the layer in the controller, load designer palette `designer_index` (or make
    `edit`, (swatch index, colour), to the layer's own palette), press Apply, record."""
    from recolor_with_palette.controller import Controller
    from recolor_with_palette.krita_api import KritaEditor
    from recolor_with_palette.palettes import designer_palettes
    from recolor_with_palette.qt_runner import QtRunner
    from recolor_with_palette.settings import Settings

    app = HeadlessKrita(krita.Krita.instance(), HeadlessDocument(document, layer))
    editor = KritaEditor(types.SimpleNamespace(Krita=types.SimpleNamespace(instance=lambda: app),
                                               Palette=krita.Palette,
                                               ManagedColor=krita.ManagedColor))  # fmt: skip
    view, runner = Recorder(), QtRunner()
    settings = Settings(address=config["address"], auto_start=False, timeout_s=120)
    controller = Controller(editor, view, runner, settings)
    bounds = layer.bounds()
    region = [bounds.x(), bounds.y(), bounds.width(), bounds.height()]
    before = bytes(layer.pixelData(*region))
    children_before = [n.name() for n in layer.parentNode().childNodes()]
    controller.check_layer()
    pump(lambda: view.layer_palette or any(k == "error" for k, _ in view.statuses), 120)
    record = {"case": name, "layer_palette": view.layer_palette, "depth": layer.colorDepth(),
              "profile": layer.colorProfile(), "region": region}  # fmt: skip
    rgb = layer.colorModel() == "RGBA"
    if rgb and editor._tone(layer.colorProfile()) == "other":  # sent with its ICC profile
        record["icc_profile_bytes"] = len(editor.icc_profile(layer.colorProfile()) or b"")
    if view.layer_palette and edit is not None:
        controller.set_target_color(*edit)
    elif view.layer_palette:
        controller.load_palette(designer_palettes()[designer_index])
        pump(lambda: controller._palette_job is None, 120)  # paired with the layer's colours
    started = time.monotonic()
    controller.apply()
    pump(lambda: any(("Added layer" in t or k == "error") for k, t in view.statuses[-1:]), 180)
    record["apply_s"] = round(time.monotonic() - started, 2)
    record["statuses"] = view.statuses
    record["target"] = controller.target
    record["source"] = controller._recolor_arguments()["source_palette"]
    record["children_before"] = children_before
    parent = layer.parentNode()
    record["children_after"] = [n.name() for n in parent.childNodes()]
    (out / f"{name}-before.bin").write_bytes(before)
    (out / f"{name}-after.bin").write_bytes(bytes(layer.pixelData(*region)))
    if len(record["children_after"]) > len(children_before):
        result = parent.childNodes()[children_before.index(layer.name()) + 1]
        record["result_name"] = result.name()
        record["result_depth"] = result.colorDepth()
        (out / f"{name}-result.bin").write_bytes(bytes(result.pixelData(*region)))
    selection = document.selection()
    if selection is not None:
        (out / f"{name}-mask.bin").write_bytes(bytes(selection.pixelData(*region)))
    runner.shutdown()
    return record


def ellipse_mask(width: int, height: int) -> bytes:
    """A selection's bytes (255 inside) of the ellipse touching all sides of width x height."""
    rows = []
    for row in range(height):
        dy = (row + 0.5 - height / 2) / (height / 2)
        half = round(width / 2 * max(0.0, 1 - dy * dy) ** 0.5)
        rows.append(bytes(width // 2 - half) + b"\xff" * (2 * half)
                    + bytes(width - width // 2 - half))  # fmt: skip
    return b"".join(rows)


def time_reads(krita, app) -> dict:
    from recolor_with_palette.krita_api import KritaEditor

    width, height = 8000, 6000
    document = app.createDocument(width, height, "48 MP", "RGBA", "U8", "", 72.0)
    document.setBatchmode(True)
    layer = document.rootNode().childNodes()[0]
    band = 500
    for top in range(0, height, band):
        row = bytes((top // 20 % 256, (top * 3) % 256, 90, 255)) * width
        layer.setPixelData(row * band, 0, top, width, band)
    document.waitForDone()
    headless = HeadlessKrita(app, HeadlessDocument(document, layer))
    editor = KritaEditor(types.SimpleNamespace(Krita=types.SimpleNamespace(
        instance=lambda: headless), ManagedColor=krita.ManagedColor))  # fmt: skip
    record = {"case": "48mp-reads"}

    def timed(name, read):
        times = []
        for _ in range(5):
            started = time.perf_counter()
            read()
            times.append((time.perf_counter() - started) * 1000)
        record[f"{name}_ms"] = [round(min(times), 1), round(max(times), 1)]

    for name, read in (("content_key", editor.content_key),
                       ("region_key", lambda: editor.region_key(256)),
                       ("thumbnail", lambda: editor.thumbnail(256)),
                       ("preview_source", lambda: editor.preview_source(256))):  # fmt: skip
        timed(name, read)
    # An ellipse selection over the whole canvas: the poll's region key samples its shape.
    selection = krita.Selection()
    selection.setPixelData(ellipse_mask(width, height), 0, 0, width, height)
    document.setSelection(selection)
    timed("region_key_selection", lambda: editor.region_key(256))
    document.setModified(False)
    document.close()
    return record


def main(args):
    config = json.loads(Path(args[0]).read_text())
    out = Path(config["out"])
    records, error = [], None
    try:
        sys.path.insert(0, config["pykrita"])  # the plug-in as install.py installed it
        import krita

        app = krita.Krita.instance()
        # 1. A real image file: an 8-bit PNG with a transparent band.
        document = app.openDocument(config["image"])
        document.setBatchmode(True)
        document.waitForDone()
        layer = document.rootNode().childNodes()[0]
        records.append(run_case(krita, "png-u8", document, layer, config, out))

        # 2. 16-bit (Krita's default linear profile) with a selection.
        document = app.createDocument(64, 48, "deep", "RGBA", "U16", "", 72.0)
        layer = document.rootNode().childNodes()[0]
        layer.setPixelData(Path(config["u16_pixels"]).read_bytes(), 0, 0, 64, 48)
        selection = krita.Selection()
        selection.select(8, 4, 40, 30, 255)
        document.setSelection(selection)
        records.append(run_case(krita, "u16-selection", document, layer, config, out, 7))

        # 3. Half floats (F16, linear): sent as float32, written back as half floats.
        document = app.createDocument(32, 24, "half", "RGBA", "F16", "", 72.0)
        layer = document.rootNode().childNodes()[0]
        layer.setPixelData(Path(config["f16_pixels"]).read_bytes(), 0, 0, 32, 24)
        records.append(run_case(krita, "f16", document, layer, config, out, 12))

        # 4. A greyscale layer: a clear message, nothing added.
        document = app.createDocument(16, 16, "grey", "GRAYA", "U8", "", 72.0)
        layer = document.rootNode().childNodes()[0]
        records.append(run_case(krita, "graya", document, layer, config, out))

        # 5. CMYK: refused; converting only the layer is refused too (the new layer would be
        # CMYK); the menu item the message names, Image > Convert Image Color Space, works.
        document = app.createDocument(32, 24, "cmyk", "CMYKA", "U8", "", 72.0)
        layer = document.rootNode().childNodes()[0]
        cmyk = bytes(value for i in range(32 * 24)
                     for value in (i % 200, (i * 7) % 255, (i // 32) * 10, 0, 255))  # fmt: skip
        layer.setPixelData(cmyk, 0, 0, 32, 24)
        records.append(run_case(krita, "cmyk", document, layer, config, out))
        layer.setColorSpace("RGBA", "U8", "sRGB-elle-V2-srgbtrc.icc")  # Layer > Convert
        document.waitForDone()
        records.append(run_case(krita, "cmyk-layer-converted", document, layer, config, out))
        layer.setColorSpace("CMYKA", "U8", document.colorProfile())  # back, as it was
        document.waitForDone()
        document.setColorSpace("RGBA", "U8", "sRGB-elle-V2-srgbtrc.icc")  # Image > Convert
        document.waitForDone()
        records.append(run_case(krita, "cmyk-image-converted", document, layer, config, out, 5))

        # 6. One picture in sRGB and converted by Krita to wide-gamut spaces (it looks the
        # same), the same swatch edit; the results converted by Krita to 8-bit sRGB.
        for case, depth, profile in WIDE_GAMUT_CASES:
            document = app.openDocument(config["image"])
            document.setBatchmode(True)
            document.waitForDone()
            if profile:
                document.setColorSpace("RGBA", depth, profile)
                document.waitForDone()
            layer = document.rootNode().childNodes()[0]
            records.append(run_case(krita, case, document, layer, config, out,
                                    edit=(WIDE_GAMUT_SWATCH, "#ff8800")))  # fmt: skip
            records[-1]["document_profile"] = document.colorProfile()
            document.setColorSpace("RGBA", "U8", "sRGB-elle-V2-srgbtrc.icc")
            document.waitForDone()
            original, result = document.rootNode().childNodes()[:2]
            size = (0, 0, document.width(), document.height())
            (out / f"{case}-original-srgb.bin").write_bytes(bytes(original.pixelData(*size)))
            (out / f"{case}-result-srgb.bin").write_bytes(bytes(result.pixelData(*size)))

        # 7. What the docker's reads cost on a 48-megapixel layer, on the GUI thread: the
        # fingerprint at every 0.7 s poll (painting noticed), the palette's and the
        # preview's samples (read when the layer, its content or the selection changes).
        records.append(time_reads(krita, app))
    except Exception:
        error = traceback.format_exc()
    (out / "result.json").write_text(json.dumps({"records": records, "error": error}, indent=1))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
