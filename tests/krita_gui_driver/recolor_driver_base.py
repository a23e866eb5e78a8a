"""What both Krita drivers need (the GUI test's, recolor_test_driver, and the stall
benchmark's, recolor_stall_bench): a result file written as they go, waiting for a condition
on Krita's event loop without blocking it, and a quit without "save changes?" dialogs.

Installed beside them in pykrita/ (a plain module: Krita loads only plug-ins with a .desktop
file, and puts pykrita/ on sys.path, so they import it).
"""

import json
import time
import traceback
from pathlib import Path

from krita import Krita
from PyQt5.QtCore import QTimer


def quit_krita():
    app = Krita.instance()
    for document in app.documents():
        document.setModified(False)  # no "save changes?" dialog
    app.action("file_quit").trigger()


class Results:
    """The driver's record (a dict), saved to `path` after every change."""

    def __init__(self, path: Path, record: dict):
        self.path, self.record = path, record

    def save(self):
        self.path.write_text(json.dumps(self.record, indent=1))

    def fail(self, text):
        self.record["error"] = text
        self.save()
        quit_krita()

    def wait_for(self, condition, then, timeout_s, what, poll_ms=100):
        """then() once condition() holds, polled every poll_ms on the event loop; a
        failure (a timeout, an exception) is recorded and Krita quits."""
        deadline = time.monotonic() + timeout_s

        def poll():
            try:
                if condition():
                    then()
                elif time.monotonic() > deadline:
                    self.fail(f"timed out waiting for {what}")
                else:
                    QTimer.singleShot(poll_ms, poll)
            except Exception:
                self.fail(traceback.format_exc())

        QTimer.singleShot(poll_ms, poll)
