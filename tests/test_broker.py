"""A broker with two daemons behind it: requests are served, and a daemon killed in the
middle of a job loses nobody's request."""

import signal
import threading
import time

import numpy as np
import pytest

from backend.service.client import Client
from tests.conftest import small_photo
from tests.servers import Server, as_pixels, photo_pixels, random_weights, recolor_header


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return random_weights(tmp_path_factory.mktemp("weights"))


def worker(backend, weights) -> Server:
    return Server("serve", "--connect", backend, "--weights", weights, "--heartbeat", 0.3)


def wait_for_workers(address, count, timeout=60) -> set:
    """Ping through the broker until `count` different daemons have answered."""
    seen, deadline = set(), time.monotonic() + timeout
    with Client(address, timeout_s=10) as client:
        while len(seen) < count and time.monotonic() < deadline:
            reply = client.request({"op": "ping"})[0]
            if reply["ok"]:
                seen.add(reply["pid"])
            time.sleep(0.05)
    assert len(seen) == count, f"only {len(seen)} of {count} workers answered"
    return seen


def test_broker_serves_through_two_workers_and_survives_one_being_killed(weights):
    broker = Server("broker", "--frontend", "tcp://127.0.0.1:*", "--backend",
                    "tcp://127.0.0.1:*", "--worker-timeout", 1.5)  # fmt: skip
    workers = [worker(broker.backend, weights) for _ in range(2)]
    try:
        pids = wait_for_workers(broker.address, 2)
        assert pids == {w.process.pid for w in workers}

        # Two long jobs at once: the broker gives one to each worker.
        pixels = photo_pixels(small_photo("astronaut", 700), "RGBA8")
        replies = [None, None]

        def job(index):
            with Client(broker.address, timeout_s=120) as client:
                replies[index] = client.request(recolor_header(pixels, "RGBA8"), pixels)

        threads = [threading.Thread(target=job, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        time.sleep(1.0)  # both jobs are running now
        workers[0].process.send_signal(signal.SIGKILL)
        for thread in threads:
            thread.join(timeout=120)
        for reply, frames in replies:  # the killed worker's job was retried on the other
            assert reply["ok"], reply
            np.testing.assert_array_equal(as_pixels(frames[0], pixels)[..., 3], pixels[..., 3])

        small = photo_pixels(small_photo("coffee", 32), "RGBA8")
        with Client(broker.address, timeout_s=60) as client:
            for method in ("palettenet", "chang2015"):
                assert client.request(recolor_header(small, "RGBA8", method), small)[0]["ok"]
            assert client.request({"op": "ping"})[0]["pid"] == workers[1].process.pid
    finally:
        for server in [*workers, broker]:
            server.stop()
