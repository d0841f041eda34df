"""Seconds to import the study spec module and to validate study files, and whether torch was
imported (docs/benchmarks/studies.md, "Validating a spec").

Usage: ``PYTHONPATH=src python -B bench/spec_load.py studies/quick.toml studies/paper.toml``
"""
from __future__ import annotations

import sys
import time

t0 = time.perf_counter()
from prunescope.study.spec import load_spec  # noqa: E402  (timed)

t1 = time.perf_counter()
for name in sys.argv[1:]:
    load_spec(name)
t2 = time.perf_counter()
print(f"import {t1 - t0:.2f} s, load {len(sys.argv) - 1} specs {t2 - t1:.2f} s, "
      f"torch imported: {'torch' in sys.modules}")
