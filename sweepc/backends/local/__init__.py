"""The local backend: a process pool on this machine, aware of each rule's
cpus and memory. In: a Plan. Out: outcomes in the store, a Summary.

    backend.py  scheduling, retries, keep-going, Ctrl-C (execute())
    procs.py    the process pool: spawn shell jobs, reap with rusage, kill trees
    spawner.py  the small helper process that forks the jobs
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar

from sweepc.backends.base import BuildOptions, Cancelled, Execution, LiveJobs, Reporter, WaitEnd
from sweepc.errors import UsageError
from sweepc.lang.graph import BuildGraph
from sweepc.plan.planner import Plan
from sweepc.plan.store import Store

if TYPE_CHECKING:
    from sweepc.backends.local.pypool import PythonPool

IMPORT_HINT = "fix the module; sweepc imports it from the project folder, as its workers do"


class LocalBackend:
    name: ClassVar[str] = "local"
    batch: ClassVar[bool] = False

    def __init__(self) -> None:
        # the Python workers check() started for the run (they did the import
        # check), handed to execute()
        self._python: PythonPool | None = None
        self._python_run: str | None = None  # the run id in its workers' environment

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
        if options.dry_run or options.run_id is None:
            problems = import_problems(graph, plan.run)
            if problems and not options.dry_run:
                raise UsageError("\n".join(problems), IMPORT_HINT)
            return problems
        # a build: the run's own Python workers import them, all at once (not a
        # separate interpreter first and the workers after it: that counts for
        # a module that imports a large library)
        self.release()
        self._python = _checked_pool(graph, plan, options, options.run_id)
        self._python_run = options.run_id
        return []

    def execute(self, plan: Plan, store: Store, run_id: str, reporter: Reporter, options: BuildOptions) -> Execution:
        from sweepc.backends.local.backend import execute

        python, self._python = self._python, None
        if python is not None and self._python_run != run_id:  # (made with another run's id in its environment)
            python.close()
            python = None
        try:
            summary = execute(plan, store, run_id, reporter, jobs=options.jobs, keep_going=options.keep_going,
                              time_limits=options.time_limits, python_pool=python)
        finally:
            if python is not None:
                python.close()  # (closed already when the build's runner took it; twice is nothing)
        return Execution(summary, "ok" if summary.ok else "failed")

    def wait(self, graph: BuildGraph, store: Store, queued: Mapping[int, str], reporter: Reporter) -> WaitEnd:
        return "ended"  # nothing is queued outside this process

    def release(self) -> None:
        python, self._python = self._python, None
        if python is not None:
            python.close()

    def cancel(self, graph: BuildGraph, store: Store) -> Cancelled:
        return Cancelled((), 0, 0)  # nothing of a local build outlives it


def _checked_pool(graph: BuildGraph, plan: Plan, options: BuildOptions, run_id: str) -> PythonPool | None:
    """The build's pool of Python workers, as many as will run python: jobs
    at once, each having imported every module the plan's python: jobs call
    (pypool.check_imports); None when no python: job runs. UsageError,
    naming each module that fails (as pypool.import_problems words it),
    when any does."""
    import os
    import sys

    from sweepc.backends.local.backend import job_env
    from sweepc.backends.local.pypool import PythonPool, import_message, python_modules

    wanted, count = python_modules(graph, plan.run)
    if not wanted:
        return None
    cpus = options.jobs or os.cpu_count() or 1
    pool = PythonPool(job_env(graph.root, run_id), cpus, str(graph.root))
    ok = False
    try:
        modules = list(wanted)
        try:
            # as many workers as will run python: jobs at once import at once
            problems = pool.check_imports([(str(graph.root / path), func) for path, func in modules], workers=min(cpus, count))
        except OSError as e:
            raise UsageError(f"cannot start a Python worker ({sys.executable}): {e.strerror or e}",
                             "the interpreter sweepc runs under must be able to start again") from None
        if problems:
            raise UsageError("\n".join(import_message(*modules[n], wanted[modules[n]], text) for n, text in problems), IMPORT_HINT)
        ok = True
        return pool
    finally:
        if not ok:
            pool.close()


__all__ = ["LocalBackend"]
