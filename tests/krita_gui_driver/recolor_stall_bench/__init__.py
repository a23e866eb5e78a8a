"""Measures how long Krita's GUI thread stalls while the docker applies a recolour, for
tests/bench_krita_stall.py (which installs this as a second Python plug-in in a temporary
HOME and reads the result file).

For each case (a canvas size and colour depth) it creates a document, paints colour bands
into its layer, lets the docker read the palette and make its preview, edits one swatch,
then presses Apply. From the press until the new layer is there (and one second after, for
Krita's own projection update), a 10 ms QTimer on the GUI thread notes every gap between
its ticks: the longest gap is the longest time the GUI could not react (its Python callback
needs the GIL too, so a worker thread holding it counts as well). Every gap over 100 ms is
kept with the docker's status line at that moment, which says which step it fell in.
Whether the canvas then shows the result is checked against a screenshot after Krita redraws
the whole image. For scale, Krita's own Duplicate Layer and New Paint Layer are timed too.
CONFIG["variant"] swaps in another way of adding the result layer (VARIANTS), to compare.
"""

import array
import json
import os
import time
import traceback
from pathlib import Path

from krita import Krita
from PyQt5.QtCore import QTimer
from recolor_driver_base import Results, quit_krita
from recolor_with_palette.krita_plugin import find_docker

CONFIG = json.loads(Path(os.environ["RECOLOR_STALL_BENCH"]).read_text())
RESULT = Path(CONFIG["result"])
TICK_MS = 10
record = {"cases": []}
CALLS = []  # [what, seconds] of each libkis call a variant's write makes, in order


def timed(what, call, *args):
    started = time.monotonic()
    value = call(*args)
    CALLS.append([what, round(time.monotonic() - started, 3)])
    return value


# Other ways of adding the result layer, to measure against the plug-in's own
# (KritaEditor._write_bands: fill the new layer in bands while it is not in the image, then
# addChildNode, the one undo step). Each is a drop-in for _write_bands.
def write_detached(editor, pixels, name, raw):
    """The plug-in's way, each libkis call timed."""
    document, node = pixels.layer.handle
    layer = document.createNode(name, "paintlayer")
    yield from fill(editor, layer, pixels, raw)
    timed("addChildNode (filled)", node.parentNode().addChildNode, layer, node)


def write_attached(editor, pixels, name, raw, refresh=True):
    """Added empty (the undo step), filled in bands while in the image, then one refresh."""
    document, node = pixels.layer.handle
    layer = document.createNode(name, "paintlayer")
    timed("addChildNode (empty)", node.parentNode().addChildNode, layer, node)
    yield
    yield from fill(editor, layer, pixels, raw)
    if refresh:
        timed("refreshProjection", document.refreshProjection)


def write_hidden(editor, pixels, name, raw, refresh=False):
    """Filled while not in the image and hidden, added hidden, then shown."""
    document, node = pixels.layer.handle
    layer = document.createNode(name, "paintlayer")
    layer.setVisible(False)
    yield from fill(editor, layer, pixels, raw)
    timed("addChildNode (hidden)", node.parentNode().addChildNode, layer, node)
    yield
    timed("setVisible(True)", layer.setVisible, True)
    if refresh:
        yield
        timed("refreshProjection", document.refreshProjection)


def fill(editor, layer, pixels, raw):
    started = time.monotonic()
    for _ in editor._fill_bands(layer, pixels, raw):
        CALLS.append(["setPixelData band", round(time.monotonic() - started, 3)])
        yield
        started = time.monotonic()


VARIANTS = {
    "plugin": None,
    "detached": write_detached,
    "attached": write_attached,
    "attached-norefresh": lambda *a: write_attached(*a, refresh=False),
    "hidden": write_hidden,
    "hidden-refresh": lambda *a: write_hidden(*a, refresh=True),
}
# Six colours (R, G, B as 0..1), painted as horizontal bands with a gentle gradient.
COLOURS = [(0.10, 0.16, 0.35), (0.85, 0.55, 0.30), (0.30, 0.60, 0.25),
           (0.95, 0.90, 0.80), (0.55, 0.20, 0.20), (0.40, 0.70, 0.90)]  # fmt: skip


