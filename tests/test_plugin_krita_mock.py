"""The Krita plug-in's logic (controller.py + krita_api.py) against a mock `krita` module
(tests/krita_mock.py) and a real daemon: what an artist would check in the docker and in
the Layers docker after pressing Apply."""

import json

import numpy as np
import pytest
from krita_mock import Document, KritaApp, Node, Selection, krita_module
from servers import daemon_answer

from plugin.recolor_with_palette import client as client_module
from plugin.recolor_with_palette import transport
from plugin.recolor_with_palette.autostart import Launcher
from plugin.recolor_with_palette.client import CancelToken
from plugin.recolor_with_palette.controller import PALETTE_PENDING, Controller, JobContext
from plugin.recolor_with_palette.errors import MESSAGES, user_message
from plugin.recolor_with_palette.krita_api import KritaEditor
from plugin.recolor_with_palette.palettes import designer_palettes
from plugin.recolor_with_palette.pixels import layer_to_wire, wire_to_layer
from plugin.recolor_with_palette.settings import Settings


class Recorder:
    """The view: remembers what the docker would show."""

    def __init__(self):
        self.layer_palette, self.target, self.target_name = [], [], None
        self.preview, self.statuses, self.applying = None, [], False

    def show_layer_palette(self, colors):
        self.layer_palette = list(colors)

    def show_target(self, colors, name):
        self.target, self.target_name = list(colors), name

    def show_preview(self, pixels):
        self.preview = pixels

    def show_preview_state(self, text):
        self.preview_state = text

    def show_status(self, text, kind, detail=""):
        self.statuses.append((kind, text))
        self.detail = detail

    def set_applying(self, applying):
        self.applying = applying

    @property
    def status(self):
        return self.statuses[-1] if self.statuses else None


class Timer:
    def __init__(self, callback):
        self.callback, self.pending = callback, False

    def start(self):
        self.pending = True


class StepRunner:
    """Runs jobs when the test says so, in order; timers fire when jobs have run out."""

    def __init__(self):
        self.jobs, self.timers = [], []

    def start(self, work, done, report):
        token = CancelToken()
        self.jobs.append((work, done, report, token))
        return token

    def steps(self, generator, done):
        """Krita work in pieces on the GUI thread: here one job that runs every piece."""

        def work(job):
            try:
                while True:
                    job.cancel.check()
                    next(generator)
            except StopIteration as stop:
                return stop.value

        return self.start(work, done, None)

    def timer(self, delay_ms, callback):
        timer = Timer(callback)
        self.timers.append(timer)
        return timer

    def run(self):
        while True:
            if self.jobs:
                work, done, report, token = self.jobs.pop(0)
                try:
                    result, error = work(JobContext(token, report)), None
                except Exception as caught:
                    result, error = None, caught
                done(result, error)
                continue
            due = [timer for timer in self.timers if timer.pending]
            if not due:
                return
            for timer in due:
                timer.pending = False
                timer.callback()


class Setup:
    def __init__(self, daemon, tmp_path, document: Document):
        self.app = KritaApp()
        self.app.document = document
        self.app.palettes = {"Big": [f"#{i:02x}{i:02x}{i:02x}" for i in range(20)],
                             "Gappy": ["#ff0000", None, "#00ff00"]}  # fmt: skip
        self.document = document
        self.editor = KritaEditor(krita_module(self.app))
        self.view = Recorder()
        self.runner = StepRunner()
        settings = Settings(address=daemon.address, auto_start=False)
        self.controller = Controller(
            self.editor, self.view, self.runner, settings,
            lambda s: s.save(self.editor.write_setting),
            Launcher(tmp_path / "no-backend.json"),
        )  # fmt: skip

    def open(self):
        self.controller.check_layer()
        self.runner.run()


