"""GIMP 3's entry: the procedure python-fu-recolor-with-palette, Colors > Recolor with Palette...

Thin by design: registration, the dialog (with its live preview's widgets), and turning
errors into PDB errors. The work is in gimp_api.py (every GIMP call, and the flow),
gimp_preview.py (the preview's logic) and client.py. Runs in GIMP's plug-in process,
started by plug-ins/recolor-with-palette/recolor-with-palette.py.
"""

import os
import sys

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("GimpUi", "3.0")
gi.require_version("Gegl", "0.4")
gi.require_version("Gtk", "3.0")
from gi.repository import Gegl, Gimp, GimpUi, GLib, GObject, Gtk  # noqa: E402

from .autostart import Launcher  # noqa: E402
from .client import METHODS  # noqa: E402
from .errors import EditorError  # noqa: E402
from .gimp_api import (  # noqa: E402
    GimpEditor,
    gimp_palette_colors,
    layer_palette,
    pdb_error_text,
    ready_client,
    recolor_layers,
    target_layers,
    with_progress,
)
from .gimp_preview import (  # noqa: E402
    PREVIEW_SIDE,
    DialogPreview,
    GLibRunner,
    PreviewTarget,
    preview_client,
)
from .palettes import DEFAULT_COLORS, MAX_COLORS  # noqa: E402
from .wire import DEFAULT_ADDRESS as WIRE_DEFAULT_ADDRESS  # noqa: E402

PROCEDURE = "python-fu-recolor-with-palette"
DEFAULT_ADDRESS = os.environ.get("PALETTENET_ADDRESS", WIRE_DEFAULT_ADDRESS)
# A file the dialog's preview appends its latency measurements to (tests, benchmarks)
PREVIEW_LOG = os.environ.get("PALETTENET_PREVIEW_LOG") or None
READWRITE = GObject.ParamFlags.READWRITE
# Where the target colours come from: the colour buttons (pre-filled with the layer's own
# palette in the dialog) or one of GIMP's palettes (the Palettes dialog's list).
TARGETS = {"colors": "The colour buttons", "gimp-palette": "A GIMP palette"}


def run(procedure, run_mode, image, drawables, config, data):
    # Every Gimp/Gegl call happens on this (the main) thread; with_progress runs only the
    # network waits in a worker thread (libgimp is not thread-safe, see gimp_api.py).
    editor = GimpEditor(Gimp, Gegl)

    def progress(text, work):
        return with_progress(Gimp, text, work)

    try:
        layers = target_layers(Gimp, drawables)
        address = (config.get_property("server") or "").strip() or DEFAULT_ADDRESS
        client = progress("Connecting to the backend…", lambda: ready_client(address, Launcher()))
        source_palette, count = None, None
        if run_mode == Gimp.RunMode.INTERACTIVE:
            count = config.get_property("colors")
            source_palette = layer_palette(editor, client, layers, count, progress)
            for index, color in enumerate(source_palette):
                config.set_property(f"color-{index + 1}", editor.color(color))
            count = len(source_palette)  # the layer may have fewer colours than asked

            def preview_target():  # what OK would send now (the preview's; main thread)
                colors, name = target_palette(editor, config, count)
                pairs = source_palette if name is None else None
                return PreviewTarget(colors, pairs, config.get_property("method"), name)

            def make_preview(view):
                return DialogPreview(editor, preview_client(client), image, layers,
                                     preview_target, GLibRunner(GLib), view,
                                     log_path=PREVIEW_LOG)  # fmt: skip

            if not show_dialog(procedure, config, count, len(layers), make_preview):
                return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
        palette, palette_name = target_palette(editor, config, count)
        if palette_name is not None:
            source_palette = None  # a designer palette: the daemon pairs it by lightness
        method = config.get_property("method")
        recolor_layers(editor, client, image, layers, palette, method, source_palette,
                       progress=progress, palette_name=palette_name)  # fmt: skip
    except Exception as error:  # every failure is a PDB error with a message, never a trace
        message = pdb_error_text(error)
        failure = GLib.Error.new_literal(Gimp.PlugIn.error_quark(), message, 0)
        return procedure.new_return_values(Gimp.PDBStatusType.EXECUTION_ERROR, failure)
    return procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, GLib.Error())


