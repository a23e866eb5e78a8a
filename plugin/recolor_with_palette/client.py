"""The plug-ins' side of palettenet/1: ping, info, palette and recolor, each with a deadline.

Blocking calls, meant for a worker thread (the Krita docker runs them in a QThread, the GIMP
plug-in is a process of its own). Each request opens a fresh socket and closes it after the
reply: a REQ socket whose reply never came is stuck for good, and a local connection costs
well under a millisecond. Every failure becomes a RecolorError with a message for the artist.

The sockets come from transport.open_socket: pyzmq where the editor's Python can load it,
otherwise the built-in pure-Python ZMTP client (zmtp.py).

Whatever answers at the address, a request ends within its timeout (plus a fraction of a
second) with a reply or a RecolorError:
- the reply may be no larger than the largest legal answer to that request (a recolour:
  the pixels sent, plus a header; anything else: a header), which the transport enforces
  before receiving it (the built-in client per frame and per message; pyzmq per frame only:
  libzmq buffers a multipart message until its last frame, so a hostile server streaming
  endless frames grows memory until the timeout); its JSON header is checked for size and
  nesting before it is parsed, and its fields for their types;
- a daemon that goes away with the request (killed, crashed, its machine gone silent) is
  noticed within seconds (see transport.py). If it is back within restart_grace_s (restarted
  by hand or by a service manager), the request is sent once more: every op is idempotent.
  Otherwise the error says the backend stopped, which the next Apply's auto-start mends.
"""

from __future__ import annotations

import base64
import itertools
import json
import math
import re
import threading
import time
from dataclasses import dataclass, field

from . import transport, wire
from .errors import (
    BackendStoppedError,
    BadReplyError,
    ConnectionLostError,
    OutOfMemoryError,
    RecolorError,
)
from .pixels import Pixels

PROTOCOL = wire.PROTOCOL
CANCEL_POLL_S = 0.25  # how soon a cancel is noticed while waiting for a reply
# The methods the daemon knows (wire.METHODS, in its order), as the artist reads them.
_METHOD_LABELS = {"palettenet": "PaletteNet", "chang2015": "Classical (Chang 2015)"}
METHODS = {method: _METHOD_LABELS.get(method, method) for method in wire.METHODS}
# A daemon that went away with a request may be back this soon (a service manager restarts
# it, it loads in a second or two); then the request is sent again.
RESTART_GRACE_S = 3.0
RECONNECT_PAUSE_S = 0.1  # between attempts to reach it (a refused connect returns at once)
# A reply's JSON header: the largest, info's with the model's record, is about 3 KB and
# nests 4 levels deep.
REPLY_HEADER_MAX_BYTES = 256 * 1024
REPLY_JSON_MAX_DEPTH = 32
REPLY_NUMBER_MAX_DIGITS = 64  # Python's int() is quadratic in the digits before 3.11
MAX_PALETTE_COLORS = wire.MAX_PALETTE_COLORS
DETAIL_MAX_CHARS = 2000  # of the daemon's own words in a message for the artist


class Cancelled(RecolorError):
    def __init__(self):
        super().__init__("cancelled")


@dataclass
class CancelToken:
    """Set from the UI; the worker stops at its next step and its result is dropped.

    palettenet/1 has no cancel message, so a job already sent runs to its end in the
    daemon; what cancelling guarantees is that the editor stops waiting and changes nothing.
    """

    event: threading.Event = field(default_factory=threading.Event)

    def cancel(self) -> None:
        self.event.set()

    @property
    def cancelled(self) -> bool:
        return self.event.is_set()

    def check(self) -> None:
        if self.cancelled:
            raise Cancelled()


@dataclass
class Connection:
    """Where the daemon is and how long to wait for it."""

    address: str = wire.DEFAULT_ADDRESS
    timeout_s: float = 300.0  # a recolour of a very large layer on a CPU takes a while
    quick_timeout_s: float = 3.0  # ping, and "is anyone there?"
    restart_grace_s: float = RESTART_GRACE_S  # see RESTART_GRACE_S
    server_public_key: bytes | None = None  # CurveZMQ, for a daemon on another machine
    client_keys: tuple[bytes, bytes] | None = None  # (public, secret)


