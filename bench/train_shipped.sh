#!/usr/bin/env bash
# Train the shipped composer embedder from the handed collections, as musicid 0.4.0's was trained
# (musicid/model/weights/README.md; docs/RESULTS.md, 2026-12-07), then ship it:
#   bash bench/train_shipped.sh DATA [WORK]
# or, with COMMERCIAL=1, its commercial-use twin: the same recipe on the collections whose terms allow
# commercial use only (OpenScore Lieder and String Quartets, CC0; the Polish Music Heritage scores,
# CC BY 4.0), written to WORK/commercial.pt and measured, not shipped (docs/RESULTS.md, 2026-12-07):
#   COMMERCIAL=1 bash bench/train_shipped.sh DATA [WORK]
# DATA: the handed data folder (../shared/data); WORK: scratch folder (default /tmp/musicid-train).
# About 65 minutes on 2 cores with the piano rolls cached, 13 GB of memory; resumable: a stopped run,
# started again with the same arguments, goes on from its last epoch (the state is kept in the model
# cache, WORK/cache/models/*.partial.pt). The same 100 reserve composers are held out of both.
set -euo pipefail
data=$(cd "$1" && pwd); work=${2:-/tmp/musicid-train}
PY=${PY:-.venv/bin/python}; MUSICID=${MUSICID:-.venv/bin/musicid}
mkdir -p "$work"
[ -d "$work/all" ] || bash bench/link_collections.sh "$data" "$work/all"
$PY bench/reserve.py "$work/all" --seed 0 > "$work/reserve.txt"
if [ -n "${COMMERCIAL:-}" ]; then
  collections=("$data/openscore-lieder" "$data/openscore-quartets" "$data/polish-scores"); out=$work/commercial.pt
else
  collections=("$data/asap" "$data/dcml-piano" "$data/sfl-challenge/train" "$data/openscore-lieder"
               "$data/openscore-quartets" "$data/polish-scores" "$data/dcml-chamber-vocal"); out=$work/general.pt
fi
$MUSICID embedder train "${collections[@]}" \
  --out "$out" --cache-dir "$work/cache" --epochs 45 --steps-per-epoch 80 -P 16 -K 4 \
  --pitch-shift 6 --cosface 1.0 --balance-collections --domains genre --spread-works \
  --composer-weighting sqrt-works --hold-out "$work/reserve.txt"
if [ -n "${COMMERCIAL:-}" ]; then
  $MUSICID eval "$work/all" --protocol many-composers --model "$out" --cache-dir "$work/cache" --bootstrap 300 \
    -o "$work/eval-commercial"
  exit 0
fi
$PY bench/ship_embedder.py "$out"
# the protocols, the shipped embedder beside the one before it: docs/RESULTS.md's generated section
$MUSICID eval "$work/all" --protocol many-composers --cache-dir "$work/cache" --bootstrap 300 -o "$work/eval-shipped"
