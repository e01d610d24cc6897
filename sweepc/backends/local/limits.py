"""Time limits of local jobs: a rule's `time` resource, enforced here as SLURM
enforces it on a cluster.

Driven by the local backend's scheduling loop, never blocking it: at a job's
deadline its process tree gets SIGTERM (and SIGCONT, so a stopped process
sees it), GRACE_S later SIGKILL for whatever is left, the way SLURM sends
TERM then KILL. The pool then reports the job's end as usual; the backend
asks `expired()` whether that end was ours.

Jobs lead their own session and process group (procs.py), so the group
takes most of a tree; descendants that left it (setsid, daemons) are found
through psutil before the first signal. psutil.Process remembers a
process's start time and refuses to signal a recycled pid.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import psutil  # imported when a deadline passes: not worth ~10 ms of every local build

GRACE_S = 2.0  # between SIGTERM and SIGKILL


def format_limit(secs: int) -> str:
    """HH:MM:SS (D-HH:MM:SS past a day), as `time` is written in a sweepfile."""
    d, rest = divmod(secs, 86400)
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    return f"{d}-{h:02d}:{m:02d}:{s:02d}" if d else f"{h:02d}:{m:02d}:{s:02d}"


def time_limit_reached(secs: int | None) -> str:
    """Why a job stopped at its `time` resource: the build's line, its log's
    marker and the results table's `_error` say it alike."""
    return f"time limit reached ({format_limit(secs)})" if secs is not None else "time limit reached"


class TimeLimits:
    """Deadlines of running jobs, by the caller's job key."""

    def __init__(self, grace: float = GRACE_S) -> None:
        self.grace = grace
        self._deadline: dict[int, float] = {}
        self._terminated: dict[int, tuple[float, list[psutil.Process]]] = {}  # key -> (when, tree)
        self._expired: set[int] = set()

    def add(self, key: int, seconds: int) -> None:
        self._deadline[key] = time.monotonic() + seconds

    def wait_timeout(self, default: float) -> float:
        """How long the loop may wait for exits before a deadline or a KILL is due."""
        if not self._deadline and not self._terminated:
            return default
        now = time.monotonic()
        due = [*self._deadline.values(), *(t + self.grace for t, _ in self._terminated.values())]
        return max(0.0, min(default, min(due) - now))

    def enforce(self, pids: Mapping[int, int]) -> None:
        """Signal the trees of jobs past their deadline. `pids`: key -> pid of
        the jobs still running (ProcessPool.pids())."""
        now = time.monotonic()
        for key, deadline in list(self._deadline.items()):
            if deadline > now:
                continue
            pid = pids.get(key)
            if not pid:  # not reported yet: try again next round
                continue
            del self._deadline[key]
            self._expired.add(key)
            tree = _tree(pid)
            _signal(pid, tree, signal.SIGTERM)
            _signal(pid, tree, signal.SIGCONT)
            self._terminated[key] = (now, tree)
        for key, (when, tree) in list(self._terminated.items()):
            if now - when >= self.grace:
                del self._terminated[key]
                _kill(tree)

    def ended(self, key: int) -> bool:
        """The job ended: forget its deadline. True when its time limit
        stopped it. Its tree still gets the SIGKILL when the grace is over:
        what ignored the SIGTERM may outlive the job's shell."""
        self._deadline.pop(key, None)
        if key in self._expired:
            self._expired.discard(key)
            return True
        return False

    def close(self) -> None:
        """The build is over: give the trees still in their grace the rest of
        it, then SIGKILL what is left of them."""
        if not self._terminated:
            return
        end = max(t for t, _ in self._terminated.values()) + self.grace
        trees = [tree for _, tree in self._terminated.values()]
        self._terminated.clear()
        while time.monotonic() < end and any(_alive(tree) for tree in trees):
            time.sleep(0.05)
        for tree in trees:
            _kill(tree)


def _tree(pid: int) -> list[psutil.Process]:
    import psutil

    try:
        leader = psutil.Process(pid)
        return [leader, *leader.children(recursive=True)]
    except psutil.Error:
        return []


def _alive(tree: list[psutil.Process]) -> bool:
    import psutil

    for p in tree:
        with contextlib.suppress(psutil.Error):
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                return True
    return False


def _kill(tree: list[psutil.Process]) -> None:
    import psutil

    if not _alive(tree):
        return
    # whatever the survivors forked during the grace dies too
    for p in list(tree):
        with contextlib.suppress(psutil.Error):
            if p.is_running():
                tree.extend(p.children(recursive=True))
    _signal(tree[0].pid, tree, signal.SIGKILL)


def _signal(pgid: int, tree: list[psutil.Process], sig: int) -> None:
    # The group first, while its leader is the job we found at the deadline
    # (psutil compares start times, so a recycled pid does not pass).
    import psutil

    if tree and tree[0].is_running():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)
    for p in tree:  # including those that left the group
        with contextlib.suppress(psutil.Error):
            p.send_signal(sig)
