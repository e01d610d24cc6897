"""The one interface every backend implements, and the values it hands back.

A backend takes a Plan (what must run, in dependency order) and makes it
happen somewhere: this machine, SLURM job arrays, a dask cluster. The core
(api.py) never knows which one it drives; it:

1. asks every registered backend which jobs it still has queued or running
   elsewhere (`live`), so no build runs a job twice;
2. plans, then lets the chosen backend refuse what it can never run
   (`check`: a job that fits no slot, a setting it rejects) before a run is
   recorded;
3. calls `execute`, which marks the plan's jobs `planned`, runs them, records
   every outcome in the store (the backend's process is the only writer), and
   tells a Reporter as jobs start and end;
4. `cancel` stops what the backend has queued for this project.

Backends never print: they tell the Reporter, and return text lines for the
CLI in `Execution.notes`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal, Protocol

from sweepc.values import values_json

if TYPE_CHECKING:  # (annotations only: the registry imports this module for `sweepc build`'s options)
    from sweepc.lang.graph import BuildGraph, Job
    from sweepc.plan.planner import Plan
    from sweepc.plan.store import Outcome, Store

# (rule, pset hash) -> the id under which a scheduler still has the job
LiveJobs = dict[tuple[str, str], str]
# how Backend.wait ended
WaitEnd = Literal["ended", "interrupted", "cancelled"]


class Reporter(Protocol):
    """What a backend tells while it runs; the CLI's progress display is one."""

    def job_started(self, job: Job, attempt: int) -> None: ...

    def job_ended(self, job: Job, outcome: Outcome, will_retry: bool) -> None: ...

    def note(self, text: str) -> None:
        """One line worth showing now: an array submitted, a dashboard link."""
        ...


class QuietReporter:
    def job_started(self, job: Job, attempt: int) -> None:
        pass

    def job_ended(self, job: Job, outcome: Outcome, will_retry: bool) -> None:
        pass

    def note(self, text: str) -> None:
        pass


@dataclass(frozen=True)
class BuildOptions:
    """How to run a plan. Each backend uses what applies to it and refuses,
    in `check`, an option it cannot honour."""

    jobs: int | None = None  # -j: cpus' worth of jobs at once (local, dask: workers' slots)
    keep_going: bool = False  # -k
    wait: bool = False  # batch backends: wait until the submitted jobs finish
    render_only: bool = False  # batch backends: write what would be submitted, submit nothing
    dry_run: bool = False  # `check` is asked for a dry run: warn instead of refusing where it can
    time_limits: bool = True  # local, dask: stop a job at its rule's `time` resource (--no-time-limits)
    detach: bool = False  # batch backends: what `wait` does, in a background process (a conductor)
    # the id the run will have, when check() is asked just before it (not for a
    # dry run): the local backend starts the Python workers the run will use
    run_id: str | None = None


@dataclass(frozen=True, slots=True)
class Failure:
    job: int
    label: str
    exit_code: int | None
    log: Path
    tail: tuple[str, ...]
    message: str


@dataclass(frozen=True, slots=True)
class Summary:
    total: int  # jobs in the plan
    done: int
    failed: tuple[Failure, ...]
    skipped: int  # not run because something they need failed
    not_started: int  # not run because the build stopped (failure without -k)
    interrupted: tuple[int, ...]
    uptodate: int
    elapsed: float

    @property
    def ok(self) -> bool:
        return not self.failed and not self.interrupted and self.skipped == 0 and self.not_started == 0


class Interrupted(Exception):
    """Ctrl-C or SIGTERM stopped the build; the store is consistent."""

    def __init__(self, summary: Summary) -> None:
        super().__init__("interrupted")
        self.summary = summary


@dataclass(frozen=True)
class Execution:
    """What `Backend.execute` hands back."""

    summary: Summary | None  # None: nothing has finished yet (jobs submitted, not waited for)
    status: str  # for the runs table: ok | failed | interrupted | submitted
    notes: tuple[str, ...] = ()  # lines for the CLI, after the summary

    @property
    def interrupted(self) -> bool:
        return self.status == "interrupted"


@dataclass(frozen=True)
class Cancelled:
    arrays: tuple[str, ...]  # scheduler ids that were cancelled
    jobs: int  # psets recorded as cancelled
    finished: int  # psets whose records came in first
    conductor: int | None = None  # pid of the background conductor that was stopped first
    build: int | None = None  # pid of a build running jobs on this machine (local, dask) that was stopped


class Backend(Protocol):
    """Every backend: a small class registered by name in backends/__init__.py."""

    name: ClassVar[str]

    # True when, without options.wait, execute() hands the jobs to a
    # scheduler and returns before they finish (no progress display then).
    batch: ClassVar[bool]

    def validate(self, options: BuildOptions) -> None:
        """Refuse options this backend cannot honour (UsageError), before
        anything is loaded or locked."""
        ...

    def live(self, graph: BuildGraph, store: Store) -> LiveJobs:
        """Jobs of this project this backend still has queued or running
        outside this process, after taking in those that finished; before a
        build plans, so nothing runs twice."""
        ...

    def refresh(self, graph: BuildGraph, store: Store) -> None:
        """Take in what finished outside this process, cheaply (no scheduler
        call): before `status` and `results` read the store."""
        ...

    def check(self, graph: BuildGraph, plan: Plan, options: BuildOptions) -> list[str]:
        """Refuse (UsageError, SweepfileError) what can never run, before a run
        is recorded; return warnings to show instead where options.dry_run
        allows going on."""
        ...

    def release(self) -> None:
        """Let go of what check() started for the run (options.run_id) when
        the build stops before execute(): execute() takes it over otherwise."""
        ...

    def execute(self, plan: Plan, store: Store, run_id: str, reporter: Reporter, options: BuildOptions) -> Execution:
        """Run the plan's jobs and record their outcomes. Raises Interrupted
        (after recording what was running) when the build is stopped, unless
        the backend has handed its jobs to a scheduler that keeps them."""
        ...

    def cancel(self, graph: BuildGraph, store: Store) -> Cancelled:
        """Stop what this backend has queued or running for this project."""
        ...

    def wait(self, graph: BuildGraph, store: Store, queued: Mapping[int, str], reporter: Reporter) -> WaitEnd:
        """For a build that waits (options.wait): wait until the jobs an
        earlier build handed to the scheduler (plan.queued: job -> its id
        there) have ended, taking in their outcomes, so that the build can
        plan again and finish what they leave ("ended"). "interrupted":
        Ctrl-C (or SIGTERM) stopped the waiting; the jobs go on.
        "cancelled": some of them were cancelled meanwhile (`sweepc cancel`
        from another terminal), so the build must not submit them again.
        Backends that queue nothing return "ended" at once."""
        ...


def params_json(job: Job) -> str:
    return values_json(job.params)  # compact_json(dict(job.params)), a value at a time


def tail_lines(path: Path, n: int = 10) -> tuple[str, ...]:
    """The last n lines of a job's log, for failure reports."""
    try:
        with open(os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC), "rb") as f:  # never through a link
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 8192))
            data = f.read().decode("utf-8", "replace")
    except OSError:
        return ()
    return tuple(data.splitlines()[-n:])
