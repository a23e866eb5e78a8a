"""The CLI client never hangs (issue #12): a malformed address fails at once, a daemon that
is not there, dies or freezes is noticed within seconds, a request lost with a killed daemon
is sent again once it is back, and every call ends within its timeout + 2 s.

`python -m tests.test_hardening_client` prints the measured call times."""

import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from backend.service.client import AddressError, Client
from tests.conftest import small_photo
from tests.servers import (
    Server,
    as_pixels,
    free_tcp_address,
    photo_pixels,
    random_weights,
    recolor_header,
)

MALFORMED = ["localhost:5555", "tcp://127.0.0.1", "tcp://127.0.0.1:notaport", "ipc://",
             "http://127.0.0.1:5555"]  # fmt: skip


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return random_weights(tmp_path_factory.mktemp("weights"))


def timed(function, *args, **options):
    """(function's result or the exception it raised, seconds taken)."""
    start = time.monotonic()
    try:
        result = function(*args, **options)
    except Exception as error:  # the tests look at which one
        result = error
    return result, time.monotonic() - start


def ping(address, **options):
    with Client(address, **options) as client:
        return client.request({"op": "ping"})[0]


def cli(*args, timeout=60) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "backend.cli.main", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("address", MALFORMED)
def test_a_malformed_address_fails_at_once_with_a_clear_message(address):
    error, seconds = timed(ping, address, timeout_s=3)
    assert isinstance(error, AddressError) and seconds < 0.5
    assert address in str(error) and "tcp://HOST:PORT" in str(error)


@pytest.mark.parametrize("address", MALFORMED[:2])
def test_the_cli_reports_a_malformed_address_in_one_line(address):
    result, seconds = timed(cli, "info", "--server", address, "--timeout", 3)
    assert result.returncode == 1 and seconds < 3 + 2 + 5  # (+5: Python and numpy start)
    assert result.stderr.count("\n") == 1 and "tcp://HOST:PORT" in result.stderr, result.stderr


def test_no_daemon_there_is_reported_after_the_reconnect_window_or_the_timeout():
    address = free_tcp_address()
    error, seconds = timed(ping, address, timeout_s=30, reconnect_s=2)
    assert isinstance(error, TimeoutError) and "could not be reached within 2 s" in str(error)
    assert 2 <= seconds < 2 + 2
    error, seconds = timed(ping, address, timeout_s=1.5)
    assert isinstance(error, TimeoutError) and "within 1.5 s" in str(error)
    assert seconds < 1.5 + 2


def long_recolour(address, result: dict, **options):
    pixels = photo_pixels(small_photo("astronaut", 2000), "RGBA8")
    result["pixels"] = pixels
    start = time.monotonic()
    try:
        with Client(address, **options) as client:
            result["reply"] = client.request(recolor_header(pixels, "RGBA8"), pixels)
    except Exception as error:
        result["error"] = error
    result["seconds"] = time.monotonic() - start


def wait_until_running(address):
    with Client(address, timeout_s=10) as client:
        while client.request({"op": "info"})[0]["running"] == 0:
            time.sleep(0.02)


def test_a_request_lost_with_a_killed_daemon_is_sent_again_when_it_is_back(weights):
    address = free_tcp_address()
    daemon = Server("serve", "--bind", address, "--weights", weights, "--device", "cpu")
    result = {}
    thread = threading.Thread(target=long_recolour, args=(address, result), kwargs={
        "timeout_s": 120})  # fmt: skip
    thread.start()
    wait_until_running(address)
    daemon.process.send_signal(signal.SIGKILL)
    daemon.process.wait()
    killed = time.monotonic()
    daemon = Server("serve", "--bind", address, "--weights", weights, "--device", "cpu")
    try:
        thread.join(timeout=120)
        assert "error" not in result, result.get("error")
        reply, frames = result["reply"]
        assert reply["ok"], reply
        out = as_pixels(frames[0], result["pixels"])
        np.testing.assert_array_equal(out[..., 3], result["pixels"][..., 3])
        assert time.monotonic() - killed < 60  # not the 120 s timeout
    finally:
        daemon.stop()