results = Results(RESULT, record)
save, fail = results.save, results.fail


def wait_for(condition, then, timeout_s, what):
    results.wait_for(condition, then, timeout_s, what, poll_ms=50)


def band_row(width, depth, colour, shade):
    """One row of `colour` darkened by `shade`, with a left-to-right gradient, in Krita's
    layout for `depth` (B, G, R, A for integers; R, G, B, A for floats)."""
    pixels = []
    for x in range(0, width, 64):  # 64-pixel steps, repeated: quick to build in Python
        ramp = 0.8 + 0.2 * x / width
        red, green, blue = (min(1.0, c * shade * ramp) for c in colour)
        pixels.append((red, green, blue))
    if depth == "U8":
        cell = [bytes((round(b * 255), round(g * 255), round(r * 255), 255)) * 64
                for r, g, b in pixels]  # fmt: skip
    elif depth == "U16":
        cell = [array.array("H", [round(b * 65535), round(g * 65535), round(r * 65535),
                                  65535]).tobytes() * 64 for r, g, b in pixels]  # fmt: skip
    else:
        code = "f" if depth == "F32" else "e"
        import struct

        cell = [struct.pack(f"<4{code}", r, g, b, 1.0) * 64 for r, g, b in pixels]
    row = b"".join(cell)
    pixel_bytes = {"U8": 4, "U16": 8, "F16": 8, "F32": 16}[depth]
    return row[: width * pixel_bytes]


class Monitor:
    """A 10 ms timer on the GUI thread; gaps between its ticks are the stalls."""

    def __init__(self, status):
        self.status = status
        self.timer = QTimer()
        self.timer.setInterval(TICK_MS)
        self.timer.timeout.connect(self.tick)
        self.gaps, self.longest, self.last = [], 0.0, None

    def start(self):
        self.last = time.monotonic()
        self.timer.start()

    def tick(self):
        now = time.monotonic()
        gap = now - self.last
        self.last = now
        self.longest = max(self.longest, gap)
        if gap > 0.1:
            self.gaps.append([round(gap, 3), self.status()[:80]])

    def stop(self):
        self.timer.stop()
        self.tick()  # a stall running up to now counts too


