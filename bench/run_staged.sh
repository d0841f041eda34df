#!/usr/bin/env bash
# Run a study a few models at a time, so that a run cut off (a session's end, a kill) still
# leaves whole models whose results can be committed; jobs are content-addressed, so each stage
# reuses the ones before it and the last stage is the study itself.
#   bench/run_staged.sh STUDY.toml OUTPUT [STEP]     (STEP: models per stage, default 2)
# Prints one line per stage with its wall time; the study's own `models` is the last stage.
set -euo pipefail
study=$1; output=$2; step=${3:-2}
py=${PRUNESCOPE_PYTHON:-.venv/bin/python}
total=$(sed -n 's/^models *= *\([0-9]*\).*/\1/p' "$study")
[ -n "$total" ] || { echo "run_staged: no 'models = N' line in $study" >&2; exit 2; }
stage_file=$(dirname "$study")/.stage-$(basename "$study")
trap 'rm -f "$stage_file"' EXIT
for ((m = step; m < total + step; m += step)); do
  ((m > total)) && m=$total
  sed "s/^models *= *[0-9]*/models = $m/" "$study" > "$stage_file"
  start=$(date +%s)
  "$py" -m prunescope run "$stage_file" --output "$output" --quiet
  echo "stage models=$m: $(( $(date +%s) - start )) s, ended $(date -u +%H:%M:%S) UTC"
done
