#!/usr/bin/env bash
# Issue 18's comparisons beside the general roll embedder, each on one protocol's splits in one run:
#   1. the challenge set, embedders trained on DCML alone (ASAP's 1,302 renders did not fit): the
#      rendered-audio route with random General MIDI programs per part, then the piano roll (33 min);
#   2. the same two routes on the project's held-out check (bench/run_heldout.sh's music21 export):
#      embedders trained on all of DCML (`embedder train`), enrolling the challenge set (16 min);
#   3. ASAP's 8 composers, naming by work-grouped folds: the general roll embedder and per-index
#      embedders trained on each fold (--also-per-index --no-loco: 6 trainings, 42 min).
# Then docs/RESULTS.md's generated side-by-side section is rewritten with these tables and
# bench/run_heldout.sh's check (run that first).
#   bash bench/run_side_by_side.sh      (DATA=, CACHE=, OUT=, HELDOUT=: bench/common.sh)
set -euo pipefail
source "$(dirname "$0")/common.sh"
GEN=(--composer-groups 2 -P 8 -K 8 --epochs 8 --cache-dir "$CACHE")
mkdir -p "$OUT"
[ -f "$OUT/sfl-audio-rp/eval.json" ] || $M eval "$D/sfl-challenge/train" --train-on "$D/dcml-piano" --features audio \
  --random-programs "${GEN[@]}" --out "$OUT/sfl-audio-rp"
[ -f "$OUT/sfl-roll-dcml/eval.json" ] || $M eval "$D/sfl-challenge/train" --train-on "$D/dcml-piano" "${GEN[@]}" \
  --out "$OUT/sfl-roll-dcml"
[ -f "$OUT/dcml.pt" ] || $M embedder train "$D/dcml-piano" --out "$OUT/dcml.pt" -P 8 -K 8 --cache-dir "$CACHE"
[ -f "$OUT/dcml-audio-rp.pt" ] || $M embedder train "$D/dcml-piano" --out "$OUT/dcml-audio-rp.pt" --features audio \
  --random-programs -P 8 -K 8 --cache-dir "$CACHE"
$M eval "$HELDOUT/music21" --enrol "$D/sfl-challenge/train" --model "$OUT/dcml.pt" --cache-dir "$CACHE" \
  --out "$HELDOUT/roll-dcml"
$M eval "$HELDOUT/music21" --enrol "$D/sfl-challenge/train" --model "$OUT/dcml-audio-rp.pt" --features audio \
  --random-programs --cache-dir "$CACHE" --out "$HELDOUT/audio-dcml-rp"
[ -f "$OUT/asap-per-index/eval.json" ] || $M eval "$D/asap" --train-on "$D/dcml-piano" \
  --train-on "$D/sfl-challenge/train" --composers "$ASAP8" "${GEN[@]}" --also-per-index --no-loco \
  --out "$OUT/asap-per-index"
cd bench && "../$PY" results_general_md.py \
  --side "The challenge set: rendered audio with random instruments beside the roll (both trained on DCML alone)|audio, random GM programs=$OUT/sfl-audio-rp" \
  --side "The challenge set: rendered audio with random instruments beside the roll (both trained on DCML alone)|piano roll=$OUT/sfl-roll-dcml" \
  --side "ASAP's 8 composers, naming: general beside per-index, same folds|general roll embedder (DCML + challenge set)=$OUT/asap-per-index" \
  --heldout "shipped embedder, fused (the default)=$HELDOUT/fused" \
  --heldout "shipped embedder, background-margin=$HELDOUT/background-margin" \
  --heldout "per-index (trained on the challenge set), fused=$HELDOUT/per-index" \
  --heldout "roll, trained on DCML alone, fused=$HELDOUT/roll-dcml" \
  --heldout "audio with random GM programs, trained on DCML alone, fused=$HELDOUT/audio-dcml-rp"