class Client:
    _ids = itertools.count(1)

    def __init__(self, connection: Connection, open_socket=None, client_name: str = "plugin"):
        self.connection = connection
        self.client_name = client_name
        self._open_socket = open_socket  # tests may pass their own; else transport's

    @property
    def address(self) -> str:
        return self.connection.address

    # --- the ops ------------------------------------------------------------------------------
    def ping(self, timeout_s: float | None = None) -> dict:
        timeout_s = timeout_s or self.connection.quick_timeout_s
        header, _ = self.request({"op": "ping"}, timeout_s=timeout_s)
        return header

    def info(self) -> dict:
        header, _ = self.request({"op": "info"}, timeout_s=self.connection.quick_timeout_s)
        return header

    def palette(
        self,
        pixels: Pixels,
        k: int = wire.DEFAULT_PALETTE_COLORS,
        cancel: CancelToken | None = None,
    ):
        """The layer's own palette: (hex colours, their shares of the opaque pixels)."""
        header, _ = self.request(
            {**_layer_header("palette", pixels), "options": {"k": k}}, pixels.data, cancel=cancel
        )
        colours, weights = header.get("palette"), header.get("weights")
        if not (
            isinstance(colours, list)
            and isinstance(weights, list)
            and len(colours) == len(weights) <= MAX_PALETTE_COLORS
            and all(isinstance(colour, str) and _HEX.fullmatch(colour) for colour in colours)
            and all(_is_number(weight) for weight in weights)
        ):
            raise BadReplyError(f"palette reply without colours and weights: {_short(header)}")
        return colours, weights

    def recolor(
        self,
        pixels: Pixels,
        palette: list[str],
        method: str = "palettenet",
        mask: bytes | None = None,
        source_palette: list[str] | None = None,
        max_side: int | None = None,
        cancel: CancelToken | None = None,
        reference: Pixels | None = None,
        icc_profile: bytes | None = None,
    ) -> Pixels:
        """The recoloured pixels: same format; the same size unless max_side shrinks them.
        reference: an image of all the pieces of one job (e.g. their thumbnails side by
        side, at most wire.MAX_REFERENCE_PIXELS): every piece sent with the same reference
        and palettes gets one colour mapping, so one colour gives one result in each.
        icc_profile: the ICC profile the pixels' colours are in (a wide gamut): the daemon
        converts with it, and the result comes back in the same profile."""
        header = {**_layer_header("recolor", pixels), "palette": list(palette), "method": method}
        if icc_profile is not None:
            header["icc_profile"] = base64.b64encode(icc_profile).decode("ascii")
        if source_palette is not None:
            header["source_palette"] = list(source_palette)
        if max_side is not None:
            header["options"] = {"max_side": int(max_side)}
        extra = []
        if reference is not None:
            header["reference"] = _layer_header("recolor", reference)
            del header["reference"]["op"]
            extra = [reference.data]
        reply, frames = self.request(header, pixels.data, mask, cancel=cancel, extra=extra)
        if icc_profile is not None and reply.get("icc_profile") is not True:
            raise BadReplyError("the backend ignored the layer's colour profile: it is older "
                                "than the plug-in; install both from one version")  # fmt: skip
        width, height = reply.get("width"), reply.get("height")
        if not (_is_size(width) and _is_size(height)) or len(frames) != 1:
            raise BadReplyError(f"recolor reply without a size and its pixels: {_short(reply)}")
        if reply.get("pixel_format", pixels.pixel_format) != pixels.pixel_format:
            raise BadReplyError(f"sent {pixels.pixel_format}, got {_short(reply['pixel_format'])}")
        try:
            # A full-size layer stays the buffer it was received into (the pure-Python
            # transport's mmap): copying hundreds of MB into bytes would hold the GIL and
            # freeze the editor's GUI thread. A preview is small: bytes, as Qt wants.
            data = frames[0] if max_side is None else bytes(frames[0])
            result = Pixels(width, height, pixels.pixel_format, data)
        except ValueError as error:  # not width x height pixels
            raise BadReplyError(f"recolor reply: {error}") from None
        if max_side is None and (width, height) != (pixels.width, pixels.height):
            raise BadReplyError(f"asked for {pixels.width} x {pixels.height}, "
                                f"got {width} x {height}")  # fmt: skip
        return result

    # --- one round trip -----------------------------------------------------------------------
    def request(self, header: dict, pixels=None, mask=None, timeout_s=None, cancel=None, extra=()):
        """Send one request and wait for its reply: (reply header, payload frames). extra:
        frames sent after pixels and mask (a recolor's reference image).
        RecolorError for an error reply, no answer, no connection, a lost daemon, a reply
        that is no palettenet/1 answer to this request, or a cancel."""
        if cancel is not None:
            cancel.check()
        timeout_s = timeout_s or self.connection.timeout_s
        deadline = time.monotonic() + timeout_s  # for everything below, re-sending included
        request_id = f"{self.client_name}-{next(self._ids)}"
        frames = [json.dumps({"protocol": PROTOCOL, "id": request_id, **header}).encode()]
        frames += [frame for frame in (pixels, mask) if frame is not None] + list(extra)
        max_bytes, max_frames = reply_limits(header.get("op"), pixels)
        try:
            socket = self._open(timeout_s)
            try:
                if hasattr(socket, "limit_reply"):  # tests' scripted sockets may not have it
                    socket.limit_reply(max_bytes, max_frames)
                reply = self._exchange(socket, frames, deadline, cancel, max_bytes)
            finally:
                socket.close()
        except RecolorError:
            raise
        except Exception as error:  # transport errors, whichever implementation raised them
            raise self._failure(error, timeout_s) from None
        return _decode(reply, request_id)

    def _open(self, timeout_s: float):
        connection = self.connection
        open_socket = self._open_socket or transport.open_socket
        return open_socket(
            connection.address,
            timeout_s,
            server_public_key=connection.server_public_key,
            client_keys=connection.client_keys,
        )

    def _exchange(self, socket, frames, deadline: float, cancel, max_bytes: int) -> list:
        """Send the request, wait for its reply. If the connection is lost meanwhile and the
        daemon is back within restart_grace_s, send it once more (every op is idempotent);
        otherwise BackendStoppedError."""
        try:
            return self._send_and_receive(socket, frames, deadline, cancel)
        except transport.ZmtpConnectionLost as error:
            was_gone = self._await_return(socket, deadline, cancel, error)
        try:
            return self._send_and_receive(socket, frames, deadline, cancel)
        except transport.ZmtpConnectionLost as error:
            if was_gone:  # back, and gone again with the same request
                raise BackendStoppedError(
                    f"{self.address}: it stopped again when the request was sent a second time "
                    f"(does this layer make it crash? see its log). {error}"
                ) from None
            raise ConnectionLostError(
                f"{self.address} is running but closed the connection twice before answering: "
                "the request may be larger than it accepts (see its `info` limits), or its "
                f"answer larger than this request's can be ({max_bytes:,} bytes). {error}"
            ) from None

    def _send_and_receive(self, socket, frames, deadline: float, cancel) -> list:
        socket.timeout_s = max(0.0, deadline - time.monotonic())  # bounds the send
        socket.send_multipart(frames)
        return self._receive(socket, deadline, cancel)

    def _await_return(self, socket, deadline: float, cancel, error: Exception) -> bool:
        """After the connection was lost with the request: wait up to restart_grace_s for
        a new one (a restarted daemon). Whether the daemon was gone for a while (refused or
        unanswered attempts) rather than back at once; BackendStoppedError if not back."""
        grace_s = self.connection.restart_grace_s
        give_up = min(time.monotonic() + grace_s, deadline)
        was_gone = False
        while True:
            if cancel is not None:
                cancel.check()
            started = time.monotonic()
            if started >= give_up:
                raise BackendStoppedError(
                    f"{self.address} went away with the request and was not back within "
                    f"{grace_s:g} s. ({error})"
                )
            try:
                socket.connect(min(CANCEL_POLL_S, give_up - started))
                return was_gone
            # Refused, no handshake yet, or closed during it (the dying daemon's listening
            # socket can take a connection before the kernel closes it).
            except (ConnectionError, TimeoutError):
                was_gone = True
            pause = min(RECONNECT_PAUSE_S - (time.monotonic() - started), give_up - started)
            if pause > 0:
                time.sleep(pause)

    @staticmethod
    def _receive(socket, deadline: float, cancel: CancelToken | None) -> list:
        """The reply, waiting in short slices so that a cancel is noticed within a fraction
        of a second (receiving again after a timeout keeps waiting for the same reply)."""
        while True:
            remaining = deadline - time.monotonic()
            try:
                return socket.recv_multipart(max(0.0, min(CANCEL_POLL_S, remaining)))
            except TimeoutError:
                if cancel is not None:
                    cancel.check()
                if time.monotonic() >= deadline:
                    raise

    def _failure(self, error: Exception, timeout_s: float) -> RecolorError:
        """A transport exception -> the RecolorError the artist sees."""
        if isinstance(error, MemoryError):  # ZmtpOutOfMemory too
            return OutOfMemoryError(f"{self.address}: {error}")
        if isinstance(error, TimeoutError):
            return RecolorError("timeout", f"No answer from {self.address} within {timeout_s:g} s.")
        if isinstance(error, ConnectionRefusedError):
            return RecolorError("connection_refused", f"Address: {self.address}")
        if isinstance(error, transport.CurveUnavailableError):
            return RecolorError("encryption_unavailable", str(error))
        if isinstance(error, ValueError):  # an endpoint that is no address
            return RecolorError("bad_address", f"{self.address}: {error}")
        if isinstance(error, transport.ZmtpProtocolError):  # ZmtpMechanismError too
            return BadReplyError(f"{self.address}: {error}")
        if isinstance(error, (OSError, ConnectionError, transport.ZmtpError)):
            return ConnectionLostError(f"{self.address}: {error}")
        raise error


