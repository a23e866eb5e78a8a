"""A ZeroMQ client in pure Python: ZMTP 3.0/3.1, NULL security, tcp:// and ipc://.

Editors' embedded Pythons often cannot load a compiled pyzmq (Windows GIMP runs a MinGW
Python, macOS refuses foreign-signed modules, Krita changes Python versions between
releases), so when `import zmq` fails the plug-in talks to the daemon through this module,
which needs only the standard library. It implements just what a client of a libzmq ROUTER
needs: one connection, DEALER semantics (multipart messages both ways, no envelope of its
own; transport.py adds REQ's empty delimiter frame), the NULL mechanism (no
encryption: CurveZMQ needs pyzmq), answers to ZMTP 3.1 heartbeats, and a timeout on every
blocking step so the editor never hangs.

What is followed: ZMTP 3.0 (https://rfc.zeromq.org/spec/23/) and ZMTP 3.1
(https://rfc.zeromq.org/spec/37/). A connection is

    greeting (64 octets each way)   signature %xFF 8*%x00 %x7F, version 3.1, mechanism
                                     "NULL" padded to 20 octets, as-server 0, 31 octets filler
    handshake (NULL mechanism)      each side sends a READY command with its properties
                                     (Socket-Type, Identity); ERROR aborts
    traffic                         frames: flags (MORE 0x01, LONG 0x02, COMMAND 0x04), size
                                     (1 octet, or 8 big-endian octets with LONG), body;
                                     commands (PING -> PONG) may come between messages

Unlike libzmq there is no background I/O thread: bytes move only inside send_multipart() and
recv_multipart(). Heartbeat PINGs are therefore answered when the caller next sends or
receives, and a connection the peer closed while we were idle is noticed (and silently
replaced, as libzmq reconnects) at the next send.

Two protections for the editor's process, whatever the peer sends:
- limits: a frame's size is read before its body, so a frame larger than `max_frame_bytes`,
  a message larger than `max_message_bytes` or with more than `max_frames` frames is
  refused (ZmtpProtocolError, connection closed) before anything is allocated for it, and
  command frames are never larger than MAX_COMMAND_BYTES. A size this process cannot hold
  at all is ZmtpOutOfMemory, not a bare MemoryError.
- heartbeats (ZMTP 3.1, as libzmq's ZMQ_HEARTBEAT_IVL/TIMEOUT): while waiting for a message,
  a peer silent for `heartbeat_ivl_s` is sent a PING; one that then stays silent for
  `heartbeat_timeout_s` (a stopped or hung daemon, a vanished host) is ZmtpConnectionLost.
  A daemon that dies is usually noticed sooner: its kernel closes the connection.
"""

from __future__ import annotations  # editors may embed a Python older than 3.10

import collections
import mmap
import socket
import struct
import sys
import time

from .wire import DEFAULT_ADDRESS

__all__ = [
    "ZmtpConnectError",
    "ZmtpConnectionLost",
    "ZmtpConnectionRefused",
    "ZmtpEndpointError",
    "ZmtpError",
    "ZmtpHandshakeClosed",
    "ZmtpMechanismError",
    "ZmtpOutOfMemory",
    "ZmtpProtocolError",
    "ZmtpSocket",
    "ZmtpTimeout",
    "parse_endpoint",
]


# --- errors: every failure is a ZmtpError; the standard base says what kind it is ----------
class ZmtpError(Exception):
    """Any failure of the built-in ZeroMQ client; the message says what to do about it."""


class ZmtpEndpointError(ZmtpError, ValueError):
    """An endpoint string this client cannot connect to."""


class ZmtpConnectError(ZmtpError, ConnectionError):
    """The connection could not be made (unknown host, unreachable network, ...)."""


class ZmtpConnectionRefused(ZmtpConnectError, ConnectionRefusedError):
    """Nothing listens at the endpoint: the daemon is not running there."""


class ZmtpConnectionLost(ZmtpError, ConnectionError):
    """The peer closed or reset a connection that was in use."""


class ZmtpTimeout(ZmtpError, TimeoutError):
    """A connect, send or receive did not finish within its timeout."""


class ZmtpProtocolError(ZmtpError):
    """The peer does not speak ZMTP 3 as expected (not a ZeroMQ socket, wrong type, ...)."""


