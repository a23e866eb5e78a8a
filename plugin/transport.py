"""One way for the plug-ins to talk to the daemon, with or without pyzmq.

    sock = open_socket("tcp://127.0.0.1:5555", timeout_s=300)
    sock.send_multipart([header, pixels])
    reply = sock.recv_multipart()   # TransportTimeout (a TimeoutError) if none comes in time
    sock.close()

pyzmq is used when the editor's Python can import it (sock.implementation == "pyzmq");
otherwise the pure-Python ZMTP client in plugin/zmtp.py ("builtin"), which has no CurveZMQ:
keys with no pyzmq raise CurveUnavailableError, saying what to do. Setting
PALETTENET_FORCE_BUILTIN_ZMTP=1 (or force_builtin=True) picks the built-in client even where
pyzmq works, for tests and to rule pyzmq out when chasing a problem.

On the wire both act as a REQ socket: the socket is a DEALER, and every request starts with
an empty delimiter frame, which is stripped from the reply; the daemon's ROUTER accepts REQ
and DEALER clients alike. Unlike REQ, a new request after an unanswered one (a timeout) is
allowed: the old connection is dropped and a fresh one made, so a late reply to the abandoned
request can never be taken for the answer to the new one (the ZeroMQ guide's "lazy pirate").
Receiving again after a timeout, without sending, keeps waiting for the same reply.

Errors are the plugin.zmtp family whichever implementation runs: TransportError (ZmtpError)
and its subclasses TransportTimeout, ZmtpConnectionRefused (the built-in client only: pyzmq
reconnects silently, so there a missing daemon shows as a timeout), ZmtpConnectionLost,
ZmtpProtocolError. A socket is for one thread at a time.
"""

from __future__ import annotations  # editors may embed a Python older than 3.10

import os

try:
    from . import zmtp
except ImportError:  # copied into an editor's plug-in folder as top-level modules
    import zmtp

ZmtpConnectError = zmtp.ZmtpConnectError
ZmtpConnectionLost = zmtp.ZmtpConnectionLost
ZmtpConnectionRefused = zmtp.ZmtpConnectionRefused
ZmtpEndpointError = zmtp.ZmtpEndpointError
ZmtpError = zmtp.ZmtpError
ZmtpMechanismError = zmtp.ZmtpMechanismError
ZmtpProtocolError = zmtp.ZmtpProtocolError
ZmtpTimeout = zmtp.ZmtpTimeout
TransportError = ZmtpError
TransportTimeout = ZmtpTimeout

FORCE_BUILTIN_ENV = "PALETTENET_FORCE_BUILTIN_ZMTP"
PYZMQ, BUILTIN = "pyzmq", "builtin"

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
    "ZmtpMechanismError",
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
) -> Transport:
    """A REQ-like client socket for the daemon at `endpoint` (tcp://HOST:PORT, ipc:///PATH).

    `timeout_s` bounds every send and receive (None: wait forever). For CurveZMQ give
    `server_public_key` (Z85 text, or the server's .key file) and `client_keys` ((public,
    secret) Z85, or this client's .key_secret file); that needs pyzmq. `force_builtin`
    (default: the PALETTENET_FORCE_BUILTIN_ZMTP environment variable) skips pyzmq.
    Nothing is sent until the first send_multipart()."""
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
        return _PyzmqTransport(zmq, endpoint, timeout_s, keys)
    if zmq is not None:
        return _PyzmqTransport(zmq, endpoint, timeout_s, None)
    return _BuiltinTransport(endpoint, timeout_s, why)