def _layer_header(op: str, pixels: Pixels) -> dict:
    return {"op": op, "width": pixels.width, "height": pixels.height,
            "pixel_format": pixels.pixel_format}  # fmt: skip


def reply_limits(op, pixels) -> tuple[int, int]:
    """The largest legal reply to a request: (bytes in all, frames). A recolour comes back
    as a header and at most the pixel bytes sent (max_side only shrinks them); any other
    reply, and every error, is one header frame."""
    if op == "recolor" and pixels is not None:
        return REPLY_HEADER_MAX_BYTES + memoryview(pixels).nbytes, 2
    return REPLY_HEADER_MAX_BYTES, 1


def _decode(frames: list, request_id: str) -> tuple[dict, list]:
    """(header, payload frames) of a successful reply; RecolorError for an error reply,
    BadReplyError for anything that is not a palettenet/1 reply to this request."""
    if not frames:
        raise BadReplyError(f"an empty message, not a {PROTOCOL} reply")
    raw = bytes(frames[0])
    if len(raw) > REPLY_HEADER_MAX_BYTES:
        raise BadReplyError(f"a {len(raw):,}-byte reply header; at most "
                            f"{REPLY_HEADER_MAX_BYTES:,} are expected")  # fmt: skip
    # json.loads recurses once per level: check the nesting before it does.
    if _json_depth(raw, REPLY_JSON_MAX_DEPTH) > REPLY_JSON_MAX_DEPTH:
        raise BadReplyError(f"a reply header nested more than {REPLY_JSON_MAX_DEPTH} levels deep")
    try:
        header = json.loads(raw, parse_int=_parse_int)
    except (ValueError, RecursionError) as error:  # UnicodeDecodeError is a ValueError
        raise BadReplyError(f"not a {PROTOCOL} reply: {_short(str(error))}") from None
    if not isinstance(header, dict) or not isinstance(header.get("ok"), bool):
        raise BadReplyError(f"not a {PROTOCOL} reply: {_short(header)}")
    if not header["ok"]:
        error = header.get("error")
        code = error.get("code") if isinstance(error, dict) else None
        message = error.get("message", "") if isinstance(error, dict) else error or ""
        if not isinstance(code, str) or not re.fullmatch(r"[a-z0-9_]{1,40}", code):
            code = "internal"
        field = error.get("field") if isinstance(error, dict) else None
        field = field if isinstance(field, str) and len(field) <= 40 else None
        raise RecolorError(code, _short(message), field)
    if header.get("id") not in (None, request_id):
        raise BadReplyError(f"reply to {_short(header.get('id'))}, sent {request_id!r}")
    return header, list(frames[1:])


