"""The dask backend: a Plan through a dask cluster (a LocalCluster, a
dask_jobqueue cluster on SLURM/PBS/SGE/LSF/HTCondor, or a running scheduler).
In: a Plan. Out: outcomes in the store, a Summary.

    settings.py  the `backend dask:` block, checked (file:line:col)
    cluster.py   starting/reaching the cluster, what its workers offer, shutting it down
    tasks.py     what runs on a worker: a batch of jobs, measured, stoppable
    backend.py   execute(): dependencies, batching, retries, -k, Ctrl-C

DaskBackend (below) is what the core drives; distributed and dask_jobqueue are
imported only when a dask build runs (`pip install 'sweepc[dask]'`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from sweepc.backends.base import BuildOptions, Cancelled, Execution, LiveJobs, Reporter, WaitEnd
from sweepc.errors import UsageError
from sweepc.lang.graph import BuildGraph
from sweepc.plan.planner import Plan
from sweepc.plan.store import Store, state_dir

WORKER_LOG = "dask-workers.log"  # in .sweepc/: the standard error of a LocalCluster's processes


class DaskBackend:
    name: ClassVar[str] = "dask"
    batch: ClassVar[bool] = False  # sweepc stays until the jobs end (it is dask's client)

    def validate(self, options: BuildOptions) -> None:
        if options.wait or options.render_only:
            raise UsageError("--wait and --render-only go with --backend slurm")

    def live(self, graph: BuildGraph, store: Store) -> LiveJobs:
        return {}  # a dask build's jobs end with it (see docs/dask.md, "Stopping")

    def refresh(self, graph: BuildGraph, store: Store) -> None:
        pass

    def check(self, graph: BuildGraph, plan: Plan, options: BuildOptions) -> list[str]:
        from sweepc.backends.dask.backend import check_fit
        from sweepc.backends.dask.cluster import connect, expected_shape, probe, require_dask
        from sweepc.backends.dask.settings import settings

        s = settings(graph)  # a bad `backend dask:` block is a sweepfile error before anything
        require_dask(s)
        shape = expected_shape(s, options.jobs)
        if shape is None:  # a running scheduler: can it be reached, and what do its workers offer?
            if options.dry_run:
                return []
            assert s.scheduler is not None
            client = connect(s.scheduler, s.connect_timeout)
            try:
                shape = probe(client, s)
            finally:
                client.close()
        check_fit(graph, plan.run, shape.worker_cpus, shape.worker_mem_mb, shape.text)
        # a python: module that fails to import here fails every job there (the
        # workers see the same files): say so before any starts, as locally
        from sweepc.backends.local.pypool import import_problems

        problems = import_problems(graph, plan.run)
        if problems and not options.dry_run:
            raise UsageError("\n".join(problems), "fix the module; sweepc imports it from the project folder, as its workers do")
        return problems

    def execute(self, plan: Plan, store: Store, run_id: str, reporter: Reporter, options: BuildOptions) -> Execution:
        from sweepc.backends.dask.backend import execute, no_interrupts
        from sweepc.backends.dask.cluster import open_session, require_dask
        from sweepc.backends.dask.settings import settings

        s = settings(plan.graph)
        require_dask(s)
        session = open_session(s, options.jobs, state_dir(plan.graph.root) / WORKER_LOG)
        try:
            dash = f", dashboard at {session.dashboard}" if session.dashboard else ", no dashboard (pip install bokeh)"
            reporter.note(f"sweepc: dask: {session.shape.text}{dash}")
            summary = execute(plan, store, run_id, reporter, s, session, jobs=options.jobs, keep_going=options.keep_going,
                              time_limits=options.time_limits)
        finally:
            with no_interrupts():
                session.close()
        return Execution(summary, "ok" if summary.ok else "failed")

    def release(self) -> None:
        pass  # check() starts nothing (the cluster is started by execute())

    def wait(self, graph: BuildGraph, store: Store, queued: Mapping[int, str], reporter: Reporter) -> WaitEnd:
        return "ended"  # nothing is queued outside a build: its cluster goes with it

    def cancel(self, graph: BuildGraph, store: Store) -> Cancelled:
        return Cancelled((), 0, 0)  # nothing of a dask build outlives it


__all__ = ["DaskBackend"]
