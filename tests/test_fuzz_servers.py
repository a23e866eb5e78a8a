"""End-to-end fuzzing of a running daemon and a running broker (issue #12).

A few thousand malformed messages (random bytes, deeply nested JSON, wrong field types, too
many frames, frames of the wrong size, oversized headers and messages, shared memory files
that are missing, symlinks, FIFOs, of the wrong size or mode), garbage on raw TCP
connections (random bytes, broken ZMTP greetings, absurd frame sizes, idle ones left open),
and for the broker, forged worker messages on its backend. Then: every message got exactly
one reply, none `internal`, the processes are alive, and a correct recolour still gives the
reference pixels (the same request run in this process).

`python -m tests.test_fuzz_servers` runs the same fuzz and prints the table of the issue's
closing note (cases, deaths, lost replies, peak memory, client call times).
"""

import json
import os
import random
import secrets
import socket
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
import zmq

from backend.service.client import Client
from backend.service.engine import Engine
from backend.service.protocol import decode_reply, encode_request
from backend.wire import ERROR_CODES, PROTOCOL, SHARED_MEMORY_FOLDER
from tests.conftest import small_photo
from tests.servers import Server, as_pixels, photo_pixels, random_weights, recolor_header

MAX_PIXELS = 1_000_000  # frames up to 16 MB: the big-message cases stay cheap in CI
MESSAGES = 2500  # malformed and valid messages per server
RAW_CONNECTIONS = 300
REPLY_TIMEOUT_S = 20
GOOD = {"protocol": PROTOCOL, "op": "recolor", "id": "x", "width": 4, "height": 2,
        "pixel_format": "RGBA8", "palette": ["#102030", "#ffeedd"],
        "method": "chang2015"}  # fmt: skip
VALUES = [None, True, 0, -1, 2**64, 1e308, float("nan"), "", "RGBA8", "#fff", [], {}, [[]],
          ["#fff"] * 13, {"k": 3}, "x" * 500, [1, "a", None], {"max_side": -1}]  # fmt: skip


# --- what is sent ---------------------------------------------------------------------------
def dumps(header) -> bytes:
    return json.dumps(header, allow_nan=True).encode()


@contextmanager
def shared_memory_files():
    """Files of /dev/shm a hostile client could name for GOOD's 4 x 2 RGBA8 layer (32 bytes):
    two good ones, one of the wrong size, one open to others, an unallocated one, a symlink
    to a good one, a FIFO, and a name with no file. Yields their names; removes them."""
    folder = Path(SHARED_MEMORY_FOLDER)
    if not folder.is_dir():
        yield []
        return
    names = [f"palettenet-{os.getpid()}-{secrets.token_hex(16)}" for _ in range(8)]
    paths = [folder / name for name in names]
    for path, (size, mode) in zip(paths, [(32, 0o600), (32, 0o600), (31, 0o600), (32, 0o644)]):
        path.write_bytes(bytes(range(size)))
        os.chmod(path, mode)
    os.close(os.open(paths[4], os.O_CREAT | os.O_WRONLY, 0o600))
    os.truncate(paths[4], 32)  # a hole: no page allocated
    paths[5].symlink_to(paths[0])
    os.mkfifo(paths[6], 0o600)
    try:
        yield names
    finally:
        for path in paths:
            path.unlink(missing_ok=True)