def gradient_layer(document: Document, name="Photo"):
    """A layer of colour ramps (B, G, R, A in U8) with a transparent corner."""
    height, width = document.height_px, document.width_px
    y, x = np.mgrid[0:height, 0:width]
    layer = document.add_layer(name)
    rgba = np.stack([x / width, y / height, 0.5 + 0 * x, np.ones_like(x * 1.0)], -1)
    rgba[: height // 5, : width // 5, 3] = 0
    if document.depth == "U8":
        layer.fill(np.round(rgba[..., [2, 1, 0, 3]] * 255))
    elif document.depth == "U16":
        layer.fill(np.round(rgba[..., [2, 1, 0, 3]] * 65535))
    else:
        layer.fill(rgba)
    return layer


@pytest.fixture
def setup(daemon, tmp_path):
    document = Document(60, 40)
    gradient_layer(document)
    return Setup(daemon, tmp_path, document)


# --- palettes in the docker ----------------------------------------------------------------
def test_docker_shows_the_layers_six_colours_and_a_preview(setup):
    setup.open()
    view = setup.view
    assert len(view.layer_palette) == 6 and all(c.startswith("#") for c in view.layer_palette)
    assert view.target == view.layer_palette  # until the artist edits it
    assert view.preview is not None and view.preview.pixel_format == "BGRA8"
    assert max(view.preview.width, view.preview.height) <= 256
    assert view.status == ("info", "Layer “Photo”: 6 colours")


def test_palette_size_setting_changes_the_number_of_swatches(setup):
    setup.open()
    setup.controller.set_palette_size(3)
    setup.runner.run()
    assert len(setup.view.layer_palette) == 3 and len(setup.view.target) == 3
    assert setup.app.settings[("RecolorWithPalette", "palette_size")] == "3"


def test_swatch_edits_foreground_designer_and_krita_palettes_and_reset(setup):
    setup.open()
    controller, view = setup.controller, setup.view
    controller.set_target_color(2, "#FF0000")
    assert view.target[2] == "#ff0000" and view.target[:2] == view.layer_palette[:2]
    controller.use_foreground(0)
    assert view.target[0] == "#123456"
    controller.load_palette(designer_palettes()[4])
    assert view.target == list(designer_palettes()[4].colors)
    assert view.target_name == "Designer 005"
    controller.load_palette_resource("Big")
    assert len(view.target) == 12 and view.target[1] == "#010101"
    assert "first 12" in view.status[1]
    controller.load_palette_resource("Gappy")  # empty slots are skipped
    assert view.target == ["#ff0000", "#00ff00"]
    previews_before = view.preview
    setup.runner.run()  # the debounced preview of the last edit
    assert view.preview is not previews_before
    setup.document.activeNode().fill(np.array([0, 0, 255, 255]), 0, 0, 30, 40)  # paint red
    controller.reset_target()
    setup.runner.run()
    assert view.target == view.layer_palette and view.target_name is None
    assert "#ff0000" in view.layer_palette  # read again: the new red is there


def test_an_edited_target_stays_when_the_artist_switches_layers(setup):
    setup.open()
    setup.controller.load_palette(designer_palettes()[0])
    second = gradient_layer(setup.document, "Second")
    second.fill(np.array([0, 0, 200, 255]), 0, 0, 30, 40)
    setup.open()
    assert setup.view.target == list(designer_palettes()[0].colors)
    assert any("Layer “Second”" in text for _, text in setup.view.statuses)


# --- apply ---------------------------------------------------------------------------------
def test_apply_adds_one_layer_above_in_one_undo_step_and_leaves_the_original(setup, daemon):
    document = setup.document
    below = document.add_layer("Below")
    original = gradient_layer(document, "Photo")
    document.add_layer("Above")
    document.active = original
    before = original.pixels.copy()
    setup.open()
    setup.controller.load_palette(designer_palettes()[1])
    setup.controller.apply()  # the loaded palette is still being paired with the layer's:
    assert setup.view.status == ("busy", PALETTE_PENDING)  # Apply follows once it is
    setup.runner.run()

    assert document.layers() == ["Photo", "Below", "Photo", "Recolor: Designer 002", "Above"], (
        setup.view.statuses[-3:]
    )
    assert document.undo_steps == ["add layer Recolor: Designer 002"]  # exactly one step
    assert np.array_equal(original.pixels, before) and "setPixelData" not in original.calls
    result = document.root.children[3]
    assert result.type() == "paintlayer" and document.activeNode() is result
    # The designer palette, dark to light, each colour replacing the layer's colour of the
    # same lightness rank (the daemon's own order): what the docker shows, column by column.
    target = setup.view.target
    assert sorted(target) == sorted(designer_palettes()[1].colors)
    assert target != list(designer_palettes()[1].colors)  # this one was not in that order
    expected = daemon_answer(daemon, "BGRA8", 60, 40, before.tobytes(), target,
                             source_palette=setup.view.layer_palette)  # fmt: skip
    assert result.pixels.tobytes() == expected
    assert np.array_equal(result.pixels[..., 3], before[..., 3])  # alpha kept
    assert below.pixels.max() == 0  # other layers untouched
    assert setup.view.status == ("info", "Added layer “Recolor: Designer 002”")
    setup.open()  # the docker follows Krita to the new layer, and keeps the message
    assert setup.view.status == ("info", "Added layer “Recolor: Designer 002”")
    assert setup.view.target == target


def test_selection_is_sent_as_the_mask_and_limits_the_new_layer(setup, daemon, monkeypatch):
    document = setup.document
    original = document.activeNode()
    document.setSelection(Selection(document, 10, 5, 30, 20))
    sent = spy_on_requests(monkeypatch)
    setup.open()
    setup.controller.set_target_color(0, "#ff8800")  # an edit: an unedited Apply changes nothing
    setup.runner.run()
    setup.controller.apply()
    setup.runner.run()

    recolor = applied(sent)
    header = json.loads(recolor[0])
    assert (header["width"], header["height"]) == (30, 20)
    assert recolor[2] == b"\xff" * 600  # the selection's mask over that rectangle
    result = document.root.children[-1]
    assert result.pixels[:5].max() == 0 and result.pixels[:, :10].max() == 0  # nothing outside
    region = original.pixels[5:25, 10:40]
    assert not np.array_equal(result.pixels[5:25, 10:40], region)
    expected = daemon_answer(daemon, "BGRA8", 30, 20, region.tobytes(), setup.view.target,
                             recolor[2], source_palette=header["source_palette"])  # fmt: skip
    assert result.pixels[5:25, 10:40].tobytes() == expected


def test_a_soft_selection_blends_and_a_mask_node_means_its_layer(setup, monkeypatch):
    document = setup.document
    layer = document.activeNode()
    document.setSelection(Selection(document, 0, 0, 60, 40, value=0))  # "keep" everywhere
    mask_node = document.createNode("Transparency", "transparencymask")
    layer.addChildNode(mask_node, None)
    document.undo_steps.clear()
    document.active = mask_node
    setup.open()
    setup.controller.apply()
    setup.runner.run()
    result = document.root.children[-1]
    assert result.name().startswith("Recolor: #")  # named after the palette's colours
    assert np.array_equal(result.pixels, layer.pixels)  # mask 0 keeps every pixel as it was


@pytest.mark.parametrize("depth", ["U16", "F16", "F32"])
def test_deep_layers_keep_their_precision_and_linear_profile(daemon, tmp_path, depth, monkeypatch):
    document = Document(40, 24, depth=depth)  # Krita's default: a linear (g10) profile
    layer = gradient_layer(document)
    setup = Setup(daemon, tmp_path, document)
    sent = spy_on_requests(monkeypatch)
    setup.open()
    setup.controller.set_target_color(0, "#ff8800")  # an edit: an unedited Apply changes nothing
    setup.runner.run()
    setup.controller.apply()
    setup.runner.run()

    recolor = applied(sent)
    header = json.loads(recolor[0])
    # Krita's own bytes, in the linear variant of their format: the daemon does the curve.
    assert header["pixel_format"] == {"U16": "BGRA16_LINEAR", "F16": "RGBAF16_LINEAR",
                                      "F32": "RGBAF32_LINEAR"}[depth]  # fmt: skip
    _, wire = layer_to_wire(layer.pixels.tobytes(), depth, linear=True)
    assert recolor[1] == wire == layer.pixels.tobytes()
    answer = daemon_answer(daemon, header["pixel_format"], 40, 24, wire, setup.view.target,
                           source_palette=header["source_palette"])  # fmt: skip
    result = document.root.children[-1]
    assert result.pixels.tobytes() == wire_to_layer(answer, depth) == answer
    assert result.pixels.dtype == layer.pixels.dtype
    if depth == "U16":  # more than 8 bits of levels survive
        assert (
            len(np.unique(result.pixels[..., 1])) > 256
            or len(np.unique(layer.pixels[..., 1])) <= 256
        )
    assert np.array_equal(result.pixels[..., 3], layer.pixels[..., 3])


def applied(sent):
    """The Apply request (previews ask for options.max_side)."""
    (request,) = [
        f for f in sent if json.loads(f[0])["op"] == "recolor" and "options" not in json.loads(f[0])
    ]
    return request


def spy_on_requests(monkeypatch):
    """Record the frames of every request the plug-in sends (through the real transport)."""
    sent = []

    def open_socket(*args, **kwargs):
        socket = transport.open_socket(*args, **kwargs)
        send = socket.send_multipart

        def send_multipart(frames):
            sent.append([bytes(f) for f in frames])
            return send(frames)

        socket.send_multipart = send_multipart
        return socket

    monkeypatch.setattr(client_module.Client, "_open", lambda self, timeout_s: open_socket(
        self.connection.address, timeout_s))  # fmt: skip
    return sent


# --- what goes wrong -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "model, depth, words", [("GRAYA", "U8", "greyscale 8-bit"), ("CMYKA", "U16", "CMYK 16-bit")]
)
def test_non_rgb_layers_get_a_clear_message_and_nothing_changes(
    daemon, tmp_path, model, depth, words
):
    document = Document(20, 10)
    document.add_layer("Grey", model=model, depth=depth)
    setup = Setup(daemon, tmp_path, document)
    setup.open()
    setup.controller.apply()
    setup.runner.run()
    kind, text = setup.view.status
    assert kind == "error" and f"is a {words} layer" in text  # plain words, not "GRAYA U8"
    assert "Image > Convert Image Color Space... (Model: RGB/Alpha)" in text
    assert document.layers() == ["Grey"] and document.undo_steps == []


