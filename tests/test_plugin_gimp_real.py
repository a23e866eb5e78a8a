"""The GIMP 3 plug-in in the real GIMP 3, against a real daemon on the host.

install.py puts the plug-in into a temporary HOME's GIMP 3 profile. One gimp-console run
takes every non-interactive case (starting GIMP costs seconds); each case loads a PNG, makes
the image what the case needs (precision, greyscale, indexed, a feathered selection, a layer
group, offsets), calls python-fu-recolor-with-palette as a script would and records what it
finds. A case passes when the procedure succeeded, exactly one new layer sits right above
the original, the original is untouched, and the new layer holds, byte for byte and in the
image's own storage format, what the daemon answers directly for the same pixels and mask.
The interactive case runs GIMP with a window under Xvfb: the dialog opens (the menu path that
used to crash GIMP), is answered with Return, and the result is checked the same way.
Two selected layers (issue 18 part 3) run in GIMP with a window too: both recoloured alike
(one mapping), and one Ctrl+Z in the image window takes both new layers back.

GIMP 3 comes from the host (Debian 13+) or a Debian 13 root (tests/gimp_runner.py).
"""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from gimp_runner import gimp_command, gimp_crashed, require_gimp, run_batch
from PIL import Image
from servers import daemon_answer

ROOT = Path(__file__).resolve().parents[1]
PALETTE = "#0b1d51,#725ac1,#8d86c9,#cac4ce,#f7ece1,#e0b1cb"
PROCEDURE = "python-fu-recolor-with-palette"

# name -> what the image is made into, and the format the plug-in must read and write
CASES = {
    "rgb8": dict(file="rgb.png", babl="R'G'B'A u8", wire="RGBA8"),
    "rgba8": dict(file="rgba.png", babl="R'G'B'A u8", wire="RGBA8", method="palettenet"),
    "u8-linear": dict(precision="U8_LINEAR", babl="RGBA u8", wire="RGBA8_LINEAR"),
    "u16-non-linear": dict(precision="U16_NON_LINEAR", babl="R'G'B'A u16", wire="RGBA16"),
    "u16-linear": dict(
        precision="U16_LINEAR", babl="RGBA u16", wire="RGBA16_LINEAR", method="palettenet"
    ),  # fmt: skip
    "u32-linear": dict(precision="U32_LINEAR", babl="RGBA u16", wire="RGBA16_LINEAR"),
    "half-linear": dict(precision="HALF_LINEAR", babl="RGBA half", wire="RGBAF16_LINEAR"),
    "float-linear": dict(
        precision="FLOAT_LINEAR", babl="RGBA float", wire="RGBAF32_LINEAR", method="palettenet"
    ),  # fmt: skip
    "float-non-linear": dict(precision="FLOAT_NON_LINEAR", babl="R'G'B'A float", wire="RGBAF32"),
    "u8-perceptual": dict(precision="U8_PERCEPTUAL", babl="R~G~B~A u8", wire="RGBA8"),
    "greyscale": dict(base="gray", babl="R'G'B'A u8", wire="RGBA8"),
    "indexed": dict(base="indexed", babl="R'G'B'A u8", wire="RGBA8"),
    "antialiased-selection": dict(
        select=True, babl="R'G'B'A u8", wire="RGBA8", method="palettenet"
    ),  # fmt: skip
    "selection-16-bit": dict(
        select=True, precision="U16_LINEAR", babl="RGBA u16", wire="RGBA16_LINEAR"
    ),  # fmt: skip
    "in-a-group": dict(group=True, babl="R'G'B'A u8", wire="RGBA8"),
    "with-offsets": dict(offsets=(7, -4), babl="R'G'B'A u8", wire="RGBA8", method="palettenet"),
    # GIMP selects a new layer mask: the mask stands for its layer, and the result gets it too
    "layer-mask-selected": dict(layer_mask="selected", babl="R'G'B'A u8", wire="RGBA8"),
}
ERROR_CASES = {
    "bad-palette": dict(palette="#0b1d51,#12345g", error="#12345g"),
    "no-daemon": dict(server="tcp://127.0.0.1:9", error="backend"),
    "a-channel": dict(drawable="channel", error="is a channel, not a layer"),
    "transparent-layer": dict(file="clear.png", error="has no visible pixels"),
    "no-target-colours": dict(palette="", error="No target colours"),
}

