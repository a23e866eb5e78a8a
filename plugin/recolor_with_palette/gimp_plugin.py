"""GIMP 3's entry: the procedure python-fu-recolor-with-palette, Colors > Recolor with Palette...

Thin by design: registration, the dialog, and turning errors into PDB errors. The work is in
gimp_api.py (every GIMP call, and the flow) and client.py. Runs in GIMP's plug-in process,
started by plug-ins/recolor-with-palette/recolor-with-palette.py.
"""

import os
import sys

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("GimpUi", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp, GimpUi, GLib, GObject  # noqa: E402

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
from .palettes import DEFAULT_COLORS, MAX_COLORS  # noqa: E402
from .wire import DEFAULT_ADDRESS as WIRE_DEFAULT_ADDRESS  # noqa: E402

PROCEDURE = "python-fu-recolor-with-palette"
DEFAULT_ADDRESS = os.environ.get("PALETTENET_ADDRESS", WIRE_DEFAULT_ADDRESS)
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
        source_palette = None
        if run_mode == Gimp.RunMode.INTERACTIVE:
            count = config.get_property("colors")
            source_palette = layer_palette(editor, client, layers, count, progress)
            for index, color in enumerate(source_palette):
                config.set_property(f"color-{index + 1}", editor.color(color))
            if not show_dialog(procedure, config, len(source_palette), len(layers)):
                return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
        palette, palette_name = target_palette(editor, config)
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


def target_palette(editor: GimpEditor, config) -> tuple[list, str | None]:
    """(colours, palette name or None): the "palette" text argument (scripts) if given, else
    the chosen GIMP palette, else the colour arguments."""
    text = (config.get_property("palette") or "").strip()
    if text:
        return [entry.strip() for entry in text.split(",") if entry.strip()], None
    if config.get_property("target") == "gimp-palette":
        gimp_palette = config.get_property("gimp-palette")
        return gimp_palette_colors(editor, gimp_palette), gimp_palette.get_name()
    count = config.get_property("colors")
    colors = [config.get_property(f"color-{i + 1}") for i in range(count)]
    if all(color.get_rgba()[3] == 0 for color in colors):  # never set: GIMP's (0, 0, 0, 0)
        raise EditorError("No target colours: give 'palette' ('#rrggbb,...'), a GIMP palette "
                          "(target 'gimp-palette'), or the colour arguments.")  # fmt: skip
    return [editor.color_hex(color) for color in colors], None


def show_dialog(procedure, config, count: int, layers: int = 1) -> bool:
    """The dialog with `count` colour buttons; its title says how many layers it recolours."""
    GimpUi.init(PROCEDURE)
    title = "Recolor with Palette" + (f": {layers} layers alike" if layers > 1 else "")
    dialog = GimpUi.ProcedureDialog(procedure=procedure, config=config, title=title)
    dialog.fill(["method", "target", "gimp-palette"] + [f"color-{i + 1}" for i in range(count)])
    accepted = dialog.run()
    dialog.destroy()
    return accepted


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
