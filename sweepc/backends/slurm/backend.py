"""The SLURM backend: run a Plan as job arrays. Entry points: execute(), cancel().

execute() marks the plan's jobs `planned`, prepares their job folders (stale
outputs and records removed, input lists written), writes the submission
folder (render.py) and submits one array per (rule, resources) group in rule
order, each with the dependencies arrays.dependencies() chose, recording
every pset `queued` with its ARRAY_TASK id. `local: true` jobs run here
through the local backend once everything they need is done.

With wait=True it then polls until every pset has an outcome: each poll reads
the next completion record of every unfinished array task (files only, in
the order the runner writes them) and, with back-off, asks squeue ONCE about
all unfinished tasks, which is only needed to notice tasks that ended without
writing every record (killed, cancelled by a broken dependency). Failed psets
are resubmitted as new arrays while the rule's `retries` last (after a
TIMEOUT with the rule's `restart:` command); psets that did not run because
something else went wrong (an input being retried, a sibling's TIMEOUT) are
resubmitted too. The runner never prints: it tells a reporter.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from sweepc.errors import UsageError
from sweepc.lang.graph import LOG_NAME, BuildGraph, Job
from sweepc.backends.jobdir import JobDirError, prepare_job_dir, uses_input_list
from sweepc.backends.base import Cancelled, Failure, Interrupted, Reporter, Summary, params_json, tail_lines
from sweepc.backends.local.backend import execute as local_execute
from sweepc.plan.planner import UPSTREAM, Plan
from sweepc.plan.store import Outcome, Store, state_dir
from sweepc.backends.slurm import records as rec_
from sweepc.backends.slurm.arrays import Array, Deps, dependencies, make_arrays, task_time_s
from sweepc.backends.slurm.render import (
    LOG_DIR,
    PsetLine,
    load_template,
    made_by_runner,
    prepare_folder,
    submit_script,
    write_array,
    write_text,
)
from sweepc.backends.slurm.scheduler import Scheduler, TaskState
from sweepc.backends.slurm.settings import settings as read_settings

BATCH_DIR = "slurm"  # .sweepc/slurm/<submission>/
GRACE_S = 3.0  # a task that ended may still be writing (or, on NFS, showing) its last records
POLL_MIN_S, POLL_MAX_S = 0.5, 10.0  # squeue back-off
TICK_MAX_S = 2.0  # records are read at least this often while waiting
MAX_UNEXPLAINED = 3  # resubmissions of a pset that did not run for no reason we can see


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def batch_dir(root: Path) -> Path:
    return state_dir(root) / BATCH_DIR


@dataclass(frozen=True)
class Submitted:
    """One array handed to the scheduler (or, render-only, written for submit.sh)."""

    name: str
    rule: str
    job_id: str | None
    psets: int
    tasks: int
    dependency: str | None
    script: Path


@dataclass
class Result:
    folder: Path
    arrays: list[Submitted] = field(default_factory=list)
    summary: Summary | None = None  # with wait (or when local jobs ran)
    left: int = 0  # jobs left for a later build (local jobs, and what waits for them)
    interrupted: bool = False
    submit_sh: Path | None = None


def execute(
    plan: Plan,
    store: Store,
    run_id: str,
    scheduler: Scheduler,
    reporter: Reporter,
    wait: bool = False,
    render_only: bool = False,
    jobs: int | None = None,
) -> Result:
    return _Build(plan, store, run_id, scheduler, reporter, wait, render_only, jobs).run()


class _Build:
    def __init__(self, plan: Plan, store: Store, run_id: str, scheduler: Scheduler, reporter: Reporter,
                 wait: bool, render_only: bool, jobs: int | None) -> None:
        self.plan, self.g, self.store, self.sub, self.sched, self.reporter = plan, plan.graph, store, run_id, scheduler, reporter
        self.wait, self.render_only, self.jobs = wait, render_only, jobs
        self.settings = read_settings(self.g)
        self.tpl = load_template(self.settings, self.g.root)
        self.folder = batch_dir(self.g.root) / run_id
        self.in_run = set(plan.run)
        self.local_jobs = {i for i in plan.run if self.g.rule(self.g.jobs[i].rule).local}
        self.unsubmitted = [i for i in plan.run if i not in self.local_jobs]  # SLURM jobs not handed out yet
        self.arrays: list[Array] = []
        self.ids: list[str] = []
        self.loc: dict[int, tuple[int, int]] = {}  # latest array and task of each SLURM job
        self.next: dict[tuple[int, int], int] = {}  # first pset of an unfinished task without a record
        self.unfinished: set[tuple[int, int]] = set()
        self.running_tasks: set[tuple[int, int]] = set()
        self.ended_at: dict[tuple[int, int], tuple[float, TaskState]] = {}
        self.unlisted: dict[tuple[int, int], int] = {}
        self.final: dict[int, str] = {}  # done | failed | cancelled | skipped
        self.kept_ids: set[int] = set()  # of the done ones, those the runner kept as they were (kept())
        self.attempt: dict[int, int] = {}
        self.unexplained: dict[int, int] = {}
        self.started: set[int] = set()
        self.seen: set[int] = set()  # jobs whose final record of their latest submission was read
        # (job, record status or "lost", exit code, note, record) read since the last decide()
        self.events: list[tuple[int, str, int | None, str, rec_.TaskRecord | None]] = []
        self.pending: list[Outcome] = []
        self.failures: list[Failure] = []
        self.cancelled: list[int] = []
        self.result = Result(self.folder)
        self.stopping = False  # a user cancelled something: no more resubmissions
        self.max_array = 0
        self.t0 = time.monotonic()
        self.uses_list = {r.name: uses_input_list(r) for r in self.g.rules}
        self.by_runner = {r.name: made_by_runner(r) for r in self.g.rules}
        self.rounds = 0  # resubmission rounds
        self.resume: set[int] = set()  # jobs whose first submission here runs their restart: command
        # the fingerprints jobs really have: those of plan.dynamic come with their records
        self.fps: list[str] = list(plan.fingerprints)
        self.only: dict[int, set[int]] = {}  # job with done() inputs -> the inputs its list may name
        self.keep: set[int] = set()  # jobs submitted with keep: (their outputs stay until the runner decides)
        self.resume_attempts()

    def resume_attempts(self) -> None:
        """A job whose last attempt (submitted by an earlier build that did not
        wait for it) failed, timed out or vanished, with this same fingerprint
        and attempts left, goes on counting: attempt n+1, with its `restart:`
        command when it has one. Without attempts left, or after a change, a
        build runs it afresh (attempt 1, `shell:`)."""
        g, plan = self.g, self.plan
        for i in self.unsubmitted:
            job = g.jobs[i]
            row = plan.records.get((job.rule, job.hash))
            if row is None or row.backend != "slurm" or row.status not in ("failed", "timeout", "queued", "running"):
                continue
            if row.status in ("failed", "timeout"):
                rec = rec_.read_record(g.job_dir(job))
                same = rec is not None and (  # a job of plan.dynamic: its fingerprint is made on the node
                    rec.cmd_hash == plan.cmd_hashes[i] if i in plan.dynamic else rec.fingerprint == plan.fingerprints[i])
                if rec is None or not rec.final or not same or rec.submission != row.run_id:
                    continue
                last = rec.attempt
            elif (row.backend_job_id or "").startswith(rec_.RENDERED):
                continue  # rendered by --render-only, never submitted as far as we know: no attempt
            else:  # its task ended without a final record (killed, node failure): that was an attempt too
                last = row.attempts or 1
            if last <= g.rule(job.rule).retries:
                self.attempt[i] = last + 1
                if job.restart is not None:
                    self.resume.add(i)
        if self.attempt:
            with_restart = f", {len(self.resume)} with their restart: command" if self.resume else ""
            self.reporter.note(f"sweepc: {plural(len(self.attempt), 'job')} failed in an earlier submission and "
                               f"{'has' if len(self.attempt) == 1 else 'have'} attempts left: resubmitting them{with_restart}")

    # -- the build ---------------------------------------------------------------
    def run(self) -> Result:
        g, plan = self.g, self.plan
        self.max_array = self.sched.max_array_size()
        # in key order: SQLite walks its primary-key B-tree once instead of jumping
        # around it (half the time at 200k rows); the rows made as they are
        # written, from the job ids in that order (a list of them held ~27 MB)
        jobs = g.jobs
        self.store.mark_planned(((jobs[i].rule, jobs[i].hash, params_json(jobs[i])) for i in _key_order(jobs, plan.run)), self.sub)
        try:
            self.advance()
            if self.wait and not self.render_only:
                self.poll_until_done()
        except (KeyboardInterrupt, Interrupted):
            self.result.interrupted = True
        finally:
            self.flush()
        self.result.left = len(self.unsubmitted) + len(self.local_jobs - set(self.final))
        if (self.wait and not self.render_only) or self.final:
            self.result.summary = self.summary()
        return self.result

    def summary(self) -> Summary:
        """With wait: the whole plan. Without: the local jobs that ran."""
        done = sum(1 for v in self.final.values() if v == "done")
        skipped = sum(1 for v in self.final.values() if v == "skipped")
        return Summary(
            total=len(self.plan.run) if self.wait else len(self.final), done=done, failed=tuple(self.failures),
            skipped=skipped, not_started=0, interrupted=tuple(self.cancelled),
            uptodate=self.plan.uptodate, elapsed=time.monotonic() - self.t0,
        )

    def flush(self) -> None:
        if self.pending:
            self.store.record(self.pending)
            self.pending = []

    def advance(self) -> bool:
        """Run the local jobs whose inputs are done, submit the SLURM jobs no
        unfinished local job stands in front of; again while that moves."""
        any_moved = False
        while True:
            moved = self.skip_dead()
            ready = [i for i in sorted(self.local_jobs - set(self.final))
                     if all(self.ended(d) if d in self.g.jobs[i].soft else self.done(d) for d in self.g.jobs[i].deps)]
            if ready and not self.render_only:
                self.run_local(ready)
                moved = True
            batch = self.submittable()
            if batch:
                self.submit(batch)
                moved = True
            if not moved or self.render_only:
                return any_moved or moved
            any_moved = True

    def done(self, d: int) -> bool:
        """Input d is there: built in this build, or up to date (not queued by an earlier build)."""
        if d in self.in_run:
            return self.final.get(d) == "done"
        return d not in self.plan.queued

    def ended(self, d: int) -> bool:
        """A done() input d has ended, whatever its outcome (or was not run here)."""
        return d in self.final or (d not in self.in_run and d not in self.plan.queued)

    def skip_dead(self) -> bool:
        """Jobs not handed out yet whose input failed will never run (a done()
        input that failed is left out instead)."""
        moved = False
        for i in list(self.unsubmitted) + sorted(self.local_jobs - set(self.final)):
            soft = self.g.jobs[i].soft
            if i not in self.final and any(self.final.get(d, "done") != "done" for d in self.g.jobs[i].deps if d in self.final and d not in soft):
                self.final[i] = "skipped"
                if i in self.unsubmitted:
                    self.unsubmitted.remove(i)
                moved = True
        return moved

    def submittable(self) -> list[int]:
        batch: list[int] = []
        chosen: set[int] = set()
        for i in self.unsubmitted:
            soft = self.g.jobs[i].soft
            if all(self.soft_ready(d, chosen) if d in soft else
                   self.done(d) or d in self.plan.queued or (d in self.loc and d not in self.final) or d in chosen
                   for d in self.g.jobs[i].deps):
                batch.append(i)
                chosen.add(i)
        return batch

    def soft_ready(self, d: int, chosen: Collection[int]) -> bool:
        """Whether a job with done() input d can be handed out. While sweepc
        waits (--wait, the conductor), once d has its final outcome: sweepc
        resubmits a failed d while its retries last, and afterany would start
        the job after the first attempt. Otherwise now, with afterany on d
        (the runner then takes d if its record says done)."""
        if self.ended(d):
            return True
        if self.wait and not self.render_only and d in self.in_run:
            return False
        return d in self.plan.queued or d in self.loc or d in chosen

    # -- local jobs --------------------------------------------------------------
    def run_local(self, ids: list[int]) -> None:
        outer = self

        class _Catch:
            def job_started(self, job: Job, attempt: int) -> None:
                outer.reporter.job_started(job, attempt)

            def job_ended(self, job: Job, outcome: Outcome, will_retry: bool) -> None:
                outer.reporter.job_ended(job, outcome, will_retry)
                if not will_retry:
                    outer.final[job.id] = "done" if outcome.status == "done" else outcome.status

            def note(self, text: str) -> None:
                outer.reporter.note(text)

        sub_plan = replace(self.plan, run=tuple(ids))
        if any(i in self.plan.dynamic for i in ids):
            # what the SLURM jobs of this build ended as (done() inputs), and the
            # fingerprints they ended with; the rest as planned
            self.flush()
            now = self.store.records()
            records = dict(self.plan.records)
            for j in self.final:
                key = (self.g.jobs[j].rule, self.g.jobs[j].hash)
                if key in now:
                    records[key] = now[key]
            sub_plan = replace(sub_plan, fingerprints=list(self.fps), records=records)
        s = local_execute(sub_plan, self.store, self.sub, _Catch(), jobs=self.jobs, keep_going=True)
        self.failures.extend(s.failed)
        for i in ids:
            self.final.setdefault(i, "skipped")
            if self.final[i] not in ("done", "failed", "skipped"):
                self.final[i] = "failed"
        dyn = [i for i in ids if i in self.plan.dynamic and self.final[i] == "done"]
        if dyn:  # their fingerprints, for the jobs that need them
            recs = self.store.records()
            for i in dyn:
                r = recs.get((self.g.jobs[i].rule, self.g.jobs[i].hash))
                if r is not None and r.fingerprint:
                    self.fps[i] = r.fingerprint

    # -- submitting --------------------------------------------------------------
    def submit(self, batch: list[int], restart: Collection[int] = (), resubmission: bool = False) -> None:
        g = self.g
        first = len(self.arrays)
        if resubmission:
            self.rounds += 1
        prefix = f"r{self.rounds}-" if resubmission else ""
        restart = set(restart) | (self.resume & set(batch))
        self.resume -= set(batch)
        # (only the attempts past the first: Array.attempt() says 1 for the rest)
        new = make_arrays(g, batch, self.settings.bundle, self.max_array, first=first + 1, prefix=prefix,
                          restart=restart, attempts={i: a for i in batch if (a := self.attempt.get(i, 1)) != 1}, pack=self.settings.pack)
        where = {i: loc for i, loc in self.loc.items() if i not in self.final}
        for k, arr in enumerate(new, start=first):
            for t, task in enumerate(arr.tasks):
                at = (k, t)  # one per task, not per pset
                for i in task:
                    where[i] = at
        deps = dependencies(g, new, where, self.plan.queued, exact=resubmission, offset=first)
        # sweepc prepares some folders itself (templates, input lists), before anything is
        # submitted, so that a folder it must refuse stops the whole batch; their task lines
        # come first (a dynamic line decides whether the job's outputs are kept)
        prepared = [i for i in batch if not self.by_runner[g.jobs[i].rule]]
        lines = {i: self.pset_line(i) for i in prepared}
        self.prepare_dirs(prepared)
        prepare_folder(self.folder, python=any(g.rule(arr.rule).python is not None for arr in new))
        handed = set(batch)
        self.unsubmitted = [i for i in self.unsubmitted if i not in handed]
        scripts: list[Path] = []
        for arr, d in zip(new, deps):
            # each line made as its task file is written (those of prepared jobs: made
            # already, handed over once), not kept (200k of them held ~90 MB)
            script = write_array(g, self.settings, self.tpl, self.folder, arr, lambda i: lines.pop(i, None) or self.pset_line(i),
                                 self.sub, self.settings.throttle)
            if self.render_only:
                scripts.append(script)
            else:  # each array goes out as soon as it is written
                self.submit_one(arr, d, script)
        if self.render_only:
            path = self.folder / "submit.sh"
            write_text(path, submit_script(self.folder, new, deps), 0o755)
            self.result.submit_sh = path
            names = [f"$j{k}" for k in range(len(new))]
            rows: list[tuple[str, str, str, int]] = []
            for arr, d, script in zip(new, deps, scripts):
                self.result.arrays.append(Submitted(arr.name, arr.rule, None, len(arr.jobs), len(arr.tasks), d.flag(names), script))
                rows.extend((g.jobs[i].rule, g.jobs[i].hash, rec_.rendered_id(arr.name, t), 1) for t, task in enumerate(arr.tasks) for i in task)
            # queued under a placeholder id: their records count once submit.sh has run (here or elsewhere)
            self.store.set_queued(rows, self.sub)

    def submit_one(self, arr: Array, d: Deps, script: Path) -> None:
        flag = d.flag(self.ids)
        options = [f"--dependency={flag}", "--kill-on-invalid-dep=yes"] if flag else []
        job_id = self.sched.submit(script, options, self.folder)  # a job runs where it was submitted from
        k = len(self.arrays)
        self.arrays.append(arr)
        self.ids.append(job_id)
        jobs, attempt, seen, loc = self.g.jobs, self.attempt, self.seen, self.loc
        task_ids = [f"{job_id}_{t}" for t in range(len(arr.tasks))]  # one per task, not per pset
        for t, task in enumerate(arr.tasks):
            at = (k, t)
            for i in task:
                loc[i] = at
                seen.discard(i)
            self.next[at] = 0
            self.unfinished.add(at)
        # key order, as in mark_planned; each row made as it is written
        # (self.attempt holds the attempts past the first: arr.attempt(i) is made of them)
        self.store.set_queued(((jobs[i].rule, jobs[i].hash, task_ids[loc[i][1]], attempt.get(i, 1)) for i in _key_order(jobs, arr.jobs)),
                              self.sub)
        sub = Submitted(arr.name, arr.rule, job_id, len(arr.jobs), len(arr.tasks), flag, script)
        self.result.arrays.append(sub)
        self.reporter.note(f"submitted {sub.rule}: job {job_id}, {plural(sub.psets, 'pset')} in {plural(sub.tasks, 'task')}"
                           + (f" after {flag}" if flag else ""))

    def pset_line(self, i: int) -> PsetLine:
        g, plan = self.g, self.plan
        upstream = []
        soft = g.jobs[i].soft
        for d in dict.fromkeys(g.jobs[i].deps):
            if d in soft:
                continue
            dj = g.jobs[d]
            if d in self.in_run:
                if d not in self.local_jobs:  # local jobs write no record; they are done before this is submitted
                    upstream.append(dj.reldir)
            elif d in plan.queued:
                rec = plan.records.get((dj.rule, dj.hash))
                if rec is not None and rec.run_id:
                    upstream.append(f"{dj.reldir}@{rec.run_id}")
        if i in plan.dynamic:
            return self.dynamic_line(i, tuple(upstream))
        return PsetLine(i, plan.fingerprints[i], plan.cmd_hashes[i], plan.inputs_hashes[i], tuple(upstream))

    def dynamic_line(self, i: int, upstream: tuple[str, ...]) -> PsetLine:
        """A job whose fingerprint depends on which jobs end done: the parts of
        planner.dynamic_fingerprint(), each known here or named for the runner
        to read from a record (runner.sh), and the done() inputs it may take."""
        g, plan = self.g, self.plan
        job = g.jobs[i]
        soft = job.soft
        spec: list[str] = []
        for d in job.deps:
            if d not in soft:
                spec.append(self.part(d))
        spec.extend("fp:" + x for x in plan.dynamic[i])
        only = {d for d in job.deps if d not in soft}
        left: list[int] = []
        for d in job.deps:
            if d not in soft:
                continue
            dj = g.jobs[d]
            if d in self.in_run:
                if d in self.final:
                    if self.final[d] == "done":
                        spec.append("softfp:" + self.fps[d])
                        only.add(d)
                    elif d not in left:
                        left.append(d)
                    continue
                spec.append(f"soft:{dj.reldir}")
            elif d in plan.queued:
                rec = plan.records.get((dj.rule, dj.hash))
                if rec is None or not rec.run_id:
                    continue
                spec.append(f"soft:{dj.reldir}@{rec.run_id}")
            else:
                rec = plan.records.get((dj.rule, dj.hash))
                if rec is None or rec.status != "done":
                    if d not in left:
                        left.append(d)
                    continue
                spec.append("softfp:" + self.fps[d])
            only.add(d)
        if soft:
            self.only[i] = only
        if left:
            names = ", ".join(g.jobs[k].label for k in left[:5]) + (", ..." if len(left) > 5 else "")
            rules = ", ".join(f"done({r})" for r in dict.fromkeys(g.jobs[k].rule for k in left))
            self.reporter.note(f"{job.label} runs without {len(left)} of the {len(soft)} jobs of {rules} that did not end done: {names}")
        rec = plan.records.get((job.rule, job.hash))
        # (not when an input ran in this build and ended done: what it wrote may differ
        # with the same fingerprint; the runner sees that itself of inputs still to run)
        rebuilt = any(self.final.get(d) == "done" and d not in self.kept_ids for d in job.deps)
        if (all(r.code == UPSTREAM for r in plan.reasons.get(i, ())) and rec is not None and rec.status == "done"
                and rec.fingerprint and rec.run_id and not rebuilt):
            # it runs only because an input may come out otherwise: kept as it is when they come out the same
            spec.append("keep:" + rec.fingerprint)
            self.keep.add(i)
        else:
            self.keep.discard(i)
        return PsetLine(i, "dynamic-soft" if soft else "dynamic", plan.cmd_hashes[i], "", upstream, tuple(spec))

    def part(self, d: int) -> str:
        """A plain input's fingerprint in a dynamic_line(): known, or in its record."""
        g, plan = self.g, self.plan
        if d not in plan.dynamic or self.final.get(d) == "done" or (d not in self.in_run and d not in plan.queued):
            return "fp:" + self.fps[d]
        dj = g.jobs[d]
        if d in plan.queued:
            rec = plan.records.get((dj.rule, dj.hash))
            return f"rf:{dj.reldir}@{rec.run_id}" if rec is not None and rec.run_id else "fp:" + self.fps[d]
        return f"rf:{dj.reldir}"

    def prepare_dirs(self, batch: Sequence[int]) -> None:
        """As the local backend does before a job starts: leftovers of an earlier
        run must not survive a run that fails to write them. Only for the jobs
        of rules with templates or an input list (sweepc renders those): the
        runner prepares every other job folder on the node, the same way
        (render.made_by_runner), which keeps 100k-pset submissions fast."""
        g = self.g
        for i in batch:
            job = g.jobs[i]
            try:
                # render-only: submit.sh needs the folders and their inputs (templates, pset.json,
                # input list); no output is removed
                # keep: the runner removes them if the job runs after all (runner.sh)
                d = prepare_job_dir(g, job, input_list=self.uses_list[job.rule],
                                    clear_outputs=not self.render_only and i not in self.keep, only=self.only.get(i))
            except JobDirError as e:
                raise UsageError(f"refusing to submit {job.label}: {e}") from None
            if not self.render_only:
                rec_.remove_record(d)

    # -- waiting -----------------------------------------------------------------
    def poll_until_done(self) -> None:
        interval = POLL_MIN_S
        next_squeue = time.monotonic() + interval
        tick = POLL_MIN_S
        while True:
            moved = self.read_records()
            now = time.monotonic()
            if self.unfinished and now >= next_squeue:
                self.ask_scheduler()
                interval = min(POLL_MAX_S, interval * 2)
                next_squeue = time.monotonic() + interval
            moved = self.settle_ended() or moved
            moved = self.decide() or moved
            moved = self.advance() or moved
            self.flush()
            if not self.unfinished:
                if moved:
                    continue
                # nothing in flight and nothing can start: what is left waits for
                # jobs an earlier build queued (Result.left)
                break
            tick = POLL_MIN_S if moved else min(TICK_MAX_S, tick * 2)
            time.sleep(min(tick, max(0.05, next_squeue - time.monotonic())))

    def read_records(self, only: Iterable[tuple[int, int]] | None = None) -> bool:
        """New final records of unfinished tasks. A task writes them in order,
        except that a packed task runs up to `pack` psets at once: past the
        first pset without a final record, up to pack - 1 more are looked at."""
        moved = False
        refused = rec_.any_refused(self.folder)  # a job folder the runner refused (a link): one stat
        for key in list(only if only is not None else self.unfinished):
            if key not in self.unfinished:
                continue
            a, t = key
            arr = self.arrays[a]
            task = arr.tasks[t]
            k = self.next[key]
            open_ = 0  # psets without a final record looked at so far
            j = k
            while j < len(task) and open_ < arr.pack:
                i = task[j]
                if i in self.seen:
                    j += 1
                    continue
                rec = rec_.read_record(self.g.job_dir(self.g.jobs[i]))
                if refused and (rec is None or rec.submission != self.sub or rec.array_job_id != self.ids[a]):
                    rec = rec_.refused_record(self.folder, self.g.jobs[i].rule, self.g.jobs[i].hash) or rec
                if rec is None or rec.submission != self.sub or rec.array_job_id != self.ids[a] or rec.array_task_id != str(t):
                    open_ += 1
                elif not rec.final:
                    self.start(i)
                    open_ += 1
                else:
                    self.events.append((i, rec.status, rec.exit_code, rec.note, rec))
                    self.seen.add(i)
                    moved = True
                j += 1
            while k < len(task) and task[k] in self.seen:
                k += 1
            self.next[key] = k
            if k == len(task):
                self.unfinished.discard(key)
                self.running_tasks.discard(key)
            elif key in self.running_tasks:
                self.start(task[k])
        return moved

    def start(self, i: int) -> None:
        if i not in self.started:
            self.started.add(i)
            self.reporter.job_started(self.g.jobs[i], self.attempt.get(i, 1))

    def ask_scheduler(self) -> None:
        arrays = sorted({a for a, _ in self.unfinished})
        states = self.sched.queue_state([self.ids[a] for a in arrays])
        now = time.monotonic()
        for key in list(self.unfinished):
            a, t = key
            st = states.get(f"{self.ids[a]}_{t}")
            if st is None:
                # not listed: purged long ago, or not visible yet; twice in a row means gone
                self.unlisted[key] = self.unlisted.get(key, 0) + 1
                if self.unlisted[key] >= 2:
                    self.ended_at.setdefault(key, (now, TaskState("UNKNOWN", "")))
                continue
            self.unlisted.pop(key, None)
            if st.live:
                if st.state == "RUNNING":
                    self.running_tasks.add(key)
                    self.start(self.arrays[a].tasks[t][self.next[key]])
            else:
                self.running_tasks.discard(key)
                self.ended_at.setdefault(key, (now, st))

    def settle_ended(self) -> bool:
        """Tasks that ended without a record for every pset: the first pset without
        one was running when the task died, the rest never started."""
        now = time.monotonic()
        moved = False
        for key, (seen, st) in list(self.ended_at.items()):
            if key not in self.unfinished:
                del self.ended_at[key]
                continue
            if now - seen < GRACE_S:
                continue
            self.read_records([key])
            del self.ended_at[key]
            if key not in self.unfinished:
                moved = True
                continue
            a, t = key
            task = self.arrays[a].tasks[t]
            rest = [i for i in task[self.next[key]:] if i not in self.seen]
            tid = f"{self.ids[a]}_{t}"
            # the first psets without a record were running (up to `pack` of them), the rest never started
            running = min(len(rest), self.arrays[a].pack)
            if st.state == "CANCELLED" and "Dependency" in st.reason:
                kinds = ["not-run"] * len(rest)
            elif st.state == "TIMEOUT":
                kinds = ["timeout"] * running + ["not-run"] * (len(rest) - running)
            elif st.state == "CANCELLED":
                kinds = ["cancelled"] * running + ["not-run"] * (len(rest) - running)
            else:
                kinds = ["lost"] * running + ["not-run"] * (len(rest) - running)
            for i, kind in zip(rest, kinds):
                self.seen.add(i)
                note = f"array task {tid} ended {st.state.lower()} without a completion record"
                self.events.append((i, kind, None, note, None))
            self.unfinished.discard(key)
            self.running_tasks.discard(key)
            moved = True
        return moved

    def decide(self) -> bool:
        """Outcomes of the records (and silent endings) read since the last call;
        what to resubmit."""
        if not self.events:
            return False
        g = self.g
        retry: list[int] = []
        restart: list[int] = []
        not_run: list[tuple[int, str]] = []
        for i, kind, exit_code, note, rec in self.events:
            job = g.jobs[i]
            attempt = self.attempt.get(i, 1)
            bid = f"{self.ids[self.loc[i][0]]}_{self.loc[i][1]}"
            if kind == rec_.DONE and rec is not None:
                problem, results = rec_.check_done(g, rec)
                if problem is None:
                    if rec.note == rec_.KEPT_NOTE and self.kept(i, rec):
                        continue
                    self.end(i, self.outcome(i, "done", 0, rec, bid)._replace(results=results), False)
                    self.final[i] = "done"
                    continue
                kind, exit_code, note = rec_.FAILED, 0, problem
            if kind in (rec_.FAILED, rec_.TIMEOUT, "lost"):
                code = exit_code if exit_code is not None else (rec_.TERM_EXIT if kind == rec_.TIMEOUT else None)
                outcome = self.outcome(i, "timeout" if kind == rec_.TIMEOUT else "failed", code, rec, bid)
                if attempt <= g.rule(job.rule).retries and not self.stopping:
                    self.end(i, outcome, True)
                    self.attempt[i] = attempt + 1
                    retry.append(i)
                    # as on the local backend, every retry runs `restart:` when the rule
                    # has one: it resumes from a checkpoint, after a TIMEOUT or an error
                    if job.restart is not None:
                        restart.append(i)
                    continue
                self.end(i, outcome, False)
                self.final[i] = "failed"
                self.failures.append(self.failure(i, code, kind, note, bid))
            elif kind == rec_.CANCELLED:
                self.end(i, self.outcome(i, "cancelled", exit_code if exit_code is not None else rec_.TERM_EXIT, rec, bid), False)
                self.final[i] = "cancelled"
                self.cancelled.append(i)
                self.stopping = True
            else:  # skipped / not-run: it did not run
                not_run.append((i, note))
        self.events = []
        retrying = set(retry)
        again: list[int] = []
        replan: list[tuple[str, str]] = []
        skipped: list[tuple[str, str]] = []  # an input failed for good: `skipped` in the store
        for i, _note in not_run:
            if i in self.started:
                self.end(i, None, False)
            deps = [d for d in g.jobs[i].deps if d in self.in_run and d not in g.jobs[i].soft]
            dead = any(self.final.get(d) in ("failed", "cancelled", "skipped") for d in deps)
            explained = any(self.final.get(d) != "done" for d in deps)  # an input is being retried
            if not explained:
                self.unexplained[i] = self.unexplained.get(i, 0) + 1
            if self.stopping or dead or self.unexplained.get(i, 0) > MAX_UNEXPLAINED:
                self.final[i] = "skipped"
                (skipped if dead else replan).append((g.jobs[i].rule, g.jobs[i].hash))
            else:
                again.append(i)
        if replan or skipped:
            self.flush()
            self.store.set_status(replan, "planned")
            self.store.set_status(skipped, "skipped")
        batch = sorted(retrying | set(again))
        if batch:
            self.flush()
            self.submit(batch, restart=restart, resubmission=True)
        return True

    def kept(self, i: int, rec: rec_.TaskRecord) -> bool:
        """The runner found job i up to date (its fingerprint came out as when it
        was last done): its earlier outcome stays, as on the local backend."""
        job = self.g.jobs[i]
        old = self.plan.records.get((job.rule, job.hash))
        if old is None or rec.fingerprint is None or old.fingerprint != rec.fingerprint or old.run_id is None:
            return False
        self.reporter.note(f"{job.label} is up to date: " + (
            "the jobs of its done() inputs that ended done are those it was built with" if job.soft
            else "its inputs came out as they were"))
        self.fps[i] = rec.fingerprint
        self.final[i] = "done"
        self.kept_ids.add(i)
        self.end(i, Outcome(
            rule=job.rule, hash=job.hash, status="done", fingerprint=old.fingerprint, cmd_hash=old.cmd_hash,
            inputs_hash=old.inputs_hash, exit_code=old.exit_code, start=old.start, end=old.end, host=old.host,
            max_rss_mb=old.max_rss_mb, attempts=old.attempts, backend=old.backend or "slurm",
            backend_job_id=old.backend_job_id, run_id=old.run_id, cpu_s=old.cpu_s,
        ), False)
        return True

    def outcome(self, i: int, status: str, exit_code: int | None, rec: rec_.TaskRecord | None, bid: str) -> Outcome:
        job = self.g.jobs[i]
        ok = status == "done"
        now = time.time()
        fp, ih = self.plan.fingerprints[i], self.plan.inputs_hashes[i]
        if ok and i in self.plan.dynamic and rec is not None and rec.fingerprint and rec.inputs_hash:
            fp, ih = rec.fingerprint, rec.inputs_hash  # made on the node, from what ended done
            self.fps[i] = fp
        return Outcome(
            rule=job.rule, hash=job.hash, status=status,
            fingerprint=fp if ok else None, cmd_hash=self.plan.cmd_hashes[i] if ok else None,
            inputs_hash=ih if ok else None, exit_code=exit_code,
            start=rec.start if rec else None, end=rec.end if rec else now, host=rec.host if rec else None,
            max_rss_mb=rec.max_rss_mb if rec else None, attempts=self.attempt.get(i, 1), backend="slurm",
            backend_job_id=bid, run_id=self.sub, cpu_s=rec.cpu_s if rec else None,
        )

    def end(self, i: int, outcome: Outcome | None, will_retry: bool) -> None:
        job = self.g.jobs[i]
        if outcome is not None:
            self.start(i)
        self.started.discard(i)
        if outcome is None:  # it did not run after all: only the running count changes
            outcome = Outcome(job.rule, job.hash, "skipped", None, None, None, None, None, None, None, None,
                              self.attempt.get(i, 1), "slurm", None, self.sub)
        elif not will_retry:
            self.pending.append(outcome)
        self.reporter.job_ended(job, outcome, will_retry)

    def failure(self, i: int, exit_code: int | None, kind: str, note: str, bid: str) -> Failure:
        job = self.g.jobs[i]
        log = self.g.job_dir(job) / LOG_NAME
        if kind == rec_.TIMEOUT:
            task_s = task_time_s(self.arrays[self.loc[i][0]])
            limit = f" ({_hms(task_s)} for the array task)" if task_s else ""
            message = f"time limit reached{limit}, array task {bid}"
        elif kind == "lost":
            message = note
            log = self.folder / LOG_DIR / f"{bid}.out"
        elif note:
            message = note
            if note.startswith(rec_.REFUSED_NOTE):  # its folder is a link: the task's log says more
                log = self.folder / LOG_DIR / f"{bid}.out"
        else:
            message = f"exit {exit_code}"
        return Failure(i, job.label, exit_code, log, tail_lines(log), message)