class Transport:
    """What open_socket() returns: send_multipart(), recv_multipart(), close().

    `implementation` is "pyzmq" or "builtin"; `fallback_reason` says why pyzmq is not used
    (None when it is)."""

    implementation = ""
    fallback_reason: str | None = None

    def __init__(self, endpoint: str, timeout_s: float | None):
        self.endpoint = endpoint
        self.timeout_s = timeout_s
        self._awaiting_reply = False

    def send_multipart(self, frames) -> None:
        """Send one request (a list of bytes-like frames)."""
        if self._awaiting_reply:  # the previous request was given up: start afresh
            self._reset()
            self._awaiting_reply = False
        self._send([b"", *frames])  # REQ's envelope: the empty delimiter frame
        self._awaiting_reply = True

    def recv_multipart(self, timeout_s: float | None = ...) -> list[bytes]:
        """The reply's frames; TransportTimeout if none comes within the timeout (default:
        the socket's). Calling again after a timeout keeps waiting for the same reply."""
        timeout_s = self.timeout_s if timeout_s is ... else timeout_s
        frames = self._recv(timeout_s)
        self._awaiting_reply = False
        if not frames or len(frames[0]) != 0:
            raise ZmtpProtocolError(
                f"{self.endpoint} replied without the empty delimiter frame a REQ client "
                "expects: is it a palettenet daemon?"
            )
        return frames[1:]

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

    def _reset(self) -> None:
        raise NotImplementedError


class _BuiltinTransport(Transport):
    implementation = BUILTIN

    def __init__(self, endpoint: str, timeout_s: float | None, fallback_reason: str | None):
        super().__init__(endpoint, timeout_s)
        self.fallback_reason = fallback_reason
        self._socket = zmtp.ZmtpSocket(endpoint, timeout_s)

    def _send(self, frames: list) -> None:
        self._socket.send_multipart(frames)

    def _recv(self, timeout_s: float | None) -> list[bytes]:
        return self._socket.recv_multipart(timeout_s)

    def _reset(self) -> None:
        self._socket.close()
        self._socket = zmtp.ZmtpSocket(self.endpoint, self.timeout_s)

    def close(self) -> None:
        self._socket.close()


class _PyzmqTransport(Transport):
    implementation = PYZMQ

    def __init__(self, zmq, endpoint: str, timeout_s: float | None, curve_keys):
        super().__init__(endpoint, timeout_s)
        self._zmq = zmq
        self._curve_keys = curve_keys
        self._context = zmq.Context()
        try:
            self._socket = self._open()
        except BaseException:
            self._context.term()
            raise

    @staticmethod
    def _milliseconds(timeout_s: float | None) -> int:
        return -1 if timeout_s is None else max(0, round(timeout_s * 1000))

    def _open(self):
        zmq = self._zmq
        sock = self._context.socket(zmq.DEALER)
        sock.linger = 0  # close() never waits for unsent requests
        sock.sndtimeo = sock.rcvtimeo = self._milliseconds(self.timeout_s)
        sock.ipv6 = True  # tcp://[::1]:PORT; IPv4 addresses work as before
        if self._curve_keys is not None:
            sock.curve_serverkey, sock.curve_publickey, sock.curve_secretkey = self._curve_keys
        try:
            sock.connect(self.endpoint)
        except zmq.ZMQError as error:
            sock.close()
            raise ZmtpEndpointError(f"cannot connect to {self.endpoint!r}: {error}") from None
        return sock

    def _send(self, frames: list) -> None:
        zmq = self._zmq
        try:
            self._socket.send_multipart(frames, copy=False)  # small frames are copied anyway
        except zmq.Again:
            raise ZmtpTimeout(
                f"could not send to {self.endpoint} within {self.timeout_s:g} s: is the daemon "
                "running there?"
            ) from None
        except zmq.ZMQError as error:
            raise ZmtpError(f"sending to {self.endpoint} failed: {error}") from None

    def _recv(self, timeout_s: float | None) -> list[bytes]:
        zmq = self._zmq
        self._socket.rcvtimeo = self._milliseconds(timeout_s)
        try:
            return self._socket.recv_multipart()
        except zmq.Again:
            raise ZmtpTimeout(
                f"no reply from {self.endpoint} within {timeout_s:g} s: is the daemon running "
                "there, and is the address the one it printed?"
            ) from None
        except zmq.ZMQError as error:
            raise ZmtpError(f"receiving from {self.endpoint} failed: {error}") from None

    def _reset(self) -> None:
        self._socket.close()
        self._socket = self._open()

    def close(self) -> None:
        if not self._socket.closed:
            self._socket.close()
            self._context.term()
