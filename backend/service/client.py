"""A palettenet/1 client: one request at a time, with a deadline it always keeps.

A REQ socket that never gets its reply is stuck for good, so on a timeout the socket is
closed (LINGER 0: nothing is left queued) and the next request opens a fresh one: the
"lazy pirate" pattern of the ZeroMQ guide. The CLI and the tests use this; the editor
plug-ins speak the same protocol with their own sockets.

Waiting is not blind. A monitor on the socket reports its connection: when the daemon closes
it (it stopped, or was killed), the request is lost with it, so the client notices at once,
opens a new socket and sends the request once more (every op is idempotent: the same request
gives the same reply) as soon as the daemon is back, or fails with the reason when it is not
back within `reconnect_s`. ZMTP heartbeats find a peer that vanished without closing (a host
gone, a cable pulled) within HEARTBEAT_TIMEOUT_MS. A malformed address fails at once.
Every call returns or raises within its timeout (plus a few milliseconds to close).
The handshake is remembered on the client (`connected`) until the connection closes or the
socket is reopened: a reused client waits for a slow reply up to its timeout, not only up to
`reconnect_s` (that window is for a daemon that is not there).

A daemon on this machine (ipc://, loopback) that says so in its info gets a layer's pixels
through shared memory files instead of frames (backend.service.shared_memory): only the
header crosses ZeroMQ, and the reply's pixels come back as an array over the reply file.
Should the daemon refuse them (another user's daemon, another /dev/shm), the request is sent
again with frames and frames are used from then on.
"""

import time

import zmq
from zmq.utils.monitor import recv_monitor_message

from backend.service.protocol import decode_reply, encode_request
from backend.service.security import ClientKeys, is_local, tcp_port_problem
from backend.wire import PIXEL_FORMATS, bytes_per_pixel

RECONNECT_S = 10.0  # how long to wait for a daemon that is not (or no longer) there
HEARTBEAT_IVL_MS = 1000  # ZMTP PING this often while waiting
HEARTBEAT_TIMEOUT_MS = 4000  # no traffic for this long after a PING: the connection is dead
HEARTBEAT_TTL_MS = 10000  # the daemon may drop this connection after this much silence
# Layers of fewer bytes travel as frames even to a local daemon: copying them through the
# kernel costs less than a millisecond, and they leave no file behind.
SHARED_MEMORY_MIN_BYTES = 1 << 20
LARGE_FRAME = 1 << 16  # reply frames of at least this many bytes are not copied
EVENTS = (
    zmq.EVENT_HANDSHAKE_SUCCEEDED
    | zmq.EVENT_DISCONNECTED
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
)


class AddressError(ValueError):
    """An address ZeroMQ cannot connect to (tcp://HOST:PORT, ipc://PATH are expected)."""