BATCH = r"""
import json, traceback
import gi
gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp, Gio

out, cases = {out!r}, json.loads({cases!r})
procedure = Gimp.get_pdb().lookup_procedure({procedure!r})

def read(drawable, fmt, x, y, width, height):
    rectangle = Gegl.Rectangle.new(x, y, width, height)
    return bytes(drawable.get_buffer().get(rectangle, 1.0, fmt, Gegl.AbyssPolicy.CLAMP))

def save(name, data):
    open(out + "/" + name, "wb").write(data)

records = {{}}
for case in cases:
    name, record = case["name"], {{}}
    records[name] = record
    try:
        image = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(case["path"]))
        layer = image.get_layers()[0]
        if case.get("base") == "gray":
            image.convert_grayscale()
        if case.get("base") == "indexed":
            image.convert_indexed(Gimp.ConvertDitherType.NONE, Gimp.ConvertPaletteType.GENERATE,
                                  12, False, False, "")
        if case.get("precision"):
            image.convert_precision(getattr(Gimp.Precision, case["precision"]))
        if case.get("offsets"):
            layer.set_offsets(*case["offsets"])
        parent = None
        if case.get("group"):
            parent = Gimp.GroupLayer.new(image, "Group")
            image.insert_layer(parent, None, 0)
            image.reorder_item(layer, parent, 0)
        drawable = layer
        if case.get("layer_mask"):
            mask = layer.create_mask(Gimp.AddMaskType.WHITE)
            layer.add_mask(mask)
            drawable = mask
        if case.get("drawable") == "channel":
            drawable = Gimp.Channel.new(image, "Red marks", layer.get_width(),
                                        layer.get_height(), 50.0, Gegl.Color.new("#ff0000"))
            image.insert_channel(drawable, None, 0)
        if case.get("select"):
            Gimp.context_set_antialias(True)
            image.select_ellipse(Gimp.ChannelOps.REPLACE, 4, 3, 30, 20)
            Gimp.Selection.feather(image, 6)
        fmt, width, height = case.get("babl"), layer.get_width(), layer.get_height()
        before = read(layer, fmt, 0, 0, width, height) if fmt else b""
        record["base_before"] = image.get_base_type().value_nick
        config = procedure.create_config()
        config.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
        config.set_property("image", image)
        config.set_core_object_array("drawables", [drawable])
        config.set_property("palette", case["palette"])
        config.set_property("method", case["method"])
        config.set_property("server", case["server"])
        started = __import__("time").monotonic()
        result = procedure.run(config)
        record["seconds"] = __import__("time").monotonic() - started
        record["status"] = result.index(0).value_nick
        if result.index(0) != Gimp.PDBStatusType.SUCCESS:
            record["error"] = str(result.index(1))
        siblings = parent.get_children() if parent else image.get_layers()
        record["layers"] = [item.get_name() for item in siblings]
        record["base_after"] = image.get_base_type().value_nick
        record["original_unchanged"] = (read(layer, fmt, 0, 0, width, height) == before
                                        if fmt else None)
        if record["status"] == "success" and len(siblings) == 2:
            new = siblings[0]
            _, x, y = new.get_offsets()
            _, layer_x, layer_y = layer.get_offsets()
            w, h = new.get_width(), new.get_height()
            record["region"] = [x, y, w, h]
            record["new_has_mask"] = new.get_mask() is not None
            save(name + ".sent", read(layer, fmt, x - layer_x, y - layer_y, w, h))
            save(name + ".new", read(new, fmt, 0, 0, w, h))
            if not Gimp.Selection.is_empty(image):
                selection = image.get_selection()
                save(name + ".mask", read(selection, "Y u8", x, y, w, h))
    except Exception:
        record["exception"] = traceback.format_exc()
open(out + "/records.json", "w").write(json.dumps(records))
"""


def picture(alpha: bool) -> np.ndarray:
    """A 40 x 30 picture with gradients, flat areas and (with alpha) transparent pixels."""
    y, x = np.mgrid[0:30, 0:40]
    rgba = np.zeros((30, 40, 4), np.uint8)
    rgba[..., 0] = x * 6
    rgba[..., 1] = y * 8
    rgba[..., 2] = np.where(x < 20, 200, 40)
    rgba[..., 3] = 255
    if alpha:
        rgba[:6, :6, 3] = 0
        rgba[6:12, :6, 3] = 128
    return rgba if alpha else rgba[..., :3].copy()


def install_plugin(home: Path) -> Path:
    """The plug-in installed as install.py does it, into home's GIMP 3 profile."""
    plug_ins = home / ".config/GIMP/3.0/plug-ins"
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}
    subprocess.run([sys.executable, str(ROOT / "install.py"), "--plugins-only", "--gimp-dir",
                    str(plug_ins), "--krita-dir", str(home / "krita")],
                   env=env, check=True, capture_output=True, timeout=300)  # fmt: skip
    script = plug_ins / "recolor-with-palette/recolor-with-palette.py"
    assert os.access(script, os.X_OK)
    # No backend record: the "no daemon" case must report, not start one (the daemon under
    # test runs on the host, where the Debian 13 root's GIMP could not start it anyway).
    (script.parent / "recolor_with_palette/backend.json").unlink(missing_ok=True)
    return home


@pytest.fixture(scope="module")
def gimp_home(tmp_path_factory):
    require_gimp()
    home = tmp_path_factory.mktemp("gimp-home")
    home.chmod(0o755)  # GIMP in the root runs as the same user, but keep paths readable
    return install_plugin(home)


@pytest.fixture(scope="module")
def batch(daemon, gimp_home, tmp_path_factory):
    """Every case through one gimp-console run: (records, output folder, stderr)."""
    out = tmp_path_factory.mktemp("gimp-out")
    Image.fromarray(picture(alpha=False), "RGB").save(out / "rgb.png")
    Image.fromarray(picture(alpha=True), "RGBA").save(out / "rgba.png")
    Image.fromarray(np.zeros((30, 40, 4), np.uint8), "RGBA").save(out / "clear.png")
    cases = []
    for name, case in {**CASES, **ERROR_CASES}.items():
        case = {"name": name, "path": str(out / case.get("file", "rgba.png")), "palette": PALETTE,
                "method": "chang2015", "server": daemon.address, **case}  # fmt: skip
        cases.append(case)
    script = BATCH.format(out=str(out), cases=json.dumps(cases), procedure=PROCEDURE)
    started = time.monotonic()
    run = run_batch(script, gimp_home)
    print(f"gimp-console: {len(cases)} cases in {time.monotonic() - started:.1f} s")
    records_file = out / "records.json"
    assert records_file.exists(), f"no result (exit {run.returncode}):\n{run.stderr[-3000:]}"
    return json.loads(records_file.read_text()), out, run.stderr


