"""The plug-in's own time for a big wide-gamut Krita layer, with and without numpy:

    .venv/bin/python tests/bench_krita_wide_gamut.py --megapixels 12

Runs the real Krita (Debian's krita package, headless: kritarunner offscreen) with the
plug-in installed by install.py into a temporary HOME, on a layer in a wide-gamut profile
(default Rec2020-elle-V4-g10.icc) at 8-bit, 16-bit and float. For each it times the
plug-in's side of Apply (reading the layer and writing the result layer, libkis calls
included; no daemon: what was read is written back) two ways: "icc", as it works now (the
layer's bytes and ICC profile go to the daemon, which converts with LittleCMS), and
"krita", the fallback (Krita converts every band to linear-sRGB floats and back on the GUI
thread, as before). Krita's Python runs once as Debian ships it (no numpy) and once with
this checkout's numpy on its path. Then the daemon's own conversion time (LittleCMS, both
ways) for the same layer. Goal (issues 15 and 16): the plug-in's own time <= 2 s at 12 MP on
a Python without numpy, and <= 1.5 x its time with numpy. Times vary with the machine's
load: compare numbers from one run.
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

from test_plugin_krita_real import install_into, krita_env  # noqa: E402


def krita_times(home: Path, env: dict, config: dict, folder: Path, with_numpy: bool) -> dict:
    """Run the Krita job once; its result.json."""
    paths = [str(TESTS)]
    if with_numpy:  # numpy alone from this checkout's environment (same Python version)
        import numpy

        shelf = folder / "numpy-only"
        shelf.mkdir(exist_ok=True)
        source = Path(numpy.__file__).parent
        for item in [source, *source.parent.glob("numpy.libs")]:
            if not (shelf / item.name).exists():
                (shelf / item.name).symlink_to(item)
        paths.append(str(shelf))
    result = folder / f"result-{with_numpy}.json"
    config_file = folder / f"config-{with_numpy}.json"
    config_file.write_text(json.dumps({**config, "result": str(result)}))
    run = subprocess.run(
        ["timeout", "1800", "kritarunner", "-s", "krita_wide_gamut_bench_job", "-f", "main",
         str(config_file)],
        env=krita_env(env, QT_QPA_PLATFORM="offscreen", PYTHONPATH=os.pathsep.join(paths)),
        capture_output=True, text=True,
    )  # fmt: skip
    if not result.exists():
        raise RuntimeError(f"Krita wrote no result:\n{run.stdout[-2000:]}\n{run.stderr[-3000:]}")
    answer = json.loads(result.read_text())
    if answer["error"]:
        raise RuntimeError(answer["error"])
    return answer


def daemon_times(width: int, height: int, profile_name: str) -> list:
    """LittleCMS both ways in the daemon (backend/service/icc.py) at each depth: seconds."""
    import numpy as np

    from backend.core.pixels import FORMATS
    from backend.service import icc

    profile = Path("/usr/share/color/icc/krita", profile_name).read_bytes()
    rows = []
    for name in ("BGRA8", "BGRA16", "RGBAF32"):
        fmt = FORMATS[name]
        pixels = np.zeros((height, width, 4), fmt.dtype)
        pixels[...] = (np.arange(width * 4).reshape(width, 4) % 97 / 97 * fmt.maximum).astype(
            fmt.dtype
        )
        started = time.perf_counter()
        linear = icc.to_linear_srgb(pixels, fmt, profile)
        there = time.perf_counter() - started
        started = time.perf_counter()
        icc.from_linear_srgb(linear, fmt, profile, np.empty_like(pixels))
        rows.append((name, there, time.perf_counter() - started))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--megapixels", type=float, default=12, help="layer size (4:3)")
    parser.add_argument("--depths", default="U8,U16,F32", help="Krita colour depths")
    parser.add_argument("--profile", default="Rec2020-elle-V4-g10.icc", help="a profile "
                        "Krita ships (its name), e.g. LargeRGB-elle-V2-g22.icc")  # fmt: skip
    parser.add_argument("--ways", default="icc,krita", help="icc (now), krita (the fallback)")
    args = parser.parse_args()
    if shutil.which("kritarunner") is None:
        print("needs Krita (apt-get install krita python3-pyqt5)")
        return 2
    width = round((args.megapixels * 1e6 * 4 / 3) ** 0.5)
    height = round(width * 3 / 4)
    with tempfile.TemporaryDirectory(prefix="krita-wide-") as name:
        folder = Path(name)
        home = folder / "home"
        env = install_into(home)
        config = {"pykrita": str(home / ".local/share/krita/pykrita"), "width": width,
                  "height": height, "depths": args.depths.split(","),
                  "profile": args.profile, "ways": args.ways.split(",")}  # fmt: skip
        results = {numpy: krita_times(home, env, config, folder, numpy) for numpy in (False, True)}
    print(
        f"The plug-in's own time for a {width} x {height} ({width * height / 1e6:.1f} MP) "
        f"layer in {args.profile} (read + write, libkis calls included, seconds):"
    )
    for numpy, result in results.items():
        for record in result["records"]:
            assert record["numpy_importable"] == numpy
            total = record["read_s"] + record["write_s"]
            sent = f"{record['sent_depth']}{' linear' if record['sent_linear'] else ''}"
            how = f"profile {record['profile_bytes']} B found in {record['profile_s']:.3f} s"
            print(f"  {record['depth']:>3} {record['way']:>5} {'with' if numpy else 'no':>4} "
                  f"numpy: read {record['read_s']:6.2f}  write {record['write_s']:6.2f}  "
                  f"total {total:6.2f}  (sent as {sent}; "
                  f"{how if record['way'] == 'icc' else 'converted by Krita'})")  # fmt: skip
    print("The daemon's LittleCMS conversion of the same layer (to linear sRGB / back, s):")
    for name, there, back in daemon_times(width, height, args.profile):
        print(f"  {name:>8}: {there:.2f} / {back:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
