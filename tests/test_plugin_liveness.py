"""The plug-in client (plugin/recolor_with_palette/client.py) against servers that misbehave
and daemons that die, over both transports (pyzmq, and the built-in ZMTP client):

- hostile servers: a frame of 1 GiB or 2^62 bytes announced, a message that never ends, a
  reply nested 100,000 levels deep: every one ends as a RecolorError within the timeout,
  without the editor's process allocating what was announced;
- a real daemon killed (kill -9) or stopped (SIGSTOP) while it holds the request: a clear
  "backend stopped" error within seconds, not after the 5-minute timeout;
- a daemon killed and started again on the same address: the request is sent again and
  the artist gets the result.
"""

import contextlib
import json
import os
import re
import signal
import socket
import struct
import sys
import threading
import time
import tracemalloc

import numpy as np
import pytest
import zmq
from servers import PALETTE, Server, daemon_answer
from zmtp_peer import read_exact, read_message

from backend.service.protocol import encode_request
from plugin.recolor_with_palette import transport
from plugin.recolor_with_palette.client import Client, Connection
from plugin.recolor_with_palette.errors import (
    BackendStoppedError,
    BadReplyError,
    ConnectionLostError,
    RecolorError,
)
from plugin.recolor_with_palette.pixels import Pixels

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="/proc, signals, fork")


@pytest.fixture(params=["pyzmq", "builtin"])
def implementation(request, monkeypatch):
    monkeypatch.setenv(transport.FORCE_BUILTIN_ENV, "1" if request.param == "builtin" else "0")
    return request.param


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def vm_size_mib() -> float:
    """This process's virtual size: what was allocated, touched or not (libzmq's too)."""
    status = open("/proc/self/status").read()
    return int(re.search(r"VmSize:\s+(\d+) kB", status).group(1)) / 1024


def rss_mib() -> float:
    status = open("/proc/self/status").read()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024


# --- a hostile server ----------------------------------------------------------------------
def frame(body: bytes, more=False) -> bytes:
    return struct.pack(">BQ", 0x02 | more, len(body)) + body


def announce(size: int) -> bytes:
    """A reply whose second frame claims `size` bytes (and brings only a few)."""
    return b"\x01\x00" + struct.pack(">BQ", 0x02, size) + b"x" * 1000


class HostileServer:
    """Speaks just enough ZMTP 3.1 (as a ROUTER) to take a request on each connection, then
    `reply(connection, stop)` writes whatever it likes to it."""

    def __init__(self, reply):
        self.reply = reply
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.address = f"tcp://127.0.0.1:{self.listener.getsockname()[1]}"
        self.requests = 0
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self):
        while not self.stop.is_set():
            try:
                connection, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(connection,), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _serve(self, connection):
        with connection, contextlib.suppress(OSError, EOFError):
            greeting = b"\xff" + bytes(8) + b"\x7f\x03\x01" + b"NULL".ljust(20, b"\0")
            connection.sendall(greeting + bytes(32))
            read_exact(connection, 64)
            ready = b"\x05READY\x0bSocket-Type" + struct.pack(">I", 6) + b"ROUTER"
            connection.sendall(bytes((0x04, len(ready))) + ready)
            read_message(connection)
            self.requests += 1
            self.reply(connection, self.stop)
            connection.settimeout(0.1)
            while not self.stop.is_set():  # until the client hangs up (PINGs are read here)
                with contextlib.suppress(TimeoutError):
                    if not connection.recv(65536):
                        return

    def close(self):
        self.stop.set()
        self.listener.close()
        for thread in self.threads:
            thread.join(5)


@contextlib.contextmanager
def hostile(reply):
    server = HostileServer(reply)
    try:
        yield server
    finally:
        server.close()


def sending(data: bytes):
    return lambda connection, stop: connection.sendall(data)


def endless(bytes_per_second: float | None):
    """A reply that never ends: empty frames, each saying another follows."""

    def reply(connection, stop):
        connection.sendall(b"\x01\x00")  # the delimiter
        chunk = b"\x01\x00" * 5_000
        while not stop.is_set():
            connection.sendall(chunk)
            if bytes_per_second:
                time.sleep(len(chunk) / bytes_per_second)

    return reply


def quick_client(address, timeout_s=2.0) -> Client:
    return Client(Connection(address, timeout_s=timeout_s, quick_timeout_s=timeout_s,
                             restart_grace_s=1.0))  # fmt: skip


