"""Files and resources (issue #12): secret key files are 0600, an ipc:// socket is 0600
whatever the umask, the open-file limit is raised at start, and a flood of idle connections
does not delay a real client's ping.

`python -m tests.test_hardening_resources [HARD_LIMIT]` prints a flood measurement (a daemon
started with 1024 open files, and this hard limit), `... big` the memory one message of
twelve 100 MiB frames costs."""

import os
import re
import resource
import select
import shutil
import socket
import stat
import tempfile
import time
from pathlib import Path

import pytest
import zmq

from backend.cli.main import main
from backend.service.client import Client
from backend.service.security import HANDSHAKE_MS, bind
from tests.servers import Server, random_weights

FLOOD = 1500


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return random_weights(tmp_path_factory.mktemp("weights"))


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_keys_writes_the_secret_key_0600_whatever_the_umask(tmp_path, capsys):
    previous = os.umask(0)
    try:
        main(["keys", str(tmp_path / "keys"), "--name", "alice"])
    finally:
        os.umask(previous)
    assert mode(tmp_path / "keys" / "alice.key_secret") == 0o600
    assert mode(tmp_path / "keys" / "alice.key") == 0o644
    assert mode(tmp_path / "keys") == 0o700  # others could swap the keys in a writable folder
    assert sorted(p.name for p in (tmp_path / "keys").iterdir()) == [
        "alice.key",
        "alice.key_secret",
    ]
    assert "alice.key_secret" in capsys.readouterr().out


def test_an_ipc_socket_is_0600_whatever_the_umask():
    folder = tempfile.mkdtemp(prefix="pn-", dir="/tmp")  # ipc paths must be short
    context = zmq.Context()
    server = context.socket(zmq.ROUTER)
    server.linger = 0
    previous = os.umask(0)
    try:
        bind(server, f"ipc://{folder}/s.sock")
        assert os.umask(0) == 0  # bind() put the umask back as it was
        assert mode(f"{folder}/s.sock") == 0o600
    finally:
        os.umask(previous)
        server.close()
        context.term()
        os.unlink(f"{folder}/s.sock")
        os.rmdir(folder)


def test_a_daemon_started_with_umask_000_creates_its_ipc_socket_0600(weights):
    folder = tempfile.mkdtemp(prefix="pn-", dir="/tmp")
    daemon = Server("serve", "--bind", f"ipc://{folder}/d.sock", "--weights", weights, umask=0)
    try:
        assert mode(f"{folder}/d.sock") == 0o600
        with Client(daemon.address, timeout_s=30) as client:
            assert client.request({"op": "ping"})[0]["ok"]
    finally:
        daemon.stop()
        shutil.rmtree(folder)


def open_files_limit(pid: int) -> int:
    limits = Path(f"/proc/{pid}/limits").read_text()
    return int(re.search(r"Max open files\s+(\d+)", limits).group(1))


def soft_limit(soft: int, hard: int | None = None):
    """A preexec_fn: start the child with these open-file limits (hard: keep the current)."""

    def limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard or resource.getrlimit(
            resource.RLIMIT_NOFILE)[1]))  # fmt: skip

    return limit