def target_palette(editor: GimpEditor, config, count: int | None = None) -> tuple[list, str | None]:
    """(colours, palette name or None): the "palette" text argument (scripts) if given, else
    the chosen GIMP palette, else the first `count` colour arguments (the dialog's buttons;
    None: the "colors" argument)."""
    text = (config.get_property("palette") or "").strip()
    if text:
        return [entry.strip() for entry in text.split(",") if entry.strip()], None
    if config.get_property("target") == "gimp-palette":
        gimp_palette = config.get_property("gimp-palette")
        return gimp_palette_colors(editor, gimp_palette), gimp_palette.get_name()
    count = config.get_property("colors") if count is None else count
    colors = [config.get_property(f"color-{i + 1}") for i in range(count)]
    if all(color.get_rgba()[3] == 0 for color in colors):  # never set: GIMP's (0, 0, 0, 0)
        raise EditorError("No target colours: give 'palette' ('#rrggbb,...'), a GIMP palette "
                          "(target 'gimp-palette'), or the colour arguments.")  # fmt: skip
    return [editor.color_hex(color) for color in colors], None


def show_dialog(procedure, config, count: int, layers: int = 1, make_preview=None) -> bool:
    """The dialog with `count` colour buttons; its title says how many layers it recolours.
    make_preview(view) -> gimp_preview.DialogPreview: a live preview beside the settings,
    updated at every change of the config (a colour button follows its colour dialog while
    it is dragged)."""
    GimpUi.init(PROCEDURE)
    title = "Recolor with Palette" + (f": {layers} layers alike" if layers > 1 else "")
    dialog = GimpUi.ProcedureDialog(procedure=procedure, config=config, title=title)
    buttons = [f"color-{i + 1}" for i in range(count)]
    dialog.fill(["method", "target", "gimp-palette"] + buttons)
    for name in buttons:
        follow_color_button(dialog, config, name)
    preview, handler = None, None
    if make_preview is not None:
        panel = PreviewPanel()
        beside_settings(dialog, panel.widget)
        # Return presses OK, as without the preview (GTK would otherwise give the focus to
        # the method's combo box, where Return opens it; seen in the real GIMP 3.0.4)
        ok = dialog.get_widget_for_response(Gtk.ResponseType.OK)
        if ok is not None:
            dialog.connect_after("map", lambda _dialog: ok.grab_focus())
        try:
            preview = make_preview(panel)
        except EditorError as error:  # e.g. the selection misses the layer: OK says it too
            panel.show_state(f"No preview: {error}", "error")
        if preview is not None:
            handler = config.connect("notify", preview.changed)
            preview.changed()  # the first preview, at once
    try:
        accepted = dialog.run()
    finally:
        if preview is not None:
            config.disconnect(handler)
            preview.close()
            preview.runner.close()
    dialog.destroy()
    return accepted


def follow_color_button(dialog, config, name: str) -> None:
    """Make the config follow colour button `name`, also while its colour dialog is being
    dragged. Seen in the real GIMP 3.0.4: the button writes its colour into the config only
    at its colour dialog's OK, and once it follows the drag (set_update, needed for a live
    preview) not even then: the button showed the new colour and OK recoloured with the
    old one. So the button's color-changed signal is copied into the config here, which
    also drives the preview (the config's notify)."""
    widget = dialog.get_widget(name, GObject.TYPE_NONE)
    if not hasattr(widget, "get_color_widget"):  # not the GimpLabelColor GIMP 3.0 makes
        return
    button = widget.get_color_widget()
    button.set_update(True)  # color-changed while dragging, not only at the dialog's OK
    copying = []  # non-empty while the config is being set from the button

    def copy(button):
        color = button.get_color()
        # Setting the config sets the button again, which emits color-changed again with
        # the same colour (seen in GIMP 3.0.4): without this guard that never ends.
        if copying or color.get_rgba() == config.get_property(name).get_rgba():
            return
        copying.append(True)
        try:
            config.set_property(name, color)
        finally:
            copying.clear()

    button.connect("color-changed", copy)


def beside_settings(dialog, widget) -> None:
    """Put `widget` to the right of what dialog.fill() packed (a tall dialog would not fit
    a laptop's screen with twelve colours and the preview below them)."""
    content = dialog.get_content_area()
    settings = Gtk.Box(orientation=Gtk.Orientation.VERTICAL, spacing=6)
    for child in content.get_children():
        content.remove(child)
        settings.pack_start(child, False, False, 0)
    row = Gtk.Box(orientation=Gtk.Orientation.HORIZONTAL, spacing=12)
    row.pack_start(settings, False, False, 0)
    row.pack_start(widget, True, True, 0)
    content.pack_start(row, True, True, 0)
    row.show_all()


