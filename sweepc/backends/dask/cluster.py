"""Reaching a dask cluster: start a LocalCluster or a dask_jobqueue cluster
(SLURM, PBS, SGE, LSF, HTCondor) for this build, or connect to a running
scheduler; what its workers offer; shutting down what sweepc started.

Workers sweepc starts declare two dask resources, `cpus` (slots) and `mem_mb`,
and as many threads as slots, so a task asking for a rule's cpus/mem takes
that much of one worker. Workers of a running cluster are used as they are:
with a `cpus` resource declared (dask-worker --resources "cpus=8") rules'
cpus are honoured; without, every task takes one thread.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sweepc.backends.dask.settings import DEFAULT_LOCAL_WORKERS, JOBQUEUE_CLASSES, DaskSettings, jobqueue_class, memory_mb
from sweepc.errors import UsageError

INSTALL = "pip install 'sweepc[dask]'"
CLOSE_TIMEOUT = 20.0
WORKER_ENV = ("export DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED=False",)


@dataclass(frozen=True)
class Shape:
    """What one worker offers, and how many slots the cluster has (or will have)."""

    worker_cpus: int | None  # None: workers declare no cpus resource (one thread per task)
    worker_mem_mb: int | None  # None: no mem_mb resource
    slots: int  # cpus' worth of jobs the whole cluster runs at once (expected, for jobqueue)
    text: str  # one line for the user


def require_dask(s: DaskSettings) -> None:
    """A UsageError saying what to install when distributed (or dask_jobqueue) is missing."""
    import importlib.util

    missing = [m for m in ("distributed",) if importlib.util.find_spec(m) is None]
    if s.cluster in JOBQUEUE_CLASSES and importlib.util.find_spec("dask_jobqueue") is None:
        missing.append("dask_jobqueue")
    if missing:
        raise UsageError(f"--backend dask needs {' and '.join(missing)}, which is not installed", f"install it with: {INSTALL}")


def local_shape(s: DaskSettings, jobs: int | None) -> tuple[int, int, int]:
    """(workers, slots per worker, MB per worker) of the LocalCluster sweepc starts."""
    import psutil

    total = jobs or (s.cores * (s.workers or DEFAULT_LOCAL_WORKERS) if s.cores else None) or os.cpu_count() or 1
    workers = max(1, min(s.workers or DEFAULT_LOCAL_WORKERS, total))
    cores = s.cores or max(1, total // workers)
    mem = memory_mb(s.memory) or int(psutil.virtual_memory().total // (1024 * 1024) // workers)
    return workers, cores, mem


def expected_shape(s: DaskSettings, jobs: int | None) -> Shape | None:
    """The workers sweepc would start (None for a running scheduler: ask it)."""
    if s.cluster == "local":
        workers, cores, mem = local_shape(s, jobs)
        return Shape(cores, mem, workers * cores, f"a LocalCluster of {workers} worker{'s' if workers != 1 else ''} x {cores} slot{'s' if cores != 1 else ''}")
    if s.cluster in JOBQUEUE_CLASSES:
        assert s.cores is not None
        processes = _processes(s)
        threads = max(1, s.cores // processes)
        job_mem = memory_mb(s.memory)
        per_mem = job_mem // processes if job_mem is not None else None
        n = s.jobs or s.maximum or s.minimum or 1
        how = f"{s.jobs or 1} batch job{'s' if (s.jobs or 1) != 1 else ''}" if s.minimum is None and s.maximum is None else f"{s.minimum or 0} to {s.maximum or s.minimum} batch jobs (adaptive)"
        return Shape(threads, per_mem, n * processes * threads, f"a {JOBQUEUE_CLASSES[s.cluster]} of {how}, {processes} worker{'s' if processes != 1 else ''} x {threads} slot{'s' if threads != 1 else ''} each")
    return None


def _processes(s: DaskSettings) -> int:
    """Worker processes per batch job, as dask_jobqueue will start them."""
    job_cls = jobqueue_class(s.cluster).job_cls
    kwargs = {k: v for k, v in s.jobqueue.items() if k != "shared_temp_directory"}
    return max(1, int(job_cls(scheduler="tcp://127.0.0.1:8786", name="sweepc-check", **kwargs).worker_processes))


@dataclass
class Session:
    client: Any  # distributed.Client
    cluster: Any | None  # what sweepc started (closed at the end), or None
    shape: Shape
    dashboard: str | None

    def close(self) -> None:
        """Disconnect; shut down a cluster sweepc started (a jobqueue cluster
        cancels its batch jobs)."""
        with contextlib.suppress(Exception):
            self.client.close(timeout=CLOSE_TIMEOUT)
        if self.cluster is not None:
            with contextlib.suppress(Exception):
                self.cluster.close(timeout=CLOSE_TIMEOUT)


def _quiet() -> None:
    for name in ("distributed", "dask_jobqueue", "bokeh"):
        logging.getLogger(name).setLevel(logging.ERROR)
    for name in ("tornado", "tornado.application", "asyncio"):  # dask's event loop: what fails there is reported by sweepc
        logging.getLogger(name).setLevel(logging.CRITICAL)


_CLOSE_AT_EXIT: list[bool] = []  # _own_close_at_exit() done


def _own_close_at_exit() -> None:
    """Put _close_clusters() in the place of distributed's own atexit hook
    (once). A Ctrl-C or SIGTERM (`sweepc cancel`) while a LocalCluster was
    starting left it half made, and distributed's hook ended the build's
    output with 'Exception ignored in atexit callback' and a traceback
    (AssertionError: Status.init) after `sweepc: interrupted`."""
    if _CLOSE_AT_EXIT:
        return
    from distributed.deploy import spec

    atexit.unregister(spec.close_clusters)
    atexit.register(_close_clusters)
    _CLOSE_AT_EXIT.append(True)


def _close_clusters() -> None:
    """distributed.deploy.spec.close_clusters, quiet: a cluster that cannot be
    closed (its workers not started yet) goes with this process, as its
    worker processes do (their nannies watch their parent)."""
    from distributed.core import Status
    from distributed.deploy.spec import SpecCluster

    for cluster in list(SpecCluster._instances):
        if getattr(cluster, "shutdown_on_close", False) and getattr(cluster, "status", Status.closed) != Status.closed:
            with contextlib.suppress(Exception):
                cluster.close(timeout=10)


@contextlib.contextmanager
def _stderr_of_children(log: Path | None) -> Iterator[None]:
    """Meanwhile fd 2 is `log` (appended to): the standard error of the
    processes started meanwhile, a LocalCluster's nannies and workers. A
    Ctrl-C or SIGTERM while they started left them failing to unpickle what
    sweepc had already let go of, and their tracebacks (FileNotFoundError in
    SemLock._rebuild) came after `sweepc: interrupted` on the terminal. When
    the cluster's start is cut short, fd 2 stays on the log (dask's event
    loop may still start processes) and sys.stderr, sweepc's own messages,
    goes on to the terminal through a copy of the old fd 2."""
    fd = -1
    if log is not None:
        with contextlib.suppress(OSError):
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
    if fd < 0:
        yield
        return
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.flush()
    saved = os.dup(2)
    os.dup2(fd, 2)  # (fd 2 stays inheritable: the children take it)
    os.close(fd)
    try:
        yield
    except BaseException:
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.flush()
        sys.stderr = open(saved, "w", encoding=getattr(sys.stderr, "encoding", None) or "utf-8",  # noqa: SIM115
                          errors="backslashreplace", buffering=1)
        raise
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.flush()
    os.dup2(saved, 2)
    os.close(saved)


def open_session(s: DaskSettings, jobs: int | None, log: Path | None = None) -> Session:
    """Start or reach the cluster. A running scheduler that cannot be reached
    within connect_timeout is a one-line UsageError. `log`: where the standard
    error of a LocalCluster's processes goes."""
    _quiet()
    _own_close_at_exit()
    import dask
    from distributed import Client

    dask.config.set({
        "distributed.admin.tick.limit": "1h",  # no "event loop blocked" noise
        # the workers' statistical profiler takes the GIL every 10 ms; between two
        # short jobs that delay is most of the cost (LocalCluster workers get this
        # config from their nanny; jobqueue workers through WORKER_ENV)
        "distributed.worker.profile.enabled": False,
    })
    if s.scheduler is not None:
        client = connect(s.scheduler, s.connect_timeout)
        return Session(client, None, probe(client, s), _dashboard(client))
    shape = expected_shape(s, jobs)
    assert shape is not None
    if s.cluster == "local":
        from distributed import LocalCluster

        workers, cores, mem = local_shape(s, jobs)
        with _stderr_of_children(log):
            cluster = LocalCluster(  # type: ignore[no-untyped-call]
                n_workers=workers, threads_per_worker=cores, processes=True, host="127.0.0.1",
                dashboard_address=s.dashboard, resources={"cpus": cores, "mem_mb": mem}, memory_limit=0,
                silence_logs=logging.ERROR,
            )
    else:
        cluster = _jobqueue(s, shape)
    try:
        client = Client(cluster, timeout=s.connect_timeout)  # type: ignore[no-untyped-call]
    except BaseException:
        with contextlib.suppress(Exception):
            cluster.close(timeout=CLOSE_TIMEOUT)
        raise
    return Session(client, cluster, shape, _dashboard(client))