def test_gimp_did_not_crash(batch):
    _records, _out, stderr = batch
    assert not gimp_crashed(stderr), stderr[-3000:]


@pytest.mark.parametrize("name", list(CASES))
def test_the_new_layer_holds_the_daemons_answer(batch, daemon, name):
    records, out, _ = batch
    record, case = records[name], CASES[name]
    assert "exception" not in record, record["exception"]
    assert record["status"] == "success", record
    assert len(record["layers"]) == 2 and record["layers"][0].startswith("Recolor: #0b1d51")
    assert record["original_unchanged"]
    assert record["base_after"] == "rgb"  # greyscale and indexed became RGB
    _x, _y, width, height = record["region"]
    sent = (out / f"{name}.sent").read_bytes()
    mask_file = out / f"{name}.mask"
    mask = mask_file.read_bytes() if mask_file.exists() else None
    if case.get("select"):
        assert mask is not None and len(set(mask)) > 2  # feathered: partly selected pixels
    assert record["new_has_mask"] == bool(case.get("layer_mask"))
    expected = daemon_answer(daemon, case["wire"], width, height, sent, PALETTE.split(","),
                             mask, method=case.get("method", "chang2015"))  # fmt: skip
    assert (out / f"{name}.new").read_bytes() == expected
    assert expected != sent  # the daemon did change something


@pytest.mark.parametrize("name", list(ERROR_CASES))
def test_bad_input_is_a_gimp_error_message(batch, name):
    records, _out, _ = batch
    record = records[name]
    assert "exception" not in record, record["exception"]
    assert record["status"] == "execution-error", record
    assert ERROR_CASES[name]["error"] in record["error"]
    assert "Traceback" not in record["error"]
    assert record["layers"] == ["Layer"] or len(record["layers"]) == 1  # nothing added
    assert record["original_unchanged"] is None or record["original_unchanged"]
    assert record["seconds"] < 30  # a stopped daemon is reported at once


def test_the_daemon_is_alive_after_every_case(batch, daemon):
    assert daemon.process.poll() is None


INTERACTIVE = r"""
import json, time, traceback
import gi
gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp, Gio

out, record = {out!r}, {{}}
try:
    image = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path({path!r}))
    Gimp.Display.new(image)  # as an artist has it: the image open in a window
    layer = image.get_layers()[0]
    rectangle = Gegl.Rectangle.new(0, 0, layer.get_width(), layer.get_height())
    def read(drawable):
        return bytes(drawable.get_buffer().get(rectangle, 1.0, "R'G'B'A u8",
                                               Gegl.AbyssPolicy.CLAMP))
    before = read(layer)
    procedure = Gimp.get_pdb().lookup_procedure({procedure!r})
    config = procedure.create_config()
    config.set_property("run-mode", Gimp.RunMode.INTERACTIVE)  # what the menu does
    config.set_property("image", image)
    config.set_core_object_array("drawables", [layer])
    config.set_property("server", {address!r})
    result = procedure.run(config)
    record["status"] = result.index(0).value_nick
    if result.index(0) != Gimp.PDBStatusType.SUCCESS:
        record["error"] = str(result.index(1))
    layers = image.get_layers()
    record["layers"] = [item.get_name() for item in layers]
    record["original_unchanged"] = read(layer) == before
    open(out + "/sent.bin", "wb").write(before)
    open(out + "/new.bin", "wb").write(read(layers[0]))
except Exception:
    record["exception"] = traceback.format_exc()
open(out + "/interactive.json", "w").write(json.dumps(record))
"""


def wait_for_window(display: str, title: str, timeout_s: float) -> str | None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = subprocess.run(["xdotool", "search", "--onlyvisible", "--name", f"^{title}$"],
                               env={**os.environ, "DISPLAY": display}, capture_output=True,
                               text=True)  # fmt: skip
        if found.stdout.split():
            return found.stdout.split()[0]
        time.sleep(0.5)
    return None


