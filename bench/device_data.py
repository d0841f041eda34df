"""Carry a dataset folder to a machine that can only receive small transfers, in parts.

The lent GPU machines of this workplace take at most 64 MiB per call and cannot reach the
network, while the verified CIFAR-10 copy (``shared/data/cifar10``) is 161 MiB. ``split`` cuts
every file of a folder into numbered parts of at most ``--part-mib`` MiB, grouped in folders
``p0``, ``p1``, ... of at most that size each (one folder per call), with a manifest of the
sha256 of every whole file; ``join`` reassembles the files from the part folders on the other
side and checks every hash. See docs/benchmarks/speed.md ("GPU runbook").

    python bench/device_data.py split ../shared/data/cifar10 .device-data --part-mib 56
    python bench/device_data.py join .device-data /tmp/cifar10      # on the GPU machine
"""
from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

MANIFEST = "manifest.json"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def split(src: Path, dest: Path, part_mib: float) -> list[Path]:
    """Cut every file of ``src`` into parts of at most ``part_mib`` MiB under ``dest/p<k>/``
    (each ``p<k>`` at most ``part_mib`` MiB; the manifest goes into ``p0``). Returns the part
    folders."""
    limit = int(part_mib * 2**20)
    files = sorted(p for p in src.iterdir() if p.is_file())
    manifest = {"files": {p.name: {"sha256": _sha256(p), "bytes": p.stat().st_size, "parts": []}
                          for p in files}}
    folders = [dest / "p0"]
    folders[0].mkdir(parents=True, exist_ok=False)
    used = 0
    for p in files:
        with p.open("rb") as fh:
            index = 0
            while True:
                block = fh.read(limit - used if used < limit else limit)
                if not block and index > 0:
                    break
                if used >= limit:  # this folder is full: start the next
                    folders.append(dest / f"p{len(folders)}")
                    folders[-1].mkdir()
                    used = 0
                name = f"{p.name}.part{index:03d}"
                (folders[-1] / name).write_bytes(block)
                manifest["files"][p.name]["parts"].append(f"{folders[-1].name}/{name}")
                used += len(block)
                index += 1
                if not block:  # an empty file is one empty part
                    break
    (dest / "p0" / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return folders


def join(parts: Path, dest: Path) -> list[Path]:
    """Reassemble the files listed in ``parts/p0/manifest.json`` into ``dest`` and check each
    file's size and sha256 (``ValueError`` on a mismatch or a missing part)."""
    manifest = json.loads((parts / "p0" / MANIFEST).read_text())
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for name, entry in manifest["files"].items():
        missing = [q for q in entry["parts"] if not (parts / q).is_file()]
        if missing:
            raise ValueError(f"{name}: parts missing under {parts}: {', '.join(missing)}")
        target = dest / name
        with target.open("wb") as fh:
            for q in entry["parts"]:
                fh.write((parts / q).read_bytes())
        if target.stat().st_size != entry["bytes"] or _sha256(target) != entry["sha256"]:
            raise ValueError(f"{name}: reassembled file does not match its sha256 "
                             f"{entry['sha256']}")
        out.append(target)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="verb", required=True)
    s = sub.add_parser("split", help="cut SRC's files into part folders under DEST")
    s.add_argument("src", type=Path)
    s.add_argument("dest", type=Path)
    s.add_argument("--part-mib", type=float, default=56.0)
    j = sub.add_parser("join", help="reassemble PARTS (p0, p1, ...) into DEST and verify")
    j.add_argument("parts", type=Path)
    j.add_argument("dest", type=Path)
    args = ap.parse_args(argv)
    if args.verb == "split":
        for d in split(args.src, args.dest, args.part_mib):
            size = sum(f.stat().st_size for f in d.iterdir()) / 2**20
            print(f"{d}: {size:.1f} MiB")
    else:
        for f in join(args.parts, args.dest):
            print(f"{f}: ok")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
