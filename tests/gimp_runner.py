"""Where the real GIMP 3 is, and how to run it: on the host (Debian 13 and later package it) or
in a Debian 13 root made by `.ci/gimp3-root ROOT` on a Debian 12 host, through chroot.

The root is found from $GIMP3_ROOT (default .ci-work/gimp3-root in the checkout, where .ci/run
makes it). /tmp and the checkout are bind-mounted at the same paths inside the root, so paths
handed to GIMP mean the same thing inside and out, and the chroot shares the host's network
namespace, so a daemon on the host's loopback is reachable from the plug-in.

When GIMP cannot be found the real-GIMP tests fail with the reason where
PALETTENET_REQUIRE_EDITORS=1 (as .ci/run sets it), and are skipped with the reason elsewhere
(a developer's machine without root cannot make the Debian 13 root).
"""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GIMP3_ROOT = Path(os.environ.get("GIMP3_ROOT", ROOT / ".ci-work/gimp3-root"))


def _host_gimp() -> str | None:
    return shutil.which("gimp-console-3.0")


def _chroot_ready() -> bool:
    return (GIMP3_ROOT / ".complete").exists() and (GIMP3_ROOT / "proc/self").exists()


def why_no_gimp() -> str | None:
    """None when a GIMP 3 can be run, else why not and how to get one."""
    if _host_gimp() or _chroot_ready():
        return None
    try:
        debian = Path("/etc/debian_version").read_text().strip()
    except OSError:
        debian = "?"
    return (f"no GIMP 3: gimp-console-3.0 is not on PATH and no ready Debian 13 root at "
            f"{GIMP3_ROOT} (Debian {debian}). As root: `.ci/gimp3-root {GIMP3_ROOT}` makes one "
            f"(about 3 min, 1 GB), or `apt-get install gimp python3-gi` on Debian 13+")  # fmt: skip


def require_gimp():
    """Fail (CI) or skip (elsewhere) with the reason when there is no GIMP 3."""
    reason = why_no_gimp()
    if reason is None:
        return
    if os.environ.get("PALETTENET_REQUIRE_EDITORS") == "1":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def gimp_command(program: str, home: Path, display: str | None = None) -> list[str]:
    """The command line that runs `program` (gimp-console-3.0, gimp-3.0) with HOME=home."""
    env = [f"HOME={home}", f"XDG_CONFIG_HOME={home}/.config", "LANG=C.UTF-8",
           "NO_AT_BRIDGE=1", "GIMP3_DIRECTORY=" + str(home / ".config/GIMP/3.0")]  # fmt: skip
    if display:
        env.append(f"DISPLAY={display}")
    if _host_gimp():
        return ["env", *env, program]
    return ["chroot", str(GIMP3_ROOT), "env", "-i", "PATH=/usr/bin:/bin", *env, program]


def run_batch(script: str, home: Path, timeout_s: float = 600) -> subprocess.CompletedProcess:
    """Run a Python batch script in gimp-console-3.0 (non-interactive GIMP, no display)."""
    command = gimp_command("gimp-console-3.0", home) + [
        "-i", "--batch-interpreter=python-fu-eval", "-b", "-", "--quit"]  # fmt: skip
    return subprocess.run(command, input=script, capture_output=True, text=True,
                          timeout=timeout_s)  # fmt: skip


def gimp_crashed(stderr: str) -> bool:
    return any(sign in stderr for sign in ("GIMP crashed", "LibGimpBase-ERROR", "fatal error",
                                           "Segmentation fault", "Traceback"))  # fmt: skip