_JSON_SPECIAL = re.compile(rb'[][{}"\\]')
_HEX = re.compile(r"#[0-9a-fA-F]{6}")


def _json_depth(data: bytes, limit: int) -> int:
    """How deeply JSON text nests ([ and { outside strings), counting up to limit + 1. One
    pass over the special characters: linear whatever the text."""
    depth = deepest = 0
    in_string, escaped_until = False, -1
    for match in _JSON_SPECIAL.finditer(data):
        position = match.start()
        if position < escaped_until:  # the character after a backslash
            continue
        char = data[position]
        if in_string:
            if char == 0x5C:  # backslash
                escaped_until = position + 2
            elif char == 0x22:  # closing quote
                in_string = False
        elif char == 0x22:
            in_string = True
        elif char in b"[{":
            depth += 1
            deepest = max(deepest, depth)
            if deepest > limit:
                break
        elif char in b"]}":
            depth -= 1
    return deepest


def _parse_int(text: str) -> int:
    if len(text) > REPLY_NUMBER_MAX_DIGITS:
        raise ValueError(f"a {len(text)}-digit number")
    return int(text)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_size(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _short(value) -> str:
    """A value from the daemon, as text short enough for a message."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) > DETAIL_MAX_CHARS:
        return text[:DETAIL_MAX_CHARS] + f"... ({len(text):,} characters)"
    return text
