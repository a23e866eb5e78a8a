"""Drives the full Krita GUI for the issue-18 checks in tests/test_plugin_krita_real.py:
a swatch dragged in the docker's colour dialog (live preview, at most one request in
flight), palette files imported and exported, a group and an animation recoloured in one
go; screenshots of each (the whole X screen, so the colour dialog shows too).

Installed (by the test only) as a second Python plug-in in a temporary HOME; every step
runs on Krita's GUI thread from timers (the colour dialog's own event loop runs them too).
"""

import json
import os
import time
import traceback
from pathlib import Path

import recolor_with_palette.client as client_module
from krita import Krita
from PyQt5.QtCore import QItemSelectionModel, Qt, QTimer
from PyQt5.QtGui import QColor
from PyQt5.QtWidgets import QAbstractItemView, QApplication, QDockWidget
from recolor_driver_base import Results, quit_krita
from recolor_with_palette.krita_plugin import find_docker
from recolor_with_palette.palettes import designer_palettes
from recolor_with_palette.widgets import read_image_rgba

CONFIG = json.loads(Path(os.environ["RECOLOR_DEMO_TEST"]).read_text())
OUT = Path(CONFIG["out"])
record = {"steps": [], "requests": []}
results = Results(OUT / "demo-result.json", record)
save, fail, wait_for = results.save, results.fail, results.wait_for
SWATCH = 4  # the astronaut's orange suit in the test photo's palette
# A drag from orange to blue in ten steps (the last one must be the one shown).
DRAG = ["#{:02x}{:02x}{:02x}".format(*(round(a + (b - a) * i / 9) for a, b in
        zip((211, 97, 61), (40, 120, 220)))) for i in range(10)]  # fmt: skip
DRAG_INTERVAL_MS = 5  # a colour change every 5 ms: faster than a preview comes back


def step(name, **values):
    record["steps"].append(name)
    record.update(values)
    save()


def screen(name):
    QApplication.primaryScreen().grabWindow(0).save(str(OUT / f"{name}.png"))


def count_requests():
    """Every recolor request the plug-in sends, with how many were out at that moment."""
    recolor, out = client_module.Client.recolor, [0]

    def counted(self, pixels, palette, *args, **kwargs):
        out[0] += 1
        entry = {"palette": list(palette), "in_flight": out[0], "t": time.monotonic(),
                 "preview": kwargs.get("max_side") is not None}  # fmt: skip
        record["requests"].append(entry)
        try:
            return recolor(self, pixels, palette, *args, **kwargs)
        finally:
            out[0] -= 1
            entry["s"] = round(time.monotonic() - entry["t"], 3)

    client_module.Client.recolor = counted


