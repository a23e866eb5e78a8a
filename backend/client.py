"""A palettenet/1 client: one request at a time, with a deadline.

A REQ socket that never gets its reply is stuck for good, so on a timeout the socket is
closed (LINGER 0: nothing is left queued) and the next request opens a fresh one: the
"lazy pirate" pattern of the ZeroMQ guide. The CLI and the tests use this; the editor
plug-ins speak the same protocol with their own sockets.
"""

import zmq

from backend.protocol import decode_reply, encode_request
from backend.security import ClientKeys


class Client:
    def __init__(self, address: str, timeout_s: float = 300.0, keys: ClientKeys | None = None):
        self.address = address
        self.timeout_ms = int(timeout_s * 1000)
        self.keys = keys
        self.context = zmq.Context()
        self.socket = None

    def _connect(self) -> zmq.Socket:
        socket = self.context.socket(zmq.REQ)
        socket.linger = 0
        socket.ipv6 = "[" in self.address
        if self.keys is not None:
            self.keys.apply(socket)
        socket.connect(self.address)
        return socket

    def request(self, header: dict, pixels=None, mask=None) -> tuple[dict, list]:
        """Send one request, wait for its reply: (reply header, payload frames).
        TimeoutError if none comes within the timeout."""
        return decode_reply(self.exchange(encode_request(header, pixels, mask)))

    def exchange(self, frames: list) -> list:
        """Send frames as they are, return the reply's frames (for tests and tools)."""
        if self.socket is None:
            self.socket = self._connect()
        self.socket.send_multipart(frames, copy=False)
        if not self.socket.poll(self.timeout_ms, zmq.POLLIN):
            self.socket.close()
            self.socket = None
            raise TimeoutError(f"no reply from {self.address} within {self.timeout_ms / 1000:g} s")
        return self.socket.recv_multipart()

    def close(self) -> None:
        if self.socket is not None:
            self.socket.close()
            self.socket = None
        self.context.term()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