def test_interactive_dialog_in_the_gimp_window(daemon, gimp_home, xvfb, tmp_path):
    """Colors > Recolor with Palette... as an artist runs it: GIMP with a window, the image
    shown, the procedure run INTERACTIVE (what the menu does): the layer's palette is read,
    the dialog opens with it, OK (Return) gives one new layer, and GIMP does not crash."""
    if shutil.which("xdotool") is None:
        require_gimp()
        pytest.fail("xdotool is needed to answer the dialog (apt-get install xdotool)")
    Image.fromarray(picture(alpha=True), "RGBA").save(tmp_path / "photo.png")
    script = INTERACTIVE.format(out=str(tmp_path), path=str(tmp_path / "photo.png"),
                                procedure=PROCEDURE, address=daemon.address)  # fmt: skip
    command = gimp_command("gimp-3.0", gimp_home, display=xvfb) + [
        "--no-splash", "--batch-interpreter=python-fu-eval", "-b", "-", "--quit"]  # fmt: skip
    log = tmp_path / "gimp.log"
    with open(log, "w") as output:
        gimp = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=output,
                                stderr=subprocess.STDOUT, text=True)  # fmt: skip
    gimp.stdin.write(script)
    gimp.stdin.close()
    try:
        dialog = wait_for_window(xvfb, "Recolor with Palette", timeout_s=120)
        assert dialog is not None, f"the dialog never appeared:\n{log.read_text()[-3000:]}"
        time.sleep(1.0)  # let it draw, for the screenshot
        subprocess.run(["import", "-display", xvfb, "-window", "root",
                        str(tmp_path / "dialog.png")], timeout=30)  # fmt: skip
        keys = ["xdotool", "windowfocus", "--sync", dialog, "key", "Return"]  # no window manager
        subprocess.run(keys, env={**os.environ, "DISPLAY": xvfb}, timeout=30, check=True)
        gimp.wait(timeout=180)
    finally:
        if gimp.poll() is None:
            gimp.kill()
            gimp.wait()
    output = log.read_text()
    record_file = tmp_path / "interactive.json"
    assert record_file.exists(), output[-3000:]
    record = json.loads(record_file.read_text())
    assert "exception" not in record, record["exception"]
    assert not gimp_crashed(output), output[-3000:]
    assert record["status"] == "success", record
    assert len(record["layers"]) == 2 and record["original_unchanged"]
    # The dialog was pre-filled with the layer's own palette, which the name lists, and the
    # artist accepted it: the daemon's answer for exactly that edit.
    name = record["layers"][0]
    colors = name.removeprefix("Recolor: ").split()
    assert name.startswith("Recolor: #") and len(colors) == 6, name
    header = {"op": "recolor", "width": 40, "height": 30, "pixel_format": "RGBA8",
              "palette": colors, "source_palette": colors, "method": "palettenet"}  # fmt: skip
    from backend.service.client import Client

    with Client(daemon.address, timeout_s=60) as client:
        reply, frames = client.request(header, (tmp_path / "sent.bin").read_bytes())
    assert reply["ok"] and (tmp_path / "new.bin").read_bytes() == bytes(frames[0])


KILLED = r"""
import json, time
import gi
gi.require_version("Gimp", "3.0")
from gi.repository import Gimp, Gio

image = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path({path!r}))
procedure = Gimp.get_pdb().lookup_procedure({procedure!r})
config = procedure.create_config()
config.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
config.set_property("image", image)
config.set_core_object_array("drawables", [image.get_layers()[0]])
config.set_property("palette", {palette!r})
config.set_property("method", "palettenet")
config.set_property("server", {address!r})
result = procedure.run(config)
record = {{"status": result.index(0).value_nick, "ended": time.time(),
           "layers": len(image.get_layers())}}
if result.index(0) != Gimp.PDBStatusType.SUCCESS:
    record["error"] = str(result.index(1))
open({out!r}, "w").write(json.dumps(record))
"""


