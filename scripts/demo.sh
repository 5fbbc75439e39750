#!/usr/bin/env bash
# The main job on a corpus musicid obtains by itself (music21's bundled scores):
# enrol three composers with the shipped embedder (nothing is trained), then name held-out works by
# them and flag works by two composers the index has never seen. Re-running reuses the export and the
# feature cache.
set -euo pipefail
start=$(date +%s)
MUSICID=${MUSICID:-.venv/bin/musicid}
PYTHON=${PYTHON:-.venv/bin/python}
DEMO=${DEMO:-demo}
KNOWN=bach,palestrina,monteverdi
UNSEEN=haydn,josquin

$MUSICID corpus export "$DEMO/corpus" --composers "$KNOWN" --max-works 40
$MUSICID corpus export "$DEMO/unseen" --composers "$UNSEEN" --max-works 6

# music21's file names: a Bach chorale is its BWV number, a Monteverdi madrigal is its own work
# (madrigal.<book>.<number>), a Palestrina mass movement belongs to its mass (Kyrie_66_b -> 66)
WORKS='(bwv\d+|madrigal\.\d+\.\d+|(?<=_)\d+(?=_|$)|^[A-Za-z]+$)'
# about one work in eight of each known composer is held out of the index, into the test folder, whole
$PYTHON scripts/demo_split.py "$DEMO/corpus" "$DEMO/train" "$DEMO/test" --group-by "$WORKS" --fraction 0.125
for f in "$DEMO"/unseen/*/*.mid; do
  cp "$f" "$DEMO/test/unseen-$(basename "$(dirname "$f")")-$(basename "$f")"
done

# the default: the piano roll, enrolled with the shipped embedder
$MUSICID index build "$DEMO/train" --out "$DEMO/index" --group-by "$WORKS"
held_out=$(ls "$DEMO"/test/known-Bach-*.mid | head -n 1)
$MUSICID query "$held_out" --index "$DEMO/index"
$MUSICID report --novel "$DEMO/test" --index "$DEMO/index" --csv "$DEMO/report.csv"
echo
echo "done in $(( $(date +%s) - start )) s. The index is in $DEMO/index, the report in $DEMO/report.csv."
echo "Next, with the environment active (source .venv/bin/activate):"
echo "  musicid query YOUR-FILE.mid --index $DEMO/index     # --json for every figure"
echo "  musicid serve --index $DEMO/index     # needs: .venv/bin/pip install -e '.[serve]'"
echo "  musicid index build YOUR-FOLDER --out my-index    # one sub-folder per composer"
