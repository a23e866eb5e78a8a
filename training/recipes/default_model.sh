#!/usr/bin/env bash
# How the shipped default model (backend/data/palettenet.pt) was trained: one GPU, about
# nine minutes of wall time in all, every stage through `python -m training`.
#
#   training/recipes/default_model.sh PHOTOS WORK OUT [SECONDS]
#
# PHOTOS  the photo folder with its SOURCES.tsv (../shared/datasets/photos)
# WORK    scratch folder (dataset ~1.5 GB, run folders)
# OUT     where the results go: weight files (half precision), metrics, sample grids, logs
# SECONDS wall-clock budget for preparing + both phases (default 480); the training stages
#         get fixed shares of what preparing leaves and stop at a step boundary
#         (--max-minutes), so the steps each run reached are in its metrics.csv and weights.
#
# Stages:
#  1. prepare: 18 hue shifts + 6 local (1-2 colours) + 6 multi (3-6 colours) edits per photo,
#     split by source package (validation lxqt, test lomiri + plasma, train the rest).
#  2. phase 1 (Euclidean), three runs side by side on the one GPU:
#       st-mixed  source+target, palette-transfer base, hue=0.4,local=0.3,multi=0.3
#       st-hue    source+target, palette-transfer base, hue=0.7,local=0.3 (no multi edits)
#       t-mixed   target only, no base (the paper's network), hue=0.4,local=0.3,multi=0.3
#  3. the validation split (never the test split) picks the better source+target mix:
#     lowest sum of the B1, B2 and B3 means of `training evaluate`.
#  4. phase 2 (adversarial) from that run and from t-mixed, side by side (the model options
#     come with the --init weights).
#  5. `training evaluate` of every model on the validation split, and of the classical
#     baselines on the test split, while phase 2 runs; half-precision exports to OUT.
set -euo pipefail
PHOTOS=${1:?photo folder}; WORK=${2:?work folder}; OUT=${3:?output folder}
BUDGET=${4:-480}
export PYTHONUNBUFFERED=1
began=$(date +%s)
elapsed() { echo $(( $(date +%s) - began )); }
DEVICE=${DEVICE:-cuda}
mkdir -p "$WORK" "$OUT"
CPUS=$(nproc)
# Whatever happens, OUT gets the logs, metrics and sample grids so far.
trap 'tar -czf "$OUT/runs.tar.gz" -C "$WORK" --exclude="*.pt" --exclude=photos-432 . || true' EXIT

DATA=$WORK/photos-432
if [ ! -f "$DATA/meta.json" ]; then
  python -m training prepare --images "$PHOTOS" --out "$DATA" \
    --groups "$PHOTOS/SOURCES.tsv" --validation-groups lxqt --test-groups lomiri,plasma \
    --variants 18 --local-variants 6 --multi-variants 6 --workers "$CPUS" 2>&1 \
    | tr '\r' '\n' | grep -v '^preparing' | tee "$OUT/prepare.log"
fi
echo "prepared at $(elapsed) s"

# What preparing left, less ~70 s for evaluation and export, split 60:40 between the phases.
left=$(( BUDGET - $(elapsed) - 70 ))
phase1=$(python -c "print(round($left * 0.6 / 60, 2))")
phase2=$(python -c "print(round($left * 0.4 / 60, 2))")
echo "phase 1: $phase1 min, phase 2: $phase2 min"

COMMON=(--data "$DATA" --size 256 --batch 32 --val-every 200 --sample-every 100000
        --checkpoint-every 1000 --steps 100000 --workers 4 --device "$DEVICE")
train() {  # name, phase, minutes, extra arguments
  local name=$1 phase=$2 minutes=$3; shift 3
  python -m training train --phase "$phase" --out "$WORK/$name" --max-minutes "$minutes" \
    "${COMMON[@]}" "$@" > "$WORK/$name.log" 2>&1
}
evaluate() {  # weights, csv, split, extra arguments
  local weights=$1 csv=$2 split=$3; shift 3
  python -m training evaluate --images "$PHOTOS" --split-file "$DATA/split.json" \
    --split "$split" --size 512 --palettes "$PALETTES" --quiet --csv "$csv" \
    ${weights:+--checkpoint "$weights" --methods palettenet --device "$DEVICE"} "$@"
}
PALETTES=${PALETTES:-$(dirname "$PHOTOS")/palettes/designer-6x255.json}

MIXED=hue=0.4,local=0.3,multi=0.3
train st-mixed-1 1 "$phase1" --condition source+target --base palette --mix "$MIXED" \
  --lr 3e-4 &
train st-hue-1 1 "$phase1" --condition source+target --base palette \
  --mix hue=0.7,local=0.3 --lr 3e-4 &
train t-mixed-1 1 "$phase1" --condition target --base none --mix "$MIXED" --lr 3e-4 &
wait
for run in st-mixed-1 st-hue-1 t-mixed-1; do tail -3 "$WORK/$run.log" | tr '\r' '\n' | tail -2; done
echo "phase 1 done at $(elapsed) s"
for run in st-mixed-1 st-hue-1 t-mixed-1; do
  evaluate "$WORK/$run/weights.pt" "$WORK/$run/validation.csv" validation &
done
wait
best=$(python - "$WORK" <<'PY'
import csv, sys
def score(run):
    rows = csv.DictReader(open(f"{sys.argv[1]}/{run}/validation.csv"))
    return sum(float(r["de_mean"]) for r in rows)
scores = {run: score(run) for run in ("st-mixed-1", "st-hue-1")}
print(min(scores, key=scores.get))
print(scores, file=sys.stderr)
PY
)
echo "chosen source+target run: $best"
st=${best%-1}

evaluate "" "$WORK/baselines-test.csv" test --methods identity,rotation,chang2015 \
  > "$WORK/baselines-test.log" 2>&1 &
baselines=$!
train "$st-2" 2 "$phase2" --init "$WORK/$best/weights.pt" --condition source+target \
  --mix "$MIXED" --lr 1e-4 &
first=$!
train t-mixed-2 2 "$phase2" --init "$WORK/t-mixed-1/weights.pt" --condition target \
  --mix "$MIXED" --lr 1e-4 &
wait $first $!
echo "phase 2 done at $(elapsed) s"
for run in "$st-2" t-mixed-2; do
  evaluate "$WORK/$run/weights.pt" "$WORK/$run/validation.csv" validation &
done
wait
for run in "$best" "$st-2" t-mixed-1 t-mixed-2; do
  python -m training export "$WORK/$run/weights.pt" "$OUT/$run.pt"
done
for run in st-mixed-1 st-hue-1 t-mixed-1 "$st-2" t-mixed-2; do
  echo "== $run: $(tail -1 "$WORK/$run/metrics.csv")"; cat "$WORK/$run/validation.csv"
done
echo "finished at $(elapsed) s"
