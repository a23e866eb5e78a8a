#!/usr/bin/env python3
"""Set up Recolor with Palette: the backend in .venv, and the plug-ins in Krita and GIMP 3.

    python3 install.py              set up (or update) .venv, install the plug-ins
    python3 install.py --demo       ... then start the daemon, recolour the bundled photo
                                    through it to demo-recolored.png, keep serving
    python3 install.py --test       set up with the test tools and run the whole test suite
    python3 install.py --uninstall  remove the plug-ins (exactly the files installed)

The plug-ins go into every editor profile found (Krita's pykrita folder, GIMP 3's plug-ins
folder) or where --krita-dir / --gimp-dir say. Only the standard library is used here, so
any Python 3.10+ can run it.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import venv
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PLUGIN = ROOT / "plugin"
PACKAGE = "recolor_with_palette"  # the Python package both editors load
GIMP_NAME = "recolor-with-palette"  # GIMP 3: plug-ins/NAME/NAME.py
MANIFEST = "installed-files.json"  # inside the installed package: what --uninstall removes
# Pinned so that machines with this build on disk (the project's CI) use it instead of
# downloading a multi-GB CUDA build.
TORCH_VERSION = "2.13.0"


def venv_python() -> Path:
    scripts = "Scripts" if sys.platform == "win32" else "bin"
    return VENV / scripts / ("python.exe" if sys.platform == "win32" else "python")


def venv_command(name: str) -> Path:
    if sys.platform == "win32":
        return VENV / "Scripts" / f"{name}.exe"
    return VENV / "bin" / name


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


# --- where the editors look -----------------------------------------------------------------
HOME = Path.home()


def _env_path(name: str, fallback: Path) -> Path:
    value = os.environ.get(name)
    return Path(value) if value else fallback


def krita_profiles() -> list[tuple[Path, Path]]:
    """(resource folder holding pykrita/, kritarc) of every Krita profile on this machine."""
    home = Path.home()
    if sys.platform == "win32":
        candidates = [(_env_path("APPDATA", home / "AppData/Roaming") / "krita",
                       _env_path("LOCALAPPDATA", home / "AppData/Local") / "kritarc")]  # fmt: skip
    elif sys.platform == "darwin":
        library = home / "Library"
        candidates = [(library / "Application Support/krita", library / "Preferences/kritarc")]
    else:
        data = _env_path("XDG_DATA_HOME", home / ".local/share")
        config = _env_path("XDG_CONFIG_HOME", home / ".config")
        flatpak = home / ".var/app/org.kde.krita"
        candidates = [(data / "krita", config / "kritarc"),
                      (flatpak / "data/krita", flatpak / "config/kritarc")]  # fmt: skip
    found = [pair for pair in candidates if pair[0].is_dir()]
    # Krita installed but never started has no folder yet: it reads this one when it starts.
    if not found and shutil.which("krita"):
        found = candidates[:1]
    return found


def gimp_profiles() -> list[Path]:
    """GIMP 3's plug-ins folder of every GIMP 3 profile on this machine."""
    home = Path.home()
    if sys.platform == "win32":
        candidates = [_env_path("APPDATA", home / "AppData/Roaming") / "GIMP/3.0"]
    elif sys.platform == "darwin":
        candidates = [home / "Library/Application Support/GIMP/3.0"]
    else:
        config = _env_path("XDG_CONFIG_HOME", home / ".config")
        candidates = [config / "GIMP/3.0", home / ".var/app/org.gimp.GIMP/config/GIMP/3.0"]
    found = [folder for folder in candidates if folder.is_dir()]
    if not found and (shutil.which("gimp-3.0") or shutil.which("gimp-console-3.0")):
        found = candidates[:1]
    return [folder / "plug-ins" for folder in found]


# --- the editors' Pythons, for vendoring pyzmq ----------------------------------------------
def krita_python_version() -> str | None:
    """'3.11' where the installed Krita's Python can be told (the distribution's Krita links
    a libpython; Windows Krita ships a python3X.dll), else None (AppImage, macOS bundle)."""
    patterns = []
    if sys.platform.startswith("linux"):
        patterns = [
            "/usr/lib/*/kritaplugins/kritapykrita.so",
            "/usr/lib*/kritaplugins/kritapykrita.so",
        ]
    elif sys.platform == "win32":
        program_files = os.environ.get("ProgramFiles", r"C:\Program Files")
        for dll in sorted(Path(program_files, "Krita (x64)", "bin").glob("python3*.dll")):
            match = re.fullmatch(r"python3(\d+)\.dll", dll.name)
            if match:
                return f"3.{match.group(1)}"
        return None
    import glob

    for pattern in patterns:
        for library in glob.glob(pattern):
            match = re.search(rb"libpython3\.(\d+)", Path(library).read_bytes())
            if match:
                return f"3.{match.group(1).decode()}"
    return None


