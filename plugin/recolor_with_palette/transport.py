"""One way for the plug-ins to talk to the daemon, with or without pyzmq.

    sock = open_socket(wire.DEFAULT_ADDRESS, timeout_s=300)
    sock.send_multipart([header, pixels])
    reply = sock.recv_multipart()   # TransportTimeout (a TimeoutError) if none comes in time
    sock.close()

pyzmq is used when the editor's Python can import it (sock.implementation == "pyzmq");
otherwise the pure-Python ZMTP client in zmtp.py ("builtin"), which has no CurveZMQ:
keys with no pyzmq raise CurveUnavailableError, saying what to do. Setting
PALETTENET_FORCE_BUILTIN_ZMTP=1 (or force_builtin=True) picks the built-in client even where
pyzmq works, for tests and to rule pyzmq out when chasing a problem.

On the wire both act as a REQ socket: the socket is a DEALER, and every request starts with
an empty delimiter frame, which is stripped from the reply; the daemon's ROUTER accepts REQ
and DEALER clients alike. Unlike REQ, a new request after an unanswered one (a timeout) is
allowed: the old connection is dropped and a fresh one made, so a late reply to the abandoned
request can never be taken for the answer to the new one (the ZeroMQ guide's "lazy pirate").
Receiving again after a timeout, without sending, keeps waiting for the same reply.

Both notice a daemon that goes away while a reply is awaited, and say so at once
(ZmtpConnectionLost) instead of waiting out the timeout: the built-in client sees the
connection close and PINGs a silent peer (zmtp.py); over pyzmq, libzmq sends ZMTP
heartbeats from its I/O thread (ZMQ_HEARTBEAT_IVL/TIMEOUT, libzmq 4.2+) and a socket monitor
reports the closed connection, which libzmq itself would silently replace, the request lost.
After that, connect() waits for the daemon to be back (a restarted one) so the caller may
send the request again.

limit_reply(max_bytes, max_frames) bounds the reply to the request about to be sent. The
built-in client refuses a frame or message over the limits from its header, before
allocating anything. pyzmq gets ZMQ_MAXMSGSIZE, with which libzmq drops a connection that
announces a larger frame before allocating it (seen here as a lost connection); the number
of frames and the total are checked once the message is complete, because libzmq keeps an
unfinished multipart message to itself: a peer sending one endless message can make libzmq
buffer it until the timeout. Only the built-in client bounds that.

pyzmq sockets share one zmq.Context per process (a context is a pool of I/O threads: one
per request would start and stop a thread each time) and close with LINGER 0.

Errors are the zmtp.py family whichever implementation runs: TransportError (ZmtpError)
and its subclasses TransportTimeout, ZmtpConnectionRefused (the built-in client only: pyzmq
reconnects silently, so there a missing daemon shows as a timeout), ZmtpConnectionLost,
ZmtpProtocolError. A socket is for one thread at a time.
"""

from __future__ import annotations  # editors may embed a Python older than 3.10

import itertools
import os
import struct
import threading
import time

from . import zmtp

ZmtpConnectError = zmtp.ZmtpConnectError
ZmtpConnectionLost = zmtp.ZmtpConnectionLost
ZmtpConnectionRefused = zmtp.ZmtpConnectionRefused
ZmtpEndpointError = zmtp.ZmtpEndpointError
ZmtpError = zmtp.ZmtpError
ZmtpHandshakeClosed = zmtp.ZmtpHandshakeClosed
ZmtpMechanismError = zmtp.ZmtpMechanismError
ZmtpOutOfMemory = zmtp.ZmtpOutOfMemory
ZmtpProtocolError = zmtp.ZmtpProtocolError
ZmtpTimeout = zmtp.ZmtpTimeout
TransportError = ZmtpError
TransportTimeout = ZmtpTimeout

FORCE_BUILTIN_ENV = "PALETTENET_FORCE_BUILTIN_ZMTP"
PYZMQ, BUILTIN = "pyzmq", "builtin"
# Without limit_reply(): the daemon's replies have one or two frames; no bound on bytes.
DEFAULT_MAX_REPLY_FRAMES = 16

