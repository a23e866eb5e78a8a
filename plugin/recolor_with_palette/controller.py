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

import os
from dataclasses import dataclass, field
from functools import partial

from .autostart import Launcher
from .client import METHODS, Cancelled, CancelToken, Client
from .errors import EditorError, RecolorError
from .palettefile import PaletteFileError, palette_kind, read_palette, strip_palette, write_palette
from .palettes import (
    MAX_COLORS,
    NamedPalette,
    distinct_colors,
    fit_palette,
    hex_to_rgb,
    layer_name,
    normalize_hex,
)
from .pixels import (
    LITTLE_ENDIAN,
    Pixels,
    layer_to_wire,
    wire_format,
    wire_to_layer,
    within_reference_limit,
)
from .settings import Settings

THUMBNAIL_SIDE = 256  # what the palette is extracted from and the preview is made of
PREVIEW_DELAY_MS = 250  # quiet time after an edit before the preview is requested
PREVIEW_STALE = "Preview out of date: updating…"
PALETTE_PENDING = "Reading the layer's palette first; Apply follows…"
# The backend died with a request (crashed, killed): said in one line; the plug-in starts it
# again with the next request. The whole story goes in the status line's tooltip.
BACKEND_STOPPED = "The backend stopped (crashed or was killed). Apply or Reset starts it again."
# A colour of the layer's palette covering less than this share of its visible pixels
# (stray or anti-aliased pixels) is not shown as a swatch.
MIN_SHARE = 0.002


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
    linear: bool  # the layer's profile is linear-light sRGB (its bytes go as _LINEAR formats)
    handle: object = field(default=None, repr=False, compare=False)  # editor's own objects
    profile: str = ""  # the editor's name of the layer's colour profile
    pieces: str = ""  # what Apply recolours with it: "12 frames", "3 layers"; "" for itself

    @property
    def shown_name(self) -> str:
        return f"{self.name} ({self.pieces})" if self.pieces else self.name


@dataclass
class LayerPixels:
    """A rectangle of a layer in the editor's layout for `depth`, plus the selection over
    it. `depth` and `linear` say what `raw` holds: the layer's own, or (a layer in another
    RGB space than sRGB) the editor's conversion of it to linear-light sRGB, converted back
    when the result is written."""

    layer: LayerInfo
    x: int
    y: int
    width: int
    height: int
    raw: bytes  # or any buffer of those bytes (Krita: anonymous memory, see krita_api)
    mask: bytes | None = None  # one byte per pixel: 0 keep, 255 recolour
    depth: str = ""  # "" : the layer's own depth and tone curve
    linear: bool = False
    # The ICC profile `raw`'s colours are in (a wide gamut, sent as stored: the daemon
    # converts); None: sRGB, or linear sRGB where `linear` says so.
    icc_profile: bytes | None = None

    def __post_init__(self):
        if not self.depth:
            self.depth, self.linear = self.layer.depth, self.layer.linear


@dataclass
class PreviewSource:
    """The rectangle Apply recolours (the layer within the canvas and the selection), scaled
    down, with the selection over it: what the preview is made of, so that the preview
    shows what Apply will add."""

    pixels: Pixels  # BGRA8, as the artist sees the layer (Krita converts it for display)
    mask: bytes | None  # the selection at the preview's size; None without a selection
    region: tuple  # (x, y, width, height) on the canvas, as Apply reads it
    key: object  # the editor's region_key(max_side) when it was read


@dataclass
class ManyPlan:
    """Apply over several pieces (layers, or an animation's frames) with ONE mapping: the
    same source -> target pairs for every piece, the source being the palette of all
    pieces together (the editor's thumbnail shows them all). Made by the editor, which
    adds the result in one undo step."""

    what: str  # "3 layers", "12 frames of “Walk”"
    labels: list  # one per piece, for progress: "“Sky”", "frame 4"
    read: object  # read(i) -> a generator (steps) returning LayerPixels, or None: skip it
    write: object  # write(i, pixels: LayerPixels, raw) -> a generator (steps)
    finish: object  # finish(name) -> a generator (steps) that adds the result
    abandon: object  # abandon(): undo what write showed (the playhead), nothing added
    frames: bool = False  # the pieces are an animation's frames


