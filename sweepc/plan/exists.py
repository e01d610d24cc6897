"""Which of many files are missing: the one access() per output that the
planner (planner.py) and the no-op certificate (noop.py) make.

At 100k psets that is 200k access() calls, ~2 us each on a 2-core VM and
most of a no-op build's time. os.access lets other threads run while the
kernel looks the path up, so a long list is split among threads, one per
CPU this process may use (at most MAX_THREADS): on 2 cores 200k paths took
0.26 s instead of 0.42 s. Every thread has ended when missing() returns:
the process is single-threaded again (lang/project.py forks a cache writer
only then). A short list is looked at in this thread alone.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence

__all__ = ["missing"]

MAX_THREADS = 4
MIN_PER_THREAD = 10_000  # paths a thread takes at least: fewer are not worth a thread
_BLOCK = 4096  # paths looked at between two looks at the stop flag


def missing(paths: Sequence[str | bytes], dir_fd: int, first_only: bool = False) -> list[int]:
    """The positions in paths of those that do not exist, relative to the
    folder dir_fd (access(F_OK), as a path a job writes is found), in
    order. A path that cannot be looked up (a NUL in it) is missing. With
    first_only, at most one position (then not always the first one): the
    threads stop as soon as one is found."""
    n = len(paths)
    threads = min(_cpus(), MAX_THREADS, n // MIN_PER_THREAD)
    if threads < 2:
        found: list[int] = []
        _scan(paths, 0, n, dir_fd, found, first_only, [])
        return found
    stop: list[bool] = []  # non-empty once a thread with first_only found one
    parts = [(n * k // threads, n * (k + 1) // threads) for k in range(threads)]
    outs: list[list[int]] = [[] for _ in parts]
    workers = [threading.Thread(target=_scan, args=(paths, lo, hi, dir_fd, out, first_only, stop), name="sweepc-exists", daemon=True)
               for (lo, hi), out in zip(parts[1:], outs[1:])]
    own = [0]  # the parts this thread looks at
    for k, t in enumerate(workers, 1):
        try:
            t.start()
        except RuntimeError:  # (no thread to be had: this one takes its part too)
            own.append(k)
    try:
        for k in own:
            _scan(paths, parts[k][0], parts[k][1], dir_fd, outs[k], first_only, stop)
    except BaseException:  # (Ctrl-C: the others stop at their next block)
        stop.append(True)
        raise
    finally:
        for t in workers:
            if t.ident is not None:  # (started)
                t.join()
    found = [k for out in outs for k in out]
    return found[:1] if first_only else found


def _scan(paths: Sequence[str | bytes], lo: int, hi: int, dir_fd: int, out: list[int], first_only: bool,
          stop: list[bool]) -> None:
    access, F_OK = os.access, os.F_OK
    for start in range(lo, hi, _BLOCK):
        if stop:
            return
        for k, path in enumerate(paths[start:min(start + _BLOCK, hi)], start):
            try:
                there = access(path, F_OK, dir_fd=dir_fd)
            except ValueError:  # (a NUL in the path: no such file)
                there = False
            if not there:
                out.append(k)
                if first_only:
                    stop.append(True)
                    return


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1