def test_no_document_and_empty_layer_messages(setup):
    document = setup.document
    setup.open()
    assert len(setup.view.layer_palette) == 6  # the photo's swatches...
    document.add_layer("Empty")
    setup.open()  # ...are cleared, and the docker says plainly why (was: "different versions")
    empty = "“Empty” is empty: it has no visible pixels on the canvas to recolour."
    assert setup.view.status == ("info", empty)
    assert setup.view.layer_palette == [] and setup.view.preview is None
    setup.controller.apply()
    assert setup.view.status == ("error", "“Empty” is empty here: there is nothing to recolour.")
    setup.app.document = None
    setup.open()  # an empty start: a hint, not an error in red
    assert setup.view.status == ("info", "Open an image to recolour one of its layers.")
    assert setup.view.layer_palette == []


def test_a_layer_deleted_while_recolouring_adds_nothing(setup):
    setup.open()
    setup.controller.apply()
    setup.document.activeNode().remove()
    setup.runner.run()
    kind, text = setup.view.status
    assert kind == "error" and "was removed while it was being recoloured" in text
    assert setup.document.undo_steps == []


def test_an_image_closed_while_recolouring_adds_nothing(setup):
    setup.open()
    setup.controller.apply()
    setup.app.document = None  # closed: no longer among Krita's documents
    setup.runner.run()
    kind, text = setup.view.status
    assert kind == "error" and "was closed while it was being recoloured" in text
    assert setup.document.undo_steps == []


def test_cancel_adds_nothing_and_says_so(setup):
    setup.open()
    setup.controller.apply()
    assert setup.view.applying
    setup.controller.cancel()
    setup.runner.run()
    assert setup.view.status == ("info", "Cancelled: nothing was changed.")
    assert not setup.view.applying and setup.document.layers() == ["Photo"]


@pytest.mark.parametrize("code", sorted(set(MESSAGES) - {"cancelled", "editor"}))
def test_every_error_is_shown_in_the_docker_as_a_message(setup, monkeypatch, code):
    setup.open()

    def failing(self, header, *args, **kwargs):
        from plugin.recolor_with_palette.errors import RecolorError

        if header["op"] == "recolor":
            raise RecolorError(code, f"what the daemon said about {code}")
        return {"ok": True}, []

    monkeypatch.setattr(client_module.Client, "request", failing)
    setup.controller.apply()
    setup.runner.run()
    assert setup.view.status == ("error", user_message(code, f"what the daemon said about {code}"))
    assert setup.document.layers() == ["Photo"] and not setup.view.applying


def test_a_dead_backend_is_said_in_one_line_with_the_story_in_the_tooltip(setup, monkeypatch):
    """qa-krita: the old message was five lines of sockets and heartbeats, drawn over the
    preview. With auto-start on (the default), the next request starts the backend again."""
    setup.controller.settings.auto_start = True
    monkeypatch.setattr(Launcher, "ensure_running", lambda *args, **kwargs: None)
    setup.open()
    story = "tcp://127.0.0.1:5555 went away with the request and was not back within 3 s."

    def failing(self, header, *args, **kwargs):
        from plugin.recolor_with_palette.errors import BackendStoppedError

        if header["op"] == "recolor":
            raise BackendStoppedError(story)
        return {"ok": True}, []

    monkeypatch.setattr(client_module.Client, "request", failing)
    setup.controller.apply()
    setup.runner.run()
    kind, text = setup.view.status
    assert kind == "error" and "\n" not in text and len(text) < 90
    assert "stopped" in text and "Apply" in text  # what happened, and what to do
    assert story in setup.view.detail  # the details: the status line's tooltip
    assert setup.document.layers() == ["Photo"]


def test_a_real_error_reply_reaches_the_docker(setup):
    setup.open()
    setup.controller.settings.method = "palettenet"
    setup.controller.target = ["#12345"]  # not a colour: the daemon answers bad_palette
    setup.controller.apply()
    setup.runner.run()
    kind, text = setup.view.status
    assert kind == "error" and text.startswith(MESSAGES["bad_palette"]) and "#12345" in text


def test_no_daemon_and_no_installed_backend(setup):
    setup.controller.settings.address = "tcp://127.0.0.1:9"
    setup.controller.settings.auto_start = True
    setup.controller.settings.start_timeout_s = 1
    setup.open()
    kind, text = setup.view.status
    assert kind == "error" and text.startswith(MESSAGES["no_backend"])


# --- settings ------------------------------------------------------------------------------
def test_method_and_settings_are_kept_by_krita(setup):
    setup.open()
    setup.controller.set_method("chang2015")
    stored = setup.app.settings
    assert stored[("RecolorWithPalette", "method")] == "chang2015"
    reloaded = Settings.load(setup.editor.read_setting)
    assert reloaded.method == "chang2015" and reloaded.address == setup.controller.settings.address
    stored[("RecolorWithPalette", "palette_size")] = "many"  # a hand edit: default, not a crash
    stored[("RecolorWithPalette", "method")] = "magic"
    broken = Settings.load(setup.editor.read_setting)
    assert broken.palette_size == 6 and broken.method == "palettenet"


def test_classical_method_maps_each_layer_colour_to_its_target(setup, monkeypatch):
    sent = spy_on_requests(monkeypatch)
    setup.open()
    setup.controller.set_method("chang2015")
    setup.controller.set_target_color(0, "#ff00ff")
    setup.runner.run()
    header = json.loads([f for f in sent if json.loads(f[0])["op"] == "recolor"][-1][0])
    assert header["method"] == "chang2015"
    assert header["source_palette"] == setup.view.layer_palette
    # The preview's source is small already: max_side is its own size (nothing shrinks),
    # which tells the daemon it is a preview.
    assert header["palette"][0] == "#ff00ff" and header["options"] == {"max_side": 60}


