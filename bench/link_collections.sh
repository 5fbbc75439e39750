#!/usr/bin/env bash
# Link labelled collections under one root, one composer folder each, so that one `musicid index build`
# enrols them all: OUT/<Composer>/<collection> -> DATA/<collection>/<Composer> (index build follows links).
#   bash bench/link_collections.sh DATA OUT [COLLECTION ...]
# With no COLLECTION, the handed ones: asap dcml-piano sfl-challenge/train openscore-lieder openscore-quartets
# polish-scores dcml-chamber-vocal.
set -euo pipefail
data=$(cd "$1" && pwd); out=$2; shift 2
collections=("$@")
[ ${#collections[@]} -gt 0 ] || collections=(asap dcml-piano sfl-challenge/train openscore-lieder openscore-quartets
                                             polish-scores dcml-chamber-vocal)
mkdir -p "$out"
for c in "${collections[@]}"; do
  for d in "$data/$c"/*/; do
    composer=$(basename "$d")
    mkdir -p "$out/$composer"
    ln -sfn "$d" "$out/$composer/${c//\//-}"
  done
done
echo "$(ls "$out" | wc -l) composers linked under $out from ${#collections[@]} collections"