class ZmtpMechanismError(ZmtpProtocolError):
    """The peer wants a security mechanism other than NULL (CurveZMQ needs pyzmq)."""


class ZmtpHandshakeClosed(ZmtpProtocolError, ConnectionError):
    """The peer closed the connection before the handshake was done: not a ZeroMQ socket
    this client can talk to, or one that was going away as we connected."""


class ZmtpOutOfMemory(ZmtpError, MemoryError):
    """The peer announced a frame this process cannot hold; the connection was closed."""


# --- wire constants ----------------------------------------------------------------------
FLAG_MORE = 0x01  # more frames of this message follow
FLAG_LONG = 0x02  # the size is 8 octets, not 1
FLAG_COMMAND = 0x04  # a command frame, not part of a message

VERSION = (3, 1)  # 3.1 adds PING/PONG; a 3.0 peer simply never sends them
GREETING_SIZE = 64
SIGNATURE_SIZE = 10
VERSION_END = 11  # signature and major version: what is sent before seeing the peer's
# signature, version, mechanism (20 octets, zero padded), as-server (0: we are a client),
# filler (31 zero octets)
GREETING = (
    b"\xff" + bytes(8) + b"\x7f" + bytes(VERSION) + b"NULL".ljust(20, b"\0") + b"\0" + bytes(31)
)
assert len(GREETING) == GREETING_SIZE

SOCKET_TYPE = b"DEALER"
# The socket types a DEALER may talk to (ZeroMQ RFC 28); libzmq closes any other pairing.
COMPATIBLE_PEERS = (b"ROUTER", b"DEALER", b"REP")

# Commands (READY, PING, PONG, ERROR) are a few dozen octets; libzmq's READY with user
# metadata stays far below this. A larger command is refused before it is read.
MAX_COMMAND_BYTES = 1 << 16

# Heartbeats while waiting for a message: PING a peer silent for HEARTBEAT_IVL_S, give up on
# one still silent HEARTBEAT_TIMEOUT_S after that. A live libzmq peer answers from its I/O
# thread within milliseconds, however busy its application is. The TTL sent with each PING
# asks the peer to drop us in turn if we go silent that long (our process gone).
HEARTBEAT_IVL_S = 1.0
HEARTBEAT_TIMEOUT_S = 3.0
HEARTBEAT_TTL_S = 10.0

# Reads go through a 64 KiB buffer; a frame body at least this large is instead received
# straight into its own anonymous memory map (recv_into) and handed over as that mmap (a
# bytes-like object: len, slicing, memoryview), and sent straight from the caller's buffer,
# so hundreds of megabytes cost no copy, no zeroing under the GIL, and nothing grows by
# repeated concatenation.
CHUNK = 1 << 16

# Writing to a connection the peer has closed raises SIGPIPE, which kills the whole process
# unless ignored. CPython ignores it, but an editor embedding Python may not: ask the kernel
# for an EPIPE error instead (Linux: a send flag; macOS/BSD: a socket option).
_SEND_FLAGS = getattr(socket, "MSG_NOSIGNAL", 0)
_SO_NOSIGPIPE = getattr(socket, "SO_NOSIGPIPE", 0x1022 if sys.platform == "darwin" else None)
# socket.timeout became an alias of TimeoutError only in Python 3.10; editors may embed older
_TIMEOUTS = (TimeoutError, socket.timeout)


