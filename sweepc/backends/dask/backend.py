"""The dask backend's build: a Plan through a dask cluster. Entry point: execute().

sweepc keeps the job graph: a job is handed to dask only once its inputs are
done, as part of a batch (one dask task running several jobs of one resource
shape one after another, see tasks.run_batch), so dask's per-task cost does
not cap the rate of short jobs. Batches are sized from the runtimes measured
so far (about BATCH_SECONDS of work each, at most MAX_BATCH jobs, and never
so large that slots stay idle), or fixed by `batch =` in the sweepfile.

sweepc prepares each job folder (as the local backend does; the workers see
the same file system), judges what comes back (exit 0 and every output
present, else failed; retries with `restart:`; -k), and is the only writer of
the state store. Ctrl-C: every worker is told to stop this build's batches
(each kills its running job's process tree), what was running is recorded
interrupted, what was queued is cancelled, and the cluster sweepc started is
shut down.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from sweepc.backends.base import Failure, Interrupted, Reporter, Summary, params_json, tail_lines
from sweepc.backends.dask.cluster import Session, capacity
from sweepc.backends.dask.settings import DaskSettings
from sweepc.backends.hold import StopsHeld
from sweepc.backends.dask.tasks import JobResult, JobSpec, PyCall, clear_flag, run_batch, set_flag
from sweepc.backends.jobdir import PSET_JSON_ENV, WRITE_FLAGS, JobDirError, check_end, prepare_job_dir, uses_input_list
from sweepc.errors import MachineError, UsageError, machine_error
from sweepc.lang.graph import LOG_NAME, PSET_JSON_NAME, BuildGraph, Job
from sweepc.backends.local.limits import time_limit_reached
from sweepc.plan.planner import Plan, dynamic_fingerprint
from sweepc.backends import soft
from sweepc.plan.store import Outcome, Store

FLUSH_SECONDS = 0.5  # how long the loop waits for a batch to come back
BATCH_SECONDS = 0.5  # work per dask task once runtimes are known
MAX_BATCH = 200
STOP_WAIT = 10.0  # after Ctrl-C: how long the workers get to stop and report
RUN_TIMEOUT = 5.0  # Client.run (a flag to every worker)
CAPACITY_EVERY = 2.0

Shape = tuple[int, int]  # (cpus, mem_mb or 0)


def check_fit(g: BuildGraph, run: Sequence[int], worker_cpus: int | None, worker_mem_mb: int | None, where: str) -> None:
    """A job no worker can take is an error before anything starts."""
    for i in run:
        job = g.jobs[i]
        res = job.resources
        if worker_cpus is None:
            if res.cpus > 1:
                raise UsageError(
                    f"{job.label} needs {res.cpus} cpus, but the workers of {where} declare no 'cpus' resource",
                    'start the workers with: dask-worker --resources "cpus=N" ..., or lower its resources: cpus',
                )
        elif res.cpus > worker_cpus:
            raise UsageError(
                f"{job.label} needs {res.cpus} cpus, but each worker of {where} has {worker_cpus}",
                "give each worker more (cores, workers or -j in the backend dask: block), or lower its resources: cpus",
            )
        if res.mem_mb is not None and worker_mem_mb is not None and res.mem_mb > worker_mem_mb:
            raise UsageError(
                f"{job.label} needs {res.mem_mb} MB of memory, but each worker of {where} has {worker_mem_mb} MB",
                "give the workers more memory (memory in the backend dask: block), or lower its resources: mem",
            )


def execute(plan: Plan, store: Store, run_id: str, reporter: Reporter, s: DaskSettings, session: Session,
            jobs: int | None = None, keep_going: bool = False, time_limits: bool = True) -> Summary:
    g = plan.graph
    check_fit(g, plan.run, session.shape.worker_cpus, session.shape.worker_mem_mb, session.shape.text)
    return _Runner(plan, store, run_id, reporter, s, session, jobs, keep_going, time_limits).run()


def _append(log: Path, text: str) -> None:
    """A line of sweepc's own in a job's log, never through a link (as locally)."""
    fd = os.open(log, WRITE_FLAGS | os.O_APPEND, 0o666)
    with open(fd, "a") as f:
        f.write(text)


@contextlib.contextmanager
def no_interrupts() -> Iterator[None]:
    """Ctrl-C is held off while the build cleans up (a second one must not
    leave worker batch jobs queued); SIGTERM too."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
    old_term = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)


