"""The plug-ins' palettenet/1 client (plugin/recolor_with_palette/client.py) and the daemon
auto-start (autostart.py), against a real daemon over both transports (pyzmq and the
built-in ZMTP client), plus a message for the artist for every error code."""

import json
import os
import socket
import stat
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zmq
from servers import PALETTE, Server, random_weights

from backend.service.client import Client as BackendClient
from plugin.recolor_with_palette import transport
from plugin.recolor_with_palette.autostart import Launcher, is_local
from plugin.recolor_with_palette.client import CancelToken, Client, Connection
from plugin.recolor_with_palette.errors import (
    MESSAGES,
    BackendStoppedError,
    ConnectionLostError,
    RecolorError,
)
from plugin.recolor_with_palette.pixels import Pixels
from plugin.recolor_with_palette.wire import ERROR_CODES

PROTOCOL_CODES = list(ERROR_CODES)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    weights = random_weights(tmp_path_factory.mktemp("weights"))
    server = Server("serve", "--bind", "tcp://127.0.0.1:*", "--weights", weights,
                    "--device", "cpu", "--max-pixels", 4_000_000)  # fmt: skip
    yield server
    server.stop()


@pytest.fixture(params=["pyzmq", "builtin"])
def implementation(request, monkeypatch):
    monkeypatch.setenv(transport.FORCE_BUILTIN_ENV, "1" if request.param == "builtin" else "0")
    return request.param


