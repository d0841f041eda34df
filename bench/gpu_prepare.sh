#!/usr/bin/env bash
# Prepare the first-GPU speed check here (issue 28): cut the CIFAR-10 subset and download the
# wheels into the ignored folder .gpu-check/, measure what a call sends, print the call.
# Run from the checkout the device call is made from. See bench/gpu_prepare.py, docs/speed.md.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-$( [ -x "$ROOT/.venv/bin/python" ] && echo "$ROOT/.venv/bin/python" || echo python3 )}
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
cd "$ROOT"
exec "$PYTHON" bench/gpu_prepare.py "$@"
