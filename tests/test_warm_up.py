"""Engine.warm_up (run by install.py): the compiled steps land in Numba's disk cache, so a
user's first recolour does not wait for the compiler (qa16: 5-12 s more)."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WARM_UP = (
    "from backend import DEFAULT_WEIGHTS; from backend.service.engine import Engine; "
    "Engine(DEFAULT_WEIGHTS).warm_up()"
)


def test_warm_up_fills_the_compiled_cache(tmp_path):
    cache = tmp_path / "numba-cache"
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache)}
    subprocess.run([sys.executable, "-c", WARM_UP], cwd=ROOT, env=env, check=True, timeout=600)
    cached = {path.name.split("-")[0] for path in cache.rglob("*.nbi")}
    # every compiled module's functions: colour counting, the local fit and resize, the
    # 8-bit transfer
    for name in ("colorcount._scatter", "colorcount._histogram_sums", "fullres._fit_rgb_band",
                 "fullres._visible_sums", "affine_u8._affine_band"):  # fmt: skip
        assert name in cached, sorted(cached)
