"""What runs on a dask worker: a batch of sweepc jobs, one after another.

Each job is the local backend's job (time limit included): its rendered command under
`bash -e -o pipefail -c`, in its own session, cwd its job folder, stdout and
stderr to its log, spawned by the local backend's small spawner process
(sweepc.backends.local.procs.ProcessPool, one per worker thread), so the peak
memory (ru_maxrss of wait4) is the job's, not the ~100 MB worker's. Start, end,
exit code, host and peak memory are measured here and sent back; the worker
never touches the state store (sweepc records what comes back).

A batch stops early, between jobs or by killing the running job's process
tree (TERM, 2 s, KILL), when
- sweepc said so: set_flag(run_id, "drain") (no new job: a failure without -k)
  or set_flag(run_id, "stop") (Ctrl-C: kill), sent with Client.run;
- dask cancelled the task (sweepc's client went away: the scheduler releases
  what it wanted);
- the worker is closing (its scheduler went away, or the cluster is shut down).
When the worker process itself dies, its spawners see their sockets close and
kill every job tree they run.

A `python:` job (JobSpec.python set) goes instead to the local backend's
pool of Python workers (sweepc.backends.local.pypool.PythonPool, one worker
per dask worker thread): the module is imported once in that process and the
function called for job after job, with the same log, time limit, stopping
and measures (peak RSS per call, see pypool.py). The pool's process is
replaced after a failed call (pypool's rule), and when the module's file
changed since it was imported (its path, mtime and size are the cache key:
a long-lived cluster runs the edited function, not the old one).
"""

from __future__ import annotations

import os
import socket
import threading
from typing import NamedTuple

from sweepc.backends.local.limits import TimeLimits
from sweepc.backends.local.procs import Exit, ProcessPool, Spawn
from sweepc.backends.local.pypool import PyExit, PythonPool, PyTask
from sweepc.values import Scalar

POLL_SECONDS = 0.2

# run id -> "drain" | "stop": set by sweepc through Client.run, read by batches
_FLAGS: dict[str, str] = {}
_LOCAL = threading.local()


class PyCall(NamedTuple):
    """What a `python:` job calls: FILE.py (absolute) and FUNC, with its pset."""

    module: str
    func: str
    params: dict[str, Scalar]
    rule: str
    pset_hash: str
    inputs: bool = False  # the job folder has the input list: the function gets it as _inputs


class JobSpec(NamedTuple):
    key: int  # the job id in sweepc's graph
    command: str
    cwd: str
    log: str
    env: dict[str, str]  # added to the worker's environment
    append_log: bool
    time_s: int | None = None  # the rule's `time` resource, enforced here as locally (None: no limit)
    python: PyCall | None = None  # a python: job: called in a Python worker, `command` is not run


class JobResult(NamedTuple):
    key: int
    state: str  # ran | timeout | interrupted | not-run | error
    exit_code: int | None
    signal: int | None
    start: float
    end: float
    max_rss_kb: int
    host: str
    worker: str
    message: str
    cpu_s: float | None = None  # user + system CPU seconds (the spawner's wait4, a python: worker's getrusage)


def set_flag(run_id: str, flag: str) -> str:
    """Client.run target: tell every batch of this build on this worker to drain or stop."""
    if _FLAGS.get(run_id) != "stop":
        _FLAGS[run_id] = flag
    return flag


def clear_flag(run_id: str) -> None:
    _FLAGS.pop(run_id, None)


