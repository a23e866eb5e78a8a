"""The GIMP 3 plug-in's logic (gimp_api.py) against mock Gimp/Gegl modules and a real daemon:
the new layer above, one undo group, the image's own storage format on the wire, the
selection as a mask, greyscale and indexed images, GIMP palettes, errors as the PDB error's
text, and every libgimp call on the main thread (the mock refuses others, as the real GIMP
crashed on them). tests/test_plugin_gimp_real.py checks the same in the real GIMP 3."""

import threading

import numpy as np
import pytest
from gimp_mock import (
    Color,
    Config,
    Gegl,
    GLib,
    GroupLayer,
    Image,
    Palette,
    WrongThreadError,
    gimp_module,
    gimpui_module,
    gtk_module,
)
from servers import daemon_answer

from plugin.recolor_with_palette import gimp_api
from plugin.recolor_with_palette.autostart import Launcher
from plugin.recolor_with_palette.client import CancelToken, Client, Connection
from plugin.recolor_with_palette.controller import JobContext
from plugin.recolor_with_palette.errors import MESSAGES, EditorError, RecolorError
from plugin.recolor_with_palette.gimp_api import (
    GimpEditor,
    gimp_palette_colors,
    layer_palette,
    pdb_error_text,
    ready_client,
    recolor_layer,
    recolor_layers,
    target_layers,
    with_progress,
)
from plugin.recolor_with_palette.gimp_preview import (
    DialogPreview,
    GLibRunner,
    PreviewTarget,
)
from plugin.recolor_with_palette.latest_only import LatestOnly

PALETTE = ["#0b1d51", "#725ac1", "#8d86c9", "#cac4ce", "#f7ece1", "#e0b1cb"]


@pytest.fixture
def gimp():
    return gimp_module()


@pytest.fixture
def client(daemon):
    return Client(Connection(daemon.address))


def picture(height=30, width=40):
    y, x = np.mgrid[0:height, 0:width]
    values = np.stack([x / width, y / height, 0.3 + 0 * x, np.ones_like(x * 1.0)], -1)
    values[:5, :5, 3] = 0.0
    return values


@pytest.mark.parametrize(
    "precision, babl, wire",
    [("u8-non-linear", "R'G'B'A u8", "RGBA8"), ("u8-perceptual", "R~G~B~A u8", "RGBA8"),
     ("u16-linear", "RGBA u16", "RGBA16_LINEAR"), ("u32-non-linear", "R'G'B'A u16", "RGBA16"),
     ("half-linear", "RGBA half", "RGBAF16_LINEAR"),
     ("double-linear", "RGBA float", "RGBAF32_LINEAR"),
     ("float-non-linear", "R'G'B'A float", "RGBAF32")],
)  # fmt: skip
def test_new_layer_above_in_one_undo_group_at_the_images_precision(
    gimp, client, daemon, precision, babl, wire
):
    image = Image(40, 30, precision)
    image.add_layer("Background", np.ones((30, 40, 4)))
    photo = image.add_layer("Photo", picture())
    editor = GimpEditor(gimp, Gegl)
    before = photo.buffer.values.copy()
    layer = recolor_layer(editor, client, image, photo, PALETTE, "palettenet")

    assert [item.name for item in image.layers] == [layer.name, "Photo", "Background"]
    assert layer.name.startswith("Recolor: #0b1d51")
    assert image.log == ["undo group start", f"new layer {layer.name}",
                         f"insert {layer.name} at 0", "undo group end"]  # fmt: skip
    assert np.array_equal(photo.buffer.values, before)  # the original is not touched
    ((written_format, written),) = layer.buffer.writes
    assert written_format == babl and layer.buffer.flushed and layer.updated == (0, 0, 40, 30)
    sent = photo.buffer.get(Gegl.Rectangle(0, 0, 40, 30), 1.0, babl, None)
    assert written == daemon_answer(daemon, wire, 40, 30, sent, PALETTE)


def test_selection_limits_the_layer_and_travels_as_the_mask(gimp, client, daemon):
    image = Image(60, 40)
    photo = image.add_layer("Photo", picture(30, 40), offsets=(10, 5))
    image.select(0, 0, 30, 20, value=1.0)  # overlaps the layer at image (10..30, 5..20)
    editor = GimpEditor(gimp, Gegl)
    layer = recolor_layer(editor, client, image, photo, PALETTE, "palettenet")
    assert layer.offsets == (10, 5) and (layer.width, layer.height) == (20, 15)
    ((_, written),) = layer.buffer.writes
    sent = photo.buffer.get(Gegl.Rectangle(0, 0, 20, 15), 1.0, "R'G'B'A u8", None)
    mask = image.get_selection().get_buffer().get(Gegl.Rectangle(10, 5, 20, 15), 1.0, "Y u8", None)
    assert mask == b"\xff" * 300
    assert written == daemon_answer(daemon, "RGBA8", 20, 15, sent, PALETTE, mask)


def test_a_selection_beside_the_layer_is_an_error_and_adds_nothing(gimp, client):
    image = Image(60, 40)
    photo = image.add_layer("Photo", picture(10, 10))
    image.select(30, 30, 5, 5)
    with pytest.raises(EditorError, match="does not cover any of “Photo”"):
        recolor_layer(GimpEditor(gimp, Gegl), client, image, photo, PALETTE, "palettenet")
    assert image.log == []


