"""`input: done(RULE)` in a backend that runs jobs while sweepc waits (local,
dask): which of a job's done() inputs ended done, and whether a job of
plan.dynamic that runs only because something upstream ran can keep its
recorded outcome (its inputs came out as they were).

Both take the build's own view: `done_ids`, the jobs of this build that ended
done; `in_run`, the jobs this build runs; `fps`, the fingerprints jobs really
have (those of plan.dynamic are made when they start).
"""

from __future__ import annotations

import os
from collections.abc import Collection, MutableSequence
from pathlib import Path

from sweepc.lang.graph import Job
from sweepc.plan.planner import UPSTREAM, Plan, dynamic_fingerprint
from sweepc.plan.store import Outcome


def done_inputs(plan: Plan, job: Job, done_ids: Collection[int], in_run: Collection[int]) -> list[int]:
    """The done() inputs of job that ended done: in this build, or before it
    and not run again."""
    recs, jobs = plan.records, plan.graph.jobs
    out = []
    for d in job.deps:
        if d in job.soft:
            if d in done_ids:
                out.append(d)
            elif d not in in_run:
                dj = jobs[d]
                rec = recs.get((dj.rule, dj.hash))
                if rec is not None and rec.status == "done":
                    out.append(d)
    return out


def kept(plan: Plan, i: int, fps: MutableSequence[str], done_ids: Collection[int], in_run: Collection[int], wd: Path,
         backend: str, kept_ids: Collection[int] = ()) -> Outcome | None:
    """For a job with done() inputs (or downstream of one) that runs only
    because something upstream ran: when its inputs came out as they were
    (the done() inputs that ended done are the ones it was built with: a
    failed input failed again, and none of its inputs ran again and ended
    done), its recorded outcome, which stays (and its fingerprint goes into
    fps); else None. `kept_ids`: the jobs of done_ids kept this way."""
    g = plan.graph
    job = g.jobs[i]
    if i not in plan.dynamic or any(r.code != UPSTREAM for r in plan.reasons.get(i, ())):
        return None
    if any(d in done_ids and d not in kept_ids for d in job.deps):
        # An input ran again and ended done: what it wrote may differ with the
        # same fingerprint (its output was deleted, the command draws a random
        # number), so this job reruns, as a job with plain inputs does. (A
        # done() gather stayed "up to date" over the old output, and the
        # next build said nothing to do.)
        return None
    rec = plan.records.get((job.rule, job.hash))
    if rec is None or rec.status != "done" or rec.fingerprint is None or rec.run_id is None:
        return None
    _, fp = dynamic_fingerprint(plan, i, fps, done_inputs(plan, job, done_ids, in_run))
    if fp != rec.fingerprint:
        return None
    d = wd / job.reldir
    if any(not os.path.exists(d / o.path) for o in g.rule(job.rule).outputs):
        return None
    fps[i] = fp
    return Outcome(
        rule=job.rule, hash=job.hash, status="done", fingerprint=rec.fingerprint, cmd_hash=rec.cmd_hash,
        inputs_hash=rec.inputs_hash, exit_code=rec.exit_code, start=rec.start, end=rec.end, host=rec.host,
        max_rss_mb=rec.max_rss_mb, attempts=rec.attempts, backend=rec.backend or backend,
        backend_job_id=rec.backend_job_id, run_id=rec.run_id,
    )