__all__ = [
    "BUILTIN",
    "FORCE_BUILTIN_ENV",
    "PYZMQ",
    "CurveUnavailableError",
    "Transport",
    "TransportError",
    "TransportTimeout",
    "open_socket",
    "read_key_file",
    "ZmtpConnectError",
    "ZmtpConnectionLost",
    "ZmtpConnectionRefused",
    "ZmtpEndpointError",
    "ZmtpError",
    "ZmtpHandshakeClosed",
    "ZmtpMechanismError",
    "ZmtpOutOfMemory",
    "ZmtpProtocolError",
    "ZmtpTimeout",
]


class CurveUnavailableError(ZmtpError):
    """CurveZMQ keys are configured, but only the built-in client (no encryption) is here."""


def _load_pyzmq():
    """(the zmq module, None), or (None, why it cannot be used)."""
    try:
        import zmq
    # Not only ImportError: a module built for another Python or signed by someone else
    # can fail to load in many ways, and any of them just means "use the built-in client".
    except Exception as error:
        return None, f"pyzmq cannot be loaded here ({type(error).__name__}: {error})"
    return zmq, None


def _forced_builtin(force_builtin: bool | None) -> bool:
    if force_builtin is not None:
        return force_builtin
    return os.environ.get(FORCE_BUILTIN_ENV, "").strip() not in ("", "0")


def read_key_file(path) -> tuple[bytes, bytes | None]:
    """A key file written by `palettenet keys` (pyzmq's zmq.auth certificate format) ->
    (public key, secret key or None), both Z85 text; standard library only."""
    public = secret = None
    try:
        with open(path, "rb") as file:
            for line in file:
                name, equals, value = line.strip().partition(b"=")
                if equals and name.strip() in (b"public-key", b"secret-key"):
                    key = value.strip(b" \t'\"")
                    if name.strip() == b"public-key":
                        public = key
                    else:
                        secret = key
    except OSError as error:
        raise TransportError(f"cannot read CURVE key file {path}: {error}") from None
    if public is None:
        raise TransportError(f"{path} holds no public-key line: is it a CURVE key file?")
    return public, secret


def _key(value, what: str) -> bytes:
    key = value.encode("ascii") if isinstance(value, str) else bytes(value)
    if len(key) not in (32, 40):  # raw, or Z85 text
        raise TransportError(f"{what}: a CURVE key is 40 Z85 characters (or 32 raw bytes)")
    return key


def _is_key_file(value) -> bool:
    # A Z85 key is 40 characters; anything else given as text is a key file's path.
    if isinstance(value, str):
        return len(value) != 40 or os.path.exists(value)
    return isinstance(value, os.PathLike)


def _curve_keys(server_public_key, client_keys) -> tuple[bytes, bytes, bytes]:
    """(server public, client public, client secret) from keys or key files."""
    if server_public_key is None or client_keys is None:
        raise TransportError(
            "CurveZMQ needs both the server's public key and this client's key pair"
        )
    if _is_key_file(server_public_key):
        server_public_key, _ = read_key_file(server_public_key)
    if _is_key_file(client_keys):
        public, secret = read_key_file(client_keys)
        if secret is None:
            raise TransportError(f"{client_keys} holds no secret key: use the .key_secret file")
    else:
        public, secret = client_keys
    return (
        _key(server_public_key, "the server public key"),
        _key(public, "the client public key"),
        _key(secret, "the client secret key"),
    )


def open_socket(
    endpoint: str,
    timeout_s: float | None = 30.0,
    server_public_key=None,
    client_keys=None,
    *,
    force_builtin: bool | None = None,
    max_reply_bytes: int | None = None,
    max_reply_frames: int | None = DEFAULT_MAX_REPLY_FRAMES,
) -> Transport:
    """A REQ-like client socket for the daemon at `endpoint` (tcp://HOST:PORT, ipc:///PATH).

    `timeout_s` bounds every send and receive (None: wait forever). For CurveZMQ give
    `server_public_key` (Z85 text, or the server's .key file) and `client_keys` ((public,
    secret) Z85, or this client's .key_secret file); that needs pyzmq. `force_builtin`
    (default: the PALETTENET_FORCE_BUILTIN_ZMTP environment variable) skips pyzmq.
    `max_reply_bytes` and `max_reply_frames`: see Transport.limit_reply. Nothing is sent,
    and no connection made, until the first send_multipart() or connect()."""
    if _forced_builtin(force_builtin):
        zmq, why = None, f"{FORCE_BUILTIN_ENV} is set"
    else:
        zmq, why = _load_pyzmq()
    curve = server_public_key is not None or client_keys is not None
    if curve:
        if zmq is None:
            raise CurveUnavailableError(
                f"CurveZMQ encryption (the keys configured for {endpoint}) needs pyzmq, and "
                f"{why}. Run install.py for this editor, which vendors pyzmq for its Python; "
                "or run the daemon on this machine and connect without keys "
                "(tcp://127.0.0.1:PORT or ipc://), which needs no encryption"
            )
        keys = _curve_keys(server_public_key, client_keys)
        if not zmq.has("curve"):
            raise CurveUnavailableError(
                "CurveZMQ encryption needs a libzmq built with CURVE support, and this "
                f"pyzmq's libzmq {zmq.zmq_version()} has none: install pyzmq's own wheel"
            )
        sock = _PyzmqTransport(zmq, endpoint, timeout_s, keys)
    elif zmq is not None:
        sock = _PyzmqTransport(zmq, endpoint, timeout_s, None)
    else:
        sock = _BuiltinTransport(endpoint, timeout_s, why)
    sock.limit_reply(max_reply_bytes, max_reply_frames)
    return sock