def _jobqueue(s: DaskSettings, shape: Shape) -> Any:
    cls = jobqueue_class(s.cluster)
    kwargs: dict[str, Any] = dict(s.jobqueue)
    resources = f"cpus={shape.worker_cpus}" + (f",mem_mb={shape.worker_mem_mb}" if shape.worker_mem_mb else "")
    kwargs["worker_extra_args"] = [*kwargs.get("worker_extra_args", []), "--resources", resources]
    options: dict[str, Any] = {"dashboard_address": s.dashboard}
    if s.host is not None:
        options["host"] = s.host
    kwargs["scheduler_options"] = options
    kwargs.setdefault("python", _python())
    kwargs["job_script_prologue"] = [*kwargs.get("job_script_prologue", []), *WORKER_ENV]
    cluster = cls(silence_logs="error", **kwargs)
    try:
        # Submit the first batch jobs now and wait for the submission (not for
        # the jobs to start: they may queue for hours): a submission the
        # scheduler refuses (a bad queue or account) is then an error here,
        # where dask would only log it and retry while the build waited forever.
        with _Caught() as caught:
            cluster.scale(jobs=s.jobs or max(1, s.minimum or 0))
            with contextlib.suppress(Exception):  # the same failure, seen below
                cluster.sync(cluster._correct_state)
        unsent = [w for w in getattr(cluster, "workers", {}).values() if getattr(w, "job_id", "") is None]
        if unsent or caught.errors:
            why = caught.why() if caught.errors else "no job id came back"
            raise UsageError(
                f"dask_jobqueue could not submit the worker batch jobs: {why[:400]}",
                "check the backend dask: block (queue, account, walltime, job_extra_directives, ...); "
                f"the batch script starts: {_first_lines(cluster)}",
            )
        if s.minimum is not None or s.maximum is not None:
            cluster.adapt(minimum_jobs=s.minimum or 0, maximum_jobs=s.maximum or s.minimum or 1)
    except BaseException:
        with contextlib.suppress(Exception):
            cluster.close(timeout=CLOSE_TIMEOUT)
        raise
    return cluster


