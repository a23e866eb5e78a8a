"""The broker under failure (issue #12): a worker killed while it holds jobs and the queue
is full loses no request, every request is answered exactly once; with CURVE, only worker
keys may serve as workers."""

import json
import signal
import subprocess
import sys
import time

import pytest
import zmq

from backend.service.client import Client
from backend.service.protocol import encode_request
from backend.service.security import ClientKeys, create_keys
from tests.conftest import small_photo
from tests.servers import Server, photo_pixels, random_weights, recolor_header


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return random_weights(tmp_path_factory.mktemp("weights"))


class Requester:
    """One DEALER per request, as if each came from another user: replies are counted per
    request, so a lost or doubled reply shows."""

    def __init__(self, address: str):
        self.context = zmq.Context()
        self.address = address
        self.sockets: dict[str, zmq.Socket] = {}
        self.replies: dict[str, list] = {}

    def send(self, request_id: str, pixels) -> None:
        socket = self.context.socket(zmq.DEALER)
        socket.linger = 0
        socket.connect(self.address)
        header = recolor_header(pixels, "RGBA8", id=request_id)
        socket.send_multipart([b"", *encode_request(header, pixels)], copy=False)
        self.sockets[request_id] = socket
        self.replies[request_id] = []

    def collect(self, seconds: float) -> None:
        """Take every reply that arrives within `seconds`."""
        poller = zmq.Poller()
        for socket in self.sockets.values():
            poller.register(socket, zmq.POLLIN)
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            for socket, _ in poller.poll(int(left * 1000) + 1):
                request_id = next(k for k, s in self.sockets.items() if s is socket)
                self.replies[request_id].append(json.loads(socket.recv_multipart()[1]))

    def answered(self) -> set:
        return {request_id for request_id, replies in self.replies.items() if replies}

    def close(self) -> None:
        for socket in self.sockets.values():
            socket.close()
        self.context.term()


def worker_info(address: str) -> dict:
    with Client(address, timeout_s=10) as client:
        return client.request({"op": "info"})[0]


def test_a_worker_killed_with_jobs_while_the_queue_is_full_loses_no_request(weights):
    broker = Server("broker", "--frontend", "tcp://127.0.0.1:*", "--backend", "tcp://127.0.0.1:*",
                    "--max-queue", 6, "--worker-timeout", 1.5, "--queue-timeout", 90)  # fmt: skip
    # 3 threads: the worker says it may hold 3 + 1 = 4 jobs at once
    doomed = Server("serve", "--connect", broker.backend, "--weights", weights, "--device", "cpu",
                    "--workers", 3, "--heartbeat", 0.3)  # fmt: skip
    requester = Requester(broker.address)
    rescuer = None
    try:
        while worker_info(broker.address).get("pid") != doomed.process.pid:
            time.sleep(0.1)
        big = photo_pixels(small_photo("astronaut", 2000), "RGBA8")  # seconds each, on a CPU
        small = photo_pixels(small_photo("coffee", 48), "RGBA8")
        held = [f"held-{i}" for i in range(4)]
        for request_id in held:
            requester.send(request_id, big)
        deadline = time.monotonic() + 30
        while True:  # the worker has all four: three running, one waiting in its own queue
            info = worker_info(broker.address)
            if info["running"] + info["waiting"] == 4 or time.monotonic() > deadline:
                break
        doomed.process.send_signal(signal.SIGSTOP)  # from now on it can finish nothing
        assert info["running"] + info["waiting"] == 4, info
        queued = [f"queued-{i}" for i in range(6)]
        for request_id in queued:
            requester.send(request_id, small)
        requester.collect(0.5)  # (each socket connects on its own: let all six arrive first)
        requester.send("one-too-many", small)
        requester.collect(0.5)
        assert requester.answered() == {"one-too-many"}  # the queue (6) is full
        doomed.process.send_signal(signal.SIGKILL)

        # Buried after 1.5 s of silence: its four jobs cannot be queued again, so their
        # clients are told now (busy), rather than never.
        requester.collect(4)
        assert requester.answered() == {"one-too-many", *held}
        for request_id in held:
            (reply,) = requester.replies[request_id]
            assert reply["id"] == request_id and reply["error"]["code"] == "busy", reply
            assert "stopped" in reply["error"]["message"] and "full" in reply["error"]["message"]

        # A new worker serves the six that waited; then nothing more arrives for anyone.
        rescuer = Server("serve", "--connect", broker.backend, "--weights", weights,
                         "--device", "cpu", "--heartbeat", 0.3)  # fmt: skip
        deadline = time.monotonic() + 120
        while len(requester.answered()) < 11 and time.monotonic() < deadline:
            requester.collect(0.5)
        requester.collect(1.5)
        for request_id in queued:
            (reply,) = requester.replies[request_id]
            assert reply["ok"] and reply["id"] == request_id, reply
        assert all(len(replies) == 1 for replies in requester.replies.values()), requester.replies
        assert broker.alive()
    finally:
        requester.close()
        for server in (rescuer, doomed, broker):
            if server is not None:
                server.stop(signal.SIGKILL if server is doomed else signal.SIGTERM)


