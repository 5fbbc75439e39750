#!/usr/bin/env bash
# The general-embedder comparisons beside the general roll embedder, each on one protocol's splits in one run:
#   1. the challenge set, embedders trained on DCML alone (ASAP's renders did not fit at first; 5 adds them): the
#      rendered-audio route with random General MIDI programs per part, then the piano roll (33 min);
#   2. the same two routes on the project's held-out check (bench/run_heldout.sh's music21 export):
#      embedders trained on all of DCML (`embedder train`), enrolling the challenge set (16 min);
#   3. ASAP's 8 composers, naming by work-grouped folds: the general roll embedder and per-index
#      embedders trained on each fold (--also-per-index --no-loco: 6 trainings, 42 min);
#   4. fine-tuning (with the L2-SP pull since 2026-12-01): each split's general embedder
#      fine-tuned on the split's own tracks, on the challenge set (9 fine-tunings, 29 min) and ASAP
#      (naming: 5, about 45 min); the challenge set's
#      per-index embedders (today's --train, 9 trainings, about 55 min); on the held-out check, the shipped
#      embedder fine-tuned on the challenge set (8 min) and the fused classifier (1 min).
#   5. the two routes across collections (2026-12-02): the DCML-trained audio embedder enrols the challenge
#      set and queries all of ASAP, beside bench/run_general.sh's roll run ($OUT/cc); and on ASAP's 8
#      composers, the audio route with the roll run's settings, beside its $OUT/asap-general (run
#      bench/run_general.sh first); 42 min from nothing, 17 of them rendering ASAP.
# Every run also names with every classifier (track_by_classifier): the tables show the fused one.
# Then docs/RESULTS.md's generated side-by-side section is rewritten with these tables and
# bench/run_heldout.sh's check (run that first).
#   bash bench/run_side_by_side.sh      (DATA=, CACHE=, OUT=, HELDOUT=: bench/common.sh)
set -euo pipefail
source "$(dirname "$0")/common.sh"
for run in cc asap-general; do  # the roll's runs beside the audio route's (5.)
  [ -f "$OUT/$run/eval.json" ] || { echo "no $OUT/$run/eval.json: run bench/run_general.sh first" >&2; exit 1; }
done
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
[ -f "$OUT/sfl-roll-dcml-ft/eval.json" ] || $M eval "$D/sfl-challenge/train" --train-on "$D/dcml-piano" "${GEN[@]}" \
  --fine-tune --out "$OUT/sfl-roll-dcml-ft"
[ -f "$OUT/sfl-per-index/eval.json" ] || $M eval "$D/sfl-challenge/train" --cache-dir "$CACHE" --out "$OUT/sfl-per-index"
[ -f "$OUT/asap-ft/eval.json" ] || $M eval "$D/asap" --train-on "$D/dcml-piano" --train-on "$D/sfl-challenge/train" \
  --composers "$ASAP8" "${GEN[@]}" --no-loco --fine-tune --out "$OUT/asap-ft"
$M eval "$HELDOUT/music21" --enrol "$D/sfl-challenge/train" --model musicid/model/weights/composer-embedder.pt --fine-tune \
  --cache-dir "$CACHE" --out "$HELDOUT/fine-tuned"
$M eval "$HELDOUT/music21" --enrol "$D/sfl-challenge/train" --model musicid/model/weights/composer-embedder.pt \
  --classifier fused --cache-dir "$CACHE" --out "$HELDOUT/fused-classifier"
[ -f "$OUT/cc-audio-rp/eval.json" ] || $M eval "$D/asap" --enrol "$D/sfl-challenge/train" --model "$OUT/dcml-audio-rp.pt" \
  --features audio --random-programs --cache-dir "$CACHE" --out "$OUT/cc-audio-rp"
[ -f "$OUT/asap-audio-rp/eval.json" ] || $M eval "$D/asap" --train-on "$D/dcml-piano" \
  --train-on "$D/sfl-challenge/train" --composers "$ASAP8" "${GEN[@]}" --balance-collections --features audio \
  --random-programs --out "$OUT/asap-audio-rp"
CC="Cross-collection: rendered audio with random instruments beside the roll (both trained on DCML alone; the challenge set enrolled, all of ASAP queried)"
AS="ASAP's 8 composers: rendered audio with random instruments beside the roll (trained on DCML and the challenge set, balanced)"
cd bench && "../$PY" results_general_md.py \
  --side-cross "$CC|piano roll, fused=$OUT/cc" \
  --side-cross "$CC|audio, random GM programs, fused=$OUT/cc-audio-rp" \
  --side "$AS|piano roll=$OUT/asap-general" \
  --side "$AS|audio, random GM programs=$OUT/asap-audio-rp" \
  --side "The challenge set: rendered audio with random instruments beside the roll (both trained on DCML alone)|audio, random GM programs=$OUT/sfl-audio-rp" \
  --side "The challenge set: rendered audio with random instruments beside the roll (both trained on DCML alone)|piano roll=$OUT/sfl-roll-dcml" \
  --side "The challenge set: general, fine-tuned and per-index roll embedders, same folds|general, trained on DCML=$OUT/sfl-roll-dcml" \
  --side "The challenge set: general, fine-tuned and per-index roll embedders, same folds|general, fine-tuned on each split with the L2-SP pull=$OUT/sfl-roll-dcml-ft" \
  --side "The challenge set: general, fine-tuned and per-index roll embedders, same folds|per-index (index build --train)=$OUT/sfl-per-index" \
  --side "ASAP's 8 composers, naming: general beside per-index, same folds|general roll embedder (DCML + challenge set)=$OUT/asap-per-index" \
  --side "ASAP's 8 composers, naming: general beside per-index, same folds|general, fine-tuned on each fold with the L2-SP pull=$OUT/asap-ft" \
  --heldout "shipped embedder, fused (the default)=$HELDOUT/fused" \
  --heldout "shipped embedder, background-margin=$HELDOUT/background-margin" \
  --heldout "per-index (trained on the challenge set), fused=$HELDOUT/per-index" \
  --heldout "roll, trained on DCML alone, fused=$HELDOUT/roll-dcml" \
  --heldout "audio with random GM programs, trained on DCML alone, fused=$HELDOUT/audio-dcml-rp" \
  --heldout "shipped embedder fine-tuned on the challenge set with the L2-SP pull, fused=$HELDOUT/fine-tuned" \
  --heldout "shipped embedder, fused novelty, fused classifier (tempered)=$HELDOUT/fused-classifier"
