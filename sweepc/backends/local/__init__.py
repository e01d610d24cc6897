"""The local backend: a process pool on this machine, aware of each rule's
cpus and memory. In: a Plan. Out: outcomes in the store, a Summary.

    backend.py  scheduling, retries, keep-going, Ctrl-C (execute())
    procs.py    the process pool: spawn shell jobs, reap with rusage, kill trees
    spawner.py  the small helper process that forks the jobs
"""

from __future__ import annotations

from typing import ClassVar

from sweepc.backends.base import BuildOptions, Cancelled, Execution, LiveJobs, Reporter
from sweepc.errors import UsageError
from sweepc.lang.graph import BuildGraph
from sweepc.plan.planner import Plan
from sweepc.plan.store import Store


class LocalBackend:
    name: ClassVar[str] = "local"
    batch: ClassVar[bool] = False

    def validate(self, options: BuildOptions) -> None:
        if options.wait or options.render_only:
            raise UsageError("--wait and --render-only go with --backend slurm")

    def live(self, graph: BuildGraph, store: Store) -> LiveJobs:
        return {}  # local jobs die with their build: nothing runs after it

    def refresh(self, graph: BuildGraph, store: Store) -> None:
        pass

    def check(self, graph: BuildGraph, plan: Plan, options: BuildOptions) -> list[str]:
        import os

        from sweepc.backends.local.backend import check_fit, machine_mem_mb
        from sweepc.backends.local.pypool import import_problems

        try:
            check_fit(graph, plan.run, options.jobs or os.cpu_count() or 1, machine_mem_mb())
        except UsageError as e:
            if not options.dry_run:
                raise
            # a study meant for SLURM may not fit here: its dry run still shows the plan
            return [f"{e.message}; a local build would refuse to start ({e.hint})"]
        # a python: module that fails to import fails every job: say so before any starts
        problems = import_problems(graph, plan.run)
        if problems and not options.dry_run:
            raise UsageError("\n".join(problems), "fix the module; sweepc imports it from the project folder, as its workers do")
        return problems

    def execute(self, plan: Plan, store: Store, run_id: str, reporter: Reporter, options: BuildOptions) -> Execution:
        from sweepc.backends.local.backend import execute

        summary = execute(plan, store, run_id, reporter, jobs=options.jobs, keep_going=options.keep_going,
                          time_limits=options.time_limits)
        return Execution(summary, "ok" if summary.ok else "failed")

    def cancel(self, graph: BuildGraph, store: Store) -> Cancelled:
        return Cancelled((), 0, 0)  # nothing of a local build outlives it


__all__ = ["LocalBackend"]