@pytest.mark.parametrize("size", [1 << 30, 1 << 62], ids=["1GiB", "2^62"])
def test_an_announced_giant_frame_is_refused_unallocated(implementation, size):
    """The built-in client refuses the frame from its header; pyzmq's libzmq (MAXMSGSIZE)
    drops the connection there, twice (the request is sent once more), which is said."""
    with hostile(sending(announce(size))) as server:
        client = quick_client(server.address)
        pixels = Pixels(64, 64, "RGBA8", bytes(64 * 64 * 4))
        tracemalloc.start()
        vm_before, started = vm_size_mib(), time.monotonic()
        try:
            with pytest.raises(RecolorError) as caught:
                client.recolor(pixels, PALETTE)
            elapsed, vm_growth = time.monotonic() - started, vm_size_mib() - vm_before
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    error = caught.value
    if implementation == "builtin":
        assert isinstance(error, BadReplyError) and f"{size:,}-byte frame" in str(error)
        assert server.requests == 1
    else:
        assert isinstance(error, ConnectionLostError) and "closed the connection twice" in str(
            error
        )
        assert server.requests == 2
    assert elapsed < 2
    assert peak < 4 << 20  # Python's allocations: the request and a read buffer
    assert vm_growth < 256  # MiB, libzmq's included: nothing of 1 GiB was allocated


def test_a_message_that_never_ends_is_refused_by_the_builtin_client(monkeypatch):
    monkeypatch.setenv(transport.FORCE_BUILTIN_ENV, "1")
    with hostile(endless(None)) as server:
        started = time.monotonic()
        with pytest.raises(BadReplyError, match="a message of 3 frames, more than the 2"):
            quick_client(server.address).ping()
        assert time.monotonic() - started < 1


def test_a_message_that_never_ends_is_a_timeout_over_pyzmq(monkeypatch):
    """libzmq keeps an unfinished message to itself, so only the deadline ends it; memory
    grows as fast as the server sends (slowly here), which the built-in client avoids."""
    monkeypatch.setenv(transport.FORCE_BUILTIN_ENV, "0")
    with hostile(endless(200_000)) as server:
        rss_before, started = rss_mib(), time.monotonic()
        with pytest.raises(RecolorError) as caught:
            quick_client(server.address, timeout_s=1.5).ping()
        elapsed = time.monotonic() - started
        print(f"pyzmq, endless frames at 200 kB/s for {elapsed:.1f} s: RSS "
              f"+{rss_mib() - rss_before:.0f} MiB")  # fmt: skip
    assert caught.value.code == "timeout" and 1.4 < elapsed < 1.5 + 2


@pytest.mark.parametrize(
    "header, words",
    [
        (b"[" * 100_000 + b"]" * 100_000, "nested more than 32 levels"),
        (b'{"ok": true, "a": ' + b"[" * 40 + b"]" * 40 + b"}", "nested more than 32 levels"),
        (b'{"ok": true, "width": "64", "height": 64}', "without a size and its pixels"),
        (b'{"ok": "yes"}', "not a palettenet/1 reply"),
        (b'{"ok": true, "n": ' + b"9" * 100_000 + b"}", "100000-digit number"),
        (b"\xff\xfe{}", "not a palettenet/1 reply"),
    ],
    ids=["deep", "deep-inside", "types", "ok", "digits", "encoding"],
)
def test_a_reply_that_is_no_palettenet_reply_is_a_bad_reply(implementation, header, words):
    with hostile(sending(b"\x01\x00" + frame(header) + b"")) as server:
        pixels = Pixels(4, 4, "RGBA8", bytes(64))
        with pytest.raises(BadReplyError, match=words) as caught:
            quick_client(server.address).recolor(pixels, PALETTE)
    assert str(caught.value).startswith("The backend sent an answer the plug-in cannot read")


def test_a_recolor_reply_of_another_size_is_refused(implementation):
    header = json.dumps({"ok": True, "width": 8, "height": 8}).encode()
    with hostile(sending(b"\x01\x00" + frame(header, more=True) + frame(bytes(256)))) as server:
        with pytest.raises(BadReplyError, match="asked for 4 x 4, got 8 x 8"):
            quick_client(server.address).recolor(Pixels(4, 4, "RGBA8", bytes(64)), PALETTE)


# --- a real daemon that dies -----------------------------------------------------------------
@pytest.fixture
def mortal_daemon():
    """A daemon of its own on a fixed address (so that it can be started again there),
    killed or stopped by the test."""
    port = free_port()
    servers = [Server("serve", "--bind", f"tcp://127.0.0.1:{port}", "--device", "cpu")]
    yield servers
    for server in servers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(server.process.pid, signal.SIGCONT)
        server.stop(signal.SIGKILL)