def malformed_messages(rng: random.Random, count: int, segments=()) -> list[list[bytes]]:
    """`count` messages (lists of frames) of many kinds, mostly wrong, some valid; segments:
    names of files in /dev/shm (shared_memory_files) to name in some of them."""

    def random_bytes():
        return [rng.randbytes(rng.randint(0, 200)) for _ in range(rng.randint(1, 3))]

    def nested():
        depth = rng.choice([9, 50, 1000, 5000, 20000])
        inner = "[" * depth + "]" * depth
        place = rng.choice(["whole", "ignored", "palette", "options", "id"])
        if place == "whole":
            return [inner.encode()]
        return [dumps({**GOOD, "op": "ping"})[:-1] + f', "{place}": {inner}}}'.encode()]

    def wrong_types():
        header = dict(GOOD, op=rng.choice(["recolor", "palette", "ping", "info"]))
        for name in rng.sample(sorted(GOOD) + ["source_palette", "options"], rng.randint(1, 3)):
            header[name] = rng.choice(VALUES)
        return [dumps(header), bytes(32)][: rng.randint(1, 2)]

    def many_frames():
        return [dumps(GOOD), bytes(32)] + [b"x" * rng.randint(0, 8)] * rng.randint(2, 300)

    def wrong_sizes():
        width, height = rng.choice([(4, 2), (0, 2), (10**6, 10**6), (1001, 1000), (-3, 2)])
        frames = [dumps({**GOOD, "width": width, "height": height}), bytes(rng.randint(0, 64))]
        return frames + [bytes(rng.randint(0, 16))] * rng.randint(0, 1)

    def oversized_header():
        return [dumps({**GOOD, "padding": "x" * rng.choice([60_000, 70_000, 200_000])}), b""]

    def not_a_header():
        return [rng.choice([b"\xff\xfe\x00", b"[1,2]", b'"text"', b"null", b"{", b""]), b"x"]

    def empty_mask_palettenet():  # valid frames; the engine refuses, with a documented code
        header = {**GOOD, "method": "palettenet"}
        return [dumps(header), bytes([200]) * 32, bytes(8)]

    def with_reference():  # a reference that may or may not match its frame
        width, height = rng.choice([(2, 2), (2, 4), (0, 1), (3000, 3000)])
        header = {
            **GOOD,
            "reference": rng.choice(
                [{"width": width, "height": height, "pixel_format": "RGBA8"}, [2, 2], "x"]
            ),
        }
        frames = [dumps(header), bytes([200]) * 32]
        return frames + [bytes(16)] * rng.randint(0, 2)

    def with_shared_memory():  # files good and bad, names good and bad, frames or not
        choices = [*segments, "../../etc/passwd", "/dev/shm/x", "palettenet-1-x", 5, None, ""]
        roles = rng.sample(["pixels", "mask", "reply", "other"], rng.randint(0, 4))
        names = {role: rng.choice(choices) for role in roles}
        header = dict(GOOD, op=rng.choice(["recolor", "palette", "ping"]), shared_memory=names)
        if rng.random() < 0.2:
            header["shared_memory"] = rng.choice(VALUES)
        return [dumps(header)] + [bytes(32)] * rng.randint(0, 2)

    def valid():
        kind = rng.choice(["ping", "info", "recolor", "palette"])
        if kind in ("ping", "info"):
            return [dumps({"protocol": PROTOCOL, "op": kind, "id": "ok"})]
        header = dict(GOOD, op=kind, id="ok")
        if kind == "palette":
            del header["palette"], header["method"]
        return [dumps(header), rng.randbytes(32)]

    makers = [random_bytes, nested, wrong_types, many_frames, wrong_sizes, oversized_header,
              not_a_header, empty_mask_palettenet, with_reference, valid]  # fmt: skip
    if segments:
        makers.append(with_shared_memory)
    return [rng.choice(makers)() for _ in range(count)]


def huge_messages() -> list[list]:
    """Few frames of many bytes, or many frames: each bounded by the daemon as it arrives."""
    ping = dumps({"protocol": PROTOCOL, "op": "ping", "id": "huge"})
    big = bytes(4 << 20)
    return [[ping] + [b""] * 100_000, [ping] + [b"z"] * 20_000, [ping] + [big] * 12]


def zmtp_greeting(mechanism=b"NULL") -> bytes:
    return b"\xff" + bytes(8) + b"\x7f" + b"\x03\x00" + mechanism.ljust(20, b"\0") + bytes(32)


def raw_garbage(rng: random.Random) -> bytes:
    kind = rng.randrange(6)
    if kind == 0:
        return rng.randbytes(rng.randint(1, 4000))
    if kind == 1:  # a greeting cut short, then noise
        return zmtp_greeting()[: rng.randint(1, 63)] + rng.randbytes(rng.randint(0, 100))
    if kind == 2:  # an unknown mechanism
        return zmtp_greeting(b"EVIL")
    if kind == 3:  # a good greeting, then a READY command that is garbage
        return zmtp_greeting() + b"\x04\x10\x05READY" + rng.randbytes(12)
    if kind == 4:  # a good greeting and READY, then a frame claiming 2^62 bytes
        ready = b"\x05READY\x0bSocket-Type\x00\x00\x00\x06DEALER"
        return zmtp_greeting() + bytes([4, len(ready)]) + ready + b"\x02" + (1 << 62).to_bytes(8)
    return b""  # an idle connection: says nothing at all (slow loris)


