# Settings the general-embedder benchmark scripts share (sourced by run_general.sh, run_side_by_side.sh and
# run_heldout.sh, run from the repository root): the commands, the data and where runs are kept.
M=${M:-.venv/bin/musicid}
PY=${PY:-.venv/bin/python}
D=${DATA:-../shared/data}
CACHE=${CACHE:-/tmp/musicid-general}    # render and model cache
OUT=${OUT:-/tmp/musicid-general}        # the general-embedder runs
HELDOUT=${HELDOUT:-/tmp/musicid-heldout} # the held-out check's export and runs
ASAP8=Bach,Beethoven,Chopin,Liszt,Schubert,Haydn,Schumann,Mozart  # ASAP's composers with 6+ scores
