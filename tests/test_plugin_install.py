"""install.py's plug-in part, into temporary profile folders (HOME points at a temporary
folder): files land where Krita and GIMP 3 look, Krita's kritarc enables the plug-in, a
second install changes nothing, --uninstall removes exactly what was installed, and the
installed package works with nothing but the standard library."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from servers import Server

ROOT = Path(__file__).resolve().parents[1]
USER_KRITARC = "[General]\nShowRootLayer=false\n\n[python]\nenable_scripter=true\n"


def snapshot(folder: Path) -> dict:
    """Every file under folder (relative path -> content hash), plus every folder."""
    state = {}
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder).as_posix()
        state[relative] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "/"
    return state


def install(home: Path, *args) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if not key.startswith("XDG_")}
    env["HOME"] = str(home)
    command = [sys.executable, str(ROOT / "install.py"), "--plugins-only", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=True)


@pytest.fixture
def home(tmp_path):
    """A user who has run Krita and GIMP 3 once, has another plug-in and a kritarc."""
    home = tmp_path / "home"
    (home / ".local/share/krita/pykrita/other_plugin").mkdir(parents=True)
    (home / ".local/share/krita/pykrita/other_plugin/__init__.py").write_text("# someone else's\n")
    (home / ".config/GIMP/3.0/plug-ins").mkdir(parents=True)
    (home / ".config/kritarc").write_text(USER_KRITARC)
    return home


def test_plugins_land_where_the_editors_look(home):
    run = install(home, "--no-vendor")
    pykrita = home / ".local/share/krita/pykrita"
    package = pykrita / "recolor_with_palette"
    desktop = (pykrita / "recolor_with_palette.desktop").read_text()
    assert "X-KDE-Library=recolor_with_palette" in desktop
    assert "ServiceTypes=Krita/PythonPlugin" in desktop
    for name in ("__init__.py", "krita_plugin.py", "client.py", "transport.py", "zmtp.py",
                 "wire.py", "designer_palettes.json", "backend.json"):  # fmt: skip
        assert (package / name).is_file(), name
    record = json.loads((package / "backend.json").read_text())
    assert Path(record["palettenet"]).exists()  # the backend the plug-in may start
    kritarc = (home / ".config/kritarc").read_text()
    assert kritarc.startswith(USER_KRITARC.rstrip("\n").split("\n\n")[0])  # kept as it was
    python = kritarc[kritarc.index("[python]") :].splitlines()
    assert "enable_recolor_with_palette=true" in python and "enable_scripter=true" in python
    gimp = home / ".config/GIMP/3.0/plug-ins/recolor-with-palette"
    entry = gimp / "recolor-with-palette.py"
    assert os.access(entry, os.X_OK) and entry.read_text().startswith("#!/usr/bin/env python3")
    assert (gimp / "recolor_with_palette/gimp_plugin.py").is_file()
    summary = run.stdout[run.stdout.index("summary:") :]
    assert "Krita: installed into" in summary and "GIMP 3: installed into" in summary
    assert "Restart Krita" in summary


def test_exactly_the_package_is_installed(home):
    """The package folder as it is in the repository (it is self-contained), plus the two
    files install.py writes; next to it only the Krita .desktop or the GIMP entry script."""
    install(home, "--no-vendor")
    source = ROOT / "plugin/recolor_with_palette"
    package = {p.relative_to(source).as_posix() for p in source.rglob("*")
               if p.is_file() and "__pycache__" not in p.parts}  # fmt: skip
    package |= {"backend.json", "installed-files.json"}
    pykrita = home / ".local/share/krita/pykrita"
    gimp = home / ".config/GIMP/3.0/plug-ins/recolor-with-palette"
    for folder, outside in (
        (pykrita, {"recolor_with_palette.desktop", "other_plugin/__init__.py"}),
        (gimp, {"recolor-with-palette.py"}),
    ):
        files = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
        assert files == {f"recolor_with_palette/{name}" for name in package} | outside
        for name in package - {"backend.json", "installed-files.json"}:
            installed = (folder / "recolor_with_palette" / name).read_bytes()
            assert installed == (source / name).read_bytes(), name
        manifest = json.loads((folder / "recolor_with_palette/installed-files.json").read_text())
        base = Path(manifest["base"])
        listed = {(base / name).relative_to(folder).as_posix() for name in manifest["files"]}
        assert listed == files - {"other_plugin/__init__.py"}  # what --uninstall removes


def test_second_install_is_identical_and_uninstall_removes_exactly_it(home):
    before = snapshot(home)
    install(home)
    first = snapshot(home)
    install(home)
    assert snapshot(home) == first  # idempotent: same files, same contents, no second line
    assert (home / ".config/kritarc").read_text().count("enable_recolor_with_palette") == 1
    run = install(home, "--uninstall")
    assert snapshot(home) == before  # the other plug-in and the kritarc as they were
    assert "removed" in run.stdout


def test_a_user_enabled_entry_survives_uninstall(home):
    kritarc = home / ".config/kritarc"
    kritarc.write_text(USER_KRITARC + "enable_recolor_with_palette=true\n")
    install(home, "--no-vendor")
    install(home, "--uninstall")
    assert "enable_recolor_with_palette=true" in kritarc.read_text()


def test_custom_folders_and_no_profiles(tmp_path):
    home = tmp_path / "empty-home"
    home.mkdir()
    run = install(home, "--no-vendor", "--krita-dir", str(tmp_path / "k"),
                  "--gimp-dir", str(tmp_path / "g"))  # fmt: skip
    assert (tmp_path / "k/pykrita/recolor_with_palette/__init__.py").is_file()
    assert (tmp_path / "g/recolor-with-palette/recolor-with-palette.py").is_file()
    assert "Krita: installed into" in run.stdout
    install(home, "--uninstall", "--krita-dir", str(tmp_path / "k"), "--gimp-dir",
            str(tmp_path / "g"))  # fmt: skip
    assert not (tmp_path / "k/pykrita/recolor_with_palette").exists()
    assert not (tmp_path / "g/recolor-with-palette").exists()


def test_installed_package_talks_to_a_daemon_with_only_the_standard_library(home, tmp_path):
    install(home, "--no-vendor")
    pykrita = home / ".local/share/krita/pykrita"
    server = Server("serve", "--bind", "tcp://127.0.0.1:*", "--device", "cpu",
                    "--weights", tmp_path / "none.pt")  # fmt: skip
    script = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "from recolor_with_palette.client import Client, Connection\n"
        "from recolor_with_palette import transport\n"
        "assert 'zmq' not in sys.modules\n"
        "reply = Client(Connection(sys.argv[2])).ping()\n"
        "print(reply['protocol'], transport.open_socket(sys.argv[2]).implementation)\n"
    )
    try:
        # -I -S: no site-packages at all, as in an editor whose Python has no pyzmq
        command = [sys.executable, "-I", "-S", "-c", script, str(pykrita), server.address]
        run = subprocess.run(command, capture_output=True, text=True, timeout=60)
    finally:
        server.stop()
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["palettenet/1", "builtin"]
