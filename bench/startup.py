"""Start-up cost of the ``prunescope`` command line: CPU seconds (user + sys) of a command that
does little work, and the heavy libraries it imports (issue 22).

Each command runs ``--repeats`` times as ``python -m prunescope ...`` in a child process; the
figure is the child's user + sys CPU time (``resource.getrusage(RUSAGE_CHILDREN)``), which on a
busy machine stays close to its idle value while wall time does not. One more run under
``python -X importtime`` lists which of torch, torch._dynamo, pandas, scipy, statsmodels,
matplotlib and ray the command imported.

Commands: ``--help``; ``status``, ``plan`` and ``run`` (a rerun, nothing left to do) of a study
whose store is complete, e.g. ``studies/quick.toml`` run once with ``--output DIR``. The tree
measured is the one on ``PYTHONPATH`` (``--src`` sets it: compare two checkouts, e.g. the tree
before issue 22 in a ``git worktree``).

Usage::

    prunescope run studies/quick.toml --output /tmp/quick-store     # once
    python bench/startup.py --study studies/quick.toml --output /tmp/quick-store [--src DIR]
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys

HEAVY = ("torch", "torch._dynamo", "pandas", "scipy", "statsmodels", "matplotlib", "ray")


def child_cpu(argv: list[str], env: dict[str, str]) -> float:
    """User + sys CPU seconds of one run of ``argv``; a failing command stops the benchmark."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def heavy_imports(argv: list[str], env: dict[str, str]) -> list[str]:
    """Which of :data:`HEAVY` the command imports (``python -X importtime``)."""
    done = subprocess.run([argv[0], "-X", "importtime", *argv[1:]], env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seen = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()
            if line.startswith("import time:")}
    return [m for m in HEAVY if m in seen]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default="studies/quick.toml", help="a study TOML")
    parser.add_argument("--output", required=True,
                        help="the study's output folder, with a complete store")
    parser.add_argument("--src", default=None, help="PYTHONPATH of the tree to measure")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    env = dict(os.environ)
    if args.src:
        env["PYTHONPATH"] = args.src
    cmd = [sys.executable, "-m", "prunescope"]
    study = [args.study, "--output", args.output]
    cases = {"--help": ["--help"], "status STUDY": ["status", *study],
             "plan STUDY": ["plan", *study], "run STUDY (a rerun: all done)": ["run", *study, "--quiet"]}
    print(f"tree {args.src or env.get('PYTHONPATH', '(installed)')}, {args.repeats} repeats, "
          f"1-min load average {os.getloadavg()[0]:.1f}")
    print("| command | CPU s (user + sys), median | min - max | heavy imports |")
    print("|---|---:|---|---|")
    for name, extra in cases.items():
        times = [child_cpu(cmd + extra, env) for _ in range(args.repeats)]
        heavy = ", ".join(heavy_imports(cmd + extra, env)) or "none"
        print(f"| `prunescope {name}` | "
              f"{statistics.median(times):.2f} | {min(times):.2f} - {max(times):.2f} | {heavy} |")
    print(f"1-min load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