@contextlib.contextmanager
def occupied(address: str, clients: int = 2):
    """Keep the daemon's one worker busy with palettenet recolours from other clients
    (about 1.5 s each here), so that the request sent next waits in its queue, behind them
    all (the queue is fair between clients): killing the daemon then is killing it
    mid-request."""
    side = 2000
    header = {"op": "recolor", "width": side, "height": side, "pixel_format": "RGBA8",
              "palette": PALETTE, "method": "palettenet"}  # fmt: skip
    pixels = np.random.default_rng(0).integers(0, 256, (side, side, 4), np.uint8).tobytes()
    context = zmq.Context.instance()
    blockers = []
    try:
        for _ in range(clients):
            blocker = context.socket(zmq.DEALER)
            blocker.linger = 0
            blocker.connect(address)
            blocker.send_multipart([b"", *encode_request(header, pixels)])
            blockers.append(blocker)
        time.sleep(0.5)  # received and queued
        yield
    finally:
        for blocker in blockers:
            blocker.close()


SMALL = Pixels(48, 32, "RGBA8", np.random.default_rng(1).integers(0, 256, 48 * 32 * 4,
                                                                   np.uint8).tobytes())  # fmt: skip


def in_background(function):
    """Run function() in a thread; returns (thread, outcome dict with result or error)."""
    outcome = {}

    def run():
        started = time.monotonic()
        try:
            outcome["result"] = function()
        except BaseException as error:  # noqa: BLE001 - handed to the test
            outcome["error"] = error
        outcome["ended"] = time.monotonic()
        outcome["elapsed"] = outcome["ended"] - started

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def test_a_killed_daemon_is_said_within_seconds(mortal_daemon, implementation):
    daemon = mortal_daemon[0]
    client = Client(Connection(daemon.address, timeout_s=300))  # the settings' default
    with occupied(daemon.address):
        thread, outcome = in_background(lambda: client.recolor(SMALL, PALETTE, "chang2015"))
        time.sleep(0.5)  # the request is in the daemon's queue
        assert daemon.process.poll() is None
        killed = time.monotonic()
        daemon.process.kill()  # kill -9
        thread.join(30)
    noticed = outcome["ended"] - killed
    print(f"{implementation}: kill -9 to the error: {noticed:.2f} s")
    error = outcome.get("error")
    assert isinstance(error, BackendStoppedError), outcome
    assert error.code == "backend_stopped"
    assert "stopped while working on this request" in str(error)
    assert "raise the timeout" not in str(error)
    assert noticed < Connection.restart_grace_s + 1.5  # not the 300 s timeout


def test_a_stopped_daemon_is_given_up_after_its_heartbeat(mortal_daemon, implementation,
                                                          monkeypatch):  # fmt: skip
    """SIGSTOP: the connection stays open but nothing answers, not even ZMTP PINGs."""
    monkeypatch.setattr(transport.zmtp, "HEARTBEAT_IVL_S", 0.2)
    monkeypatch.setattr(transport.zmtp, "HEARTBEAT_TIMEOUT_S", 0.6)
    daemon = mortal_daemon[0]
    client = Client(Connection(daemon.address, timeout_s=300, restart_grace_s=1.0))
    with occupied(daemon.address):
        thread, outcome = in_background(lambda: client.recolor(SMALL, PALETTE, "chang2015"))
        time.sleep(0.5)
        stopped = time.monotonic()
        os.kill(daemon.process.pid, signal.SIGSTOP)
        thread.join(30)
    print(f"{implementation}: SIGSTOP to the error: {outcome['ended'] - stopped:.2f} s")
    assert isinstance(outcome.get("error"), BackendStoppedError), outcome
    assert outcome["ended"] - stopped < 0.2 + 0.6 + 1.0 + 1.5


def test_a_restarted_daemon_gets_the_request_again(mortal_daemon, implementation):
    daemon = mortal_daemon[0]
    # Generous: starting a daemon (Python, torch, the model) takes 1-3 s, more on a busy
    # machine; a service manager restarting it would add its own delay.
    sent = []

    def open_socket(*args, **kwargs):  # the real transport, counting the requests sent
        sock = transport.open_socket(*args, **kwargs)
        send = sock.send_multipart
        sock.send_multipart = lambda frames: (sent.append(len(frames)), send(frames))[1]
        return sock

    client = Client(Connection(daemon.address, timeout_s=300, restart_grace_s=60), open_socket)
    with occupied(daemon.address):
        thread, outcome = in_background(lambda: client.recolor(SMALL, PALETTE, "chang2015"))
        time.sleep(0.5)
        daemon.process.kill()
    mortal_daemon.append(Server("serve", "--bind", daemon.address, "--device", "cpu"))
    thread.join(90)
    assert "result" in outcome, outcome
    assert sent == [2, 2]  # the request (header, pixels), then once more to the new daemon
    expected = daemon_answer(mortal_daemon[1], "RGBA8", 48, 32, SMALL.data, PALETTE,
                             method="chang2015")  # fmt: skip
    assert outcome["result"].data == expected