class _Runner:
    def __init__(self, plan: Plan, store: Store, run_id: str, reporter: Reporter, s: DaskSettings, session: Session,
                 jobs: int | None, keep_going: bool, time_limits: bool = True) -> None:
        self.time_limits = time_limits
        self.plan, self.g, self.store, self.run_id, self.reporter = plan, plan.graph, store, run_id, reporter
        self.s, self.session, self.client = s, session, session.client
        self.keep_going = keep_going
        # -j on a cluster sweepc did not size itself: cpus' worth of jobs handed out at once
        self.j_limit = jobs if jobs is not None and s.cluster != "local" else None
        self.slots = session.shape.slots
        self.slots_at = time.monotonic()
        self.base_env = {
            "SWEEPC_ROOT": str(self.g.root), "SWEEPC_RUN_ID": run_id,
            # a build that finds this one dead stops what it left on this machine (reap_orphans)
            "SWEEPC_BUILD_PID": str(os.getpid()),
        }
        self.wd = self.g.workdir_path
        self.uses_list = {r.name: uses_input_list(r) for r in self.g.rules}
        self.outputs = {r.name: tuple(o.path for o in r.outputs) for r in self.g.rules}
        self.pending: list[Outcome] = []
        self.last_flush = time.monotonic()
        self.runtime: dict[Shape, tuple[int, float]] = {}  # shape -> (jobs measured, seconds)
        # as the local backend: results JSON between check() and outcome(), jobs that
        # ended done, and the fingerprints jobs really have (plan.dynamic: made at start)
        self.results: dict[int, str] = {}
        self.cpu: dict[int, float | None] = {}  # job id -> CPU seconds of its last attempt
        self.done_ids: set[int] = set()
        self.kept_ids: set[int] = set()  # of those, the ones kept as they were (soft.kept), not run
        self.in_run = set(plan.run)
        self.fps: list[str] = list(plan.fingerprints)
        self.dyn_fp: dict[int, tuple[str, str]] = {}
        self.seq = 0

    # -- bookkeeping
    def flush(self, force: bool = False) -> None:
        """Commit the outcomes seen so far (after every batch that came back,
        as the local backend commits every end: a WAL commit is ~0.1 ms)."""
        if self.pending:
            self.store.record(self.pending)
            self.pending = []
            self.last_flush = time.monotonic()

    def shape(self, i: int) -> Shape:
        res = self.g.jobs[i].resources
        return (res.cpus, res.mem_mb or 0)

    def run(self) -> Summary:
        g, plan = self.g, self.plan
        run = plan.run
        t0 = time.monotonic()
        self.store.mark_planned(((g.jobs[i].rule, g.jobs[i].hash, params_json(g.jobs[i])) for i in run), self.run_id)
        in_plan = set(run)
        waiting = {i: sum(1 for d in set(g.jobs[i].deps) if d in in_plan) for i in run}
        self.dependents: dict[int, list[int]] = {}
        for i in run:
            for d in set(g.jobs[i].deps):
                if d in in_plan:
                    self.dependents.setdefault(d, []).append(i)
        self.ready: dict[Shape, deque[int]] = {}
        for i in run:
            if waiting[i] == 0:
                self.ready.setdefault(self.shape(i), deque()).append(i)
        self.waiting = waiting
        self.attempts: dict[int, int] = {}
        self.inflight: dict[Any, list[tuple[int, int]]] = {}  # future -> [(job, attempt)]
        self.inflight_cpus = 0
        self.done = 0
        self.failures: list[Failure] = []
        self.blocked: set[int] = set()
        self.stopping = False
        self.interrupted: list[int] = []
        # A stop signal is acted on while waiting for batches, and held while
        # their results are judged (backends/hold.py): none is lost half-judged.
        hold = StopsHeld()
        with hold:
            try:
                hold.on = True
                while True:
                    if not self.stopping:
                        self.submit_ready()
                    if not self.inflight:
                        break
                    hold.open()
                    ended = self.wait_some(FLUSH_SECONDS)  # (still in self.inflight until collected)
                    hold.on = True
                    for fut in ended:
                        self.collect(fut)
                    self.flush()
                hold.open()
            except KeyboardInterrupt:
                hold.on = True
                with no_interrupts():
                    self.stop_all()
                    self.flush(force=True)
                raise Interrupted(self.summary(run, t0)) from None
            except MachineError:
                # A full disk / read-only store: stop what runs and record what we can
                # (if the store cannot be written the jobs stay 'planned' and rerun), as locally.
                with no_interrupts():
                    self.stop_all()
                    with contextlib.suppress(MachineError):
                        self.flush(force=True)
                raise
        self.flush(force=True)
        if self.s.scheduler is not None:  # a cluster that outlives us: leave no flag behind
            self.tell(clear_flag, self.run_id)
        return self.summary(run, t0)

    def summary(self, run: Sequence[int], t0: float) -> Summary:
        skipped = len(self.blocked)
        not_started = len(run) - self.done - len(self.failures) - skipped - len(self.interrupted)
        return Summary(
            total=len(run), done=self.done, failed=tuple(self.failures), skipped=skipped, not_started=max(0, not_started),
            interrupted=tuple(self.interrupted), uptodate=self.plan.uptodate, elapsed=time.monotonic() - t0,
        )

    # -- handing out work
    def limit(self) -> int:
        if self.j_limit is not None:
            return self.j_limit
        now = time.monotonic()
        if now - self.slots_at > CAPACITY_EVERY and self.session.cluster is not None and self.s.cluster != "local":
            self.slots = capacity(self.client, self.session.shape.slots)
            self.slots_at = now
        return 2 * self.slots  # a queue as deep as the cluster keeps every slot busy

    def batch_size(self, shape: Shape, ready: int) -> int:
        if self.s.batch is not None:
            return self.s.batch
        n, total = self.runtime.get(shape, (0, 0.0))
        size = 1 if n == 0 else max(1, min(MAX_BATCH, int(BATCH_SECONDS / max(total / n, 1e-3))))
        lanes = max(1, self.slots // max(1, shape[0]))
        return max(1, min(size, math.ceil(ready / lanes)))

    def submit_ready(self) -> None:
        limit = self.limit()
        for shape, q in self.ready.items():
            while q and (not self.inflight or self.inflight_cpus + shape[0] <= limit):
                size = self.batch_size(shape, len(q))
                batch: list[tuple[int, int]] = []
                specs: list[JobSpec] = []
                while q and len(batch) < size:
                    i = q.popleft()
                    if self.keep(i):
                        continue
                    attempt = self.attempts.get(i, 0) + 1
                    self.attempts[i] = attempt
                    spec = self.prepare(i, attempt)
                    if spec is None:
                        continue
                    batch.append((i, attempt))
                    specs.append(spec)
                if not batch:
                    continue
                self.seq += 1
                fut = self.client.submit(
                    run_batch, self.run_id, specs, key=f"sweepc-{self.g.jobs[batch[0][0]].rule}-{self.run_id}-{self.seq}",
                    resources=self.resources(shape), pure=False,
                )
                self.inflight[fut] = batch
                self.inflight_cpus += shape[0]
                for i, attempt in batch:
                    self.reporter.job_started(self.g.jobs[i], attempt)

    def resources(self, shape: Shape) -> dict[str, int] | None:
        sh = self.session.shape
        if sh.worker_cpus is None:
            return None
        res = {"cpus": shape[0]}
        if shape[1] and sh.worker_mem_mb is not None:
            res["mem_mb"] = shape[1]
        return res

    def prepare(self, i: int, attempt: int) -> JobSpec | None:
        """The job folder made ready here, as the local backend does (marked
        as sweepc's, never through a link); None (and the job failed) when it
        cannot be. A full disk stops the build (MachineError), as locally."""
        job = self.g.jobs[i]
        d = self.wd / job.reldir
        log = d / LOG_NAME
        only: set[int] | None = None
        if i in self.plan.dynamic:
            kept = self.done_inputs(job)
            self.dyn_fp[i] = dynamic_fingerprint(self.plan, i, self.fps, kept)
            self.fps[i] = self.dyn_fp[i][1]
            if job.soft:
                only = set(kept) | (set(job.deps) - job.soft)
                left = [k for k in dict.fromkeys(job.deps) if k in job.soft and k not in only]
                if left:
                    names = ", ".join(self.g.jobs[k].label for k in left[:5]) + (", ..." if len(left) > 5 else "")
                    rules = ", ".join(f"done({r})" for r in dict.fromkeys(self.g.jobs[k].rule for k in left))
                    self.reporter.note(f"{job.label} runs without {len(left)} of the {len(job.soft)} jobs of {rules} that did not end done: {names}")
        try:
            prepare_job_dir(self.g, job, input_list=self.uses_list[job.rule], only=only)
            if attempt > 1:  # keep what the earlier attempts said
                _append(log, f"\n=== sweepc: attempt {attempt}{' (restart)' if job.restart is not None else ''} ===\n")
        except JobDirError as e:
            now = time.time()
            self.final_failure(i, None, now, now, 0, str(e), attempt, None, "")
            return None
        except OSError as e:
            err = machine_error(str(d), str(self.wd), e)
            if err is not None:
                raise err from None
            now = time.time()
            self.final_failure(i, None, now, now, 0, f"cannot prepare {d}: {e}", attempt, None, "")
            return None
        command = job.restart if attempt > 1 and job.restart is not None else job.command
        env = dict(self.base_env)
        env.update({"SWEEPC_JOB_DIR": str(d), PSET_JSON_ENV: str(d / PSET_JSON_NAME), "SWEEPC_RULE": job.rule,
                    "SWEEPC_PSET_HASH": job.hash, "SWEEPC_ATTEMPT": str(attempt)})
        python = None
        rule = self.g.rule(job.rule)
        if rule.python is not None:  # called in a Python worker on the dask worker (tasks.py), not as `command`
            python = PyCall(str(self.g.root / rule.python[0]), rule.python[1], dict(job.params), job.rule, job.hash,
                            self.uses_list[job.rule])
        return JobSpec(i, command, str(d), str(log), env, attempt > 1, job.resources.time_s if self.time_limits else None, python)

    # -- what comes back
    def wait_some(self, timeout: float) -> list[Any]:
        from distributed import wait

        with contextlib.suppress(TimeoutError):
            wait(list(self.inflight), timeout=timeout, return_when="FIRST_COMPLETED")  # type: ignore[no-untyped-call]
        return [f for f in self.inflight if f.done()]

    def collect(self, fut: Any) -> None:
        batch = self.inflight.pop(fut)
        self.inflight_cpus -= self.shape(batch[0][0])[0]
        try:
            results: list[JobResult] = fut.result(timeout=RUN_TIMEOUT)
        except Exception as e:  # noqa: BLE001 - the task failed (its worker died, ...): its jobs failed
            why = f"the dask task failed: {type(e).__name__}: {e}".strip()
            now = time.time()
            for i, attempt in batch:
                self.judge_failure(i, attempt, None, now, now, 0, why, None, "")
            return
        finally:
            fut.release()
        by_key = {r.key: r for r in results}
        for i, attempt in batch:
            r = by_key.get(i)
            if r is None:
                now = time.time()
                self.judge_failure(i, attempt, None, now, now, 0, "the dask task returned no result for it", None, "")
            else:
                self.judge(i, attempt, r)

    def judge(self, i: int, attempt: int, r: JobResult) -> None:
        job = self.g.jobs[i]
        self.cpu[i] = r.cpu_s  # (its outcome's, whichever it is)
        if r.state == "not-run":
            self.attempts[i] = attempt - 1
            if self.stopping:
                return  # not started: stays planned
            self.ready.setdefault(self.shape(i), deque()).appendleft(i)  # its worker went away first
            return
        if r.state == "interrupted":
            if self.stopping:
                self.record_interrupted(i, attempt, r)
                return
            self.judge_failure(i, attempt, r.exit_code, r.start, r.end, r.max_rss_kb, f"stopped on the worker: {r.message}", r.host, r.worker)
            return
        if r.state == "error":
            self.judge_failure(i, attempt, None, r.start, r.end, 0, r.message, r.host, r.worker)
            return
        n, total = self.runtime.get(self.shape(i), (0, 0.0))
        self.runtime[self.shape(i)] = (n + 1, total + max(0.0, r.end - r.start))
        if r.state == "timeout":  # whatever it did after the SIGTERM, it did not finish in time
            message = time_limit_reached(job.resources.time_s or 0)
            with contextlib.suppress(OSError):
                _append(self.wd / job.reldir / LOG_NAME, f"\n=== sweepc: {message}, job stopped ===\n")
            self.judge_failure(i, attempt, r.exit_code, r.start, r.end, r.max_rss_kb, message, r.host, r.worker, "timeout")
            return
        ok, message = self.check(i, r)
        if ok:
            self.done += 1
            self.done_ids.add(i)
            outcome = self.outcome(i, "done", r.exit_code, r.start, r.end, r.max_rss_kb, attempt, r.host, r.worker)
            self.pending.append(outcome)
            self.reporter.job_ended(job, outcome, False)
            self.release(i)
            return
        self.judge_failure(i, attempt, r.exit_code, r.start, r.end, r.max_rss_kb, message, r.host, r.worker)

    def check(self, i: int, r: JobResult) -> tuple[bool, str]:
        if r.exit_code != 0:
            if r.message:  # a python: job: the exception's last line, or how its worker died
                return False, r.message
            if r.signal is not None:
                return False, f"killed by signal {r.signal}"
            return False, f"exit {r.exit_code}"
        job = self.g.jobs[i]
        problem, results = check_end(self.g, job.rule, self.wd / job.reldir)
        if problem is not None:
            return False, problem
        if results is not None:
            self.results[i] = results  # goes into the store's history with the job's outcome
        return True, ""

    def release(self, i: int) -> None:
        """Job i is done: what waited only for it is ready."""
        for k in self.dependents.get(i, ()):
            self.waiting[k] -= 1
            if self.waiting[k] == 0 and k not in self.blocked:
                self.ready.setdefault(self.shape(k), deque()).append(k)

    def keep(self, i: int) -> bool:
        """A job with done() inputs (or downstream of one) whose inputs came out
        as they were keeps its recorded outcome, as locally (True: nothing to run)."""
        kept = self.kept(i)
        if kept is None:
            return False
        job = self.g.jobs[i]
        self.reporter.note(
            f"{job.label} is up to date: "
            + ("the jobs of its done() inputs that ended done are those it was built with" if job.soft else "its inputs came out as they were")
        )
        self.done += 1
        self.done_ids.add(i)
        self.kept_ids.add(i)
        self.pending.append(kept)
        self.reporter.job_ended(job, kept, False)
        self.release(i)
        return True

    def kept(self, i: int) -> Outcome | None:
        return soft.kept(self.plan, i, self.fps, self.done_ids, self.in_run, self.wd, "dask", self.kept_ids)

    def done_inputs(self, job: Job) -> list[int]:
        return soft.done_inputs(self.plan, job, self.done_ids, self.in_run)

    def judge_failure(self, i: int, attempt: int, exit_code: int | None, start: float, end: float, rss_kb: int,
                      message: str, host: str | None, worker: str, status: str = "failed") -> None:
        job = self.g.jobs[i]
        if attempt <= self.g.rule(job.rule).retries and not self.stopping:
            self.reporter.job_ended(job, self.outcome(i, status, exit_code, start, end, rss_kb, attempt, host, worker), True)
            self.ready.setdefault(self.shape(i), deque()).appendleft(i)
            return
        self.final_failure(i, exit_code, start, end, rss_kb, message, attempt, host, worker, status)

    def final_failure(self, i: int, exit_code: int | None, start: float, end: float, rss_kb: int, message: str,
                      attempt: int, host: str | None, worker: str, status: str = "failed") -> None:
        job = self.g.jobs[i]
        log = self.wd / job.reldir / LOG_NAME
        outcome = self.outcome(i, status, exit_code if exit_code is not None else -1, start, end, rss_kb, attempt, host, worker)
        self.pending.append(outcome)
        self.reporter.job_ended(job, outcome, False)
        self.failures.append(Failure(i, job.label, exit_code, log, tail_lines(log), message))
        self.blocked |= self.ended_not_done(i)
        if not self.keep_going and not self.stopping:
            self.stopping = True
            self.tell(set_flag, self.run_id, "drain")  # batches start no further job

    def record_interrupted(self, i: int, attempt: int, r: JobResult | None) -> None:
        now = time.time()
        outcome = self.outcome(i, "interrupted", r.exit_code if r else None, r.start if r else now, r.end if r else now,
                               r.max_rss_kb if r else 0, attempt, r.host if r else None, r.worker if r else "")
        self.pending.append(outcome)
        self.reporter.job_ended(self.g.jobs[i], outcome, False)
        self.interrupted.append(i)

    def ended_not_done(self, i: int) -> set[int]:
        """Job i failed: what needs it cannot run (returned, counted as skipped),
        nor what needs those; a job taking it through `input: done(RULE)` stops
        waiting for it instead and runs without it (as locally)."""
        out: set[int] = set()
        stack = [i]
        jobs = self.g.jobs
        while stack:
            x = stack.pop()
            for k in self.dependents.get(x, ()):
                if x in jobs[k].soft:
                    self.waiting[k] -= 1
                    if self.waiting[k] == 0 and k not in self.blocked and k not in out:
                        self.ready.setdefault(self.shape(k), deque()).append(k)
                elif k not in out and k not in self.blocked:
                    out.add(k)
                    stack.append(k)
        return out

    def outcome(self, i: int, status: str, exit_code: int | None, start: float | None, end: float | None, rss_kb: int,
                attempt: int, host: str | None, worker: str) -> Outcome:
        job: Job = self.g.jobs[i]
        ok = status == "done"
        ins, fp = self.dyn_fp.get(i) or (self.plan.inputs_hashes[i], self.plan.fingerprints[i])
        return Outcome(
            rule=job.rule, hash=job.hash, status=status,
            fingerprint=fp if ok else None,
            cmd_hash=self.plan.cmd_hashes[i] if ok else None,
            inputs_hash=ins if ok else None,
            exit_code=exit_code, start=start, end=end, host=host,
            max_rss_mb=round(rss_kb / 1024, 1), attempts=attempt, backend="dask",
            cpu_s=round(cpu, 3) if (cpu := self.cpu.get(i)) is not None else None,
            backend_job_id=worker or None, run_id=self.run_id, results=self.results.pop(i, None) if ok else None,
        )

    # -- stopping
    def tell(self, fn: Any, *args: str) -> None:
        """Run fn(*args) on every worker, waiting at most RUN_TIMEOUT."""
        t = threading.Thread(target=self._tell, args=(fn, *args), daemon=True)
        t.start()
        t.join(RUN_TIMEOUT)

    def _tell(self, fn: Any, *args: str) -> None:
        with contextlib.suppress(Exception):
            self.client.run(fn, *args, on_error="ignore")

    def stop_all(self) -> None:
        """Ctrl-C: every batch of this build stops (killing its running job's
        process tree) and reports; what does not report in time is cancelled
        and recorded interrupted."""
        self.stopping = True
        self.tell(set_flag, self.run_id, "stop")
        deadline = time.monotonic() + STOP_WAIT
        while self.inflight and time.monotonic() < deadline:
            for fut in self.wait_some(0.2):
                try:
                    self.collect(fut)
                except Exception:  # noqa: BLE001 - keep stopping
                    pass
        left = list(self.inflight)
        for fut in left:
            for i, attempt in self.inflight.pop(fut):
                self.record_interrupted(i, attempt, None)
        if left:
            with contextlib.suppress(Exception):
                self.client.cancel(left, force=True)
        self.inflight_cpus = 0
