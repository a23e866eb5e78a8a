"""Real daemons and brokers for the tests, and the requests they are sent.

`palettenet serve` and `palettenet broker` run in subprocesses on free loopback ports
(tcp://127.0.0.1:*) or short ipc paths, exactly as a user starts them; a Server waits for
the ready line and hands out the address it printed.
"""

import queue
import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import torch

from backend.core.model import PaletteNet
from backend.core.pixels import FORMATS
from backend.core.weights import save_weights

READY = re.compile(r"ready on (\S+)|broker ready: clients (\S+), workers (\S+)|worker of broker")
PALETTE = ["#0b1d51", "#725ac1", "#8d86c9", "#cac4ce", "#f7ece1", "#e0b1cb"]


def random_weights(folder: Path) -> Path:
    """A randomly initialised (seeded) PaletteNet saved as a weight file."""
    torch.manual_seed(0)
    path = folder / "random.pt"
    save_weights(PaletteNet(), path)
    return path


class Server:
    """`palettenet ARGS...` in a subprocess; its output lines are collected as they come."""

    def __init__(self, *args, start_timeout=90, **popen):
        """popen: more subprocess.Popen arguments (umask, preexec_fn, ...)."""
        command = [sys.executable, "-m", "backend.cli.main", *map(str, args)]
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen
        )
        self.lines: list[str] = []
        self._lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        match = self.wait_for(READY, start_timeout)
        if match is None:
            self.process.kill()
            raise RuntimeError("server did not start:\n" + "".join(self.lines))
        self.address = match.group(1) or match.group(2)
        self.backend = match.group(3)

    def _read(self):
        for line in self.process.stdout:
            self.lines.append(line)
            self._lines.put(line)
        self._lines.put(None)

    def wait_for(self, pattern: re.Pattern, timeout: float):
        """The match of the first new output line matching pattern, None at exit/timeout."""
        while True:
            try:
                line = self._lines.get(timeout=timeout)
            except queue.Empty:
                return None
            if line is None:
                return None
            match = pattern.search(line)
            if match:
                return match

    def alive(self) -> bool:
        return self.process.poll() is None

    def peak_rss_mib(self) -> float:
        """The process's peak resident memory so far (Linux: VmHWM), in MiB."""
        return peak_rss_mib(self.process.pid)

    def stop(self, signum=signal.SIGTERM, timeout=60) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signum)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise


def peak_rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024


def free_tcp_address() -> str:
    """A loopback address nobody listens on now (to start, kill and restart a daemon on)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{probe.getsockname()[1]}"


def photo_pixels(rgb8: np.ndarray, pixel_format: str, seed=0) -> np.ndarray:
    """An RGB uint8 photo in a protocol format, with a varied alpha channel where there is
    one (opaque, half-transparent and fully transparent stripes)."""
    fmt = FORMATS[pixel_format]
    height, width = rgb8.shape[:2]
    rgb = rgb8.astype(np.float64) / 255
    alpha = np.ones((height, width))
    alpha[: height // 4] = 0.0
    alpha[height // 4 : height // 2] = 0.5
    channels = np.zeros((height, width, fmt.channels))
    channels[..., list(fmt.rgb)] = rgb
    if fmt.alpha is not None:
        channels[..., fmt.alpha] = alpha
    if fmt.is_float:
        return channels.astype(fmt.dtype)
    return np.round(channels * fmt.maximum).astype(fmt.dtype)


def recolor_header(pixels: np.ndarray, pixel_format: str, method="palettenet", **extra) -> dict:
    height, width = pixels.shape[:2]
    return {"op": "recolor", "id": f"{pixel_format}-{method}", "width": width,
            "height": height, "pixel_format": pixel_format, "palette": PALETTE,
            "method": method, **extra}  # fmt: skip


def as_pixels(frame, like: np.ndarray) -> np.ndarray:
    return np.frombuffer(frame, like.dtype).reshape(like.shape)


def daemon_answer(
    daemon,
    pixel_format,
    width,
    height,
    data,
    palette,
    mask=None,
    method="palettenet",
    source_palette=None,
):
    """The daemon's own recolour of these pixels: what a plug-in must write back."""
    from backend.service.client import Client

    header = {"op": "recolor", "width": width, "height": height, "pixel_format": pixel_format,
              "palette": palette, "method": method, "source_palette": source_palette}  # fmt: skip
    with Client(daemon.address, timeout_s=120) as client:
        reply, frames = client.request(header, data, mask)
    assert reply["ok"], reply
    return bytes(frames[0])