class Transport:
    """What open_socket() returns: send_multipart(), recv_multipart(), close(), and for a
    lost request limit_reply() and connect().

    `implementation` is "pyzmq" or "builtin"; `fallback_reason` says why pyzmq is not used
    (None when it is). `timeout_s` bounds each send, and each receive without a timeout of
    its own; it may be changed between calls."""

    implementation = ""
    fallback_reason: str | None = None

    def __init__(self, endpoint: str, timeout_s: float | None):
        self.endpoint = endpoint
        self.timeout_s = timeout_s
        self.max_reply_bytes: int | None = None
        self.max_reply_frames: int | None = None
        self._awaiting_reply = False

    def limit_reply(self, max_bytes: int | None, max_frames: int | None) -> None:
        """Refuse (ZmtpProtocolError) a reply of more than `max_bytes` octets in all or
        more than `max_frames` frames, the delimiter not counted; None: no limit. Set it
        before sending the request: pyzmq's part of it holds from the next connection."""
        self.max_reply_bytes, self.max_reply_frames = max_bytes, max_frames
        self._limits_changed()

    def send_multipart(self, frames) -> None:
        """Send one request (a list of bytes-like frames)."""
        if self._awaiting_reply:  # the previous request was given up: start afresh
            self._reset()
            self._awaiting_reply = False
        self._send([b"", *frames])  # REQ's envelope: the empty delimiter frame
        self._awaiting_reply = True

    def recv_multipart(self, timeout_s: float | None = ...) -> list[bytes]:
        """The reply's frames; TransportTimeout if none comes within the timeout (default:
        the socket's), ZmtpConnectionLost if the connection carrying the request was lost
        (the request is then gone: send it again), ZmtpProtocolError if the reply breaks
        the limits. Calling again after a timeout keeps waiting for the same reply."""
        timeout_s = self.timeout_s if timeout_s is ... else timeout_s
        frames = self._recv(timeout_s)
        self._awaiting_reply = False
        if not frames or len(frames[0]) != 0:
            raise ZmtpProtocolError(
                f"{self.endpoint} replied without the empty delimiter frame a REQ client "
                "expects: is it a palettenet daemon?"
            )
        frames = frames[1:]
        # The built-in client refused these before reading them; pyzmq only now can tell.
        if self.max_reply_frames is not None and len(frames) > self.max_reply_frames:
            raise ZmtpProtocolError(
                f"{self.endpoint} replied with {len(frames)} frames, more than the "
                f"{self.max_reply_frames} a reply to this request has"
            )
        total = sum(len(frame) for frame in frames)
        if self.max_reply_bytes is not None and total > self.max_reply_bytes:
            raise ZmtpProtocolError(
                f"{self.endpoint} replied with {total:,} bytes, more than the "
                f"{self.max_reply_bytes:,} a reply to this request can have"
            )
        return frames

    def connect(self, timeout_s: float | None = ...) -> None:
        """Return once a connection to the endpoint is up (handshake done), making a new one
        if the last request's connection was lost. ZmtpConnectionRefused (built-in client)
        or TransportTimeout when none is made within `timeout_s` (default: the socket's);
        trying again goes on where this left off."""
        if self._awaiting_reply:  # whatever was in flight is gone with its connection
            self._reset()
            self._awaiting_reply = False
        self._connect(self.timeout_s if timeout_s is ... else timeout_s)

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        return f"<{self.implementation} transport to {self.endpoint}>"

    # implementations
    def _send(self, frames: list) -> None:
        raise NotImplementedError

    def _recv(self, timeout_s: float | None) -> list[bytes]:
        raise NotImplementedError

    def _connect(self, timeout_s: float | None) -> None:
        raise NotImplementedError

    def _reset(self) -> None:
        raise NotImplementedError

    def _limits_changed(self) -> None:
        raise NotImplementedError


