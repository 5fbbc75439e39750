#!/usr/bin/env bash
# One training change judged on three protocols at once (docs/RESULTS.md, the 2026-12-01 table of training variants): an
# embedder trained on DCML alone with the given training flags, then
#   1. the project's held-out check (bench/run_heldout.sh's music21 export; run that first), as a judge;
#   2. cross-collection: it enrols sfl-challenge/train and all of ASAP is queried;
#   3. the challenge set, general embedders trained on DCML for each split (3 models).
# About 35 minutes on 2 cores (training 10, held-out 1, cross-collection 3.5, challenge set 17).
# Compare with the same script run with no flags (the triplet loss alone).
#   bash bench/run_training_variant.sh NAME [TRAINING FLAGS...]
#   e.g. bash bench/run_training_variant.sh cosface --cosface 1.0
#        bash bench/run_training_variant.sh stretch --time-stretch 0.25
#   (DATA=, CACHE=, OUT=, HELDOUT=: bench/common.sh)
set -euo pipefail
source "$(dirname "$0")/common.sh"
NAME=${1:?a name for the runs}
shift
mkdir -p "$OUT"
# a name's model is reused only with the flags it was trained with (kept beside it once training has
# succeeded, so a training that failed leaves the name free)
if [ -f "$OUT/dcml-$NAME.pt" ] && [ -f "$OUT/dcml-$NAME.flags" ] && [ "$(cat "$OUT/dcml-$NAME.flags")" != "$*" ]; then
  echo "error: $OUT/dcml-$NAME.pt was trained with flags '$(cat "$OUT/dcml-$NAME.flags")', not '$*': choose another name" >&2
  exit 1
fi
if [ ! -f "$OUT/dcml-$NAME.pt" ]; then
  $M embedder train "$D/dcml-piano" --out "$OUT/dcml-$NAME.pt" -P 8 -K 8 "$@" --cache-dir "$CACHE"
  printf '%s' "$*" > "$OUT/dcml-$NAME.flags"
fi
$M eval "$HELDOUT/music21" --enrol "$D/sfl-challenge/train" --model "$OUT/dcml-$NAME.pt" --cache-dir "$CACHE" \
  --out "$HELDOUT/roll-dcml-$NAME"
$M eval "$D/asap" --enrol "$D/sfl-challenge/train" --model "$OUT/dcml-$NAME.pt" --cache-dir "$CACHE" \
  --out "$OUT/cc-dcml-$NAME"
$M eval "$D/sfl-challenge/train" --train-on "$D/dcml-piano" --composer-groups 2 -P 8 -K 8 --epochs 8 "$@" \
  --cache-dir "$CACHE" --out "$OUT/sfl-$NAME"
