"""The conductor: `sweepc build --backend slurm --detach`.

A conductor is a `sweepc build --backend slurm --wait` running as its own
process, in its own session (so closing the terminal or logging out does not
stop it), with its output appended to .sweepc/conductor.log. It holds the
build lock like any build, which is how it is found: the lock file names the
holder's pid, host, start time and command line, and the conductor's command
line carries CONDUCTOR_FLAG. It ingests records, resubmits retries, submits
what becomes ready and exits when the plan is done.

    start(root, argv)   spawn one and return once it holds the lock
    running(root)       the conductor of this project, if one is alive here
    stop(root)          SIGTERM it and wait until it is gone (sweepc cancel)
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from sweepc.errors import UsageError
from sweepc.plan.store import state_dir, terminate

LOG_NAME = "conductor.log"
CONDUCTOR_FLAG = "--conductor"  # a hidden option of `sweepc build`: marks the process
START_TIMEOUT_S = 60.0  # loading a 100k-pset sweepfile and taking the lock


@dataclass(frozen=True)
class Conductor:
    pid: int
    host: str
    started: float  # epoch seconds
    argv: tuple[str, ...]


def log_path(root: Path) -> Path:
    return state_dir(root) / LOG_NAME


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not reaped yet by its parent) is not running
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def running(root: Path) -> Conductor | None:
    """The conductor that holds this project's build lock, when one does and
    it is alive on this host (the lock file is left behind by a holder that
    was killed, so the pid is checked)."""
    try:
        info = json.loads((state_dir(root) / "build.lock").read_text(encoding="utf-8") or "null")
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or CONDUCTOR_FLAG not in (info.get("argv") or []):
        return None
    pid = info.get("pid")
    if not isinstance(pid, int) or info.get("host") != socket.gethostname() or not _alive(pid):
        return None
    return Conductor(pid, str(info.get("host")), float(info.get("started") or 0.0), tuple(str(a) for a in info.get("argv") or ()))


def start(root: Path, argv: list[str]) -> tuple[Conductor | None, int | None, str]:
    """Run `python -m sweepc ARGV` (a build with --wait and CONDUCTOR_FLAG) in
    its own session, output appended to the conductor log. Returns once it
    holds the build lock: (conductor, None, ""); or, when it ended first
    (nothing to do, another build holds the project, a mistake), (None, its
    exit code, what it printed)."""
    path = log_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as log:
        offset = log.tell()
        log.write(f"==> {time.strftime('%Y-%m-%d %H:%M:%S')} sweepc {' '.join(argv)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            [sys.executable, "-m", "sweepc", *argv], cwd=root, stdin=subprocess.DEVNULL,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        c = running(root)
        if c is not None and c.pid == proc.pid:
            return c, None, ""
        code = proc.poll()
        if code is not None:
            with open(path, "rb") as f:
                f.seek(offset)
                text = f.read().decode("utf-8", "replace")
            return None, code, text.partition("\n")[2]
        time.sleep(0.05)
    raise UsageError(
        f"the conductor (pid {proc.pid}) did not start within {START_TIMEOUT_S:.0f} s",
        f"see {_rel(path)}; stop it with: kill {proc.pid}",
    )


def stop(root: Path) -> Conductor | None:
    """SIGTERM the project's conductor and wait until it has exited (it stops
    waiting and resubmitting; its jobs stay in SLURM). None when none runs."""
    c = running(root)
    if c is None:
        return None
    terminate(c.pid, lambda: _alive(c.pid), "the conductor")
    return c


def _rel(p: Path) -> str:
    try:
        return os.path.relpath(p)
    except ValueError:
        return str(p)
