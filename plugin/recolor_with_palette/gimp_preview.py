"""The GIMP dialog's live preview: the layer recoloured small, again at each change made in
the dialog (a colour button's colour while its colour dialog is being dragged, the method,
the target), without freezing the dialog and without queueing stale requests.

What the preview recolours is what Apply (OK) recolours, sampled small: the first selected
layer within the selection, the selection as the mask, the same palette and pairs
(gimp_api.recolor_arguments; several layers: the same shared pairs, from the same
thumbnails). The daemon keeps a preview layer's encoding, so a new palette for the same
pixels costs only PaletteNet's decoder (docs/PROTOCOL.md, options.max_side).

Threads: libgimp is not thread-safe (gimp_api's docstring), so the source is read on the
main thread when the dialog opens and a preview job only talks to the daemon; its outcome
comes back to GTK's main loop (the dialog's) through GLib.idle_add. At most one request is
on its way: changes meanwhile leave only the newest, sent when the answer arrives
(latest_only.LatestOnly, the rule the Krita docker follows too).

The GLib module and the view are passed in, so tests drive all of this with mocks;
gimp_plugin.py makes the widgets.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, replace

from .client import CancelToken, Client
from .controller import JobContext
from .errors import EditorError, RecolorError
from .gimp_api import GimpEditor, pairs_for, palette_thumbnail, pdb_error_text, recolor_arguments
from .latest_only import LatestOnly

PREVIEW_SIDE = 384  # the preview's long side, in pixels
# A preview is small: a daemon that has not answered one in this time is gone or stuck, and
# the dialog says so (instead of "Updating…" for the 5 minutes a large Apply may take).
PREVIEW_TIMEOUT_S = 20.0
UPDATING = "Updating the preview…"


def preview_client(client: Client) -> Client:
    """A client for the same daemon that gives up on a preview after PREVIEW_TIMEOUT_S."""
    timeout_s = min(client.connection.timeout_s, PREVIEW_TIMEOUT_S)
    return Client(replace(client.connection, timeout_s=timeout_s), client_name=client.client_name)


@dataclass
class PreviewTarget:
    """What the dialog holds now, as the procedure's run would send it."""

    palette: list  # "#rrggbb" target colours
    source_palette: list | None  # colour i of the layer -> colour i of palette; None: by rank
    method: str
    palette_name: str | None = None  # a GIMP palette's name (it names the new layer)


class GLibRunner:
    """Jobs in a thread of their own, their outcome back on GTK's main loop: the Krita
    runner's interface (qt_runner.QtRunner) for GIMP's dialog. A job's work(context) must
    make no libgimp call."""

    def __init__(self, glib):
        self.GLib = glib
        self.closed = False  # the dialog is gone: nothing is called back any more

    def start(self, work, done, report) -> CancelToken:
        """Run work(context) in a thread; then done(result, error) on the main loop."""
        token = CancelToken()

        def run():
            context = JobContext(token, lambda text: self.later(lambda: report(text)))
            try:
                result, error = work(context), None
            except Exception as failure:  # shown in the dialog, never a traceback
                result, error = None, failure
            self.later(lambda: done(result, error))

        threading.Thread(target=run, name="recolor-preview", daemon=True).start()
        return token

    def later(self, callback) -> None:
        """callback() on the main loop, soon (GLib.idle_add is safe from any thread)."""

        def once():
            if not self.closed:
                callback()
            return False  # GLib.SOURCE_REMOVE: run once

        self.GLib.idle_add(once, priority=self.GLib.PRIORITY_DEFAULT)

    def close(self) -> None:
        self.closed = True


