"""Start the backend daemon when nothing answers at a local address.

install.py writes backend.json next to the installed plug-in: where the palettenet command of
the backend environment it set up is. When a request finds no daemon at a loopback or ipc://
address, the plug-in starts `palettenet serve --bind ADDRESS` from there, says so, and waits
for the daemon's ping. The daemon keeps running after the editor closes (other editors and
the CLI may use it; starting it costs seconds of model loading); its output goes to a log
file of this user's (log_path) whose path every failure message names.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from .client import CancelToken, Client
from .errors import RecolorError

BACKEND_RECORD = Path(__file__).with_name("backend.json")
START_TIMEOUT_S = 90.0  # first start: Python, torch and the model load from a cold disk
LOG_TAIL_LINES = 6
LOG_FOLDER = "recolor-with-palette"


def is_local(address: str) -> bool:
    """Whether the address can only be on this machine (only there may we start a daemon):
    ipc:// and inproc://, or tcp:// to localhost or a loopback IP (127.0.0.0/8, ::1 however
    written). A host name is not provably local, even one starting with "127.". The daemon
    decides the same way what it may serve unencrypted (tests/test_wire_copies.py)."""
    transport, _, rest = address.partition("://")
    if transport in ("ipc", "inproc"):
        return True
    if transport != "tcp":
        return False
    host = rest.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # "*", a host name: not provably local
        return False


def read_record(path: Path = BACKEND_RECORD) -> dict | None:
    """install.py's record of the backend environment, or None where there is none."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or not record.get("palettenet"):
        return None
    return record


def log_path(environ=None, platform: str = sys.platform) -> Path:
    """The daemon's log, per user (never a shared temporary folder, where another user could
    read it or put a link in its place): $XDG_STATE_HOME/recolor-with-palette/daemon.log
    (~/.local/state/... without it) on Linux, %LOCALAPPDATA%\\recolor-with-palette on Windows,
    ~/Library/Logs/recolor-with-palette on macOS."""
    environ = os.environ if environ is None else environ
    home = Path(environ.get("HOME") or Path.home())
    if platform == "win32":
        base = Path(environ.get("LOCALAPPDATA") or home / "AppData" / "Local")
    elif platform == "darwin":
        base = home / "Library" / "Logs"
    else:
        state = environ.get("XDG_STATE_HOME", "")
        base = Path(state) if os.path.isabs(state) else home / ".local" / "state"
    return base / LOG_FOLDER / "daemon.log"


def open_log(path: Path):
    """The log, fresh (truncated), in a folder only this user may enter (0700) and readable
    by this user only (0600)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if sys.platform != "win32":
        os.chmod(path.parent, 0o700)  # an older, laxer folder of ours
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
    return os.fdopen(os.open(path, flags, 0o600), "wb")


class Launcher:
    """Starts at most one daemon per address at a time, however many threads ask."""

    def __init__(self, record_path: Path = BACKEND_RECORD, log: Path | None = None):
        self.record_path = Path(record_path)
        self.log = log or log_path()
        self._lock = threading.Lock()
        self._processes: dict[str, subprocess.Popen] = {}

    def ensure_running(
        self, client: Client, on_status=None, cancel: CancelToken | None = None,
        timeout_s: float = START_TIMEOUT_S, start: bool = True,
    ) -> dict:  # fmt: skip
        """The daemon's ping reply, starting the daemon first if nothing answers (where it
        may: `start`, and a local address). RecolorError (unreachable, no_backend,
        start_failed, start_timeout, ...) when that fails."""
        try:
            return client.ping()
        except RecolorError as error:
            if error.code not in ("timeout", "connection_refused"):
                raise
        if not (start and is_local(client.address)):
            raise RecolorError("unreachable", f"Address: {client.address}")
        record = read_record(self.record_path)
        if record is None:
            raise RecolorError("no_backend", f"Address: {client.address}")
        with self._lock:
            process = self._processes.get(client.address)
            if process is None or process.poll() is not None:
                if on_status is not None:
                    on_status("Starting the backend…")
                process = self._start(record, client.address)
                self._processes[client.address] = process
        return self._wait(client, process, timeout_s, cancel)

    def _start(self, record: dict, address: str) -> subprocess.Popen:
        command = [record["palettenet"], "serve", "--bind", address]
        if record.get("weights"):
            command += ["--weights", record["weights"]]
        # Detached: the daemon must not die with the editor's process group or console.
        options = {"start_new_session": True}
        if sys.platform == "win32":
            options = {"creationflags": subprocess.DETACHED_PROCESS | subprocess.CREATE_NO_WINDOW}
        try:
            log = open_log(self.log)  # fresh per start; the child keeps it open
        except OSError:
            log = subprocess.DEVNULL
        try:
            return subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, **options
            )
        except OSError as error:
            detail = f"{command[0]}: {error}. Run install.py again to set the backend up."
            raise RecolorError("start_failed", detail) from None
        finally:
            if log is not subprocess.DEVNULL:
                log.close()

    def _wait(self, client: Client, process, timeout_s: float, cancel) -> dict:
        deadline = time.monotonic() + timeout_s
        while True:
            if cancel is not None:
                cancel.check()
            if process.poll() is not None:
                detail = f"It stopped with exit code {process.returncode}.\n{self._log_tail()}"
                raise RecolorError("start_failed", detail)
            try:
                return client.ping(timeout_s=1.0)
            except RecolorError as error:
                if error.code not in ("timeout", "connection_refused"):
                    raise
            if time.monotonic() > deadline:
                detail = f"Waited {timeout_s:g} s for {client.address}. Log: {self.log}"
                raise RecolorError("start_timeout", detail)
            time.sleep(0.2)  # a refused connection returns at once: do not spin

    def _log_tail(self) -> str:
        try:
            lines = self.log.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return f"Log: {self.log}"
        return "\n".join(lines[-LOG_TAIL_LINES:] + [f"Log: {self.log}"])
