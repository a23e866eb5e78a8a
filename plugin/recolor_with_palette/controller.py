"""What the Krita docker does, written without Qt or Krita so that tests can drive it.

Three parties meet here, each behind a small interface:
- the editor (krita_api.KritaEditor, or a mock): reads the active layer, adds result layers,
  knows the foreground colour and the palette resources. Called on the GUI thread only.
- the view (the docker widget, or a test recorder): shows palettes, the preview and status.
- the runner (qt_runner.QtRunner, or a test runner): runs a job off the GUI thread and
  calls back on the GUI thread; it also makes restartable timers (for the preview debounce).

Network work happens only inside jobs; reading and writing layers only outside them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .autostart import Launcher
from .client import METHODS, CancelToken, Client
from .errors import EditorError, RecolorError
from .palettes import MAX_COLORS, NamedPalette, fit_palette, layer_name, normalize_hex
from .pixels import Pixels, layer_to_wire, wire_to_layer
from .settings import Settings

THUMBNAIL_SIDE = 256  # what the palette is extracted from and the preview is made of
PREVIEW_DELAY_MS = 250  # quiet time after an edit before the preview is requested


@dataclass
class JobContext:
    """What a job's work function gets from the runner."""

    cancel: CancelToken  # checked between steps and while waiting for the daemon
    report: object  # report(text): a status line while the job runs; any thread may call it


@dataclass
class LayerInfo:
    key: object  # the editor's identity of the layer (Krita: its uniqueId)
    name: str
    color_model: str
    depth: str
    linear: bool  # the layer's profile has a linear tone curve (see pixels.py)
    handle: object = field(default=None, repr=False, compare=False)  # editor's own objects


@dataclass
class LayerPixels:
    """A rectangle of a layer in the editor's own layout, plus the selection over it."""

    layer: LayerInfo
    x: int
    y: int
    width: int
    height: int
    raw: bytes
    mask: bytes | None = None  # one byte per pixel: 0 keep, 255 recolour


