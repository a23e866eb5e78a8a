"""The main job on the bundled model, end to end: python -m backend.cli.demo OUT [--palette ...]

Starts the backend daemon on the address the editor plug-ins use (or uses the one already
answering there), recolours the bundled demo photo through it to OUT, prints where the
result is, and keeps the daemon serving for Krita and GIMP until Ctrl+C. install.py --demo
runs this after setting up.
"""

import argparse
import subprocess
import sys
import time
from pathlib import Path

from backend import DEFAULT_WEIGHTS
from backend.cli.main import main as cli
from backend.wire import DEFAULT_ADDRESS

DEMO_PHOTO = Path(__file__).resolve().parents[1] / "data" / "demo-photo.jpg"
DEMO_PALETTE = "#0b1d51,#725ac1,#8d86c9,#cac4ce,#f7ece1,#e0b1cb"  # a designer palette
START_TIMEOUT_S = 120  # loading torch and the model on a slow machine


def ping(address: str, timeout_s: float) -> dict | None:
    """The daemon's info reply, or None when nothing answers within timeout_s."""
    from backend.service.client import Client

    with Client(address, timeout_s=timeout_s) as client:
        try:
            header, _ = client.request({"op": "info", "id": "demo"})
        except TimeoutError:
            return None
    return header if header.get("ok") else None


def start_daemon(address: str) -> subprocess.Popen:
    """A daemon serving `address`, answering; SystemExit with its own message if it fails."""
    command = [sys.executable, "-m", "backend.cli.main", "serve", "--bind", address]
    daemon = subprocess.Popen(command)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if daemon.poll() is not None:
            raise SystemExit(f"the daemon did not start (exit status {daemon.returncode})")
        if ping(address, timeout_s=1.0) is not None:
            return daemon
    daemon.terminate()
    raise SystemExit(f"the daemon did not answer on {address} within {START_TIMEOUT_S} s")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m backend.cli.demo", description=__doc__)
    parser.add_argument("out", type=Path, help="where the recoloured photo goes")
    parser.add_argument("--palette", default=DEMO_PALETTE, help="target colours, #hex,...")
    parser.add_argument("--address", default=DEFAULT_ADDRESS, help="daemon address")
    parser.add_argument("--no-serve", action="store_true", help="stop the daemon at the end")
    args = parser.parse_args(argv)

    daemon = None
    info = ping(args.address, timeout_s=1.0)
    if info is None:
        print(f"starting the daemon on {args.address} ...", flush=True)
        daemon = start_daemon(args.address)
        info = ping(args.address, timeout_s=10.0)
    else:
        print(f"using the daemon already answering on {args.address}")
    try:
        method = "palettenet" if "palettenet" in info.get("methods", []) else "chang2015"
        if method != "palettenet":
            print(f"the daemon has no PaletteNet model ({DEFAULT_WEIGHTS}): classical method")
        status = cli(
            [
                "recolor",
                str(DEMO_PHOTO),
                "-p",
                args.palette,
                "-o",
                str(args.out),
                "--method",
                method,
                "--server",
                args.address,
            ]  # fmt: skip
        )
        if status:
            return status
        print(f"source: {DEMO_PHOTO}\nresult: {args.out.resolve()} ({method}, via {args.address})")
        if daemon is None or args.no_serve:
            return 0
        print(
            f"the daemon keeps serving on {args.address} for the Krita and GIMP plug-ins; "
            "Ctrl+C stops it",
            flush=True,
        )
        return daemon.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        if daemon is not None and daemon.poll() is None:
            daemon.terminate()
            daemon.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