def gimp_python() -> str | None:
    """GIMP 3 on Linux runs Python plug-ins with the system's python3 (the shebang); the
    Windows and macOS builds bundle their own, on which PyPI's pyzmq does not load."""
    if not sys.platform.startswith("linux"):
        return None
    return shutil.which("python3", path="/usr/bin:/bin")


def python_version_of(python: str) -> str | None:
    try:
        out = subprocess.run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                             capture_output=True, text=True, timeout=30)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def has_pyzmq(python: str | None) -> bool:
    if python is None:
        return False
    try:
        return (
            subprocess.run([python, "-c", "import zmq"], capture_output=True, timeout=30).returncode
            == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


def vendor_pyzmq(target: Path, version: str | None, editor_python: str | None) -> str:
    """Put a pyzmq that the editor's Python can load into target/vendor; say what happened.
    The plug-in falls back to its built-in ZeroMQ client wherever this does not work."""
    if version is None:
        return "pyzmq not vendored: this editor's Python version is unknown (built-in client)"
    if editor_python and python_version_of(editor_python) == version and has_pyzmq(editor_python):
        return f"pyzmq: the editor's Python {version} has its own"
    ours = python_version_of(str(venv_python()))
    site = next(VENV.glob("lib/python*/site-packages"), None) or VENV / "Lib/site-packages"
    vendor = target / "vendor"
    if ours == version and (site / "zmq").is_dir():
        # The backend environment's own pyzmq is built for the same Python: copy it.
        vendor.mkdir(exist_ok=True)
        for name in ("zmq", "pyzmq.libs"):
            if (site / name).is_dir():
                shutil.copytree(site / name, vendor / name, dirs_exist_ok=True,
                                ignore=shutil.ignore_patterns("__pycache__", "tests"))  # fmt: skip
        return f"pyzmq vendored for Python {version} (from {VENV.name})"
    pip = [str(venv_python()), "-m", "pip", "install", "--disable-pip-version-check", "-q",
           "--target", str(vendor), "--only-binary=:all:", "--python-version", version,
           "--no-deps", "pyzmq"]  # fmt: skip
    if subprocess.run(pip, capture_output=True).returncode == 0:
        return f"pyzmq vendored for Python {version} (downloaded)"
    shutil.rmtree(vendor, ignore_errors=True)
    return f"pyzmq not vendored for Python {version} (download failed): built-in client"


# --- installing -----------------------------------------------------------------------------
@dataclass
class Report:
    lines: list = field(default_factory=list)

    def add(self, text: str) -> None:
        self.lines.append(text)
        print(text, flush=True)


def package_files() -> list[tuple[Path, str]]:
    """(source, path inside the installed package) of every file of the package: the
    plug-in is plugin/recolor_with_palette/ as it is, self-contained."""
    source = PLUGIN / PACKAGE
    return [(path, path.relative_to(source).as_posix()) for path in sorted(source.rglob("*"))
            if path.is_file() and "__pycache__" not in path.parts
            and path.name not in ("backend.json", MANIFEST)]  # fmt: skip


def remove_installed(package_dir: Path) -> list[str]:
    """Delete the files a previous install listed (and folders left empty); their names."""
    record = read_manifest(package_dir)
    if not record:
        return []
    base = Path(record["base"])
    removed = []
    for name in record["files"]:
        path = base / name
        if path.is_file() or path.is_symlink():
            path.unlink()
            removed.append(name)
    for name in sorted(record["folders"], key=len, reverse=True):
        folder = base / name
        if folder.is_dir():
            shutil.rmtree(folder / "__pycache__", ignore_errors=True)
            for cache in folder.rglob("__pycache__"):
                shutil.rmtree(cache, ignore_errors=True)
            if not any(folder.rglob("*")) or all(p.is_dir() for p in folder.rglob("*")):
                shutil.rmtree(folder)
    return removed


def install_package(base: Path, package_dir: Path, extra: dict, vendor_args, notes: dict) -> str:
    """Copy the package under base, plus `extra` ({path relative to base: text}); list every
    file and folder made, and `notes`, in the manifest that --uninstall reads. Returns what
    vendoring pyzmq did."""
    remove_installed(package_dir)
    made_folders = [f for f in (package_dir.parent, package_dir) if not f.exists() and f != base]
    package_dir.mkdir(parents=True, exist_ok=True)
    for source, name in package_files():
        target = package_dir / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    record = {"palettenet": str(venv_command("palettenet"))}
    (package_dir / "backend.json").write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    for name, text in extra.items():
        (base / name).parent.mkdir(parents=True, exist_ok=True)
        (base / name).write_text(text, encoding="utf-8")
        if name.endswith(".py"):
            (base / name).chmod(0o755)  # GIMP runs plug-ins as programs
    note = vendor_pyzmq(package_dir, *vendor_args) if vendor_args else ""
    relative = [p.relative_to(base).as_posix() for p in sorted(package_dir.rglob("*"))]
    files = [r for r in relative if (base / r).is_file()] + list(extra)
    files.append((package_dir / MANIFEST).relative_to(base).as_posix())
    folders = [r for r in relative if (base / r).is_dir()]
    folders += [f.relative_to(base).as_posix() for f in made_folders]
    manifest = {"base": str(base), "files": files, "folders": folders, **notes}
    (package_dir / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return note


KRITA_DESKTOP = PLUGIN / "krita" / f"{PACKAGE}.desktop"
GIMP_ENTRY = PLUGIN / "gimp" / f"{GIMP_NAME}.py"


def install_krita(resources: Path, kritarc: Path, report: Report, vendor: bool) -> None:
    pykrita = resources / "pykrita"
    desktop = {f"{PACKAGE}.desktop": KRITA_DESKTOP.read_text(encoding="utf-8")}
    enabled = set_kritarc_enabled(kritarc, True)
    previous = read_manifest(pykrita / PACKAGE)
    # Remember whether this install (or an earlier one of ours) put the line in kritarc.
    ours = enabled or bool(previous.get("kritarc_enabled_by_install"))
    notes = {"kritarc": str(kritarc), "kritarc_enabled_by_install": ours}
    vendor_args = (krita_python_version(), None) if vendor else None
    note = install_package(pykrita, pykrita / PACKAGE, desktop, vendor_args, notes)
    report.add(f"Krita: installed into {pykrita}" + (f"; {note}" if note else ""))
    state = "enabled" if enabled else "already enabled"
    report.add(f"Krita: plug-in {state} in {kritarc}. Restart Krita, then open "
               "Settings > Dockers > Recolor with Palette (or Tools > Scripts).")  # fmt: skip


def install_gimp(plug_ins: Path, report: Report, vendor: bool) -> None:
    folder = plug_ins / GIMP_NAME
    entry = {f"{GIMP_NAME}/{GIMP_NAME}.py": GIMP_ENTRY.read_text(encoding="utf-8")}
    python = gimp_python()
    vendor_args = (python_version_of(python) if python else None, python) if vendor else None
    note = install_package(plug_ins, folder / PACKAGE, entry, vendor_args, {})
    report.add(f"GIMP 3: installed into {folder}" + (f"; {note}" if note else ""))
    report.add("GIMP 3: restart GIMP, then use Colors > Recolor with Palette...")


def read_manifest(package_dir: Path) -> dict:
    try:
        return json.loads((package_dir / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def uninstall(krita_resources: list, gimp_plug_ins: list, report: Report) -> None:
    for resources in krita_resources:
        package_dir = resources / "pykrita" / PACKAGE
        manifest = read_manifest(package_dir)
        removed = remove_installed(package_dir)
        if removed:
            report.add(f"Krita: removed {len(removed)} files from {resources / 'pykrita'}")
        kritarc = manifest.get("kritarc")
        if manifest.get("kritarc_enabled_by_install") and kritarc:
            if set_kritarc_enabled(Path(kritarc), False):
                report.add(f"Krita: plug-in entry removed from {kritarc}")
    for plug_ins in gimp_plug_ins:
        removed = remove_installed(plug_ins / GIMP_NAME / PACKAGE)
        if removed:
            report.add(f"GIMP 3: removed {len(removed)} files from {plug_ins / GIMP_NAME}")


ENABLE_KEY = f"enable_{PACKAGE}"


def set_kritarc_enabled(kritarc: Path, enabled: bool) -> bool:
    """Add (or remove) `enable_recolor_with_palette=true` under [python] in kritarc, which
    Krita needs before it loads a new Python plug-in. Other lines are kept exactly as they
    are (a config parser would rewrite the whole file). Returns whether the file changed."""
    try:
        lines = kritarc.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        lines = []
    wanted = f"{ENABLE_KEY}=true"
    section, start, found = None, None, None
    for index, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            section = stripped
            if section == "[python]":
                start = index
        elif section == "[python]" and stripped.split("=", 1)[0].strip() == ENABLE_KEY:
            found = index
    if enabled:
        if found is not None and lines[found].strip() == wanted:
            return False
        if found is not None:
            lines[found] = wanted
        elif start is not None:
            lines.insert(start + 1, wanted)
        else:
            lines += ([""] if lines and lines[-1].strip() else []) + ["[python]", wanted]
    else:
        if found is None:
            return False
        del lines[found]
    kritarc.parent.mkdir(parents=True, exist_ok=True)
    kritarc.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return True


def install_plugins(args, report: Report) -> None:
    krita = [(args.krita_dir, default_kritarc())] if args.krita_dir else krita_profiles()
    gimp = [args.gimp_dir] if args.gimp_dir else gimp_profiles()
    if args.uninstall:
        uninstall([resources for resources, _ in krita], gimp, report)
        if not report.lines:
            report.add("nothing of Recolor with Palette was installed there")
        return
    if not krita:
        report.add("Krita: no profile found (pass --krita-dir to choose the folder)")
    for resources, kritarc in krita:
        install_krita(resources, kritarc, report, vendor=not args.no_vendor)
    if not gimp:
        report.add("GIMP 3: no profile found (pass --gimp-dir to choose the plug-ins folder)")
    for plug_ins in gimp:
        install_gimp(plug_ins, report, vendor=not args.no_vendor)


def default_kritarc() -> Path:
    if sys.platform == "win32":
        return _env_path("LOCALAPPDATA", Path.home() / "AppData/Local") / "kritarc"
    if sys.platform == "darwin":
        return Path.home() / "Library/Preferences/kritarc"
    return _env_path("XDG_CONFIG_HOME", Path.home() / ".config") / "kritarc"


# --- demo and main --------------------------------------------------------------------------
def warm_up(python: Path):
    """Compile the backend's compiled steps into their cache on disk now (Engine.warm_up:
    about 10 s once), not during the artist's first Apply or preview."""
    print("compiling the backend's fast paths (once, about 10 s)")
    code = ("from backend import DEFAULT_WEIGHTS; from backend.service.engine import Engine; "
            "Engine(DEFAULT_WEIGHTS).warm_up()")  # fmt: skip
    try:
        run(python, "-c", code)
    except subprocess.CalledProcessError:  # a slower first request, not a broken install
        print("warning: the warm-up failed; the first recolour will compile instead")


def demo(python: Path):
    """The main job: the daemon on the plug-ins' address, the bundled photo recoloured through
    it to demo-recolored.png, then the daemon keeps serving (backend/demo.py)."""
    try:
        subprocess.run([str(python), "-m", "backend.cli.demo", str(ROOT / "demo-recolored.png")],
                       check=True, cwd=ROOT)  # fmt: skip
    except KeyboardInterrupt:
        pass
    except subprocess.CalledProcessError as error:
        sys.exit(f"demo failed: {error}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--test", action="store_true", help="install test tools and run the tests")
    parser.add_argument(
        "--demo", action="store_true", help="then run the daemon and recolour a demo photo"
    )
    parser.add_argument("--krita-dir", type=Path, help="Krita's resource folder (holds pykrita/)")
    parser.add_argument("--gimp-dir", type=Path, help="GIMP 3's plug-ins folder")
    parser.add_argument("--uninstall", action="store_true", help="remove the installed plug-ins")
    parser.add_argument("--plugins-only", action="store_true", help="skip the .venv set-up")
    parser.add_argument("--no-vendor", action="store_true", help="do not add pyzmq to plug-ins")
    parser.epilog = "With --test, every other argument goes to pytest: --test -k palette"
    # Whatever install.py does not know goes to pytest, in its order (-k palette, -x,
    # tests/test_cli.py): the README shows `install.py --test -k palette`.
    args, pytest_args = parser.parse_known_args()
    if pytest_args and not args.test:
        parser.error(f"unrecognized arguments: {' '.join(pytest_args)}")
    report = Report()
    if args.uninstall:
        install_plugins(args, report)
        return
    python = venv_python()
    if not args.plugins_only or not python.exists():
        try:
            python = set_up(with_tests=args.test)
        except subprocess.CalledProcessError as error:
            sys.exit(f"set-up failed: {error}")
    if args.test:
        sys.exit(subprocess.call([str(python), "-m", "pytest", *pytest_args], cwd=ROOT))
    if not args.plugins_only:
        warm_up(python)
    report.add(f"backend: {venv_command('palettenet')} (the plug-ins start it when needed)")
    install_plugins(args, report)
    print("\nsummary:\n  " + "\n  ".join(report.lines))
    if args.demo:
        demo(python)


if __name__ == "__main__":
    main()
