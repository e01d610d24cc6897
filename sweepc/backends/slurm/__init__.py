"""The SLURM backend: a Plan as job arrays. In: a Plan. Out: arrays handed to
sbatch, and outcomes in the store as completion records come back.

    settings.py   the `backend slurm:` block, checked
    arrays.py     jobs -> arrays (grouping, bundling, splitting) and their dependencies
    render.py     the submission folder: jobscripts, task files, runner.sh, submit.sh
    pyrunner.py   the array-task runner of python: rules (stdlib only, shipped with the folder)
    scheduler.py  sbatch/squeue/scancel/scontrol behind a small interface
    records.py    completion records -> the state store (ingest, sync before planning)
    backend.py    execute(): submit, wait, retry; cancel()

SlurmBackend (below) is what the core drives; it imports the rest lazily, so
`sweepc status` only pays for records.py.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import ClassVar

from sweepc.backends.base import BuildOptions, Cancelled, Execution, LiveJobs, Reporter, WaitEnd
from sweepc.errors import UsageError
from sweepc.lang.graph import BuildGraph
from sweepc.plan.planner import Plan
from sweepc.plan.store import Store


def _rel(p: os.PathLike[str] | str) -> str:
    try:
        return os.path.relpath(p)
    except ValueError:
        return str(p)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _in_slurm(store: Store) -> bool:
    """Whether any job is handed to SLURM and not taken back in: `queued`, or
    `running` (its runner said it started)."""
    return store.has_status("queued") or store.has_status("running")


class SlurmBackend:
    name: ClassVar[str] = "slurm"
    batch: ClassVar[bool] = True

    def validate(self, options: BuildOptions) -> None:
        if options.render_only and options.wait:
            raise UsageError("--render-only submits nothing, so there is nothing to --wait for")
        if options.detach and (options.render_only or options.wait):
            other = "--render-only" if options.render_only else "--wait"
            raise UsageError(f"--detach and {other} do not go together",
                             "--detach waits in the background (a conductor); --wait waits here; --render-only submits nothing")

    def live(self, graph: BuildGraph, store: Store) -> LiveJobs:
        if not _in_slurm(store):
            return {}  # nothing queued: no need to import records.py and subprocess
        from sweepc.backends.slurm.records import queued_rows, sync
        from sweepc.backends.slurm.scheduler import SchedulerError, SubprocessScheduler

        if not queued_rows(store):
            return {}
        try:
            return sync(graph, store, SubprocessScheduler())
        except SchedulerError:
            return {}  # without SLURM's commands here nothing can be live

    def refresh(self, graph: BuildGraph, store: Store) -> None:
        if not _in_slurm(store):
            return
        from sweepc.backends.slurm.records import ingest, queued_raw

        rows = queued_raw(store)
        if rows:
            ingest(graph, store, rows, remaining_rows=False)

    def check(self, graph: BuildGraph, plan: Plan, options: BuildOptions) -> list[str]:
        from sweepc.backends.slurm.settings import settings

        settings(graph)  # a bad `backend slurm:` block is a sweepfile error before anything
        if options.render_only:
            return []  # the folder may go to a cluster whose Python differs from this one's
        # a python: module that fails to import here would fail every pset on the
        # nodes (the same files, usually the same software): say so before submitting
        from sweepc.backends.local.pypool import import_problems

        problems = import_problems(graph, plan.run)
        if problems and not options.dry_run:
            raise UsageError("\n".join(problems), "fix the module; sweepc imports it from the project folder, as the array tasks do")
        return problems

    def execute(self, plan: Plan, store: Store, run_id: str, reporter: Reporter, options: BuildOptions) -> Execution:
        from sweepc.backends.slurm.backend import execute
        from sweepc.backends.slurm.scheduler import SubprocessScheduler

        result = execute(plan, store, run_id, SubprocessScheduler(), reporter,
                         wait=options.wait, render_only=options.render_only, jobs=options.jobs)
        notes: list[str] = []
        s = result.summary
        if options.render_only:
            for a in result.arrays:
                after = f" after {a.dependency}" if a.dependency else ""
                notes.append(f"rendered {a.rule}: {_rel(a.script)}, {_plural(a.psets, 'pset')} in {_plural(a.tasks, 'task')}{after}")
            if result.submit_sh is not None:
                notes.append(f"sweepc: wrote {_rel(result.submit_sh)}; nothing was submitted (run it to submit)")
            if result.left:
                notes.append(f"sweepc: {_plural(result.left, 'job')} {'is' if result.left == 1 else 'are'} not rendered: local: true jobs (a build runs them on this machine) and what needs them")
            return Execution(None, "rendered", tuple(notes))
        if result.interrupted:
            notes.append("sweepc: stopped waiting; what was submitted stays queued in SLURM "
                         "(see it with `sweepc status`, stop it with `sweepc cancel`)")
            return Execution(s, "interrupted", tuple(notes))
        if result.left:
            notes.append(f"sweepc: {result.left} job{'s' if result.left != 1 else ''} {'waits' if result.left == 1 else 'wait'} for jobs that are not finished (local: true jobs run on this machine "
                         f"once their inputs are done): run `sweepc build --backend slurm` again later, or use --wait")
        if not options.wait:
            n = sum(a.psets for a in result.arrays)
            k = len(result.arrays)
            notes.append(f"sweepc: submitted {n} job{'s' if n != 1 else ''} in {k} array{'s' if k != 1 else ''}; job scripts and logs in {_rel(result.folder)}/")
            notes.append("sweepc: follow them with `sweepc status`, wait with `sweepc build --backend slurm --wait`, stop them with `sweepc cancel`")
            return Execution(s, "submitted", tuple(notes))
        return Execution(s, "ok" if s is not None and s.ok and not result.left else "failed", tuple(notes))

    def release(self) -> None:
        pass  # check() starts nothing

    def wait(self, graph: BuildGraph, store: Store, queued: Mapping[int, str], reporter: Reporter) -> WaitEnd:
        from sweepc.backends.slurm.backend import wait_queued
        from sweepc.backends.slurm.scheduler import SubprocessScheduler

        try:
            return wait_queued(graph, store, SubprocessScheduler(), queued, reporter)
        except KeyboardInterrupt:
            return "interrupted"

    def cancel(self, graph: BuildGraph, store: Store) -> Cancelled:
        from dataclasses import replace

        from sweepc.backends.slurm import conductor
        from sweepc.backends.slurm.backend import cancel
        from sweepc.backends.slurm.scheduler import SubprocessScheduler

        # the conductor first: it would resubmit what is cancelled
        stopped = conductor.stop(graph.root)
        c = cancel(graph, store, SubprocessScheduler())
        return replace(c, conductor=stopped.pid) if stopped is not None else c


__all__ = ["SlurmBackend"]
