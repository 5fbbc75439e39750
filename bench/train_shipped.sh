#!/usr/bin/env bash
# Train the shipped composer embedder from the handed collections, as musicid's was trained
# (musicid/model/weights/README.md; docs/RESULTS.md, 2026-12-07), then ship it:
#   bash bench/train_shipped.sh DATA [WORK]
# It learns from every composer of every collection, the protocols' 100 reserve composers included,
# so the many-composer protocols cannot judge it. They judge its *measured twin*: the same recipe with
# the reserve held out of training and background, written to WORK/twin.pt and evaluated, not shipped:
#   TWIN=1 bash bench/train_shipped.sh DATA [WORK]
# and, with COMMERCIAL=1, the twin's commercial-use counterpart: the same recipe on the collections whose
# terms allow commercial use only (OpenScore Lieder and String Quartets, CC0; the Polish Music Heritage
# scores, CC BY 4.0), reserve held out, written to WORK/commercial.pt and evaluated, not shipped:
#   COMMERCIAL=1 bash bench/train_shipped.sh DATA [WORK]
# A variant of the recipe is measured the same way, with its flags added in FLAGS and its own WORK, e.g.
#   FLAGS="--voice-dropout 0.5" TWIN=1 bash bench/train_shipped.sh DATA /tmp/musicid-train-vd
# DATA: the handed data folder (../shared/data); WORK: scratch folder (default /tmp/musicid-train).
# About 70 minutes on 2 cores with the piano rolls cached, 14 GB of memory; resumable: a stopped run,
# started again with the same arguments, goes on from its last epoch (the state is kept in the model
# cache, WORK/cache/models/*.partial.pt).
set -euo pipefail
data=$(cd "$1" && pwd); work=${2:-/tmp/musicid-train}
PY=${PY:-.venv/bin/python}; MUSICID=${MUSICID:-.venv/bin/musicid}
mkdir -p "$work"
[ -d "$work/all" ] || bash bench/link_collections.sh "$data" "$work/all"
$PY bench/reserve.py "$work/all" --seed 0 > "$work/reserve.txt"
collections=("$data/asap" "$data/dcml-piano" "$data/sfl-challenge/train" "$data/openscore-lieder"
             "$data/openscore-quartets" "$data/polish-scores" "$data/dcml-chamber-vocal")
hold_out=(--hold-out "$work/reserve.txt"); out=$work/twin.pt
read -ra extra <<< "${FLAGS:-}"
if [ -n "${COMMERCIAL:-}" ]; then
  collections=("$data/openscore-lieder" "$data/openscore-quartets" "$data/polish-scores"); out=$work/commercial.pt
elif [ -z "${TWIN:-}" ]; then
  hold_out=(); out=$work/general.pt
fi
$MUSICID embedder train "${collections[@]}" \
  --out "$out" --cache-dir "$work/cache" --epochs 45 --steps-per-epoch 80 -P 16 -K 4 \
  --pitch-shift 6 --cosface 1.0 --balance-collections --domains genre --spread-works \
  --composer-weighting sqrt-works "${extra[@]}" "${hold_out[@]}"
if [ ${#hold_out[@]} -gt 0 ]; then
  # the protocols (docs/RESULTS.md's generated section: bench/results_protocols_md.py)
  $MUSICID eval "$work/all" --protocol many-composers --model "$out" --cache-dir "$work/cache" --bootstrap 300 \
    -o "$work/eval-$(basename "$out" .pt)"
  exit 0
fi
$PY bench/ship_embedder.py "$out"