class _Caught(logging.Handler):
    """Errors dask's event loop would print with a traceback (a failed
    submission), kept instead for one line of our own."""

    NAMES = ("tornado.application", "asyncio", "distributed.deploy.spec")

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.errors: list[BaseException] = []
        self.saved: list[tuple[logging.Logger, list[logging.Handler], bool, int]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.exc_info[1] is not None:
            self.errors.append(record.exc_info[1])

    def __enter__(self) -> _Caught:
        for name in self.NAMES:
            log = logging.getLogger(name)
            self.saved.append((log, log.handlers[:], log.propagate, log.level))
            log.handlers = [self]
            log.propagate = False
            log.setLevel(logging.ERROR)
        return self

    def __exit__(self, *exc: object) -> None:
        for log, handlers, propagate, level in self.saved:
            log.handlers = handlers
            log.propagate = propagate
            log.setLevel(level)

    def why(self) -> str:
        """The first error in one line: a failed command's stderr when there is one."""
        text = str(self.errors[0])
        if "stderr:" in text:
            text = text.split("stderr:", 1)[1]
        return " ".join(text.split())


def _first_lines(cluster: Any) -> str:
    try:
        lines = [ln for ln in str(cluster.job_script()).splitlines() if ln.startswith("#")][1:6]
    except Exception:  # noqa: BLE001
        return "(not available)"
    return "; ".join(lines)


def _python() -> str:
    import sys

    return sys.executable


def connect(address: str, timeout: float) -> Any:
    from distributed import Client

    try:
        return Client(address, timeout=timeout, set_as_default=False)  # type: ignore[no-untyped-call]
    except (OSError, TimeoutError, ValueError) as e:
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UsageError(
            f"cannot reach the dask scheduler at {address} within {timeout:g} s ({why[:160]})",
            "is the scheduler running and reachable from here? set connect_timeout in the backend dask: block to wait longer",
        ) from None


def probe(client: Any, s: DaskSettings) -> Shape:
    """What the workers of a running cluster offer."""
    info = client.scheduler_info()
    workers = list(info.get("workers", {}).values())
    cpus = [w.get("resources", {}).get("cpus") for w in workers]
    mems = [w.get("resources", {}).get("mem_mb") for w in workers]
    threads = sum(int(w.get("nthreads", 1)) for w in workers)
    have_cpus = bool(workers) and all(c is not None for c in cpus)
    have_mem = bool(workers) and all(m is not None for m in mems)
    worker_cpus = int(max(c for c in cpus if c is not None)) if have_cpus else None
    worker_mem = int(max(m for m in mems if m is not None)) if have_mem else None
    slots = int(sum(c for c in cpus if c is not None)) if have_cpus else threads
    n = len(workers)
    text = f"the dask scheduler at {s.scheduler}: {n} worker{'s' if n != 1 else ''}, {slots} slot{'s' if slots != 1 else ''}"
    return Shape(worker_cpus, worker_mem, max(1, slots), text)


def _dashboard(client: Any) -> str | None:
    import importlib.util

    if importlib.util.find_spec("bokeh") is None:
        return None
    try:
        link = client.dashboard_link
    except Exception:  # noqa: BLE001 - no dashboard
        return None
    return str(link) if link else None


def capacity(client: Any, fallback: int) -> int:
    """Slots the cluster has now (jobqueue workers come and go)."""
    try:
        workers = client.scheduler_info().get("workers", {}).values()
    except Exception:  # noqa: BLE001
        return fallback
    total = 0
    for w in workers:
        c = w.get("resources", {}).get("cpus")
        total += int(c) if c is not None else int(w.get("nthreads", 1))
    return total or fallback
