#!/usr/bin/env bash
# Times the README's "Comparing models you already pruned" block as written (issue 27 item 5),
# in a scratch folder. Usage: bench/readme_compare.sh [SCRATCH]  (default /tmp/readme-compare);
# needs `make install` (or PATH/PYTHONPATH pointing at a checkout) and MNIST fetched.
# The dense LeNet-5 it compares against comes from `prunescope train ... --epochs 1` (timed too,
# skipped when SCRATCH already holds it).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
scratch=${1:-/tmp/readme-compare}
[ -x "$repo/.venv/bin/prunescope" ] && export PATH="$repo/.venv/bin:$PATH"
mkdir -p "$scratch" && cd "$scratch"
python - "$repo/README.md" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
section = text[text.index("## Comparing models you already pruned"):text.index("## Documentation")]
blocks = re.findall(r"```bash\n(.*?)```", section, re.S)
assert len(blocks) == 1, len(blocks)
open("compare.sh", "w").write(blocks[0])
PY
load() { cut -d' ' -f1-3 /proc/loadavg; }
if [ ! -f runs/train/mnist-lenet5-seed0.safetensors ]; then
  echo "== prunescope train --dataset mnist --arch lenet5 --seed 0 --epochs 1 --device cpu (load $(load))"
  /usr/bin/time -o train.time -f "   -> %e s wall, %U s user, %S s sys" \
    prunescope train --dataset mnist --arch lenet5 --seed 0 --epochs 1 --device cpu > train.log 2>&1
  cat train.time
fi
echo "== the README block: prune + compare (load $(load))"
/usr/bin/time -o compare.time -f "   -> %e s wall, %U s user, %S s sys" bash -e compare.sh > compare.log 2>&1
cat compare.time
grep -A6 "Models" compare.log | tail -n 3
