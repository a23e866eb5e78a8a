#!/usr/bin/env bash
# The GPU measurements of docs/BENCHMARK-DAEMON.md ("GPU"), in one command, on a machine with an
# NVIDIA GPU and a CUDA build of PyTorch in $PYTHON's environment (the project's other
# dependencies installed: pip install -e .):
#
#     PYTHON=.venv/bin/python bash scripts/gpu_bench.sh [OUT]      # OUT: default gpu-bench
#
# Prints, and writes as Markdown into OUT: the device; `palettenet bench --device cuda` at 0.25
# to 24 MP, both methods, in process and via the daemon, float32 and float16; the daemon with
# batching off (--max-batch 1) and on (--max-batch 8) under 8 requests at once; and a short
# training run (300 steps, batch 64, 256 x 256 crops) whose images/s are in OUT/train.txt.
# Needs no data from outside: the training photos are scikit-image's sample images.
# About 10 minutes on an H100/H200-class GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
OUT=${1:-gpu-bench}
mkdir -p "$OUT"

"$PYTHON" - <<'EOF' | tee "$OUT/device.txt"
import sys
import torch
if not torch.cuda.is_available():
    sys.exit(f"no CUDA device for torch {torch.__version__}: this script measures the GPU path")
properties = torch.cuda.get_device_properties(0)
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {properties.name}, "
      f"{properties.total_memory / 2**30:.0f} GiB")
EOF
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv \
    | tee -a "$OUT/device.txt" || true

bench() { "$PYTHON" -m backend.cli.main bench --device cuda "$@"; }
bench --sizes 0.25,1,6,12,24 --repeat 3 --precision float32 | tee "$OUT/bench-float32.md"
bench --sizes 0.25,1,6,12,24 --repeat 3 --precision float16 | tee "$OUT/bench-float16.md"
bench --sizes 1,24 --max-batch 1 --concurrent 8 | tee "$OUT/batch-off.md"
bench --sizes 1,24 --max-batch 8 --concurrent 8 | tee "$OUT/batch-on.md"

# A short training run: photos from scikit-image, prepared as for the real model.
WORK="$OUT/train-work"
rm -rf "$WORK" && mkdir -p "$WORK/photos"
"$PYTHON" - "$WORK/photos" <<'EOF'
import sys
from PIL import Image
from skimage import data
names = ["astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field",
         "retina", "colorwheel", "cat", "logo"]
for name in names:
    image = getattr(data, name)()
    if image.ndim == 3 and image.shape[2] >= 3:
        Image.fromarray(image[..., :3]).save(f"{sys.argv[1]}/{name}.png")
EOF
"$PYTHON" -m training prepare --images "$WORK/photos" --out "$WORK/data" --size 432x288 \
    > "$WORK/prepare.log"
"$PYTHON" -m training train --phase 1 --data "$WORK/data" --out "$WORK/run" --device cuda \
    --steps 300 --batch 64 --size 256 --val-every 1000 --sample-every 1000 \
    --checkpoint-every 1000 --workers 4 > "$WORK/train.log" 2>&1
"$PYTHON" - "$WORK/run/metrics.csv" <<'EOF' | tee "$OUT/train.txt"
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
speeds = sorted(float(row["images_per_s"]) for row in rows[50:])  # after warm-up
print(f"training, phase 1, batch 64, 256 x 256: median {speeds[len(speeds) // 2]:.0f} images/s "
      f"over steps 50-{len(rows)} (target >= 500)")
EOF
