#!/usr/bin/env bash
# All benchmarks on the challenge data set; prints their tables. `./dev bench` installs what they need
# (the fluidsynth command line too, for the render comparison) and runs this.
set -euo pipefail
PY=${PY:-.venv/bin/python}
DATA=${DATA:-../shared/data/sfl-challenge}
INDEX=${INDEX:-/tmp/musicid-bench-index}
echo "== render"; $PY bench/bench_render.py "$DATA/train"
echo "== build"; $PY bench/bench_build.py "$DATA/train" ${COLD:+--cold}
[ -d "$INDEX" ] || $PY -m musicid index build "$DATA/train" --out "$INDEX" >/dev/null
echo "== query"; $PY bench/bench_query.py "$DATA/test" --index "$INDEX"
echo "== index"; $PY bench/bench_index.py
