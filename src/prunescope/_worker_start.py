"""The first code a worker process of
:class:`prunescope.study.executors.ProcessExecutor` runs.

It imports nothing heavy (no torch, not :mod:`prunescope.study`), so a worker is tied to its
driver before it spends seconds importing torch: a driver killed while its workers still start
(``kill -9``, the out-of-memory killer) takes them with it at once instead of leaving them to
finish their imports (4 to 7 s on the busy 2-core machine, docs/reliability.md).
"""
from __future__ import annotations

import ctypes
import os
import signal
import threading
import time
from typing import Any


def exit_with_parent(parent_pid: int, poll_s: float = 1.0) -> None:
    """End this process as soon as ``parent_pid`` is no longer its parent (the driver died,
    e.g. ``kill -9``), so no orphan computes a pack nobody records: on Linux the kernel sends
    it SIGKILL the moment the driver dies (``prctl(PR_SET_PDEATHSIG)``); elsewhere a daemon
    thread checks the parent every ``poll_s`` seconds."""
    try:  # Linux: PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):  # no prctl in this C library: the thread below
        pass
    if os.getppid() != parent_pid:  # the driver died before this process could ask
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(poll_s)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def worker_entry(conn: Any, parent_pid: int) -> None:
    """The target of a worker process: tie it to the driver ``parent_pid``, then import and run
    :func:`prunescope.study.executors._worker_main` with the driver's pipe end ``conn``."""
    exit_with_parent(parent_pid)
    from prunescope.study.executors import _worker_main

    _worker_main(conn, parent_pid)
