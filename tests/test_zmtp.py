"""The plug-in's built-in ZMTP client (plugin/recolor_with_palette/zmtp.py) and its transport
(transport.py) against real libzmq: pyzmq sockets in a thread of this process, on tcp:// and
ipc://."""

import contextlib
import mmap
import os
import socket
import struct
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import zmq
import zmq.auth
from zmtp_peer import read_exact, read_message

from plugin.recolor_with_palette import transport, zmtp
from plugin.recolor_with_palette.transport import CurveUnavailableError, open_socket
from plugin.recolor_with_palette.zmtp import (
    ZmtpConnectionRefused,
    ZmtpMechanismError,
    ZmtpProtocolError,
    ZmtpSocket,
    ZmtpTimeout,
)

BIG = 30 * 1024 * 1024
KINDS = ["tcp", "ipc"]


def as_bytes(frames: list) -> list[bytes]:
    """Received frames as bytes: a large one arrives as the mmap it was received into."""
    return [bytes(frame) for frame in frames]


def reverse_and_count(frames: list[bytes]) -> list[bytes]:
    """The test server's answer: the frames in reverse order, then their sizes; a REQ
    envelope (an empty first frame) stays in front, as the daemon keeps it."""
    if len(frames) > 1 and frames[0] == b"":
        return [b"", *reverse_and_count(frames[1:])]
    return [*reversed(frames), b",".join(b"%d" % len(f) for f in frames)]


@contextlib.contextmanager
def router(kind: str, tmp_path, handler=reverse_and_count, **options):
    """A libzmq ROUTER answering `handler(frames)` (identity removed; None: no reply) in a
    thread; yields (endpoint, list of the messages it received)."""
    context = zmq.Context()
    sock = context.socket(zmq.ROUTER)
    sock.linger = 0
    for name, value in options.items():
        setattr(sock, name, value)
    if kind == "tcp":
        sock.bind("tcp://127.0.0.1:*")
    else:
        folder = str(tmp_path)
        if len(folder) > 80:  # AF_UNIX paths are limited to about 100 bytes
            folder = tempfile.mkdtemp(prefix="zmtp")
        sock.bind(f"ipc://{folder}/daemon.sock")
    endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
    received, stop = [], threading.Event()

    def serve():
        while not stop.is_set():
            if not sock.poll(20):
                continue
            identity, *frames = sock.recv_multipart()
            received.append(frames)
            reply = handler(frames)
            if reply is not None:
                sock.send_multipart([identity, *reply])
        sock.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield endpoint, received
    finally:
        stop.set()
        thread.join(5)
        context.term()


def pyzmq_request(endpoint: str, kind: int, frames: list[bytes]) -> list[bytes]:
    context = zmq.Context()
    sock = context.socket(kind)
    sock.linger = 0
    sock.rcvtimeo = 10_000
    sock.connect(endpoint)
    try:
        sock.send_multipart(frames)
        return sock.recv_multipart()
    finally:
        sock.close()
        context.term()


@contextlib.contextmanager
def raw_server(script):
    """A plain TCP server that runs `script(connection)` for its first connection."""
    listener = socket.create_server(("127.0.0.1", 0))
    done = threading.Event()

    def serve():
        connection, _ = listener.accept()
        with connection:
            script(connection)
            done.wait(5)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"tcp://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        done.set()
        thread.join(5)
        listener.close()


def zmtp_server_handshake(connection: socket.socket) -> None:
    """The server half of a ZMTP 3.1 NULL handshake, written by hand."""
    greeting = b"\xff" + bytes(8) + b"\x7f\x03\x01" + b"NULL".ljust(20, b"\0") + b"\x01"
    connection.sendall(greeting + bytes(31))
    recv_exact(connection, 64)
    ready = b"\x05READY\x0bSocket-Type" + struct.pack(">I", 6) + b"ROUTER"
    connection.sendall(bytes((0x04, len(ready))) + ready)
    flags, size = recv_exact(connection, 2)
    assert flags == 0x04
    assert recv_exact(connection, size).startswith(b"\x05READY")