class _BuiltinTransport(Transport):
    implementation = BUILTIN

    def __init__(self, endpoint: str, timeout_s: float | None, fallback_reason: str | None):
        super().__init__(endpoint, timeout_s)
        self.fallback_reason = fallback_reason
        self._socket = zmtp.ZmtpSocket(endpoint, timeout_s)

    def _limits_changed(self) -> None:
        # Frames and bytes as ZmtpSocket counts them: the delimiter is one more, of 0 octets.
        sock = self._socket
        sock.max_frame_bytes = sock.max_message_bytes = self.max_reply_bytes
        sock.max_frames = None if self.max_reply_frames is None else self.max_reply_frames + 1

    def _send(self, frames: list) -> None:
        self._socket.send_multipart(frames, self.timeout_s)

    def _recv(self, timeout_s: float | None) -> list[bytes]:
        return self._socket.recv_multipart(timeout_s)

    def _connect(self, timeout_s: float | None) -> None:
        self._socket.connect(timeout_s)

    def _reset(self) -> None:
        self._socket.close()
        self._socket = zmtp.ZmtpSocket(self.endpoint, self.timeout_s)
        self._limits_changed()

    def close(self) -> None:
        self._socket.close()


# --- pyzmq -------------------------------------------------------------------------------
_context = None  # the plug-in's zmq.Context in this process (see _shared_context)
_context_pid = None
_context_lock = threading.Lock()
_monitor_ids = itertools.count(1)


def _shared_context(zmq):
    """One context for all of the plug-in's pyzmq sockets in this process. Its own, not
    zmq.Context.instance(), which the editor or another plug-in may terminate; made again
    in a forked child, where the parent's I/O threads do not exist."""
    global _context, _context_pid
    with _context_lock:
        if _context is None or _context.closed or _context_pid != os.getpid():
            _context, _context_pid = zmq.Context(), os.getpid()
        return _context


def _set_heartbeats(zmq, sock) -> None:
    """ZMTP heartbeats from libzmq's I/O thread (libzmq 4.2 and later): a PING every
    HEARTBEAT_IVL, the connection closed when HEARTBEAT_TIMEOUT passes without a byte from
    the daemon after one, which the monitor reports. The same values as the built-in client."""
    for name, seconds in (
        ("HEARTBEAT_IVL", zmtp.HEARTBEAT_IVL_S),
        ("HEARTBEAT_TIMEOUT", zmtp.HEARTBEAT_TIMEOUT_S),
        ("HEARTBEAT_TTL", zmtp.HEARTBEAT_TTL_S),
    ):
        option = getattr(zmq, name, None)
        if option is None:
            continue
        try:
            sock.setsockopt(option, round(seconds * 1000))
        except zmq.ZMQError:  # an older libzmq: a daemon that dies is still seen by the monitor
            pass


