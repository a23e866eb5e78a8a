"""Fuzzing what a server may send to the plug-in: the built-in ZMTP client's frame reader
(plugin/recolor_with_palette/zmtp.py) fed arbitrary and hostile bytes, and the plug-in
client's reply decoding (plugin/recolor_with_palette/client.py) fed arbitrary replies.

Whatever arrives, the client must end with a ZmtpError (or a message within its limits),
within its timeout, having allocated no more than its limits allow; the plug-in client with
a RecolorError or a well-formed result. Each test runs a few hundred examples in seconds.
"""

import json
import socket
import struct
import time
import tracemalloc

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plugin.recolor_with_palette import zmtp
from plugin.recolor_with_palette.client import Client, Connection
from plugin.recolor_with_palette.errors import RecolorError
from plugin.recolor_with_palette.pixels import Pixels

TIMEOUT_S = 0.05
LIMITS = dict(max_frame_bytes=4096, max_message_bytes=8192, max_frames=4)
MEMORY_SLACK = 512 * 1024  # the 64 KiB read chunk, the read buffer, bookkeeping

GREETING = b"\xff" + bytes(8) + b"\x7f\x03\x01" + b"NULL".ljust(20, b"\0") + b"\x01" + bytes(31)
READY = b"\x05READY\x0bSocket-Type" + struct.pack(">I", 6) + b"ROUTER"
HANDSHAKE = GREETING + bytes((0x04, len(READY))) + READY
COMMANDS = [
    b"\x04PING\x00\x0a",
    b"\x04PING\x00\x00context",
    b"\x04PONG",
    b"\x05ERROR\x0fgo away, please",
    b"\x05ERROR",
    b"\x05ERROR\xff",
    READY,
    b"\x09SUBSCRIBE",
    b"",
    b"\xff",
]


@st.composite
def frames(draw) -> bytes:
    """One frame as a hostile server might write it: any flags, a size that may lie (huge,
    or not the body's), any body."""
    flags = draw(st.integers(0, 255) | st.sampled_from([0x00, 0x01, 0x02, 0x03, 0x04, 0x06]))
    body = draw(st.sampled_from(COMMANDS) if flags & 0x04 and draw(st.booleans()) else st.binary())
    size = draw(
        st.just(len(body))
        | st.integers(0, 1 << 16)
        | st.sampled_from([1 << 30, 1 << 62, (1 << 63) - 1, 1 << 63, (1 << 64) - 1])
    )
    if flags & 0x02:
        header = bytes((flags,)) + (size & ((1 << 64) - 1)).to_bytes(8, "big")
    else:
        header = bytes((flags, size & 0xFF))
    return (
        header + body[: draw(st.integers(0, len(body)))] if draw(st.booleans()) else (header + body)
    )


streams = st.one_of(
    st.binary(max_size=200),  # anything at all, from the first octet
    st.builds(lambda tail: GREETING[:11] + tail, st.binary(max_size=100)),  # a broken greeting
    st.builds(lambda fs: HANDSHAKE + b"".join(fs), st.lists(frames(), max_size=12)),
)


