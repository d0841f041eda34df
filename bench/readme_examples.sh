#!/usr/bin/env bash
# Times every README audit example as written (issue 18 item 1), in a scratch folder.
# Usage: bench/readme_examples.sh [SCRATCH]   (default /tmp/readme-examples); needs `make install`.
# Each command is timed with /usr/bin/time (wall s, user s) and the load average printed beside
# it, with the audit's own plan/estimate lines; every audit is run twice: the second run is the
# resume (all jobs done). Whole outputs: SCRATCH/logs/<n>.log.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
scratch=${1:-/tmp/readme-examples}
export PATH="$repo/.venv/bin:$PATH"
mkdir -p "$scratch" && cd "$scratch"
# the README's Python blocks 1 and 2 of "Auditing your own model", extracted verbatim
python - "$repo/README.md" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
section = text[text.index("## Auditing your own model"):text.index("## Documentation")]
blocks = re.findall(r"```python\n(.*?)```", section, re.S)
assert len(blocks) == 2, len(blocks)
for i, b in enumerate(blocks, 1):
    open(f"example{i}.py", "w").write(b)
PY
mkdir -p logs
timed() {  # timed LABEL COMMAND...: the whole output in logs/<n>.log, its estimate line here
  n=$((${n:-0} + 1))
  echo "== $1 (load $(cut -d' ' -f1-3 /proc/loadavg)); output: $scratch/logs/$n.log"
  shift
  /usr/bin/time -f "   -> %e s wall, %U s user, %S s sys" "$@" > "logs/$n.log" 2>&1
  grep -h -i -m 3 "estimate\|will run\|jobs to run" "logs/$n.log" | sed 's/^/   /' || true
  tail -n 1 "logs/$n.log"
}
timed "data fetch" prunescope data fetch mnist fashion-mnist
[ -f runs/train/mnist-lenet5-seed0.safetensors ] ||
  timed "README train" prunescope train --dataset mnist --arch lenet5 --seed 0 --epochs 30
for run in first resume; do
  timed "README CLI audit ($run)" prunescope audit runs/train/mnist-lenet5-seed0.safetensors \
      --ratios 2,10,50 --distributions nominal,gaussian_noise-3,noise-0.1
done
for run in first resume; do
  timed "README Python example 1 ($run)" python example1.py
done
for run in first resume; do
  timed "README Python example 2 ($run)" python example2.py
done
# the shell example with --model: a package in the current folder, a .pt state dict, npz data
mkdir -p mypackage folder_with_train_and_test_npz
cat > mypackage/__init__.py <<'PY'
PY
cat > mypackage/models.py <<'PY'
from torch import nn


def build():
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
PY
python - <<'PY'
import numpy as np, torch
import prunescope.data as D
from mypackage.models import build
for split in ("train", "test"):
    s = D.load("mnist", split)
    np.savez(f"folder_with_train_and_test_npz/{split}.npz", x=s.x, y=s.y)
s = D.load("mnist", "train")
torch.manual_seed(0)
net = build()
x = torch.tensor(s.x, dtype=torch.float32).permute(0, 3, 1, 2) / 255
y = torch.tensor(s.y)
opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
for i in range(0, len(y), 128):
    loss = torch.nn.functional.cross_entropy(net(x[i:i + 128]), y[i:i + 128])
    opt.zero_grad(); loss.backward(); opt.step()
torch.save(net.state_dict(), "weights.pt")
PY
for run in first resume; do
  timed "README --model audit ($run)" prunescope audit weights.pt --model mypackage.models:build \
      --data folder_with_train_and_test_npz --weight-decay 5e-4
done