class Bench:
    def start(self):
        try:
            app = Krita.instance()
            self.window = app.activeWindow()
            self.cases = list(CONFIG["cases"])
            self.window.qwindow().resize(1500, 950)
            self.next_case()
        except Exception:
            fail(traceback.format_exc())

    def docker(self):
        return find_docker(self.window.qwindow())  # the plug-in's own lookup

    def status(self):
        return self.widget.status.text()

    def next_case(self):
        if not self.cases:
            record["done"] = True
            save()
            return quit_krita()
        self.case = self.cases.pop(0)
        width, height, depth = self.case["width"], self.case["height"], self.case["depth"]
        app = Krita.instance()
        started = time.monotonic()
        self.document = app.createDocument(width, height, f"bench {depth}", "RGBA", depth,
                                           self.case.get("profile", ""), 72.0)  # fmt: skip
        self.window.addView(self.document)
        layer = self.document.rootNode().childNodes()[0]
        band = max(1, height // len(COLOURS))
        for index, colour in enumerate(COLOURS):
            top = index * band
            rows = band if index < len(COLOURS) - 1 else height - top
            for y in range(top, top + rows, 250):  # a few MB per call
                count = min(250, top + rows - y)
                shade = 0.6 + 0.4 * (y - top) / max(1, rows)
                layer.setPixelData(band_row(width, depth, colour, shade) * count, 0, y, width,
                                   count)  # fmt: skip
        self.document.refreshProjection()
        self.case["paint_s"] = round(time.monotonic() - started, 2)
        Krita.instance().action("recolor_with_palette").trigger()
        self.widget = self.docker().widget()
        key = layer.uniqueId().toString()
        controller = self.widget.controller
        wait_for(lambda: controller.layer is not None and controller.layer.key == key
                 and controller.layer_palette and controller._palette_job is None,
                 self.edit, 300, "the layer's palette")  # fmt: skip

    def edit(self):
        self.widget.controller.set_target_color(0, "#ff8800")
        state = getattr(self.widget, "preview_state", None)  # None: an older plug-in (to
        if state is not None:  # measure before and after a change with this benchmark)
            ready = lambda: state.text().startswith("Preview:")  # noqa: E731
        else:
            ready = lambda: self.widget.controller._preview_job is None  # noqa: E731
        QTimer.singleShot(1000, lambda: wait_for(ready, self.apply, 300, "the preview"))

    def canvas(self):
        """The canvas as shown on the screen, to tell whether the result is visible."""
        from PyQt5.QtWidgets import QApplication

        widget = self.window.qwindow().centralWidget()
        corner = widget.mapToGlobal(widget.rect().topLeft())
        shot = QApplication.primaryScreen().grabWindow(0, corner.x(), corner.y(),
                                                       widget.width(), widget.height())  # fmt: skip
        image = shot.toImage()
        return image.constBits().asstring(image.sizeInBytes())

    def apply(self):
        variant = VARIANTS[CONFIG.get("variant", "plugin")]
        if variant is not None:
            from recolor_with_palette.krita_api import KritaEditor

            KritaEditor._write_bands = variant
        CALLS.clear()
        self.canvas_before = self.canvas()
        self.monitor = Monitor(self.status)
        self.monitor.start()
        self.pressed = time.monotonic()
        self.widget.apply_button.click()
        wait_for(lambda: self.status().startswith("Added layer") or
                 self.widget.status.styleSheet().startswith("color: #d0"),
                 self.added, 1200, "the new layer")  # fmt: skip

    def added(self):
        self.case["apply_s"] = round(time.monotonic() - self.pressed, 2)
        self.case["status"] = self.status()
        QTimer.singleShot(1000, self.measured)

    def measured(self):
        self.monitor.stop()
        self.case["longest_stall_s"] = round(self.monitor.longest, 3)
        self.case["stalls_over_100ms"] = self.monitor.gaps
        self.case["variant"] = CONFIG.get("variant", "plugin")
        self.case["calls_over_20ms"] = [call for call in CALLS if call[1] > 0.02]
        # Whether the canvas shows the result: as it is now, and as it is once Krita
        # redraws the whole image (refreshProjection) are the same, and not as before.
        self.canvas_after = self.canvas()
        self.document.refreshProjection()
        QTimer.singleShot(1500, self.compare_canvas)

    def compare_canvas(self):
        redrawn = self.canvas()
        self.case["canvas_shows_result"] = (self.canvas_after == redrawn
                                            and redrawn != self.canvas_before)  # fmt: skip
        # The floor under the same load: Krita's own Layer > Duplicate Layer of the same
        # layer (one libkis-free action that also adds a full-size layer).
        self.document.setActiveNode(self.document.rootNode().childNodes()[0])
        self.layers = len(self.document.rootNode().childNodes())
        QTimer.singleShot(1000, self.duplicate)

    def duplicate(self):
        self.monitor = Monitor(self.status)
        self.monitor.start()
        Krita.instance().action("duplicatelayer").trigger()
        wait_for(lambda: len(self.document.rootNode().childNodes()) > self.layers,
                 lambda: QTimer.singleShot(1000, self.duplicated), 120,
                 "Duplicate Layer")  # fmt: skip

    def duplicated(self):
        self.monitor.stop()
        self.case["krita_duplicate_layer_stall_s"] = round(self.monitor.longest, 3)
        # And Krita's own Layer > New > Paint Layer: an empty layer added.
        self.layers = len(self.document.rootNode().childNodes())
        self.monitor = Monitor(self.status)
        self.monitor.start()
        Krita.instance().action("add_new_paint_layer").trigger()
        wait_for(lambda: len(self.document.rootNode().childNodes()) > self.layers,
                 lambda: QTimer.singleShot(1000, self.new_layer_added), 120,
                 "New Paint Layer")  # fmt: skip

    def new_layer_added(self):
        self.monitor.stop()
        self.case["krita_new_layer_stall_s"] = round(self.monitor.longest, 3)
        record["cases"].append(self.case)
        save()
        self.document.setModified(False)
        self.document.close()
        QTimer.singleShot(500, self.next_case)


bench = Bench()


def window_created():
    QTimer.singleShot(2000, bench.start)


Krita.instance().notifier().windowCreated.connect(window_created)
