"""One backend.service.client.Client used for several requests: the handshake seen on the
first is remembered, so a slow reply later waits up to the timeout, not the much shorter
window for a daemon that is not there; a daemon that closes between requests is still
noticed. A fake daemon (a ROUTER socket in a thread) answers after chosen delays."""

import threading
import time

import zmq

from backend.service.client import Client
from backend.service.protocol import ok_reply, read_header

RECONNECT_S = 1.0  # the client's "is the daemon there" window, short to keep the tests fast


class FakeDaemon:
    """Answers one ping per delay in `delays` (seconds before each reply), then closes."""

    def __init__(self, delays: list[float]):
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.ROUTER)
        self.socket.linger = 0
        port = self.socket.bind_to_random_port("tcp://127.0.0.1")
        self.address = f"tcp://127.0.0.1:{port}"
        self.thread = threading.Thread(target=self._serve, args=(delays,), daemon=True)
        self.thread.start()

    def _serve(self, delays):
        for delay in delays:
            frames = self.socket.recv_multipart()
            split = frames.index(b"") + 1
            header = read_header(frames[split])
            time.sleep(delay)
            reply = ok_reply(header.get("id"), pong=True)
            self.socket.send_multipart(frames[:split] + reply.encode())
        self.socket.close()  # the client sees its connection close

    def stop(self):
        self.thread.join(timeout=30)
        if not self.socket.closed:
            self.socket.close()
        self.context.term()


def ping(client: Client) -> dict:
    return client.request({"op": "ping"})[0]


def test_a_reused_client_waits_for_a_slow_second_reply_up_to_its_timeout():
    daemon = FakeDaemon([0, 2 * RECONNECT_S])
    try:
        with Client(daemon.address, timeout_s=10, reconnect_s=RECONNECT_S) as client:
            assert ping(client)["ok"]
            start = time.monotonic()
            second = ping(client)  # before the fix: TimeoutError "could not be reached"
            seconds = time.monotonic() - start
    finally:
        daemon.stop()
    assert second["ok"] and second["pong"]
    assert 2 * RECONNECT_S <= seconds < 2 * RECONNECT_S + 2


def test_a_reused_client_still_notices_a_daemon_that_closed_between_requests():
    daemon = FakeDaemon([0])  # one reply, then the daemon closes
    try:
        with Client(daemon.address, timeout_s=30, reconnect_s=RECONNECT_S) as client:
            assert ping(client)["ok"]
            daemon.thread.join(timeout=10)
            time.sleep(0.2)  # let the close reach the client
            start = time.monotonic()
            try:
                ping(client)
                error = None
            except TimeoutError as raised:
                error = raised
            seconds = time.monotonic() - start
            assert not client.connected
    finally:
        daemon.stop()
    assert error is not None and "could not be reached" in str(error), error
    assert seconds < RECONNECT_S + 2  # the reconnect window, not the 30 s timeout


def test_the_plugin_client_reused_waits_for_a_slow_second_reply_too():
    """The plug-in's own client opens a connection per request, so it has nothing to
    forget; checked the same way (a second reply slower than its restart grace)."""
    from plugin.recolor_with_palette.client import Client as PluginClient
    from plugin.recolor_with_palette.client import Connection

    daemon = FakeDaemon([0, 2 * RECONNECT_S])
    try:
        connection = Connection(daemon.address, timeout_s=10, restart_grace_s=RECONNECT_S)
        client = PluginClient(connection)
        assert client.request({"op": "ping"})[0]["ok"]
        assert client.request({"op": "ping"}, timeout_s=10)[0]["pong"]
    finally:
        daemon.stop()
