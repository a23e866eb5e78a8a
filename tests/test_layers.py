"""The backend's layers, as the folder names promise: backend.wire (standard library) at the
bottom, then backend.core (recolouring: no sockets, no image files), backend.service
(protocol, engine, daemon, broker, client) and backend.cli on top. Imports only go downwards;
the broker, which only routes messages, starts without torch."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ["backend.wire", "backend.core", "backend.service", "backend.cli"]  # bottom first
FORBIDDEN_IN_CORE = ("zmq", "socket", "PIL", "tifffile", "imagecodecs")  # sockets, files


def layer_of(module: str) -> int | None:
    for index, layer in enumerate(LAYERS):
        if module == layer or module.startswith(layer + "."):
            return index
    return None


def imports(path: Path) -> list[tuple[str, int]]:
    """(imported module, line) of every import in a file, top level or inside functions."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, node.lineno))
            found += [(f"{node.module}.{alias.name}", node.lineno) for alias in node.names]
    return found


def backend_modules():
    for path in sorted((ROOT / "backend").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        yield ".".join(parts[:-1] if parts[-1] == "__init__" else parts), path


@pytest.mark.parametrize("module, path", list(backend_modules()), ids=lambda v: str(v))
def test_imports_only_go_downwards(module, path):
    own = layer_of(module)
    if own is None:  # backend/__init__.py: the version and the default model's path
        assert not [name for name, _ in imports(path) if name.startswith("backend")]
        return
    for name, line in imports(path):
        other = layer_of(name)
        assert other is None or other <= own, (
            f"{path.relative_to(ROOT)}:{line}: {module} ({LAYERS[own]}) imports {name} "
            f"({LAYERS[other]}), a layer above it"
        )
        if LAYERS[own] in ("backend.wire", "backend.core"):
            root = name.split(".")[0]
            assert root not in FORBIDDEN_IN_CORE, f"{path}:{line}: {module} imports {name}"
        if LAYERS[own] == "backend.wire":
            assert not name.startswith(("numpy", "torch", "backend.")), f"{path}:{line}"


def test_the_broker_and_the_protocol_load_without_torch():
    code = (
        "import sys\n"
        "import backend.service.broker, backend.service.protocol, backend.service.client\n"
        "from backend.cli.main import main\n"
        "heavy = [name for name in ('torch', 'skimage') if name in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=120)


def test_palettenet_broker_starts_without_torch():
    """The broker command itself (argument parsing included): it must never load torch."""
    code = (
        "import sys, threading\n"
        "from backend.cli import main\n"
        "sys.argv = ['palettenet', 'broker', '--frontend', 'tcp://127.0.0.1:*',\n"
        "            '--backend', 'tcp://127.0.0.1:*']\n"
        "import backend.service.broker as broker\n"
        "started = []\n"
        "original = broker.Broker.serve\n"
        "def serve(self):\n"
        "    started.append('torch' in sys.modules)\n"
        "    self.stop()\n"
        "    return original(self)\n"
        "broker.Broker.serve = serve\n"
        "main.main()\n"
        "assert started == [False], started\n"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