def test_a_greyscale_image_becomes_rgb_in_the_same_undo_group(gimp, client):
    image = Image(40, 30, base="GRAY")
    grey = picture()
    grey[..., :3] = grey[..., :1]
    photo = image.add_layer("Grey", grey)
    layer = recolor_layer(GimpEditor(gimp, Gegl), client, image, photo, PALETTE, "chang2015")
    assert image.log[:2] == ["undo group start", "convert to RGB"]
    assert image.log[-1] == "undo group end" and image.layers[0] is layer


def test_an_indexed_image_becomes_rgb_so_the_result_is_not_snapped(gimp, client):
    image = Image(40, 30, base="INDEXED")
    photo = image.add_layer("Indexed", picture())
    layer = recolor_layer(GimpEditor(gimp, Gegl), client, image, photo, PALETTE, "chang2015")
    assert image.log[:2] == ["undo group start", "convert to RGB"]
    assert image.log[-1] == "undo group end" and image.layers[0] is layer


def test_a_gimp_palette_gives_its_colours_and_names_the_layer(gimp, client):
    editor = GimpEditor(gimp, Gegl)
    palette = Palette("Bears", ["#2a1a0f", "#8b5a2b", "#d2b48c"])
    assert gimp_palette_colors(editor, palette) == ["#2a1a0f", "#8b5a2b", "#d2b48c"]
    image = Image(40, 30)
    photo = image.add_layer("Photo", picture())
    colors = gimp_palette_colors(editor, palette)
    layer = recolor_layer(editor, client, image, photo, colors, "chang2015", palette_name="Bears")
    assert layer.name == "Recolor: Bears"
    with pytest.raises(EditorError, match="has no colours"):
        gimp_palette_colors(editor, Palette("Empty", []))
    with pytest.raises(EditorError, match="Choose a GIMP palette"):
        gimp_palette_colors(editor, None)


def test_the_mock_refuses_libgimp_calls_from_another_thread(gimp):
    image = Image(40, 30)
    photo = image.add_layer("Photo", picture())
    editor = GimpEditor(gimp, Gegl)
    with pytest.raises(WrongThreadError, match="not thread-safe"):
        with_progress(gimp, "Reading…", lambda: editor.thumbnail(photo))


def test_the_dialog_is_prefilled_with_the_layers_palette(gimp, client):
    image = Image(40, 30)
    photo = image.add_layer("Photo", picture())
    editor = GimpEditor(gimp, Gegl)
    progress = lambda text, work: with_progress(gimp, text, work)  # noqa: E731
    colors = layer_palette(editor, client, [photo], 5, progress)  # pixels read on this thread
    assert ("init", "Reading the layer's palette…") in gimp.progress.calls
    assert len(colors) == 5 and all(c.startswith("#") and len(c) == 7 for c in colors)
    for color in colors:  # what the colour buttons hold reads back as the same hex
        assert editor.color_hex(editor.color(color)) == color


def test_errors_become_the_pdb_errors_text(gimp, client, tmp_path):
    with pytest.raises(EditorError) as caught:
        target_layers(gimp, [])
    assert pdb_error_text(caught.value) == "Select the layer (or layers) to recolour."
    image = Image(40, 30)
    photo = image.add_layer("Photo", picture())
    with pytest.raises(RecolorError) as caught:
        recolor_layer(GimpEditor(gimp, Gegl), client, image, photo, ["#12345"], "palettenet")
    assert "target palette is not valid: '#12345' is not a colour" in pdb_error_text(caught.value)
    with pytest.raises(RecolorError) as caught:  # the daemon's refusal, in plain words
        recolor_layer(GimpEditor(gimp, Gegl), client, image, photo, PALETTE, "magic")
    assert pdb_error_text(caught.value).startswith(MESSAGES["bad_request"])
    assert image.log == []
    with pytest.raises(RecolorError) as caught:
        ready_client("tcp://127.0.0.1:9", Launcher(tmp_path / "none.json"), timeout_s=1)
    assert pdb_error_text(caught.value).startswith(MESSAGES["no_backend"])
    assert "ZeroDivisionError" in pdb_error_text(ZeroDivisionError("x"))


def test_progress_pulses_while_waiting_and_errors_come_through(gimp):
    import time

    assert with_progress(gimp, "Working…", lambda: time.sleep(0.35) or 42) == 42
    calls = gimp.progress.calls
    assert calls[0] == ("init", "Working…") and calls[-1] == ("end",)
    assert calls.count(("pulse",)) >= 3
    with pytest.raises(RecolorError):
        with_progress(gimp, "Failing…", lambda: (_ for _ in ()).throw(RecolorError("busy")))


# --- the procedure itself, with gi replaced ------------------------------------------------
class Recorder:
    """Records calls; any method name works (Gimp.ImageProcedure's many setters)."""

    def __init__(self):
        self.calls = []
        self.keywords = []  # (name, keyword arguments) of the calls that had some

    def __getattr__(self, name):
        def record(*args, **kwargs):
            self.calls.append((name, args))
            if kwargs:
                self.keywords.append((name, kwargs))
            return self

        return record

    def new_return_values(self, status, error):
        return status, getattr(error, "message", None)