def test_both_methods_get_the_swatch_pairs_and_a_loaded_palette_is_paired_in_the_docker(
    setup, monkeypatch
):
    sent = spy_on_requests(monkeypatch)
    setup.open()

    def last_recolor():
        setup.runner.run()
        frames = [f for f in sent if json.loads(f[0])["op"] == "recolor"]
        return json.loads(frames[-1][0])

    setup.controller.set_target_color(1, "#00ff00")  # the default method, palettenet
    header = last_recolor()
    assert header["method"] == "palettenet"
    assert header["source_palette"] == setup.view.layer_palette
    # A loaded palette: the layer's colours of as many, each paired with the palette's
    # colour of the same lightness rank; the docker shows the pairs column by column, and
    # the preview (and Apply) send exactly those pairs.
    palette = designer_palettes()[1].colors  # not dark to light as published
    setup.controller.load_palette(designer_palettes()[1])
    header = last_recolor()
    assert sorted(setup.view.target) == sorted(palette) and setup.view.target != list(palette)
    assert header["palette"] == setup.view.target
    assert header["source_palette"] == setup.view.layer_palette and len(palette) == 6
    setup.controller.set_target_color(0, "#ff00ff")  # an edit of the loaded palette
    header = last_recolor()
    assert header["palette"][0] == "#ff00ff"
    assert header["source_palette"] == setup.view.layer_palette
    assert setup.view.target_name is None  # no longer the designer palette as it is


# --- the preview is what Apply adds --------------------------------------------------------
def chang_setup(setup):
    setup.controller.settings.method = "chang2015"  # colour by colour: comparable at any size
    return setup


def test_the_preview_with_a_selection_is_the_applied_region(daemon, tmp_path, monkeypatch):
    document = Document(400, 300)
    gradient_layer(document)
    setup = chang_setup(Setup(daemon, tmp_path, document))
    document.setSelection(Selection(document, 100, 60, 200, 120))
    sent = spy_on_requests(monkeypatch)
    setup.open()
    setup.controller.load_palette(designer_palettes()[2])
    setup.runner.run()
    preview_request = json.loads([f for f in sent if json.loads(f[0])["op"] == "recolor"][-1][0])
    preview = setup.view.preview
    # The selection's rectangle (200 x 120), scaled down: not the whole 400 x 300 layer.
    assert (preview.width, preview.height) == (200, 120)  # small enough to preview as it is
    assert setup.view.preview_state == (
        "Preview: the selection, 200 × 120 px, as Apply will add it"
    )
    setup.controller.apply()
    setup.runner.run()
    apply_request = json.loads(applied(sent)[0])
    for field in ("palette", "source_palette", "method"):  # the same pairs
        assert apply_request[field] == preview_request[field]
    result = document.root.children[-1]
    applied_region = result.pixels[60:180, 100:300]
    shown = np.frombuffer(preview.data, np.uint8).reshape(120, 200, 4)
    assert np.array_equal(shown, applied_region)


def test_a_new_selection_or_layer_refreshes_the_preview(daemon, tmp_path):
    document = Document(400, 300)
    photo = gradient_layer(document)
    setup = chang_setup(Setup(daemon, tmp_path, document))
    setup.open()
    setup.controller.load_palette(designer_palettes()[2])
    setup.runner.run()
    whole = setup.view.preview
    assert max(whole.width, whole.height) == 256 and setup.view.preview_state.startswith(
        "Preview: the layer, 400 × 300 px"
    )
    document.setSelection(Selection(document, 0, 0, 100, 50))
    setup.controller.check_layer()  # the docker's poll
    assert setup.view.preview_state == "Preview out of date: updating…"
    setup.runner.run()
    assert (setup.view.preview.width, setup.view.preview.height) == (100, 50)
    document.setSelection(None)
    # Another layer, with the designer palette still loaded: its own recoloured preview,
    # paired with its own colours (was: the un-recoloured thumbnail).
    second = document.add_layer("Second")
    second.fill(np.array([40, 200, 90, 255]))
    second.fill(np.array([220, 30, 30, 255]), 0, 0, 200, 300)
    setup.controller.check_layer()
    setup.runner.run()
    assert setup.view.target_name == "Designer 003" and len(setup.view.layer_palette) == 2
    shown = np.frombuffer(setup.view.preview.data, np.uint8).reshape(-1, 4)
    assert {tuple(p) for p in shown[:, :3]}.isdisjoint({(40, 200, 90), (220, 30, 30)})
    assert setup.view.preview_state.startswith("Preview: the layer")
    document.active = photo
    setup.controller.check_layer()
    setup.runner.run()
    assert setup.view.preview.data == whole.data  # back: the same preview as before