def test_a_daemon_killed_mid_job_is_a_clear_error_within_seconds(gimp_home, tmp_path):
    """kill -9 of the daemon while it recolours a 24-megapixel layer: GIMP gets a PDB error
    saying the backend stopped within seconds (not after the 5-minute timeout), and no layer."""
    from backend.service.client import Client
    from tests.servers import Server, random_weights

    weights = random_weights(tmp_path)
    server = Server("serve", "--bind", "tcp://127.0.0.1:*", "--weights", weights, "--device",
                    "cpu")  # fmt: skip
    try:
        y, x = np.mgrid[0:4000, 0:6000]
        rgb = np.stack([x * 255 // 6000, y * 255 // 4000, (x + y) % 256], -1).astype(np.uint8)
        Image.fromarray(rgb, "RGB").save(tmp_path / "large.png", compress_level=1)
        script = KILLED.format(path=str(tmp_path / "large.png"), procedure=PROCEDURE,
                               palette=PALETTE, address=server.address,
                               out=str(tmp_path / "killed.json"))  # fmt: skip
        command = gimp_command("gimp-console-3.0", gimp_home) + [
            "-i", "--batch-interpreter=python-fu-eval", "-b", "-", "--quit"]  # fmt: skip
        gimp = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, text=True)  # fmt: skip
        gimp.stdin.write(script)
        gimp.stdin.close()
        killed_at = None
        with Client(server.address, timeout_s=5) as client:
            deadline = time.monotonic() + 240
            while killed_at is None and time.monotonic() < deadline:
                reply, _ = client.request({"op": "info"})
                if reply.get("running", 0) > 0:  # the layer is being recoloured: kill it
                    server.process.kill()
                    killed_at = time.time()
                time.sleep(0.05)
        assert killed_at is not None, "the recolour never started"
        gimp.wait(timeout=300)
    finally:
        server.stop()
    record = json.loads((tmp_path / "killed.json").read_text())
    assert record["status"] == "execution-error" and record["layers"] == 1, record
    assert "backend stopped" in record["error"], record["error"]
    print(f"killed mid-job: GIMP had the error {record['ended'] - killed_at:.1f} s later")
    assert record["ended"] - killed_at < 15, record["ended"] - killed_at


# --- several selected layers (issue 18 part 3) --------------------------------------------
MANY = r"""
import json, os, time, traceback
import gi
gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp, Gio

out, record = {out!r}, {{}}

def read(drawable):
    rectangle = Gegl.Rectangle.new(0, 0, drawable.get_width(), drawable.get_height())
    return bytes(drawable.get_buffer().get(rectangle, 1.0, "R'G'B'A u8", Gegl.AbyssPolicy.CLAMP))

try:
    image = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path({first!r}))
    first = image.get_layers()[0]
    first.set_name("First")
    second = Gimp.file_load_layer(Gimp.RunMode.NONINTERACTIVE, image,
                                  Gio.File.new_for_path({second!r}))
    second.set_name("Second")
    image.insert_layer(second, None, 0)
    Gimp.Display.new(image)
    before = {{"First": read(first), "Second": read(second)}}
    procedure = Gimp.get_pdb().lookup_procedure({procedure!r})
    config = procedure.create_config()
    config.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
    config.set_property("image", image)
    config.set_core_object_array("drawables", [second, first])  # both selected
    config.set_property("palette", {palette!r})
    config.set_property("method", "chang2015")
    config.set_property("server", {address!r})
    result = procedure.run(config)
    record["status"] = result.index(0).value_nick
    if result.index(0) != Gimp.PDBStatusType.SUCCESS:
        record["error"] = str(result.index(1))
    layers = image.get_layers()
    record["layers"] = [item.get_name() for item in layers]
    record["originals_unchanged"] = (read(first) == before["First"]
                                     and read(second) == before["Second"])
    for index, item in enumerate(layers):
        open(out + "/layer%d.bin" % index, "wb").write(read(item))
    Gimp.displays_flush()
    open(out + "/ran.json", "w").write(json.dumps(record))
    deadline = time.monotonic() + 120  # the test presses Ctrl+Z in the image window
    while not os.path.exists(out + "/undone") and time.monotonic() < deadline:
        time.sleep(0.2)
    record["after_undo"] = [item.get_name() for item in image.get_layers()]
    record["originals_after_undo"] = (read(first) == before["First"]
                                      and read(second) == before["Second"])
except Exception:
    record["exception"] = traceback.format_exc()
open(out + "/many.json", "w").write(json.dumps(record))
"""


STRIPES_SIZE = (160, 120)  # large enough to see in the screenshots


def stripes(*colors) -> np.ndarray:
    """An RGB image of STRIPES_SIZE of vertical stripes of the given 8-bit colours."""
    width, height = STRIPES_SIZE
    rgb = np.zeros((height, width, 3), np.uint8)
    for index, color in enumerate(colors):
        rgb[:, index * width // len(colors) : (index + 1) * width // len(colors)] = color
    return rgb


def wait_for_file(path: Path, process, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not path.exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)
    return path.exists()


def test_two_selected_layers_are_recoloured_alike_and_one_undo_takes_both_back(
    daemon, gimp_home, xvfb, tmp_path
):
    """Two layers selected in GIMP with a window (under Xvfb), recoloured with chang2015 in
    one call: a new layer above each, red and blue give the same colours in both (one
    mapping, though one layer has a near-black the other lacks), and ONE Ctrl+Z in the
    image window removes both new layers and nothing else."""
    if shutil.which("xdotool") is None:
        require_gimp()
        pytest.fail("xdotool is needed to press Ctrl+Z (apt-get install xdotool)")
    red, blue, dark = (204, 51, 51), (51, 102, 204), (20, 15, 10)
    Image.fromarray(stripes(red, blue), "RGB").save(tmp_path / "first.png")
    Image.fromarray(stripes(red, dark, blue), "RGB").save(tmp_path / "second.png")
    script = MANY.format(out=str(tmp_path), first=str(tmp_path / "first.png"),
                         second=str(tmp_path / "second.png"), procedure=PROCEDURE,
                         palette="#102030,#e0a020,#f4f0e8", address=daemon.address)  # fmt: skip
    command = gimp_command("gimp-3.0", gimp_home, display=xvfb) + [
        "--no-splash", "--batch-interpreter=python-fu-eval", "-b", "-", "--quit"]  # fmt: skip
    log = tmp_path / "gimp.log"
    display = {**os.environ, "DISPLAY": xvfb}
    with open(log, "w") as output:
        gimp = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=output,
                                stderr=subprocess.STDOUT, text=True)  # fmt: skip
    gimp.stdin.write(script)
    gimp.stdin.close()
    try:
        ran = wait_for_file(tmp_path / "ran.json", gimp, timeout_s=180)
        assert ran, f"the procedure did not finish:\n{log.read_text()[-3000:]}"
        # GIMP's single window, titled after the image ("[Untitled]-1.0 (RGB color ...")
        window = wait_for_window(xvfb, ".*Untitled.*", timeout_s=60)
        assert window is not None, "no image window"
        subprocess.run(["xdotool", "windowsize", window, "1500", "950"], env=display, timeout=30)
        time.sleep(1.0)  # let it draw, for the screenshot
        subprocess.run(["import", "-display", xvfb, "-window", "root",
                        str(tmp_path / "recoloured.png")], timeout=30)  # fmt: skip
        keys = ["xdotool", "windowfocus", "--sync", window, "key", "ctrl+z"]
        subprocess.run(keys, env=display, timeout=30, check=True)
        time.sleep(1.0)
        subprocess.run(["import", "-display", xvfb, "-window", "root",
                        str(tmp_path / "undone.png")], timeout=30)  # fmt: skip
        (tmp_path / "undone").touch()
        gimp.wait(timeout=180)
    finally:
        if gimp.poll() is None:
            gimp.kill()
            gimp.wait()
    output = log.read_text()
    record_file = tmp_path / "many.json"
    assert record_file.exists(), output[-3000:]
    record = json.loads(record_file.read_text())
    assert "exception" not in record, record["exception"]
    assert not gimp_crashed(output), output[-3000:]
    assert record["status"] == "success", record
    names = record["layers"]
    assert names[1::2] == ["Second", "First"] and len(names) == 4, names
    assert all(name.startswith("Recolor: #102030") for name in names[0::2]), names
    assert record["originals_unchanged"]

    def pixels(index):
        data = (tmp_path / f"layer{index}.bin").read_bytes()
        width, height = STRIPES_SIZE
        return np.frombuffer(data, np.uint8).reshape(height, width, 4)[..., :3]

    second_new, first_new = pixels(0), pixels(2)
    assert tuple(first_new[5, 0]) != red  # recoloured
    assert np.array_equal(first_new[5, 0], second_new[5, 0])  # red alike in both
    assert np.array_equal(first_new[5, -1], second_new[5, -1])  # blue alike in both
    assert record["after_undo"] == ["Second", "First"], record["after_undo"]  # one undo: both
    assert record["originals_after_undo"]


GROUP = r"""
import json, traceback
import gi
gi.require_version("Gimp", "3.0")
from gi.repository import Gimp, Gio

record = {{}}
try:
    image = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path({first!r}))
    first = image.get_layers()[0]
    first.set_name("First")
    second = Gimp.file_load_layer(Gimp.RunMode.NONINTERACTIVE, image,
                                  Gio.File.new_for_path({second!r}))
    second.set_name("Second")
    image.insert_layer(second, None, 0)
    group = Gimp.GroupLayer.new(image, "Group")
    image.insert_layer(group, None, 0)
    image.reorder_item(first, group, 0)
    image.reorder_item(second, group, 0)
    procedure = Gimp.get_pdb().lookup_procedure({procedure!r})
    config = procedure.create_config()
    config.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
    config.set_property("image", image)
    config.set_core_object_array("drawables", [group])  # the group itself selected
    config.set_property("palette", {palette!r})
    config.set_property("method", "chang2015")
    config.set_property("server", {address!r})
    result = procedure.run(config)
    record["status"] = result.index(0).value_nick
    if result.index(0) != Gimp.PDBStatusType.SUCCESS:
        record["error"] = str(result.index(1))
    record["top"] = [item.get_name() for item in image.get_layers()]
    record["in_group"] = [item.get_name() for item in group.get_children()]
except Exception:
    record["exception"] = traceback.format_exc()
open({out!r}, "w").write(json.dumps(record))
"""


def test_a_selected_layer_group_recolours_the_layers_inside_it(daemon, gimp_home, tmp_path):
    Image.fromarray(stripes((204, 51, 51), (51, 102, 204)), "RGB").save(tmp_path / "first.png")
    Image.fromarray(stripes((20, 15, 10), (204, 51, 51)), "RGB").save(tmp_path / "second.png")
    script = GROUP.format(first=str(tmp_path / "first.png"), second=str(tmp_path / "second.png"),
                          procedure=PROCEDURE, palette="#102030,#e0a020,#f4f0e8",
                          address=daemon.address, out=str(tmp_path / "group.json"))  # fmt: skip
    run = run_batch(script, gimp_home, timeout_s=300)
    assert (tmp_path / "group.json").exists(), run.stderr[-3000:]
    record = json.loads((tmp_path / "group.json").read_text())
    assert "exception" not in record, record["exception"]
    assert record["status"] == "success", record
    assert record["top"] == ["Group"]  # nothing outside the group
    names = record["in_group"]
    assert names[1::2] == ["Second", "First"] and len(names) == 4, names
    assert all(name.startswith("Recolor: #102030") for name in names[0::2]), names


# --- the dialog's live preview (issue 18 part 1) ------------------------------------------
PREVIEW_DIALOGS = r"""
import json, traceback
import gi
gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp, Gio

out, record = {out!r}, {{}}
try:
    image = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path({path!r}))
    Gimp.Display.new(image)
    layer = image.get_layers()[0]
    rectangle = Gegl.Rectangle.new(0, 0, layer.get_width(), layer.get_height())
    procedure = Gimp.get_pdb().lookup_procedure({procedure!r})
    for method in ("chang2015", "palettenet"):  # the test picks each in the dialog
        config = procedure.create_config()
        config.set_property("run-mode", Gimp.RunMode.INTERACTIVE)
        config.set_property("image", image)
        config.set_core_object_array("drawables", [layer])
        config.set_property("server", {address!r})
        result = procedure.run(config)
        run = record[method] = {{"status": result.index(0).value_nick}}
        if result.index(0) != Gimp.PDBStatusType.SUCCESS:
            run["error"] = str(result.index(1))
        new = image.get_layers()[0]
        run["name"] = new.get_name()
        data = new.get_buffer().get(rectangle, 1.0, "R'G'B'A u8", Gegl.AbyssPolicy.CLAMP)
        open(out + "/" + method + ".new", "wb").write(bytes(data))
        open(out + "/" + method + ".done", "w").write("")
except Exception:
    record["exception"] = traceback.format_exc()
open(out + "/preview.json", "w").write(json.dumps(record))
"""

DRAG_MOVES = 24  # mouse moves along the colour dialog's hue strip
MOVE_PAUSE_S = 0.08  # between them: about 12 colours a second, a slow drag
# Where the hue strip of GIMP 3.0.4's colour dialog ("Colour 2") lies in it, in pixels
HUE_STRIP_X, HUE_STRIP_TOP, HUE_STRIP_BOTTOM = 175, 50, 265
COLOUR_OK = (417, 368)  # its OK button


def log_records(path: Path) -> list:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class DaemonLoad:
    """Polls the daemon's info while the artist drags: the most requests it ever held at
    once (waiting + running)."""

    def __init__(self, address):
        import threading

        from backend.service.client import Client

        self.most, self._stop = 0, threading.Event()
        self._client = Client(address, timeout_s=5)

        def poll():
            while not self._stop.is_set():
                reply, _ = self._client.request({"op": "info"})
                self.most = max(self.most, reply.get("waiting", 0) + reply.get("running", 0))
                time.sleep(0.01)

        self._thread = threading.Thread(target=poll, daemon=True)
        self._thread.start()

    def stop(self):
        self._stop.set()
        self._thread.join(10)
        self._client.close()


def percentile(values, share):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def test_live_preview_follows_a_dragged_colour_in_the_real_dialog(daemon, gimp_home, xvfb,
                                                                  tmp_path):  # fmt: skip
    """Colors > Recolor with Palette... in GIMP's window under Xvfb, twice (chang2015, then
    palettenet, picked in the dialog with the keyboard): Alt+2 opens Colour 2's colour
    dialog, the mouse drags along its hue strip, and the preview beside the settings follows
    while the button is held: every change is taken by the dialog at once (never frozen),
    the daemon never holds more than one request (no stale queue), and OK recolours with
    the dragged colour. With chang2015 (each pixel by its colour alone) the last preview is
    exactly Apply's new layer at the preview's pixels. Prints the latency per change."""
    if shutil.which("xdotool") is None or shutil.which("import") is None:
        require_gimp()
        pytest.fail("xdotool and ImageMagick's import are needed (apt-get install xdotool "
                    "imagemagick)")  # fmt: skip
    from skimage import data

    Image.fromarray(data.astronaut()).save(tmp_path / "astronaut.png")  # 512 x 512
    log = tmp_path / "preview.jsonl"
    script = PREVIEW_DIALOGS.format(out=str(tmp_path), path=str(tmp_path / "astronaut.png"),
                                    procedure=PROCEDURE, address=daemon.address)  # fmt: skip
    command = gimp_command("gimp-3.0", gimp_home, display=xvfb)
    command.insert(-1, f"PALETTENET_PREVIEW_LOG={log}")  # before the program: its environment
    command += ["--no-splash", "--batch-interpreter=python-fu-eval", "-b", "-", "--quit"]
    display = {**os.environ, "DISPLAY": xvfb}

    def xdotool(*args):
        return subprocess.run(["xdotool", *map(str, args)], env=display, timeout=30,
                              capture_output=True, text=True, check=True).stdout  # fmt: skip

    def screenshot(name):
        subprocess.run(["import", "-display", xvfb, "-window", "root", str(tmp_path / name)],
                       timeout=30)  # fmt: skip

    def settled(count):  # the preview of the newest colour is shown
        records = log_records(log)
        return len(records) > count and not records[-1]["superseded"]

    def quiet(count, for_s=1.5):  # settled, and no preview since for_s
        return settled(count) and time.time() - log.stat().st_mtime > for_s

    gimp_log = tmp_path / "gimp.log"
    with open(gimp_log, "w") as output:
        gimp = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=output,
                                stderr=subprocess.STDOUT, text=True)  # fmt: skip
    gimp.stdin.write(script)
    gimp.stdin.close()
    drags = {}
    try:
        for method, key in (("chang2015", "Down"), ("palettenet", "Up")):
            before = len(log_records(log))  # the previews of the dialogs before
            dialog = wait_for_window(xvfb, "Recolor with Palette", timeout_s=180)
            assert dialog is not None, f"no dialog:\n{gimp_log.read_text()[-3000:]}"
            assert wait_until(lambda n=before: settled(n), 120), "no first preview"
            xdotool("windowfocus", "--sync", dialog, "key", "alt+m", "key", key)  # the method
            assert wait_until(lambda m=method: log_records(log)[-1].get("method") == m, 120)
            xdotool("windowfocus", "--sync", dialog, "key", "alt+2")  # Colour 2's dialog
            chooser = wait_for_window(xvfb, "Colour 2", timeout_s=30)
            assert chooser is not None, "Alt+2 opened no colour dialog"
            xdotool("windowmove", "--sync", chooser, 700, 40)
            time.sleep(1.0)
            start = len(log_records(log))
            load = DaemonLoad(daemon.address)
            x = 700 + HUE_STRIP_X
            xdotool("mousemove", x, 40 + HUE_STRIP_TOP, "mousedown", "1")
            for move in range(1, DRAG_MOVES + 1):
                y = 40 + HUE_STRIP_TOP + move * (HUE_STRIP_BOTTOM - HUE_STRIP_TOP) // DRAG_MOVES
                xdotool("mousemove", x, y)
                time.sleep(MOVE_PAUSE_S)
            during = len(log_records(log)) - start  # previews shown while the button is held
            assert wait_until(lambda n=start: settled(n), 60), "the last colour was never shown"
            screenshot(f"{method}-drag.png")  # the button still held
            xdotool("mouseup", "1")
            xdotool("mousemove", 700 + COLOUR_OK[0], 40 + COLOUR_OK[1], "click", "1")
            assert wait_until(lambda n=start: quiet(n), 60)
            shutil.copy(f"{log}.rgba", tmp_path / f"{method}.shown")  # the last preview
            load.stop()
            drags[method] = dict(records=log_records(log)[start:], during=during,
                                 most=load.most)  # fmt: skip
            screenshot(f"{method}-chosen.png")
            xdotool("windowfocus", "--sync", dialog, "key", "alt+o")  # OK: recolour
            assert wait_for_file(tmp_path / f"{method}.done", gimp, timeout_s=300)
        gimp.wait(timeout=180)
    finally:
        if gimp.poll() is None:
            gimp.kill()
            gimp.wait()
    output = gimp_log.read_text()
    assert not gimp_crashed(output), output[-3000:]
    record = json.loads((tmp_path / "preview.json").read_text())
    assert "exception" not in record, record["exception"]
    own = layer_colours(data.astronaut(), daemon)
    for method, drag in drags.items():
        run, records = record[method], drag["records"]
        assert run["status"] == "success", run
        colours = run["name"].removeprefix("Recolor: ").split()
        assert len(colours) == 6 and colours[1] != own[1], (colours, own)  # dragged: used
        changes = [ms for entry in records for ms in entry["latencies_ms"]]
        # The mouse moves reached the preview as changes: the dialog kept taking them while
        # requests ran (a busy CPU may merge a few moves into one, as GTK does); previews
        # came while the button was held; the daemon never
        # held more than one request (a change while one is on its way waits, replacing
        # the one waiting before it: when a request takes longer than the moves' interval,
        # there are fewer previews than changes).
        assert len(changes) >= DRAG_MOVES / 2, (len(changes), records)
        assert drag["during"] >= 1 and len(records) <= len(changes)
        assert drag["most"] <= 1, drag["most"]
        trips = [entry["round_trip_ms"] for entry in records]
        print(f"\n{method}: {len(changes)} colour changes, {len(records)} previews "
              f"({drag['during']} while dragging); latency per change p50 "
              f"{percentile(changes, 0.5):.0f} ms, p95 {percentile(changes, 0.95):.0f} ms; "
              f"request round trip p50 {percentile(trips, 0.5):.0f} ms, p95 "
              f"{percentile(trips, 0.95):.0f} ms")  # fmt: skip
    # The last preview is what OK sends, at the preview's pixels: the same region, palette
    # and pairs. chang2015 recolours each pixel by its colour alone: exactly OK's new layer
    # at those pixels. palettenet's preview runs the network at the preview's size (here
    # with random weights, far from scale-free): exactly the daemon's answer for the
    # sampled layer with the palette OK used.
    for method in drags:
        new = np.frombuffer((tmp_path / f"{method}.new").read_bytes(), np.uint8)
        assert drags[method]["records"][-1]["size"] == [256, 256]
        shown = (tmp_path / f"{method}.shown").read_bytes()
        if method == "chang2015":
            assert shown == new.reshape(512, 512, 4)[::2, ::2].tobytes()
            continue
        colours = record[method]["name"].removeprefix("Recolor: ").split()
        assert shown == preview_answer(daemon, data.astronaut(), colours, own, method)