def make_keys(folder):
    keys = {name: create_keys(folder / "all", name) for name in ("broker", "alice", "gpu1")}
    for role, name in (("clients", "alice"), ("workers", "gpu1")):
        (folder / role).mkdir()
        (folder / role / f"{name}.key").write_bytes(keys[name][0].read_bytes())
    return keys


def test_with_curve_only_worker_keys_can_serve_as_workers(weights, tmp_path):
    keys = make_keys(tmp_path)
    broker_public, broker_secret = keys["broker"]
    broker = Server("broker", "--frontend", "tcp://127.0.0.1:*", "--backend", "tcp://127.0.0.1:*",
                    "--curve-secret", broker_secret, "--curve-clients", tmp_path / "clients",
                    "--curve-workers", tmp_path / "workers", "--worker-timeout", 1.5)  # fmt: skip
    alice = ClientKeys(broker_public, keys["alice"][1])
    gpu1 = ClientKeys(broker_public, keys["gpu1"][1])
    worker = None
    try:
        # A client key is refused on the workers' port: no READY can come through it...
        start = time.monotonic()
        with Client(broker.backend, 10, alice) as rogue, pytest.raises(TimeoutError, match="key"):
            rogue.request({"op": "ping"})
        assert time.monotonic() - start < 5
        context = zmq.Context()
        rogue = context.socket(zmq.DEALER)
        rogue.linger = 0
        alice.apply(rogue)
        rogue.connect(broker.backend)
        for _ in range(5):
            try:  # (once its key is refused, ZeroMQ has nowhere to queue this: Again)
                rogue.send_multipart([b"", b"READY", b"4"], zmq.NOBLOCK)
            except zmq.Again:
                pass
            time.sleep(0.1)
        # ...so there is no worker, and alice's own request is not handed to the rogue.
        with Client(broker.address, 10, alice) as client:
            reply = client.request({"op": "ping"})[0]
        assert reply["error"]["code"] == "busy" and "no worker" in reply["error"]["message"]
        assert rogue.poll(200) == 0
        rogue.close()
        context.term()

        # A worker key is refused on the clients' port, and accepted where it belongs.
        with Client(broker.address, 10, gpu1) as intruder, pytest.raises(TimeoutError):
            intruder.request({"op": "ping"})
        worker = Server("serve", "--connect", broker.backend, "--weights", weights,
                        "--curve-server-key", broker_public, "--curve-secret", keys["gpu1"][1],
                        "--heartbeat", 0.3)  # fmt: skip
        with Client(broker.address, 30, alice) as client:
            while not (reply := client.request({"op": "ping"})[0])["ok"]:
                time.sleep(0.1)
        assert reply["pid"] == worker.process.pid
    finally:
        if worker is not None:
            worker.stop()
        broker.stop()


def test_a_curve_broker_without_a_worker_key_folder_refuses_to_start(tmp_path):
    keys = make_keys(tmp_path)
    command = [sys.executable, "-m", "backend.cli.main", "broker", "--frontend", "tcp://127.0.0.1:*",
               "--backend", "tcp://127.0.0.1:*", "--curve-secret", str(keys["broker"][1]),
               "--curve-clients", str(tmp_path / "clients")]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "--curve-workers" in result.stderr, result.stderr
