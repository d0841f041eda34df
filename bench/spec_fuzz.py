"""Fuzz study spec files in bulk and count what happens (issue 23; docs/reliability.md).

Draws N spec files from the strategy of ``tests/study/test_spec_fuzz.py`` (mutated shipped
specs, then another encoding, stray bytes, deep nesting, extreme documented values or long
paths), reads each with ``load_spec`` and plans it, and counts the outcomes: ``accepted``
(planned), ``refused`` (a one-line ``SpecError`` naming the file), ``traceback`` (any other
exception, or an error message that is not one line naming the file) and ``hang`` (more than
``--hang-s`` seconds for one file). Prints a Markdown table row and the first failures.

Usage: python bench/spec_fuzz.py [-n 2000] [--seed 0] [--hang-s 60]
"""
from __future__ import annotations

import argparse
import collections
import importlib.util
import signal
import tempfile
import time
import traceback
from pathlib import Path

from hypothesis import HealthCheck, given, seed, settings

ROOT = Path(__file__).resolve().parents[1]


class _Hang(Exception):
    pass


def _alarm(signum, frame):  # noqa: ANN001 -- signal handler signature
    raise _Hang


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=2000, help="spec files to try")
    ap.add_argument("--seed", type=int, default=0, help="hypothesis seed")
    ap.add_argument("--hang-s", type=float, default=60.0, help="seconds after which a file hangs")
    args = ap.parse_args()
    spec = importlib.util.spec_from_file_location(
        "spec_fuzz_cases", ROOT / "tests" / "study" / "test_spec_fuzz.py")
    cases = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cases)
    counts: collections.Counter[str] = collections.Counter()
    failures: list[str] = []
    signal.signal(signal.SIGALRM, _alarm)
    folder = Path(tempfile.mkdtemp(prefix="spec-fuzz-"))
    t0 = time.perf_counter()

    @seed(args.seed)
    @settings(max_examples=args.n, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(cases.spec_files())
    def one(case: tuple[str, bytes]) -> None:
        signal.setitimer(signal.ITIMER_REAL, args.hang_s)
        try:
            counts[cases._check_file(case, folder)] += 1
        except _Hang:
            counts["hang"] += 1
            failures.append(f"hang: {case[0]} {case[1][:80]!r}")
        except Exception:  # noqa: BLE001 -- counted: the point of the run
            counts["traceback"] += 1
            failures.append(f"{case[0]} {case[1][:80]!r}: "
                            f"{traceback.format_exc().strip().splitlines()[-1][:300]}")
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)

    one()
    wall = time.perf_counter() - t0
    total = sum(counts.values())
    print("| spec files | refused (one line) | accepted | tracebacks | hangs | wall |")
    print("|---|---|---|---|---|---|")
    print(f"| {total} | {counts['refused']} | {counts['accepted']} | {counts['traceback']} | "
          f"{counts['hang']} | {wall:.0f} s |")
    for f in failures[:20]:
        print(f)


if __name__ == "__main__":
    main()
