"""The plug-ins' side of palettenet/1: ping, info, palette and recolor, each with a deadline.

Blocking calls, meant for a worker thread (the Krita docker runs them in a QThread, the GIMP
plug-in is a process of its own). Each request opens a fresh socket and closes it after the
reply: a REQ socket whose reply never came is stuck for good, and a local connection costs
well under a millisecond. Every failure becomes a RecolorError with a message for the artist.

The sockets come from transport.open_socket: pyzmq where the editor's Python can load it,
otherwise the built-in pure-Python ZMTP client (plugin/zmtp.py).
"""

from __future__ import annotations

import importlib
import itertools
import json
import threading
import time
from dataclasses import dataclass, field

from .errors import RecolorError
from .pixels import Pixels

PROTOCOL = "palettenet/1"
CANCEL_POLL_S = 0.25  # how soon a cancel is noticed while waiting for a reply
METHODS = {"palettenet": "PaletteNet", "chang2015": "Classical (Chang 2015)"}


def load_transport():
    """plugin/transport.py: copied into the package by install.py, next to it in the
    repository (where tests import this package as plugin.recolor_with_palette)."""
    try:
        return importlib.import_module(f"{__package__}.transport")
    except ModuleNotFoundError as error:
        if error.name != f"{__package__}.transport":
            raise
    parent = __package__.rpartition(".")[0]
    if not parent:
        raise ModuleNotFoundError("transport.py is missing from the plug-in: run install.py")
    return importlib.import_module(f"{parent}.transport")


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

    address: str = "tcp://127.0.0.1:5555"
    timeout_s: float = 300.0  # a recolour of a very large layer on a CPU takes a while
    quick_timeout_s: float = 3.0  # ping, and "is anyone there?"
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

    def palette(self, pixels: Pixels, k: int = 6, cancel: CancelToken | None = None):
        """The layer's own palette: (hex colours, their shares of the opaque pixels)."""
        header, _ = self.request(
            {**_layer_header("palette", pixels), "options": {"k": k}}, pixels.data, cancel=cancel
        )
        colours, weights = header.get("palette"), header.get("weights")
        if not isinstance(colours, list) or not isinstance(weights, list):
            raise RecolorError("bad_reply", f"palette reply without palette/weights: {header}")
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
    ) -> Pixels:
        """The recoloured pixels: same format; the same size unless max_side shrinks them."""
        header = {**_layer_header("recolor", pixels), "palette": list(palette), "method": method}
        if source_palette is not None:
            header["source_palette"] = list(source_palette)
        if max_side is not None:
            header["options"] = {"max_side": int(max_side)}
        reply, frames = self.request(header, pixels.data, mask, cancel=cancel)
        try:
            width, height = int(reply["width"]), int(reply["height"])
            result = Pixels(width, height, pixels.pixel_format, bytes(frames[0]))
        except (KeyError, IndexError, TypeError, ValueError) as error:
            raise RecolorError("bad_reply", f"recolor reply: {error}") from None
        if max_side is None and (width, height) != (pixels.width, pixels.height):
            raise RecolorError("bad_reply", f"asked for {pixels.width} x {pixels.height}, "
                               f"got {width} x {height}")  # fmt: skip
        return result

    # --- one round trip -----------------------------------------------------------------------
    def request(self, header: dict, pixels=None, mask=None, timeout_s=None, cancel=None):
        """Send one request and wait for its reply: (reply header, payload frames).
        RecolorError for an error reply, no answer, no connection, or a cancel."""
        if cancel is not None:
            cancel.check()
        timeout_s = timeout_s or self.connection.timeout_s
        request_id = f"{self.client_name}-{next(self._ids)}"
        frames = [json.dumps({"protocol": PROTOCOL, "id": request_id, **header}).encode()]
        frames += [frame for frame in (pixels, mask) if frame is not None]
        try:
            socket = self._open(timeout_s)
            try:
                socket.send_multipart(frames)
                reply = self._receive(socket, timeout_s, cancel)
            finally:
                socket.close()
        except RecolorError:
            raise
        except Exception as error:  # transport errors, whichever implementation raised them
            raise self._failure(error, timeout_s) from None
        return _decode(reply, request_id)

    def _open(self, timeout_s: float):
        connection = self.connection
        open_socket = self._open_socket or load_transport().open_socket
        return open_socket(
            connection.address,
            timeout_s,
            server_public_key=connection.server_public_key,
            client_keys=connection.client_keys,
        )

    @staticmethod
    def _receive(socket, timeout_s: float, cancel: CancelToken | None) -> list:
        """The reply, waiting in short slices so that a cancel is noticed within a fraction
        of a second (receiving again after a timeout keeps waiting for the same reply)."""
        deadline = time.monotonic() + timeout_s
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
        if isinstance(error, TimeoutError):
            return RecolorError("timeout", f"No answer from {self.address} within {timeout_s:g} s.")
        if isinstance(error, ConnectionRefusedError):
            return RecolorError("connection_refused", f"Address: {self.address}")
        if type(error).__name__ == "CurveUnavailableError":
            return RecolorError("encryption_unavailable", str(error))
        if isinstance(error, ValueError):  # an endpoint that is no address
            return RecolorError("bad_address", f"{self.address}: {error}")
        if type(error).__name__ in ("ZmtpProtocolError", "ZmtpMechanismError"):
            return RecolorError("bad_reply", f"{self.address}: {error}")
        if isinstance(error, (OSError, ConnectionError)) or "Zmtp" in type(error).__name__:
            return RecolorError("connection_lost", f"{self.address}: {error}")
        raise error


def _layer_header(op: str, pixels: Pixels) -> dict:
    return {"op": op, "width": pixels.width, "height": pixels.height,
            "pixel_format": pixels.pixel_format}  # fmt: skip


def _decode(frames: list, request_id: str) -> tuple[dict, list]:
    try:
        header = json.loads(bytes(frames[0]))
    except (IndexError, ValueError) as error:
        raise RecolorError("bad_reply", f"not a {PROTOCOL} reply: {error}") from None
    if not isinstance(header, dict):
        raise RecolorError("bad_reply", f"not a {PROTOCOL} reply: {header!r}")
    if header.get("ok") is not True:
        error = header.get("error") or {}
        code = error.get("code", "internal") if isinstance(error, dict) else "internal"
        message = error.get("message", "") if isinstance(error, dict) else str(error)
        raise RecolorError(str(code), message)
    if header.get("id") not in (None, request_id):
        raise RecolorError("bad_reply", f"reply to {header.get('id')!r}, sent {request_id!r}")
    return header, list(frames[1:])
