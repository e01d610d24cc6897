"""The local backend's pool of Python workers, for `python:` rules.

A worker is ``python -c <load backends/pyjob.py> --worker FD`` in its own
session (a Ctrl-C in the terminal reaches sweepc only; sweepc then stops
each worker's process group). It imports a module once and calls its
function for task after task: tasks go down its stdin, one JSON line each,
replies come back on a pipe. A worker

* exits after a task that failed (an exception may have left the module's
  state broken) and after ``max_jobs`` tasks (SWEEPC_PY_MAX_JOBS, default
  1000; against leaks); the next task goes to a fresh worker;
* that dies (a segfault, ``os._exit``, the OOM killer, a time limit) fails
  only the task it was running; tasks queued behind it go to a fresh worker;
* dies with the build: PR_SET_PDEATHSIG (SIGKILL when sweepc's thread
  ends, even by SIGKILL), and its stdin closing.

Per task the worker reports its start and end time and its peak RSS: it
writes "5" to /proc/self/clear_refs before the call, which resets VmHWM to
the current RSS, and reads VmHWM after (Linux >= 4.0; elsewhere the
worker's ru_maxrss, a peak since the worker started). The peak includes the
interpreter and the imported modules, which every task of the worker
shares; it does not include processes the function starts.

``PythonPool`` has the shape of procs.ProcessPool (start, wait, pids,
kill_all, close, running); ``Pools`` puts the two behind one such face, so
the scheduling loop only says which kind of job it starts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import selectors
import signal
import subprocess
import sys
import time
import weakref
from collections import deque
from collections.abc import Mapping, Sequence

from sweepc.backends.local.procs import Exit, ProcessPool, Spawn
from sweepc.lang.graph import BuildGraph
from sweepc.values import Scalar

__all__ = ["Pools", "PyExit", "PyTask", "PythonPool", "import_problems"]

DEFAULT_MAX_JOBS = 1000
# Tasks a worker holds: one running, the rest queued behind it, so that the
# round trip to sweepc after a task does not leave the worker idle. The
# scheduling loop counts a python: job as 1/QUEUE_DEPTH of its cpus.
QUEUE_DEPTH = 4
_PYJOB = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pyjob.py")
# Loads pyjob.py by its path: the worker needs neither sweepc on sys.path nor its package imports.
_BOOT = (
    "import importlib.util as u,sys;"
    "s=u.spec_from_file_location('sweepc_pyjob',sys.argv[1]);m=u.module_from_spec(s);"
    "sys.modules['sweepc_pyjob']=m;s.loader.exec_module(m);sys.exit(m.main(sys.argv[2:]))"
)


@dataclasses.dataclass(frozen=True, slots=True)
class PyTask:
    key: int
    module: str  # absolute path of the .py file
    func: str
    cwd: str  # the job folder (exists already)
    log_path: str
    params: Mapping[str, Scalar]
    rule: str
    pset_hash: str
    env: Mapping[str, str]  # set in the worker's os.environ for the call (SWEEPC_JOB_DIR, ...)
    append_log: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class PyExit(Exit):
    error: str = ""  # why it failed, in a few words (the exception's last line)


class _Worker:
    __slots__ = ("assigned", "buf", "out", "proc", "queue", "rfd", "stdin")

    def __init__(self, proc: subprocess.Popen[bytes], rfd: int) -> None:
        self.proc = proc
        self.rfd = rfd
        self.stdin = proc.stdin
        self.buf = b""
        self.out: list[bytes] = []  # task lines not sent yet (sent together, before waiting)
        self.queue: deque[PyTask] = deque()  # sent, not answered; the first one is running
        self.assigned = 0


class PythonPool:
    def __init__(self, env: Mapping[str, str], max_workers: int, cwd: str | None = None,
                 max_jobs: int | None = None) -> None:
        self._env = dict(env)
        self._env["SWEEPC_POOL_PID"] = str(os.getpid())
        self._max_workers = max(1, max_workers)
        self._cwd = cwd
        if max_jobs is None:
            max_jobs = int(os.environ.get("SWEEPC_PY_MAX_JOBS", DEFAULT_MAX_JOBS) or DEFAULT_MAX_JOBS)
        self._max_jobs = max(1, max_jobs)
        self._workers: list[_Worker] = []
        self._sel = selectors.DefaultSelector()
        self._finished: list[Exit] = []
        self._closed = False
        self._finalizer = weakref.finalize(self, _kill_workers, self._workers)

    @property
    def running(self) -> int:
        return sum(len(w.queue) for w in self._workers)

    def pids(self) -> dict[int, int]:
        return {w.queue[0].key: w.proc.pid for w in self._workers if w.queue}

    def start(self, task: PyTask) -> None:
        if self._closed:
            raise ValueError("start() on a closed PythonPool")
        self._assign(task)

    def wait(self, timeout: float | None) -> list[Exit]:
        self._send()
        if not self._finished and self.running:
            for key, _ in self._sel.select(timeout):
                self._read(key.data)
        out, self._finished = self._finished, []
        return out

    def kill_all(self, grace: float = 2.0) -> list[Exit]:
        """Stop every worker's process group; Exits of the tasks they had
        (interrupted=True), and of those that had ended (interrupted=False)."""
        for key, _ in self._sel.select(0):
            self._read(key.data)
        busy = [w for w in self._workers if w.queue]
        for w in busy:
            _signal_group(w.proc.pid, signal.SIGTERM)
        end = time.monotonic() + grace
        for w in busy:
            with contextlib.suppress(subprocess.TimeoutExpired):
                w.proc.wait(max(0.0, end - time.monotonic()))
        now = time.time()
        for w in busy:
            _signal_group(w.proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                w.proc.wait(5)
            for t in w.queue:
                self._finished.append(PyExit(t.key, 130, signal.SIGTERM, now, now, 0, True, 0, error="interrupted"))
            w.queue.clear()
            self._drop(w)
        out, self._finished = self._finished, []
        return out

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for w in list(self._workers):
            self._drop(w, kill=True)
        self._sel.close()

    # -- inside
    def _assign(self, task: PyTask) -> None:
        live = [w for w in self._workers if w.stdin is not None]
        idle = [w for w in live if not w.queue]
        if idle:
            w = idle[0]
        elif len(live) < self._max_workers:
            w = self._spawn()
        else:
            w = min(live, key=lambda x: len(x.queue))
        line = json.dumps({
            "k": task.key, "m": task.module, "f": task.func, "d": task.cwd, "l": task.log_path, "p": dict(task.params),
            "r": task.rule, "h": task.pset_hash, "e": dict(task.env), "a": task.append_log,
        }) + "\n"
        w.queue.append(task)
        w.assigned += 1
        w.out.append(line.encode())  # sent by the next wait(), with the others started till then
        if w.assigned >= self._max_jobs:
            self._retire(w)

    def _send(self, only: _Worker | None = None) -> None:
        for w in (only,) if only is not None else self._workers:
            if w.out and w.stdin is not None:
                data, w.out = b"".join(w.out), []
                try:
                    w.stdin.write(data)
                    w.stdin.flush()
                except OSError:
                    pass  # it died: its EOF fails (or hands on) its tasks

    def _spawn(self) -> _Worker:
        r, wfd = os.pipe()
        try:
            proc = subprocess.Popen(
                [sys.executable, "-c", _BOOT, _PYJOB, "--worker", str(wfd)],
                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                pass_fds=(wfd,), start_new_session=True, env=self._env, cwd=self._cwd,
            )
        except BaseException:
            os.close(r)
            os.close(wfd)
            raise
        os.close(wfd)
        os.set_blocking(r, False)
        w = _Worker(proc, r)
        self._workers.append(w)
        self._sel.register(r, selectors.EVENT_READ, w)
        return w

    def _retire(self, w: _Worker) -> None:
        """No more tasks for w: it ends after those it has."""
        self._send(w)
        if w.stdin is not None:
            with contextlib.suppress(OSError):
                w.stdin.close()
            w.stdin = None

    def _read(self, w: _Worker) -> None:
        try:
            data = os.read(w.rfd, 1 << 16)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            w.buf += data
            *lines, w.buf = w.buf.split(b"\n")
            for line in lines:
                self._reply(w, json.loads(line))
            return
        # EOF: the worker ended; what it had not answered was running or queued
        w.out = []
        self._retire(w)
        try:
            rc = w.proc.wait(5)
        except subprocess.TimeoutExpired:
            _signal_group(w.proc.pid, signal.SIGKILL)
            rc = w.proc.wait()
        self._drop(w)
        if w.queue:
            t = w.queue.popleft()
            now = time.time()
            sig = -rc if rc < 0 else None
            if sig is not None:
                name = str(sig)
                with contextlib.suppress(ValueError):
                    name = signal.Signals(sig).name
                why = f"the Python worker was killed by signal {sig} ({name})"
            else:
                why = f"the Python worker exited with code {rc} (os._exit or sys.exit outside the function's control)"
            with contextlib.suppress(OSError), open(t.log_path, "a") as f:
                f.write(f"\n{why}\n")
            code = 128 + sig if sig is not None else (rc or 1)
            self._finished.append(PyExit(t.key, code, sig, now, now, 0, False, 0, error=why))
            for rest in list(w.queue):
                self._assign(rest)
            w.queue.clear()

    def _reply(self, w: _Worker, msg: dict[str, object]) -> None:
        t = w.queue.popleft()
        assert t.key == msg["k"], (t.key, msg)
        rc = int(msg["rc"])  # type: ignore[call-overload]
        self._finished.append(PyExit(
            t.key, rc, None, float(msg["t0"]), float(msg["t1"]),  # type: ignore[arg-type]
            int(msg["rss"]), False, 0, error=str(msg["err"]),  # type: ignore[call-overload]
        ))
        if rc != 0:
            # the worker exits after a failure: what was queued behind goes elsewhere
            w.out = []
            self._retire(w)
            rest = list(w.queue)
            w.queue.clear()
            for r in rest:
                self._assign(r)

    def _drop(self, w: _Worker, kill: bool = False) -> None:
        if w in self._workers:
            self._workers.remove(w)
            with contextlib.suppress(KeyError, ValueError):
                self._sel.unregister(w.rfd)
            os.close(w.rfd)
        self._retire(w)
        if kill:
            _signal_group(w.proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                w.proc.wait(5)


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _kill_workers(workers: list[_Worker]) -> None:
    for w in workers:
        _signal_group(w.proc.pid, signal.SIGKILL)


class Pools:
    """A ProcessPool for shell jobs and a PythonPool for `python:` jobs, with
    ProcessPool's face. The Python pool is made at its first task."""

    def __init__(self, procs: ProcessPool, env: Mapping[str, str], max_workers: int, cwd: str | None = None) -> None:
        self.procs = procs
        self._env, self._max_workers, self._cwd = env, max_workers, cwd
        self.py: PythonPool | None = None

    @property
    def running(self) -> int:
        return self.procs.running + (self.py.running if self.py else 0)

    def start(self, spec: Spawn | PyTask) -> None:
        if isinstance(spec, PyTask):
            if self.py is None:
                self.py = PythonPool(self._env, self._max_workers, self._cwd)
            self.py.start(spec)
        else:
            self.procs.start(spec)

    def pids(self) -> dict[int, int]:
        return {**self.procs.pids(), **(self.py.pids() if self.py else {})}

    def wait(self, timeout: float | None) -> list[Exit]:
        py = self.py
        if py is None or not py.running:
            return self.procs.wait(timeout)
        if not self.procs.running:
            return py.wait(timeout)
        # both kinds run: take what ended, else poll both in short turns
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            out = self.procs.wait(0) + py.wait(0)
            if out:
                return out
            left = 0.01 if end is None else min(0.01, end - time.monotonic())
            if left <= 0:
                return []
            out = py.wait(left)
            if out:
                return out

    def kill_all(self, grace: float = 2.0) -> list[Exit]:
        return self.procs.kill_all(grace) + (self.py.kill_all(grace) if self.py else [])

    def close(self) -> None:
        if self.py is not None:
            self.py.close()
        self.procs.close()


def import_problems(graph: BuildGraph, jobs: Sequence[int]) -> list[str]:
    """Import each `python:` module these jobs call, once, in a fresh
    interpreter (as a worker would, from the project folder): one message
    per module that fails, with the traceback's last frames."""
    wanted: dict[tuple[str, str], str] = {}
    if not any(r.python for r in graph.rules):
        return []
    for i in jobs:
        rule = graph.rule(graph.jobs[i].rule)
        if rule.python is not None:
            wanted.setdefault(rule.python, rule.name)
    out: list[str] = []
    for (path, func), rule_name in wanted.items():
        proc = subprocess.run(
            [sys.executable, "-c", _BOOT, _PYJOB, "--check", str(graph.root / path), func],
            cwd=graph.root, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False,
        )
        if proc.returncode != 0:
            frames = "\n".join("    " + line for line in proc.stderr.rstrip().splitlines())
            out.append(f"python: \"{path}:{func}\" of rule '{rule_name}' cannot be imported:\n{frames}")
    return out
