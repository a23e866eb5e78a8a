"""Drives the full Krita GUI for tests/test_plugin_krita_real.py, as an artist would.

Installed (by the test only) as a second Python plug-in in a temporary HOME. When Krita's
window exists it opens the test image, triggers Tools > Scripts > Recolor with Palette,
picks a designer palette in the docker, presses Apply, waits for the new layer, takes
screenshots, presses Edit > Undo, writes what it saw to the result file, and quits Krita.
Every step runs on Krita's GUI thread from timers: nothing here blocks the event loop.
"""

import json
import os
import signal
import time
import traceback
from pathlib import Path

from krita import Krita, Selection
from PyQt5.QtCore import Qt, QTimer
from PyQt5.QtGui import QImage
from recolor_driver_base import Results, quit_krita
from recolor_with_palette.krita_plugin import find_docker

CONFIG = json.loads(Path(os.environ["RECOLOR_GUI_TEST"]).read_text())
RESULT = Path(CONFIG["out"]) / "gui-result.json"
record = {"steps": []}
SELECTION = (40, 30, 150, 100)  # x, y, width, height: small, so the preview is full size
# The visible half of the moved layer: three stripes (B, G, R; width) above row 300, three
# below: six colours, none of them the magenta of the half moved off the canvas.
MOVED_STRIPES = ((((40, 40, 200), 133), ((40, 160, 40), 134), ((200, 90, 30), 133)),
                 (((20, 20, 90), 133), ((150, 220, 230), 134), ((120, 120, 120), 133)))  # fmt: skip


results = Results(RESULT, record)
save, fail, wait_for = results.save, results.fail, results.wait_for


def step(name, **values):
    record["steps"].append(name)
    record.update(values)
    save()


def menu_texts(window, *path):
    """The action texts of a menu of the main window, e.g. ("Tools", "Scripts")."""
    menu = window.qwindow().menuBar()
    for title in path:
        for action in menu.actions():
            if action.text().replace("&", "") == title and action.menu() is not None:
                menu = action.menu()
                break
        else:
            return []
    return [action.text().replace("&", "") for action in menu.actions()]


def menu_action(window, *path):
    """The QAction at the end of a menu path of the main window."""
    menu = window.qwindow().menuBar()
    *menus, text = path
    for title in menus:
        menu = next(a.menu() for a in menu.actions()
                    if a.text().replace("&", "") == title and a.menu() is not None)  # fmt: skip
    return next(a for a in menu.actions() if a.text().replace("&", "") == text)