class PreviewPanel:
    """The preview's widgets, the view of gimp_preview.DialogPreview: the recoloured layer
    (GIMP's preview area, which shows transparency as checks), a toggle to compare with the
    original, and a line saying what is shown, or what went wrong."""

    def __init__(self, side: int = PREVIEW_SIDE):
        self.widget = Gtk.Box(orientation=Gtk.Orientation.VERTICAL, spacing=6)
        self.area = GimpUi.PreviewArea()
        self.area.set_size_request(side, side)
        self.compare = Gtk.CheckButton.new_with_mnemonic("Show ori_ginal")
        self.compare.connect("toggled", lambda _button: self._draw())
        self.state = Gtk.Label(label="", xalign=0.0)
        self.state.set_line_wrap(True)
        self.state.set_max_width_chars(48)
        self.state.set_selectable(True)  # an error can be copied into a report
        self.widget.pack_start(self.area, False, False, 0)
        self.widget.pack_start(self.compare, False, False, 0)
        self.widget.pack_start(self.state, False, False, 0)
        self.original = self.result = None

    def show_original(self, pixels) -> None:
        self.original = pixels
        self.area.set_size_request(pixels.width, pixels.height)
        self._draw()

    def show_preview(self, pixels) -> None:
        self.result = pixels
        self._draw()

    def show_state(self, text: str, kind: str) -> None:
        escaped = GLib.markup_escape_text(text, -1)
        markup = {"error": f"<span foreground='#e05050'>{escaped}</span>",
                  "busy": f"<i>{escaped}</i>"}.get(kind, escaped)  # fmt: skip
        self.state.set_markup(markup)

    def _draw(self) -> None:
        shown = self.original if self.compare.get_active() or self.result is None else self.result
        if shown is not None:
            self.area.draw(0, 0, shown.width, shown.height, Gimp.ImageType.RGBA_IMAGE,
                           shown.data, shown.width * 4)  # fmt: skip


class RecolorWithPalette(Gimp.PlugIn):
    def do_query_procedures(self):  # noqa: N802 - GIMP's name
        return [PROCEDURE]

    def do_set_i18n(self, name):  # noqa: N802
        return False

    def do_create_procedure(self, name):  # noqa: N802
        Gegl.init(None)
        procedure = Gimp.ImageProcedure.new(self, name, Gimp.PDBProcType.PLUGIN, run, None)
        procedure.set_image_types("*")  # indexed images become RGB in the undo step
        # One selected drawable, or several (each recoloured alike)
        sensitivity = Gimp.ProcedureSensitivityMask
        procedure.set_sensitivity_mask(sensitivity.DRAWABLE | sensitivity.DRAWABLES)
        procedure.set_menu_label("Recolor with Palette...")
        procedure.add_menu_path("<Image>/Colors")
        procedure.set_documentation(
            "Recolour the layer to a colour palette, as a new layer",
            "Recolours the selected layer (within the selection) to the target palette with "
            "PaletteNet or the classical method (Chang et al. 2015) and adds the result as a "
            "new layer above it. Several selected layers (a layer group: the layers inside "
            "it) are recoloured alike, with one source-to-target mapping taken from all of "
            "them, each into its own new layer, in one undo step. Needs the palettenet "
            "backend (install.py sets it up and the plug-in starts it). Scripts pass the "
            "colours as 'palette': '#rrggbb,#rrggbb,...'.",
            name,
        )
        procedure.set_attribution("Recolor with Palette", "MIT", "2025")
        methods = Gimp.Choice.new()
        for number, (method, label) in enumerate(METHODS.items()):
            methods.add(method, number, label, "")
        procedure.add_choice_argument("method", "_Method", "Recolouring method", methods,
                                      "palettenet", READWRITE)  # fmt: skip
        targets = Gimp.Choice.new()
        for number, (target, label) in enumerate(TARGETS.items()):
            targets.add(target, number, label, "")
        procedure.add_choice_argument("target", "_Target colours", "Where the new colours come "
                                      "from", targets, "colors", READWRITE)  # fmt: skip
        procedure.add_palette_argument("gimp-palette", "GIMP _palette", "The palette to "
                                       "recolour to when Target colours is a GIMP palette "
                                       "(its first 12 colours)", True, None, True,
                                       READWRITE)  # fmt: skip
        procedure.add_int_argument("colors", "_Colours", "How many colours (1-12)",
                                   1, MAX_COLORS, DEFAULT_COLORS, READWRITE)  # fmt: skip
        grey = Gegl.Color.new("#808080")
        for index in range(MAX_COLORS):
            number = index + 1
            procedure.add_color_argument(
                f"color-{number}", f"Colour _{number}", f"Target colour {number}", False, grey,
                READWRITE,
            )  # fmt: skip
        procedure.add_string_argument("palette", "Palette",
                                      "Target colours '#rrggbb,...' (overrides the colour "
                                      "arguments)", "", READWRITE)  # fmt: skip
        procedure.add_string_argument("server", "Backend address", "palettenet daemon address",
                                      DEFAULT_ADDRESS, READWRITE)  # fmt: skip
        return procedure


def main():
    Gimp.main(RecolorWithPalette.__gtype__, sys.argv)