def photo(width=48, height=32) -> np.ndarray:
    """A small RGBA8 picture with strong colour areas and a transparent band."""
    y, x = np.mgrid[0:height, 0:width]
    rgba = np.zeros((height, width, 4), np.uint8)
    rgba[..., 0] = (x * 255 // width).astype(np.uint8)
    rgba[..., 1] = (y * 255 // height).astype(np.uint8)
    rgba[..., 2] = 128
    rgba[..., 3] = 255
    rgba[:4, :, 3] = 0
    return rgba


def direct(daemon, header, pixels=None, mask=None):
    """The daemon's answer through the backend's own pyzmq client: the reference."""
    with BackendClient(daemon.address, timeout_s=60) as client:
        return client.request(header, pixels, mask)


def test_ping_and_info_name_protocol_and_methods(daemon, implementation):
    client = Client(Connection(daemon.address))
    assert client.ping()["protocol"] == "palettenet/1"
    assert {"palettenet", "chang2015"} <= set(client.info()["methods"])


@pytest.mark.parametrize("fmt", ["BGRA8", "RGBA16", "RGBAF32"])
def test_recolor_reply_equals_the_daemons_direct_answer(daemon, implementation, fmt):
    rgba = photo()
    if fmt == "BGRA8":
        data = rgba[..., [2, 1, 0, 3]].tobytes()
    elif fmt == "RGBA16":
        data = (rgba.astype("<u2") * 257).tobytes()
    else:
        data = (rgba / 255).astype("<f4").tobytes()
    mask = np.zeros(rgba.shape[:2], np.uint8)
    mask[:, 24:] = 255
    pixels = Pixels(48, 32, fmt, data)
    result = Client(Connection(daemon.address)).recolor(
        pixels, PALETTE, "palettenet", mask.tobytes()
    )
    header = {"op": "recolor", "width": 48, "height": 32, "pixel_format": fmt,
              "palette": PALETTE, "method": "palettenet"}  # fmt: skip
    reply, frames = direct(daemon, header, data, mask.tobytes())
    assert reply["ok"] and result.data == bytes(frames[0])
    assert result.data != data  # something did change (the right half)
    assert (result.width, result.height, result.pixel_format) == (48, 32, fmt)


def test_palette_and_a_downscaled_preview(daemon, implementation):
    rgba = photo(400, 200)
    pixels = Pixels(400, 200, "RGBA8", rgba.tobytes())
    client = Client(Connection(daemon.address))
    colors, weights = client.palette(pixels, k=4)
    assert len(colors) == 4 and all(c.startswith("#") and len(c) == 7 for c in colors)
    assert sum(weights) == pytest.approx(1, abs=1e-3)
    preview = client.recolor(pixels, colors[::-1], "chang2015", source_palette=colors, max_side=100)
    assert (preview.width, preview.height) == (100, 50)


def test_a_large_frame_arrives_whole_over_the_builtin_client(daemon, monkeypatch):
    monkeypatch.setenv(transport.FORCE_BUILTIN_ENV, "1")
    side = 1500  # 9 MB of RGBA8
    data = np.random.default_rng(0).integers(0, 256, (side, side, 4), np.uint8).tobytes()
    result = Client(Connection(daemon.address)).recolor(
        Pixels(side, side, "RGBA8", data), PALETTE, "chang2015"
    )
    assert len(result.data) == len(data)


@pytest.mark.parametrize(
    "header, code, words",
    [
        ({"op": "recolor", "palette": ["#12345g"]}, "bad_palette", "refused the target palette"),
        ({"op": "recolor", "pixel_format": "CMYK8"}, "unsupported_format", "pixel format"),
        ({"op": "recolor", "width": 5000, "height": 5000}, "too_large", "too large"),
        ({"op": "recolor", "width": 7}, "size_mismatch", "did not arrive complete"),
        ({"op": "explode"}, "bad_request", "did not understand"),
    ],
)
def test_error_replies_of_a_real_daemon_become_plain_words(
    daemon, implementation, header, code, words
):
    full = {"op": "recolor", "width": 4, "height": 4, "pixel_format": "RGBA8",
            "palette": PALETTE, **header}  # fmt: skip
    with pytest.raises(RecolorError) as caught:
        Client(Connection(daemon.address)).request(full, b"\0" * 64)
    assert caught.value.code == code
    assert words in str(caught.value)
    assert caught.value.detail and caught.value.detail in str(caught.value)  # daemon's words


class ScriptedSocket:
    """A transport socket that answers with a given reply (or never)."""

    implementation = "scripted"

    def __init__(self, reply=None):
        self.reply, self.sent, self.closed = reply, [], False

    def send_multipart(self, frames):
        self.sent.append(frames)

    def recv_multipart(self, timeout_s=None):
        if self.reply is None:
            time.sleep(timeout_s or 0)
            raise transport.TransportTimeout("no reply")
        return self.reply

    def close(self):
        self.closed = True


@pytest.mark.parametrize("code", PROTOCOL_CODES + ["something_new"])
def test_every_error_code_has_a_message_for_the_artist(code):
    error = {"code": code, "message": f"detail of {code}"}
    reply = [json.dumps({"ok": False, "id": None, "error": error}).encode()]
    client = Client(
        Connection("tcp://127.0.0.1:1"), open_socket=lambda *a, **k: ScriptedSocket(reply)
    )
    with pytest.raises(RecolorError) as caught:
        client.ping()
    text = str(caught.value)
    assert f"detail of {code}" in text
    if code in MESSAGES:
        assert text.startswith(MESSAGES[code]) and len(MESSAGES[code]) > 30
    else:
        assert "something_new" in text


def test_no_answer_is_a_timeout_that_names_the_address():
    socket_ = ScriptedSocket(None)
    client = Client(
        Connection("tcp://127.0.0.1:9", timeout_s=0.3), open_socket=lambda *a, **k: socket_
    )
    started = time.monotonic()
    with pytest.raises(RecolorError) as caught:
        client.request({"op": "info"})
    assert 0.25 < time.monotonic() - started < 2
    assert caught.value.code == "timeout" and "tcp://127.0.0.1:9" in str(caught.value)
    assert socket_.closed


class LosingSocket(ScriptedSocket):
    """Loses the connection (as the transport reports a daemon that went away) for the
    first `losses` requests; connect() succeeds once `back_after_s` has passed."""

    def __init__(self, reply, losses=1, back_after_s=0.0):
        super().__init__(reply)
        self.losses, self.back_at = losses, time.monotonic() + back_after_s
        self.connects = 0

    def recv_multipart(self, timeout_s=None):
        if len(self.sent) <= self.losses:
            raise transport.ZmtpConnectionLost("the daemon closed the connection")
        return super().recv_multipart(timeout_s)

    def connect(self, timeout_s=None):
        self.connects += 1
        if time.monotonic() < self.back_at:
            time.sleep(min(timeout_s, 0.01))  # as a refused connection: at once
            raise transport.ZmtpConnectionRefused("nothing is listening")


PING_REPLY = [json.dumps({"ok": True, "id": None, "protocol": "palettenet/1"}).encode()]


def losing_client(socket_, timeout_s=30.0, grace_s=3.0) -> Client:
    connection = Connection("tcp://127.0.0.1:9", timeout_s, timeout_s, restart_grace_s=grace_s)
    return Client(connection, open_socket=lambda *a, **k: socket_)


def test_a_lost_request_is_sent_again_once_the_daemon_is_back():
    socket_ = LosingSocket(PING_REPLY, back_after_s=0.5)
    started = time.monotonic()
    assert losing_client(socket_).ping()["ok"]
    assert 0.5 <= time.monotonic() - started < 1.5
    assert len(socket_.sent) == 2 and socket_.sent[0] == socket_.sent[1]
    assert socket_.connects > 1 and socket_.closed


def test_a_daemon_that_does_not_come_back_is_said_to_have_stopped():
    socket_ = LosingSocket(PING_REPLY, back_after_s=3600)
    started = time.monotonic()
    with pytest.raises(BackendStoppedError) as caught:
        losing_client(socket_, grace_s=0.5).ping()
    assert 0.5 <= time.monotonic() - started < 1.5
    assert caught.value.code == "backend_stopped" and len(socket_.sent) == 1
    assert str(caught.value).startswith(MESSAGES["backend_stopped"])
    assert "was not back within 0.5 s" in str(caught.value)


def test_lost_twice_is_an_error_not_a_loop():
    back_at_once = LosingSocket(PING_REPLY, losses=2)
    with pytest.raises(ConnectionLostError, match="closed the connection twice") as caught:
        losing_client(back_at_once).ping()
    assert caught.value.code == "connection_lost" and len(back_at_once.sent) == 2
    came_back = LosingSocket(PING_REPLY, losses=2, back_after_s=0.2)
    with pytest.raises(BackendStoppedError, match="stopped again"):
        losing_client(came_back).ping()


def test_waiting_for_a_lost_daemon_keeps_to_the_timeout_and_the_cancel():
    started = time.monotonic()
    with pytest.raises(BackendStoppedError):  # the grace is cut to what the timeout leaves
        losing_client(LosingSocket(PING_REPLY, back_after_s=3600), timeout_s=0.6).ping()
    assert time.monotonic() - started < 0.6 + 0.5
    token = CancelToken()
    threading.Timer(0.3, token.cancel).start()
    started = time.monotonic()
    with pytest.raises(RecolorError) as caught:
        losing_client(LosingSocket(PING_REPLY, back_after_s=3600)).request(
            {"op": "ping"}, cancel=token
        )
    assert caught.value.code == "cancelled" and time.monotonic() - started < 1


@pytest.mark.parametrize("code", ["backend_stopped", "no_memory", "connection_lost"])
def test_failures_of_this_side_have_messages(code):
    assert len(MESSAGES[code]) > 30
    assert "raise the timeout" not in MESSAGES["backend_stopped"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_nothing_listening_is_refused_or_silent_but_always_said(implementation):
    address = f"tcp://127.0.0.1:{free_port()}"
    client = Client(Connection(address, quick_timeout_s=0.5))
    with pytest.raises(RecolorError) as caught:
        client.ping()
    # The built-in client sees the refusal; pyzmq reconnects silently until the deadline.
    expected = "connection_refused" if implementation == "builtin" else "timeout"
    assert caught.value.code == expected and address in str(caught.value)


def test_cancel_stops_the_wait_within_a_fraction_of_a_second():
    context = zmq.Context()
    silent = context.socket(zmq.ROUTER)  # receives, never answers: a daemon on a long job
    port = silent.bind_to_random_port("tcp://127.0.0.1")
    token = CancelToken()
    threading.Timer(0.3, token.cancel).start()
    started = time.monotonic()
    try:
        with pytest.raises(RecolorError) as caught:
            Client(Connection(f"tcp://127.0.0.1:{port}", timeout_s=30)).request(
                {"op": "info"}, cancel=token
            )
    finally:
        silent.close(0)
        context.term()
    assert caught.value.code == "cancelled"
    assert time.monotonic() - started < 1.5


def test_curve_keys_without_pyzmq_say_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setenv(transport.FORCE_BUILTIN_ENV, "1")
    key = tmp_path / "server.key"
    key.write_text('curve\n    public-key = "' + "a" * 40 + '"\n')
    connection = Connection("tcp://10.1.2.3:5555", server_public_key=key, client_keys=key)
    with pytest.raises(RecolorError) as caught:
        Client(connection).ping()
    assert caught.value.code == "encryption_unavailable"
    assert "pyzmq" in str(caught.value)


# --- auto-start ---------------------------------------------------------------------------
def palettenet_command() -> str:
    command = Path(sys.executable).with_name("palettenet")
    if not command.exists():
        pytest.skip(f"no palettenet command next to {sys.executable}")
    return str(command)


def write_record(folder: Path, command: str) -> Path:
    record = folder / "backend.json"
    record.write_text(json.dumps({"palettenet": command}))
    return record


def test_autostart_starts_the_installed_daemon_and_waits_for_its_ping(tmp_path):
    address = f"tcp://127.0.0.1:{free_port()}"
    launcher = Launcher(write_record(tmp_path, palettenet_command()), tmp_path / "daemon.log")
    client = Client(Connection(address, quick_timeout_s=0.5))
    statuses = []
    try:
        reply = launcher.ensure_running(client, statuses.append, timeout_s=120)
        assert reply["ok"] and reply["protocol"] == "palettenet/1"
        assert statuses == ["Starting the backend…"]
        # A second call finds it running and starts nothing.
        assert launcher.ensure_running(client, statuses.append)["ok"]
        assert statuses == ["Starting the backend…"]
    finally:
        process = launcher._processes.get(address)
        if process is not None:
            process.terminate()
            process.wait(30)


def test_a_daemon_that_dies_while_starting_is_reported_with_its_log(tmp_path):
    script = tmp_path / "palettenet"
    script.write_text("#!/bin/sh\necho 'cannot load the model: disk full' >&2\nexit 3\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    launcher = Launcher(write_record(tmp_path, str(script)), tmp_path / "daemon.log")
    client = Client(Connection(f"tcp://127.0.0.1:{free_port()}", quick_timeout_s=0.3))
    with pytest.raises(RecolorError) as caught:
        launcher.ensure_running(client, timeout_s=20)
    text = str(caught.value)
    assert caught.value.code == "start_failed"
    assert "exit code 3" in text and "disk full" in text and "daemon.log" in text


def test_without_an_installed_backend_the_message_says_to_run_install(tmp_path):
    launcher = Launcher(tmp_path / "missing.json", tmp_path / "daemon.log")
    client = Client(Connection(f"tcp://127.0.0.1:{free_port()}", quick_timeout_s=0.3))
    with pytest.raises(RecolorError) as caught:
        launcher.ensure_running(client)
    assert caught.value.code == "no_backend" and "install.py" in str(caught.value)


def test_a_remote_address_is_never_started_locally(tmp_path):
    launcher = Launcher(write_record(tmp_path, "/bin/false"), tmp_path / "daemon.log")
    client = Client(Connection("tcp://192.0.2.1:5555", quick_timeout_s=0.3))
    with pytest.raises(RecolorError) as caught:
        launcher.ensure_running(client)
    assert caught.value.code == "unreachable" and "192.0.2.1" in str(caught.value)
    assert not launcher._processes


def test_local_addresses():
    assert is_local("tcp://127.0.0.1:5555") and is_local("tcp://[::1]:5555")
    assert is_local("ipc:///tmp/palettenet.sock") and is_local("tcp://localhost:1")
    assert not is_local("tcp://192.168.1.2:5555") and not is_local("tcp://*:5555")


if os.name == "nt":  # pragma: no cover
    pytestmark = pytest.mark.skip("the test daemon scripts are POSIX shell")