class Driver:
    def start(self):
        try:
            app = Krita.instance()
            self.window = app.activeWindow()
            self.document = app.openDocument(CONFIG["image"])
            self.window.addView(self.document)
            self.layer = self.document.rootNode().childNodes()[0]
            bounds = self.layer.bounds()
            self.region = (bounds.x(), bounds.y(), bounds.width(), bounds.height())
            self.before = bytes(self.layer.pixelData(*self.region))
            step("opened", scripts_menu=menu_texts(self.window, "Tools", "Scripts"),
                 image_menu=menu_texts(self.window, "Image"))  # fmt: skip
            wait_for(lambda: app.activeDocument() is not None, self.open_docker, 30, "the view")
        except Exception:
            fail(traceback.format_exc())

    def open_docker(self):
        docker = self.docker()
        step("view", docker_visible_before=bool(docker and docker.isVisible()))
        Krita.instance().action("recolor_with_palette").trigger()
        self.widget = self.docker().widget()
        self.log_statuses()
        step("action triggered", docker_visible=self.docker().isVisible(),
             docker_title=self.docker().windowTitle())  # fmt: skip
        wait_for(lambda: self.widget.controller.layer_palette or self.error_shown(),
                 self.pick_palette, 150, "the layer's palette")  # fmt: skip

    def log_statuses(self):
        """Every status line the docker shows goes to the record too (for a failure's story)."""
        log, show_status = record.setdefault("status_log", []), self.widget.show_status
        started = time.monotonic()

        def logging(text, kind, *detail):
            log.append([round(time.monotonic() - started, 2), kind, text[:160]])
            show_status(text, kind, *detail)

        self.widget.show_status = logging

    def docker(self):
        return find_docker(self.window.qwindow())  # the plug-in's own lookup

    def error_shown(self):
        return self.widget.status.styleSheet().startswith("color: #d0")

    def pick_palette(self):
        controller = self.widget.controller
        started = {address: p.pid for address, p in controller.launcher._processes.items()}
        step("palette shown", layer_palette=self.widget.layer_row.colors(),
             status=self.widget.status.text(), started_daemons=started)  # fmt: skip
        if not controller.layer_palette:
            return fail(f"no palette: {self.widget.status.text()}")
        self.widget.designer_combo.setCurrentIndex(3)
        self.widget.designer_combo.activated.emit(3)  # as if the artist chose "Designer 003"
        self.preview_before = self.widget.preview.source.cacheKey()
        wait_for(lambda: self.widget.preview.source.cacheKey() != self.preview_before,
                 self.apply, 60, "the preview of the new palette")  # fmt: skip

    def apply(self):
        step("preview updated", target=self.widget.target_row.colors())
        self.children = [n.name() for n in self.document.rootNode().childNodes()]
        self.widget.apply_button.click()
        wait_for(lambda: self.widget.status.text().startswith("Added layer") or self.error_shown(),
                 self.applied, 120, "the new layer")  # fmt: skip

    def applied(self):
        self.window.qwindow().grab().save(str(Path(CONFIG["out"]) / "window.png"))
        # Give the docker room for its screenshot (floating it makes Krita hang at quit).
        main_window = self.window.qwindow()
        main_window.resizeDocks([self.docker()], [560], Qt.Orientation.Vertical)
        main_window.resizeDocks([self.docker()], [430], Qt.Orientation.Horizontal)
        QTimer.singleShot(800, self.screenshot)

    def screenshot(self):
        children = [n.name() for n in self.document.rootNode().childNodes()]
        self.docker().grab().save(str(Path(CONFIG["out"]) / "docker.png"))
        after = bytes(self.layer.pixelData(*self.region))
        new = self.document.rootNode().childNodes()[-1]
        step("applied", status=self.widget.status.text(), children_before=self.children,
             children_after=children, original_unchanged=after == self.before,
             new_layer_differs=bytes(new.pixelData(*self.region)) != self.before,
             active_layer=self.document.activeNode().name())  # fmt: skip
        Krita.instance().action("edit_undo").trigger()
        wait_for(lambda: len(self.document.rootNode().childNodes()) == len(self.children),
                 self.undone, 30, "the undo")  # fmt: skip

    def undone(self):
        after = bytes(self.layer.pixelData(*self.region))
        children = [n.name() for n in self.document.rootNode().childNodes()]
        step("undone", children_after_undo=children,
             original_unchanged_after_undo=after == self.before)  # fmt: skip
        self.switch_layer()

    # --- the preview follows the layer and the selection, and is what Apply adds ----------
    def preview_state(self):
        return self.widget.preview_state.text()

    def save_preview(self, name):
        """The preview the docker shows, as B, G, R, A bytes (ARGB32) in a file."""
        image = self.widget.preview.source.toImage().convertToFormat(QImage.Format_ARGB32)
        size = image.width() * image.height() * 4
        (Path(CONFIG["out"]) / name).write_bytes(image.constBits().asstring(size))
        return [image.width(), image.height()]

    def switch_layer(self):
        """A second layer (left half red, right half green) made the active one, with the
        designer palette still loaded: its own recoloured preview must come."""
        width, height = self.document.width(), self.document.height()
        half = width // 2
        row = bytes((0, 0, 220, 255)) * half + bytes((40, 200, 40, 255)) * (width - half)
        second = self.document.createNode("Second", "paintlayer")
        second.setPixelData(row * height, 0, 0, width, height)
        self.document.rootNode().addChildNode(second, None)
        self.second = second
        self.document.setActiveNode(second)
        key = second.uniqueId().toString()
        controller = self.widget.controller
        wait_for(lambda: controller.layer is not None and controller.layer.key == key
                 and self.preview_state().startswith("Preview: the layer"),
                 self.switched, 60, "the second layer's preview")  # fmt: skip

    def switched(self):
        size = self.save_preview("second-preview.bin")
        step("layer switched", second_preview_size=size,
             second_preview_state=self.preview_state(),
             second_layer_palette=self.widget.layer_row.colors(),
             second_target=self.widget.target_row.colors(),
             target_name_label=self.widget.target_name.text(),
             target_name_visible=self.widget.target_name.isVisible())  # fmt: skip
        self.second.remove()  # the photo in view again, for the screenshots
        self.document.setActiveNode(self.layer)
        selection = Selection()
        selection.select(*SELECTION, 255)
        self.document.setSelection(selection)
        wait_for(lambda: self.preview_state().startswith("Preview: the selection"),
                 self.selection_previewed, 60, "the selection's preview")  # fmt: skip

    def selection_previewed(self):
        self.save_preview("rectangle-preview.bin")
        out = Path(CONFIG["out"])
        self.docker().grab().save(str(out / "docker-selection.png"))
        self.window.qwindow().grab().save(str(out / "window-selection.png"))
        # The selection reshaped with the same bounds (its four corners cut off): the
        # preview must follow.
        x, y, width, height = SELECTION
        reshaped = Selection()
        reshaped.select(x, y, width, height, 255)
        for left, top in ((x, y), (x + width - 30, y), (x, y + height - 20),
                          (x + width - 30, y + height - 20)):  # fmt: skip
            reshaped.select(left, top, 30, 20, 0)
        self.document.setSelection(reshaped)
        self.reshaped_at = time.monotonic()
        before, controller = self.widget.preview.source.cacheKey(), self.widget.controller
        bounds = [reshaped.x(), reshaped.y(), reshaped.width(), reshaped.height()]
        step("selection reshaped", reshaped_bounds=bounds)
        wait_for(lambda: self.widget.preview.source.cacheKey() != before
                 and self.preview_state().startswith("Preview: the selection")
                 and controller._preview_job is None, self.reshaped_previewed, 30,
                 "the preview of the reshaped selection")  # fmt: skip

    def reshaped_previewed(self):
        size = self.save_preview("selection-preview.bin")
        step("selection previewed", selection_preview_size=size,
             selection_preview_state=self.preview_state(),
             seconds_to_notice_reshape=round(time.monotonic() - self.reshaped_at, 2))  # fmt: skip
        self.widget.apply_button.click()
        wait_for(lambda: self.widget.status.text().startswith("Added layer") or self.error_shown(),
                 self.selection_applied, 120, "the selection's new layer")  # fmt: skip

    def selection_applied(self):
        new = self.document.activeNode()
        (Path(CONFIG["out"]) / "selection-applied.bin").write_bytes(
            bytes(new.pixelData(*SELECTION))
        )
        step("selection applied", selection_status=self.widget.status.text(),
             selection_layer=new.name())  # fmt: skip
        Krita.instance().action("deselect").trigger()
        self.moved_layer()

    # --- an 800 x 800 canvas (not whole 64-px tiles), its layer moved half off it ---------
    def moved_layer(self):
        """Krita's Node.thumbnail shows a layer's stored tiles, off-canvas ones too: the
        preview and the swatches must show only what Apply recolours."""
        app = Krita.instance()
        self.moved_doc = app.createDocument(800, 800, "moved", "RGBA", "U8", "", 72.0)
        self.window.addView(self.moved_doc)
        node = self.moved_doc.createNode("Moved", "paintlayer")
        magenta = bytes((255, 0, 255, 255))  # the left half: moved off the canvas
        rows = []
        for y in range(800):
            stripes = MOVED_STRIPES[0] if y < 300 else MOVED_STRIPES[1]
            right = b"".join(bytes((*bgr, 255)) * width for bgr, width in stripes)
            rows.append(magenta * 400 + right)
        node.setPixelData(b"".join(rows), 0, 0, 800, 800)
        self.moved_doc.rootNode().addChildNode(node, None)
        node.move(-400, 0)
        self.moved_node = node
        self.moved_doc.setActiveNode(node)
        controller = self.widget.controller
        wait_for(lambda: self.preview_state().startswith("Preview: the layer, 400 × 800 px")
                 and controller._palette_job is None and controller._preview_job is None,
                 self.moved_previewed, 60, "the moved layer's preview")  # fmt: skip

    def moved_previewed(self):
        size = self.save_preview("moved-preview.bin")
        step("moved layer previewed", moved_preview_size=size,
             moved_layer_palette=self.widget.layer_row.colors(),
             moved_preview_state=self.preview_state())  # fmt: skip
        self.widget.apply_button.click()
        wait_for(lambda: self.widget.status.text().startswith("Added layer") or self.error_shown(),
                 self.moved_applied, 120, "the moved layer's new layer")  # fmt: skip

    def moved_applied(self):
        new = self.moved_doc.activeNode()
        (Path(CONFIG["out"]) / "moved-applied.bin").write_bytes(
            bytes(new.pixelData(0, 0, 400, 800))
        )
        step("moved layer applied", moved_status=self.widget.status.text())
        # Painting on the layer (a yellow block on the visible half): the docker's poll
        # notices it and reads the swatches and the preview again.
        self.moved_doc.setActiveNode(self.moved_node)
        controller = self.widget.controller
        wait_for(lambda: controller.layer is not None and controller.layer.name == "Moved"
                 and controller._palette_job is None and controller._preview_job is None,
                 self.paint_moved, 30, "the moved layer active again")  # fmt: skip

    def paint_moved(self):
        self.palette_before_paint = self.widget.layer_row.colors()
        self.preview_before_paint = self.widget.preview.source.cacheKey()
        block = bytes((0, 230, 250, 255)) * (200 * 250)  # #fae600, B G R A
        self.moved_node.setPixelData(block, 100, 400, 200, 250)
        self.painted_at = time.monotonic()
        wait_for(lambda: self.widget.layer_row.colors() != self.palette_before_paint
                 and self.widget.preview.source.cacheKey() != self.preview_before_paint,
                 self.moved_painted, 30, "the swatches after painting")  # fmt: skip

    def moved_painted(self):
        step("painted", palette_before_paint=self.palette_before_paint,
             palette_after_paint=self.widget.layer_row.colors(),
             seconds_to_notice_paint=round(time.monotonic() - self.painted_at, 2))  # fmt: skip
        # The docker closed with its own close button, then opened from Tools > Scripts.
        self.docker().close()
        wait_for(lambda: not self.docker().isVisible(), self.reopen, 10, "the docker to close")

    def reopen(self):
        menu_action(self.window, "Tools", "Scripts", "Recolor with Palette…").trigger()
        wait_for(lambda: self.docker().isVisible(), self.reopened, 10,
                 "the docker to open again from Tools > Scripts")  # fmt: skip

    def reopened(self):
        step("reopened from Tools > Scripts", reopened_visible=self.docker().isVisible())
        # Settings > Dockers > Recolor with Palette: Krita's toggle action for the docker.
        self.docker().close()
        self.docker().toggleViewAction().trigger()
        wait_for(lambda: self.docker().isVisible(), self.open_big, 10,
                 "the docker from Settings > Dockers")  # fmt: skip

    # --- a big layer: the daemon killed mid-job, the document closed, Krita quit -----------
    def open_big(self, then=None):
        app = Krita.instance()
        self.big = app.openDocument(CONFIG["big_image"])
        self.window.addView(self.big)
        key = self.big.rootNode().childNodes()[0].uniqueId().toString()
        controller = self.widget.controller
        # Its preview made too: a preview job that started the daemon again right after the
        # kill below would let the Apply's client send its request again and succeed.
        wait_for(lambda: controller.layer is not None and controller.layer.key == key
                 and controller.layer_palette and controller._palette_job is None
                 and controller._preview_job is None
                 and self.preview_state().startswith("Preview:"),
                 then or self.kill_mid_job, 120, "the big layer's palette")  # fmt: skip

    def status(self):
        return self.widget.status.text()

    def apply_then(self, then, delay_ms=300):
        """Press Apply; `delay_ms` after the request went out (its status), call then()."""
        self.widget.apply_button.click()
        wait_for(lambda: "×" in self.status(), lambda: QTimer.singleShot(delay_ms, then), 60,
                 "the recolour request")  # fmt: skip

    def kill_mid_job(self):
        step("big layer", big_children_before=self.children_of(self.big))
        # PaletteNet (the test daemon's random weights) takes seconds on 6 MP; the classical
        # method's answer can come back before the kill lands.
        controller = self.widget.controller
        controller.set_method("palettenet")
        wait_for(lambda: controller._preview_job is None
                 and self.preview_state().startswith("Preview:"),
                 lambda: self.apply_then(self.kill_daemon), 120,
                 "the PaletteNet preview")  # fmt: skip

    def children_of(self, document):
        return [n.name() for n in document.rootNode().childNodes()]

    def kill_daemon(self):
        processes = self.widget.controller.launcher._processes
        (pid,) = [process.pid for process in processes.values()]
        status = self.status()
        os.kill(pid, signal.SIGKILL)
        self.killed_at = time.monotonic()
        step("daemon killed", killed_pid=pid, status_at_kill=status)
        wait_for(self.error_shown, self.stopped_shown, 60, "a message after the kill")

    def stopped_shown(self):
        widget = self.widget

        def box(w):  # the widget's rectangle in the docker's coordinates
            corner = w.mapTo(widget, w.rect().topLeft())
            return [corner.x(), corner.y(), w.width(), w.height()]

        self.docker().grab().save(str(Path(CONFIG["out"]) / "docker-killed.png"))
        step("message after the kill", seconds_to_message=time.monotonic() - self.killed_at,
             message_after_kill=self.status(), message_tooltip=widget.status.toolTip(),
             preview_box=box(widget.preview), preview_state_box=box(widget.preview_state),
             status_box=box(widget.status_area),
             status_fits=widget.status.heightForWidth(widget.status_area.viewport().width())
             <= widget.status_area.viewport().height(),
             big_children_after_kill=self.children_of(self.big))  # fmt: skip
        self.widget.apply_button.click()  # again: the daemon must be started again
        wait_for(lambda: self.status().startswith("Added layer") or self.error_shown(),
                 self.applied_after_restart, 180, "Apply after the kill")  # fmt: skip

    def applied_after_restart(self):
        processes = self.widget.controller.launcher._processes
        step("applied after the kill", status_after_restart=self.status(),
             restarted_pids=[process.pid for process in processes.values()],
             big_children_after_restart=self.children_of(self.big))  # fmt: skip
        self.apply_then(self.close_big, delay_ms=200)

    def close_big(self):
        self.status_before_close = self.status()
        # Every line the docker shows from now on: the next document's palette may replace
        # the closed image's line before a poll here sees it.
        self.shown, show_status = [], self.widget.show_status

        def recording(text, kind, *detail):
            self.shown.append([kind, text])
            show_status(text, kind, *detail)

        self.widget.show_status = recording
        self.big.setModified(False)
        self.big.close()
        wait_for(lambda: self.widget.controller._apply_job is None, self.closed, 60,
                 "the job of the closed image to end")  # fmt: skip

    def closed(self):
        self.widget.show_status = type(self.widget).show_status.__get__(self.widget)
        step("image closed during a job", status_before_close=self.status_before_close,
             statuses_after_close=self.shown,
             documents_after_close=len(Krita.instance().documents()))  # fmt: skip
        self.open_big(then=lambda: self.apply_then(self.quit_during_job, delay_ms=200))

    def quit_during_job(self):
        step("quitting during a job", status_at_quit=self.status(),
             job_running=self.widget.controller._apply_job is not None)  # fmt: skip
        record["done"] = True
        save()
        quit_krita()


driver = Driver()


def window_created():
    QTimer.singleShot(2000, driver.start)  # let Krita finish building the window


Krita.instance().notifier().windowCreated.connect(window_created)
