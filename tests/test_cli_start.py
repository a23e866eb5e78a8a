"""The CLI's quick paths never load torch: --version, --help and every --server client command
(torch alone takes seconds to import; `palettenet bench` prints the start times)."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
NOWHERE = "tcp://127.0.0.1:9"  # nothing answers: the client path runs up to its timeout


def modules_after(argv: list[str]) -> set[str]:
    """The heavy modules loaded after running `palettenet ARGV` in a fresh interpreter."""
    code = (
        "import sys\n"
        "from backend.cli.main import main\n"
        "try:\n"
        f"    main({argv!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = [m for m in ('torch', 'skimage', 'scipy') if m in sys.modules]\n"
        "print('loaded:', *heavy)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)  # fmt: skip
    assert run.returncode == 0, run.stderr
    return set(run.stdout.splitlines()[-1].split()[1:])


@pytest.fixture(scope="module")
def picture(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("start") / "in.png"
    Image.fromarray(np.full((20, 30, 3), 90, np.uint8)).save(path)
    return path


@pytest.mark.parametrize("argv", [["--version"], ["--help"], ["recolor", "--help"],
                                  ["bench", "--help"], ["serve", "--help"]])  # fmt: skip
def test_version_and_help_do_not_load_torch(argv):
    assert modules_after(argv) == set()


@pytest.mark.parametrize("command", ["info", "palette", "recolor"])
def test_server_client_commands_do_not_load_torch(command, picture, tmp_path):
    argv = [command, "--server", NOWHERE, "--timeout", "0.3"]
    if command != "info":
        argv.insert(1, str(picture))
    if command == "recolor":
        argv += ["-p", "#ff0000,#00ff00", "-o", str(tmp_path / "out.png")]
    assert modules_after(argv) == set()
