"""Starting, stopping and securing the daemon: ready line, signals, missing weights,
loopback-only by default, CURVE keys."""

import re
import signal
import threading
import time

import numpy as np
import pytest

from backend.cli.main import main
from backend.service.client import Client
from backend.service.daemon import Daemon, Settings
from backend.service.engine import Engine
from backend.service.security import ClientKeys, SecurityError, ServerKeys, create_keys, is_local
from tests.conftest import small_photo
from tests.servers import Server, as_pixels, photo_pixels, random_weights, recolor_header


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return random_weights(tmp_path_factory.mktemp("weights"))


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_finishes_the_job_in_flight_then_exits_0(weights, signum):
    server = Server("serve", "--bind", "tcp://127.0.0.1:*", "--weights", weights)
    assert re.search(
        r"ready on tcp://127\.0\.0\.1:\d+ device=cpu model=palettenet", server.lines[0]
    )
    pixels = photo_pixels(small_photo("astronaut", 800), "RGBA8")
    result = {}

    def job():
        with Client(server.address, timeout_s=120) as client:
            result["reply"], result["frames"] = client.request(
                recolor_header(pixels, "RGBA8"), pixels
            )

    thread = threading.Thread(target=job)
    thread.start()
    with Client(server.address, timeout_s=10) as client:
        while client.request({"op": "info"})[0]["running"] == 0:
            time.sleep(0.02)
    server.process.send_signal(signum)
    with Client(server.address, timeout_s=10) as client:  # no new work is accepted
        while True:
            reply = client.request(recolor_header(pixels[:8], "RGBA8"), pixels[:8])[0]
            if not reply["ok"]:  # (the signal may take a moment to be seen)
                break
        assert reply["error"]["code"] == "busy" and "stopping" in reply["error"]["message"]
    thread.join(timeout=120)
    assert result["reply"]["ok"], result["reply"]
    out = as_pixels(result["frames"][0], pixels)
    np.testing.assert_array_equal(out[..., 3], pixels[..., 3])
    assert server.process.wait(timeout=60) == 0  # one signal was enough
    assert "palettenet daemon stopped" in "".join(server.lines)


def test_without_weights_the_daemon_serves_chang2015_and_palettes(tmp_path):
    missing = tmp_path / "nothing.pt"
    server = Server("serve", "--bind", "tcp://127.0.0.1:*", "--weights", missing)
    try:
        assert "model=none" in server.lines[0] and "nothing.pt" in server.lines[0]
        pixels = photo_pixels(small_photo("coffee", 32), "RGBA8")
        with Client(server.address, timeout_s=60) as client:
            info = client.request({"op": "info"})[0]
            assert info["model"] == "none" and info["methods"] == ["chang2015"]
            assert client.request(recolor_header(pixels, "RGBA8", "chang2015"), pixels)[0]["ok"]
            reply = client.request(recolor_header(pixels, "RGBA8", "palettenet"), pixels)[0]
            assert reply["error"]["code"] == "model_unavailable"
            assert str(missing) in reply["error"]["message"]
            header = {"op": "palette", "width": 32, "height": pixels.shape[0],
                      "pixel_format": "RGBA8"}  # fmt: skip
            assert len(client.request(header, pixels)[0]["palette"]) == 6
    finally:
        assert server.stop() == 0


def test_only_loopback_and_ipc_count_as_local():
    local = ["tcp://127.0.0.1:5555", "tcp://127.8.0.1:1", "tcp://[::1]:5555",
             "tcp://localhost:5555", "ipc:///tmp/x.sock", "inproc://x"]  # fmt: skip
    exposed = ["tcp://0.0.0.0:5555", "tcp://*:5555", "tcp://192.168.1.10:5555",
               "tcp://eth0:5555", "tcp://[::]:5555", "pgm://eth0;239.1.1.1:5555"]  # fmt: skip
    assert all(is_local(address) for address in local)
    assert not any(is_local(address) for address in exposed)


def test_binding_beyond_loopback_is_refused_without_keys(tmp_path):
    with pytest.raises(
        SystemExit, match="refusing to listen on tcp://0.0.0.0:5599.*palettenet keys"
    ):
        main(["serve", "--bind", "tcp://0.0.0.0:5599", "--weights", str(tmp_path / "w.pt")])
    daemon = Daemon(
        Engine(tmp_path / "w.pt", "cpu", load_model=False), Settings(bind="tcp://*:5599")
    )
    with pytest.raises(SecurityError):
        daemon.start()
    daemon.context.term()


def test_curve_accepts_the_listed_client_key_and_refuses_others(tmp_path):
    server_public, server_secret = create_keys(tmp_path / "server", "server")
    client_public, client_secret = create_keys(tmp_path / "client", "client")
    _, intruder_secret = create_keys(tmp_path / "intruder", "intruder")
    accepted = tmp_path / "accepted"
    accepted.mkdir()
    (accepted / "client.key").write_bytes(client_public.read_bytes())
    settings = Settings(bind="tcp://0.0.0.0:*", server_keys=ServerKeys(server_secret, accepted))
    daemon = Daemon(Engine(tmp_path / "w.pt", "cpu", load_model=False), settings)
    port = daemon.start().rsplit(":", 1)[1]
    thread = threading.Thread(target=daemon.serve)
    thread.start()
    address = f"tcp://127.0.0.1:{port}"
    try:
        with Client(address, 10, ClientKeys(server_public, client_secret)) as client:
            assert client.request({"op": "ping"})[0]["ok"]
        for keys in (ClientKeys(server_public, intruder_secret), None):
            with Client(address, 1.5, keys) as client, pytest.raises(TimeoutError):
                client.request({"op": "ping"})
    finally:
        daemon.stop()
        thread.join()