# --- how it is sent -------------------------------------------------------------------------
class Fuzzer:
    """A DEALER client that sends batches of messages and counts their replies."""

    def __init__(self, address: str):
        self.context = zmq.Context()
        self.address = address
        self.socket = self._socket()
        self.stats = Counter()

    def _socket(self):
        socket = self.context.socket(zmq.DEALER)
        socket.linger = 0
        socket.connect(self.address)
        return socket

    def batch(self, messages: list) -> None:
        """Send messages (each after REQ's empty delimiter, so the envelope is known), then
        take exactly one reply for each, and check that no extra one follows."""
        for frames in messages:
            self.socket.send_multipart([b"", *frames], copy=False)
        self.stats["sent"] += len(messages)
        deadline = time.monotonic() + REPLY_TIMEOUT_S
        for _ in messages:
            if not self.socket.poll(max(1, int((deadline - time.monotonic()) * 1000))):
                break
            self._check(self.socket.recv_multipart())
        while self.socket.poll(100):  # nothing more may come
            self.socket.recv_multipart()
            self.stats["extra replies"] += 1

    def _check(self, reply: list) -> None:
        self.stats["replies"] += 1
        assert reply[0] == b"", reply[:1]
        header, _ = decode_reply(reply[1:])
        assert isinstance(header["ok"], bool)
        if not header["ok"]:
            code = header["error"]["code"]
            assert code in ERROR_CODES, code
            self.stats[f"code {code}"] += 1

    def oversized_frame(self, size: int) -> None:
        """One frame above the daemon's per-frame limit: ZeroMQ drops that connection
        unanswered (by design); a fresh socket carries on."""
        self.socket.send_multipart([b"", b"x" * size])
        time.sleep(0.2)
        self.socket.close()
        self.socket = self._socket()

    @property
    def lost(self) -> int:
        return self.stats["sent"] - self.stats["replies"]

    def close(self):
        self.socket.close()
        self.context.term()


def open_raw_connections(address: str, rng: random.Random, count: int) -> list:
    """Raw TCP connections sending garbage; they are left open (closed by the caller)."""
    url = urlsplit(address.replace("tcp://", "http://"))
    connections = []
    for _ in range(count):
        connection = socket.create_connection((url.hostname, url.port), timeout=5)
        data = raw_garbage(rng)
        try:
            connection.sendall(data)
        except OSError:  # the server already closed it: that is fine
            pass
        connections.append(connection)
    return connections


def fuzz(address: str, seed: int, count: int = MESSAGES, max_frame: int = 0) -> Counter:
    """The whole attack on one frontend address: raw TCP garbage stays open meanwhile."""
    rng = random.Random(seed)
    raw = open_raw_connections(address, rng, RAW_CONNECTIONS)
    fuzzer = Fuzzer(address)
    try:
        with shared_memory_files() as segments:
            messages = malformed_messages(rng, count, segments)
            for start in range(0, len(messages), 100):
                fuzzer.batch(messages[start : start + 100])
                if fuzzer.lost:  # a dead server: no need to wait for the rest
                    return fuzzer.stats
        fuzzer.batch(huge_messages())
        if max_frame:
            fuzzer.oversized_frame(max_frame + 1)
        fuzzer.stats["raw tcp connections"] = len(raw)
        return fuzzer.stats
    finally:
        fuzzer.close()
        for connection in raw:
            connection.close()


def forge_worker_messages(backend: str, rng: random.Random) -> int:
    """What a confused or hostile worker could send a broker; returns the message count."""
    context = zmq.Context()
    messages = [
        [b"", b"READY", b"9" * 6000],  # a capacity too long for int()
        [b"", b"READY", b"abc"],
        [b"", b"READY"],
        [b"", b"BYE"],
        [b"", b"NONSENSE", b"x"],
        [(12345).to_bytes(8, "big"), b'{"ok": true}'],  # a reply for a job it does not hold
        [b"short", b"reply"],
        [b""],
        [b"x"] * 5000,
    ] + [[rng.randbytes(rng.randint(0, 9)) for _ in range(rng.randint(1, 4))] for _ in range(300)]
    try:
        worker = context.socket(zmq.DEALER)
        worker.linger = 1000
        worker.connect(backend)
        for frames in messages:
            worker.send_multipart(frames)
        time.sleep(0.5)
        worker.close()
    finally:
        context.term()
    return len(messages)


# --- the checks -----------------------------------------------------------------------------
def assert_recolours_as_reference(address: str, engine: Engine) -> None:
    pixels = photo_pixels(small_photo("chelsea", 40), "RGBA8")
    with Client(address, timeout_s=60) as client:
        for method in ("palettenet", "chang2015"):
            header = recolor_header(pixels, "RGBA8", method)
            reply, frames = client.request(header, pixels)
            assert reply["ok"], reply
            local = decode_reply(engine.handle(encode_request(header, pixels), MAX_PIXELS))[1]
            np.testing.assert_array_equal(as_pixels(frames[0], pixels), as_pixels(local[0], pixels))