class DialogPreview:
    """The preview of one dialog. `read_target()` -> PreviewTarget reads the dialog's
    settings (main thread; EditorError for settings that give no palette, shown in the
    dialog). The view has show_original(pixels), show_preview(pixels) and
    show_state(text, kind), kind "busy", "info" or "error"."""

    def __init__(self, editor: GimpEditor, client: Client, image, layers: list, read_target,
                 runner, view, side: int = PREVIEW_SIDE, log_path=None,
                 clock=time.monotonic):  # fmt: skip
        self.client, self.read_target, self.runner, self.view = client, read_target, runner, view
        self.clock, self.log_path = clock, log_path
        self.layer = layers[0]
        self.source = editor.preview_source(image, self.layer, side)  # EditorError: no preview
        # Several layers and a target without its source colours: Apply pairs the palette
        # with the colours of all the layers, mapped on their thumbnail (gimp_api.recolor_layers).
        self.thumbnail = palette_thumbnail(editor, layers) if len(layers) > 1 else None
        self.count = len(layers)
        self._pairs = {}  # palette -> the shared pairs, asked of the daemon once
        self.latest = LatestOnly(runner)
        self.closed = False
        self._scheduled = False
        self._changes = []  # when each change not shown yet was made (clock seconds)
        self.latencies = []  # seconds from a change to the preview showing it
        self.round_trips = []  # seconds each preview request took
        view.show_original(self.source.pixels)

    def changed(self, *_signal_arguments) -> None:
        """Something in the dialog changed (connected to the config's notify signal). The
        burst of changes one event makes (a Reset sets every colour) is sent as one."""
        if self.closed:
            return
        self._changes.append(self.clock())
        if not self._scheduled:
            self._scheduled = True
            self.runner.later(self._send)

    def close(self) -> None:
        """The dialog is closing: the request on its way is cancelled (its answer dropped),
        none is sent after it."""
        self.closed = True
        self.latest.cancel()

    def _send(self) -> None:
        self._scheduled = False
        if self.closed:
            return
        try:
            target = self.read_target()
            palette, source_palette, _name = recolor_arguments(
                target.palette, target.source_palette, target.palette_name
            )
        except EditorError as error:  # e.g. no GIMP palette chosen: said, nothing sent
            self._changes.clear()
            self.view.show_state(str(error), "error")
            return
        asked = self.clock()
        pixels, mask = self.source.pixels, self.source.mask
        side = max(pixels.width, pixels.height)  # already small: max_side marks a preview

        def work(job):
            pairs = source_palette, palette
            if source_palette is None and self.thumbnail is not None:
                pairs = self._shared_pairs(palette, job.cancel)
            started = self.clock()
            result = self.client.recolor(pixels, pairs[1], target.method, mask, pairs[0],
                                         max_side=side, cancel=job.cancel,
                                         reference=self.thumbnail)  # fmt: skip
            return result, self.clock() - started

        def done(outcome, error, superseded):
            if self.closed:
                return
            if error is not None:
                self._changes.clear()
                if not (isinstance(error, RecolorError) and error.code == "cancelled"):
                    self.view.show_state(f"No preview: {pdb_error_text(error)}", "error")
                return
            result, round_trip = outcome
            self.view.show_preview(result)
            self._served(asked, round_trip, superseded, result, target.method)
            if not superseded:
                self.view.show_state(self._ready_text(round_trip), "info")

        self.view.show_state(UPDATING, "busy")
        self.latest.submit(work, done)

    def _shared_pairs(self, palette: list, cancel) -> tuple:
        key = tuple(palette)
        if key not in self._pairs:
            self._pairs[key] = pairs_for(self.client, self.thumbnail, palette, cancel)
        return self._pairs[key]

    def _served(self, asked: float, round_trip: float, superseded: bool, result,
                method: str) -> None:  # fmt: skip
        """Every change made before the request `asked` is now shown: its latency."""
        now = self.clock()
        served = [change for change in self._changes if change <= asked]
        self._changes = [change for change in self._changes if change > asked]
        latencies = [now - change for change in served]
        self.latencies += latencies
        self.round_trips.append(round_trip)
        if self.log_path:  # PALETTENET_PREVIEW_LOG: measurements in the real GIMP
            record = {"latencies_ms": [round(s * 1000, 1) for s in latencies],
                      "round_trip_ms": round(round_trip * 1000, 1), "superseded": superseded,
                      "size": [result.width, result.height], "method": method}  # fmt: skip
            with open(self.log_path, "a") as log:
                log.write(json.dumps(record) + "\n")
            with open(f"{self.log_path}.rgba", "wb") as shown:  # the pixels, as shown
                shown.write(bytes(result.data))

    def _ready_text(self, round_trip: float) -> str:
        region, pixels = self.source.region, self.source.pixels
        what = f"“{self.layer.get_name()}”"
        if self.count > 1:
            what += f" (1 of {self.count} layers, recoloured alike)"
        if self.source.mask is not None:
            what += " within the selection"
        return (f"Preview: {what}, {region.width} × {region.height} px shown at "
                f"{pixels.width} × {pixels.height} ({round_trip * 1000:.0f} ms)")  # fmt: skip