class Controller:
    def __init__(self, editor, view, runner, settings: Settings, save_settings=None,
                 launcher: Launcher | None = None):  # fmt: skip
        self.editor, self.view, self.runner = editor, view, runner
        self.settings = settings
        self._save_settings = save_settings or (lambda settings: None)
        self.launcher = launcher or Launcher()
        self.layer: LayerInfo | None = None
        self.thumbnail: Pixels | None = None  # the whole layer, small: its palette's source
        self.source: PreviewSource | None = None  # what the preview is made of
        self._region_key = None  # the editor's region_key(...) the source was read for
        self._content_key = None  # the editor's content_key() the palette was read for
        self._unreadable = None  # (layer key, content key) of a layer refresh_layer refused
        # Swatch i of the layer's palette becomes swatch i of the target whenever both have
        # as many colours (a loaded palette is put in that order: see _read_layer_palette).
        self.layer_palette: list[str] = []
        self.target: list[str] = []
        self.target_name: str | None = None
        self.target_follows_layer = True  # until the artist edits it
        self._layer_problem: str | None = None
        self._added_layer: str | None = None
        self._palette_job: CancelToken | None = None
        self._preview_job: CancelToken | None = None
        self._preview_again = False
        self._preview_failed = False
        self._apply_job: CancelToken | None = None
        self._apply_when_paired = False  # Apply was pressed while the palette was being read
        self._preview_timer = runner.timer(PREVIEW_DELAY_MS, self.start_preview)

    # --- the layer --------------------------------------------------------------------------
    def check_layer(self) -> None:
        """Call when the active layer, the document or the selection may have changed (a
        document switch, a poll): reads the palette of a newly active layer, a new preview
        source for a new selection, and does nothing when nothing changed. Waits while
        Apply runs: Apply itself moves the playhead over an animation's frames and adds a
        layer, and reading every keyframe at each move would slow the Apply it watches."""
        if self._apply_job is not None:
            return
        try:
            layer = self.editor.active_layer()
        except EditorError as error:
            if self.layer is not None or str(error) != self._layer_problem:
                self._forget_layer()
                self.view.show_status(str(error), "info" if error.hint else "error")
                self._layer_problem = str(error)  # said once, not at every look
            return
        self._layer_problem = None
        if self.layer is None and self._unreadable == (layer.key, self.editor.content_key()):
            return  # the same layer that could not be read (empty): said once, not each look
        if self.layer is None or layer.key != self.layer.key:
            self.refresh_layer()
        elif self.editor.content_key() != self._content_key:
            self.refresh_layer(painted=True)  # painted on: new swatches, a new preview
        elif self.editor.region_key(THUMBNAIL_SIDE) != self._region_key:
            self._read_preview_source()

    def refresh_layer(self, painted: bool = False) -> None:
        """Read the active layer's thumbnail and the preview's source, and ask the daemon
        for the layer's palette (`painted`: the same layer, its pixels changed)."""
        self.layer = None
        try:
            self._content_key = self.editor.content_key()
            self.layer = self.editor.active_layer()
            self.thumbnail = self.editor.thumbnail(THUMBNAIL_SIDE)
        except EditorError as error:
            if self.layer is not None:
                self._unreadable = (self.layer.key, self._content_key)
            self._forget_layer()
            self.view.show_status(str(error), "info" if error.hint else "error")
            return
        self._read_preview_source()
        # Krita makes the layer an Apply added the active one: the docker follows it quietly,
        # leaving "Added layer ..." on view.
        quiet = painted or self.layer.name == self._added_layer
        self._added_layer = None
        self._read_layer_palette(quiet)

    def _read_preview_source(self) -> None:
        """The region Apply would recolour now, small; the preview is then out of date."""
        try:
            self.source = self.editor.preview_source(THUMBNAIL_SIDE)
        except EditorError as error:
            self.source = None
            self._region_key = self.editor.region_key(THUMBNAIL_SIDE)
            self.view.show_preview(None)
            self.view.show_preview_state(f"No preview: {error}")
            return
        self._region_key = self.source.key
        self.view.show_preview(self.source.pixels)
        self._preview_changed()

    def _read_layer_palette(self, quiet: bool = False) -> None:
        """Ask the daemon for the layer's palette. With a loaded palette of n colours, the
        layer's n colours, and the loaded palette put in the daemon's dark-to-light order,
        so that colour i of the layer becomes colour i of the palette (lightness rank, as
        the daemon pairs them): the docker shows the pairs, and the preview and Apply send
        the same ones."""
        if self._palette_job is not None:
            self._palette_job.cancel()
            self._palette_job = None
        if self.thumbnail is None or self.layer is None:
            return
        loaded = list(self.target) if self.target_name and not self.target_follows_layer else None
        k = len(loaded) if loaded else self.settings.palette_size
        thumbnail, name = self.thumbnail, self.layer.shown_name

        def work(job):
            client = self._ready_client(job)
            if not quiet:
                job.report(f"Reading the palette of “{name}”…")
            colors, shares = client.palette(thumbnail, k, job.cancel)
            colors = distinct_colors(significant(colors, shares))
            ordered = None if loaded is None else dark_to_light(client, loaded, job.cancel)
            return colors, ordered

        def done(result, error):
            if job is not self._palette_job:
                return  # a newer layer, palette or palette size took over
            self._palette_job = None
            apply, self._apply_when_paired = self._apply_when_paired, False
            if error is not None:
                self._show_error(error)
                return
            colors, ordered = result
            self.layer_palette = colors
            self.view.show_layer_palette(colors)
            if self.target_follows_layer or not self.target:
                self._set_target(colors, None, follows_layer=True)
            elif ordered is not None:
                self._set_target(ordered, self.target_name, follows_layer=False)
            else:
                self._preview_timer.start()  # an edited target on another layer
            if not quiet:
                count = "1 colour" if len(colors) == 1 else f"{len(colors)} colours"
                self.view.show_status(f"Layer “{name}”: {count}", "info")
            if apply:
                self.apply()

        if not quiet:
            self.view.show_status(f"Reading the palette of “{name}”…", "busy")
        self._preview_changed(start=False)  # the palette's arrival starts it
        job = self._palette_job = self.runner.start(work, done, self._report)

    def _forget_layer(self) -> None:
        self.layer, self.thumbnail, self.layer_palette, self.source = None, None, [], None
        self._region_key = None
        self.view.show_layer_palette([])
        self.view.show_preview(None)
        self.view.show_preview_state("")

    # --- editing the target palette ---------------------------------------------------------
    def set_target_color(self, index: int, color: str) -> None:
        target = list(self.target)
        target[index] = normalize_hex(color)
        self._set_target(target, None, follows_layer=False)

    def drag_target_color(self, index: int, color: str) -> None:
        """A colour dialog's current colour while the artist drags in it: the swatch and the
        preview follow at once (no debounce). At most one preview is on its way; edits
        meanwhile only leave the newest target, which is sent when the answer arrives."""
        target = list(self.target)
        target[index] = normalize_hex(color)
        self.target, self.target_name, self.target_follows_layer = target, None, False
        self.view.show_target(self.target, None)
        if self.source is not None:
            self.view.show_preview_state(PREVIEW_STALE)
        self.start_preview()

    def target_snapshot(self) -> tuple:
        """What restore_target puts back (a colour dialog cancelled after a drag)."""
        return list(self.target), self.target_name, self.target_follows_layer

    def restore_target(self, snapshot: tuple) -> None:
        colors, name, follows_layer = snapshot
        self._set_target(colors, name, follows_layer)

    def use_foreground(self, index: int) -> None:
        try:
            self.set_target_color(index, self.editor.foreground_color())
        except EditorError as error:
            self.view.show_status(str(error), "error")

    def load_palette(self, palette: NamedPalette) -> None:
        """A bundled designer palette or a Krita palette resource (its first 12 colours),
        paired with the layer's colours of the same number by lightness rank."""
        try:
            colors = distinct_colors(fit_palette(palette.colors))
        except ValueError as error:
            self.view.show_status(f"Palette “{palette.name}”: {error}", "error")
            return
        self._set_target(colors, palette.name, follows_layer=False)
        self._read_layer_palette(quiet=True)
        if len(palette.colors) > MAX_COLORS:
            self.view.show_status(
                f"“{palette.name}” has {len(palette.colors)} colours; the docker takes "
                f"{MAX_COLORS}: its first {MAX_COLORS} are used ({colors[0]} … {colors[-1]})",
                "info",
            )

    def import_palette_file(self, path, read_image=None) -> None:
        """A palette file (.gpl, .kpl, .ase, .aco, a hex list) or a palette strip image,
        loaded as load_palette does. `read_image(path)` -> (width, height, RGBA8 bytes)
        decodes an image (the docker: QImage). A file that cannot be read changes nothing
        and is said in one line naming the file and where in it."""
        try:
            palette = read_palette_file(path, read_image)
        except PaletteFileError as error:
            self.view.show_status(f"Not imported: {error}", "error")
            return
        self.load_palette(NamedPalette(palette.name, palette.colors))
        if palette.notes and len(palette.colors) <= MAX_COLORS:
            self.view.show_status(f"“{palette.name}”: {'; '.join(palette.notes)}", "info")

    def export_palette_file(self, path, which: str = "target") -> None:
        """Write the target row ("target") or the layer's palette ("layer") as .gpl or .kpl."""
        colors = self.target if which == "target" else self.layer_palette
        if not colors:
            self.view.show_status("There is no palette to export yet.", "error")
            return
        name = self.target_name if which == "target" and self.target_name else None
        if name is None:
            layer = self.layer.name if self.layer is not None else "layer"
            name = f"{layer} (recolour target)" if which == "target" else layer
        try:
            write_palette(path, name, colors)
        except PaletteFileError as error:
            self.view.show_status(f"Not exported: {error}", "error")
            return
        self.view.show_status(f"Exported {len(colors)} colours to {path}", "info")

    def load_palette_resource(self, name: str) -> None:
        try:
            colors = self.editor.palette_resource_colors(name)
        except EditorError as error:
            self.view.show_status(str(error), "error")
            return
        self.load_palette(NamedPalette(name, tuple(colors)))

    def reset_target(self) -> None:
        """Back to the layer's own palette, read again (the artist may have painted since)."""
        self.target_follows_layer, self.target_name = True, None
        self.refresh_layer()

    def _set_target(self, colors, name, follows_layer: bool) -> None:
        self.target, self.target_name = list(colors), name
        self.target_follows_layer = follows_layer
        self.view.show_target(self.target, name)
        self._preview_changed()

    # --- settings ---------------------------------------------------------------------------
    def set_method(self, method: str) -> None:
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}")
        self.settings.method = method
        self._save_settings(self.settings)
        self._preview_changed()

    def set_palette_size(self, size: int) -> None:
        self.settings.palette_size = size
        self._save_settings(self.settings)
        self.refresh_layer()

    def update_settings(self, settings: Settings) -> None:
        self.settings = settings
        self._save_settings(settings)

    # --- the preview ------------------------------------------------------------------------
    def _preview_changed(self, start: bool = True) -> None:
        """Something the preview depends on changed: say that it is out of date until the
        new one arrives, and ask for it after the debounce."""
        if self.source is not None:
            self.view.show_preview_state(PREVIEW_STALE)
        if start:
            self._preview_timer.start()

    def start_preview(self) -> None:
        """Recolour the preview's source as Apply would recolour the layer (same region and
        selection, same palettes and pairs); an edit while one is on its way asks for
        another after it (only the newest matters, and the daemon is never sent a pile)."""
        if self.source is None or not self.target or self._palette_job is not None:
            return  # a palette still being read starts the preview when it arrives
        if self._preview_job is not None:
            self._preview_again = True
            return
        source, request = self.source, self._recolor_arguments()

        # Already small: max_side is its own size, so nothing is shrunk, but the daemon
        # knows it for a preview (kept ready for the next palette: a dragged swatch).
        side = max(source.pixels.width, source.pixels.height)

        def work(job):
            client = self._ready_client(job)
            return client.recolor(source.pixels, mask=source.mask, max_side=side,
                                  cancel=job.cancel, **request)  # fmt: skip

        def done(result, error):
            self._preview_job = None
            if self._preview_again or source is not self.source:
                if error is None and source is self.source:
                    self.view.show_preview(result)  # a step behind a drag: still worth seeing
                self._preview_again = False
                self.start_preview()
                return
            if error is not None:
                self._show_error(error)
                self._preview_failed = True
                self.view.show_preview_state("No preview: the backend failed (see below)")
                return
            self.view.show_preview(result)
            width, height = source.region[2:]
            what = "the selection" if source.mask is not None else "the layer"
            state = f"Preview: {what}, {width} × {height} px, as Apply will add it"
            self.view.show_preview_state(state)
            if self._preview_failed and self._apply_job is None:
                self._preview_failed = False
                self.view.show_status("Preview ready", "info")  # the daemon is back: clear that

        self._preview_job = self.runner.start(work, done, self._report)

    # --- apply ------------------------------------------------------------------------------
    def apply(self) -> None:
        """Recolour the whole layer (within the selection) into a new layer above it. Three
        steps: read the layer (on the GUI thread, in pieces), recolour it (a job), write
        the new layer (on the GUI thread, in pieces, one undo step)."""
        if self._apply_job is not None:
            return
        try:
            plan = self.editor.plan_many()  # several layers or frames, or None
            reader = self.editor.read_layer() if plan is None else None  # checks now
        except EditorError as error:
            self.view.show_status(str(error), "error")
            return
        if plan is not None:
            return self._apply_many(plan)
        if self._palette_job is not None:  # the pairs are not known yet: Apply once they are
            reader.close()
            self._apply_when_paired = True
            self.view.show_status(PALETTE_PENDING, "busy")
            return
        if not self.target:
            reader.close()
            self.view.show_status(
                "There is no target palette: press Reset to read the layer's palette again.",
                "error",
            )
            return
        request, name = self._recolor_arguments(), layer_name(self.target_name, self.target)
        layer_name_shown = self.layer.name if self.layer is not None else "the layer"

        def work(layer, job):
            # On little-endian machines the layer's bytes are the wire's: sent and written
            # back without a copy (each copy of hundreds of MB holds the GIL, and with it
            # every Python callback on Krita's GUI thread).
            if LITTLE_ENDIAN:
                pixel_format, wire = wire_format(layer.depth, layer.linear), layer.raw
            else:
                pixel_format, wire = layer_to_wire(layer.raw, layer.depth, layer.linear)
            pixels = Pixels(layer.width, layer.height, pixel_format, wire)
            client = self._ready_client(job)
            job.report(f"Recolouring “{layer.layer.name}” ({layer.width} × {layer.height})…")
            result = client.recolor(pixels, mask=layer.mask, cancel=job.cancel,
                                    icc_profile=layer.icc_profile, **request)  # fmt: skip
            job.cancel.check()
            raw = result.data if LITTLE_ENDIAN else wire_to_layer(result.data, layer.depth)
            return layer, raw

        def read(layer, error):
            if error is not None:
                return finished(None, error)
            done = partial(recoloured, layer)
            self._apply_job = self.runner.start(lambda job: work(layer, job), done, self._report)

        def recoloured(sent, result, error):
            if error is not None and refused_profile(error, sent):
                # The daemon's LittleCMS cannot use the layer's profile: Krita converts the
                # layer instead (slower, but the artist gets the result, not an error).
                self.editor.refuse_icc_profile(sent.layer.profile)
                self._apply_job = None
                self.view.set_applying(False)
                return self.apply()
            if error is not None:
                return finished(None, error)
            layer, raw = result
            if self._apply_job is not None and self._apply_job.cancelled:
                return finished(None, Cancelled())
            try:
                writer = self.editor.add_layer_above(layer, name, raw)  # checks now
            except Exception as editor_error:  # EditorError, or a bug: said, never raised
                return finished(None, editor_error)
            self.view.show_status(f"Adding layer “{name}”…", "busy")
            self._apply_job = self.runner.steps(writer, finished)

        def finished(_result, error):
            self._apply_job = None
            self.view.set_applying(False)
            if error is not None:
                self._show_error(error)
                return
            self.view.show_status(f"Added layer “{name}”", "info")
            self._added_layer = name  # Krita makes it the active layer: the docker follows

        self.view.set_applying(True)
        self.view.show_status(f"Reading “{layer_name_shown}”…", "busy")
        self._apply_job = self.runner.steps(reader, read)

    def _apply_many(self, plan: ManyPlan) -> None:
        """Each piece read, recoloured and written into the editor's copy in turn, with the
        same pairs (one mapping); the copy added at the end (one undo step). Nothing is
        added unless every piece was recoloured."""
        if self._palette_job is not None:
            self._apply_when_paired = True
            self.view.show_status(PALETTE_PENDING, "busy")
            return
        if not self.target or not self.layer_palette:
            self.view.show_status("There is no palette yet: press Reset to read it.", "error")
            return
        request = self._recolor_arguments()
        source, target = shared_pairs(self.layer_palette, self.target)
        # The pieces' thumbnail (all of them) as the reference: one colour mapping for all,
        # so a colour comes out the same in every frame and layer, with PaletteNet too.
        reference = within_reference_limit(self.thumbnail)
        request.update(source_palette=source, palette=target, reference=reference)
        name = layer_name(self.target_name, self.target)
        count = len(plan.labels)

        def start_piece(index):
            if index == count:
                self.view.show_status(f"Adding “{name}” ({plan.what})…", "busy")
                self._apply_job = self.runner.steps(plan.finish(name), finished)
                return
            reader = plan.read(index)
            if reader is None:
                return start_piece(index + 1)
            self.view.show_status(f"Reading {plan.labels[index]} ({index + 1} of {count})…",
                                  "busy")  # fmt: skip
            self._apply_job = self.runner.steps(reader, partial(read, index))

        def read(index, layer, error):
            if error is not None:
                return finished(None, error)
            label = f"{plan.labels[index]} ({index + 1} of {count})"

            def work(job):
                pixels = Pixels(layer.width, layer.height, *self._to_wire(layer))
                client = self._ready_client(job)
                job.report(f"Recolouring {label}…")
                result = client.recolor(pixels, mask=layer.mask, cancel=job.cancel,
                                        icc_profile=layer.icc_profile, **request)  # fmt: skip
                job.cancel.check()
                return result.data if LITTLE_ENDIAN else wire_to_layer(result.data, layer.depth)

            def recoloured(raw, error):
                if error is not None:
                    return finished(None, error)
                if self._apply_job is not None and self._apply_job.cancelled:
                    return finished(None, Cancelled())
                writer = plan.write(index, layer, raw)
                self._apply_job = self.runner.steps(writer, lambda _r, e: written(index, e))

            self._apply_job = self.runner.start(work, recoloured, self._report)

        def written(index, error):
            if error is not None:
                return finished(None, error)
            if self._apply_job is not None and self._apply_job.cancelled:
                return finished(None, Cancelled())
            start_piece(index + 1)

        def finished(_result, error):
            self._apply_job = None
            self.view.set_applying(False)
            if error is not None:
                try:
                    plan.abandon()
                finally:
                    self._show_error(error)
                return
            self.view.show_status(f"Added “{name}”: {plan.what}, one mapping", "info")
            self._added_layer = name

        self.view.set_applying(True)
        start_piece(0)

    @staticmethod
    def _to_wire(layer: LayerPixels) -> tuple:
        """(pixel format, bytes) of read pixels for the daemon (no copy on little-endian)."""
        if LITTLE_ENDIAN:
            return wire_format(layer.depth, layer.linear), layer.raw
        return layer_to_wire(layer.raw, layer.depth, layer.linear)

    def cancel(self) -> None:
        """Stop the running Apply; nothing is added to the image."""
        if self._apply_job is not None:
            self._apply_job.cancel()

    # --- helpers ----------------------------------------------------------------------------
    def _recolor_arguments(self) -> dict:
        """palette, method and which layer colour becomes which target colour: swatch i of
        the layer's palette -> swatch i of the target whenever both have as many colours
        (both methods use it: the default model is conditioned on the colours it replaces).
        Otherwise (a layer with fewer colours than a loaded palette) the daemon pairs them
        by lightness rank."""
        source = None
        if len(self.layer_palette) == len(self.target):
            source = list(self.layer_palette)
        return {"palette": list(self.target), "method": self.settings.method,
                "source_palette": source}  # fmt: skip

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
            if error.code == "backend_stopped" and self.settings.auto_start:
                self.view.show_status(BACKEND_STOPPED, "error", str(error))  # details: tooltip
            elif error.code != "cancelled":
                self.view.show_status(str(error), "error")
            else:
                self.view.show_status("Cancelled: nothing was changed.", "info")
            return
        # A bug of ours: say so in the docker, never as a traceback dialog over the canvas.
        self.view.show_status(f"Unexpected error: {type(error).__name__}: {error}", "error")


