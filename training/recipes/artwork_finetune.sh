#!/usr/bin/env bash
# Fine-tune the shipped model (backend/data/palettenet.pt) with artwork in the training mix
# (issue 17), then compare it with the shipped model on the VALIDATION splits, B1-B4.
#
#   training/recipes/artwork_finetune.sh DATASETS WORK OUT [MINUTES] [FLAT_WEIGHT]
#
# DATASETS  a folder with photos/, photos-extra/, artwork/ (each with its SOURCES.tsv) and
#           palettes/designer-6x255.json (the project's shared datasets)
# WORK      scratch folder (dataset ~2.5 GB, run folder)
# OUT       weight file (half precision), logs, metrics and the evaluation tables
# MINUTES   training budget (default 20; on a GPU machine, not on a shared CPU)
# FLAT_WEIGHT  weight of the flat-fill loss (train --flat-weight; default 1)
#
# Stages:
#  1. prepare: every photo, extra photo and artwork at 432x288 (artwork cut to its visible
#     pixels, transparency filled with the mean visible colour; pixel art scaled with nearest
#     neighbour only, as SOURCES.tsv marks it), 18 hue shifts + 6 one/two-colour + 6
#     three-to-six-colour edits each. Splits: photos by package as the default model
#     (validation lxqt, test lomiri and plasma), artwork and extra photos as the committed
#     training/splits/*.json say (whole packages held out; every artwork kind in test).
#  2. phase 1 from the shipped weights, mix hue 0.4 / local 0.3 / multi 0.3, plus the
#     flat-fill loss, for MINUTES.
#  3. `training evaluate` of the shipped model, the fine-tune and chang2015 on the
#     validation splits (B1-B3 photos, B4 artwork and extra photos): the numbers to choose
#     by. The test splits are for the model card, after the choice.
#  4. the fine-tune exported in half precision to OUT/palettenet-artwork.pt.
#
# Environment: PYTHON (python3), DEVICE (cuda), SIZE and BATCH (256, 32; e.g. SIZE=64
# BATCH=4 DEVICE=cpu MINUTES=1 for a dry run).
set -euo pipefail
DATASETS=${1:?datasets folder}; WORK=${2:?work folder}; OUT=${3:?output folder}
MINUTES=${4:-20}; FLAT_WEIGHT=${5:-1}
PYTHON=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
HERE=$(cd "$(dirname "$0")/../.." && pwd)
SPLITS=$HERE/training/splits
PALETTES=$DATASETS/palettes/designer-6x255.json
DATA=$WORK/mixed-432
export PYTHONUNBUFFERED=1
mkdir -p "$WORK" "$OUT"

if [ ! -f "$DATA/meta.json" ]; then
  $PYTHON -m training prepare --out "$DATA" \
    --images "$DATASETS/photos" --groups "$DATASETS/photos/SOURCES.tsv" \
    --images "$DATASETS/photos-extra" --groups "$DATASETS/photos-extra/SOURCES.tsv" \
    --images "$DATASETS/artwork" --groups "$DATASETS/artwork/SOURCES.tsv" \
    --split-from "$SPLITS/photos-extra.json" --split-from "$SPLITS/artwork.json" \
    --validation-groups lxqt --test-groups lomiri,plasma \
    --variants 18 --local-variants 6 --multi-variants 6 --workers "$(nproc)" 2>&1 \
    | tr '\r' '\n' | grep -v '^preparing' | tee "$OUT/prepare.log"
fi

$PYTHON -m training train --phase 1 --init "$HERE/backend/data/palettenet.pt" \
  --data "$DATA" --out "$WORK/artwork-1" --mix hue=0.4,local=0.3,multi=0.3 \
  --flat-weight "$FLAT_WEIGHT" --size "${SIZE:-256}" --batch "${BATCH:-32}" \
  --max-minutes "$MINUTES" --steps 100000 --val-every 200 --sample-every 100000 \
  --checkpoint-every 100000 --device "$DEVICE" 2>&1 | tr '\r' '\n' | tail -n 20 \
  | tee "$OUT/train.log"
cp "$WORK/artwork-1/metrics.csv" "$OUT/metrics.csv"

evaluate() {  # name, weights
  $PYTHON -m training evaluate --images "$DATASETS/photos" --split-file "$DATA/split.json" \
    --split validation --size 512 --palettes "$PALETTES" --quiet \
    --artwork "$DATASETS/artwork" --artwork-split "$SPLITS/artwork.json" \
    --artwork "$DATASETS/photos-extra" --artwork-split "$SPLITS/photos-extra.json" \
    --checkpoint "$2" --methods chang2015,palettenet --device "$DEVICE" \
    --csv "$OUT/$1-b1b3.csv" --b4-csv "$OUT/$1-b4.csv" 2>"$OUT/$1.err" > "$OUT/$1.txt"
}
evaluate shipped "$HERE/backend/data/palettenet.pt"
evaluate artwork "$WORK/artwork-1/weights.pt"
$PYTHON -m training export "$WORK/artwork-1/weights.pt" "$OUT/palettenet-artwork.pt" \
  --note "recipe=training/recipes/artwork_finetune.sh" --note "flat_weight=$FLAT_WEIGHT"
echo "compare $OUT/shipped.txt with $OUT/artwork.txt (validation splits), then decide"