def parse_endpoint(endpoint: str) -> tuple[int, object]:
    """'tcp://host:port' or 'ipc:///path' (Linux also 'ipc://@abstract-name') -> (address
    family, address) for socket.connect; AF_UNSPEC for tcp, where the host name is resolved
    at connect time. ZmtpEndpointError if this client cannot connect there."""
    scheme, sep, rest = endpoint.partition("://")
    if not sep or not rest:
        raise ZmtpEndpointError(
            f"{endpoint!r} is not a ZeroMQ endpoint: use tcp://HOST:PORT or ipc:///PATH"
        )
    if scheme == "tcp":
        host, colon, port = rest.rpartition(":")
        host = host.strip("[]")  # tcp://[::1]:PORT
        if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ZmtpEndpointError(
                f"{endpoint!r}: expected tcp://HOST:PORT, e.g. {DEFAULT_ADDRESS}"
            )
        if host == "*" or ";" in host:
            raise ZmtpEndpointError(
                f"{endpoint!r} is an address to bind, not to connect to: use the daemon's "
                f"host, e.g. tcp://127.0.0.1:{port}"
            )
        return socket.AF_UNSPEC, (host, int(port))
    if scheme == "ipc":
        if not hasattr(socket, "AF_UNIX"):
            raise ZmtpEndpointError(
                f"{endpoint!r}: this Python has no Unix domain sockets; run the daemon on "
                "tcp://127.0.0.1:PORT instead"
            )
        # libzmq's convention for Linux's abstract socket namespace: a leading @ is a NUL
        return socket.AF_UNIX, "\0" + rest[1:] if rest.startswith("@") else rest
    raise ZmtpEndpointError(
        f"{endpoint!r}: the built-in ZeroMQ client speaks tcp:// and ipc:// only"
        + (" (inproc:// works only inside the daemon's process)" if scheme == "inproc" else "")
    )


def _frame_header(flags: int, size: int) -> bytes:
    # Sizes 0..255 fit the short form; anything larger needs LONG and 8 octets (the spec
    # lets a long frame carry any size, but short is what libzmq sends and expects)
    if size > 255:
        return struct.pack(">BQ", flags | FLAG_LONG, size)
    return struct.pack(">BB", flags, size)


def _command(name: bytes, data: bytes = b"") -> bytes:
    """A whole command frame: header, name length, name, data."""
    body = bytes((len(name),)) + name + data
    return _frame_header(FLAG_COMMAND, len(body)) + body


def _properties(properties: dict[bytes, bytes]) -> bytes:
    # property = name-size (1 octet) name value-size (4 octets, big-endian) value
    return b"".join(
        bytes((len(name),)) + name + struct.pack(">I", len(value)) + value
        for name, value in properties.items()
    )


def _parse_properties(data: bytes) -> dict[str, bytes]:
    """READY's metadata -> {lowercased name: value} (names are case-insensitive)."""
    properties, position = {}, 0
    while position < len(data):
        name_size = data[position]
        name_end = position + 1 + name_size
        if name_end + 4 > len(data):
            raise ZmtpProtocolError("malformed READY command: a property is cut short")
        (value_size,) = struct.unpack_from(">I", data, name_end)
        value_end = name_end + 4 + value_size
        if value_end > len(data):
            raise ZmtpProtocolError("malformed READY command: a property value is cut short")
        name = data[position + 1 : name_end].decode("ascii", "replace").lower()
        properties[name] = bytes(data[name_end + 4 : value_end])
        position = value_end
    return properties


def _as_bytes_view(frame) -> memoryview:
    """A flat byte view of a frame: bytes, bytearray, memoryview or any buffer (a NumPy
    array, say), without copying it."""
    view = memoryview(frame)
    if view.ndim != 1 or view.itemsize != 1:
        view = view.cast("B")  # needs a C-contiguous buffer; TypeError otherwise
    return view