class Driver:
    def start(self):
        try:
            count_requests()
            app = Krita.instance()
            self.window = app.activeWindow()
            # The whole screen (Xvfb has no window manager to maximise it): room for the docker.
            self.window.qwindow().setGeometry(QApplication.primaryScreen().geometry())
            self.document = app.openDocument(CONFIG["image"])
            self.window.addView(self.document)
            wait_for(lambda: app.activeDocument() is not None, self.open_docker, 30, "the view")
        except Exception:
            fail(traceback.format_exc())

    def open_docker(self):
        Krita.instance().action("recolor_with_palette").trigger()
        self.widget = find_docker(self.window.qwindow()).widget()
        main_window = self.window.qwindow()
        main_window.resizeDocks([find_docker(main_window)], [430], Qt.Orientation.Horizontal)
        show = self.widget.show_preview
        self.previews = []

        def shown(pixels):
            self.previews.append((time.monotonic(), list(self.widget.controller.target)))
            show(pixels)

        self.widget.show_preview = shown
        log, show_status = record.setdefault("status_log", []), self.widget.show_status

        def logged(text, kind, *detail):
            log.append([kind, text[:200]])
            show_status(text, kind, *detail)

        self.widget.show_status = logged
        wait_for(lambda: self.widget.controller.layer_palette and self.idle(),
                 self.single_changes, 150, "the layer's palette and preview")  # fmt: skip

    def idle(self):
        controller = self.widget.controller
        return controller._preview_job is None and controller._palette_job is None

    # --- 1. live preview -------------------------------------------------------------------
    def single_changes(self):
        """The latency the docker sees: one colour change, then the preview of it shown."""
        QTimer.singleShot(0, lambda: self.in_dialog(self.measure_one, 0))
        self.widget.target_row.clicked.emit(SWATCH)  # opens the colour dialog (its own loop)

    def in_dialog(self, then, *args):
        dialog = self.widget.color_dialog
        if dialog is None or not dialog.isVisible():
            return QTimer.singleShot(50, lambda: self.in_dialog(then, *args))
        dialog.move(70, 120)  # over the canvas, not over the docker
        then(dialog, *args)

    def measure_one(self, dialog, index):
        method = self.widget.controller.settings.method
        if index == CONFIG["single_changes"]:
            record.setdefault("single_latency_s", {})[method] = self.latencies
            if method == "chang2015":  # the same again with the network
                self.widget.controller.set_method("palettenet")
                return wait_for(self.idle, lambda: self.measure_one(dialog, 0), 120,
                                "the PaletteNet preview")  # fmt: skip
            self.widget.controller.set_method("chang2015")
            return wait_for(self.idle, lambda: self.drag(dialog), 60, "the classical preview")
        if index == 0:
            self.latencies = []
        color = f"#{(37 * index) % 256:02x}{(91 * index) % 256:02x}{(53 * index) % 256:02x}"
        shown_before, started = len(self.previews), time.monotonic()
        dialog.setCurrentColor(QColor(color))

        def arrived():
            return len(self.previews) > shown_before and self.previews[-1][1][SWATCH] == color

        def next_change():
            self.latencies.append(round(self.previews[-1][0] - started, 3))
            save()
            QTimer.singleShot(50, lambda: self.measure_one(dialog, index + 1))

        wait_for(arrived, next_change, 120, f"the preview of change {index}", poll_ms=5)

    def drag(self, dialog):
        """Ten changes 30 ms apart while a request is out: the last one must follow."""
        self.drag_start = len(record["requests"])
        times = []

        def change(index):
            if index == len(DRAG):
                self.drag_end = time.monotonic()
                step("dragged", drag_changes=times)
                screen("live-drag")  # the dialog over Krita, the preview following
                return wait_for(self.idle, lambda: self.dragged(dialog), 60, "the last preview")
            dialog.setCurrentColor(QColor(DRAG[index]))
            times.append(round(time.monotonic(), 3))
            QTimer.singleShot(DRAG_INTERVAL_MS, lambda: change(index + 1))

        change(0)

    def dragged(self, dialog):
        requests = record["requests"][self.drag_start :]
        step("drag done", drag_requests=[r["palette"][SWATCH] for r in requests],
             drag_max_in_flight=max(r["in_flight"] for r in requests),
             drag_last_shown=self.previews[-1][1][SWATCH], drag_colours=DRAG,
             drag_settle_s=round(self.previews[-1][0] - self.drag_end, 3),
             drag_state=self.widget.preview_state.text())  # fmt: skip
        screen("live-after")
        dialog.accept()
        QTimer.singleShot(300, self.palette_files)

    # --- 2. palette files ------------------------------------------------------------------
    def palette_files(self):
        controller = self.widget.controller
        step("accepted", target_after_dialog=list(controller.target))
        strip = OUT / "strip.png"
        controller.import_palette_file(strip, read_image_rgba)  # decoded by Qt, in Krita
        wait_for(self.idle, self.strip_loaded, 60, "the strip's palette")

    def strip_loaded(self):
        step("strip", strip_target=list(self.widget.controller.target),
             strip_name=self.widget.target_name.text())  # fmt: skip
        self.widget.controller.import_palette_file(OUT / "big.gpl", read_image_rgba)
        wait_for(self.idle, self.big_loaded, 60, "the big palette")

    def big_loaded(self):
        step("big", big_status=self.widget.status.text(),
             big_target=list(self.widget.controller.target))  # fmt: skip
        screen("palette-big")
        self.widget.controller.import_palette_file(OUT / "broken.gpl", read_image_rgba)
        step("broken", broken_status=self.widget.status.text(),
             broken_target=list(self.widget.controller.target))  # fmt: skip
        QTimer.singleShot(300, self.export)

    def export(self):
        screen("palette-error")
        self.widget.controller.export_palette_file(str(OUT / "exported.kpl"), "target")
        step("exported", export_status=self.widget.status.text())
        QTimer.singleShot(100, self.group)

    # --- 3. a group, then an animation -----------------------------------------------------
    def group(self):
        document = self.document
        root = document.rootNode()
        group = document.createGroupLayer("Icons")
        width, height = document.width(), document.height()
        for name, bgra, left in (("Circle", (40, 40, 220, 255), 0),
                                 ("Square", (200, 120, 30, 255), width // 2)):  # fmt: skip
            layer = document.createNode(name, "paintlayer")
            layer.setPixelData(bytes(bgra) * (width // 2) * height, left, 0, width // 2, height)
            group.addChildNode(layer, None)
        root.addChildNode(group, None)
        document.refreshProjection()  # a group built before it was added: draw it
        document.setActiveNode(group)
        self.group_node = group
        wait_for(lambda: "(2 layers)" in self.widget.status.text() and self.idle(),
                 self.apply_group, 60, "the group's palette")  # fmt: skip

    def apply_group(self):
        self.widget.controller.load_palette(designer_palettes()[4])  # both layers: one pairing
        wait_for(self.idle, self.press_apply_group, 60, "the group paired with the palette")

    def press_apply_group(self):
        self.widget.apply_button.click()
        wait_for(lambda: self.widget.status.text().startswith("Added") or self.error(),
                 self.group_applied, 120, "the group's copy")  # fmt: skip

    def error(self):
        return self.widget.status.styleSheet().startswith("color: #d0")

    def group_applied(self):
        root = self.document.rootNode()
        copy = root.childNodes()[-1]
        step("group", group_status=self.widget.status.text(),
             group_children_after=[n.name() for n in root.childNodes()],
             group_copy_children=[n.name() for n in copy.childNodes()],
             group_copy_type=copy.type())  # fmt: skip
        QTimer.singleShot(800, self.undo_group)

    def undo_group(self):
        screen("group")
        Krita.instance().action("edit_undo").trigger()
        QTimer.singleShot(500, self.group_undone)

    def group_undone(self):
        step("group undone", group_children_after_undo=[
            n.name() for n in self.document.rootNode().childNodes()])  # fmt: skip
        self.selected_layers()

    # --- several layers selected in the Layers docker (Ctrl+click) -------------------------
    def selected_layers(self):
        document, root = self.document, self.document.rootNode()
        width, height = document.width(), document.height()
        for name, bgra in (("Red", (40, 40, 220, 255)), ("Blue", (200, 120, 30, 255))):
            layer = document.createNode(name, "paintlayer")
            layer.setPixelData(bytes(bgra) * width * (height // 2), 0, 0, width, height // 2)
            layer.setPixelData(bytes((235, 235, 235, 255)) * width * (height // 2), 0,
                               height // 2, width, height // 2)  # fmt: skip
            root.addChildNode(layer, None)
        document.setActiveNode(root.childNodes()[-1])
        QTimer.singleShot(500, self.select_two)

    def select_two(self):
        """Select "Red" and "Blue" in the Layers docker's tree, as Ctrl+click does."""
        docks = self.window.qwindow().findChildren(QDockWidget)
        box = next(d for d in docks if d.objectName() == "KisLayerBox")
        tree = box.findChild(QAbstractItemView)
        model, selection = tree.model(), tree.selectionModel()
        rows = [r for r in range(model.rowCount())
                if model.index(r, 0).data() in ("Red", "Blue")]  # fmt: skip
        for row in rows:
            selection.select(model.index(row, 0),
                             QItemSelectionModel.Select | QItemSelectionModel.Rows)  # fmt: skip
        view = Krita.instance().activeWindow().activeView()
        wait_for(lambda: len(view.selectedNodes()) == 2 and "(2 layers)" in
                 self.widget.status.text() and self.idle(), self.apply_selected, 30,
                 "two selected layers in the docker")  # fmt: skip

    def apply_selected(self):
        self.selected_before = [n.name() for n in self.document.rootNode().childNodes()]
        self.widget.apply_button.click()
        wait_for(lambda: self.widget.status.text().startswith("Added") or self.error(),
                 self.selected_applied, 120, "the selected layers' group")  # fmt: skip

    def selected_applied(self):
        root = self.document.rootNode()
        group = root.childNodes()[-1]
        copies = group.childNodes()
        region = (0, 0, self.document.width(), 2)
        step("selected", selected_status=self.widget.status.text(),
             selected_children_after=[n.name() for n in root.childNodes()],
             selected_before=self.selected_before, selected_group_type=group.type(),
             selected_copies=[n.name() for n in copies],
             selected_top_rows=[list(bytes(n.pixelData(*region))[:4]) for n in copies],
             selected_bottom=[list(bytes(n.pixelData(0, self.document.height() - 1, 1, 1)))
                              for n in copies])  # fmt: skip
        QTimer.singleShot(800, self.undo_selected)

    def undo_selected(self):
        screen("selected")
        Krita.instance().action("edit_undo").trigger()
        QTimer.singleShot(500, self.selected_undone)

    def selected_undone(self):
        step("selected undone", selected_after_undo=[
            n.name() for n in self.document.rootNode().childNodes()])  # fmt: skip
        self.animation()

    def animation(self):
        """Three frames as one animated layer "Walk", made by the test (Krita's own
        importAnimation crashes now and then, so it runs in a Krita of its own)."""
        self.walk = Krita.instance().openDocument(CONFIG["animation"])
        if self.walk is None:
            return fail(f"Krita could not open {CONFIG['animation']}")
        self.window.addView(self.walk)
        docks = self.window.qwindow().findChildren(QDockWidget)
        record["dockers"] = sorted(d.objectName() for d in docks)
        for docker in docks:
            if docker.objectName() in ("TimelineDocker", "AnimationDocker"):
                docker.show()
        wait_for(lambda: any(n.animated() for n in self.walk.rootNode().childNodes()),
                 self.animation_ready, 60, "the imported frames")  # fmt: skip

    def animation_ready(self):
        self.walk.setActiveNode(self.walk.nodeByName("Walk"))
        self.widget.method_combo.setCurrentIndex(self.widget.method_combo.findData("chang2015"))
        self.widget.method_combo.activated.emit(self.widget.method_combo.currentIndex())
        wait_for(lambda: "(3 frames)" in self.widget.status.text() and self.idle(),
                 self.apply_animation, 60, "the frames' palette")  # fmt: skip

    def apply_animation(self):
        self.widget.controller.reset_target()  # the frames' own colours, then two edits
        wait_for(self.idle, self.edit_animation, 60, "the frames' palette again")

    def edit_animation(self):
        self.widget.controller.set_target_color(SWATCH - 1, "#1d4f8a")
        self.widget.controller.set_target_color(SWATCH, "#2a7fd4")
        wait_for(self.idle, lambda: self.widget.apply_button.click() or wait_for(
            lambda: self.widget.status.text().startswith("Added") or self.error(),
            self.animation_applied, 120, "the recoloured frames"), 60, "the preview")  # fmt: skip

    def animation_applied(self):
        root = self.walk.rootNode()
        added = root.childNodes()[-1]
        step("animation", animation_status=self.widget.status.text(),
             animation_children=[n.name() for n in root.childNodes()],
             animation_keyframes=[t for t in range(10) if added.hasKeyframeAtTime(t)])  # fmt: skip
        QTimer.singleShot(800, self.finish)

    def finish(self):
        screen("animation")
        step("done", done=True)
        quit_krita()


driver = Driver()


def window_created():
    QTimer.singleShot(2000, driver.start)  # let Krita finish building the window


Krita.instance().notifier().windowCreated.connect(window_created)