def room_for_connections(count: int) -> None:
    """This test process needs a file descriptor per connection it opens."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < count + 200:
        pytest.skip(f"the open-file hard limit ({hard}) is too low for {count} connections")
    if soft != resource.RLIM_INFINITY and soft < count + 200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (count + 200, hard))


def ping_seconds_during_flood(address: str, count: int = FLOOD) -> tuple[float, int]:
    """Open `count` idle raw TCP connections, then time a real client's ping: (seconds,
    connections established before the ping)."""
    port = int(address.rsplit(":", 1)[1])
    idle = []
    try:
        poller = select.poll()
        for _ in range(count):
            connection = socket.socket()
            connection.setblocking(False)  # the daemon may not accept them all at once
            connection.connect_ex(("127.0.0.1", port))
            poller.register(connection, select.POLLOUT)
            idle.append(connection)
        # Until every connection is established (as far as the daemon lets them), but less
        # than the handshake deadline, after which the daemon closes idle connections.
        pending, deadline = count, time.monotonic() + HANDSHAKE_MS / 1000 * 0.6
        while pending and time.monotonic() < deadline:
            for fileno, _ in poller.poll(100):
                poller.unregister(fileno)
                pending -= 1
        start = time.monotonic()
        with Client(address, timeout_s=60) as client:
            assert client.request({"op": "ping"})[0]["ok"]
        return time.monotonic() - start, count - pending
    finally:
        for connection in idle:
            connection.close()


def test_idle_connection_floods_do_not_delay_a_ping_under_a_1024_file_limit(weights):
    room_for_connections(FLOOD)
    if resource.getrlimit(resource.RLIMIT_NOFILE)[1] < FLOOD + 200:
        pytest.skip("the hard limit does not let the daemon raise its own")
    daemon = Server("serve", "--bind", "tcp://127.0.0.1:*", "--weights", weights,
                    preexec_fn=soft_limit(1024))  # fmt: skip
    try:
        assert open_files_limit(daemon.process.pid) > FLOOD + 100  # raised at start
        seconds, established = ping_seconds_during_flood(daemon.address)
        assert established == FLOOD and seconds < 1.0
    finally:
        daemon.stop()


def test_idle_connections_are_closed_after_the_handshake_deadline(weights):
    daemon = Server("serve", "--bind", "tcp://127.0.0.1:*", "--weights", weights)
    port = int(daemon.address.rsplit(":", 1)[1])
    try:
        idle = socket.create_connection(("127.0.0.1", port))
        idle.settimeout(HANDSHAKE_MS / 1000 + 5)
        start = time.monotonic()
        data = idle.recv(100)  # the daemon's greeting; then it closes: no greeting came back
        while data:
            data = idle.recv(100)
        assert HANDSHAKE_MS / 1000 - 0.5 < time.monotonic() - start < HANDSHAKE_MS / 1000 + 2
        idle.close()
    finally:
        daemon.stop()


# --- measurements for the closing note ------------------------------------------------------
def measure(hard: int | None) -> None:
    """One row: a daemon started with a soft limit of 1024 open files and this hard limit
    (None: this process's), flooded. One daemon per process: a second flood from the same
    process meets different kernel conditions and is not comparable."""
    weights = random_weights(Path(tempfile.mkdtemp()))
    room_for_connections(FLOOD)
    daemon = Server("serve", "--bind", "tcp://127.0.0.1:*", "--weights", weights,
                    preexec_fn=soft_limit(1024, hard))  # fmt: skip
    raised = open_files_limit(daemon.process.pid)
    seconds, established = ping_seconds_during_flood(daemon.address)
    hard = hard or resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    label = f"soft 1024, hard {hard}: raised to {raised}"
    print(f"| {label} | {established} of {FLOOD} | {seconds:.2f} s |")
    daemon.stop()


def measure_big_message() -> None:
    """Issue #12's message: a ping header and twelve frames of 100 MiB, at the default
    --max-pixels. Prints the reply and the daemon's memory before and after."""
    import json

    from tests.servers import peak_rss_mib

    def resident(pid: int) -> float:
        status = Path(f"/proc/{pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024

    daemon = Server("serve", "--bind", "tcp://127.0.0.1:*", "--weights",
                    random_weights(Path(tempfile.mkdtemp())))  # fmt: skip
    pid = daemon.process.pid
    before = resident(pid), peak_rss_mib(pid)
    context = zmq.Context()
    client = context.socket(zmq.DEALER)
    client.linger = 0
    client.connect(daemon.address)
    header = json.dumps({"protocol": "palettenet/1", "op": "ping", "id": "big"}).encode()
    start = time.monotonic()
    client.send_multipart([b"", header] + [bytes(100 << 20)] * 12)
    reply = json.loads(client.recv_multipart()[1]) if client.poll(120_000) else None
    seconds = time.monotonic() - start
    time.sleep(1)
    after = resident(pid), peak_rss_mib(pid)
    print(f"reply after {seconds:.2f} s: {reply and reply['error']['code']}; alive: "
          f"{daemon.alive()}; resident MiB {before[0]:.0f} -> {after[0]:.0f}; "
          f"peak MiB {before[1]:.0f} -> {after[1]:.0f}")  # fmt: skip
    client.close()
    context.term()
    daemon.stop()


if __name__ == "__main__":
    import sys

    if sys.argv[1:] == ["big"]:
        measure_big_message()
    else:
        measure(int(sys.argv[1]) if len(sys.argv) > 1 else None)