@pytest.fixture
def gimp_plugin(monkeypatch, gimp):
    """plugin.recolor_with_palette.gimp_plugin imported against fake gi modules."""
    import sys
    import types

    procedure = Recorder()
    fake_gimp = types.SimpleNamespace(
        **vars(gimp),
        PlugIn=type("PlugIn", (), {"error_quark": staticmethod(lambda: "quark")}),
        ImageProcedure=types.SimpleNamespace(new=lambda *args: procedure),
        PDBProcType=types.SimpleNamespace(PLUGIN="plugin"),
        ProcedureSensitivityMask=types.SimpleNamespace(DRAWABLE=1, DRAWABLES=2),
        PDBStatusType=types.SimpleNamespace(
            SUCCESS="success", CANCEL="cancel", EXECUTION_ERROR="execution-error"
        ),  # fmt: skip
        RunMode=types.SimpleNamespace(INTERACTIVE="interactive", NONINTERACTIVE="non"),
        Choice=types.SimpleNamespace(new=Recorder),
        main=lambda *args: None,
    )
    glib = GLib()
    glib.Error = _GLibError
    repository = types.SimpleNamespace(
        Gimp=fake_gimp,
        GimpUi=gimpui_module(),
        Gegl=types.SimpleNamespace(**vars(Gegl), init=lambda argv: None),
        GLib=glib,
        GObject=types.SimpleNamespace(
            ParamFlags=types.SimpleNamespace(READWRITE="rw"), TYPE_NONE="none"
        ),  # fmt: skip
        Gtk=gtk_module(),
    )
    gi = types.SimpleNamespace(require_version=lambda *args: None, repository=repository)
    monkeypatch.setitem(sys.modules, "gi", gi)
    monkeypatch.setitem(sys.modules, "gi.repository", repository)
    monkeypatch.delitem(sys.modules, "plugin.recolor_with_palette.gimp_plugin", raising=False)
    import plugin.recolor_with_palette.gimp_plugin as module

    return module, procedure


class _GLibError:
    def __init__(self):
        self.message = None

    @staticmethod
    def new_literal(quark, message, code):
        error = _GLibError()
        error.message = message
        return error


def test_procedure_registers_its_menu_and_arguments(gimp_plugin):
    module, procedure = gimp_plugin
    module.RecolorWithPalette().do_create_procedure(module.PROCEDURE)
    calls = dict(procedure.calls)
    assert calls["set_menu_label"] == ("Recolor with Palette...",)
    assert ("add_menu_path", ("<Image>/Colors",)) in procedure.calls
    assert calls["set_image_types"] == ("*",)  # indexed images too: they become RGB
    assert calls["set_sensitivity_mask"] == (1 | 2,)  # one drawable selected, or several
    arguments = [args[0] for name, args in procedure.calls if name.endswith("_argument")]
    assert arguments == ["method", "target", "gimp-palette", "colors"] + [
        f"color-{i}" for i in range(1, 13)] + ["palette", "server"]  # fmt: skip
    assert module.RecolorWithPalette().do_query_procedures() == ["python-fu-recolor-with-palette"]


def test_non_interactive_run_adds_the_layer_and_failures_are_pdb_errors(gimp_plugin, daemon):
    module, procedure = gimp_plugin
    image = Image(40, 30)
    photo = image.add_layer("Photo", picture())
    config = Config({"server": daemon.address, "palette": ",".join(PALETTE), "colors": 6,
                     "method": "chang2015", "target": "colors"})  # fmt: skip
    status, message = module.run(procedure, "non", image, [photo], config, None)
    assert (status, message) == ("success", None)
    assert image.layers[0].name.startswith("Recolor: #0b1d51") and len(image.layers) == 2
    config.values["server"] = "nonsense"
    status, message = module.run(procedure, "non", image, [photo], config, None)
    assert status == "execution-error" and message.startswith(MESSAGES["bad_address"])


def test_interactive_run_reads_pixels_on_the_main_thread_and_uses_the_dialogs_colours(
    gimp_plugin, daemon
):
    """The menu's path (INTERACTIVE): the layer's palette fills the colour buttons, the
    dialog (accepted here) hands back the colours; no libgimp call leaves the main thread."""
    module, procedure = gimp_plugin
    image = Image(40, 30)
    photo = image.add_layer("Photo", picture())
    config = Config({"server": daemon.address, "palette": "", "colors": 4,
                     "method": "chang2015", "target": "colors"})  # fmt: skip
    status, message = module.run(procedure, "interactive", image, [photo], config, None)
    assert (status, message) == ("success", None)
    prefilled = [config.values[f"color-{i}"] for i in range(1, 5)]
    assert all(hasattr(color, "get_rgba") for color in prefilled)
    assert len(image.layers) == 2


def test_a_gimp_palette_chosen_in_the_dialog_is_the_target(gimp_plugin, daemon):
    module, procedure = gimp_plugin
    image = Image(40, 30)
    photo = image.add_layer("Photo", picture())
    bears = Palette("Bears", ["#2a1a0f", "#8b5a2b", "#d2b48c", "#f5deb3"])
    config = Config({"server": daemon.address, "palette": "", "colors": 6,
                     "method": "chang2015", "target": "gimp-palette",
                     "gimp-palette": bears})  # fmt: skip
    status, message = module.run(procedure, "non", image, [photo], config, None)
    assert (status, message) == ("success", None)
    assert image.layers[0].name == "Recolor: Bears"


