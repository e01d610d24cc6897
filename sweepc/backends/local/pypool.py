"""The local backend's pool of Python workers, for `python:` rules.

A worker is ``python -c <load pyworker.py> pyworker.py pyjob.py FD`` in its
own session (a Ctrl-C in the terminal reaches sweepc only; sweepc then stops
each worker's process group). It imports a module once and calls its
function for task after task: tasks go down its stdin, one JSON line each,
several in one write, replies come back on a pipe (pyworker.py). For a job
without templates the worker makes the job folder itself (marker, pset.json,
outputs of an earlier run removed): sweepc's main process only sends the
task and records its reply, which carries the function's results. A worker

* exits after a task that failed (an exception may have left the module's
  state broken) and after ``max_jobs`` tasks (SWEEPC_PY_MAX_JOBS, default
  10000; against leaks); the next task goes to a fresh worker;
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

A task is *started* when it is the first its worker has not answered (the
one it runs); the others are queued behind it, not started: ``started()``
says which began since it was last asked, ``kill_all`` reports only the
started ones as interrupted.

``PythonPool`` has the shape of procs.ProcessPool (start, wait, pids,
kill_all, close, running); ``Pools`` puts the two behind one such face, so
the scheduling loop only says which kind of job it starts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import select
import selectors
import signal
import subprocess
import sys
import tempfile
import time
import weakref
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, NamedTuple

from sweepc.backends.jobdir import WRITE_FLAGS
from sweepc.backends.local.procs import Exit, ProcessPool, Spawn
from sweepc.lang.graph import BuildGraph
from sweepc.values import Scalar, values_json

__all__ = ["Pools", "PyExit", "PyPrep", "PyTask", "PythonPool", "import_message", "import_problems", "python_modules"]

DEFAULT_MAX_JOBS = 10000
# The scheduling loop counts a python: job as 1/QUEUE_DEPTH of its cpus: it
# starts up to QUEUE_DEPTH a cpu, which wait in the pool (pending) until a
# worker takes them; enough that the workers are fed (feed()) from pending
# while sweepc records a batch of ends.
QUEUE_DEPTH = 1024
# Tasks a worker holds: one running, the rest queued behind it, so that the
# round trip to sweepc after a task does not leave the worker idle, and
# sweepc takes in many replies (one store commit) at a time: about
# QUEUE_SECONDS of work (by the tasks' recent times), at most MAX_QUEUE.
# Queued tasks have not started; a worker that ends hands them back. (A
# trivial task takes ~0.1-0.2 ms: ~256 queued. Against 10 ms and 64 at
# most, that cut the wall time of 10k trivial tasks by ~5% and sweepc's
# CPU by ~9%: fewer wake-ups, and the workers stay fed while sweepc's main
# process, which shares the cores with them, records a batch of ends.
# After a failure without -k, the other workers still run at most
# ~QUEUE_SECONDS of work.)
QUEUE_SECONDS = 0.05
MAX_QUEUE = 256
TASK_OVERHEAD_S = 0.0003  # a task's cost beyond its function's time (its folder, the round trip)
# wait() takes in replies for up to GATHER_S (at most GATHER_MAX) while at
# least GATHER_MIN_PENDING tasks are pending, and more than it has taken in:
# one store commit for many ends, and tasks left pending to feed() the
# workers while sweepc records those ends.
GATHER_S = 0.05
GATHER_MAX = 2000
GATHER_MIN_PENDING = 16
_HERE = os.path.dirname(os.path.abspath(__file__))
_PYJOB = os.path.join(os.path.dirname(_HERE), "pyjob.py")
_PYWORKER = os.path.join(_HERE, "pyworker.py")
# Loads pyjob.py (or pyworker.py) by its path: the worker needs neither sweepc on sys.path nor its package imports.
# Started with -P, so the project folder (its cwd) is not first on sys.path, where a json.py
# of the user's hid the standard library from the worker itself; it comes last, so that a
# package of the project still imports (pkg/model.py: from pkg import util).
_BOOT = (
    "import importlib.util as u,sys,os;sys.path.append(os.getcwd());"
    "s=u.spec_from_file_location(sys.argv[1],sys.argv[2]);m=u.module_from_spec(s);"
    "sys.modules[s.name]=m;s.loader.exec_module(m);sys.exit(m.main(sys.argv[3:]))"
)


_NO_ENV: Mapping[str, str] = MappingProxyType({})

# PyPrep and PyTask are NamedTuples, not frozen dataclasses: sweepc's main
# process makes one of each a pset, and a NamedTuple is made in a quarter of
# the time (0.5 us against 2 for PyTask, 12 fields), as immutable.
class PyPrep(NamedTuple):
    """What the worker does to make the job folder (pyworker.prepare): the
    work of jobdir.prepare_job_dir for a job without templates."""

    workdir: str
    reldir: str  # <rule>/<hh>/<hash>
    outputs: tuple[str, ...]  # removed when the folder was there already (single names)
    # pset.json: the worker writes jobdir.pset_json_text()'s text, made of this
    # beginning (jobdir.pset_json_head(), one a rule), the job's seq, hash and pset
    head: str
    seq: int


class PyTask(NamedTuple):
    key: int
    module: str  # absolute path of the .py file
    func: str
    cwd: str  # the job folder (made by the worker when prep is given)
    params: Mapping[str, Scalar]
    rule: str
    pset_hash: str
    attempt: int = 1  # SWEEPC_ATTEMPT; the worker sets SWEEPC_JOB_DIR, ... from cwd, rule and hash
    append_log: bool = False
    prep: PyPrep | None = None
    env: Mapping[str, str] = _NO_ENV  # more for the call's os.environ (set last)
    inputs: bool = False  # the job folder has the input list: the function gets it as _inputs

    @property
    def log_path(self) -> str:
        return self.cwd + "/sweepc.log"


@dataclasses.dataclass(frozen=True, slots=True)
class PyExit(Exit):
    error: str = ""  # why it failed, in a few words (the exception's last line)
    results: dict[str, object] | None = None  # what the worker wrote to sweepc-result.json (when it returned), parsed


class _Worker:
    __slots__ = ("assigned", "buf", "out", "proc", "queue", "rfd", "spool", "stdin")

    def __init__(self, proc: subprocess.Popen[bytes], rfd: int, spool: int) -> None:
        self.proc = proc
        self.rfd = rfd
        self.spool = spool  # the running task's stdout and stderr (pyworker.py), read when the worker dies
        self.stdin = proc.stdin
        self.buf = b""
        self.out: list[str] = []  # task lines not sent yet (sent together, before waiting)
        self.queue: deque[PyTask] = deque()  # sent, not answered; the first one is running
        self.assigned = 0


def _queued(w: _Worker) -> int:
    return len(w.queue)


def _task_line(task: PyTask) -> str:
    """The task as the worker reads it (pyworker.py), one JSON line without
    its newline: {"k", "m", "f", "r", "d", "h", "p"} and, when they are not
    their defaults, "n", "a", "e", "i", "prep". Made a piece at a time (the
    module, function and rule once per rule), not by one json.dumps of a
    dict: sweepc's main process makes one a pset. Sent as UTF-8 with
    surrogatepass, which json.loads of bytes reads back."""
    head = _HEADS.get((task.module, task.func, task.rule))
    if head is None:
        head = _HEADS[(task.module, task.func, task.rule)] = f',"m":{_ESC(task.module)},"f":{_ESC(task.func)},"r":{_ESC(task.rule)}'
    line = f'{{"k":{int(task.key)}{head},"d":{_ESC(task.cwd)},"h":{_ESC(task.pset_hash)},"p":{values_json(task.params)}'
    if task.attempt != 1:
        line += f',"n":{int(task.attempt)}'
    if task.append_log:
        line += ',"a":true'
    if task.env:
        line += ',"e":' + json.dumps(dict(task.env))
    if task.inputs:
        line += ',"i":true'
    pr = task.prep
    if pr is not None:
        outs = _OUTS.get(pr.outputs)
        if outs is None:
            outs = _OUTS[pr.outputs] = json.dumps(list(pr.outputs))
        head = _JSON_HEADS.get(pr.head)
        if head is None:
            head = _JSON_HEADS[pr.head] = _ESC(pr.head)
        line += f',"prep":{{"w":{_ESC(pr.workdir)},"r":{_ESC(pr.reldir)},"o":{outs},"jh":{head},"s":{int(pr.seq)}}}'
    return line + "}"


_ESC = json.encoder.encode_basestring  # a str as JSON (ensure_ascii=False; the C function when there is one)
_HEADS: dict[tuple[str, str, str], str] = {}  # (module, function, rule) -> its part of a task line
_OUTS: dict[tuple[str, ...], str] = {}  # a rule's outputs -> as JSON
_JSON_HEADS: dict[str, str] = {}  # the beginning of a rule's pset.json -> as a JSON string


class PythonPool:
    def __init__(self, env: Mapping[str, str], max_workers: int, cwd: str | None = None,
                 max_jobs: int | None = None, prepare: Callable[[PyTask], str | None] | None = None) -> None:
        """prepare(task): make the task's job folder in this process, after a
        worker could not (see pyworker.py); an error message, or None."""
        self._env = dict(env)
        self._env["SWEEPC_POOL_PID"] = str(os.getpid())
        self._max_workers = max(1, max_workers)
        self._cwd = cwd
        if max_jobs is None:
            max_jobs = int(os.environ.get("SWEEPC_PY_MAX_JOBS", DEFAULT_MAX_JOBS) or DEFAULT_MAX_JOBS)
        self._max_jobs = max(1, max_jobs)
        self._prepare = prepare
        self._workers: list[_Worker] = []
        self._pending: deque[PyTask] = deque()  # started by sweepc, given to no worker yet
        self._task_s = 0.0  # a task's time, on average lately (its function's, plus the round trip)
        self._sel = selectors.DefaultSelector()
        self._finished: list[Exit] = []
        self._started: list[int] = []
        self._began: set[int] = set()  # tasks reported started that have not ended
        self._stopping = False  # in kill_all: nothing is handed on or sent again
        self._closed = False
        self._finalizer = weakref.finalize(self, _kill_workers, self._workers)

    @property
    def running(self) -> int:
        """Tasks not answered yet: running, queued to a worker, or pending."""
        return len(self._pending) + sum(len(w.queue) for w in self._workers)

    @property
    def ended(self) -> bool:
        """Whether Exits wait to be taken: those of tasks that ended while
        they were handed on (started(), feed(): no worker could be
        started) are not counted in `running` any more."""
        return bool(self._finished)

    def pids(self) -> dict[int, int]:
        return {w.queue[0].key: w.proc.pid for w in self._workers if w.queue}

    def start(self, task: PyTask) -> None:
        if self._closed:
            raise ValueError("start() on a closed PythonPool")
        self._pending.append(task)

    def check_imports(self, modules: Sequence[tuple[str, str]], workers: int = 1) -> list[tuple[int, str]]:
        """The build's import check, done by this pool's workers before any
        task (pyworker.py): each (module path, function) imported and found.
        [(index into modules, traceback's last frames)] for those that fail.

        The first worker's answer counts. `workers` (at most max_workers)
        start and import at once, so that each is ready for tasks when the
        check ends: a module that imports a large library is imported once
        a worker, in parallel, not once more for the check and then again by
        workers started after it. A worker exits after a failure; the next
        modules are then checked by a fresh one (every failing module is
        named), and the build will not run."""
        problems: list[tuple[int, str]] = []
        first = 0
        others = [self._spawn() for _ in range(max(0, min(workers, self._max_workers) - 1))]
        while first < len(modules):
            w = self._spawn()
            line = (json.dumps({"check": [list(m) for m in modules[first:]]}) + "\n").encode("utf-8", "surrogatepass")
            for o in others:
                _send_line(o, line)
            reply, passed = self._checked(w, line)
            if reply is not None and reply.get("c") is None:
                if not problems:
                    for o in others:  # the same imports, meanwhile: one that failed is not kept
                        if self._checked(o, None)[0] != {"c": None}:
                            self._drop(o, kill=True)
                return problems
            for o in others:
                self._drop(o, kill=True)
            others = []
            if reply is not None:
                n = first + int(reply["c"])
                problems.append((n, str(reply.get("err") or "")))
            else:  # it died importing the next one (os._exit, a crash): what it printed says why
                n = first + passed
                try:
                    rc = w.proc.wait(5)
                except subprocess.TimeoutExpired:
                    rc = None
                text = _spool_text(w).strip()
                problems.append((n, text or f"the interpreter exited with code {rc} while importing it"))
            self._drop(w, kill=True)
            first = n + 1
        return problems

    def _checked(self, w: _Worker, line: bytes | None) -> tuple[dict[str, Any] | None, int]:
        """Send w the import check (`line`, unless sent already) and wait for
        its answer: (its last reply, None when it died; how many modules it
        had imported)."""
        passed = 0
        reply: dict[str, Any] | None = None
        try:
            if line is not None:
                _send_line(w, line)
            while True:
                reply = self._line(w)
                if reply is None or "ok" not in reply:
                    break
                passed = int(reply["ok"]) + 1
        except OSError:
            reply = None  # it died: its EOF says so
        return reply, passed

    def _line(self, w: _Worker) -> dict[str, Any] | None:
        """Wait for w's next reply line (the import check's): None at EOF."""
        while b"\n" not in w.buf:
            select.select([w.rfd], [], [])
            try:
                data = os.read(w.rfd, 1 << 16)
            except BlockingIOError:
                continue
            if not data:
                return None
            w.buf += data
        line, _, w.buf = w.buf.partition(b"\n")
        msg: dict[str, Any] = json.loads(line)
        return msg

    def set_prepare(self, prepare: Callable[[PyTask], str | None] | None) -> None:
        """The prepare callback (see __init__), for a pool made before its build's runner."""
        self._prepare = prepare

    def started(self) -> list[int]:
        """The tasks that began running (each once) since the last call."""
        self._fill()
        out, self._started = self._started, []
        return out

    def wait(self, timeout: float | None) -> list[Exit]:
        self.wait_for(timeout)
        out, self._finished = self._finished, []
        return out

    def wait_for(self, timeout: float | None) -> None:
        """Block until a task ended or `timeout` s passed; the Exits stay here."""
        self._fill()
        self._send()
        if not self._finished and self.running:
            for key, _ in self._sel.select(timeout):
                self._read(key.data)
            if timeout != 0:
                self._gather()

    def wait_into(self, into: deque[Exit], timeout: float | None) -> None:
        """wait(), putting the Exits at the end of `into` (as ProcessPool.wait_into)."""
        self.wait_for(timeout)
        into.extend(self._finished)
        self._finished.clear()

    def _gather(self) -> None:
        """After the first replies: take in more for up to GATHER_S while the
        workers have work (pending tasks keep them fed), so that sweepc
        records many ends in one store commit. Stops at once at a failure,
        and when the pending tasks run low (sweepc starts more): as many
        stay pending as there are ends to record, for feed() to hand on
        while sweepc records them (the workers never wait for sweepc)."""
        end = time.monotonic() + GATHER_S
        fin = self._finished
        pending = self._pending
        seen = 0  # the ends before it were looked at (each once: no rescan per reply)
        while fin and len(fin) < GATHER_MAX and len(pending) >= GATHER_MIN_PENDING and len(fin) < len(pending):
            for n in range(seen, len(fin)):
                if fin[n].exit_code != 0:
                    return
            seen = len(fin)
            self._fill()
            self._send()
            left = end - time.monotonic()
            if left <= 0:
                return
            ready = self._sel.select(left)
            if not ready:
                return
            for key, _ in ready:
                self._read(key.data)

    def feed(self) -> None:
        """Top up the workers' queues from the pending tasks, without waiting:
        sweepc calls it while it records a batch of ends or starts many
        tasks, so that the workers do not run dry meanwhile."""
        if self._pending:
            self._fill()
            self._send()

    def drop_pending(self) -> list[int]:
        """Take back the tasks no worker has been given (they are not
        started): the build stops. Their keys."""
        out = [t.key for t in self._pending]
        self._pending.clear()
        return out

    def kill_all(self, grace: float = 2.0) -> list[Exit]:
        """Stop every worker's process group. Exits of the tasks that had
        ended (interrupted=False) and of those that were running
        (interrupted=True); the tasks queued behind those, or pending, never
        began, and are not in the list."""
        self._stopping = True
        self._pending.clear()
        for key, _ in self._sel.select(0):
            self._read(key.data)
        busy = [w for w in self._workers if w.queue]
        for w in busy:
            _signal_group(w.proc.pid, signal.SIGTERM)
        end = time.monotonic() + grace
        for w in busy:
            with contextlib.suppress(subprocess.TimeoutExpired):
                w.proc.wait(max(0.0, end - time.monotonic()))
        for w in busy:
            _signal_group(w.proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                w.proc.wait(5)
            # what it answered before it died ended on its own
            while w.queue:
                try:
                    data = os.read(w.rfd, 1 << 18)
                except OSError:  # (BlockingIOError: a child of the function holds the pipe)
                    break
                if not data:
                    break
                self._take(w, data)
            now = time.time()
            if w.queue:
                t = w.queue[0]
                _save_output(w, t, "")
                self._finished.append(PyExit(t.key, 130, signal.SIGTERM, now, now, 0, True, 0, error="interrupted"))
            w.queue.clear()
            self._drop(w)
        self._started = []
        self._began.clear()
        out, self._finished = self._finished, []
        self._stopping = False
        return out

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._pending.clear()
        for w in list(self._workers):
            self._drop(w, kill=True)
        self._sel.close()

    # -- inside
    def _depth(self) -> int:
        """How many tasks a worker holds (one running, the others queued
        behind): about QUEUE_SECONDS of work, at least 2 (no idle gap while
        sweepc answers), at most MAX_QUEUE."""
        if self._task_s <= 0:
            return 2
        return max(2, min(MAX_QUEUE, 1 + int(QUEUE_SECONDS / self._task_s)))

    def _fill(self) -> None:
        """Give pending tasks to workers (to the emptiest, new ones up to
        max_workers), each up to its depth."""
        pending = self._pending
        if not pending or self._stopping:
            return
        depth = self._depth()
        live = [w for w in self._workers if w.stdin is not None]  # (kept up to date below: not made again a task)
        while pending:
            w = min(live, key=_queued) if live else None
            if w is None or (w.queue and len(live) < self._max_workers):
                try:
                    w = self._spawn()
                    live.append(w)
                except OSError as e:
                    if w is None:  # no worker at all: the tasks cannot run
                        now = time.time()
                        for t in pending:
                            self._started.append(t.key)  # (and ended at once)
                            self._end(PyExit(t.key, -1, None, now, now, 0, False, 0, error=f"cannot start a Python worker: {e}"))
                        pending.clear()
                        return
            if len(w.queue) >= depth:
                return
            self._give(w, pending.popleft())  # one at a time: the workers' queues stay even
            if w.stdin is None:  # retired (max_jobs)
                live.remove(w)

    def _give(self, w: _Worker, task: PyTask) -> None:
        w.queue.append(task)
        self._head(w)
        w.assigned += 1
        w.out.append(_task_line(task))  # sent together, by _send
        if w.assigned >= self._max_jobs:
            self._retire(w)

    def _head(self, w: _Worker) -> None:
        """w's first task runs now (reported once by started())."""
        if w.queue and w.queue[0].key not in self._began:
            self._began.add(w.queue[0].key)
            self._started.append(w.queue[0].key)

    def _end(self, ex: PyExit) -> None:
        self._began.discard(ex.key)
        self._finished.append(ex)

    def _send(self, only: _Worker | None = None) -> None:
        for w in (only,) if only is not None else self._workers:
            if w.out and w.stdin is not None:
                data, w.out = ("\n".join(w.out) + "\n").encode("utf-8", "surrogatepass"), []
                try:
                    w.stdin.write(data)
                    w.stdin.flush()
                except OSError:
                    pass  # it died: its EOF fails (or hands on) its tasks

    def _spawn(self) -> _Worker:
        with tempfile.TemporaryFile() as f:  # (unnamed: gone with the last fd on it)
            spool = os.dup(f.fileno())
        r, wfd = os.pipe()
        try:
            proc = subprocess.Popen(
                [sys.executable, "-P", "-c", _BOOT, "sweepc_pyworker", _PYWORKER, _PYJOB, str(wfd), str(spool)],
                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                pass_fds=(wfd, spool), start_new_session=True, env=self._env, cwd=self._cwd,
            )
        except BaseException:
            os.close(r)
            os.close(wfd)
            os.close(spool)
            raise
        os.close(wfd)
        os.set_blocking(r, False)
        w = _Worker(proc, r, spool)
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
            data = os.read(w.rfd, 1 << 18)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self._take(w, data)
            return
        # EOF: the worker ended; what it had not answered was running or queued
        w.out = []
        self._retire(w)
        try:
            rc = w.proc.wait(5)
        except subprocess.TimeoutExpired:
            _signal_group(w.proc.pid, signal.SIGKILL)
            rc = w.proc.wait()
        if w.queue and not self._stopping:
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
            _save_output(w, t, f"\n{why}\n")
            code = 128 + sig if sig is not None else (rc or 1)
            self._end(PyExit(t.key, code, sig, now, now, 0, False, 0, error=why))
            self._hand_back(w)
        elif w.queue:  # it died as kill_all began: its task was running (the others were not)
            t = w.queue[0]
            _save_output(w, t, "")
            now = time.time()
            self._finished.append(PyExit(t.key, 130, signal.SIGTERM, now, now, 0, True, 0, error="interrupted"))
            w.queue.clear()
        self._drop(w)

    def _take(self, w: _Worker, data: bytes) -> None:
        w.buf += data
        *lines, w.buf = w.buf.split(b"\n")
        if not lines:
            return
        # the replies parsed at once, as one JSON list (a json.loads call costs more than a short reply)
        msgs = [json.loads(lines[0])] if len(lines) == 1 else json.loads(b"[" + b",".join(lines) + b"]")
        for msg in msgs:
            self._reply(w, msg)

    def _hand_back(self, w: _Worker) -> None:
        """w ends: the tasks queued behind its last one are pending again, first."""
        self._pending.extendleft(reversed(w.queue))
        w.queue.clear()
        w.out = []

    def _reply(self, w: _Worker, msg: dict[str, object] | list[Any]) -> None:
        t = w.queue.popleft()
        if isinstance(msg, list):  # a task that returned: [key, t0, t1, rss, cpu, results] (pyworker.py)
            key, t0, t1, rss, cpu, res = msg
            assert t.key == key, (t.key, msg)
            self._head(w)
            dt = t1 - t0 + TASK_OVERHEAD_S
            self._task_s = 0.8 * self._task_s + 0.2 * dt if self._task_s else dt
            self._end(PyExit(key, 0, None, t0, t1, rss, False, 0, cpu_s=cpu, results=res))
            return
        assert t.key == msg["k"], (t.key, msg)
        self._head(w)
        why = msg.get("np")
        if why is not None:
            # the worker could not make the folder: sweepc makes it (or says why it cannot)
            if self._stopping:
                self._began.discard(t.key)
                return
            err = self._prepare(t) if self._prepare is not None else str(why)
            if err is None:  # and runs it next (it stays reported started)
                self._pending.appendleft(t._replace(prep=None))
                return
            now = time.time()
            self._end(PyExit(t.key, -1, None, now, now, 0, False, 0, error=err))
            return
        rc = int(msg["rc"])  # type: ignore[call-overload]
        res = msg.get("res")
        t0, t1 = float(msg["t0"]), float(msg["t1"])  # type: ignore[arg-type]
        self._task_s = 0.8 * self._task_s + 0.2 * (t1 - t0 + TASK_OVERHEAD_S) if self._task_s else t1 - t0 + TASK_OVERHEAD_S
        cpu = msg.get("cpu")
        self._end(PyExit(
            t.key, rc, None, t0, t1, int(msg["rss"]), False, 0, error=str(msg["err"]),  # type: ignore[call-overload]
            cpu_s=float(cpu) if isinstance(cpu, (int, float)) else None, results=res if isinstance(res, dict) else None,
        ))
        if rc != 0:
            # the worker exits after a failure: what was queued behind goes elsewhere
            self._retire(w)
            if not self._stopping:
                self._hand_back(w)

    def _drop(self, w: _Worker, kill: bool = False) -> None:
        if w in self._workers:
            self._workers.remove(w)
            with contextlib.suppress(KeyError, ValueError):
                self._sel.unregister(w.rfd)
            os.close(w.rfd)
        if w.spool >= 0:
            os.close(w.spool)
            w.spool = -1
        self._retire(w)
        if kill:
            _signal_group(w.proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                w.proc.wait(5)


def _save_output(w: _Worker, t: PyTask, then: str) -> None:
    """w died running t: what t printed (w's spool) goes to t's log, then `then`."""
    if w.spool < 0:
        return
    try:
        fd = os.open(t.log_path, WRITE_FLAGS | (os.O_APPEND if t.append_log else os.O_TRUNC), 0o666)
    except OSError:
        return
    try:
        size = os.fstat(w.spool).st_size
        off = 0
        while off < size:
            data = os.pread(w.spool, min(size - off, 1 << 20), off)
            if not data:
                break
            os.write(fd, data)
            off += len(data)
        if then:
            os.write(fd, then.encode())
    except OSError:
        pass
    finally:
        os.close(fd)


def _send_line(w: _Worker, line: bytes) -> None:
    """One line to w's stdin now (OSError when it died)."""
    if w.stdin is None:
        raise BrokenPipeError("the worker's stdin is closed")
    w.stdin.write(line)
    w.stdin.flush()


def _spool_text(w: _Worker) -> str:
    """What w printed since its spool was last emptied (at most 64 KiB of the end)."""
    if w.spool < 0:
        return ""
    try:
        size = os.fstat(w.spool).st_size
        return os.pread(w.spool, 1 << 16, max(0, size - (1 << 16))).decode("utf-8", "replace")
    except OSError:
        return ""


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _kill_workers(workers: list[_Worker]) -> None:
    for w in workers:
        _signal_group(w.proc.pid, signal.SIGKILL)


class Pools:
    """A ProcessPool for shell jobs and a PythonPool for `python:` jobs, with
    ProcessPool's face. The Python pool is made at its first task."""

    def __init__(self, procs: ProcessPool, env: Mapping[str, str], max_workers: int, cwd: str | None = None,
                 prepare: Callable[[PyTask], str | None] | None = None, py: PythonPool | None = None) -> None:
        """py: a PythonPool made before (whose workers did the build's
        import check: LocalBackend.check), used instead of a new one."""
        self.procs = procs
        self._env, self._max_workers, self._cwd, self._prepare = env, max_workers, cwd, prepare
        self.py: PythonPool | None = py
        if py is not None:
            py.set_prepare(prepare)

    @property
    def running(self) -> int:
        return self.procs.running + (self.py.running if self.py else 0)

    def start(self, spec: Spawn | PyTask) -> None:
        if isinstance(spec, PyTask):
            if self.py is None:
                self.py = PythonPool(self._env, self._max_workers, self._cwd, prepare=self._prepare)
            self.py.start(spec)
        else:
            self.procs.start(spec)

    def started(self) -> list[int]:
        """The `python:` tasks that began running since the last call (a shell
        job starts when it is started)."""
        return self.py.started() if self.py is not None else []

    def feed(self) -> None:
        """PythonPool.feed: hand pending `python:` tasks to the workers now."""
        if self.py is not None:
            self.py.feed()

    def drop_pending(self) -> list[int]:
        """The `python:` tasks no worker has begun, taken back (PythonPool.drop_pending)."""
        return self.py.drop_pending() if self.py is not None else []

    def pids(self) -> dict[int, int]:
        return {**self.procs.pids(), **(self.py.pids() if self.py else {})}

    def wait_into(self, into: deque[Exit], timeout: float | None) -> None:
        """Block until a job ended or `timeout` s passed; put the Exits at
        the end of `into` (never lost to a signal: ProcessPool.wait_into)."""
        py = self.py
        # (py.ended: tasks that ended as they were handed on, no worker could start)
        if py is None or not (py.running or py.ended):
            self.procs.wait_into(into, timeout)
            return
        if not self.procs.running:
            py.wait_into(into, timeout)
            return
        # both kinds run: take what ended, else poll both in short turns
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            self.procs.wait_into(into, 0)
            py.wait_into(into, 0)
            if into:
                return
            left = 0.01 if end is None else min(0.01, end - time.monotonic())
            if left <= 0:
                return
            py.wait_into(into, left)
            if into:
                return

    def kill_all(self, grace: float = 2.0) -> list[Exit]:
        return self.procs.kill_all(grace) + (self.py.kill_all(grace) if self.py else [])

    def close(self) -> None:
        if self.py is not None:
            self.py.close()
        self.procs.close()


def python_modules(graph: BuildGraph, jobs: Sequence[int]) -> tuple[dict[tuple[str, str], str], int]:
    """The (module path, function) pairs these jobs call, each with the
    first rule calling it; and how many of the jobs are python: jobs."""
    wanted: dict[tuple[str, str], str] = {}
    count = 0
    if any(r.python for r in graph.rules):
        for i in jobs:
            rule = graph.rule(graph.jobs[i].rule)
            if rule.python is not None:
                wanted.setdefault(rule.python, rule.name)
                count += 1
    return wanted, count


def import_problems(graph: BuildGraph, jobs: Sequence[int]) -> list[str]:
    """Import each `python:` module these jobs call, once, in a fresh
    interpreter (as a worker would, from the project folder): one message
    per module that fails, with the traceback's last frames."""
    out: list[str] = []
    for (path, func), rule_name in python_modules(graph, jobs)[0].items():
        proc = subprocess.run(
            [sys.executable, "-P", "-c", _BOOT, "sweepc_pyjob", _PYJOB, "--check", str(graph.root / path), func],
            cwd=graph.root, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False,
        )
        if proc.returncode != 0:
            out.append(import_message(path, func, rule_name, proc.stderr))
    return out


def import_message(path: str, func: str, rule_name: str, traceback: str) -> str:
    """What sweepc says of a python: module that cannot be imported (the traceback's last frames indented)."""
    frames = "\n".join("    " + line for line in traceback.rstrip().splitlines())
    return f"python: \"{path}:{func}\" of rule '{rule_name}' cannot be imported:\n{frames}"
