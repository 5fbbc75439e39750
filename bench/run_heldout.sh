#!/usr/bin/env bash
# The project's own held-out check of the shipped embedder (issue 18's first failure, rerun): enrol
# the challenge set's four composers as `musicid index build` does by default, then query music21's
# bundled chorales, string quartets and madrigals (Bach and Beethoven known; Haydn, Mozart, Monteverdi
# and Robert Schumann novel; Schubert known, one song). music21's corpus is reserved for checks like
# this one: nothing is trained or tuned on it. About 10 minutes on 2 cores (2 of them the export, 5 the per-index training).
#   bash bench/run_heldout.sh         (DATA=../shared/data OUT=/tmp/musicid-heldout)
set -euo pipefail
M=${M:-.venv/bin/musicid}
D=${DATA:-../shared/data}
OUT=${OUT:-/tmp/musicid-heldout}
CACHE=${CACHE:-$OUT/cache}
mkdir -p "$OUT"
[ -d "$OUT/music21" ] || $M corpus export "$OUT/music21" --max-works 30 \
  --composers bach,beethoven,mozart,haydn,monteverdi,schubert,schumann_robert
for novelty in fused background-margin; do
  $M eval "$OUT/music21" --enrol "$D/sfl-challenge/train" --model musicid/models/composer-embedder.pt \
    --novelty "$novelty" --cache-dir "$CACHE" --out "$OUT/$novelty"
done
# beside it, a per-index embedder trained on the challenge set (index build --train keeps it as model.pt)
[ -f "$OUT/sfl-index/model.pt" ] || $M index build "$D/sfl-challenge/train" --train --out "$OUT/sfl-index" \
  --cache-dir "$CACHE" >/dev/null
$M eval "$OUT/music21" --enrol "$D/sfl-challenge/train" --model "$OUT/sfl-index/model.pt" --cache-dir "$CACHE" \
  --out "$OUT/per-index"