def run_batch(run_id: str, specs: list[JobSpec]) -> list[JobResult]:
    """Run the jobs one after another; one JobResult per spec, in order."""
    host = socket.gethostname()
    me = _worker_address()
    out: list[JobResult] = []
    for n, spec in enumerate(specs):
        why = _stop_reason(run_id, drain=True)
        if why:
            out.extend(_not_run(s, host, me, why) for s in specs[n:])
            break
        pool: ProcessPool | PythonPool
        try:
            if spec.python is not None:
                py = spec.python
                pool = _pypool(py.module)
                pool.start(PyTask(spec.key, py.module, py.func, spec.cwd, py.params, py.rule, py.pset_hash,
                                  append_log=spec.append_log, env=spec.env, inputs=py.inputs))  # (its log: spec.cwd/sweepc.log)
            else:
                pool = _pool()
                env = dict(os.environ)
                env.update(spec.env)
                pool.start(Spawn(key=spec.key, command=spec.command, cwd=spec.cwd, log_path=spec.log, env=env, append_log=spec.append_log))
        except OSError as e:
            now = _now()
            out.append(JobResult(spec.key, "error", None, None, now, now, 0, host, me, f"cannot start: {e}"))
            continue
        limits = TimeLimits() if spec.time_s else None
        if limits is not None and spec.time_s:
            limits.add(spec.key, spec.time_s)
        ended: list[Exit] = []
        while not ended:
            ended = pool.wait(limits.wait_timeout(POLL_SECONDS) if limits else POLL_SECONDS)
            if limits is not None:
                limits.enforce(pool.pids())
            if ended:
                break
            why = _stop_reason(run_id, drain=False)
            if why:
                killed = pool.kill_all()
                if limits is not None:
                    limits.close()
                ex = killed[0] if killed else None
                if ex is not None and not ex.interrupted:  # it had ended on its own just before
                    out.append(_ran(ex, host, me))
                elif ex is not None:
                    out.append(JobResult(spec.key, "interrupted", ex.exit_code, ex.signal, ex.start, ex.end, ex.max_rss_kb, host, me, why, ex.cpu_s))
                out.extend(_not_run(s, host, me, why) for s in specs[n + 1:])
                return out
        ran = _ran(ended[0], host, me)
        if limits is not None:
            if limits.ended(spec.key):  # its time limit stopped it
                ran = ran._replace(state="timeout")
            limits.close()  # what ignored the SIGTERM gets the SIGKILL
        out.append(ran)
    return out


def _ran(ex: Exit, host: str, worker: str) -> JobResult:
    # a python: job that failed: why, in a few words (the exception's last line)
    why = ex.error if isinstance(ex, PyExit) and ex.exit_code != 0 else ""
    return JobResult(ex.key, "ran", ex.exit_code, ex.signal, ex.start, ex.end, ex.max_rss_kb, host, worker, why, ex.cpu_s)


def _not_run(spec: JobSpec, host: str, worker: str, why: str) -> JobResult:
    now = _now()
    return JobResult(spec.key, "not-run", None, None, now, now, 0, host, worker, why)


def _now() -> float:
    import time

    return time.time()


def _pool() -> ProcessPool:
    pool: ProcessPool | None = getattr(_LOCAL, "pool", None)
    if pool is None:
        pool = ProcessPool()
        _LOCAL.pool = pool
    return pool


def _pypool(module: str) -> PythonPool:
    """This thread's pool of one Python worker; a new one when `module`
    changed on disk since this pool's worker may have imported it."""
    try:
        st = os.stat(module)
        sig: tuple[int, int] | None = (st.st_mtime_ns, st.st_size)
    except OSError:
        sig = None  # the worker's import says what is wrong
    pool: PythonPool | None = getattr(_LOCAL, "pypool", None)
    seen: dict[str, tuple[int, int] | None] = getattr(_LOCAL, "pymodules", {})
    if pool is not None and module in seen and seen[module] != sig:
        pool.close()
        pool = None
    if pool is None:
        pool = PythonPool(dict(os.environ), 1)
        seen = {}
        _LOCAL.pypool = pool
    seen[module] = sig
    _LOCAL.pymodules = seen
    return pool


def _worker_address() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return ""


def _stop_reason(run_id: str, drain: bool) -> str:
    """Why this batch must stop now ("" to go on)."""
    flag = _FLAGS.get(run_id)
    if flag == "stop" or (drain and flag == "drain"):
        return f"sweepc asked to {flag}"
    try:
        from distributed import get_worker

        w = get_worker()
    except (ImportError, ValueError):
        return ""  # not on a dask worker (unit tests call this directly)
    status = getattr(getattr(w, "status", None), "name", "running")
    if status in ("closing", "closed", "failed"):
        return "the dask worker is closing"
    try:  # sweepc's client went away, or cancelled this task
        key = w.get_current_task()
        ts = w.state.tasks.get(key)
        if ts is None or ts.state in ("cancelled", "released", "forgotten"):
            return "dask cancelled the task"
    except Exception:  # noqa: BLE001 - internals of the worker state may move; then rely on the rest
        pass
    return ""