def test_a_script_giving_no_target_colours_gets_an_error_not_a_black_layer(gimp_plugin, daemon):
    module, procedure = gimp_plugin
    image = Image(40, 30)
    photo = image.add_layer("Photo", picture())
    unset = Color((0.0, 0.0, 0.0, 0.0))  # what GIMP's config holds for an unset colour
    config = Config({"server": daemon.address, "palette": "  ", "colors": 6,
                     "method": "chang2015", "target": "colors",
                     **{f"color-{i}": unset for i in range(1, 7)}})  # fmt: skip
    status, message = module.run(procedure, "non", image, [photo], config, None)
    assert status == "execution-error" and message.startswith("No target colours")
    assert len(image.layers) == 1


def test_a_layer_mask_stands_for_its_layer_and_a_channel_is_refused(gimp):
    image = Image(40, 30)
    photo = image.add_layer("Photo", picture())
    mask = photo.create_mask("white")
    photo.add_mask(mask)
    assert target_layers(gimp, [mask]) == [photo]  # GIMP selects the mask after Add Layer Mask
    assert target_layers(gimp, [mask, photo]) == [photo]  # each layer once
    with pytest.raises(EditorError, match="is a channel, not a layer"):
        target_layers(gimp, [photo, image.get_selection()])


def test_the_new_layer_gets_the_sources_layer_mask(gimp, client):
    image = Image(40, 30)
    photo = image.add_layer("Photo", picture())
    mask = photo.create_mask("white")
    mask.buffer.values[:, :20] = 0.0  # the left half hidden
    photo.add_mask(mask)
    photo.set_apply_mask(True)
    layer = recolor_layer(GimpEditor(gimp, Gegl), client, image, photo, PALETTE, "chang2015")
    assert layer.get_mask() is not None and layer.get_apply_mask()
    assert np.array_equal(layer.get_mask().buffer.values, mask.buffer.values)


def test_a_transparent_layer_is_refused_before_any_request(gimp, client):
    image = Image(40, 30)
    clear = picture()
    clear[..., 3] = 0.0
    photo = image.add_layer("Clear", clear)
    editor = GimpEditor(gimp, Gegl)
    with pytest.raises(EditorError, match="“Clear” has no visible pixels"):
        recolor_layer(editor, client, image, photo, PALETTE, "chang2015")
    with pytest.raises(EditorError, match="no visible pixels"):
        layer_palette(editor, client, [photo], 6)
    assert image.log == []


def test_a_layer_deleted_while_waiting_adds_nothing(gimp, client):
    image = Image(40, 30)
    photo = image.add_layer("Photo", picture())

    def delete_meanwhile(text, work):
        result = work()
        image.layers.remove(photo)  # the artist deleted the layer during the wait
        return result

    with pytest.raises(EditorError, match="closed while it was being recoloured"):
        recolor_layer(GimpEditor(gimp, Gegl), client, image, photo, PALETTE, "chang2015",
                      progress=delete_meanwhile)  # fmt: skip
    assert image.log == [] and image.layers == []


# --- several selected layers (issue 18 part 3) --------------------------------------------
RED, BLUE, GREEN = (0.8, 0.2, 0.2), (0.2, 0.4, 0.8), (0.2, 0.6, 0.2)
DARK = (0.08, 0.06, 0.04)
TARGET = ["#102030", "#e0a020", "#f4f0e8"]