def refused_profile(error: Exception, layer) -> bool:
    """Whether `error` is the daemon refusing the ICC profile `layer` (LayerPixels) went
    with."""
    return (
        isinstance(error, RecolorError)
        and error.field == "icc_profile"
        and layer.icc_profile is not None
    )


def significant(colors: list, shares: list) -> list:
    """The palette's colours that cover at least MIN_SHARE of the layer's visible pixels
    (the daemon's shares): a few stray pixels make no swatch. The largest stays always."""
    kept = [color for color, share in zip(colors, shares) if share >= MIN_SHARE]
    return kept or [max(zip(shares, colors))[1]]


def shared_pairs(source: list, target: list) -> tuple:
    """(source, target) of equal length sent with every piece of a many-piece Apply (one
    mapping). The docker's rows pair column by column; with fewer source colours than
    target colours (the pieces hold fewer distinct colours than a loaded palette, already
    dark to light), the targets at evenly spaced ranks, the darkest and lightest kept (the
    GIMP plug-in's rule, gimp_api.shared_pairs)."""
    if len(source) >= len(target):
        return list(source[: len(target)]), list(target)
    last = len(target) - 1
    ranks = [round(i * last / (len(source) - 1)) if len(source) > 1 else 0
             for i in range(len(source))]  # fmt: skip
    return list(source), [target[rank] for rank in ranks]