def recv_exact(connection: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        data += connection.recv(size - len(data))
    return data


def refused_endpoint() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"tcp://127.0.0.1:{port}"


# --- wire format -------------------------------------------------------------------------
def test_greeting_and_frame_headers_follow_the_spec():
    greeting = zmtp.GREETING
    assert greeting[:10] == b"\xff" + bytes(8) + b"\x7f"
    assert greeting[10:12] == b"\x03\x01"
    assert greeting[12:32] == b"NULL" + bytes(16)
    assert greeting[32:] == bytes(32)  # as-server 0, filler
    assert zmtp._frame_header(0x01, 0) == b"\x01\x00"
    assert zmtp._frame_header(0x00, 255) == b"\x00\xff"
    assert zmtp._frame_header(0x01, 256) == b"\x03" + (256).to_bytes(8, "big")
    assert zmtp._frame_header(0x04, 1 << 40) == b"\x06" + (1 << 40).to_bytes(8, "big")


def test_endpoints():
    assert zmtp.parse_endpoint("tcp://[::1]:5555")[1] == ("::1", 5555)
    assert zmtp.parse_endpoint("ipc:///tmp/x.sock")[1] == "/tmp/x.sock"
    for bad in ("tcp://127.0.0.1", "tcp://*:5555", "udp://h:1", "inproc://x", "localhost:5"):
        with pytest.raises(zmtp.ZmtpEndpointError):
            ZmtpSocket(bad)


# --- against libzmq ----------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_same_replies_as_pyzmq_dealer_and_req(kind, tmp_path):
    messages = [
        [b"one"],
        [b""],
        [b"", b"\x00", b""],
        [b"x" * 255, b"y" * 256, b"z"],
        [b"a" * 65535, b"b" * 65536, b"c" * 70001],
    ]
    with router(kind, tmp_path) as (endpoint, _):
        with ZmtpSocket(endpoint, timeout_s=10) as builtin:
            for message in messages:
                builtin.send_multipart(message)
                assert as_bytes(builtin.recv_multipart()) == pyzmq_request(
                    endpoint, zmq.DEALER, message
                )
            assert builtin.peer_version == (3, 1)
            assert builtin.peer_properties["socket-type"] == b"ROUTER"
            assert builtin.connections == 1
        for force_builtin in (True, False):
            with open_socket(endpoint, 10, force_builtin=force_builtin) as sock:
                for message in messages:
                    sock.send_multipart(message)
                    assert as_bytes(sock.recv_multipart()) == pyzmq_request(
                        endpoint, zmq.REQ, message
                    )


@pytest.mark.parametrize("kind", KINDS)
def test_frame_sizes_both_directions(kind, tmp_path):
    """0, 1, 255 | 256 (short | long frames), the read buffer's edge, and 30 MB."""
    frames = [b"", b"\x01", os.urandom(255), os.urandom(256), os.urandom(zmtp.CHUNK)]
    frames += [os.urandom(zmtp.CHUNK + 1), os.urandom(BIG)]
    with router(kind, tmp_path) as (endpoint, received):
        with ZmtpSocket(endpoint, timeout_s=20) as sock:
            started = time.perf_counter()
            sock.send_multipart(frames)
            reply = as_bytes(sock.recv_multipart())
            elapsed = time.perf_counter() - started
    assert received == [frames]  # what libzmq got from us
    assert reply == reverse_and_count(frames)  # what we got from libzmq
    assert elapsed < 10  # linear, not quadratic: about 0.3 s here


@pytest.mark.parametrize("kind", KINDS)
def test_recv_timeout_is_prompt_and_loses_nothing(kind, tmp_path):
    def late(frames):
        time.sleep(0.4)
        return frames

    with router(kind, tmp_path, handler=late) as (endpoint, _):
        with ZmtpSocket(endpoint, timeout_s=0.1) as sock:
            sock.send_multipart([b"hello"])
            started = time.monotonic()
            with pytest.raises(ZmtpTimeout, match="no reply from") as caught:
                sock.recv_multipart()
            assert time.monotonic() - started < 1
            assert isinstance(caught.value, TimeoutError)
            assert sock.recv_multipart(timeout_s=5) == [b"hello"]


def test_partly_received_frame_survives_a_timeout():
    """A timeout in the middle of a large frame keeps what arrived; the next recv goes on."""
    body = os.urandom(3 * zmtp.CHUNK)
    resume = threading.Event()

    def script(connection):
        zmtp_server_handshake(connection)
        flags, size = recv_exact(connection, 2)
        recv_exact(connection, size)
        connection.sendall(b"\x02" + len(body).to_bytes(8, "big") + body[:100_000])
        resume.wait(5)
        connection.sendall(body[100_000:])

    with raw_server(script) as endpoint, ZmtpSocket(endpoint, timeout_s=5) as sock:
        sock.send_multipart([b"go"])
        with pytest.raises(ZmtpTimeout):
            sock.recv_multipart(timeout_s=0.2)
        resume.set()
        assert as_bytes(sock.recv_multipart()) == [body]


def test_a_large_frame_is_received_in_place_not_copied():
    """A frame of CHUNK bytes or more is received into its own anonymous memory map and
    handed over as it is: a bytearray would be zeroed all at once and bytes() of it copied
    again, both holding the GIL (0.2-0.3 s each for a 384 MB layer), which froze Krita's
    GUI thread while a big Apply's reply arrived."""
    body = os.urandom(3 * zmtp.CHUNK + 7)

    def script(connection):
        zmtp_server_handshake(connection)
        flags, size = recv_exact(connection, 2)
        recv_exact(connection, size)
        connection.sendall(b"\x01\x05small")  # MORE: a short frame, then the large one
        connection.sendall(b"\x02" + len(body).to_bytes(8, "big") + body)

    with raw_server(script) as endpoint, ZmtpSocket(endpoint, timeout_s=5) as sock:
        sock.send_multipart([b"go"])
        small, large = sock.recv_multipart()
        assert small == b"small" and isinstance(large, mmap.mmap)
        assert len(large) == len(body) and memoryview(large) == memoryview(body)


def test_connection_refused_is_clear_and_immediate(tmp_path):
    for endpoint in (refused_endpoint(), f"ipc://{tmp_path}/nobody.sock"):
        sock = ZmtpSocket(endpoint, timeout_s=5)
        started = time.monotonic()
        with pytest.raises(ZmtpConnectionRefused, match="nothing is listening") as caught:
            sock.send_multipart([b"hello"])
        assert time.monotonic() - started < 1
        assert isinstance(caught.value, ConnectionRefusedError)
        assert endpoint in str(caught.value)


@pytest.mark.parametrize("size", [2000, 8 * 1024 * 1024])
def test_message_over_the_peers_limit_is_a_lost_connection(size, tmp_path):
    """libzmq hangs up on a frame over MAXMSGSIZE (while we send, or before replying);
    the next request makes a new connection."""
    with router("tcp", tmp_path, maxmsgsize=1000) as (endpoint, _):
        with ZmtpSocket(endpoint, timeout_s=5) as sock:
            with pytest.raises(zmtp.ZmtpConnectionLost, match="larger than its limit"):
                sock.send_multipart([bytes(size)])
                sock.recv_multipart()
            sock.send_multipart([b"small"])
            assert sock.recv_multipart() == [b"small", b"5"]
            assert sock.connections == 2


def test_http_server_is_a_protocol_error_not_a_hang():
    def http(connection):
        connection.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    with raw_server(http) as endpoint:
        started = time.monotonic()
        with pytest.raises(ZmtpProtocolError, match="not a ZeroMQ socket.*HTTP/1.1 400"):
            ZmtpSocket(endpoint, timeout_s=5).send_multipart([b"hello"])
        assert time.monotonic() - started < 1


def test_http_server_that_answers_and_hangs_up():
    def http(connection):
        connection.recv(1024)
        connection.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n")
        connection.close()

    with raw_server(http) as endpoint, pytest.raises(ZmtpProtocolError):
        ZmtpSocket(endpoint, timeout_s=5).send_multipart([b"hello"])


def test_silent_server_times_out_the_handshake():
    with raw_server(lambda connection: None) as endpoint:
        with pytest.raises(ZmtpTimeout, match="no ZeroMQ handshake"):
            ZmtpSocket(endpoint, timeout_s=0.2).send_multipart([b"hello"])


def test_error_command_in_the_handshake():
    def refuse(connection):
        greeting = b"\xff" + bytes(8) + b"\x7f\x03\x01" + b"NULL".ljust(20, b"\0")
        connection.sendall(greeting + bytes(32))
        reason = b"Invalid socket type"
        body = b"\x05ERROR" + bytes((len(reason),)) + reason
        connection.sendall(bytes((0x04, len(body))) + body)

    with raw_server(refuse) as endpoint:
        with pytest.raises(ZmtpProtocolError, match="Invalid socket type"):
            ZmtpSocket(endpoint, timeout_s=5).send_multipart([b"hello"])


def test_incompatible_peer_socket_type(tmp_path):
    context = zmq.Context()
    publisher = context.socket(zmq.PUB)
    publisher.linger = 0
    port = publisher.bind_to_random_port("tcp://127.0.0.1")
    try:
        # libzmq may reset the connection before its READY (naming PUB) can be read: either
        # way the user gets a protocol error at once, not a hang.
        expected = "is a PUB socket|not a ZeroMQ socket this client can talk to"
        with pytest.raises(ZmtpProtocolError, match=expected):
            ZmtpSocket(f"tcp://127.0.0.1:{port}", timeout_s=5).send_multipart([b"x"])
    finally:
        publisher.close()
        context.term()


def test_heartbeats_are_answered(tmp_path):
    """libzmq PINGs every 50 ms and drops a peer silent for 250 ms after one: the client
    answers while waiting for a slow reply, and reconnects after idling unread."""

    def slow(frames):
        time.sleep(float(frames[0]))
        return frames

    options = {"heartbeat_ivl": 50, "heartbeat_timeout": 250}
    with router("tcp", tmp_path, handler=slow, **options) as (endpoint, _):
        with ZmtpSocket(endpoint, timeout_s=5) as sock:
            sock.send_multipart([b"0.7"])
            assert sock.recv_multipart() == [b"0.7"]
            assert sock.pings_answered >= 3
            time.sleep(1)  # nobody reads: libzmq gives up on us after 0.3 s
            sock.send_multipart([b"0"])
            assert sock.recv_multipart() == [b"0"]
            assert sock.connections == 2


def test_without_pongs_libzmq_drops_the_connection(tmp_path, monkeypatch):
    """The heartbeat test above really depends on the PONGs."""
    handle_command = ZmtpSocket._command

    def no_pong(self, body):
        if body[1 : 1 + body[0]] != b"PING":
            handle_command(self, body)

    monkeypatch.setattr(ZmtpSocket, "_command", no_pong)
    options = {"heartbeat_ivl": 50, "heartbeat_timeout": 250}
    slow = lambda frames: (time.sleep(1.5), frames)[1]  # noqa: E731
    with router("tcp", tmp_path, handler=slow, **options) as (endpoint, _):
        with ZmtpSocket(endpoint, timeout_s=5) as sock:
            sock.send_multipart([b"1.5"])
            with pytest.raises(zmtp.ZmtpConnectionLost, match="no reply came"):
                sock.recv_multipart()


def test_curve_server_needs_pyzmq(tmp_path):
    public, secret = zmq.curve_keypair()
    with router("tcp", tmp_path, curve_server=True, curve_secretkey=secret) as (endpoint, _):
        with pytest.raises(ZmtpMechanismError, match="CURVE.*pyzmq"):
            ZmtpSocket(endpoint, timeout_s=5).send_multipart([b"x"])


# --- the transport -----------------------------------------------------------------------
def test_implementation_choice(monkeypatch):
    endpoint = "tcp://127.0.0.1:9"
    monkeypatch.delenv(transport.FORCE_BUILTIN_ENV, raising=False)
    with open_socket(endpoint, 1) as sock:
        assert sock.implementation == "pyzmq" and sock.fallback_reason is None
    with open_socket(endpoint, 1, force_builtin=True) as sock:
        assert sock.implementation == "builtin"
    monkeypatch.setenv(transport.FORCE_BUILTIN_ENV, "1")
    with open_socket(endpoint, 1) as sock:
        assert sock.implementation == "builtin"
        assert transport.FORCE_BUILTIN_ENV in sock.fallback_reason


def test_without_pyzmq_the_builtin_client_is_used(monkeypatch, tmp_path):
    monkeypatch.delenv(transport.FORCE_BUILTIN_ENV, raising=False)
    monkeypatch.setitem(sys.modules, "zmq", None)  # `import zmq` raises ImportError
    with router("tcp", tmp_path) as (endpoint, _), open_socket(endpoint, 5) as sock:
        assert sock.implementation == "builtin"
        assert "pyzmq cannot be loaded" in sock.fallback_reason
        sock.send_multipart([b"hi"])
        assert sock.recv_multipart() == [b"hi", b"2"]


@pytest.mark.parametrize("force_builtin", [True, False], ids=["builtin", "pyzmq"])
def test_transport_is_req_on_the_wire(force_builtin, tmp_path):
    with router("ipc", tmp_path) as (endpoint, received):
        with open_socket(endpoint, 5, force_builtin=force_builtin) as sock:
            sock.send_multipart([b'{"op": "ping"}', b"\x00" * 300])
            assert sock.recv_multipart() == [b"\x00" * 300, b'{"op": "ping"}', b"14,300"]
    assert received == [[b"", b'{"op": "ping"}', b"\x00" * 300]]  # the delimiter, as REQ


@pytest.mark.parametrize("force_builtin", [True, False], ids=["builtin", "pyzmq"])
def test_transport_timeout_and_a_fresh_request(force_builtin, tmp_path):
    """A request after a timed-out one never gets the late reply to the old one."""

    def answer(frames):
        if frames[1] == b"slow":
            time.sleep(0.4)
        return frames

    with router("tcp", tmp_path, handler=answer) as (endpoint, _):
        with open_socket(endpoint, 0.15, force_builtin=force_builtin) as sock:
            sock.send_multipart([b"slow"])
            with pytest.raises(transport.TransportTimeout, match="no reply from"):
                sock.recv_multipart()
            sock.send_multipart([b"fast"])
            assert sock.recv_multipart(timeout_s=5) == [b"fast"]


@pytest.mark.parametrize("force_builtin", [True, False], ids=["builtin", "pyzmq"])
def test_transport_rejects_a_reply_without_delimiter(force_builtin, tmp_path):
    with router("tcp", tmp_path, handler=lambda frames: [b"no delimiter"]) as (endpoint, _):
        with open_socket(endpoint, 5, force_builtin=force_builtin) as sock:
            sock.send_multipart([b"x"])
            with pytest.raises(ZmtpProtocolError, match="delimiter"):
                sock.recv_multipart()


def test_transport_big_frames_with_pyzmq(tmp_path):
    frame = os.urandom(BIG)
    with router("tcp", tmp_path) as (endpoint, _):
        with open_socket(endpoint, 20) as sock:
            sock.send_multipart([frame])
            assert as_bytes(sock.recv_multipart()) == [frame, b"31457280"]


def test_curve_without_pyzmq_says_how_to_fix_it():
    public, secret = zmq.curve_keypair()
    with pytest.raises(CurveUnavailableError, match="needs pyzmq.*install.py") as caught:
        open_socket("tcp://192.0.2.1:5555", 5, public, (public, secret), force_builtin=True)
    assert isinstance(caught.value, transport.TransportError)


def test_curve_with_pyzmq_and_key_files(tmp_path):
    server_public, server_secret = zmq.auth.create_certificates(tmp_path, "server")
    _, client_secret = zmq.auth.create_certificates(tmp_path, "client")
    _, secret = zmq.auth.load_certificate(server_secret)
    assert transport.read_key_file(client_secret) == zmq.auth.load_certificate(client_secret)
    with router("tcp", tmp_path, curve_server=True, curve_secretkey=secret) as (endpoint, _):
        keys = dict(server_public_key=server_public, client_keys=Path(client_secret))
        with open_socket(endpoint, 5, **keys) as sock:
            assert sock.implementation == "pyzmq"
            sock.send_multipart([b"secret"])
            assert sock.recv_multipart() == [b"secret", b"6"]


# --- limits on what the peer sends -------------------------------------------------------
def replying(data: bytes):
    """A raw_server script: handshake, read the request, send `data` (frames by hand)."""

    def script(connection):
        zmtp_server_handshake(connection)
        read_message(connection)
        connection.sendall(data)

    return script


def long_frame(flags: int, size: int, body: bytes = b"") -> bytes:
    return bytes((flags | 0x02,)) + size.to_bytes(8, "big") + body


LIMITS = dict(max_frame_bytes=1 << 20, max_message_bytes=1 << 20, max_frames=3)


@pytest.mark.parametrize("size", [1 << 30, 1 << 62, (1 << 64) - 1], ids=["1GiB", "2^62", "2^64-1"])
def test_a_frame_over_the_limit_is_refused_before_it_is_allocated(size):
    import tracemalloc

    hostile = replying(long_frame(0x01, 0) + long_frame(0x00, size, b"x" * 100_000))
    with raw_server(hostile) as endpoint, ZmtpSocket(endpoint, timeout_s=5, **LIMITS) as sock:
        sock.send_multipart([b"", b"request"])
        tracemalloc.start()
        try:
            with pytest.raises(ZmtpProtocolError, match=f"{size:,}-byte frame.*refused unread"):
                sock.recv_multipart()
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 1 << 20  # the read buffer, not the frame
        assert not sock.connected  # the rest of the stream cannot be trusted


@pytest.mark.parametrize("size", [1 << 62, (1 << 64) - 1], ids=["2^62", "2^64-1"])
def test_without_limits_an_impossible_frame_is_an_error_not_a_crash(size):
    with raw_server(replying(long_frame(0x00, size))) as endpoint, ZmtpSocket(endpoint, 5) as sock:
        sock.send_multipart([b"request"])
        with pytest.raises(zmtp.ZmtpOutOfMemory, match="more than this process can hold") as caught:
            sock.recv_multipart()
        assert isinstance(caught.value, MemoryError) and isinstance(caught.value, zmtp.ZmtpError)
        assert not sock.connected


def test_endless_frames_stop_at_the_frame_limit():
    stop = threading.Event()

    def endless(connection):
        zmtp_server_handshake(connection)
        read_message(connection)
        with contextlib.suppress(OSError):
            while not stop.is_set():
                connection.sendall(b"\x01\x00" * 10_000)  # empty frames, always one more

    with raw_server(endless) as endpoint, ZmtpSocket(endpoint, timeout_s=5, **LIMITS) as sock:
        sock.send_multipart([b"request"])
        started = time.monotonic()
        with pytest.raises(ZmtpProtocolError, match="a message of 4 frames, more than the 3"):
            sock.recv_multipart()
        assert time.monotonic() - started < 1
        stop.set()


def test_a_message_over_the_total_is_refused_at_the_frame_that_crosses_it():
    frames = b"".join(long_frame(0x01, 400_000, bytes(400_000)) for _ in range(3)) + b"\x00\x00"
    with raw_server(replying(frames)) as endpoint:
        with ZmtpSocket(endpoint, timeout_s=5, **LIMITS) as sock:
            sock.send_multipart([b"request"])
            with pytest.raises(ZmtpProtocolError, match="1,200,000 bytes, more than the 1,048,576"):
                sock.recv_multipart()


def test_a_huge_command_is_refused():
    with raw_server(replying(long_frame(0x04, 1 << 20))) as endpoint:
        with ZmtpSocket(endpoint, timeout_s=5) as sock:  # even without limits
            sock.send_multipart([b"request"])
            with pytest.raises(ZmtpProtocolError, match="1,048,576-byte command"):
                sock.recv_multipart()


def test_limits_allow_a_message_exactly_at_them():
    message = [b"a" * 100, b"b" * ((1 << 20) - 200), b"c" * 100]
    with router("tcp", None, handler=lambda frames: message) as (endpoint, _):
        with ZmtpSocket(endpoint, timeout_s=5, **LIMITS) as sock:
            sock.send_multipart([b"x"])
            assert as_bytes(sock.recv_multipart()) == message


# --- heartbeats --------------------------------------------------------------------------
def test_a_silent_peer_is_given_up_after_its_heartbeat():
    """A daemon that stops (SIGSTOP, a hung machine) keeps the connection open but answers
    nothing, not even PINGs: the client gives up after heartbeat_timeout_s."""
    commands = []

    def silent(connection):
        zmtp_server_handshake(connection)
        read_message(connection)
        with contextlib.suppress(EOFError, OSError):
            flags, size = read_exact(connection, 2)  # our PING; never answered
            commands.append((flags, read_exact(connection, size)))

    with raw_server(silent) as endpoint:
        with ZmtpSocket(endpoint, 10, heartbeat_ivl_s=0.1, heartbeat_timeout_s=0.3) as sock:
            sock.send_multipart([b"request"])
            started = time.monotonic()
            with pytest.raises(zmtp.ZmtpConnectionLost, match="did not answer a heartbeat"):
                sock.recv_multipart()
            assert 0.35 < time.monotonic() - started < 1.5
            assert sock.pings_sent == 1 and not sock.connected
    ttl = int(zmtp.HEARTBEAT_TTL_S * 10).to_bytes(2, "big")
    assert commands == [(0x04, b"\x04PING" + ttl)]


def test_heartbeats_keep_a_slow_live_peer():
    """libzmq answers PINGs from its I/O thread while the daemon computes."""

    def slow(frames):
        time.sleep(1.0)
        return frames

    with router("tcp", None, handler=slow) as (endpoint, _):
        with ZmtpSocket(endpoint, 10, heartbeat_ivl_s=0.1, heartbeat_timeout_s=0.3) as sock:
            sock.send_multipart([b"slow"])
            assert sock.recv_multipart() == [b"slow"]
            assert sock.pings_sent >= 5 and sock.connections == 1


# --- the transport: limits, a lost connection, one context -------------------------------
@pytest.mark.parametrize("force_builtin", [True, False], ids=["builtin", "pyzmq"])
def test_transport_refuses_a_frame_over_the_reply_limit(force_builtin):
    """The built-in client refuses it from its header; libzmq (ZMQ_MAXMSGSIZE) drops the
    connection at the header, which the transport reports as a lost connection."""
    hostile = replying(b"\x01\x00" + long_frame(0x00, 1 << 30, b"x" * 1000))
    expected = ZmtpProtocolError if force_builtin else zmtp.ZmtpConnectionLost
    with raw_server(hostile) as endpoint:
        with open_socket(endpoint, 5, force_builtin=force_builtin, max_reply_bytes=1 << 20) as sock:
            sock.send_multipart([b"request"])
            started = time.monotonic()
            with pytest.raises(expected):
                sock.recv_multipart()
            assert time.monotonic() - started < 2


@pytest.mark.parametrize("force_builtin", [True, False], ids=["builtin", "pyzmq"])
def test_transport_counts_reply_frames_and_bytes(force_builtin, tmp_path):
    many = lambda frames: [frames[0], b"1", b"2", b"3"]  # noqa: E731 - delimiter kept
    big = lambda frames: [frames[0], b"x" * 600, b"y" * 600]  # noqa: E731
    for handler, words in ((many, "frames, more than the"), (big, "1,200 bytes")):
        with router("tcp", tmp_path, handler=handler) as (endpoint, _):
            with open_socket(endpoint, 5, force_builtin=force_builtin) as sock:
                sock.limit_reply(1000, 2)
                sock.send_multipart([b"request"])
                with pytest.raises(ZmtpProtocolError, match=words):
                    sock.recv_multipart()


@pytest.mark.parametrize("force_builtin", [True, False], ids=["builtin", "pyzmq"])
def test_transport_notices_a_daemon_that_goes_away(force_builtin, tmp_path):
    """pyzmq alone would reconnect silently and wait out the timeout."""
    got_request = threading.Event()
    with router("tcp", tmp_path, handler=lambda frames: got_request.set()) as (endpoint, _):
        sock = open_socket(endpoint, 30, force_builtin=force_builtin)
        sock.send_multipart([b"request"])
        assert got_request.wait(5)
    with sock:  # the router is closed now
        started = time.monotonic()
        with pytest.raises(zmtp.ZmtpConnectionLost, match="closed the connection"):
            sock.recv_multipart()
        assert time.monotonic() - started < 1
        with pytest.raises((ZmtpConnectionRefused, ZmtpTimeout)):
            sock.connect(0.3)  # nobody there any more


def test_pyzmq_transport_gives_up_on_a_silent_peer(monkeypatch):
    monkeypatch.setattr(zmtp, "HEARTBEAT_IVL_S", 0.1)
    monkeypatch.setattr(zmtp, "HEARTBEAT_TIMEOUT_S", 0.3)

    def silent(connection):
        zmtp_server_handshake(connection)
        with contextlib.suppress(EOFError, OSError):
            read_message(connection)
            while connection.recv(1024):  # reads the PINGs, answers nothing
                pass

    with raw_server(silent) as endpoint, open_socket(endpoint, 10, force_builtin=False) as sock:
        sock.send_multipart([b"request"])
        started = time.monotonic()
        with pytest.raises(zmtp.ZmtpConnectionLost):
            sock.recv_multipart()
        assert time.monotonic() - started < 2


def test_pyzmq_sockets_share_one_context_and_linger_zero(tmp_path):
    with router("tcp", tmp_path) as (endpoint, _):
        first = open_socket(endpoint, 5, force_builtin=False)
        second = open_socket(endpoint, 5, force_builtin=False)
        with first, second:
            for sock in (first, second):
                sock.send_multipart([b"hi"])
                assert sock.recv_multipart() == [b"hi", b"2"]
                assert sock._socket.getsockopt(zmq.LINGER) == 0
                assert sock._monitor.getsockopt(zmq.LINGER) == 0
            assert first._context is second._context is transport._shared_context(zmq)
    assert not transport._shared_context(zmq).closed  # closing sockets leaves it to others
