#!/usr/bin/env bash
# Run studies a few models at a time, so that a run cut off (a session's end, a kill) still
# leaves whole models whose results can be committed; jobs are content-addressed, so each stage
# reuses the ones before it and the last stage is the study itself. Several studies given with
# one OUTPUT share one store: each stage runs them in turn, and a job two of them plan (the
# same dense model, the same pruning) runs once (e.g. studies/paper-corrected-lenet.toml and
# studies/mitigation.toml share their dense models and their cross-entropy fine-tunings).
#   bench/run_staged.sh OUTPUT STEP STUDY.toml [STUDY.toml ...]
#   (STEP: models per stage; a study's own `models` is its last stage; FIRST=m starts at m)
# Prints one line per (stage, study) with its wall time.
set -euo pipefail
output=$1; step=$2; shift 2
py=${PRUNESCOPE_PYTHON:-.venv/bin/python}
most=0
for study in "$@"; do
  n=$(sed -n 's/^models *= *\([0-9]*\).*/\1/p' "$study")
  [ -n "$n" ] || { echo "run_staged: no 'models = N' line in $study" >&2; exit 2; }
  ((n > most)) && most=$n
done
for ((m = ${FIRST:-$step}; m < most + step; m += step)); do
  for study in "$@"; do
    total=$(sed -n 's/^models *= *\([0-9]*\).*/\1/p' "$study")
    ((m - step >= total)) && continue
    stage=$((m > total ? total : m))
    stage_file=$(dirname "$study")/.stage-$(basename "$study")
    sed "s/^models *= *[0-9]*/models = $stage/" "$study" > "$stage_file"
    start=$(date +%s)
    "$py" -m prunescope run "$stage_file" --output "$output" --quiet
    rm -f "$stage_file"
    echo "$(basename "$study") models=$stage: $(( $(date +%s) - start )) s, ended $(date -u +%H:%M:%S) UTC"
  done
done