class Client:
    def __init__(
        self,
        address: str,
        timeout_s: float = 300.0,
        keys: ClientKeys | None = None,
        reconnect_s: float = RECONNECT_S,
        shared_memory: bool = True,
    ):
        """Raises AddressError at once if the address cannot be used. shared_memory=False:
        always frames, even to a daemon on this machine."""
        self.address = address
        self.timeout_s = timeout_s
        self.keys = keys
        self.reconnect_s = reconnect_s
        self.context = zmq.Context()
        self.socket = self.monitor = None
        self.connected = False  # this socket's handshake with the daemon succeeded
        # Why frames are used for every request (None: shared memory is tried when it fits).
        self.no_shared_memory = None if shared_memory else "not asked for"
        if shared_memory and not is_local(address):
            self.no_shared_memory = f"{address} may be another machine"
        self.segments = None  # ClientSegments, made at the first request that uses them
        try:
            self._open()  # connect now: a malformed address is reported here, not later
        except BaseException:
            self.context.term()  # no socket is left open, so this returns at once
            raise

    def _open(self) -> None:
        socket = self.context.socket(zmq.REQ)
        socket.linger = 0  # closing never waits for unsent requests
        socket.ipv6 = "[" in self.address
        socket.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_IVL_MS)
        socket.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)
        socket.setsockopt(zmq.HEARTBEAT_TTL, HEARTBEAT_TTL_MS)
        monitor = socket.get_monitor_socket(EVENTS)
        monitor.linger = 0
        self.socket, self.monitor = socket, monitor
        self.connected = False  # a new socket has no connection yet
        try:
            problem = tcp_port_problem(self.address)
            if problem is not None:
                raise zmq.ZMQError(zmq.EINVAL, problem)
            if self.keys is not None:
                self.keys.apply(socket)
            socket.connect(self.address)
        except zmq.ZMQError as error:
            self._close_socket()  # else Context.term() would wait for it forever
            raise AddressError(
                f"cannot connect to {self.address!r}: {error}; expected "
                "tcp://HOST:PORT (e.g. tcp://127.0.0.1:5555) or ipc://PATH"
            ) from None
        except BaseException:
            self._close_socket()
            raise

    def _close_socket(self) -> None:
        if self.socket is None:
            return
        self.socket.disable_monitor()
        self.monitor.close()
        self.socket.close()
        self.socket = self.monitor = None
        self.connected = False

    def request(self, header: dict, pixels=None, mask=None, reference=None) -> tuple[dict, list]:
        """Send one request, wait for its reply: (reply header, payload frames). reference:
        the reference image's pixels (header["reference"] describes them). A recolour's
        pixels come back bytes-like (a uint8 array when they came through shared memory).
        TimeoutError, saying why, if none comes within the timeout."""
        if self._fits_shared_memory(header, pixels, mask):
            answer = self._request_shared(header, pixels, mask, reference)
            if answer is not None:
                return answer
        return decode_reply(self.exchange(encode_request(header, pixels, mask, reference)))

    def _fits_shared_memory(self, header: dict, pixels, mask) -> bool:
        """Whether this request's pixels go through shared memory: a layer of at least
        SHARED_MEMORY_MIN_BYTES whose length fits its header (else frames, and the daemon
        says what is wrong), to a daemon on this machine that takes them."""
        if self.no_shared_memory is not None or pixels is None:
            return False
        if header.get("op") not in ("recolor", "palette"):
            return False
        size = _layer_bytes(header)
        if size is None or size < SHARED_MEMORY_MIN_BYTES or size != memoryview(pixels).nbytes:
            return False
        if mask is not None and memoryview(mask).nbytes != header["width"] * header["height"]:
            return False
        if self.segments is None:  # the first time: ask the daemon, make the files
            from backend.service.shared_memory import ClientSegments

            info, _ = decode_reply(self.exchange(encode_request({"op": "info"})))
            if info.get("shared_memory") is not True:  # an older daemon does not say
                self.no_shared_memory = "the daemon takes no shared memory"
                return False
            try:
                self.segments = ClientSegments()
            except OSError as error:
                self.no_shared_memory = f"no shared memory folder here: {error}"
                return False
        return True

    def _request_shared(self, header: dict, pixels, mask, reference) -> tuple[dict, list] | None:
        """The request with its pixels (and mask, and result) in shared memory files; None
        when the daemon refused them (then frames are used from now on)."""
        options = header.get("options")
        preview = isinstance(options, dict) and "max_side" in options  # its size is the daemon's
        full_size = header["op"] == "recolor" and not preview
        reply_size = memoryview(pixels).nbytes if full_size else None
        try:
            names = self.segments.prepare(pixels, mask, reply_size)
        except OSError as error:  # /dev/shm full, say
            self._stop_shared_memory(f"cannot make a shared memory file: {error}")
            return None
        frames = encode_request({**header, "shared_memory": names}, reference=reference)
        try:
            reply, payload = decode_reply(self.exchange(frames))
        except BaseException:
            self.segments.forget()  # the daemon may still write them: never use them again
            raise
        error = reply.get("error")
        if isinstance(error, dict) and error.get("field") == "shared_memory":
            self._stop_shared_memory(str(error.get("message")))
            return None
        if reply.get("ok") and "shared_memory" in reply:
            payload = [self.segments.reply()]
        return reply, payload

    def _stop_shared_memory(self, why: str) -> None:
        self.no_shared_memory = why
        if self.segments is not None:
            self.segments.close()
            self.segments = None

    def exchange(self, frames: list) -> list:
        """Send frames as they are, return the reply's frames (for tests and tools)."""
        deadline = time.monotonic() + self.timeout_s
        resent = False
        while True:
            if self.socket is None:
                self._open()
            self._note_idle_events()
            self.socket.send_multipart(frames, copy=False)  # queued until connected
            reply, lost, why = self._wait(deadline, resent)
            if reply is not None:
                return reply
            self._close_socket()  # a REQ socket without its reply cannot be used again
            if lost and not resent and time.monotonic() < deadline:
                resent = True  # the daemon went away with the request: send it once more
                continue
            raise TimeoutError(why)

    def _note_idle_events(self) -> None:
        """Catch up with what happened to the connection since the last reply (the daemon
        restarted, or heartbeats found it gone), so that a close between requests is not
        taken for the loss of the request about to be sent."""
        while self.monitor.poll(0):
            event = recv_monitor_message(self.monitor)["event"]
            if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self.connected = True
            elif event == zmq.EVENT_DISCONNECTED:
                self.connected = False

    def _wait(self, deadline: float, resent: bool) -> tuple[list | None, bool, str]:
        """Wait for the reply until the deadline: (reply, False, "") when it comes, else
        (None, lost, why): lost when the connection that carried the request closed."""
        poller = zmq.Poller()
        poller.register(self.socket, zmq.POLLIN)
        poller.register(self.monitor, zmq.POLLIN)
        started, handshake = time.monotonic(), ""
        while True:
            now = time.monotonic()
            if now >= deadline:
                why = f"no reply from {self.address} within {self.timeout_s:g} s"
                if not self.connected:
                    why += f" (not connected: {handshake or 'nothing answered there'})"
                return None, False, why
            if not self.connected and now - started >= self.reconnect_s:
                if resent:
                    why = "went away during the request and was not back"
                else:
                    why = "could not be reached"
                why = f"the daemon at {self.address} {why} within {self.reconnect_s:g} s"
                return None, False, why + (f": {handshake}" if handshake else "")
            limit = deadline if self.connected else min(deadline, started + self.reconnect_s)
            events = dict(poller.poll(max(1, round((limit - now) * 1000))))
            if self.socket in events:
                return _received(self.socket.recv_multipart(copy=False)), False, ""
            if self.monitor not in events:
                continue
            event = recv_monitor_message(self.monitor)["event"]
            if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self.connected = True
            elif event == zmq.EVENT_DISCONNECTED and self.connected:
                self.connected = False
                why = (
                    f"the daemon at {self.address} closed the connection before answering, "
                    "twice (it stopped or was killed)"
                )
                return None, True, why
            elif event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                return None, False, f"the server at {self.address} refused this client's key"
            else:  # a handshake that failed, or was cut short by the server: ZeroMQ retries
                handshake = (
                    "the ZeroMQ handshake did not complete (not a palettenet daemon? does it "
                    "need CURVE keys, or other ones?)"
                )

    def close(self) -> None:
        self._close_socket()
        if self.segments is not None:
            self.segments.close()
        self.context.term()  # returns at once: every socket is closed, with LINGER 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _layer_bytes(header: dict) -> int | None:
    """width * height * bytes per pixel of a well-formed header, else None."""
    width, height, name = (header.get(key) for key in ("width", "height", "pixel_format"))
    sizes_ok = all(
        isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (width, height)
    )
    if not sizes_ok or not isinstance(name, str) or name not in PIXEL_FORMATS:
        return None
    return width * height * bytes_per_pixel(name)


def _received(frames: list) -> list:
    """A reply's frames as bytes, except large ones (pixels): those stay where ZeroMQ
    received them, as memoryviews, instead of being copied into bytes (at 24 MP that copy
    cost about 0.1 s on this 2-core machine under load)."""
    return [frame.bytes if len(frame) < LARGE_FRAME else frame.buffer for frame in frames]
