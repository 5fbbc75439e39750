#!/usr/bin/env bash
# The project's own held-out check of the shipped embedder (the failure that motivated general embedders, rerun): enrol
# the challenge set's four composers as `musicid index build` does by default, then query music21's
# bundled chorales, string quartets and madrigals (Bach and Beethoven known; Haydn, Mozart, Monteverdi
# and Robert Schumann novel; Schubert known, one song). music21's corpus is reserved for checks like
# this one: nothing is trained or tuned on it. About 10 minutes on 2 cores (2 of them the export,
# 5 the per-index training).
#   bash bench/run_heldout.sh         (DATA=, CACHE=, HELDOUT=: bench/common.sh)
set -euo pipefail
source "$(dirname "$0")/common.sh"
mkdir -p "$HELDOUT"
[ -d "$HELDOUT/music21" ] || $M corpus export "$HELDOUT/music21" --max-works 30 \
  --composers bach,beethoven,mozart,haydn,monteverdi,schubert,schumann_robert
for novelty in fused background-margin; do
  $M eval "$HELDOUT/music21" --enrol "$D/sfl-challenge/train" --model musicid/model/weights/composer-embedder.pt \
    --novelty "$novelty" --cache-dir "$CACHE" --out "$HELDOUT/$novelty"
done
# the opt-in threshold rule (2026-12-02): placed against the background's tracks, not above the known ones
$M eval "$HELDOUT/music21" --enrol "$D/sfl-challenge/train" --model musicid/model/weights/composer-embedder.pt \
  --threshold-rule equal-error --cache-dir "$CACHE" --out "$HELDOUT/fused-equal-error"
# beside it, a per-index embedder trained on the challenge set (index build --train keeps it as model.pt)
[ -f "$HELDOUT/sfl-index/model.pt" ] || $M index build "$D/sfl-challenge/train" --train --out "$HELDOUT/sfl-index" \
  --cache-dir "$CACHE" >/dev/null
$M eval "$HELDOUT/music21" --enrol "$D/sfl-challenge/train" --model "$HELDOUT/sfl-index/model.pt" --cache-dir "$CACHE" \
  --out "$HELDOUT/per-index"
