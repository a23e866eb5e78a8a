"""Run inside Krita by tests/test_plugin_krita_real.py (animation tests), with a window on
an X display:

    DISPLAY=:N kritarunner -s krita_animation_job -f make_kra CONFIG.json
    DISPLAY=:N kritarunner -s krita_animation_job -f main CONFIG.json

make_kra imports the test's frame PNGs as one animated paint layer "Walk" (Krita's
Document.importAnimation, one keyframe per file) and saves it as a .kra file: Krita 5.1.5's
import crashes now and then by itself, so the tests import in a Krita of their own (retried)
and open the file in the Krita under test. main opens that file in a window, makes "Walk"
the active layer and lets the installed plug-in's own code (KritaEditor, Controller,
QtRunner) recolour it with each method in CONFIG["methods"]: Apply, then the frames of the
new layer are saved, then ONE Edit > Undo (Krita's own action) and the layers and frames are
saved again. The test compares the files. The outcomes are in CONFIG["kra"] + ".json" and
result.json (kritarunner always exits 0).
"""

import json
import os
import sys
import time
import traceback
from pathlib import Path

from krita_headless_job import Recorder, pump


def frames_of(node, region, times):
    return [bytes(node.pixelDataAtTime(*region, time)) for time in times]


def settle(document):
    from PyQt5.QtCore import QCoreApplication

    for _ in range(20):
        QCoreApplication.processEvents()
        document.waitForDone()
        time.sleep(0.01)


def run_method(krita, document, layer, method, config, out: Path) -> dict:
    from recolor_with_palette.controller import Controller
    from recolor_with_palette.krita_api import KritaEditor
    from recolor_with_palette.qt_runner import QtRunner
    from recolor_with_palette.settings import Settings

    app = krita.Krita.instance()
    editor = KritaEditor(krita)
    view, runner = Recorder(), QtRunner()
    settings = Settings(address=config["address"], auto_start=False, timeout_s=300)
    settings.method = method
    controller = Controller(editor, view, runner, settings)
    times = config["times"]
    region = (0, 0, document.width(), document.height())
    parent = layer.parentNode()
    before = [n.name() for n in parent.childNodes()]
    originals = frames_of(layer, region, times)
    started = time.monotonic()
    for _ in range(10):
        editor.active_layer()  # what the docker's poll does every 0.7 s
    record = {"poll_ms": round((time.monotonic() - started) * 100, 2)}
    controller.check_layer()
    pump(lambda: view.layer_palette or any(k == "error" for k, _ in view.statuses), 180)
    record.update(method=method, layer_palette=view.layer_palette,
                  described=[t for _, t in view.statuses])  # fmt: skip
    for index, color in config["edits"]:
        controller.set_target_color(index, color)
    started = time.monotonic()
    document.setCurrentTime(config["playhead"])
    settle(document)
    controller.apply()
    pump(lambda: any(("Added" in t or k == "error") for k, t in view.statuses[-1:]), 600)
    record["apply_s"] = round(time.monotonic() - started, 2)
    settle(document)
    record["statuses"] = view.statuses
    record["target"], record["source"] = controller.target, controller.layer_palette
    record["children_before"] = before
    record["children_after"] = [n.name() for n in parent.childNodes()]
    record["playhead_after"] = document.currentTime()
    if len(record["children_after"]) > len(before):
        result = parent.childNodes()[before.index(layer.name()) + 1]
        record["result_animated"] = result.animated()
        record["result_keyframes"] = [t for t in range(100) if result.hasKeyframeAtTime(t)]
        for time_, data in zip(times, frames_of(result, region, times)):
            (out / f"{method}-result-{time_}.bin").write_bytes(data)
    record["original_unchanged"] = frames_of(layer, region, times) == originals
    app.action("edit_undo").trigger()  # ONE Edit > Undo
    settle(document)
    record["children_after_undo"] = [n.name() for n in parent.childNodes()]
    record["original_unchanged_after_undo"] = frames_of(layer, region, times) == originals
    for time_, data in zip(times, originals):
        (out / f"original-{time_}.bin").write_bytes(data)
    runner.shutdown()
    return record


def main(args):
    config = json.loads(Path(args[0]).read_text())
    out = Path(config["out"])
    records, error = [], None
    try:
        sys.path.insert(0, config["pykrita"])  # the plug-in as install.py installed it
        import krita

        app = krita.Krita.instance()
        document = app.openDocument(config["kra"])
        window = app.openWindow()
        window.addView(document)
        settle(document)
        layer = document.nodeByName("Walk")
        document.setActiveNode(layer)
        settle(document)
        for method in config["methods"]:
            records.append(run_method(krita, document, layer, method, config, out))
    except Exception:
        error = traceback.format_exc()
    (out / "result.json").write_text(json.dumps({"records": records, "error": error}))
    os._exit(0)


def make_kra(args):
    """The frames CONFIG["frames"] (PNG files of CONFIG["size"]) as one animated paint layer
    "Walk", a keyframe every CONFIG["step"] frames from 0, saved as CONFIG["kra"]; what
    happened in CONFIG["kra"] + ".json" ({"error": None, "keyframes": [...]})."""
    config = json.loads(Path(args[0]).read_text())
    outcome = {"error": None}
    try:
        import krita

        app = krita.Krita.instance()
        app.setBatchmode(True)  # no dialogs
        width, height = config["size"]
        document = app.createDocument(width, height, "walk", "RGBA", "U8",
                                      "sRGB-elle-V2-srgbtrc.icc", 72.0)  # fmt: skip
        window = app.openWindow()  # the import needs a window
        window.addView(document)
        settle(document)
        if not document.importAnimation(config["frames"], 0, config["step"]):
            raise RuntimeError("Krita could not import the frames")
        settle(document)
        layer = next(n for n in document.rootNode().childNodes() if n.animated())
        layer.setName("Walk")
        outcome["keyframes"] = [t for t in range(100) if layer.hasKeyframeAtTime(t)]
        if not document.saveAs(config["kra"]):
            raise RuntimeError(f"Krita could not save {config['kra']}")
        settle(document)
    except Exception:
        outcome["error"] = traceback.format_exc()
    Path(config["kra"] + ".json").write_text(json.dumps(outcome))
    os._exit(0)