def blocks(*colors, height=20, width=30):
    """Vertical stripes of the given sRGB colours (stored as GIMP's non-linear u8 image)."""
    values = np.ones((height, width, 4))
    for index, color in enumerate(colors):
        values[:, index * width // len(colors) : (index + 1) * width // len(colors), :3] = color
    return values


def colour_at(layer, x, y):
    values = np.frombuffer(layer.buffer.writes[-1][1], np.uint8).reshape(layer.height, -1, 4)
    return tuple(values[y, x, :3])


def test_several_layers_are_recoloured_alike_in_one_undo_group(gimp_plugin, daemon):
    """Two layers sharing red and blue, one with a near-black too: one mapping from the
    colours of both, so red (and blue) give the same colour in both result layers, each
    result above its layer, all in one undo group."""
    module, procedure = gimp_plugin
    image = Image(30, 20)
    first = image.add_layer("Red and blue", blocks(RED, BLUE))
    second = image.add_layer("Red, dark, blue", blocks(RED, DARK, BLUE))
    config = Config({"server": daemon.address, "palette": ",".join(TARGET), "colors": 3,
                     "method": "chang2015", "target": "colors"})  # fmt: skip
    status, message = module.run(procedure, "non", image, [second, first], config, None)
    assert (status, message) == ("success", None)
    names = [layer.name for layer in image.layers]
    assert names[1::2] == ["Red, dark, blue", "Red and blue"]  # each result right above
    assert all(name.startswith("Recolor: #102030") for name in names[0::2])
    assert image.log.count("undo group start") == 1 and image.log[-1] == "undo group end"
    second_result, first_result = image.layers[0], image.layers[2]
    assert colour_at(first_result, 0, 0) == colour_at(second_result, 0, 0)  # red
    assert colour_at(first_result, 29, 0) == colour_at(second_result, 29, 0)  # blue
    assert colour_at(first_result, 0, 0) != (204, 51, 51)  # recoloured, not copied

    # Recoloured on its own, the two-colour layer pairs its red differently: the shared
    # mapping is what makes the results alike.
    alone = recolor_layer(GimpEditor(module.Gimp, Gegl), Client(Connection(daemon.address)), image,
                          first, TARGET, "chang2015")  # fmt: skip
    assert colour_at(alone, 0, 0) != colour_at(first_result, 0, 0)


def test_several_layers_are_alike_with_palettenet_too(gimp_plugin, daemon):
    """With PaletteNet, which looks at each layer's surroundings, the layers' thumbnail goes
    with every layer as the reference image: one mapping, so a colour both share comes out
    the same in both."""
    module, procedure = gimp_plugin
    image = Image(30, 20)
    first = image.add_layer("Red and blue", blocks(RED, BLUE))
    second = image.add_layer("Red, dark, blue", blocks(RED, DARK, BLUE))
    config = Config({"server": daemon.address, "palette": ",".join(TARGET), "colors": 3,
                     "method": "palettenet", "target": "colors"})  # fmt: skip
    status, message = module.run(procedure, "non", image, [second, first], config, None)
    assert (status, message) == ("success", None)
    second_result, first_result = image.layers[0], image.layers[2]
    assert colour_at(first_result, 0, 0) == colour_at(second_result, 0, 0)  # red
    assert colour_at(first_result, 29, 0) == colour_at(second_result, 29, 0)  # blue
    assert colour_at(first_result, 0, 0) != (204, 51, 51)  # recoloured, not copied


def test_the_dialog_shows_the_colours_of_all_selected_layers(gimp_plugin, daemon):
    module, procedure = gimp_plugin
    image = Image(30, 20)
    reds = image.add_layer("Red", blocks(RED))
    blues = image.add_layer("Blue", blocks(BLUE))
    config = Config({"server": daemon.address, "palette": "", "colors": 2,
                     "method": "chang2015", "target": "colors"})  # fmt: skip
    status, _ = module.run(procedure, "interactive", image, [reds, blues], config, None)
    assert status == "success"
    editor = GimpEditor(module.Gimp, Gegl)
    shown = {editor.color_hex(config.values[f"color-{i}"]) for i in (1, 2)}
    assert shown == {"#cc3333", "#3366cc"}  # one from each layer
    (dialog,) = module.GimpUi.dialogs
    assert dialog.title == "Recolor with Palette: 2 layers alike"
    assert len(image.layers) == 4  # the dialog's colours (its own, unchanged): two results


def test_a_layer_that_cannot_be_recoloured_adds_no_layer_at_all(gimp, client):
    image = Image(30, 20)
    first = image.add_layer("First", blocks(RED, BLUE))
    clear = blocks(GREEN)
    clear[..., 3] = 0.0
    second = image.add_layer("Clear", clear)
    editor = GimpEditor(gimp, Gegl)
    with pytest.raises(EditorError, match="“Clear” has no visible pixels"):
        recolor_layers(editor, client, image, [first, second], TARGET, "chang2015")
    assert image.log == [] and len(image.layers) == 2  # checked before any request

    second.buffer.values[..., 3] = 1.0
    calls = []

    def failing_second(text, work):
        calls.append(text)
        if text.startswith("Recolouring “Clear”"):
            raise RecolorError("busy")
        return work()

    with pytest.raises(EditorError) as caught:
        recolor_layers(editor, client, image, [first, second], TARGET, "chang2015",
                       progress=failing_second)  # fmt: skip
    assert "Recolouring “First” (1 of 2)…" in calls
    message = pdb_error_text(caught.value)
    assert message.startswith("“Clear” (2 of 2) could not be recoloured, so no layer was added")
    assert MESSAGES["busy"] in message
    assert image.log == [] and len(image.layers) == 2


def test_a_failure_while_adding_takes_back_the_layers_already_added(gimp, client, monkeypatch):
    image = Image(30, 20)
    first = image.add_layer("First", blocks(RED, BLUE))
    second = image.add_layer("Second", blocks(GREEN, BLUE))
    editor = GimpEditor(gimp, Gegl)
    added = []
    real_new = gimp.Layer.new

    def new_then_fail(*args):
        if added:
            raise RuntimeError("out of memory in GIMP")
        added.append(real_new(*args))
        return added[-1]

    monkeypatch.setattr(gimp.Layer, "new", new_then_fail)
    with pytest.raises(RuntimeError, match="out of memory"):
        recolor_layers(editor, client, image, [second, first], TARGET, "chang2015")
    assert image.layers == [second, first]  # as before: nothing half-done
    assert image.log[0] == "undo group start" and image.log[-1] == "undo group end"
    assert image.log[-2] == f"remove {added[0].name}"


def test_a_layer_group_stands_for_the_layers_inside_it(gimp_plugin, daemon):
    module, procedure = gimp_plugin
    gimp = module.Gimp
    image = Image(30, 20)
    image.add_layer("Background", blocks(GREEN))
    group = image.add_group("Characters")
    inner = group.add_layer("Inner", blocks(RED, BLUE))
    nested = GroupLayer(image, "Nested")
    nested.parent = group
    group.children.insert(0, nested)
    deep = nested.add_layer("Deep", blocks(BLUE, RED))
    assert target_layers(gimp, [group]) == [deep, inner]
    assert target_layers(gimp, [inner, group]) == [inner, deep]  # each layer once
    config = Config({"server": daemon.address, "palette": ",".join(TARGET), "colors": 3,
                     "method": "chang2015", "target": "colors"})  # fmt: skip
    status, _ = module.run(procedure, "non", image, [group], config, None)
    assert status == "success"
    result = "Recolor: #102030 #e0a020 #f4f0e8"
    assert [layer.name for layer in group.children] == ["Nested", result, "Inner"]
    assert [layer.name for layer in nested.children] == [result, "Deep"]
    assert colour_at(group.children[1], 0, 0) == colour_at(nested.children[0], 29, 0)  # red
    assert len(image.layers) == 2  # the background was not selected: untouched
    empty = image.add_group("Empty")
    with pytest.raises(EditorError, match="holds no layers"):
        target_layers(gimp, [empty])


def test_one_mapping_with_a_repeated_target_colour_or_fewer_layer_colours(gimp, client):
    """A script's palette may repeat a colour, and the layers may have fewer colours than
    the palette: the pairs still match in length, and red stays alike in both layers."""
    editor = GimpEditor(gimp, Gegl)
    pale = (0.9, 0.9, 0.5)
    repeated = ["#102030", "#102030", "#e0a020", "#f4f0e8", "#70c0a0"]
    distinct = ["#102030", "#e0a020", "#f4f0e8", "#70c0a0", "#a02060"]
    for palette, colours in [(repeated, (RED, BLUE, GREEN, DARK, pale)), (distinct, (RED, BLUE))]:
        image = Image(30, 20)
        first = image.add_layer("First", blocks(RED))
        second = image.add_layer("Second", blocks(*colours))
        results = recolor_layers(editor, client, image, [second, first], palette, "chang2015")
        assert [layer.name for layer in image.layers] == [results[0].name, "Second",
                                                          results[1].name, "First"]  # fmt: skip
        assert colour_at(results[0], 0, 0) == colour_at(results[1], 0, 0)  # red alike
        assert colour_at(results[0], 0, 0) != (204, 51, 51)


# --- the dialog's live preview (issue 18 part 1) ------------------------------------------
class PreviewView:
    """What DialogPreview shows, recorded (only ever from the main thread: checked)."""

    def __init__(self):
        self.original, self.previews, self.states = None, [], []

    def show_original(self, pixels):
        self.original = pixels

    def show_preview(self, pixels):
        assert threading.current_thread() is threading.main_thread()
        self.previews.append(pixels)

    def show_state(self, text, kind):
        assert threading.current_thread() is threading.main_thread()
        self.states.append((kind, text))


class ManualRunner:
    """A runner whose jobs end when the test says (finish), in the test's thread."""

    def __init__(self):
        self.jobs = []

    def start(self, work, done, report):
        token = CancelToken()
        self.jobs.append((work, done, token))
        return token

    def finish(self, index):
        work, done, token = self.jobs[index]
        done(work(JobContext(token, lambda text: None)), None)


def test_latest_only_keeps_one_job_on_its_way_and_only_the_newest_waiting():
    runner = ManualRunner()
    latest = LatestOnly(runner)
    shown = []
    for number in range(1, 6):  # five palettes while the first is on its way
        latest.submit(lambda job, n=number: n,
                      lambda result, _error, newer: shown.append((result, newer)))  # fmt: skip
    assert len(runner.jobs) == 1 and latest.busy
    runner.finish(0)
    assert shown == [(1, True)]  # shown, a step behind: a newer one was waiting
    assert len(runner.jobs) == 2  # and only the newest was started: 2, 3 and 4 never
    runner.finish(1)
    assert shown == [(1, True), (5, False)] and not latest.busy and latest.started == 2

    latest.submit(lambda job: "a", lambda *outcome: shown.append(outcome))
    latest.submit(lambda job: "b", lambda *outcome: shown.append(outcome))
    latest.cancel()  # the dialog closes: the waiting one is dropped, the running one told
    assert runner.jobs[2][2].cancelled
    runner.finish(2)
    assert len(runner.jobs) == 3  # "b" never started


def preview_image():
    """A 300 x 200 layer of gradients and flat areas, with a feathered-like selection."""
    image = Image(300, 200)
    photo = image.add_layer("Photo", picture(200, 300))
    image.select(20, 10, 200, 150)
    image.selection_values[10:160, 20:60] = 0.5  # partly selected pixels
    return image, photo


def test_the_preview_is_what_apply_adds_at_preview_size(gimp, client):
    """chang2015 recolours each pixel by its colour alone, so the preview (the selected
    region sampled, the selection as its mask, the dialog's pairs) must equal Apply's new
    layer sampled at the same pixels, exactly."""
    image, photo = preview_image()
    editor = GimpEditor(gimp, Gegl)
    source = layer_palette(editor, client, [photo], 4)
    target = ["#1b2a49", "#c2571a", "#f2d0a4", "#5c946e"][: len(source)]
    glib, view = GLib(), PreviewView()
    read = lambda: PreviewTarget(target, source, "chang2015")  # noqa: E731
    preview = DialogPreview(editor, client, image, [photo], read, GLibRunner(glib), view, side=64)
    assert (view.original.width, view.original.height) == (50, 38)  # 200 x 150, every 4th
    preview.changed()
    assert glib.pump(lambda: view.previews)
    layer = recolor_layer(editor, client, image, photo, target, "chang2015", source)
    added = np.frombuffer(layer.buffer.writes[-1][1], np.uint8).reshape(150, 200, 4)
    assert view.previews[-1].data == added[::4, ::4].tobytes()
    kind, text = view.states[-1]
    assert kind == "info" and text.startswith("Preview: “Photo” within the selection, "
                                              "200 × 150 px shown at 50 × 38 (")  # fmt: skip


def test_several_layers_preview_the_first_with_the_shared_pairs(gimp, client):
    """Several layers and a GIMP palette (no source colours): the preview pairs it with the
    colours of all the layers, as Apply does, and shows the first layer's result."""
    image = Image(30, 20)
    first = image.add_layer("Red and blue", blocks(RED, BLUE))
    second = image.add_layer("Red, dark, blue", blocks(RED, DARK, BLUE))
    editor = GimpEditor(gimp, Gegl)
    glib, view = GLib(), PreviewView()
    read = lambda: PreviewTarget(TARGET, None, "chang2015", "Bears")  # noqa: E731
    preview = DialogPreview(editor, client, image, [second, first], read, GLibRunner(glib), view)
    preview.changed()
    assert glib.pump(lambda: view.previews)
    results = recolor_layers(editor, client, image, [second, first], TARGET, "chang2015",
                             palette_name="Bears")  # fmt: skip
    assert view.previews[-1].data == results[0].buffer.writes[-1][1]  # small: not sampled
    assert "(1 of 2 layers, recoloured alike)" in view.states[-1][1]


class GatedClient(Client):
    """A real client whose recolour requests wait until the test opens the gate: the
    first preview stays on its way while the test drags."""

    def __init__(self, address):
        super().__init__(Connection(address))
        self.gate, self.sent = threading.Event(), []

    def recolor(self, pixels, palette, *args, **kwargs):
        self.sent.append(list(palette))
        assert self.gate.wait(30)
        return super().recolor(pixels, palette, *args, **kwargs)


def test_a_drag_sends_only_the_newest_palette_and_the_dialog_never_waits(gimp, daemon):
    """Twenty colours while the first preview is on its way: each change is taken at once
    (the main loop never waits for the daemon), none is queued, and when the answer comes
    only the newest palette is sent; its answer is the daemon's for that palette."""
    image, photo = preview_image()
    editor = GimpEditor(gimp, Gegl)
    client = GatedClient(daemon.address)
    target = ["#1b2a49", "#c2571a", "#f2d0a4"]
    glib, view = GLib(), PreviewView()
    read = lambda: PreviewTarget(list(target), None, "palettenet")  # noqa: E731
    preview = DialogPreview(editor, client, image, [photo], read, GLibRunner(glib), view, side=64)
    preview.changed()
    assert glib.pump(lambda: client.sent)  # the first request waits at the gate
    for step in range(20):  # the drag: every change handled while that request waits
        target[1] = f"#{200 - step * 5:02x}5{step % 10}1a"
        preview.changed()
        assert glib.pump(lambda: not preview._scheduled, timeout_s=5)
        assert view.states[-1] == ("busy", "Updating the preview…")
    assert len(client.sent) == 1 and preview.latest.busy
    client.gate.set()
    assert glib.pump(lambda: len(view.previews) == 2 and not preview.latest.busy)
    assert client.sent == [["#1b2a49", "#c2571a", "#f2d0a4"], target]  # 19 never sent
    assert len(preview.latencies) == 21  # every change shown, by one of the two answers
    plain = Client(Connection(daemon.address))
    source = preview.source
    expected = plain.recolor(source.pixels, target, "palettenet", source.mask,
                             max_side=50)  # fmt: skip
    assert view.previews[-1].data == expected.data
    assert view.states[-1][0] == "info"


def test_preview_errors_are_said_in_the_dialog_and_nothing_is_sent(gimp, client):
    image, photo = preview_image()
    editor = GimpEditor(gimp, Gegl)
    glib, view = GLib(), PreviewView()
    wanted = {"target": PreviewTarget(["#102030", "#12345g"], None, "chang2015")}

    def read():
        if isinstance(wanted["target"], Exception):
            raise wanted["target"]
        return wanted["target"]

    preview = DialogPreview(editor, client, image, [photo], read, GLibRunner(glib), view)
    preview.changed()
    assert glib.pump(lambda: view.states)
    assert view.states[-1] == ("error", "The target palette is not valid: '#12345g' is not a "
                                        "colour like #1b2a3c.")  # fmt: skip
    wanted["target"] = EditorError("Choose a GIMP palette, or use the colour buttons.")
    preview.changed()
    assert glib.pump(lambda: len(view.states) == 2)
    assert view.states[-1] == ("error", "Choose a GIMP palette, or use the colour buttons.")
    assert preview.latest.started == 0 and view.previews == []

    wanted["target"] = PreviewTarget(["#102030", "#f0e0d0"], None, "magic")  # the daemon refuses
    preview.changed()
    assert glib.pump(lambda: len(view.states) == 4)  # "Updating…", then what went wrong
    assert view.states[-1][1].startswith("No preview: " + MESSAGES["bad_request"])
    stopped = DialogPreview(editor, Client(Connection("tcp://127.0.0.1:9", timeout_s=2)), image,
                            [photo], read, GLibRunner(glib), view)  # fmt: skip
    wanted["target"] = PreviewTarget(["#102030", "#f0e0d0"], None, "chang2015")
    stopped.changed()
    assert glib.pump(lambda: len(view.states) == 6)
    assert view.states[-1][1].startswith("No preview: " + MESSAGES["timeout"])  # no daemon


def test_closing_the_dialog_drops_the_preview_on_its_way(gimp, daemon):
    image, photo = preview_image()
    client = GatedClient(daemon.address)
    glib, view = GLib(), PreviewView()
    runner = GLibRunner(glib)
    read = lambda: PreviewTarget(["#102030", "#f0e0d0"], None, "chang2015")  # noqa: E731
    preview = DialogPreview(GimpEditor(gimp, Gegl), client, image, [photo], read, runner, view)
    preview.changed()
    assert glib.pump(lambda: client.sent)
    preview.close()
    runner.close()
    preview.changed()  # a late notify from the dialog being destroyed
    client.gate.set()
    glib.pump(timeout_s=1.0)
    assert view.previews == [] and view.states == [("busy", "Updating the preview…")]
    assert len(client.sent) == 1


def test_preview_source_reads_in_bands_what_one_read_gives(gimp, monkeypatch):
    image, photo = preview_image()
    editor = GimpEditor(gimp, Gegl)
    whole = editor.preview_source(image, photo, 64)
    monkeypatch.setattr(gimp_api, "SAMPLE_BAND_BYTES", 3000)  # a few rows a band
    banded = editor.preview_source(image, photo, 64)
    assert banded.pixels == whole.pixels and banded.mask == whole.mask
    values = np.frombuffer(photo.buffer.get(Gegl.Rectangle(20, 10, 200, 150), 1.0, "R'G'B'A u8",
                                            None), np.uint8).reshape(150, 200, 4)  # fmt: skip
    assert whole.pixels.data == values[::4, ::4].tobytes()
    assert whole.mask == bytes([128] * 10 + [255] * 40) * 38  # the selection, sampled alike


def test_the_dialog_drives_the_preview_and_ok_uses_the_dragged_colour(gimp_plugin, daemon):
    """The procedure's dialog (GimpUi faked as GIMP 3.0.4 behaves): a colour button follows
    its colour dialog's drag into the config (GIMP's own binding does not, and setting the
    config re-emits the button's signal: this must not loop), each change updates the
    preview beside the settings, and OK recolours with the dragged colour."""
    module, procedure = gimp_plugin
    image = Image(40, 30)
    photo = image.add_layer("Photo", picture())
    config = Config({"server": daemon.address, "palette": "", "colors": 3,
                     "method": "chang2015", "target": "colors"})  # fmt: skip
    glib = module.GLib
    seen = {}

    def artist(dialog):
        panel = dialog.content.children[0].children[1]  # beside the settings
        area, compare, state = panel.children
        assert glib.pump(lambda: len(area.drawn) == 2 and "Preview:" in state.markup)
        button = dialog.get_widget("color-2", "none").get_color_widget()
        for colour in ("#40a040", "#30b050", "#20c060"):
            button.drag_to(colour)
        assert glib.pump(lambda: "Updating the preview" in state.markup)
        assert glib.pump(lambda: "Preview:" in state.markup)
        assert len(area.drawn) == 3  # the three colours of the drag in one preview
        seen["drawn"], seen["compare"] = area.drawn[-1], compare
        compare.set_active(True)  # "Show original": the layer as it is
        seen["original"] = area.drawn[-1]
        return True

    module.GimpUi.on_run = artist
    status, message = module.run(procedure, "interactive", image, [photo], config, None)
    assert (status, message) == ("success", None)
    editor = GimpEditor(module.Gimp, Gegl)
    assert editor.color_hex(config.values["color-2"]) == "#20c060"  # the config followed
    assert "#20c060" in image.layers[0].name.split()  # and OK recoloured with it
    assert seen["drawn"] != seen["original"]
    assert seen["original"][2] == editor.thumbnail(photo, 384).data
    (dialog,) = module.GimpUi.dialogs
    assert dialog.ok.focused  # Return presses OK, as without the preview
    assert dialog.destroyed
    assert len(config.handlers) == 3  # the colour widgets' own: the preview let go of it


def test_buttons_beyond_the_layers_colours_are_not_targets(gimp_plugin, daemon):
    """Six colours asked, a layer with two: the dialog shows two buttons, and OK recolours
    to those two (the four buttons it did not show, still grey, used to be targets too)."""
    module, procedure = gimp_plugin
    image = Image(30, 20)
    photo = image.add_layer("Two colours", blocks(RED, BLUE))
    grey = Color.new("#808080")
    config = Config({"server": daemon.address, "palette": "", "colors": 6, "method": "chang2015",
                     "target": "colors", **{f"color-{i}": grey for i in range(1, 13)}})  # fmt: skip
    status, _ = module.run(procedure, "interactive", image, [photo], config, None)
    assert status == "success"
    (dialog,) = module.GimpUi.dialogs
    assert dialog.filled[3:] == ["color-1", "color-2"]
    assert sorted(image.layers[0].name.removeprefix("Recolor: ").split()) == ["#3366cc", "#cc3333"]