class _PyzmqTransport(Transport):
    implementation = PYZMQ

    def __init__(self, zmq, endpoint: str, timeout_s: float | None, curve_keys):
        super().__init__(endpoint, timeout_s)
        self._zmq = zmq
        self._curve_keys = curve_keys
        self._context = _shared_context(zmq)
        # The connection's state, from the monitor: libzmq says when a handshake succeeded
        # (HANDSHAKE_SUCCEEDED, libzmq 4.3; CONNECTED before that) and when a connection closed.
        self._up_event = getattr(zmq, "EVENT_HANDSHAKE_SUCCEEDED", zmq.EVENT_CONNECTED)
        self._socket = self._monitor = self._poller = None
        self._up = False  # a connection is up now
        self._lost = False  # one that was up closed while a reply was awaited
        self.connections = 0  # connections made (diagnostics, tests)

    @staticmethod
    def _milliseconds(timeout_s: float | None) -> int:
        return -1 if timeout_s is None else max(0, round(timeout_s * 1000))

    def _open(self):
        """The socket, connected (libzmq connects in the background); made on first use so
        that limit_reply() can still set its options."""
        if self._socket is not None:
            return self._socket
        zmq = self._zmq
        sock = self._context.socket(zmq.DEALER)
        sock.linger = 0  # close() never waits for unsent requests
        sock.ipv6 = True  # tcp://[::1]:PORT; IPv4 addresses work as before
        if self.max_reply_bytes is not None:
            # libzmq drops the connection at the header of a larger frame, unallocated
            sock.maxmsgsize = self.max_reply_bytes
        _set_heartbeats(zmq, sock)
        if self._curve_keys is not None:
            sock.curve_serverkey, sock.curve_publickey, sock.curve_secretkey = self._curve_keys
        events = self._up_event | zmq.EVENT_DISCONNECTED
        monitor = sock.get_monitor_socket(
            events, addr=f"inproc://recolor-with-palette-monitor-{os.getpid()}-{next(_monitor_ids)}"
        )
        monitor.linger = 0
        try:
            sock.connect(self.endpoint)
        except zmq.ZMQError as error:
            self._close(sock, monitor)
            raise ZmtpEndpointError(f"cannot connect to {self.endpoint!r}: {error}") from None
        self._poller = zmq.Poller()
        self._poller.register(sock, zmq.POLLIN)
        self._poller.register(monitor, zmq.POLLIN)
        self._socket, self._monitor = sock, monitor
        self._up = self._lost = False
        return sock

    def _watch(self) -> None:
        """Take in the monitor's events: is a connection up, was one lost?"""
        zmq = self._zmq
        while True:
            try:
                frames = self._monitor.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            # event frame: event number (16 bits) and value (32 bits), native byte order
            (event,) = struct.unpack_from("=H", frames[0])
            if event == self._up_event:
                self._up = True
                self.connections += 1
            elif event == zmq.EVENT_DISCONNECTED:
                self._lost = self._lost or self._up
                self._up = False

    def _limits_changed(self) -> None:
        self._reset()  # MAXMSGSIZE holds from the next connection: make that a new socket

    def _send(self, frames: list) -> None:
        zmq = self._zmq
        sock = self._open()
        # A connection closed before this request changes nothing for it: libzmq sends it
        # on the next one.
        self._watch()
        self._lost = False
        sock.sndtimeo = self._milliseconds(self.timeout_s)
        try:
            sock.send_multipart(frames, copy=False)  # small frames are copied anyway
        except zmq.Again:
            raise ZmtpTimeout(
                f"could not send to {self.endpoint} within {self.timeout_s:g} s: is the daemon "
                "running there?"
            ) from None
        except zmq.ZMQError as error:
            raise ZmtpError(f"sending to {self.endpoint} failed: {error}") from None

    def _recv(self, timeout_s: float | None) -> list[bytes]:
        zmq = self._zmq
        sock = self._open()
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            try:
                return sock.recv_multipart(zmq.NOBLOCK)  # a reply that came wins
            except zmq.Again:
                pass
            except zmq.ZMQError as error:
                raise ZmtpError(f"receiving from {self.endpoint} failed: {error}") from None
            self._watch()
            if self._lost:
                raise ZmtpConnectionLost(
                    f"{self.endpoint} closed the connection before the reply came: the daemon "
                    "stopped or restarted, stopped answering heartbeats, or one side refused "
                    "a message over its size limit"
                )
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise ZmtpTimeout(
                    f"no reply from {self.endpoint} within {timeout_s:g} s: is the daemon "
                    "running there, and is the address the one it printed?"
                )
            self._poller.poll(self._milliseconds(remaining))  # a reply, or a monitor event

    def _connect(self, timeout_s: float | None) -> None:
        self._open()
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            self._watch()
            if self._up:
                return
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise ZmtpTimeout(f"could not connect to {self.endpoint} within {timeout_s:g} s")
            self._monitor.poll(self._milliseconds(remaining))

    def _close(self, sock, monitor) -> None:
        try:
            sock.disable_monitor()
        except self._zmq.ZMQError:  # closing anyway
            pass
        monitor.close(linger=0)
        sock.close(linger=0)

    def _reset(self) -> None:
        """Close the socket; the next call opens a fresh one (nothing late reaches it)."""
        if self._socket is not None:
            self._close(self._socket, self._monitor)
            self._socket = self._monitor = self._poller = None
            self._up = self._lost = False

    def close(self) -> None:
        self._reset()
