#!/usr/bin/env bash
# The general-embedder benchmark: general embedders judged on music they never saw, then docs/RESULTS.md's
# generated general section. Models are cached in $CACHE, so a rerun is cheap. Measured from nothing
# on 2 cores: about 75 minutes (the DCML embedder 25-28 min, the cross-collection runs 10-12 min
# each, the ASAP protocol 36 min); with everything cached, about 35.
#   bash bench/run_general.sh            (DATA=, CACHE=, OUT=: bench/common.sh)
set -euo pipefail
source "$(dirname "$0")/common.sh"
mkdir -p "$OUT"
# 1. a general embedder that never saw ASAP (DCML's ten composers), with its background
[ -f "$OUT/dcml.pt" ] || $M embedder train "$D/dcml-piano" --out "$OUT/dcml.pt" -P 8 -K 8 --cache-dir "$CACHE"
# 2. the per-index embedder of the challenge set (an index built with --train keeps it as model.pt)
[ -f "$OUT/sfl-index/model.pt" ] || $M index build "$D/sfl-challenge/train" --train --out "$OUT/sfl-index" \
  --cache-dir "$CACHE" >/dev/null
# 3. cross-collection: enrol the challenge set, query all of ASAP; default fused, then background-margin fused
$M eval "$D/asap" --enrol "$D/sfl-challenge/train" --model "$OUT/sfl-index/model.pt" --out "$OUT/cc-perindex" \
  --cache-dir "$CACHE"
$M eval "$D/asap" --enrol "$D/sfl-challenge/train" --model "$OUT/dcml.pt" --out "$OUT/cc" --cache-dir "$CACHE"
#    the same, the threshold at the equal-error point against the background (the opt-in rule)
$M eval "$D/asap" --enrol "$D/sfl-challenge/train" --model "$OUT/dcml.pt" --threshold-rule equal-error \
  --out "$OUT/cc-equal-error" --cache-dir "$CACHE"
# 4. ASAP's 8 composers: embedders trained on the other collections, the left-out composers' groups without them,
#    with the shipped recipe's collection-balanced batches (Beethoven is in both collections)
$M eval "$D/asap" --train-on "$D/dcml-piano" --train-on "$D/sfl-challenge/train" \
  --composers "$ASAP8" --composer-groups 2 -P 8 -K 8 --epochs 8 --balance-collections \
  --cache-dir "$CACHE" --out "$OUT/asap-general"
cd bench && "../$PY" results_general_md.py --general "$OUT/asap-general" \
  --general-command "musicid eval asap --train-on dcml-piano --train-on sfl-challenge/train --composers $ASAP8 --composer-groups 2 -P 8 -K 8 --epochs 8 --balance-collections" \
  --cross "per-index (trained on the challenge set), fused=$OUT/cc-perindex" \
  --cross "general, DCML (480 steps), fused (the default)=$OUT/cc" \
  --cross "general, DCML (480 steps), fused, --threshold-rule equal-error=$OUT/cc-equal-error"