class Controller:
    def __init__(self, editor, view, runner, settings: Settings, save_settings=None,
                 launcher: Launcher | None = None):  # fmt: skip
        self.editor, self.view, self.runner = editor, view, runner
        self.settings = settings
        self._save_settings = save_settings or (lambda settings: None)
        self.launcher = launcher or Launcher()
        self.layer: LayerInfo | None = None
        self.thumbnail: Pixels | None = None
        self.layer_palette: list[str] = []
        self.target: list[str] = []
        self.target_name: str | None = None
        self.target_follows_layer = True  # until the artist edits it
        # Whether target swatch i replaces layer swatch i: true for the layer's own palette
        # and edits of its swatches, not for a loaded palette (the daemon then pairs colours
        # by lightness rank).
        self.target_pairs_layer = True
        self._layer_problem: str | None = None
        self._added_layer: str | None = None
        self._palette_job: CancelToken | None = None
        self._preview_job: CancelToken | None = None
        self._preview_again = False
        self._preview_failed = False
        self._apply_job: CancelToken | None = None
        self._preview_timer = runner.timer(PREVIEW_DELAY_MS, self.start_preview)

    # --- the layer --------------------------------------------------------------------------
    def check_layer(self) -> None:
        """Call when the active layer may have changed (document switch, a poll): reads the
        palette of a newly active layer, does nothing for the same one."""
        try:
            layer = self.editor.active_layer()
        except EditorError as error:
            if self.layer is not None or str(error) != self._layer_problem:
                self._forget_layer()
                self.view.show_status(str(error), "error")
                self._layer_problem = str(error)  # said once, not at every look
            return
        self._layer_problem = None
        if self.layer is None or layer.key != self.layer.key:
            self.refresh_layer()

    def refresh_layer(self) -> None:
        """Read the active layer's thumbnail and ask the daemon for its palette."""
        if self._palette_job is not None:
            self._palette_job.cancel()
            self._palette_job = None
        try:
            self.layer = self.editor.active_layer()
            self.thumbnail = self.editor.thumbnail(THUMBNAIL_SIDE)
        except EditorError as error:
            self._forget_layer()
            self.view.show_status(str(error), "error")
            return
        self.view.show_preview(self.thumbnail)
        thumbnail, k, name = self.thumbnail, self.settings.palette_size, self.layer.name
        # Krita makes the layer an Apply added the active one: the docker follows it quietly,
        # leaving "Added layer ..." on view.
        quiet = name == self._added_layer
        self._added_layer = None

        def work(job):
            client = self._ready_client(job)
            if not quiet:
                job.report(f"Reading the palette of “{name}”…")
            return client.palette(thumbnail, k, job.cancel)

        def done(result, error):
            if job is not self._palette_job:
                return  # a newer layer or palette size took over
            self._palette_job = None
            if error is not None:
                self._show_error(error)
                return
            self.layer_palette = [normalize_hex(color) for color in result[0]]
            self.view.show_layer_palette(self.layer_palette)
            if self.target_follows_layer or not self.target:
                self._set_target(self.layer_palette, None, follows_layer=True, pairs_layer=True)
            if not quiet:
                self.view.show_status(f"Layer “{name}”: {len(self.layer_palette)} colours", "info")

        if not quiet:
            self.view.show_status(f"Reading the palette of “{name}”…", "busy")
        job = self._palette_job = self.runner.start(work, done, self._report)

    def _forget_layer(self) -> None:
        self.layer, self.thumbnail, self.layer_palette = None, None, []
        self.view.show_layer_palette([])
        self.view.show_preview(None)

    # --- editing the target palette ---------------------------------------------------------
    def set_target_color(self, index: int, color: str) -> None:
        target = list(self.target)
        target[index] = normalize_hex(color)
        self._set_target(target, None, follows_layer=False, pairs_layer=self.target_pairs_layer)

    def use_foreground(self, index: int) -> None:
        try:
            self.set_target_color(index, self.editor.foreground_color())
        except EditorError as error:
            self.view.show_status(str(error), "error")

    def load_palette(self, palette: NamedPalette) -> None:
        """A bundled designer palette or a Krita palette resource (its first 12 colours)."""
        try:
            colors = fit_palette(palette.colors)
        except ValueError as error:
            self.view.show_status(f"Palette “{palette.name}”: {error}", "error")
            return
        self._set_target(colors, palette.name, follows_layer=False, pairs_layer=False)
        if len(palette.colors) > MAX_COLORS:
            self.view.show_status(
                f"“{palette.name}” has {len(palette.colors)} colours; "
                f"its first {MAX_COLORS} are used",
                "info",
            )

    def load_palette_resource(self, name: str) -> None:
        try:
            colors = self.editor.palette_resource_colors(name)
        except EditorError as error:
            self.view.show_status(str(error), "error")
            return
        self.load_palette(NamedPalette(name, tuple(colors)))

    def reset_target(self) -> None:
        """Back to the layer's own palette, read again (the artist may have painted since)."""
        self.target_follows_layer = True
        self.refresh_layer()

    def _set_target(self, colors, name, follows_layer: bool, pairs_layer: bool) -> None:
        self.target, self.target_name = list(colors), name
        self.target_follows_layer = follows_layer
        self.target_pairs_layer = pairs_layer
        self.view.show_target(self.target, name)
        self._preview_timer.start()

    # --- settings ---------------------------------------------------------------------------
    def set_method(self, method: str) -> None:
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}")
        self.settings.method = method
        self._save_settings(self.settings)
        self._preview_timer.start()

    def set_palette_size(self, size: int) -> None:
        self.settings.palette_size = size
        self._save_settings(self.settings)
        self.refresh_layer()

    def update_settings(self, settings: Settings) -> None:
        self.settings = settings
        self._save_settings(settings)

    # --- the preview ------------------------------------------------------------------------
    def start_preview(self) -> None:
        """Recolour the thumbnail; an edit while one is on its way asks for another after it
        (only the newest palette matters, and the daemon is never sent a pile of them)."""
        if self.thumbnail is None or not self.target:
            return
        if self._preview_job is not None:
            self._preview_again = True
            return
        thumbnail, request = self.thumbnail, self._recolor_arguments()

        def work(job):
            client = self._ready_client(job)
            return client.recolor(thumbnail, max_side=THUMBNAIL_SIDE, cancel=job.cancel, **request)

        self._preview_job = self.runner.start(work, self._preview_done, self._report)

    def _preview_done(self, result, error) -> None:
        self._preview_job = None
        if self._preview_again:
            self._preview_again = False
            self.start_preview()
            return
        if error is not None:
            self._show_error(error)
            self._preview_failed = True
            return
        self.view.show_preview(result)
        if self._preview_failed and self._apply_job is None:
            self._preview_failed = False
            self.view.show_status("Preview ready", "info")  # the daemon is back: clear that

    # --- apply ------------------------------------------------------------------------------
    def apply(self) -> None:
        """Recolour the whole layer (within the selection) into a new layer above it."""
        if self._apply_job is not None:
            return
        try:
            layer = self.editor.read_layer()
        except EditorError as error:
            self.view.show_status(str(error), "error")
            return
        if not self.target:
            waiting = self._palette_job is not None
            self.view.show_status(
                "The layer's palette is still being read: Apply again in a moment."
                if waiting
                else "There is no target palette: press Reset to read the layer's palette again.",
                "error",
            )
            return
        request, name = self._recolor_arguments(), layer_name(self.target_name, self.target)

        def work(job):
            job.report("Preparing the layer…")
            pixel_format, wire = layer_to_wire(layer.raw, layer.layer.depth, layer.layer.linear)
            pixels = Pixels(layer.width, layer.height, pixel_format, wire)
            client = self._ready_client(job)
            job.report(f"Recolouring “{layer.layer.name}” ({layer.width} × {layer.height})…")
            result = client.recolor(pixels, mask=layer.mask, cancel=job.cancel, **request)
            job.cancel.check()
            return wire_to_layer(result.data, layer.layer.depth)

        def done(raw, error):
            self._apply_job = None
            self.view.set_applying(False)
            if error is not None:
                self._show_error(error)
                return
            try:
                self.editor.add_layer_above(layer, name, raw)
            except Exception as editor_error:  # EditorError, or a bug: said, never raised
                self._show_error(editor_error)
                return
            self.view.show_status(f"Added layer “{name}”", "info")
            self._added_layer = name  # Krita makes it the active layer: the docker follows

        self.view.set_applying(True)
        self.view.show_status(f"Recolouring “{layer.layer.name}”…", "busy")
        self._apply_job = self.runner.start(work, done, self._report)

    def cancel(self) -> None:
        """Stop waiting for the running Apply; nothing is added to the image."""
        if self._apply_job is not None:
            self._apply_job.cancel()

    # --- helpers ----------------------------------------------------------------------------
    def _recolor_arguments(self) -> dict:
        """palette, method and which layer colour becomes which target colour: swatch i of
        the layer's palette -> swatch i of the target, when the target came from the layer's
        swatches (both methods use it: the default model is conditioned on the colours it
        replaces). Without it the daemon pairs the colours by lightness rank."""
        source = None
        method = self.settings.method
        if self.target_pairs_layer and len(self.layer_palette) == len(self.target):
            source = list(self.layer_palette)
        return {"palette": list(self.target), "method": method, "source_palette": source}

    def _ready_client(self, job) -> Client:
        """A client for the configured daemon, which answers (started if need be)."""
        client = Client(self.settings.connection(), client_name="krita")
        self.launcher.ensure_running(
            client,
            job.report,
            job.cancel,
            timeout_s=self.settings.start_timeout_s,
            start=self.settings.auto_start,
        )
        return client

    def _report(self, text: str) -> None:
        self.view.show_status(text, "busy")

    def _show_error(self, error: Exception) -> None:
        if isinstance(error, EditorError):
            self.view.show_status(str(error), "error")
            return
        if isinstance(error, RecolorError):
            if error.code != "cancelled":
                self.view.show_status(str(error), "error")
            else:
                self.view.show_status("Cancelled: nothing was changed.", "info")
            return
        # A bug of ours: say so in the docker, never as a traceback dialog over the canvas.
        self.view.show_status(f"Unexpected error: {type(error).__name__}: {error}", "error")
