"""How long does Krita's GUI freeze while the docker applies a recolour? Prints the longest
stall of Krita's GUI thread from pressing Apply until the new layer is there (plus one second
of Krita's own redraw), for a big 8-bit layer and a big 16-bit one:

    .venv/bin/python tests/bench_krita_stall.py --megapixels 48

Runs the real Krita (Debian's krita package) under its own Xvfb, with the plug-in installed
by install.py into a temporary HOME, against a daemon started from this checkout (method
chang2015 by default: no weights needed; the daemon's time does not stall Krita). The
measuring side is tests/krita_gui_driver/recolor_stall_bench (a 10 ms QTimer on the GUI
thread). Goal (issue 15): no stall over 0.5 s at 48 MP. For scale, the same session also
times Krita's own Layer > Duplicate Layer of the same layer and Layer > New > Paint Layer.
--variant compares other ways of adding the result layer (added empty then filled, added
hidden then shown, with or without refreshProjection); each line says whether the canvas
showed the result. Stalls depend on the machine's load: compare numbers from one run.
Needs Krita, Xvfb and a few GB of memory (a 48 MP 16-bit layer is 384 MB in Krita, and the
plug-in and daemon hold copies).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
sys.path[:0] = [str(ROOT), str(TESTS)]

from conftest import _accepts, free_display  # noqa: E402
from servers import Server  # noqa: E402
from test_plugin_krita_real import krita_env  # noqa: E402


def install(home: Path, env: dict, address: str, method: str) -> None:
    """The plug-in as install.py installs it, the bench driver beside it, both enabled."""
    subprocess.run([sys.executable, str(ROOT / "install.py"), "--plugins-only",
                    "--krita-dir", str(home / ".local/share/krita"),
                    "--gimp-dir", str(home / "gimp-plug-ins")],
                   env=env, check=True, capture_output=True, timeout=300)  # fmt: skip
    pykrita = home / ".local/share/krita/pykrita"
    driver = TESTS / "krita_gui_driver"
    shutil.copytree(driver / "recolor_stall_bench", pykrita / "recolor_stall_bench")
    shutil.copy(driver / "recolor_stall_bench.desktop", pykrita)
    shutil.copy(driver / "recolor_driver_base.py", pykrita)
    kritarc = home / ".config/kritarc"
    text = kritarc.read_text().replace("[python]\n", "[python]\nenable_recolor_stall_bench=true\n")
    text += (f"\n[RecolorWithPalette]\naddress={address}\nmethod={method}\nauto_start=false\n"
             "timeout_s=1200\n")  # fmt: skip
    kritarc.write_text(text)


def start_xvfb() -> tuple[subprocess.Popen, str]:
    number = free_display()
    server = subprocess.Popen(["Xvfb", f":{number}", "-screen", "0", "1600x1000x24",
                               "-nolisten", "tcp"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 20
    while not (Path(f"/tmp/.X11-unix/X{number}").exists() and _accepts(f":{number}")):
        if time.monotonic() > deadline or server.poll() is not None:
            server.kill()
            raise RuntimeError("Xvfb did not start")
        time.sleep(0.1)
    return server, f":{number}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--megapixels", type=float, default=48, help="canvas size (4:3)")
    parser.add_argument("--depths", default="U8,U16", help="Krita colour depths, comma-separated")
    parser.add_argument("--method", default="chang2015", choices=["chang2015", "palettenet"])
    parser.add_argument("--profile", default="", help="an ICC profile Krita knows, e.g. "
                        "Rec2020-elle-V4-g10.icc (the plug-in converts it through Krita); "
                        "default: Krita's own for the depth")  # fmt: skip
    parser.add_argument("--timeout", type=float, default=1800, help="seconds for all cases")
    parser.add_argument("--variant", default="plugin", help="how the result layer is added: "
                        "plugin (the plug-in's code), or one of the bench driver's other ways "
                        "(recolor_stall_bench.VARIANTS: detached, attached, attached-norefresh, "
                        "hidden, hidden-refresh), to compare them")  # fmt: skip
    args = parser.parse_args()
    if shutil.which("krita") is None or shutil.which("Xvfb") is None:
        print("needs Krita and Xvfb (apt-get install krita python3-pyqt5 xvfb)")
        return 2
    width = round((args.megapixels * 1e6 * 4 / 3) ** 0.5)
    height = round(width * 3 / 4)
    cases = [{"width": width, "height": height, "depth": depth, "profile": args.profile}
             for depth in args.depths.split(",")]  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="krita-stall-") as folder:
        home = Path(folder) / "home"
        env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
               "XDG_DATA_HOME": str(home / ".local/share")}  # fmt: skip
        daemon = Server("serve", "--bind", "tcp://127.0.0.1:*", "--device", "cpu",
                        "--max-pixels", str(width * height + 1))  # fmt: skip
        xvfb, display = start_xvfb()
        try:
            install(home, env, daemon.address, args.method)
            result_file = Path(folder) / "result.json"
            config = Path(folder) / "config.json"
            config.write_text(json.dumps({"result": str(result_file), "cases": cases,
                                          "variant": args.variant}))  # fmt: skip
            run = subprocess.run(
                ["timeout", "-k", "10", str(args.timeout), "krita", "--nosplash"],
                env=krita_env(env, DISPLAY=display, RECOLOR_STALL_BENCH=str(config)),
                capture_output=True, text=True,
            )  # fmt: skip
            result = json.loads(result_file.read_text()) if result_file.exists() else {}
        finally:
            xvfb.terminate()
            daemon.stop()
    profile = f", {args.profile}" if args.profile else ""
    print(f"Krita GUI stalls during Apply ({args.method}, {args.variant}), canvas {width} x "
          f"{height} ({width * height / 1e6:.1f} MP){profile}:")  # fmt: skip
    for case in result.get("cases", []):
        print(
            f"  {case['depth']:>4}: longest stall {case['longest_stall_s']:.3f} s; "
            f"Apply took {case['apply_s']:.1f} s; {case['status']}; the canvas "
            f"{'shows' if case['canvas_shows_result'] else 'does NOT show'} the result"
        )
        if case["calls_over_20ms"]:
            print(
                "        libkis calls over 20 ms: "
                + ", ".join(f"{what} {seconds:.3f} s" for what, seconds in case["calls_over_20ms"])
            )
        print(f"        Krita's own Layer > Duplicate Layer of it, same session: longest stall "
              f"{case['krita_duplicate_layer_stall_s']:.3f} s; Layer > New > Paint Layer "
              f"(empty): {case['krita_new_layer_stall_s']:.3f} s")  # fmt: skip
        for gap, status in case["stalls_over_100ms"]:
            print(f"        {gap:.3f} s  (status then: {status})")
    if "error" in result or not result.get("done"):
        print(f"the benchmark did not finish: {result.get('error')}\nkrita exit "
              f"{run.returncode}\n{run.stderr[-3000:]}")  # fmt: skip
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