class ZmtpSocket:
    """One ZMTP 3.1 connection to a ZeroMQ ROUTER (or DEALER/REP), acting as a DEALER.

    `timeout_s` bounds each call: connect (with its handshake) plus a send, or a receive;
    None waits forever. The connection is made on the first send (or `connect()`), and made
    again by a send after the peer closed it. After a receive timeout the connection and
    any partly received message are kept, so receiving again resumes; a send that times out
    part-way leaves half a frame on the wire, so it closes the connection.

    Incoming messages are limited (None: no limit, besides memory) to `max_frame_bytes` per
    frame, `max_message_bytes` in all and `max_frames` frames: a message over a limit is
    refused before it is read (ZmtpProtocolError) and the connection closed. The limits may
    be changed between messages. `heartbeat_ivl_s` and `heartbeat_timeout_s` (None: no
    heartbeats) say when a silent peer is pinged, and when it is given up for dead. Like a
    ZeroMQ socket, it is for one thread at a time.
    """

    def __init__(
        self,
        endpoint: str,
        timeout_s: float | None = 30.0,
        max_frame_bytes: int | None = None,
        max_message_bytes: int | None = None,
        max_frames: int | None = None,
        heartbeat_ivl_s: float | None = ...,  # ...: HEARTBEAT_IVL_S (read now, not at import)
        heartbeat_timeout_s: float = ...,  # ...: HEARTBEAT_TIMEOUT_S
    ):
        self.endpoint = endpoint
        self.family, self.address = parse_endpoint(endpoint)  # fail early on a bad string
        self.timeout_s = timeout_s
        self.max_frame_bytes = max_frame_bytes
        self.max_message_bytes = max_message_bytes
        self.max_frames = max_frames
        self.heartbeat_ivl_s = HEARTBEAT_IVL_S if heartbeat_ivl_s is ... else heartbeat_ivl_s
        self.heartbeat_timeout_s = (
            HEARTBEAT_TIMEOUT_S if heartbeat_timeout_s is ... else heartbeat_timeout_s
        )
        self.peer_version: tuple[int, int] | None = None
        self.peer_properties: dict[str, bytes] = {}
        self.connections = 0  # connections made so far (diagnostics, tests)
        self.pings_answered = 0
        self.pings_sent = 0
        self._sock: socket.socket | None = None
        self._closed = False
        self._op_timeout: float | None = timeout_s  # the timeout of the call in progress
        self._op_deadline: float | None = None  # and its deadline
        self._chunk = bytearray(CHUNK)  # what small reads go into
        # Per connection (see _drop):
        self._rbuf = bytearray()  # received bytes not yet parsed (less than ~2 chunks)
        self._big: mmap.mmap | None = None  # body of a large frame being received into
        self._big_flags = 0
        self._big_filled = 0
        self._frames: list[bytes] = []  # frames of the message being received
        self._message_bytes = 0  # their total size
        self._handshaking = False
        self._last_heard = 0.0  # time.monotonic() of the last octet received
        self._ping_sent: float | None = None  # when our unanswered PING went out
        # Whole messages received and not yet returned; kept across reconnections.
        self._inbox: collections.deque[list[bytes]] = collections.deque()

    # --- public interface ----------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._sock is not None

    def connect(self, timeout_s: float | None = ...) -> None:
        """Connect and handshake now rather than at the first send (no-op if connected)."""
        if self._sock is None:
            self._connect(self._deadline(timeout_s))

    def send_multipart(self, frames, timeout_s: float | None = ...) -> None:
        """Send one message: a list of bytes-like frames (at least one)."""
        frames = [_as_bytes_view(frame) for frame in frames]
        if not frames:
            raise ValueError("a ZeroMQ message has at least one frame")
        deadline = self._deadline(timeout_s)
        if self._sock is not None:
            self._poll_incoming()  # answers PINGs; notices a connection closed while idle
        if self._sock is None:
            self._connect(deadline)
        # Small frames are gathered into one buffer (one system call, no Nagle stalls);
        # a large frame goes straight from the caller's buffer.
        batch = bytearray()
        try:
            for index, frame in enumerate(frames):
                more = FLAG_MORE if index < len(frames) - 1 else 0
                batch += _frame_header(more, frame.nbytes)
                if frame.nbytes < CHUNK:
                    batch += frame
                    continue
                self._send_all(batch, deadline)
                batch = bytearray()
                self._send_all(frame, deadline)
            if batch:
                self._send_all(batch, deadline)
        except ZmtpConnectionLost as error:
            raise ZmtpConnectionLost(
                f"{error} while a message was being sent: the daemon may have stopped, or "
                "refused a message larger than its limit (see its `info` limits)"
            ) from None
        except ZmtpTimeout:
            self._drop()  # part of a frame may be on the wire: this stream is unusable now
            raise ZmtpTimeout(
                f"sending to {self.endpoint} did not finish within {self._timeout_text()}:"
                " the daemon is not reading (busy or stuck?); the connection was closed"
            ) from None

    def recv_multipart(self, timeout_s: float | None = ...) -> list[bytes]:
        """Receive one message; ZmtpTimeout if none arrives in time (nothing is lost: a
        later call gets it), ZmtpConnectionLost if the peer closes the connection first or
        stops answering heartbeats, ZmtpProtocolError for a message over the limits."""
        deadline = self._deadline(timeout_s)
        if self._sock is None:
            if self._inbox:
                return self._inbox.popleft()
            self._connect(deadline)
        while not self._inbox:
            try:
                wake = self._heartbeat()
                if wake is None or (deadline is not None and deadline <= wake):
                    self._read(deadline)
                else:
                    try:
                        self._read(wake)
                    except ZmtpTimeout:
                        continue  # time for the next heartbeat step, not the caller's timeout
            except ZmtpTimeout:
                raise ZmtpTimeout(
                    f"no reply from {self.endpoint} within {self._timeout_text()}"
                ) from None
            except ZmtpConnectionLost as error:
                raise ZmtpConnectionLost(
                    f"{error}; no reply came. The daemon may have stopped or restarted, or "
                    "refused a message larger than its limit (see its `info` limits)"
                ) from None
        return self._inbox.popleft()

    def close(self) -> None:
        """Close the connection; further calls raise ZmtpError. Safe to call twice."""
        self._drop()
        self._closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _timeout_text(self) -> str:
        timeout_s = self._op_timeout
        return "(no timeout)" if timeout_s is None else f"{timeout_s:g} s"

    # --- connection ----------------------------------------------------------------------
    def _deadline(self, timeout_s) -> float | None:
        if self._closed:
            raise ZmtpError(f"the connection to {self.endpoint} was closed by close()")
        timeout_s = self.timeout_s if timeout_s is ... else timeout_s
        self._op_timeout = timeout_s
        self._op_deadline = None if timeout_s is None else time.monotonic() + timeout_s
        return self._op_deadline

    @staticmethod
    def _remaining(deadline: float | None) -> float | None:
        if deadline is None:
            return None
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ZmtpTimeout("timed out")
        return remaining

    def _connect(self, deadline: float | None) -> None:
        try:
            self._sock = self._open_socket(deadline)
        except _TIMEOUTS:  # ZmtpTimeout too: the deadline passed
            raise ZmtpTimeout(
                f"could not connect to {self.endpoint} within {self._timeout_text()}: is the "
                "host reachable, and is a firewall dropping the connection?"
            ) from None
        except (ConnectionRefusedError, FileNotFoundError):
            raise ZmtpConnectionRefused(
                f"nothing is listening at {self.endpoint}: is the palettenet daemon running "
                "there (palettenet serve --bind ...), and is the address the one it printed?"
            ) from None
        except OSError as error:  # unknown host, unreachable network, path too long, ...
            raise ZmtpConnectError(f"cannot connect to {self.endpoint}: {error}") from None
        self.connections += 1
        self._last_heard, self._ping_sent = time.monotonic(), None
        try:
            self._handshake(deadline)
        except ZmtpTimeout:
            self._drop()
            raise ZmtpTimeout(
                f"connected to {self.endpoint}, but no ZeroMQ handshake within "
                f"{self._timeout_text()}: is it a palettenet daemon, and not another program?"
            ) from None
        except ZmtpConnectionLost:
            self._drop()
            raise ZmtpHandshakeClosed(
                f"{self.endpoint} closed the connection during the ZeroMQ handshake: it is "
                "not a ZeroMQ socket this client can talk to (or it wants encryption, or it "
                "was stopping)"
            ) from None
        except BaseException:
            self._drop()
            raise

    def _open_socket(self, deadline: float | None) -> socket.socket:
        if self.family == socket.AF_UNSPEC:
            # resolves names and tries IPv6 and IPv4 addresses in turn
            sock = socket.create_connection(self.address, timeout=self._remaining(deadline))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as libzmq does
        else:
            sock = socket.socket(self.family, socket.SOCK_STREAM)
            try:
                sock.settimeout(self._remaining(deadline))
                sock.connect(self.address)
            except BaseException:
                sock.close()
                raise
        if _SO_NOSIGPIPE is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, _SO_NOSIGPIPE, 1)
            except OSError:
                pass
        return sock

    def _handshake(self, deadline: float | None) -> None:
        # The greeting goes in two steps, as libzmq sends its own: signature and major
        # version first, the rest once the peer's version is known. libzmq answers our first
        # 11 octets with its whole greeting, so a daemon that wants CurveZMQ is recognised
        # by its mechanism before it sees ours and hangs up. A peer that holds its mechanism
        # back until it has ours gets ours at once (the spec's rule against deadlock).
        self._send_all(GREETING[:VERSION_END], deadline)
        self._read_greeting(deadline, VERSION_END)
        rest_sent = len(self._rbuf) < GREETING_SIZE
        if rest_sent:
            self._send_all(GREETING[VERSION_END:], deadline)
        self._read_greeting(deadline, GREETING_SIZE)
        self._check_mechanism()
        if not rest_sent:
            self._send_all(GREETING[VERSION_END:], deadline)
        ready = _properties({b"Socket-Type": SOCKET_TYPE, b"Identity": b""})
        self._send_all(_command(b"READY", ready), deadline)
        # The peer's READY (or ERROR) may already be buffered behind its greeting.
        self._handshaking = True
        self._parse()
        while self._handshaking:
            self._read(deadline)

    def _read_greeting(self, deadline: float | None, size: int) -> None:
        """Read until `size` octets of the peer's greeting are buffered. They are checked
        as they arrive, so that a peer that sends a few octets of something else and then
        waits (an HTTP or SSH server, say) is named at once, not timed out."""
        buffer = self._rbuf
        while True:
            if buffer and (
                buffer[0] != 0xFF or (len(buffer) >= SIGNATURE_SIZE and buffer[9] & 1 == 0)
            ):
                raise ZmtpProtocolError(
                    f"{self.endpoint} is not a ZeroMQ socket: it sent "
                    f"{bytes(buffer[:40])!r}; check the address and port"
                )
            if len(buffer) > SIGNATURE_SIZE and buffer[SIGNATURE_SIZE] < 3:
                raise ZmtpProtocolError(
                    f"{self.endpoint} speaks an old ZeroMQ protocol (ZMTP "
                    f"{buffer[SIGNATURE_SIZE]}.x, libzmq 3 or older); it needs libzmq 4 or newer"
                )
            if len(buffer) >= size:
                return
            self._read(deadline, parse=False)

    def _check_mechanism(self) -> None:
        buffer = self._rbuf
        self.peer_version = (buffer[10], buffer[11])
        mechanism = bytes(buffer[12:32]).rstrip(b"\0")
        del buffer[:GREETING_SIZE]
        if mechanism != b"NULL":
            name = mechanism.decode("ascii", "replace")
            raise ZmtpMechanismError(
                f"{self.endpoint} requires the {name} security mechanism"
                + (" (CurveZMQ encryption)" if name == "CURVE" else "")
                + ", which the built-in client does not have: it needs pyzmq, which this "
                "Python cannot load. Run install.py for this editor (it vendors pyzmq), or use "
                "a daemon on this machine (tcp://127.0.0.1:PORT or ipc://) without keys"
            )

    def _drop(self) -> None:
        """Close the connection (not the object: a later send connects again)."""
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None
        self._big = None
        self._rbuf = bytearray()
        self._frames = []  # half a message is no message
        self._message_bytes = 0
        self._handshaking = False
        self._ping_sent = None

    # --- bytes in and out ----------------------------------------------------------------
    def _send_all(self, data, deadline: float | None) -> None:
        sock = self._sock
        try:
            # Since Python 3.5 the timeout bounds the whole sendall, not each chunk of it.
            sock.settimeout(self._remaining(deadline))
            sock.sendall(data, _SEND_FLAGS)
        except _TIMEOUTS:
            raise ZmtpTimeout("timed out") from None
        except OSError as error:  # EPIPE, ECONNRESET
            self._drop()
            raise ZmtpConnectionLost(f"{self.endpoint} closed the connection ({error})") from None

    def _read(self, deadline: float | None, parse: bool = True, block: bool = True) -> bool:
        """One recv, into the large frame being received or else into the read buffer, then
        parse what is complete. Without `block`, False when nothing was waiting."""
        sock = self._sock
        try:
            sock.settimeout(self._remaining(deadline) if block else 0.0)
            if self._big is not None:
                view = memoryview(self._big)[self._big_filled :]
                received = sock.recv_into(view)
                self._big_filled += received
            else:
                received = sock.recv_into(self._chunk)
                self._rbuf += memoryview(self._chunk)[:received]
        except BlockingIOError:
            return False
        except _TIMEOUTS:
            raise ZmtpTimeout("timed out") from None
        except OSError as error:  # ECONNRESET
            self._drop()
            raise ZmtpConnectionLost(f"{self.endpoint} reset the connection ({error})") from None
        if received == 0:
            self._drop()
            raise ZmtpConnectionLost(f"{self.endpoint} closed the connection")
        self._last_heard, self._ping_sent = time.monotonic(), None  # any octet is a sign of life
        if parse:
            self._parse()
        return True

    def _heartbeat(self) -> float | None:
        """While waiting for a message: PING a peer silent for heartbeat_ivl_s; drop one
        silent for heartbeat_timeout_s after that (ZmtpConnectionLost). Returns when to come
        back here (None: no heartbeats on this connection)."""
        if (
            self.heartbeat_ivl_s is None
            or self._sock is None
            or self._handshaking
            or (self.peer_version or (0, 0)) < (3, 1)  # ZMTP 3.0 has no PING
        ):
            return None
        now = time.monotonic()
        if self._ping_sent is None:
            due = self._last_heard + self.heartbeat_ivl_s
            if now < due:
                return due
            # ping = "PING" ping-ttl (2 octets, tenths of a second) ping-context (none)
            ttl = struct.pack(">H", min(0xFFFF, round(HEARTBEAT_TTL_S * 10)))
            self._send_now(_command(b"PING", ttl))
            self.pings_sent += 1
            self._ping_sent = now  # even if it could not go out: the silence counts anyway
        give_up = self._ping_sent + self.heartbeat_timeout_s
        if now < give_up:
            return give_up
        # The caller may not have been receiving for a while: an answer may be waiting unread.
        if self._read(None, block=False):
            return now
        silent = now - self._last_heard
        self._drop()
        raise ZmtpConnectionLost(
            f"{self.endpoint} did not answer a heartbeat (silent for {silent:.1f} s): it has "
            "stopped or hung, or the network is down"
        )

    def _send_now(self, data: bytes) -> None:
        """Send a small command without waiting: our side has sent its request, so the
        kernel's buffer has room unless the peer stopped reading, in which case the
        command is skipped (nothing sent) or the connection dropped (part of it sent)."""
        try:
            self._sock.settimeout(0.0)
            sent = self._sock.send(data, _SEND_FLAGS)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as error:  # EPIPE, ECONNRESET
            self._drop()
            raise ZmtpConnectionLost(f"{self.endpoint} closed the connection ({error})") from None
        if sent < len(data):
            self._drop()  # half a command on the wire: this stream is unusable now
            raise ZmtpConnectionLost(f"{self.endpoint} stopped reading from the connection")

    def _poll_incoming(self) -> None:
        """Before a send: take in whatever arrived while the caller was not receiving (PINGs
        to answer, a late message for the inbox) and find out whether the peer has closed
        the connection, in which case the send makes a new one, as libzmq would."""
        try:
            while self._sock is not None and self._read(None, block=False):
                pass
        except ZmtpConnectionLost:
            self._drop()

    def _parse(self) -> None:
        """Turn buffered bytes into frames: messages go to the inbox, commands are handled."""
        if self._big is not None:
            if self._big_filled < len(self._big):
                return
            body, self._big = self._big, None
            self._frame(self._big_flags, body)  # not copied into bytes: 0.26 s for 384 MB
        buffer, position = self._rbuf, 0
        while len(buffer) - position >= 2:
            flags = buffer[position]
            if flags & ~(FLAG_MORE | FLAG_LONG | FLAG_COMMAND):
                self._drop()
                raise ZmtpProtocolError(
                    f"{self.endpoint} sent a frame with unknown flags {flags:#04x}"
                )
            if flags & FLAG_LONG:
                if len(buffer) - position < 9:
                    break
                (size,) = struct.unpack_from(">Q", buffer, position + 1)
                start = position + 9
            else:
                size = buffer[position + 1]
                start = position + 2
            self._check_frame(flags, size)  # before a single octet is allocated for it
            end = start + size
            if end <= len(buffer):
                position = end
                self._frame(flags, bytes(buffer[start:end]))
            elif size >= CHUNK:
                # Receive the rest of this frame straight into its final place.
                try:
                    # Anonymous memory, handed out zeroed page by page as recv_into fills
                    # it. bytearray(size) zeroes it all at once holding the GIL (0.22 s for
                    # 384 MB here), which freezes an editor whose GUI thread runs Python.
                    self._big = mmap.mmap(-1, size)
                except (MemoryError, OverflowError, OSError):  # OverflowError: > sys.maxsize
                    self._drop()
                    raise ZmtpOutOfMemory(
                        f"{self.endpoint} announced a {size:,}-byte frame, more than this "
                        "process can hold; the connection was closed"
                    ) from None
                self._big_flags = flags
                self._big_filled = len(buffer) - start
                self._big[: self._big_filled] = buffer[start:]
                position = len(buffer)
                break
            else:
                break
        del buffer[:position]

    def _check_frame(self, flags: int, size: int) -> None:
        """Refuse a frame that breaks a limit, from its header alone: nothing of it has
        been allocated yet, and the connection is closed (its stream cannot be resumed
        without reading the frame)."""
        if flags & FLAG_COMMAND:
            if size > MAX_COMMAND_BYTES:
                self._refuse(f"a {size:,}-byte command", MAX_COMMAND_BYTES, "bytes")
            return
        if self.max_frame_bytes is not None and size > self.max_frame_bytes:
            self._refuse(f"a {size:,}-byte frame", self.max_frame_bytes, "bytes")
        limit = self.max_message_bytes
        if limit is not None and self._message_bytes + size > limit:
            self._refuse(f"a message of {self._message_bytes + size:,} bytes", limit, "bytes")
        if self.max_frames is not None and len(self._frames) >= self.max_frames:
            self._refuse(f"a message of {len(self._frames) + 1} frames", self.max_frames, "frames")

    def _refuse(self, what: str, limit: int, unit: str) -> None:
        self._drop()
        raise ZmtpProtocolError(
            f"{self.endpoint} sent {what}, more than the {limit:,} {unit} allowed here: it was "
            "refused unread and the connection closed"
        )

    def _frame(self, flags: int, body: bytes) -> None:
        if flags & FLAG_COMMAND:
            self._command(body)
            return
        if self._handshaking:
            self._drop()
            raise ZmtpProtocolError(f"{self.endpoint} sent a message before its READY command")
        self._frames.append(body)
        self._message_bytes += len(body)
        if not flags & FLAG_MORE:
            self._inbox.append(self._frames)
            self._frames, self._message_bytes = [], 0

    def _command(self, body: bytes) -> None:
        if not body or 1 + body[0] > len(body):
            self._drop()
            raise ZmtpProtocolError(f"{self.endpoint} sent a malformed command")
        name, data = body[1 : 1 + body[0]], body[1 + body[0] :]
        if name == b"ERROR":  # error = %d5 "ERROR" error-reason (1-octet size + text)
            reason = data[1 : 1 + data[0]].decode("utf-8", "replace") if data else ""
            self._drop()
            raise ZmtpProtocolError(f"{self.endpoint} refused the connection: {reason}")
        if self._handshaking:
            if name != b"READY":
                self._drop()
                raise ZmtpProtocolError(
                    f"{self.endpoint} sent {name!r} where the NULL handshake expects READY"
                )
            self.peer_properties = _parse_properties(data)
            peer_type = self.peer_properties.get("socket-type", b"")
            if peer_type not in COMPATIBLE_PEERS:
                self._drop()
                raise ZmtpProtocolError(
                    f"{self.endpoint} is a {peer_type.decode('ascii', 'replace')} socket; this "
                    "client (DEALER) needs a ROUTER, DEALER or REP socket there"
                )
            self._handshaking = False
        elif name == b"PING":
            # ping = "PING" ping-ttl (2 octets) ping-context (0..16 octets); the PONG echoes
            # the context. The TTL asks us to drop a silent peer; our timeouts already do.
            try:
                self._send_all(_command(b"PONG", data[2:]), self._op_deadline)
                self.pings_answered += 1
            except ZmtpTimeout:
                self._drop()  # half a PONG may be on the wire
                raise
        # Anything else (PONG, SUBSCRIBE, a newer command) means nothing to a DEALER client.
