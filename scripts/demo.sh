#!/usr/bin/env bash
# The main job on a corpus musicid obtains by itself (music21's bundled scores):
# index three composers, then name held-out works by them and flag works by two
# composers the index has never seen. Re-running reuses the export and the render cache.
set -euo pipefail
MUSICID=${MUSICID:-.venv/bin/musicid}
DEMO=${DEMO:-demo}
KNOWN=bach,palestrina,monteverdi
UNSEEN=haydn,josquin

$MUSICID corpus export "$DEMO/corpus" --composers "$KNOWN" --max-works 40
$MUSICID corpus export "$DEMO/unseen" --composers "$UNSEEN" --max-works 6

# every 8th work of each known composer is held out of the index, into the test folder
rm -rf "$DEMO/train" "$DEMO/test"
mkdir -p "$DEMO/train" "$DEMO/test"
for dir in "$DEMO"/corpus/*/; do
  composer=$(basename "$dir")
  mkdir -p "$DEMO/train/$composer"
  n=0
  for f in "$dir"*.mid; do
    n=$((n + 1))
    if (( n % 8 == 0 )); then cp "$f" "$DEMO/test/known-$composer-$(basename "$f")"
    else cp "$f" "$DEMO/train/$composer/"; fi
  done
done
for f in "$DEMO"/unseen/*/*.mid; do
  cp "$f" "$DEMO/test/unseen-$(basename "$(dirname "$f")")-$(basename "$f")"
done

$MUSICID index build "$DEMO/train" --out "$DEMO/index"
held_out=$(ls "$DEMO"/test/known-Bach-*.mid | head -n 1)
$MUSICID query "$held_out" --index "$DEMO/index"
$MUSICID report --novel "$DEMO/test" --index "$DEMO/index" --csv "$DEMO/report.csv"
echo "report saved to $DEMO/report.csv; index in $DEMO/index"