def assert_answered_exactly_once(stats: Counter) -> None:
    assert stats["sent"] > 2000
    assert stats["lost"] == 0 and stats["extra replies"] == 0, stats
    assert stats["code internal"] == 0, stats


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return random_weights(tmp_path_factory.mktemp("weights"))


def start_daemon(weights, **popen) -> Server:
    return Server("serve", "--bind", "tcp://127.0.0.1:*", "--weights", weights, "--device",
                  "cpu", "--max-pixels", MAX_PIXELS, **popen)  # fmt: skip


def start_broker(*extra) -> Server:
    return Server("broker", "--frontend", "tcp://127.0.0.1:*", "--backend", "tcp://127.0.0.1:*",
                  "--max-pixels", MAX_PIXELS, "--worker-timeout", 1.5, *extra)  # fmt: skip


def test_a_fuzzed_daemon_answers_every_message_once_and_still_recolours_right(weights):
    daemon = start_daemon(weights)
    try:
        stats = fuzz(daemon.address, seed=1, max_frame=MAX_PIXELS * 16 + 64 * 1024)
        stats["lost"] = stats["sent"] - stats["replies"]
        assert daemon.alive(), "".join(daemon.lines[-20:])
        assert_answered_exactly_once(stats)
        assert_recolours_as_reference(daemon.address, Engine(weights, "cpu"))
        assert daemon.peak_rss_mib() < 2048, daemon.peak_rss_mib()
        assert daemon.stop() == 0
    finally:
        daemon.stop()


def test_a_fuzzed_broker_answers_every_message_once_and_still_recolours_right(weights):
    broker = start_broker()
    worker = Server("serve", "--connect", broker.backend, "--weights", weights, "--device",
                    "cpu", "--max-pixels", MAX_PIXELS, "--heartbeat", 0.3)  # fmt: skip
    try:
        forged = forge_worker_messages(broker.backend, random.Random(3))
        backend_raw = open_raw_connections(broker.backend, random.Random(4), 100)
        stats = fuzz(broker.address, seed=2)
        for connection in backend_raw:
            connection.close()
        stats["lost"] = stats["sent"] - stats["replies"]
        assert forged > 300
        assert broker.alive() and worker.alive(), "".join(broker.lines[-20:])
        assert_answered_exactly_once(stats)
        assert_recolours_as_reference(broker.address, Engine(weights, "cpu"))
    finally:
        worker.stop()
        broker.stop()


# --- the table of the closing note ----------------------------------------------------------
def main() -> None:
    import tempfile
    from pathlib import Path

    weights_file = random_weights(Path(tempfile.mkdtemp()))
    rows = []
    daemon = start_daemon(weights_file)
    stats = fuzz(daemon.address, seed=1, max_frame=MAX_PIXELS * 16 + 64 * 1024)
    assert_recolours_as_reference(daemon.address, Engine(weights_file, "cpu"))
    rows.append(("daemon", stats, not daemon.alive(), daemon.peak_rss_mib()))
    daemon.stop()
    broker = start_broker()
    worker = Server("serve", "--connect", broker.backend, "--weights", weights_file,
                    "--device", "cpu", "--max-pixels", MAX_PIXELS, "--heartbeat", 0.3)  # fmt: skip
    forged = forge_worker_messages(broker.backend, random.Random(3))
    backend_raw = open_raw_connections(broker.backend, random.Random(4), 100)
    stats = fuzz(broker.address, seed=2)
    for connection in backend_raw:
        connection.close()
    stats["raw tcp connections"] += len(backend_raw)
    print(f"forged worker messages on the broker's backend: {forged}")
    assert_recolours_as_reference(broker.address, Engine(weights_file, "cpu"))
    deaths = (not broker.alive()) + (not worker.alive())
    rows.append(("broker+worker", stats, deaths, max(broker.peak_rss_mib(), worker.peak_rss_mib())))
    worker.stop()
    broker.stop()
    print("| target | messages | raw TCP | deaths | lost replies | extra replies | internal "
          "| peak RSS MiB |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, stats, deaths, rss in rows:
        lost = stats["sent"] - stats["replies"]
        cells = [name, stats["sent"], stats["raw tcp connections"], int(deaths), lost,
                 stats["extra replies"], stats["code internal"], f"{rss:.0f}"]  # fmt: skip
        print("| " + " | ".join(map(str, cells)) + " |")
    for name, stats, *_ in rows:
        codes = {k[5:]: v for k, v in sorted(stats.items()) if k.startswith("code ")}
        print(f"{name}: error codes {codes}")


if __name__ == "__main__":
    main()