def wait_until(condition, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def sampled_rgba(rgb: np.ndarray) -> bytes:
    """A 512 x 512 RGB layer as the plug-in samples it (every 2nd pixel), RGBA8."""
    return np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])[::2, ::2].tobytes()


def layer_colours(rgb: np.ndarray, daemon) -> list:
    """The layer's palette as the dialog pre-fills it (the plug-in's 256-px thumbnail)."""
    from backend.service.client import Client

    header = {"op": "palette", "width": 256, "height": 256, "pixel_format": "RGBA8",
              "options": {"k": 6}}  # fmt: skip
    with Client(daemon.address, timeout_s=60) as client:
        reply, _ = client.request(header, sampled_rgba(rgb))
    return [colour.lower() for colour in reply["palette"]]


def preview_answer(daemon, rgb: np.ndarray, palette: list, source: list, method: str) -> bytes:
    """The daemon's answer to the preview request the dialog sends for this layer."""
    from backend.service.client import Client

    header = {"op": "recolor", "width": 256, "height": 256, "pixel_format": "RGBA8",
              "palette": palette, "source_palette": source, "method": method,
              "options": {"max_side": 256}}  # fmt: skip
    with Client(daemon.address, timeout_s=120) as client:
        reply, frames = client.request(header, sampled_rgba(rgb))
    assert reply["ok"], reply
    return bytes(frames[0])
