#!/usr/bin/env bash
# The GPU run behind the default model (backend/data/palettenet.pt): one GPU, about eight
# minutes of wall time in all, every stage through `python -m training`.
#
#   training/recipes/default_model.sh PHOTOS WORK OUT [SECONDS]
#
# PHOTOS  your photo folder, with a SOURCES.tsv naming each photo's source (columns `file`
#         and `package`); the split keeps each source whole. The default model was made from
#         194 photos from Debian wallpaper and educational-image packages (licences in their
#         SOURCES.tsv), validation lxqt-themes, test lomiri-wallpapers and
#         plasma-workspace-wallpapers: the defaults of VALIDATION_GROUPS and TEST_GROUPS.
# WORK    scratch folder (dataset ~1.5 GB, run folders)
# OUT     where the results go: weight files (half precision), logs, metrics, evaluate CSVs
#         and sample grids (runs.tar.gz)
# SECONDS wall-clock budget for all stages (default 480); the training stages get fixed
#         shares of what the other stages leave and stop at a step boundary (--max-minutes),
#         so the steps each run reached are in its metrics.csv and weight record.
#
# Environment: PALETTES  a JSON file of designer palettes for the evaluations' B3 task (the
#                        default model's: 255 six-colour palettes of the npm package
#                        @thi.ng/color-palettes 1.5.36, Apache-2.0; default: evaluate's four
#                        built-in palettes)
#              VALIDATION_GROUPS, TEST_GROUPS  comma-separated source-name prefixes
#              PYTHON, DEVICE, BASELINES=1; SIZE, BATCH for a dry run on a CPU (see below)
#
# Stages:
#  1. prepare: 18 hue shifts + 6 local (1-2 colours) + 6 multi (3-6 colours) edits per photo,
#     split by source package (validation and test as above, train the rest).
#  2. a few steps of each model kind on the GPU, to find out before the budget is spent
#     whether batch-making worker processes work there (else the runs make batches inline).
#  3. phase 1 (Euclidean), four runs side by side on the one GPU, three training mixes of the
#     source+target model and the paper's target-only network:
#       st-mixed  hue=0.4,local=0.3,multi=0.3     st-hue    hue=0.7,local=0.3
#       st-edits  hue=0.2,local=0.4,multi=0.4     t-mixed   target only, no base, st-mixed's mix
#  4. the VALIDATION split picks the mix: lowest sum of the B1, B2 and B3 means of
#     `training evaluate` (never the test split).
#  5. phase 2 (adversarial) from the chosen run and from t-mixed, side by side (with
#     BASELINES=1, the classical methods are evaluated on the test split meanwhile; they need
#     no GPU, and on the H100 they outlasted the budget).
#  6. `training evaluate` of both phases of both models on the validation and test splits;
#     half-precision exports of the chosen phase 1 and 2 and of t-mixed-1 to OUT.
set -euo pipefail
PHOTOS=${1:?photo folder}; WORK=${2:?work folder}; OUT=${3:?output folder}
BUDGET=${4:-480}
PYTHON=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
PALETTES=${PALETTES:-}
VALIDATION_GROUPS=${VALIDATION_GROUPS:-lxqt}
TEST_GROUPS=${TEST_GROUPS:-lomiri,plasma}
export PYTHONUNBUFFERED=1
began=$(date +%s)
elapsed() { echo $(( $(date +%s) - began )); }
mkdir -p "$WORK" "$OUT"
CPUS=$(nproc)
DATA=$WORK/photos-432
# OUT gets the logs, metrics, CSVs and sample grids so far after every stage, not only at
# the end: a run killed at its time limit takes its exit trap down with it.
save() { tar -czf "$OUT/runs.tar.gz" -C "$WORK" --exclude="*.pt" --exclude=photos-432 . || true; }
trap save EXIT

if [ ! -f "$DATA/meta.json" ]; then
  $PYTHON -m training prepare --images "$PHOTOS" --out "$DATA" \
    --groups "$PHOTOS/SOURCES.tsv" --validation-groups "$VALIDATION_GROUPS" \
    --test-groups "$TEST_GROUPS" \
    --variants 18 --local-variants 6 --multi-variants 6 --workers "$CPUS" 2>&1 \
    | tr '\r' '\n' | grep -v '^preparing' | tee "$OUT/prepare.log"
fi
echo "prepared at $(elapsed) s"

WORKERS=$(( CPUS / 4 - 1 > 0 ? CPUS / 4 - 1 : 0 ))
# SIZE and BATCH are for a dry run of this script on a CPU (SIZE=64 BATCH=4 DEVICE=cpu).
COMMON=(--data "$DATA" --size "${SIZE:-256}" --batch "${BATCH:-32}" --val-every 200 --sample-every 100000
        --checkpoint-every 100000 --steps 100000 --device "$DEVICE")
