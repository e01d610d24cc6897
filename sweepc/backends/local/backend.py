"""The local backend: run a Plan on this machine. Entry point: execute().

Jobs start as soon as their inputs are done and their cpus/mem fit in what is
left of -j and of the machine's memory. The runner never prints: it tells a
Reporter. Before anything runs every job of the plan is marked `planned`, so
a build killed at any moment leaves no job looking up to date unless its end
was recorded. Every end that counts is journalled (journal.py) before it is
only in sweepc's memory, and the ends are committed to the store (SQLite WAL)
together, about once a second (less often when commits are slow: commit_gap). The journal has one writer a build: the
spawner, for queued shell jobs, before the next one starts (below); sweepc's
main process, for every other job (python: jobs, and shell jobs when the
spawner has no queue: whenever the plan has python: jobs, see run()), one
write a batch of ends, before it commits them later. So a build killed at
any moment, even by SIGKILL, reruns only the jobs that were running then
(and the ends a python: worker had sent that sweepc had not read yet).

Shell jobs are handed to the spawner ahead of time (up to QUEUE_AHEAD more
than run): it starts the next the moment a slot frees, within the build's
cpus and memory, with no round trip to sweepc (spawner.py); sweepc prepares
a job's folder before it queues it and learns that it started from the
spawner. A job whose failure stops the build (no -k, no retry left) carries
`stop`: when it fails, the spawner drops the queue itself before anything
else starts; the folders of dropped jobs that sweepc had just made are
removed again. The spawner journals each end (journal.py), so a job that
ended just before sweepc was killed is recorded by the next build instead of
run again. A plan with `python:` jobs runs as before, one start per free slot
(the Python pool shares the cpus and has no queue in the spawner).

A rule's `time` resource is enforced (limits.py) unless time_limits=False: a
job still running at its limit is stopped, tree and all, and recorded
`timeout`; like a failure it is retried while `retries:` last, with the
rule's `restart:` command when it has one (as on SLURM).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import time
from array import array
from collections import deque
from collections.abc import Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from sweepc.backends.base import Failure, Interrupted, Reporter, Summary, params_json, tail_lines
from sweepc.errors import MachineError, UsageError, machine_error
from sweepc.lang.graph import LOG_NAME, PSET_JSON_NAME, PYTHON_RESULT_NAME, BuildGraph, Job
from sweepc.backends.jobdir import (
    PSET_JSON_ENV, WRITE_FLAGS, JobDirError, JobDirs, check_end, prepare_job_folder, pset_json_head, sweep_name, uses_input_list,
)
from sweepc.plan.planner import Plan, dynamic_fingerprint
from sweepc.backends.hold import StopsHeld
from sweepc.backends.local.limits import TimeLimits, time_limit_reached
from sweepc.backends.local.journal import entry, journal_path, make_tag
from sweepc.backends.local.procs import Exit, ProcessPool, Queue, Spawn
from sweepc.backends.local.pypool import QUEUE_DEPTH, Pools, PyExit, PyPrep, PythonPool, PyTask
from sweepc.backends import soft
from sweepc.plan.store import Outcome, Store

# How long one wait for job ends lasts at most (the progress line's beat).
WAIT_SECONDS = 0.5
# Shell jobs queued in the spawner beyond those running: enough that a slot
# never waits for sweepc; few, so that a failure leaves little to drop. (2
# ran dry while sweepc's main process waited for a core: with jobs of ~1 ms
# started without bash, 8 made a 10k-pset build ~6% faster, median of 6 pairs.)
QUEUE_AHEAD = 8
# While it starts python: jobs or records their ends, sweepc hands pending
# tasks to the Python workers every FEED_EVERY of them (pypool.feed).
FEED_EVERY = 32
# Every end is journalled (journal.py: by the spawner for queued shell jobs,
# before the next job starts; by sweepc for the others, python: jobs, with
# one write a wait), so an end survives the death of sweepc before it is in
# the store, and the store's commits are gathered: every COMMIT_SECONDS, or
# COMMIT_EVERY ends, whichever comes first (and at once on a stop, a kill or
# the build's end). A commit per end cost ~0.1 ms of sweepc's time and ~10
# system calls, per job; a python: build of 100k psets that committed each
# wait's ends (~200 commits) spent 5.8-6.9 s in Store.record, 3.3-4.6 s with
# ~23 (its rows are on random pages of the WITHOUT ROWID table, so a commit
# writes about a page a row, fewer the more rows it holds). So the time
# between commits grows with what they cost: at least COMMIT_SECONDS, and
# long enough that committing takes at most COMMIT_SHARE of it, up to
# COMMIT_MAX_SECONDS (what `sweepc status` in another shell may lag).
COMMIT_SECONDS = 1.0
COMMIT_SHARE = 0.1
COMMIT_MAX_SECONDS = 5.0
COMMIT_EVERY = 16384


def commit_gap(took: float) -> float:
    """The time to leave after a commit that took `took` seconds before the
    next (see COMMIT_SECONDS)."""
    return max(COMMIT_SECONDS, min(COMMIT_MAX_SECONDS, took / COMMIT_SHARE))


def reap_orphans(root: Path, build_pid: int, grace: float = 2.0) -> int:
    """Stop job processes left running by a build of this project that died
    without cleaning up (its lock was taken over). They would otherwise keep
    writing into folders the next build is about to use.

    Jobs are recognised by SWEEPC_ROOT and SWEEPC_BUILD_PID (the dead build's
    pid) in their environment, which every local job and its children
    inherit; SLURM tasks never carry SWEEPC_BUILD_PID. Returns how many
    processes were stopped."""
    me = os.getpid()
    want = (str(root), str(build_pid))
    import psutil  # only after a build died: not worth 10 ms of every start

    found: list[Any] = []
    for proc in psutil.process_iter(["pid"]):
        if proc.pid == me:
            continue
        try:
            env = proc.environ()
            if (env.get("SWEEPC_ROOT"), env.get("SWEEPC_BUILD_PID")) == want:
                found.append(proc)
        except (psutil.Error, OSError):
            continue  # gone, or not ours to read
    for proc in found:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, alive = psutil.wait_procs(found, timeout=grace)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=grace)
    return len(found)


def machine_mem_mb() -> int:
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1024 * 1024))


def check_fit(g: BuildGraph, run: Sequence[int], cpus: int, mem_mb: int) -> None:
    """A job that can never fit is an error before anything starts."""
    for i in run:
        job = g.jobs[i]
        res = job.resources
        if res.cpus > cpus:
            raise UsageError(
                f"{job.label} needs {res.cpus} cpus, but this build may use {cpus}",
                f"run with -j {res.cpus} or more, or lower its resources: cpus",
            )
        if res.mem_mb is not None and res.mem_mb > mem_mb:
            raise UsageError(
                f"{job.label} needs {res.mem_mb} MB of memory, but this machine has {mem_mb} MB",
                "lower its resources: mem, or run it with --backend slurm",
            )


def job_env(root: Path, run_id: str) -> dict[str, str]:
    """The environment every job of a local build starts from (its own
    SWEEPC_JOB_DIR & co. are added per job)."""
    env = dict(os.environ)
    env["SWEEPC_ROOT"] = str(root)
    env["SWEEPC_RUN_ID"] = run_id
    env["SWEEPC_BUILD_PID"] = str(os.getpid())  # lets a later build find our orphans
    return env


def execute(
    plan: Plan,
    store: Store,
    run_id: str,
    reporter: Reporter,
    jobs: int | None = None,
    keep_going: bool = False,
    mem_mb: int | None = None,
    time_limits: bool = True,
    python_pool: PythonPool | None = None,
) -> Summary:
    """python_pool: the Python workers LocalBackend.check started (they did
    the import check), made with job_env(root, run_id)."""
    runner = _Runner(plan, store, run_id, reporter, jobs or os.cpu_count() or 1, keep_going, mem_mb, time_limits, python_pool)
    try:
        return runner.run()
    finally:
        runner.dirs.close()
        runner.close_journal()
        # Stopped here, not by the pool's finalizer at interpreter exit, where a
        # late Ctrl-C would land outside every handler and kill sweepc by SIGINT.
        runner.pool.close()


class _Flags(Collection[int]):
    """A set of job ids as a byte per job (a set of 200k ints is ~10 MB)."""

    def __init__(self, n: int) -> None:
        self.bits = bytearray(n)
        self.n = 0

    def add(self, i: int) -> None:
        if not self.bits[i]:
            self.bits[i] = 1
            self.n += 1

    def __contains__(self, i: object) -> bool:
        return isinstance(i, int) and 0 <= i < len(self.bits) and self.bits[i] == 1

    def __iter__(self) -> Iterator[int]:
        return (i for i, b in enumerate(self.bits) if b)

    def __len__(self) -> int:
        return self.n


class _Dependents:
    """For each job of the build, the jobs of the build that need it, and how
    many jobs of the build each one waits for: flat arrays by job id (CSR),
    not a dict of lists and a dict of counts (at 100k psets, ~40 MB of the
    local backend's memory)."""

    def __init__(self, jobs: Sequence[Job], run: Sequence[int], in_run: set[int]) -> None:
        def needs(i: int) -> Iterator[int]:  # the jobs of the build job i needs, each once
            deps = jobs[i].deps
            return (d for d in (deps if len(deps) < 2 else set(deps)) if d in in_run)

        n = len(jobs)
        self.waiting = [0] * n
        count = array("q", bytes(8 * (n + 1)))
        for i in run:
            for d in needs(i):
                self.waiting[i] += 1
                count[d + 1] += 1
        for k in range(n):  # count[k] becomes where job k's dependents start
            count[k + 1] += count[k]
        self.start = count
        self.ids = array("q", bytes(8 * count[n]))
        fill = array("q", count)
        for i in run:
            for d in needs(i):
                self.ids[fill[d]] = i
                fill[d] += 1

    def get(self, d: int, default: Sequence[int] = ()) -> Sequence[int]:
        a, b = self.start[d], self.start[d + 1]
        return self.ids[a:b] if b > a else default


class _Runner:
    def __init__(self, plan: Plan, store: Store, run_id: str, reporter: Reporter, cpus: int, keep_going: bool, mem_mb: int | None,
                 time_limits: bool = True, python_pool: PythonPool | None = None) -> None:
        self.plan, self.g, self.store, self.run_id, self.reporter = plan, plan.graph, store, run_id, reporter
        self.cpus = cpus
        self.mem_mb = mem_mb if mem_mb is not None else machine_mem_mb()
        self.keep_going = keep_going
        self.host = os.uname().nodename  # gethostname(), without importing socket
        self.limits = TimeLimits() if time_limits else None
        self.base_env = job_env(self.g.root, run_id)
        # shell jobs, and a pool of Python workers for `python:` rules (pypool.py)
        self.pool = Pools(ProcessPool(), self.base_env, cpus, str(self.g.root), prepare=self.prepare_py, py=python_pool)
        self.wd = self.g.workdir_path
        self.uses_list = {r.name: uses_input_list(r) for r in self.g.rules}
        self.python_rules = {r.name for r in self.g.rules if r.python is not None}
        self.pending: list[Outcome] = []
        self.committed = 0.0  # time.monotonic() of the last commit
        self.results: dict[int, str] = {}  # job id -> its results (JSON) between check() and outcome()
        self.done_ids = _Flags(len(self.g.jobs))  # jobs of this build that ended done
        self.kept_ids: set[int] = set()  # of those, the ones kept as they were (soft.kept), not run
        self.in_run = set(plan.run)
        # the fingerprints jobs really have: those of plan.dynamic are made when they start
        self.fps: list[str] = list(plan.fingerprints)
        self.dyn_fp: dict[int, tuple[str, str]] = {}  # job id -> (inputs hash, fingerprint) it ran with
        self.stop_on_failure = not keep_going
        self.queue = False  # shell jobs go through the spawner's queue (set in run())
        self.fresh: set[int] = set()  # queued jobs whose folder this build made (removed if dropped)
        self.journal: Path | None = None  # .sweepc/journal, while the ends are journalled
        self.journal_fd = -1  # when sweepc writes it itself (the spawner has no queue; see run())
        self.started_later: list[int] = []  # queued jobs the spawner started, not taken in yet (take_started)
        self.py_later: dict[int, None] = {}  # python: jobs their workers began, not reported yet (take_py_started)
        self.shown_jobs = 0  # queued jobs taken in as started and not ended, and their cpus
        self.shown_cpus = 0.0
        self.journal_buf: list[bytes] = []  # entries of ends taken in, written before they wait for a commit
        self.batched = False  # whether ends may wait for a commit (a journal holds them: flush_soon)
        self.commit_gap = COMMIT_SECONDS  # from one commit to the next (commit_gap())
        self.unhandled: deque[Exit] = deque()  # exits taken from the pool, not handled yet
        self.dirs = JobDirs(self.wd)  # rule and shard folders, open for the build
        self.made = False  # whether the last prepare() made the job folder
        self.wd_str = str(self.wd)
        # python: rules -> (module path, function, outputs the worker removes, or None
        # when sweepc prepares the folder itself: templates, or an output in a subfolder)
        self.py_calls: dict[str, tuple[str, str, tuple[str, ...] | None]] = {}
        for r in self.g.rules:
            if r.python is not None:
                outs = tuple(o.path for o in r.outputs)
                simple = not r.templates and not self.uses_list[r.name] and all("/" not in o for o in outs)
                self.py_calls[r.name] = (str(self.g.root / r.python[0]), r.python[1], outs if simple else None)
        self.rule_facts = {r.name: (r.retries, tuple(o.path for o in r.outputs)) for r in self.g.rules}
        self.pset_heads = {name: pset_json_head(name, sweep_name(self.g.rule(name))) for name in self.py_calls}

    # -- bookkeeping
    def flush(self) -> None:
        """Commit the outcomes seen so far. A WAL commit (synchronous=NORMAL:
        no fsync) survives the death of this process; only a crash of the
        machine can lose the last ones."""
        self.journal_buf.clear()  # (in the store now, or about to be)
        if self.pending:
            t0 = time.monotonic()
            self.store.record(self.pending)
            self.pending = []
            self.committed = time.monotonic()
            self.commit_gap = commit_gap(self.committed - t0)

    def flush_soon(self) -> None:
        """flush(), or, while the ends are journalled, not before
        commit_gap() has passed since the last commit or COMMIT_EVERY ends
        wait (see COMMIT_SECONDS); the ends sweepc journals itself are
        written first (one write), and committed at once if they cannot be."""
        if not self.batched or len(self.pending) >= COMMIT_EVERY or time.monotonic() - self.committed >= self.commit_gap:
            self.flush()
        elif self.journal_buf and not self.write_journal():
            self.flush()

    def journal_end(self, i: int, o: Outcome, ex: Exit) -> None:
        """Job i ended done (o): its entry for the journal sweepc writes (the
        format the spawner writes: journal.py), written by flush_soon(). (Its
        hashes are taken from o: the plan's cmd_hashes and inputs_hashes
        are computed at each look-up.)"""
        fp, cmd, ins, host = o.fingerprint, o.cmd_hash, o.inputs_hash, o.host
        assert fp is not None and cmd is not None and ins is not None and host is not None  # (a done outcome's)
        tag = make_tag(o.rule, o.hash, self.g.jobs[i].reldir, o.run_id, o.attempts, fp, cmd, ins, host)
        self.journal_buf.append(entry(tag, 0, ex.start, ex.end, ex.max_rss_kb, ex.cpu_s, False))

    def write_journal(self) -> bool:
        """Append the entries taken in since the last write or commit, in one
        write(2) (O_APPEND). False when they could not be (a full disk): the
        caller commits them instead."""
        data = b"".join(self.journal_buf)
        self.journal_buf.clear()
        try:
            while data:
                data = data[os.write(self.journal_fd, data):]
        except OSError:
            # (a torn entry would hide those written after it): no more
            # entries, and from here on each wait's ends are committed at once
            self.close_journal()
            self.batched = False
            return False
        return True

    def open_journal(self) -> None:
        """sweepc writes the journal itself: the spawner has no queue (see run())."""
        path = journal_path(self.g.root)
        try:
            # created or truncated, never through a link, as the spawner's (ProcessPool.journal);
            # what a killed build left there was replayed before this build planned
            self.journal_fd = os.open(path, WRITE_FLAGS | os.O_TRUNC | os.O_APPEND, 0o666)
        except OSError:
            return  # no journal: each wait's ends are committed at once (batched stays False)
        self.journal = path
        self.batched = True

    def close_journal(self) -> None:
        if self.journal_fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.journal_fd)
            self.journal_fd = -1

    def run(self) -> Summary:
        g, plan = self.g, self.plan
        run = plan.run
        check_fit(g, run, self.cpus, self.mem_mb)
        t0 = time.monotonic()
        self.store.cache_for(len(run))
        self.store.mark_planned(((g.jobs[i].rule, g.jobs[i].hash, params_json(g.jobs[i])) for i in run), self.run_id)
        self.committed = time.monotonic()
        procs = self.pool.procs
        has_python = any(g.jobs[i].rule in self.python_rules for i in run)
        if has_python:
            # the workers make job folders below the workdir, not the workdir itself:
            # without it the first tasks came back for sweepc to prepare, run
            # later, reported started meanwhile ("4 running" under -j 2)
            with contextlib.suppress(OSError):  # (then sweepc prepares them, and says why it cannot)
                os.makedirs(self.wd_str, exist_ok=True)
        if not has_python and procs.queueing():
            self.queue = True
            procs.limit(self.cpus, self.mem_mb)
            procs.base_env(self.base_env)
            self.journal = journal_path(g.root)  # written by the spawner
            procs.journal(str(self.journal))
            self.batched = True
        else:  # python: jobs (and shell jobs started one by one): sweepc journals their ends
            self.open_journal()
        queued: set[int] = set()  # handed to the spawner's queue, not started yet
        dependents = _Dependents(g.jobs, run, self.in_run)
        waiting = dependents.waiting  # by job id: how many jobs of the build it still waits for
        ready = deque(i for i in run if waiting[i] == 0)
        attempts: dict[int, int] = {}
        started_at: dict[int, float] = {}
        used_cpus = 0.0
        used_mem = 0
        done = 0
        failures: list[Failure] = []
        blocked: set[int] = set()  # downstream of a failure
        stopping = False
        running: dict[int, int] = {}  # job id -> attempt
        feeds = bool(self.python_rules)
        fed = 0  # python: jobs started, or ends handled, since the pool's workers were last fed
        hold = StopsHeld()
        with hold:
            try:
                hold.on = True
                while True:
                    while ready and not stopping:
                        i = ready[0]
                        res = g.jobs[i].resources
                        mem = res.mem_mb or 0
                        if self.queue:  # the spawner keeps within cpus and memory
                            if len(queued) >= QUEUE_AHEAD:
                                break
                        elif running and (used_cpus + self.cpu_cost(g.jobs[i]) > self.cpus or used_mem + mem > self.mem_mb):
                            break
                        ready.popleft()
                        kept = self.kept(i)
                        if kept is not None:  # its done() inputs came out as they were: nothing to do
                            self.reporter.note(
                                f"{g.jobs[i].label} is up to date: "
                                + ("the jobs of its done() inputs that ended done are those it was built with" if g.jobs[i].soft else "its inputs came out as they were")
                            )
                            done += 1
                            self.done_ids.add(i)
                            self.kept_ids.add(i)
                            self.pending.append(kept)
                            self.reporter.job_ended(g.jobs[i], kept, False)
                            for k in dependents.get(i, ()):
                                waiting[k] -= 1
                                if waiting[k] == 0 and k not in blocked:
                                    ready.append(k)
                            continue
                        attempt = attempts.get(i, 0) + 1
                        attempts[i] = attempt
                        err = self.start(i, attempt)
                        if err is not None:
                            # could not even start (e.g. the job folder cannot be made)
                            now = time.time()
                            failures.append(self.fail(i, None, now, now, 0, err, attempt))
                            if not self.keep_going:
                                stopping = True
                                self.drop_queue()
                            blocked |= self.ended_not_done(i, dependents, waiting, ready, blocked)
                            continue
                        running[i] = attempt
                        if self.queue:
                            queued.add(i)  # the rest when the spawner starts it
                            continue
                        fed += 1
                        if fed >= FEED_EVERY and feeds:  # python: tasks go to the workers while more are started
                            fed = 0
                            self.pool.feed()
                        started_at[i] = time.time()
                        limit = g.jobs[i].resources.time_s
                        if self.limits is not None and limit and g.jobs[i].rule not in self.python_rules:
                            self.limits.add(i, limit)  # (a python: job's runs from when its worker begins it)
                        used_cpus += self.cpu_cost(g.jobs[i])
                        used_mem += mem
                    if stopping:  # python: jobs no worker has begun are not run
                        for k in self.pool.drop_pending():
                            running.pop(k)
                            used_cpus -= self.cpu_cost(g.jobs[k])
                            used_mem -= g.jobs[k].resources.mem_mb or 0
                    if not running:
                        break
                    limits = self.limits
                    # A stop signal is acted on here, while waiting, and held
                    # everywhere else (hold.py): an ended job is always recorded.
                    # What ended is kept on self until handled: a Ctrl-C right
                    # after the wait leaves it to stop_all, not lost.
                    exits = self.unhandled
                    hold.open()
                    self.pool.wait_into(exits, limits.wait_timeout(WAIT_SECONDS) if limits else WAIT_SECONDS)
                    hold.on = True
                    for k in self.pool.started():  # python: jobs begin when their worker is done with those before
                        self.py_later[k] = None  # reported after the ends that came with them (take_py_started)
                    if self.queue:  # (the others as their ends are taken in, below)
                        self.take_started(queued, running, started_at)
                    if limits is not None:
                        limits.enforce(self.pool.pids())
                    while exits:
                        ex = exits.popleft()
                        i = ex.key
                        fed += 1
                        # the workers get pending tasks while the ends are recorded (none
                        # after a failure that stops the build: those are dropped, not run)
                        if fed >= FEED_EVERY and feeds and not stopping:
                            fed = 0
                            self.pool.feed()
                        if self.queue and i in self.started_later:  # its start first
                            self.take_started(queued, running, started_at, first=(i,))
                        if i in self.py_later:
                            self.take_py_started(running, only=i)
                        attempt = running.pop(i)
                        # (kept only while needed: at 200k jobs these two dicts held ~30 MB)
                        started_at.pop(i, None)
                        attempts.pop(i, None)  # put back below when it is retried
                        res = g.jobs[i].resources
                        if not self.queue:
                            used_cpus -= self.cpu_cost(g.jobs[i])
                            used_mem -= res.mem_mb or 0
                        else:  # (taken in as started: take_started)
                            self.shown_jobs -= 1
                            self.shown_cpus -= self.cpu_cost(g.jobs[i])
                        job = g.jobs[i]
                        timed_out = limits is not None and limits.ended(i)
                        if timed_out:  # whatever it did after the SIGTERM, it did not finish in time
                            ok, message = False, time_limit_reached(res.time_s or 0)
                            with contextlib.suppress(OSError):
                                _append(self.wd / job.reldir / LOG_NAME, f"\n=== sweepc: {message}, job stopped ===\n")
                        else:
                            ok, message = self.check(i, ex)
                        if ok:
                            done += 1
                            self.done_ids.add(i)
                            outcome = self.outcome(i, "done", ex, attempt)
                            self.pending.append(outcome)
                            if self.journal_fd >= 0:
                                self.journal_end(i, outcome, ex)
                            self.reporter.job_ended(job, outcome, False)
                            for k in dependents.get(i, ()):
                                waiting[k] -= 1
                                if waiting[k] == 0 and k not in blocked:
                                    ready.append(k)
                            continue
                        retries = g.rule(job.rule).retries
                        status = "timeout" if timed_out else "failed"
                        if attempt <= retries and not stopping:
                            self.reporter.job_ended(job, self.outcome(i, status, ex, attempt), True)
                            attempts[i] = attempt
                            ready.appendleft(i)
                            continue
                        failures.append(self.fail(i, ex.exit_code, ex.start, ex.end, ex.max_rss_kb, message, attempt, status, ex.cpu_s))
                        if not self.keep_going:
                            stopping = True
                            self.drop_queue()  # the spawner has, unless it exited 0 without its results
                        blocked |= self.ended_not_done(i, dependents, waiting, ready, blocked)
                    if self.py_later:
                        self.take_py_started(running)
                    if stopping:
                        self.flush()
                    else:
                        self.flush_soon()
                    if self.queue:  # after the commit: what removing their folders frees is not what it needs
                        self.take_started(queued, running, started_at)
                        self.take_dropped(queued, running)
                hold.open()  # a stop signal held since the last wait is acted on
                if self.limits is not None:
                    self.limits.close()
            except KeyboardInterrupt:
                hold.on = True
                done, interrupted = self.stop_all(running, attempts, done, failures, queued, started_at)
                self.flush()
                self.journal_recorded()
                raise Interrupted(self.summary(run, done, failures, blocked, tuple(interrupted), t0)) from None
            except ChildProcessError as e:
                # The spawner died (killed, out of memory): its jobs died with it.
                # Record them interrupted (they rerun) and stop; never hang, never
                # a traceback.
                now = time.time()
                queued -= {*self.started_later, *self.pool.procs.take_started()}  # started, though not reported yet
                ran = {i: attempt for i, attempt in running.items() if i not in queued}  # the rest never started
                for i, attempt in ran.items():
                    ex = Exit(key=i, exit_code=137, signal=9, start=started_at.get(i, now), end=now, max_rss_kb=0, interrupted=True)
                    self.pending.append(self.outcome(i, "interrupted", ex, attempt))
                with contextlib.suppress(Exception):
                    self.pool.close()
                if self.limits is not None:
                    self.limits.close()
                with contextlib.suppress(MachineError):
                    self.flush()
                raise MachineError(
                    f"{e.strerror or e}.\n  hint: the {len(ran)} jobs that were running are recorded as interrupted; "
                    "build again to run them (if it happens again, look for the out-of-memory killer: dmesg)"
                ) from None
            except MachineError:
                # A full disk / read-only store: stop what runs and record what we can
                # (the store may be what cannot be written: the jobs then stay
                # 'planned', which reruns them, and nothing is wrongly marked done).
                self.stop_all(running, attempts, done, failures, queued, started_at)
                with contextlib.suppress(MachineError):
                    self.flush()
                raise
        self.flush()
        self.journal_recorded()
        return self.summary(run, done, failures, blocked, (), t0)

    # -- the spawner's queue
    def take_py_started(self, running: Mapping[int, int], only: int | None = None) -> None:
        """python: jobs their workers began (PythonPool.started()), reported
        as started: `only` (its end is about to be handled), else all. A
        worker begins the next task as it ends one and both come in at once:
        reported before that end, under -j 2 the progress said "3 running".
        One the reporter raises on (Ctrl-C) leaves the rest for later."""
        later = self.py_later
        for k in [only] if only is not None else list(later):
            if k not in later:
                continue
            del later[k]
            job = self.g.jobs[k]
            self.reporter.job_started(job, running[k])
            limit = job.resources.time_s
            if self.limits is not None and limit:
                self.limits.add(k, limit)

    def take_started(self, queued: set[int], running: Mapping[int, int], started_at: dict[int, float],
                     first: Collection[int] = (), every: bool = False) -> None:
        """Queued jobs the spawner has started: now they run (time limit,
        progress). The spawner starts the next job as one ends and reports
        both at once, and its start may be taken in before that end (its
        end waited in ProcessPool's inbox): so a start is taken in when the
        jobs taken in as running leave it room in the build's cpus, as they
        left it in the spawner's; `first` (a job whose end is about to be
        handled) and `every` (the build stops) are taken in regardless.
        Taken in at once, under -j 2 the progress said "3 running"."""
        waiting = self.started_later
        waiting.extend(self.pool.procs.take_started())
        if not waiting:
            return
        self.started_later = []
        k = 0
        try:
            while k < len(waiting):
                i = waiting[k]
                k += 1
                job = self.g.jobs[i]
                cost = self.cpu_cost(job)
                if not (every or i in first or not self.shown_jobs or self.shown_cpus + cost <= self.cpus + 1e-9):
                    self.started_later.append(i)
                    continue
                self.shown_jobs += 1
                self.shown_cpus += cost
                queued.discard(i)
                self.fresh.discard(i)  # a job ran in it: never removed
                started_at[i] = time.time()
                limit = job.resources.time_s
                if self.limits is not None and limit:
                    self.limits.add(i, limit)
                self.reporter.job_started(job, running[i])
        finally:  # (a reporter that raises: the rest are taken in later, none twice)
            self.started_later.extend(waiting[k:])

    def take_dropped(self, queued: set[int], running: dict[int, int]) -> None:
        """Queued jobs the spawner dropped (a failure, or a kill): they never
        started; a folder this build made for one is removed again."""
        for i in self.pool.procs.take_dropped():
            queued.discard(i)
            running.pop(i, None)
            if i in self.fresh:
                self.fresh.discard(i)
                with contextlib.suppress(OSError):
                    shutil.rmtree(self.wd / self.g.jobs[i].reldir)

    def drop_queue(self) -> None:
        if self.queue:
            self.pool.procs.drop()

    def journal_recorded(self) -> None:
        """Every end is in the store now: the journal has nothing left to tell."""
        self.close_journal()
        if self.journal is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.journal)

    def stop_all(self, running: dict[int, int], attempts: Mapping[int, int], done: int, failures: list[Failure],
                 queued: set[int] | None = None, started_at: dict[int, float] | None = None) -> tuple[int, list[int]]:
        """Kill every running job; record each as interrupted, or as what it was
        when it had ended on its own just before. Queued jobs are dropped: never
        started, they are not reported. Returns (done, interrupted)."""
        g = self.g
        interrupted = []
        unhandled = self.unhandled
        # (kill_all's list may repeat some of them: ProcessPool.wait_into)
        killed = [*unhandled, *(ex for ex in self.pool.kill_all() if not any(ex is u for u in unhandled))]
        self.unhandled = deque()
        self.take_py_started(running)
        if self.queue and queued is not None and started_at is not None:
            self.take_started(queued, running, started_at, every=True)
            self.take_dropped(queued, running)
        if self.limits is not None:
            self.limits.close()
        for ex in killed:
            i = ex.key
            attempt = running.pop(i, attempts.get(i, 1))
            if not ex.interrupted:
                # Fix: kill_all also returns jobs that had ended on their own just before
                # it (Exit.interrupted False). Recording those "interrupted" reran a job
                # that had finished fine; judge them like any other ended job.
                ok, message = self.check(i, ex)
                if ok:
                    done += 1
                    self.done_ids.add(i)
                    outcome = self.outcome(i, "done", ex, attempt)
                    self.pending.append(outcome)
                    self.reporter.job_ended(g.jobs[i], outcome, False)
                else:
                    failures.append(self.fail(i, ex.exit_code, ex.start, ex.end, ex.max_rss_kb, message, attempt, cpu_s=ex.cpu_s))
                continue
            outcome = self.outcome(i, "interrupted", ex, attempt)
            self.pending.append(outcome)
            self.reporter.job_ended(g.jobs[i], outcome, False)
            interrupted.append(i)
        return done, interrupted

    def summary(self, run: Sequence[int], done: int, failures: list[Failure], blocked: set[int], interrupted: tuple[int, ...], t0: float) -> Summary:
        skipped = len(blocked)
        not_started = len(run) - done - len(failures) - skipped - len(interrupted)
        return Summary(
            total=len(run), done=done, failed=tuple(failures), skipped=skipped, not_started=max(0, not_started),
            interrupted=interrupted, uptodate=self.plan.uptodate, elapsed=time.monotonic() - t0,
        )

    def ended_not_done(self, i: int, dependents: _Dependents, waiting: list[int], ready: deque[int], blocked: set[int]) -> set[int]:
        """Job i failed: what needs it cannot run (returned, to be counted as
        skipped), and neither can what needs those; a job that takes it
        through `input: done(RULE)` stops waiting for it instead, and runs
        without it once its other inputs have ended."""
        out: set[int] = set()
        stack = [i]
        jobs = self.g.jobs
        while stack:
            x = stack.pop()
            for k in dependents.get(x, ()):
                if x in jobs[k].soft:
                    waiting[k] -= 1
                    if waiting[k] == 0 and k not in blocked and k not in out:
                        ready.append(k)
                elif k not in out and k not in blocked:
                    out.add(k)
                    stack.append(k)
        return out

    def kept(self, i: int) -> Outcome | None:
        return soft.kept(self.plan, i, self.fps, self.done_ids, self.in_run, self.wd, "local", self.kept_ids)

    def done_inputs(self, job: Job) -> list[int]:
        return soft.done_inputs(self.plan, job, self.done_ids, self.in_run)

    def cpu_cost(self, job: Job) -> float:
        """A python: job is queued to a worker still busy with the ones before
        it (up to pypool.QUEUE_DEPTH a worker), so it counts as that part of
        its cpus; unless it has a time limit, which runs from its start."""
        if job.rule in self.python_rules and job.resources.time_s is None:
            return job.resources.cpus / QUEUE_DEPTH
        return float(job.resources.cpus)

    # -- one job
    def start(self, i: int, attempt: int) -> str | None:
        job = self.g.jobs[i]
        only: set[int] | None = None
        if i in self.plan.dynamic:
            kept = self.done_inputs(job)
            self.dyn_fp[i] = dynamic_fingerprint(self.plan, i, self.fps, kept)
            self.fps[i] = self.dyn_fp[i][1]
            if job.soft:
                only = set(kept) | (set(job.deps) - job.soft)
        if only is not None:
            left = [k for k in dict.fromkeys(job.deps) if k in job.soft and k not in only]
            if left:
                names = ", ".join(self.g.jobs[k].label for k in left[:5]) + (", ..." if len(left) > 5 else "")
                rules = ", ".join(f"done({r})" for r in dict.fromkeys(self.g.jobs[k].rule for k in left))
                self.reporter.note(f"{job.label} runs without {len(left)} of the {len(job.soft)} jobs of {rules} that did not end done: {names}")
        py = self.py_calls.get(job.rule)
        if py is not None and attempt == 1 and py[2] is not None:
            # the worker makes the folder (pyworker.py), and comes back to prepare_py when it cannot
            rel = job.reldir
            prep = PyPrep(self.wd_str, rel, py[2], self.pset_heads[job.rule], job.seq)
            try:
                self.pool.start(PyTask(i, py[0], py[1], f"{self.wd_str}/{rel}", job.params, job.rule, job.hash, prep=prep))
            except OSError as e:  # no worker could be started
                return f"cannot start: {e}"
            return None  # reported started when its worker begins it
        problem = self.prepare(job, only)
        if problem is not None:
            return problem
        fresh = self.queue and self.made
        command = job.command
        if attempt > 1 and job.restart is not None:
            command = job.restart
        ds = f"{self.wd_str}/{job.reldir}"  # str(d), without pathlib's cost
        env = {"SWEEPC_JOB_DIR": ds, PSET_JSON_ENV: f"{ds}/{PSET_JSON_NAME}", "SWEEPC_RULE": job.rule,
               "SWEEPC_PSET_HASH": job.hash, "SWEEPC_ATTEMPT": str(attempt)}
        if not self.queue:  # queued jobs: the spawner adds these to base_env, sent once
            env = {**self.base_env, **env}
        try:
            log = f"{ds}/{LOG_NAME}"
            if attempt > 1:  # keep what the earlier attempts said
                _append(Path(log), f"\n=== sweepc: attempt {attempt}{' (restart)' if job.restart is not None else ''} ===\n")
            if py is not None:
                self.pool.start(PyTask(i, py[0], py[1], ds, job.params, job.rule, job.hash, attempt=attempt, append_log=attempt > 1,
                                       inputs=self.uses_list[job.rule]))
                return None  # reported started when its worker begins it
            if self.queue:
                ins, fp = self.dyn_fp.get(i) or (self.plan.inputs_hashes[i], self.plan.fingerprints[i])
                tag = make_tag(job.rule, job.hash, job.reldir, self.run_id, attempt, fp, self.plan.cmd_hashes[i], ins, self.host)
                retries, outputs = self.rule_facts[job.rule]
                queue = Queue(cpus=float(job.resources.cpus), mem_mb=job.resources.mem_mb or 0,
                              stop=self.stop_on_failure and attempt > retries, outputs=outputs, tag=tag, merge_env=True)
                self.pool.procs.start(Spawn(key=i, command=command, cwd=ds, log_path=log, env=env,
                                            append_log=attempt > 1), queue)
                if fresh:
                    self.fresh.add(i)
                return None  # reported started when the spawner starts it
            else:
                self.pool.start(Spawn(key=i, command=command, cwd=ds, log_path=log, env=env, append_log=attempt > 1))
        except OSError as e:
            d = self.wd / job.reldir
            if e.errno == errno.ELOOP:  # a job made its own log a link between attempts
                return f"{d / LOG_NAME} is a symbolic link; sweepc does not write through it: remove the link"
            err = machine_error(_shown(d / LOG_NAME), _shown(self.wd), e)
            if err is not None:
                raise err from None
            return f"cannot start: {e}"
        self.reporter.job_started(job, attempt)
        return None

    def prepare(self, job: Job, only: set[int] | None = None) -> str | None:
        """Make the job's folder ready (jobdir.prepare_job_folder): None, or why it cannot."""
        try:
            self.made = prepare_job_folder(self.g, job, input_list=self.uses_list[job.rule], only=only, above=self.dirs)
        except JobDirError as e:
            return str(e)
        except OSError as e:
            # a full disk fails every job after this one too: stop the build (MachineError)
            d = self.wd / job.reldir  # (pathlib only here: it interns every part it parses, each job's hash for good)
            err = machine_error(_shown(d), _shown(self.wd), e)
            if err is not None:
                raise err from None
            return f"cannot prepare {d}: {e}"
        return None

    def prepare_py(self, task: PyTask) -> str | None:
        """A worker could not make a python: job's folder: make it here, or say why not."""
        return self.prepare(self.g.jobs[task.key])

    def check(self, i: int, ex: Exit) -> tuple[bool, str]:
        if ex.exit_code != 0:
            if isinstance(ex, PyExit) and ex.error:
                return False, ex.error
            if ex.signal is not None:
                return False, f"killed by signal {ex.signal}"
            return False, f"exit {ex.exit_code}"
        job = self.g.jobs[i]
        if isinstance(ex, PyExit) and ex.results is not None:  # the worker sent what it wrote to the results file
            problem, results = check_end(self.g, job.rule, f"{self.wd_str}/{job.reldir}", {PYTHON_RESULT_NAME: ex.results})
        else:
            problem, results = check_end(self.g, job.rule, f"{self.wd_str}/{job.reldir}")
        if problem is not None:
            return False, problem
        if results is not None:
            self.results[i] = results  # goes into the store's history with the job's outcome
        return True, ""

    def outcome(self, i: int, status: str, ex: Exit, attempt: int) -> Outcome:
        job = self.g.jobs[i]
        ok = status == "done"
        ins, fp = self.dyn_fp.get(i) or (self.plan.inputs_hashes[i], self.plan.fingerprints[i])
        return Outcome(
            rule=job.rule, hash=job.hash, status=status,
            fingerprint=fp if ok else None,
            cmd_hash=self.plan.cmd_hashes[i] if ok else None,
            inputs_hash=ins if ok else None,
            exit_code=ex.exit_code, start=ex.start, end=ex.end, host=self.host,
            max_rss_mb=round(ex.max_rss_kb / 1024, 1), attempts=attempt, backend="local",
            backend_job_id=None, run_id=self.run_id, results=self.results.pop(i, None) if ok else None,
            cpu_s=round(ex.cpu_s, 3) if ex.cpu_s is not None else None,
        )

    def fail(self, i: int, exit_code: int | None, start: float, end: float, rss_kb: int, message: str, attempt: int,
             status: str = "failed", cpu_s: float | None = None) -> Failure:
        job = self.g.jobs[i]
        log = self.wd / job.reldir / LOG_NAME
        outcome = Outcome(
            rule=job.rule, hash=job.hash, status=status, fingerprint=None, cmd_hash=None, inputs_hash=None,
            exit_code=exit_code if exit_code is not None else -1, start=start, end=end, host=self.host,
            max_rss_mb=round(rss_kb / 1024, 1), attempts=attempt, backend="local", backend_job_id=None, run_id=self.run_id,
            cpu_s=round(cpu_s, 3) if cpu_s is not None else None,
        )
        self.pending.append(outcome)
        self.reporter.job_ended(job, outcome, False)
        return Failure(i, job.label, exit_code, log, tail_lines(log), message)


def _append(log: Path, text: str) -> None:
    """A line of sweepc's own in a job's log, never through a link."""
    fd = os.open(log, WRITE_FLAGS | os.O_APPEND, 0o666)
    with open(fd, "a") as f:
        f.write(text)


def _shown(p: Path) -> str:
    """p relative to the current folder when it is below it (as the user typed the workdir)."""
    try:
        return str(p.relative_to(Path.cwd()))
    except (ValueError, OSError):
        return str(p)