def read_palette_file(path, read_image=None):
    """A palette file's PaletteFile; an image (a palette strip) is decoded by read_image."""
    try:
        with open(path, "rb") as file:
            head = file.read(16)
    except OSError as error:
        raise PaletteFileError(f"{path}: {error.strerror or error}") from None
    if palette_kind(head, str(path)) != "image":
        return read_palette(path)
    if read_image is None:
        raise PaletteFileError(f"{path}: an image, and no image reader here")
    width, height, rgba = read_image(path)
    return strip_palette(width, height, rgba, os.path.basename(str(path)))


def dark_to_light(client: Client, colors, cancel) -> list[str]:
    """`colors` in the daemon's own dark-to-light order: its `palette` op returns the
    distinct colours of an image that has at most k of them exactly, in that order, so the
    plug-in needs no colour science of its own. A colour that comes back changed (an older
    daemon) is matched to the nearest one given."""
    rgbs = [hex_to_rgb(color) for color in colors]
    data = b"".join(bytes((blue, green, red, 255)) for red, green, blue in rgbs)
    returned, _ = client.palette(Pixels(len(rgbs), 1, "BGRA8", data), len(rgbs), cancel)

    def nearest(color):
        rgb = hex_to_rgb(color)
        return min(colors, key=lambda c: sum((a - b) ** 2 for a, b in zip(hex_to_rgb(c), rgb)))

    ordered = distinct_colors(nearest(color) for color in returned)
    return ordered + [color for color in distinct_colors(colors) if color not in ordered]
