"""temp() outputs: removed once every job that reads them has finished done.

Backend-agnostic: the build wraps the backend's Reporter, so whichever
backend runs the jobs, the moment the last reader of a job ends `done` the
job's temp outputs go. A sweep at the start and end of every build removes
those whose readers finished elsewhere (a SLURM build that did not wait).

A missing temp output never makes a job stale (plan/planner.py); the
planner reruns its job only when a reader must run. A job whose temp output
nobody reads keeps it: there is no reader to wait for.
"""

from __future__ import annotations

from collections.abc import Iterable

from sweepc.backends.base import Reporter
from sweepc.backends.jobdir import remove_temp_outputs
from sweepc.lang.graph import Job
from sweepc.plan.planner import Plan
from sweepc.plan.store import Outcome


class TempJanitor:
    def __init__(self, plan: Plan) -> None:
        g = self.g = plan.graph
        self.plan = plan
        self.temps = {r.name: tuple(o.path for o in r.outputs if o.temp) for r in g.rules if any(o.temp for o in r.outputs)}
        self.readers: dict[int, list[int]] = {}
        self.run = set(plan.run)
        self.ended_done: set[int] = set()
        self.removed = 0
        if not self.temps:
            return
        for j in g.jobs:
            for d in dict.fromkeys(j.deps):
                if g.jobs[d].rule in self.temps:
                    self.readers.setdefault(d, []).append(j.id)

    def _done(self, i: int) -> bool:
        if i in self.ended_done:
            return True
        if i in self.run or i in self.plan.queued:
            return False
        job = self.g.jobs[i]
        rec = self.plan.records.get((job.rule, job.hash))
        return rec is not None and rec.status == "done"

    def _collect(self, u: int) -> None:
        readers = self.readers.get(u)
        if not readers or not self._done(u) or not all(self._done(r) for r in readers):
            return
        job = self.g.jobs[u]
        self.removed += len(remove_temp_outputs(self.g, job, self.temps[job.rule]))

    def ended(self, job: Job, outcome: Outcome) -> None:
        if outcome.status != "done" or not self.readers:
            return
        self.ended_done.add(job.id)
        for u in dict.fromkeys(job.deps):
            if u in self.readers:
                self._collect(u)
        # a batch backend may report a reader before the job it read from
        # (SLURM records ingested in one poll): then this job's turn is now
        if job.id in self.readers:
            self._collect(job.id)

    def sweep(self, ids: Iterable[int] | None = None) -> int:
        """Remove every temp output whose readers are all done; how many went."""
        before = self.removed
        for u in ids if ids is not None else list(self.readers):
            if u in self.readers:
                self._collect(u)
        return self.removed - before


class TempReporter:
    """A Reporter that tells the janitor as jobs end, then the real reporter."""

    def __init__(self, inner: Reporter, janitor: TempJanitor) -> None:
        self.inner, self.janitor = inner, janitor

    def job_started(self, job: Job, attempt: int) -> None:
        self.inner.job_started(job, attempt)

    def job_ended(self, job: Job, outcome: Outcome, will_retry: bool) -> None:
        self.inner.job_ended(job, outcome, will_retry)
        if not will_retry:
            self.janitor.ended(job, outcome)

    def note(self, text: str) -> None:
        self.inner.note(text)
