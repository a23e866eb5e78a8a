"""Where the auto-started daemon's log goes (plugin/recolor_with_palette/autostart.py): a
folder of the user's own (0700), the log readable by the user only (0600), fresh per start,
never the shared temporary folder where another user could read it or plant a link."""

import os
import stat
import sys
from pathlib import Path

import pytest

from plugin.recolor_with_palette.autostart import Launcher, log_path
from plugin.recolor_with_palette.client import Client, Connection
from plugin.recolor_with_palette.errors import RecolorError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_plugin_client import free_port, write_record  # noqa: E402


def nowhere() -> Client:
    return Client(Connection(f"tcp://127.0.0.1:{free_port()}", quick_timeout_s=0.3))


def test_the_log_is_in_the_users_state_folder():
    assert log_path({"HOME": "/home/ann", "XDG_STATE_HOME": "/home/ann/st"}, "linux") == Path(
        "/home/ann/st/recolor-with-palette/daemon.log"
    )
    expected = Path("/home/ann/.local/state/recolor-with-palette/daemon.log")
    assert log_path({"HOME": "/home/ann"}, "linux") == expected
    # A relative XDG_STATE_HOME is invalid (XDG base directory spec): ignored.
    assert log_path({"HOME": "/home/ann", "XDG_STATE_HOME": "st"}, "linux") == expected
    assert log_path({"HOME": "/Users/ann"}, "darwin") == Path(
        "/Users/ann/Library/Logs/recolor-with-palette/daemon.log"
    )
    assert log_path({"HOME": "C:/Users/ann", "LOCALAPPDATA": "C:/Users/ann/AppData/Local"},
                    "win32").parts[-2:] == ("recolor-with-palette", "daemon.log")  # fmt: skip
    assert "tmp" not in str(log_path()).split(os.sep)[:2]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_a_start_writes_a_fresh_private_log_in_a_private_folder(tmp_path):
    script = tmp_path / "palettenet"
    script.write_text("#!/bin/sh\necho 'cannot load the model: disk full' >&2\nexit 3\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    log = log_path({"HOME": str(tmp_path / "home")}, "linux")
    log.parent.mkdir(parents=True)
    log.parent.chmod(0o755)  # an older, laxer folder is made private
    log.write_text("an old start's output\n")
    launcher = Launcher(write_record(tmp_path, str(script)), log)
    old_umask = os.umask(0)  # even under a permissive umask
    try:
        with pytest.raises(RecolorError) as caught:
            launcher.ensure_running(nowhere(), timeout_s=20)
    finally:
        os.umask(old_umask)
    assert caught.value.code == "start_failed" and str(log) in str(caught.value)
    assert log.read_text() == "cannot load the model: disk full\n"  # fresh per start
    assert stat.S_IMODE(log.parent.stat().st_mode) == 0o700
    log.unlink()
    with pytest.raises(RecolorError):
        launcher.ensure_running(nowhere(), timeout_s=20)
    assert stat.S_IMODE(log.stat().st_mode) == 0o600  # a new log: the user's only
