"""The `backend dask:` block of a sweepfile, checked once, with file:line:col.

The compiler keeps backend blocks as plain values (graph.backends["dask"]);
what they mean is the dask backend's business. Mistakes point at the setting
in the sweepfile (its place is found again by parsing the sweepfile text,
which the compiler kept), so they read like every other sweepfile error.

    cluster = "local"                 # local (default), slurm, pbs, sge, lsf, htcondor
    scheduler = "tcp://host:8786"     # or a running cluster (no cluster = then)
    workers = 2                       # local: worker processes
    cores = 8                         # local: slots per worker; jobqueue: cores per batch job
    memory = "16GB"                   # local: per worker; jobqueue: per batch job
    jobs = 4                          # jobqueue: batch jobs (or minimum/maximum: adaptive)
    batch = 50                        # sweepc jobs per dask task (default: from measured runtimes)
    dashboard = "127.0.0.1:8787"      # where the scheduler sweepc starts serves its dashboard
    host = "127.0.0.1"                # jobqueue: the address the scheduler listens on
    connect_timeout = 10              # seconds to reach `scheduler`
    queue = ... account = ... walltime = ... processes = ... job_extra_directives = [...]
                                      # jobqueue: passed to dask_jobqueue's cluster as they are
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sweepc.errors import Diagnostic, Span, SweepfileError, did_you_mean, listing
from sweepc.lang.graph import BuildGraph
from sweepc.values import Scalar

CLUSTERS = ("local", "slurm", "pbs", "sge", "lsf", "htcondor")
JOBQUEUE_CLASSES = {
    "slurm": "SLURMCluster", "pbs": "PBSCluster", "sge": "SGECluster", "lsf": "LSFCluster", "htcondor": "HTCondorCluster",
}
# What sweepc itself reads; everything else goes to dask_jobqueue (jobqueue clusters only).
OWN = ("cluster", "scheduler", "workers", "jobs", "minimum", "maximum", "batch", "dashboard", "host", "connect_timeout")
SHARED = ("cores", "memory")  # read by sweepc, and passed on to dask_jobqueue
LOCAL_ONLY = ("workers",)
JOBQUEUE_ONLY = ("jobs", "minimum", "maximum", "host")
# dask_jobqueue keywords sweepc sets itself (or that make no sense in a sweepfile)
_REFUSED = {
    "scheduler": "sweepc starts the scheduler; to use a running one write scheduler = \"tcp://host:8786\" without cluster",
    "name": "sweepc names the workers itself",
    "scheduler_options": "use host and dashboard",
    "dashboard_address": "use dashboard",
    "security": "not supported in a sweepfile yet",
    "config_name": "not supported in a sweepfile",
    "n_workers": "use jobs",
    "job_cls": "use cluster",
    "loop": "not a sweepfile setting",
    "asynchronous": "not a sweepfile setting",
    "scheduler_cls": "not a sweepfile setting",
    "silence_logs": "sweepc keeps dask's logs quiet itself",
}

DEFAULT_DASHBOARD = "127.0.0.1:8787"
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_LOCAL_WORKERS = 2

Value = Scalar | tuple[Scalar, ...]


@dataclass(frozen=True)
class DaskSettings:
    cluster: str = "local"  # local | slurm | pbs | sge | lsf | htcondor | scheduler (a running one)
    scheduler: str | None = None
    workers: int | None = None  # local
    cores: int | None = None
    memory: str | None = None
    jobs: int | None = None  # jobqueue: a fixed number of batch jobs
    minimum: int | None = None  # jobqueue: adaptive
    maximum: int | None = None
    batch: int | None = None
    dashboard: str = DEFAULT_DASHBOARD
    host: str | None = None
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    jobqueue: Mapping[str, Any] = field(default_factory=dict)  # passed to dask_jobqueue as they are

    @property
    def describe(self) -> str:
        return f"a running scheduler at {self.scheduler}" if self.scheduler else f"cluster = \"{self.cluster}\""


class _Places:
    """Where each setting of the block stands in the sweepfile."""

    def __init__(self, g: BuildGraph) -> None:
        self.g = g
        self.block: Span | None = None
        self.names: dict[str, Span] = {}
        self.values: dict[str, Span] = {}
        from sweepc.lang import syntax as s
        from sweepc.lang.parser import parse

        try:
            module = parse(g.source, g.sweepfile.name)
        except Exception:  # the graph compiled, so this does not happen; no places then
            return
        for st in module.statements:
            if isinstance(st, s.BackendDef) and st.name == "dask":
                self.block = st.name_span
                for item in st.settings:
                    self.names[item.name] = item.name_span
                    self.values[item.name] = item.value.span

    def error(self, message: str, key: str | None, hint: str, at_value: bool = True) -> SweepfileError:
        span = self.block
        if key is not None:
            span = (self.values if at_value else self.names).get(key, self.block)
        return SweepfileError([Diagnostic(message, span, hint, self.g.sweepfile.name)], self.g.source)


def settings(g: BuildGraph) -> DaskSettings:
    """The block checked (SweepfileError with file:line:col for a mistake);
    without a block, a LocalCluster on this machine."""
    block: Mapping[str, Value] = g.backends.get("dask", {})
    if not block:
        return DaskSettings()
    where = _Places(g)

    def text(key: str, example: str) -> str | None:
        v = block.get(key)
        if v is None:
            return None
        if not isinstance(v, str) or not v.strip():
            raise where.error(f"{key} must be a string, not {_show(v)}", key, f"for example: {key} = \"{example}\"")
        return v.strip()

    def count(key: str, example: int, least: int = 1) -> int | None:
        v = block.get(key)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int) or v < least:
            raise where.error(f"{key} must be a whole number of at least {least}, not {_show(v)}", key, f"for example: {key} = {example}")
        return v

    cluster = text("cluster", "slurm")
    scheduler = text("scheduler", "tcp://127.0.0.1:8786")
    if cluster is not None and cluster not in CLUSTERS:
        raise where.error(f"unknown dask cluster '{cluster}'", "cluster",
                          did_you_mean(cluster, CLUSTERS) or f"clusters: {', '.join(CLUSTERS)}; or scheduler = \"tcp://host:8786\"")
    if scheduler is not None:
        if cluster is not None:
            raise where.error("give either cluster or scheduler, not both", "scheduler",
                              "scheduler connects to a running cluster; cluster starts one")
        if "://" not in scheduler:
            raise where.error(f"scheduler must be an address such as \"tcp://host:8786\", not {_show(scheduler)}", "scheduler",
                              'for example: scheduler = "tcp://10.0.0.5:8786"')
        for key in block:
            if key not in ("scheduler", "batch", "connect_timeout"):
                raise where.error(f"'{key}' has no effect with scheduler (a running cluster)", key,
                                  "with scheduler only batch and connect_timeout apply; remove it", at_value=False)
    kind = "scheduler" if scheduler is not None else (cluster or "local")

    jobqueue: dict[str, Any] = {}
    for key, v in block.items():
        if key in OWN or key in SHARED:
            if kind == "local" and key in JOBQUEUE_ONLY:
                raise where.error(f"'{key}' applies to batch-job clusters (cluster = \"slurm\", ...), not to a local one", key,
                                  "remove it, or set cluster", at_value=False)
            if kind in JOBQUEUE_CLASSES and key in LOCAL_ONLY:
                raise where.error(f"'{key}' applies to cluster = \"local\"; with cluster = \"{kind}\" give jobs (batch jobs) instead", key,
                                  "for example: jobs = 4", at_value=False)
            if key in SHARED and kind in JOBQUEUE_CLASSES:
                jobqueue[key] = v
            continue
        if kind != "local" and kind in JOBQUEUE_CLASSES:
            if key in _REFUSED:
                raise where.error(f"'{key}' cannot be set here: {_REFUSED[key]}", key, "remove it", at_value=False)
            jobqueue[key] = list(v) if isinstance(v, tuple) else v
            continue
        known = OWN + SHARED
        raise where.error(f"unknown dask setting '{key}'", key,
                          did_you_mean(key, known) or f"settings of a local cluster: {listing(k for k in known if k not in JOBQUEUE_ONLY)}",
                          at_value=False)

    memory = block.get("memory")
    mem_text: str | None = None
    if memory is not None:
        if isinstance(memory, bool) or not isinstance(memory, (str, int)):
            raise where.error(f"memory must be an amount such as \"16GB\", not {_show(memory)}", "memory", 'for example: memory = "16GB"')
        mem_text = str(memory)
        if _bytes(mem_text) is None:
            raise where.error(f"memory must be an amount such as \"16GB\", not {_show(memory)}", "memory", 'for example: memory = "16GB"')
    timeout = block.get("connect_timeout")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0):
        raise where.error(f"connect_timeout must be a number of seconds above 0, not {_show(timeout)}", "connect_timeout",
                          "for example: connect_timeout = 30")
    jobs, minimum, maximum = count("jobs", 4), count("minimum", 1, least=0), count("maximum", 20)
    if jobs is not None and (minimum is not None or maximum is not None):
        raise where.error("give either jobs (a fixed number of batch jobs) or minimum/maximum (adaptive), not both", "jobs",
                          "for example: jobs = 4, or minimum = 1 and maximum = 20")
    if minimum is not None and maximum is not None and minimum > maximum:
        raise where.error(f"minimum ({minimum}) is above maximum ({maximum})", "minimum", "minimum batch jobs must not exceed maximum")
    out = DaskSettings(
        cluster=kind, scheduler=scheduler, workers=count("workers", 2), cores=count("cores", 8), memory=mem_text,
        jobs=jobs, minimum=minimum, maximum=maximum, batch=count("batch", 50),
        dashboard=text("dashboard", DEFAULT_DASHBOARD) or DEFAULT_DASHBOARD, host=text("host", "127.0.0.1"),
        connect_timeout=float(timeout) if timeout is not None else DEFAULT_CONNECT_TIMEOUT, jobqueue=jobqueue,
    )
    if kind in JOBQUEUE_CLASSES:
        check_jobqueue(out, where)
    return out


def check_jobqueue(s: DaskSettings, where: _Places) -> None:
    """Let dask_jobqueue judge the options, without starting anything: build
    the job object it would submit (its constructor checks every keyword)."""
    if s.cores is None or s.memory is None:
        missing = " and ".join(k for k in ("cores", "memory") if getattr(s, k) is None)
        raise where.error(f"cluster = \"{s.cluster}\" needs {missing} (per batch job)", "cluster",
                          'for example: cores = 8 and memory = "16GB"')
    try:
        cls = jobqueue_class(s.cluster)
    except ImportError:
        return  # the backend says what to install before it gets here
    job_cls = cls.job_cls
    accepted = _keywords(job_cls) | {"interface", "protocol", "shared_temp_directory"}
    for key in s.jobqueue:
        if key not in accepted:
            raise where.error(f"dask_jobqueue's {cls.__name__} has no option '{key}'", key,
                              did_you_mean(key, accepted) or "see the options of dask_jobqueue's " + cls.__name__, at_value=False)
    kwargs = {k: v for k, v in s.jobqueue.items() if k != "shared_temp_directory"}
    try:
        job_cls(scheduler="tcp://127.0.0.1:8786", name="sweepc-check", **kwargs)
    except Exception as e:  # noqa: BLE001 - dask_jobqueue's own words, on one line
        key = next((k for k in s.jobqueue if k in str(e)), "cluster")
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise where.error(f"dask_jobqueue rejects these settings: {first}", key, "see docs/dask.md for the settings") from None


def jobqueue_class(cluster: str) -> Any:
    """dask_jobqueue's cluster class for `cluster`. Importing dask_jobqueue
    (its runner module) replaces the SIGINT handler with sys.exit(); put
    Python's back, or Ctrl-C would end sweepc without recording anything."""
    import signal
    import threading

    main = threading.current_thread() is threading.main_thread()
    old = signal.getsignal(signal.SIGINT) if main else None
    try:
        import dask_jobqueue
    finally:
        if main and signal.getsignal(signal.SIGINT) is not old:
            signal.signal(signal.SIGINT, old)
    return getattr(dask_jobqueue, JOBQUEUE_CLASSES[cluster])


def _keywords(job_cls: type) -> set[str]:
    names: set[str] = set()
    for klass in job_cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        for p in inspect.signature(init).parameters.values():
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in ("self", "scheduler", "name"):
                names.add(p.name)
    return names


def _bytes(text: str) -> int | None:
    try:
        from dask.utils import parse_bytes
    except ImportError:
        return 1  # checked again once dask is there
    try:
        n = int(parse_bytes(text))
    except (ValueError, TypeError):
        return None
    return n if n > 0 else None


def memory_mb(text: str | None) -> int | None:
    if text is None:
        return None
    n = _bytes(text)
    return None if n is None else n // (1024 * 1024)


def _show(v: object) -> str:
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, tuple):
        return "a list"
    return str(v)
