#!/usr/bin/env bash
# All benchmarks on the challenge data set; prints their tables. `./dev bench` installs what they need
# (the fluidsynth command line too, for the render comparison) and runs this. QUICK=1 runs each one
# small, to check the wiring in a minute or two (its figures mean nothing).
set -euo pipefail
PY=${PY:-.venv/bin/python}
DATA=${DATA:-../shared/data/sfl-challenge}
INDEX=${INDEX:-/tmp/musicid-bench-index}
if [ -n "${QUICK:-}" ]; then
  render_args=(--files 2 --runs 1); build_args=(--files 4 --no-builds); index_args=(--sizes 10000 --queries 50)
  ray_args=(--files 2); serve_args=(--repeats 3 --requests 8)
else
  render_args=(); build_args=(--cold); index_args=(); ray_args=(); serve_args=()
fi
echo "== render"; $PY bench/bench_render.py "$DATA/train" "${render_args[@]}"
echo "== build"; $PY bench/bench_build.py "$DATA/train" "${build_args[@]}"
# (re)build the query benchmark's index when it is missing or from an older musicid
$PY -m musicid index info --index "$INDEX" >/dev/null 2>&1 || $PY -m musicid index build "$DATA/train" --out "$INDEX" >/dev/null
echo "== query"; $PY bench/bench_query.py "$DATA/test" --index "$INDEX"
# the service on a 5-minute track (318 s): warm query against a fresh process, and a loopback load test
echo "== serve"; $PY bench/bench_serve.py "$DATA/test/0.3620067189216978_adj.mid" --index "$INDEX" "${serve_args[@]}"
echo "== index"; $PY bench/bench_index.py "${index_args[@]}"
echo "== ray"; $PY bench/bench_ray.py "$DATA/train" --model "$INDEX/model.pt" "${ray_args[@]}"