def _key_order(jobs: Sequence[Job], ids: Iterable[int]) -> list[int]:
    """The job ids in the store's key order (rule, hash)."""
    return sorted(ids, key=lambda i: (jobs[i].rule, jobs[i].hash))


def _hms(s: int) -> str:
    from sweepc.lang.resources import format_time

    return format_time(s)




# -- waiting for what an earlier build queued -------------------------------------------

REPORT_S = 30.0  # at most one "still queued" line this often


def wait_queued(g: BuildGraph, store: Store, scheduler: Scheduler, queued: Mapping[int, str], reporter: Reporter,
                sleep: Callable[[float], object] = time.sleep) -> Literal["ended", "cancelled"]:
    """Wait until none of the jobs an earlier build queued (plan.queued: job
    -> ARRAY_TASK) is queued or running in SLURM any more, taking in their
    records as they come (records.sync: one squeue a poll, with the back-off
    of poll_until_done). The build then plans again: what they left to do
    (a failure with attempts left, a task that vanished, what needs them)
    is in that plan; unless some were cancelled meanwhile (`sweepc cancel`
    from another terminal, or an scancel that a build following the tasks
    saw as CANCELLED): "cancelled", and the build submits nothing more,
    as poll_until_done does after a cancel. KeyboardInterrupt stops
    waiting, not them."""
    if not queued:
        return "ended"
    keys = {(g.jobs[i].rule, g.jobs[i].hash) for i in queued}
    ids = rec_.array_ids(queued.values())
    reporter.note(f"sweepc: waiting for {plural(len(keys), 'job')} that an earlier build queued in SLURM "
                  f"(job{'s' if len(ids) > 1 else ''} {', '.join(ids)}); Ctrl-C stops waiting, not them")
    interval = POLL_MIN_S
    left = len(keys)
    said = time.monotonic()
    while True:
        sleep(interval)
        interval = min(POLL_MAX_S, interval * 2)
        live = rec_.sync(g, store, scheduler)
        now = sum(1 for k in keys if k in live)
        if now == 0:
            # a job gone from the queue without its record is being settled by
            # whoever removed it (`sweepc cancel` records `cancelled` just after
            # its scancel): give that the grace poll_until_done gives a task
            if any(keys & set(store.records(status=st)) for st in ("queued", "running")):
                sleep(GRACE_S)
            cancelled = keys & set(store.records(status="cancelled"))
            if cancelled:
                reporter.note(f"sweepc: they have ended; {plural(len(cancelled), 'job')} of them "
                              f"{'was' if len(cancelled) == 1 else 'were'} cancelled (sweepc cancel or scancel)")
                return "cancelled"
            reporter.note("sweepc: they have ended")
            return "ended"
        if now != left and time.monotonic() - said >= REPORT_S:
            reporter.note(f"sweepc: {now} of them still queued or running")
            said = time.monotonic()
        left = now


# -- cancel ---------------------------------------------------------------------------


def cancel(g: BuildGraph, store: Store, scheduler: Scheduler) -> Cancelled:
    """scancel every array this project has queued or running; record what had
    not finished as `cancelled` (the next build runs it again)."""
    rows = rec_.queued_rows(store)
    rec_.adopt(g, store, rows)
    arrays = rec_.scheduler_ids(rows.values())
    if arrays:
        scheduler.cancel(arrays)
    remaining = rec_.ingest(g, store, rows)
    store.set_status(remaining.keys(), "cancelled")
    return Cancelled(tuple(arrays), len(remaining), len(rows) - len(remaining))
