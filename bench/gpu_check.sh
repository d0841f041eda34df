#!/usr/bin/env bash
# The first-GPU speed check (issue 28): GPU tests, throughput table, end-to-end study, result
# files, all under $OUT (default runs/gpu-check). `bench/gpu_check.sh --cpu` runs the same steps
# on the CPU with cut sizes. Prepared by bench/gpu_prepare.sh; see bench/gpu_check.py and
# docs/speed.md. On the GPU machine python3 lacks pydantic: the wheels carried in
# .gpu-check/whl are installed into a private folder first.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python3}
WHL="$ROOT/.gpu-check/whl"
if ! "$PYTHON" -c "import pydantic" 2>/dev/null && ls "$WHL"/*.whl >/dev/null 2>&1; then
  SITE=${GPU_CHECK_SITE:-/tmp/gpu-check-site}
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$SITE" "$WHL"/*.whl || { echo "gpu_check: installing $WHL/*.whl failed" >&2; exit 1; }
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
cd "$ROOT"
exec "$PYTHON" bench/gpu_check.py --out "${OUT:-runs/gpu-check}" "$@"