@pytest.mark.parametrize("size", [(400, 300), (3000, 2000)])
def test_a_selection_reshaped_within_the_same_bounds_refreshes_the_preview(
    daemon, tmp_path, monkeypatch, size
):
    """Issue 15: a rectangle selection made an ellipse (and then notched) with the same
    bounds went unnoticed; the preview kept the rectangle's recolour, unlike Apply's."""
    width, height = size
    document = Document(width, height)
    gradient_layer(document)
    setup = chang_setup(Setup(daemon, tmp_path, document))
    left, top, w, h = width // 4, height // 5, width // 2, height * 2 // 5
    selection = Selection(document, left, top, w, h)
    document.setSelection(selection)
    setup.open()
    setup.controller.load_palette(designer_palettes()[2])
    setup.runner.run()
    rectangle = setup.view.preview.data
    # The same selection reshaped in place (as a selection tool does): an ellipse that
    # touches all four sides, so its bounds stay the rectangle's.
    y, x = np.mgrid[0:h, 0:w]
    inside = ((x + 0.5 - w / 2) / (w / 2)) ** 2 + ((y + 0.5 - h / 2) / (h / 2)) ** 2 <= 1
    selection.mask[top : top + h, left : left + w] = np.where(inside, 255, 0)
    setup.controller.check_layer()  # the docker's poll
    assert setup.view.preview_state == "Preview out of date: updating…"
    setup.runner.run()
    ellipse = setup.view.preview
    assert ellipse.data != rectangle
    # A notch one preview pixel wide in the middle of the ellipse: noticed too.
    side = max(1, -(-max(w, h) // 256))
    selection.mask[top + h // 2 : top + h // 2 + side, left + w // 3 : left + w // 3 + side] = 0
    setup.controller.check_layer()
    setup.runner.run()
    assert setup.view.preview.data != ellipse.data
    setup.controller.check_layer()  # nothing changed since: nothing read again
    assert not setup.runner.jobs
    # And it is what Apply adds, at the preview's pixels.
    shown = np.frombuffer(setup.view.preview.data, np.uint8).reshape(
        setup.view.preview.height, setup.view.preview.width, 4)  # fmt: skip
    setup.controller.apply()
    setup.runner.run()
    added = document.root.children[-1].pixels[top : top + h, left : left + w]
    columns = ((np.arange(shown.shape[1]) + 0.5) * w / shown.shape[1]).astype(int)
    rows = ((np.arange(shown.shape[0]) + 0.5) * h / shown.shape[0]).astype(int)
    assert np.array_equal(shown, added[rows][:, columns])


def test_a_one_colour_fill_shows_one_swatch_and_an_empty_start_is_no_error(daemon, tmp_path):
    document = Document(50, 40)
    document.add_layer("Fill").fill(np.array([30, 60, 200, 255]))
    setup = Setup(daemon, tmp_path, document)
    setup.open()
    assert setup.view.layer_palette == ["#c83c1e"] and setup.view.target == ["#c83c1e"]
    setup.app.document = None
    fresh = Setup(daemon, tmp_path, Document(10, 10))
    fresh.app.document = None
    fresh.open()
    assert fresh.view.statuses == [("info", "Open an image to recolour one of its layers.")]


# --- live preview while a swatch is dragged (issue 18) -------------------------------------
def recolor_requests(sent):
    return [json.loads(f[0]) for f in sent if json.loads(f[0])["op"] == "recolor"]


def test_dragging_a_swatch_sends_only_the_newest_palette_after_the_one_in_flight(
    setup, monkeypatch
):
    """The step runner holds a started job until run(): a request "in flight" at a slow
    daemon. Ten colour changes while it is out -> exactly one more request, the last one."""
    sent = spy_on_requests(monkeypatch)
    setup.open()
    before = len(recolor_requests(sent))
    drags = [f"#{20 * i:02x}40c0" for i in range(1, 11)]
    for color in drags:
        setup.controller.drag_target_color(2, color)
        assert setup.view.target[2] == color  # the swatch follows the drag at once
    assert len(setup.runner.jobs) == 1  # one request out, nothing queued behind it
    setup.runner.run()
    headers = recolor_requests(sent)[before:]
    assert [h["palette"][2] for h in headers] == [drags[0], drags[-1]]
    assert setup.view.preview_state.startswith("Preview: the layer")
    # Cancel in the dialog: the target as it was before the dialog opened.
    snapshot = setup.controller.target_snapshot()
    setup.controller.drag_target_color(0, "#ff0000")
    setup.controller.restore_target(snapshot)
    setup.runner.run()
    assert setup.view.target == snapshot[0]
    assert recolor_requests(sent)[-1]["palette"] == snapshot[0]


# --- palette files in the docker (issue 18) ------------------------------------------------
def test_import_palette_files_of_every_kind(setup, monkeypatch, tmp_path):
    from plugin.recolor_with_palette.palettefile import kpl_bytes

    sent = spy_on_requests(monkeypatch)
    setup.open()
    colors = ["#102030", "#e04010", "#f0e0c0", "#40a040", "#2050d0", "#808080"]
    files = {
        "mine.gpl": "GIMP Palette\nName: Mine\n#\n"
        + "".join(f"{int(c[1:3], 16)} {int(c[3:5], 16)} {int(c[5:], 16)} n\n" for c in colors),
        "site.hex": "\n".join(c[1:] for c in colors) + "\n",
        "list.txt": "\n".join(colors) + "\n",
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "mine.kpl").write_bytes(kpl_bytes("Kpl", colors))
    aco = b"\0\1" + len(colors).to_bytes(2, "big")
    for c in colors:
        aco += b"\0\0" + b"".join(bytes((int(c[i : i + 2], 16),) * 2) for i in (1, 3, 5)) + b"\0\0"
    (tmp_path / "ps.aco").write_bytes(aco)
    ase = b"ASEF\0\1\0\0" + len(colors).to_bytes(4, "big")
    for c in colors:
        name = "x\0".encode("utf-16-be")
        body = (2).to_bytes(2, "big") + name + b"RGB "
        body += b"".join(np.float32(int(c[i : i + 2], 16) / 255).byteswap().tobytes()
                         for i in (1, 3, 5)) + b"\0\2"  # fmt: skip
        ase += b"\0\1" + len(body).to_bytes(4, "big") + body
    (tmp_path / "adobe.ase").write_bytes(ase)
    strip = np.zeros((8, 48, 4), np.uint8)
    for i, c in enumerate(colors):
        strip[:, 8 * i : 8 * i + 8] = [int(c[1:3], 16), int(c[3:5], 16), int(c[5:], 16), 255]

    def read_image(path):  # the docker decodes with QImage; here the bytes are made directly
        assert str(path).endswith("strip.png")
        return 48, 8, strip.tobytes()

    (tmp_path / "strip.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    for name in ["mine.gpl", "mine.kpl", "site.hex", "list.txt", "ps.aco", "adobe.ase",
                 "strip.png"]:  # fmt: skip
        setup.controller.import_palette_file(tmp_path / name, read_image)
        setup.runner.run()
        assert sorted(setup.view.target) == sorted(colors), name
        assert recolor_requests(sent)[-1]["palette"] == setup.view.target, name
        assert setup.view.status[0] != "error", (name, setup.view.status)
    assert setup.view.target_name == "strip"


def test_a_malformed_palette_file_changes_nothing_and_names_the_line(setup, tmp_path):
    setup.open()
    target, name = list(setup.view.target), setup.view.target_name
    bad = tmp_path / "broken.gpl"
    bad.write_text("GIMP Palette\n10 20 30\n10 20 300 too bright\n")
    setup.controller.import_palette_file(bad)
    setup.runner.run()
    kind, text = setup.view.status
    assert kind == "error" and "broken.gpl" in text and "line 3" in text and "\n" not in text
    assert setup.view.target == target and setup.view.target_name == name
    setup.controller.import_palette_file(tmp_path / "missing.kpl")
    assert setup.view.status[0] == "error" and "missing.kpl" in setup.view.status[1]


def test_a_palette_file_with_more_colours_says_which_are_used(setup, tmp_path):
    setup.open()
    colors = [f"#{i * 12:02x}{255 - i * 12:02x}80" for i in range(20)]
    (tmp_path / "big.hex").write_text("\n".join(colors))
    setup.controller.import_palette_file(tmp_path / "big.hex")
    status = setup.view.status
    setup.runner.run()
    assert status == ("info", f"“big” has 20 colours; the docker takes 12: its first 12 are "
                              f"used ({colors[0]} … {colors[11]})")  # fmt: skip
    assert sorted(setup.view.target) == sorted(colors[:12])


def test_export_the_target_row_and_the_layer_palette(setup, tmp_path):
    from plugin.recolor_with_palette.palettefile import read_palette

    setup.open()
    setup.controller.set_target_color(0, "#ff00ff")
    setup.runner.run()
    setup.controller.export_palette_file(tmp_path / "target.gpl", "target")
    assert setup.view.status == ("info", f"Exported 6 colours to {tmp_path / 'target.gpl'}")
    assert list(read_palette(tmp_path / "target.gpl").colors) == setup.view.target
    setup.controller.export_palette_file(tmp_path / "layer.kpl", "layer")
    saved = read_palette(tmp_path / "layer.kpl")
    assert list(saved.colors) == setup.view.layer_palette and saved.name == "Photo"
    setup.controller.export_palette_file(tmp_path / "no-such-dir" / "x.gpl", "layer")
    assert setup.view.status[0] == "error" and "no-such-dir" in setup.view.status[1]
    setup.controller.export_palette_file(tmp_path / "x.ase", "layer")
    assert setup.view.status[0] == "error" and not (tmp_path / "x.ase").exists()


# --- many in one go: selected layers, a group, an animation's frames (issue 18) ------------
RED, BLUE, GREEN, WHITE = (30, 30, 220, 255), (200, 60, 20, 255), (40, 180, 40, 255), (
    250, 250, 250, 255)  # B, G, R, A  # fmt: skip


def two_colour_layer(document, name, first, second, split):
    layer = document.add_layer(name)
    layer.fill(np.array(first))
    layer.fill(np.array(second), 0, 0, split, document.height_px)
    return layer


def colours_of(pixels):
    return {tuple(p) for p in pixels.reshape(-1, 4)}


def test_selected_layers_are_recoloured_alike_into_one_group_in_one_undo_step(daemon, tmp_path):
    document = Document(40, 30)
    first = two_colour_layer(document, "First", RED, BLUE, 10)
    second = two_colour_layer(document, "Second", RED, GREEN, 30)
    originals = first.pixels.copy(), second.pixels.copy()
    setup = chang_setup(Setup(daemon, tmp_path, document))
    setup.app.window.view.selected = [second, first]  # as Krita lists them: top first
    setup.open()
    assert len(setup.view.layer_palette) == 3  # red, blue and green: both layers together
    target = ["#ffff00", "#ff00ff", "#00ffff"]
    for index, color in enumerate(target):
        setup.controller.set_target_color(index, color)
    setup.runner.run()
    setup.controller.apply()
    setup.runner.run()
    assert (
        setup.view.status[1].startswith("Added “Recolor: ") and "2 layers" in setup.view.status[1]
    )
    assert document.layers() == ["First", "Second", "Recolor: #ffff00 #ff00ff #00ffff"]
    assert document.undo_steps == ["add layer Recolor: #ffff00 #ff00ff #00ffff"]  # one step
    group = document.root.children[-1]
    assert group.type() == "grouplayer" and [c.name() for c in group.children] == [
        "First",
        "Second",
    ]
    new_first, new_second = (child.pixels for child in group.children)
    # Red was red in both: it became the same colour in both (one mapping).
    assert tuple(new_first[0, 20]) == tuple(new_second[0, 35]) and tuple(new_first[0, 20]) != RED
    assert len(colours_of(new_first)) == len(colours_of(new_second)) == 2
    assert RED not in colours_of(new_first) | colours_of(new_second)
    assert np.array_equal(first.pixels, originals[0]) and np.array_equal(
        second.pixels, originals[1]
    )


def test_a_group_is_copied_above_itself_with_its_layers_recoloured(daemon, tmp_path):
    document = Document(40, 30)
    group = document.add_layer("Group", node_type="grouplayer")
    document.root.children.remove(group)
    document.add_layer("Background").fill(np.array(WHITE))
    document.root.children.append(group)
    group.parent = document.root
    for name, colour in (("Ink", BLUE), ("Paint", RED)):
        layer = Node(document, name)
        layer.fill(np.array(colour), 0, 0, 20, 30)
        layer.parent = group
        group.children.append(layer)
    document.active = group
    setup = chang_setup(Setup(daemon, tmp_path, document))
    setup.open()
    assert "Group (2 layers)" in setup.view.statuses[-1][1]
    setup.controller.load_palette(designer_palettes()[0])
    setup.runner.run()
    setup.controller.apply()
    setup.runner.run()
    assert document.layers()[:2] == ["Background", "Group"] and len(document.layers()) == 3
    copy = document.root.children[-1]
    assert copy.name().startswith("Recolor: ") and [c.name() for c in copy.children] == [
        "Ink", "Paint"]  # fmt: skip
    assert len(document.undo_steps) == 1 and document.undo_steps[0].startswith("add layer")
    for original, recoloured in zip(group.children, copy.children):
        assert not np.array_equal(original.pixels[:, :20], recoloured.pixels[:, :20])
        assert np.array_equal(original.pixels[..., 3], recoloured.pixels[..., 3])


@pytest.mark.parametrize("method", ["chang2015", "palettenet"])
def test_every_frame_of_an_animated_layer_is_recoloured_alike(daemon, tmp_path, method):
    """Alike with either method: the frames' thumbnail goes with every frame as the
    reference image, so PaletteNet's mapping is found once for all of them."""
    document = Document(48, 32)
    walk = document.add_layer("Walk")
    frames = {}
    for time, x in ((0, 4), (3, 16), (7, 28)):  # a red figure walking over blue
        frame = np.zeros((32, 48, 4), np.uint8)
        frame[:] = BLUE
        frame[8:24, x : x + 12] = RED
        frame[0:4, 0:4] = GREEN if time == 3 else BLUE  # a colour only one frame has
        frames[time] = frame
    walk.make_animated(frames)
    document.time = 3
    setup = Setup(daemon, tmp_path, document)
    setup.controller.settings.method = method
    setup.open()
    assert "Walk (3 frames)" in setup.view.statuses[-1][1]
    assert len(setup.view.layer_palette) == 3  # the green of frame 3 counts too
    setup.controller.set_target_color(0, "#ffcc00")
    setup.controller.set_target_color(1, "#6600cc")
    setup.controller.set_target_color(2, "#00cc99")
    setup.runner.run()
    setup.controller.apply()
    setup.runner.run()
    assert setup.view.status[0] == "info" and "3 frames of “Walk”" in setup.view.status[1]
    copy = document.root.children[-1]
    assert copy.animated() and sorted(copy.frames) == [0, 3, 7]
    result = {time: copy.frames[time] for time in (0, 3, 7)}
    for time, x in ((0, 4), (3, 16), (7, 28)):
        assert np.array_equal(walk.frames[time], frames[time])  # the original untouched
        assert tuple(result[time][10, x + 2]) == tuple(result[0][10, 6])  # red alike
        assert tuple(result[time][30, 47]) == tuple(result[0][30, 47])  # blue alike
    assert tuple(result[0][10, 6]) != tuple(result[0][30, 47]) != BLUE
    # The one step that adds the recoloured layer is the last one; the playhead's moves
    # (libkis 5.1 writes at the current time only) are below it, and it is back on frame 3.
    assert document.undo_steps[-1] == f"add layer {copy.name()}"
    assert all(step.startswith("switch to frame") for step in document.undo_steps[:-1])
    assert document.currentTime() == 3
    # The docker follows the new (animated) layer quietly: "Added ..." stays on view.
    added = setup.view.status
    setup.controller.check_layer()
    setup.runner.run()
    assert setup.view.status == added


def three_frames_edited(daemon, tmp_path) -> "Setup":
    """A 3-frame animated layer "Walk" on frame 1, its palette read and one swatch edited
    (chang2015): ready for Apply."""
    document = Document(32, 24)
    walk = document.add_layer("Walk")
    walk.make_animated({t: np.full((24, 32, 4), (30 + 40 * t, 90, 160, 255), np.uint8)
                        for t in (0, 1, 2)})  # fmt: skip
    document.time = 1
    setup = chang_setup(Setup(daemon, tmp_path, document))
    setup.open()
    setup.controller.set_target_color(0, "#ff0000")
    setup.runner.run()
    return setup


def test_cancel_while_frames_are_written_adds_nothing_and_puts_the_playhead_back(daemon, tmp_path):
    setup = three_frames_edited(daemon, tmp_path)
    document = setup.document
    setup.controller.apply()
    # Run the pieces until the first frame has been written into the copy (the playhead
    # moved to frame 0), then Cancel.
    while document.time == 1:
        work, done, report, token = setup.runner.jobs.pop(0)
        done(work(JobContext(token, report)), None)
    setup.controller.cancel()
    setup.runner.run()
    assert setup.view.status == ("info", "Cancelled: nothing was changed.")
    assert document.layers() == ["Walk"] and document.time == 1
    assert not any(step.startswith("add layer") for step in document.undo_steps)


def test_a_group_without_paint_layers_is_recoloured_as_one_merged_layer(daemon, tmp_path):
    document = Document(20, 10)
    group = document.add_layer("Shapes", node_type="grouplayer")
    group.fill(np.array(RED))  # the mock's group: its own pixels stand for its projection
    vector = Node(document, "Vector", "vectorlayer")
    vector.parent, group.children = group, [vector]
    setup = chang_setup(Setup(daemon, tmp_path, document))
    setup.open()
    assert setup.view.status == ("info", "Layer “Shapes”: 1 colour")  # not "1 colours"
    setup.controller.set_target_color(0, "#00ff00")
    setup.runner.run()
    setup.controller.apply()
    setup.runner.run()
    assert setup.view.status == ("info", "Added layer “Recolor: #00ff00”")
    assert document.layers() == ["Shapes", "Recolor: #00ff00"]


# --- the palette and the preview read Apply's own rectangle (qa-krita findings 1, 2, 6) ----
def test_preview_and_swatches_ignore_pixels_krita_stores_beyond_the_canvas(daemon, tmp_path):
    """Krita's Node.thumbnail shows the layer's 64-px tiles, beyond the canvas too (the mock
    does the same): a 100 x 70 canvas, with white stored beyond it, must neither shift the
    preview nor add a white swatch."""
    document = Document(100, 70)
    layer = document.add_layer("Halves")
    layer.fill(np.array(RED))
    layer.fill(np.array(BLUE), 50, 0, 50, 70)
    layer.beyond = (255, 255, 255, 255)
    setup = chang_setup(Setup(daemon, tmp_path, document))
    setup.open()
    assert sorted(setup.view.layer_palette) == ["#143cc8", "#dc1e1e"]  # no white
    setup.controller.load_palette(designer_palettes()[2])
    setup.runner.run()
    setup.controller.apply()
    setup.runner.run()
    applied_pixels = document.root.children[-1].pixels
    shown = np.frombuffer(setup.view.preview.data, np.uint8).reshape(70, 100, 4)
    assert np.array_equal(shown, applied_pixels)  # the classical method: byte for byte


def test_a_one_pixel_image_lists_only_its_pixel(daemon, tmp_path):
    document = Document(1, 1)
    pixel = document.add_layer("Dot")
    pixel.fill(np.array([60, 120, 200, 255]))  # #c8783c
    pixel.beyond = (255, 255, 255, 255)  # the rest of its tile: white, never on the canvas
    setup = Setup(daemon, tmp_path, document)
    setup.open()
    assert setup.view.layer_palette == ["#c8783c"]
    assert setup.view.status == ("info", "Layer “Dot”: 1 colour")


def test_faint_anti_aliased_edges_make_no_swatches(daemon, tmp_path):
    """Two flat shapes whose edges are nearly transparent pixels of stray colours (Krita's
    vector layers: alpha 3-8): two swatches, not six."""
    document = Document(120, 80)
    shapes = document.add_layer("Shapes", node_type="vectorlayer")
    shapes.fill(np.array([70, 57, 230, 255]), 10, 10, 40, 60)  # #e63946
    shapes.fill(np.array([87, 53, 29, 255]), 60, 10, 50, 60)  # #1d3557
    for i, stray in enumerate(([0, 0, 0, 3], [64, 64, 0, 5], [85, 85, 0, 8], [93, 46, 23, 4])):
        shapes.fill(np.array(stray), 8 + 28 * i, 8, 28, 2)  # a faint edge above the shapes
        shapes.fill(np.array(stray), 8 + 28 * i, 70, 28, 2)  # and below
    setup = Setup(daemon, tmp_path, document)
    setup.open()
    assert sorted(setup.view.layer_palette) == ["#1d3557", "#e63946"]


def test_painting_on_the_layer_refreshes_the_swatches_and_the_preview(daemon, tmp_path):
    """qa-krita: a brush stroke left the preview and the swatches as they were, and Apply
    then paired the target with colours the layer no longer had."""
    document = Document(300, 200)
    layer = document.add_layer("Paint")
    layer.fill(np.array(RED))
    setup = chang_setup(Setup(daemon, tmp_path, document))
    setup.open()
    assert setup.view.layer_palette == ["#dc1e1e"]
    before = setup.view.preview.data
    layer.fill(np.array(BLUE), 40, 60, 120, 30)  # a stroke, about 6 % of the layer
    setup.controller.check_layer()  # the docker's 0.7 s poll
    setup.runner.run()
    assert sorted(setup.view.layer_palette) == ["#143cc8", "#dc1e1e"]
    assert setup.view.preview.data != before
    setup.controller.check_layer()  # nothing painted since: nothing read again
    assert not setup.runner.jobs
    document.add_layer("Empty")  # an empty layer is said once, not at every poll
    setup.open()
    said = len(setup.view.statuses)
    setup.controller.check_layer()
    assert len(setup.view.statuses) == said and not setup.runner.jobs


# --- wide-gamut documents: the layer as stored, with its ICC profile --------------------------
def wide_gamut_setup(daemon, tmp_path, monkeypatch, depth, where="file"):
    """A document in a ProPhoto-like profile (made by LittleCMS) that this mock Krita knows
    by its description; the profile's file lies in the user's color/icc folder (`where`
    "file"), or only Krita's PNG export gives it ("export"), or neither ("none")."""
    import imagecodecs

    from plugin.recolor_with_palette.krita_api import icc_description

    prophoto = (0.7347, 0.2653, 0.1596, 0.8404, 0.0366, 0.0001)
    profile = imagecodecs.cms_profile("rgb", whitepoint=(0.3457, 0.3585), primaries=prophoto,
                                      gamma=1.8)  # fmt: skip
    name = icc_description(profile)
    data_home = tmp_path / "data"
    monkeypatch.setenv("XDG_DATA_HOME", str(data_home))
    monkeypatch.setenv("XDG_DATA_DIRS", str(tmp_path / "no-system-profiles"))
    monkeypatch.setenv("HOME", str(tmp_path))
    if where == "file":
        (data_home / "color/icc").mkdir(parents=True)
        (data_home / "color/icc/prophoto-like.icc").write_bytes(profile)
    document = Document(40, 24, depth=depth, profile=name)
    layer = gradient_layer(document)
    setup = Setup(daemon, tmp_path, document)
    setup.app.icc_profiles = {name: profile}
    setup.app.exports = where == "export"
    document.app = setup.app
    return setup, layer, profile


@pytest.mark.parametrize("depth", ["U8", "U16", "F32"])
def test_a_wide_gamut_layer_goes_as_stored_with_its_icc_profile(daemon, tmp_path, monkeypatch,
                                                                depth):  # fmt: skip
    """No conversion in Krita for the layer (only the small palette and preview samples):
    its own bytes and profile go to the daemon, and its answer is written back as it is."""
    import base64

    setup, layer, profile = wide_gamut_setup(daemon, tmp_path, monkeypatch, depth)
    sent = spy_on_requests(monkeypatch)
    setup.open()
    assert len(setup.view.layer_palette) == 6, setup.view.statuses
    setup.controller.set_target_color(2, "#ff8800")
    setup.runner.run()
    samples = len(setup.app.created)  # Krita converted the palette's and preview's samples
    setup.controller.apply()
    setup.runner.run()
    assert setup.view.status[1].startswith("Added layer"), setup.view.statuses
    assert len(setup.app.created) == samples  # none for the layer itself

    header = json.loads(applied(sent)[0])
    assert header["pixel_format"] == {"U8": "BGRA8", "U16": "BGRA16", "F32": "RGBAF32"}[depth]
    assert base64.b64decode(header["icc_profile"]) == profile
    assert applied(sent)[1] == layer.pixels.tobytes()
    answer = daemon_answer_with(daemon, header, layer.pixels.tobytes())
    result = setup.document.root.children[-1]
    assert result.pixels.tobytes() == answer
    assert np.array_equal(result.pixels[..., 3], layer.pixels[..., 3])
    assert not np.array_equal(result.pixels, layer.pixels)


def daemon_answer_with(daemon, header, data) -> bytes:
    """The daemon's answer to the same request header and pixels."""
    from backend.service.client import Client

    header = {k: v for k, v in header.items() if k not in ("protocol", "id")}
    with Client(daemon.address, timeout_s=120) as client:
        reply, frames = client.request(header, data)
    assert reply["ok"] and reply["icc_profile"] is True, reply
    return bytes(frames[0])


def test_the_profile_comes_from_a_png_export_where_no_file_has_it(daemon, tmp_path, monkeypatch):
    setup, layer, profile = wide_gamut_setup(daemon, tmp_path, monkeypatch, "U16", "export")
    name = layer.colorProfile()
    assert setup.editor.icc_profile(name) == profile
    assert setup.app.exported == [name]
    assert setup.app.created[-1].closed  # the scratch document is closed again
    assert setup.editor.icc_profile(name) == profile and setup.app.exported == [name]  # once


def test_without_the_profile_krita_converts_the_layer_as_before(daemon, tmp_path, monkeypatch):
    """Neither a file nor the export gives the profile: Krita converts the layer to linear
    sRGB half floats and back (slow, on the GUI thread, but right)."""
    setup, layer, _ = wide_gamut_setup(daemon, tmp_path, monkeypatch, "U16", "none")
    sent = spy_on_requests(monkeypatch)
    setup.open()
    setup.controller.set_target_color(2, "#ff8800")
    setup.runner.run()
    setup.controller.apply()
    setup.runner.run()
    assert setup.view.status[1].startswith("Added layer"), setup.view.statuses
    header = json.loads(applied(sent)[0])
    assert header["pixel_format"] == "RGBAF16_LINEAR" and "icc_profile" not in header
    result = setup.document.root.children[-1]
    assert result.pixels.dtype == layer.pixels.dtype
    assert np.array_equal(result.pixels[..., 3], layer.pixels[..., 3])


def test_a_profile_file_is_found_by_its_description_not_its_name(tmp_path, monkeypatch):
    import imagecodecs

    from plugin.recolor_with_palette.krita_api import icc_description, png_icc_profile

    rec2020 = (0.708, 0.292, 0.170, 0.797, 0.131, 0.046)
    profile = imagecodecs.cms_profile("rgb", whitepoint=(0.3127, 0.329), primaries=rec2020,
                                      gamma=2.2)  # fmt: skip
    assert icc_description(profile) and icc_description(b"not a profile" * 20) is None
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_DATA_DIRS", str(tmp_path / "none"))
    folder = tmp_path / "data/color/icc/nested"
    folder.mkdir(parents=True)
    (folder / "any name.ICM").write_bytes(profile)
    (folder / "broken.icc").write_bytes(b"\0" * 50)
    app = KritaApp()
    app.exports = False
    editor = KritaEditor(krita_module(app))
    assert editor.icc_profile(icc_description(profile)) == profile
    assert editor.icc_profile("Nothing by this name") is None
    from PIL import Image

    Image.new("RGB", (1, 1)).save(tmp_path / "p.png", icc_profile=profile)
    assert png_icc_profile((tmp_path / "p.png").read_bytes()) == profile