train() {  # name, phase, minutes, extra arguments
  local name=$1 phase=$2 minutes=$3; shift 3
  $PYTHON -m training train --phase "$phase" --out "$WORK/$name" --max-minutes "$minutes" \
    "${COMMON[@]}" --workers "$WORKERS" "$@" > "$WORK/$name.log" 2>&1
}
evaluate() {  # weights ('' for the classical methods), csv, split, extra arguments
  local weights=$1 csv=$2 split=$3; shift 3
  $PYTHON -m training evaluate --images "$PHOTOS" --split-file "$DATA/split.json" \
    --split "$split" --size 512 ${PALETTES:+--palettes "$PALETTES"} --quiet --csv "$csv" \
    ${weights:+--checkpoint "$weights" --methods palettenet --device "$DEVICE"} "$@" \
    > "${csv%.csv}.log" 2>&1
}

# Stage 2: both model kinds, 3 steps each, with batch-making workers.
smoke() {
  train smoke-st 1 0 --steps 3 --condition source+target --base palette & local st=$!
  train smoke-t 1 0 --steps 3 --condition target --base none & local t=$!
  wait $st && wait $t
}
if ! smoke; then
  echo "training with $WORKERS batch workers failed (logs below); making batches inline"
  tail -20 "$WORK/smoke-st.log" "$WORK/smoke-t.log"
  WORKERS=0
  smoke
fi
echo "checked the $DEVICE training path at $(elapsed) s"

# What is left, less ~150 s for choosing (~35 s on the H100), evaluating and exporting,
# split 60:40.
left=$(( BUDGET - $(elapsed) - 150 ))
phase1=$($PYTHON -c "print(round($left * 0.6 / 60, 2))")
phase2=$($PYTHON -c "print(round($left * 0.4 / 60, 2))")
echo "phase 1: $phase1 min, phase 2: $phase2 min"

ST=(--condition source+target --base palette --lr 3e-4)
MIXED=hue=0.4,local=0.3,multi=0.3
train st-mixed-1 1 "$phase1" "${ST[@]}" --mix "$MIXED" &
train st-hue-1 1 "$phase1" "${ST[@]}" --mix hue=0.7,local=0.3 &
train st-edits-1 1 "$phase1" "${ST[@]}" --mix hue=0.2,local=0.4,multi=0.4 &
train t-mixed-1 1 "$phase1" --condition target --base none --lr 3e-4 --mix "$MIXED" &
wait
echo "phase 1 done at $(elapsed) s"
save
for run in st-mixed-1 st-hue-1 st-edits-1 t-mixed-1; do
  echo "$run: $(tail -1 "$WORK/$run.log" | tr '\r' '\n' | tail -1)"
done
for run in st-mixed-1 st-hue-1 st-edits-1; do
  evaluate "$WORK/$run/weights.pt" "$WORK/$run/validation.csv" validation &
done
wait
# The lowest sum of the B1, B2 and B3 means; the sums go to the log.
best=$($PYTHON - "$WORK" st-mixed-1 st-hue-1 st-edits-1 <<'PY'
import csv, sys
from pathlib import Path
scores = {}
for run in sys.argv[2:]:
    path = Path(sys.argv[1], run, "validation.csv")
    if path.exists():
        scores[run] = sum(float(row["de_mean"]) for row in csv.DictReader(open(path)))
    print(f"{run} validation B1+B2+B3: {scores.get(run, 'no result')}", file=sys.stderr)
print(min(scores, key=scores.get) if scores else "")
PY
)
[ -n "$best" ] || { echo "no phase-1 run finished"; exit 1; }
chosen=${best%-1}
mix=$($PYTHON -c 'import json, sys; print(json.load(open(sys.argv[1]))["mix"])' "$WORK/$best/args.json")
echo "chosen: $best, mix $mix"
save

if [ "${BASELINES:-0}" = 1 ]; then
  evaluate "" "$WORK/baselines-test.csv" test --methods identity,rotation,chang2015 &
fi
train "$chosen-2" 2 "$phase2" --init "$WORK/$best/weights.pt" --mix "$mix" --lr 1e-4 &
first=$!
train t-mixed-2 2 "$phase2" --init "$WORK/t-mixed-1/weights.pt" --mix "$MIXED" --lr 1e-4 &
wait $first $!
echo "phase 2 done at $(elapsed) s"
save
evaluate "$WORK/t-mixed-1/weights.pt" "$WORK/t-mixed-1/validation.csv" validation &
for run in "$chosen-2" t-mixed-2; do
  evaluate "$WORK/$run/weights.pt" "$WORK/$run/validation.csv" validation &
done
for run in "$best" "$chosen-2" t-mixed-1 t-mixed-2; do
  evaluate "$WORK/$run/weights.pt" "$WORK/$run/test.csv" test &
done
for run in "$best" "$chosen-2" t-mixed-1; do
  $PYTHON -m training export "$WORK/$run/weights.pt" "$OUT/$run.pt" --note recipe=default_model.sh
done
wait
for run in st-mixed-1 st-hue-1 st-edits-1 "$chosen-2" t-mixed-1 t-mixed-2; do
  echo "== $run: $(tail -1 "$WORK/$run/metrics.csv")"
  for split in validation test; do
    [ -f "$WORK/$run/$split.csv" ] && { echo "-- $split"; cat "$WORK/$run/$split.csv"; }
  done
done
[ -f "$WORK/baselines-test.csv" ] && { echo "== baselines, test"; cat "$WORK/baselines-test.csv"; }
echo "finished at $(elapsed) s"