def test_a_killed_daemon_that_does_not_come_back_is_reported_within_seconds(weights):
    daemon = Server("serve", "--bind", "tcp://127.0.0.1:*", "--weights", weights)
    result = {}
    thread = threading.Thread(target=long_recolour, args=(daemon.address, result), kwargs={
        "timeout_s": 600, "reconnect_s": 3})  # fmt: skip
    thread.start()
    wait_until_running(daemon.address)
    daemon.process.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    thread.join(timeout=30)
    noticed = time.monotonic() - killed
    assert isinstance(result.get("error"), TimeoutError), result
    assert "went away during the request and was not back within 3 s" in str(result["error"])
    assert noticed < 3 + 2


def test_a_frozen_daemon_costs_a_call_no_more_than_its_timeout(weights):
    daemon = Server("serve", "--bind", "tcp://127.0.0.1:*", "--weights", weights)
    result = {}
    thread = threading.Thread(target=long_recolour, args=(daemon.address, result), kwargs={
        "timeout_s": 6})  # fmt: skip
    try:
        thread.start()
        wait_until_running(daemon.address)
        daemon.process.send_signal(signal.SIGSTOP)  # alive, but answers nothing
        thread.join(timeout=30)
        assert isinstance(result.get("error"), TimeoutError), result
        assert result["seconds"] < 6 + 2
    finally:
        daemon.process.send_signal(signal.SIGCONT)
        daemon.stop(signal.SIGKILL)


# --- the table of the closing note ----------------------------------------------------------
def main() -> None:
    """Client call time against its timeout, for each way a call can go wrong."""
    import tempfile
    from pathlib import Path

    weights = random_weights(Path(tempfile.mkdtemp()))
    rows = []
    for address in MALFORMED[:2]:
        _, seconds = timed(ping, address, timeout_s=3)
        rows.append((f"Client, address {address!r}", 3, seconds))
        _, seconds = timed(cli, "info", "--server", address, "--timeout", 3)
        rows.append((f"CLI process, address {address!r} (incl. start-up)", 3, seconds))
    _, seconds = timed(ping, free_tcp_address(), timeout_s=3)
    rows.append(("nothing listening, timeout 3 s", 3, seconds))
    _, seconds = timed(ping, free_tcp_address(), timeout_s=600)
    rows.append(("nothing listening, timeout 600 s (reconnect window 10 s)", 600, seconds))
    for case in ("killed, not back", "frozen (SIGSTOP)"):
        daemon = Server("serve", "--bind", "tcp://127.0.0.1:*", "--weights", weights)
        result = {}
        thread = threading.Thread(target=long_recolour, args=(daemon.address, result),
                                  kwargs={"timeout_s": 600 if "killed" in case else 6})  # fmt: skip
        thread.start()
        wait_until_running(daemon.address)
        daemon.process.send_signal(signal.SIGKILL if "killed" in case else signal.SIGSTOP)
        stopped = time.monotonic()
        thread.join()
        timeout = 600 if "killed" in case else 6
        rows.append((f"daemon {case} mid-request: after the signal", timeout,
                     time.monotonic() - stopped))  # fmt: skip
        daemon.process.send_signal(signal.SIGCONT)
        daemon.stop(signal.SIGKILL)
    address = free_tcp_address()
    daemon = Server("serve", "--bind", address, "--weights", weights)
    result = {}
    thread = threading.Thread(target=long_recolour, args=(address, result),
                              kwargs={"timeout_s": 600})  # fmt: skip
    thread.start()
    wait_until_running(address)
    daemon.process.send_signal(signal.SIGKILL)
    daemon.process.wait()
    killed = time.monotonic()
    daemon = Server("serve", "--bind", address, "--weights", weights)
    back = time.monotonic() - killed
    thread.join()
    ok = "reply" in result and result["reply"][0]["ok"]
    rows.append((f"daemon killed, back after {back:.1f} s: re-sent, ok={ok}", 600,
                 time.monotonic() - killed))  # fmt: skip
    daemon.stop()
    print("| case | timeout s | call ended after s |")
    print("|---|---:|---:|")
    for case, timeout, seconds in rows:
        print(f"| {case} | {timeout} | {seconds:.2f} |")


if __name__ == "__main__":
    main()
