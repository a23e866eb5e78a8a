#!/usr/bin/env python3
"""Set up Recolor with Palette: a virtual environment in .venv with the backend installed.

    python3 install.py          set up (or update) .venv
    python3 install.py --demo   set up, then recolour a demo photo to demo-recolored.png
    python3 install.py --test   set up with the test tools and run the whole test suite

Only the standard library is used here, so any Python 3.10+ can run it.
"""

import argparse
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
# Pinned so that machines with this build on disk (the project's CI) use it instead of
# downloading a multi-GB CUDA build.
TORCH_VERSION = "2.13.0"


def venv_python() -> Path:
    scripts = "Scripts" if sys.platform == "win32" else "bin"
    return VENV / scripts / ("python.exe" if sys.platform == "win32" else "python")


def run(*command):
    print("+", " ".join(str(c) for c in command), flush=True)
    subprocess.run([str(c) for c in command], check=True)


def set_up(with_tests: bool):
    if not venv_python().exists():
        print(f"creating virtual environment {VENV}")
        venv.EnvBuilder(with_pip=True).create(VENV)
    python = venv_python()
    pip = [python, "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    run(*pip, f"torch=={TORCH_VERSION}")
    run(*pip, "-e", f"{ROOT}[dev]" if with_tests else str(ROOT))
    return python


DEMO_PALETTE = "#0b1d51,#725ac1,#8d86c9,#cac4ce,#f7ece1,#e0b1cb"
DEMO_SCRIPT = """
import sys
from pathlib import Path
from PIL import Image
from skimage import data
from backend.cli import DEFAULT_WEIGHTS, main
source = Path(sys.argv[1]) / "demo-source.png"
Image.fromarray(data.astronaut()).save(source)  # NASA photo, public domain
method = "palettenet" if DEFAULT_WEIGHTS.exists() else "chang2015"
if method != "palettenet":
    print("no trained PaletteNet model is installed yet: using the classical method")
result = Path(sys.argv[1]) / "demo-recolored.png"
main(["recolor", str(source), "-p", sys.argv[2], "-o", str(result), "--method", method])
"""


def demo(python: Path):
    subprocess.run([str(python), "-c", DEMO_SCRIPT, str(ROOT), DEMO_PALETTE], check=True)
    print(f"source: {ROOT / 'demo-source.png'}\nresult: {ROOT / 'demo-recolored.png'}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--test", action="store_true", help="install test tools and run the tests")
    parser.add_argument("--demo", action="store_true", help="recolour a demo photo after set-up")
    parser.add_argument("pytest_args", nargs="*", help="extra arguments for pytest (with --test)")
    args = parser.parse_args()
    try:
        python = set_up(with_tests=args.test)
    except subprocess.CalledProcessError as error:
        sys.exit(f"set-up failed: {error}")
    if args.test:
        sys.exit(subprocess.call([str(python), "-m", "pytest", *args.pytest_args], cwd=ROOT))
    print(f"ready: {python.parent / 'palettenet'}")
    if args.demo:
        demo(python)


if __name__ == "__main__":
    main()