def run_against(data: bytes, hang_up: bool, heartbeat_s: float | None):
    """A ZmtpSocket whose peer sends `data` (then hangs up, or goes silent): what it
    received, the error it ended with, the seconds that took and the peak of allocations."""
    ours, theirs = socket.socketpair()
    theirs.setblocking(False)
    try:
        theirs.send(data)  # less than a socket buffer: never blocks
        if hang_up:
            theirs.shutdown(socket.SHUT_WR)
        handed_out = []

        def open_socket(deadline):  # instead of connecting: the pair, once
            if handed_out:
                raise ConnectionRefusedError
            handed_out.append(ours)
            return ours

        sock = zmtp.ZmtpSocket(
            "tcp://127.0.0.1:9",
            TIMEOUT_S,
            heartbeat_ivl_s=heartbeat_s,
            heartbeat_timeout_s=heartbeat_s or 0,
            **LIMITS,
        )
        sock._open_socket = open_socket
        messages, error = [], None
        tracemalloc.reset_peak()
        baseline = tracemalloc.get_traced_memory()[0]
        started = time.monotonic()
        try:
            sock.send_multipart([b"", b"{}"])
            while True:
                messages.append(sock.recv_multipart())
        except zmtp.ZmtpError as raised:
            error = raised
        elapsed = time.monotonic() - started
        peak = tracemalloc.get_traced_memory()[1] - baseline
        sock.close()
        return messages, error, elapsed, peak
    finally:
        ours.close()
        theirs.close()


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)
@given(data=streams, hang_up=st.booleans(), heartbeat_s=st.sampled_from([None, None, 0.01]))
def test_frame_reader_ends_with_a_zmtp_error_within_limits_and_time(data, hang_up, heartbeat_s):
    tracemalloc.start()
    try:
        messages, error, elapsed, peak = run_against(data, hang_up, heartbeat_s)
    finally:
        tracemalloc.stop()
    assert isinstance(error, zmtp.ZmtpError)  # never MemoryError, struct.error, IndexError...
    assert elapsed < TIMEOUT_S + 0.5
    assert peak < LIMITS["max_message_bytes"] + MEMORY_SLACK
    for message in messages:  # whatever got through respects the limits
        assert 1 <= len(message) <= LIMITS["max_frames"]
        assert sum(map(len, message)) <= LIMITS["max_message_bytes"]


# --- the plug-in client's reply decoding ---------------------------------------------------
class Scripted:
    """A transport socket whose reply is given."""

    def __init__(self, reply):
        self.reply = reply

    def send_multipart(self, frames):
        pass

    def recv_multipart(self, timeout_s=None):
        return self.reply

    def close(self):
        pass


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
reply_fields = st.fixed_dictionaries(
    {},
    optional={
        "ok": st.booleans() | json_values,
        "id": st.none() | st.text(max_size=10) | json_values,
        "width": st.integers(-2, 6) | json_values,
        "height": st.integers(-2, 6) | json_values,
        "pixel_format": st.sampled_from(["RGBA8", "RGBA16"]) | json_values,
        "palette": st.lists(st.sampled_from(["#123456", "#abcdef", "red"]), max_size=13)
        | json_values,
        "weights": st.lists(st.floats(), max_size=13) | json_values,
        "error": st.fixed_dictionaries({}, optional={"code": json_values, "message": json_values})
        | json_values,
    },
)
headers = st.one_of(
    reply_fields.map(lambda fields: json.dumps(fields).encode()),
    json_values.map(lambda value: json.dumps(value).encode()),
    st.binary(max_size=100),
    st.integers(1, 100_000).map(lambda depth: b"[" * depth + b"]" * depth),
    st.integers(1, 100).map(lambda n: b'{"ok": true, "a": ' + b"[" * n + b"]" * n + b"}"),
)
replies = st.builds(
    lambda header, payload: [header, *payload],
    headers,
    st.lists(st.binary(max_size=70), max_size=3),
)


@settings(max_examples=400, deadline=None, database=None)
@given(reply=replies, op=st.sampled_from(["ping", "palette", "recolor"]))
def test_any_reply_is_a_result_or_a_recolor_error(reply, op):
    client = Client(Connection("tcp://127.0.0.1:9"), open_socket=lambda *a, **k: Scripted(reply))
    pixels = Pixels(4, 4, "RGBA8", bytes(64))
    try:
        if op == "ping":
            assert isinstance(client.ping(), dict)
        elif op == "palette":
            colours, weights = client.palette(pixels, k=4)
            assert len(colours) == len(weights) <= 12
        else:
            result = client.recolor(pixels, ["#000000"])
            assert (result.width, result.height, len(result.data)) == (4, 4, 64)
    except RecolorError as error:  # never KeyError, TypeError, RecursionError...
        assert error.code and str(error)
