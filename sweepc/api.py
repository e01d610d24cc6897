"""The Python API. The CLI is a thin layer over it.

    import sweepc
    study = sweepc.load("sweepfile")      # or a directory
    study.psets("grid")                   # DataFrame of psets with hashes
    plan = study.plan()                   # what would run, and why
    result = study.build(jobs=2)          # local build (backend="slurm" for job arrays)
    df = study.results("square")          # the results DataFrame
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from sweepc import backends
from sweepc.backends import templates
from sweepc.backends.local.journal import journal_path
from sweepc.backends.local.journal import replay as replay_journal
from sweepc.backends.temps import TempJanitor, TempReporter
from sweepc.backends.base import Backend, BuildOptions, Cancelled, Interrupted, LiveJobs, QuietReporter, Reporter, Summary
from sweepc.errors import MachineError, SweepcError, SweepfileError, UsageError, did_you_mean, listing
from sweepc.lang.graph import BuildGraph
from sweepc.plan.planner import Plan
from sweepc.plan.planner import plan as make_plan
from sweepc.lang.project import find_sweepfile, load_graph, remember, start_writes
from sweepc.plan.selection import select
from sweepc.plan import noop
from sweepc.plan.store import BuildLock, LookupStore, Store, new_run_id, runs_now, state_dir, stop_build

if TYPE_CHECKING:
    import pandas as pd

    from sweepc.results.plots import PlotData
    from sweepc.results.report import ReportData
    from sweepc.results.view import ViewResult
    from sweepc.backends.slurm.conductor import Conductor
    from sweepc.results.resources import Usage


def load(path: str | Path = "sweepfile", overrides: Sequence[str] = ()) -> Study:
    """Load a project from its sweepfile (or the folder that holds it).

    overrides: "NAME=VALUE" texts, as `sweepc -D` takes them.

    Raises SweepfileError (with file:line:col, the line, a caret and a hint for
    each mistake) or UsageError."""
    return Study(load_graph(find_sweepfile(path), overrides), overrides=overrides)


@dataclass(frozen=True)
class BuildResult:
    plan: Plan
    summary: Summary | None  # None when nothing had to run, or nothing has finished yet (submitted)
    run_id: str | None
    run_seq: int | None
    status: str = "ok"  # ok | failed | interrupted | submitted | rendered; "ok" when nothing had to run
    notes: tuple[str, ...] = ()  # the backend's lines for the user, after the summary
    warnings: tuple[str, ...] = ()  # the backend's warnings about the plan (shown before it runs)


class Study:
    def __init__(self, graph: BuildGraph, overrides: Sequence[str] = ()) -> None:
        self.graph = graph
        self.overrides = tuple(overrides)  # -D NAME=VALUE texts the graph was compiled with

    @property
    def root(self) -> Path:
        return self.graph.root

    def psets(self, sweep: str | None = None) -> pd.DataFrame:
        """The expanded psets of one sweep or parameter (or, with a _sweep
        column, of every sweep and of every parameter a rule runs over on
        its own, `rule r over a`), with _pset_hash and _pset_seq."""
        import pandas as pd

        g = self.graph
        if sweep is not None and sweep not in g.sweeps and sweep not in g.params:
            names = list(g.sweeps) + list(g.params)
            raise UsageError(f"unknown sweep '{sweep}'", did_you_mean(sweep, names) or f"sweeps: {listing(g.sweeps)}")
        # (a sweepfile of `param a` and `rule r over a` has no sweep statement:
        # its psets are a's, not none)
        over = [r.keys[0] for r in g.rules if len(r.keys) == 1 and r.over == f"parameter '{r.keys[0]}'"]
        chosen = [sweep] if sweep is not None else list(dict.fromkeys([*g.sweeps, *over]))
        if not chosen:
            return pd.DataFrame(columns=["_pset_hash", "_pset_seq"])
        frames = []
        for name in chosen:
            if name in g.sweeps:
                sw = g.sweeps[name]
                records, keys, hashes = list(sw.psets), list(sw.keys), list(sw.hashes)
            else:  # a parameter on its own is a sweep over that parameter
                from sweepc.hashing import pset_hash

                records = [{name: v} for v in g.params[name]]
                keys, hashes = [name], [pset_hash(p) for p in records]
            df = pd.DataFrame.from_records(records, columns=keys)
            if g.has_index(tuple(keys)):  # csv(..., index=...): the row id, not a parameter
                df["_index"] = [g.index_of(p) for p in records]
            df["_pset_hash"] = hashes
            df["_pset_seq"] = range(len(records))
            if sweep is None:
                df.insert(0, "_sweep", name)
            frames.append(df)
        # several sweeps can have different parameters: keep ints ints next to gaps
        return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True).convert_dtypes()

    # -- planning and building ------------------------------------------------
    def _plan(self, store: Store, targets: Sequence[str], where: str | None, psets: str | None,
              force: Sequence[str], explain: bool, live: LiveJobs | None = None, leave_out: frozenset[str] = frozenset()) -> Plan:
        g = self.graph
        for r in force:
            if r not in g.rule_index:
                raise UsageError(f"unknown rule '{r}' in --force", did_you_mean(r, g.rule_index) or f"rules: {listing(g.rule_index)}")
        selected = select(g, targets, where=where, psets=psets)
        if leave_out:
            dropped: set[int] = set()
            for i, job in enumerate(g.jobs):  # (in topological order)
                if job.rule in leave_out or any(d in dropped for d in job.deps):
                    dropped.add(i)
            selected = [i for i in selected if i not in dropped]
        return make_plan(g, store, selected, forced_rules=force, explain=explain, live=live)

    def plan(self, targets: Sequence[str] = (), where: str | None = None, psets: str | None = None,
             force: Sequence[str] = (), explain: bool = False, backend: str | None = None) -> Plan:
        """What a build would run, and why. Changes nothing but, with a batch
        backend named, takes in the records of its jobs that finished (so its
        queued jobs show as queued)."""
        store = Store.open(self.root, create=False)
        try:
            self._take_in_journal(store)
            live = backends.get(backend).live(self.graph, store) if backend is not None else None
            return self._plan(store, targets, where, psets, force, explain, live=live)
        finally:
            store.close()

    def status(self, targets: Sequence[str] = (), where: str | None = None,
               psets: str | None = None) -> tuple[Plan, dict[int, str], set[int]]:
        """For `sweepc status`: the plan of the selected jobs, the state
        (Plan.state's names) of each, and the jobs whose last run was a retry.
        Jobs handed to a scheduler and not taken back in are `pending` or
        `running` whatever else is true of them, so they are not planned one
        by one (the planner passes them over as queued; what needs them is
        stale): 200k queued SLURM jobs take a second, not half a minute."""
        g = self.graph
        # open until every state is known: Plan.state reads the rows it needs one by one
        store = LookupStore.open(self.root, create=False)
        try:
            flying = store.unfinished()
            retried = store.retried()
            p = self._plan(store, targets, where, psets, (), False, live={k: st for k, st in flying.items()})
            states: dict[int, str] = {}
            for i in p.selected:
                job = g.jobs[i]
                st = flying.get((job.rule, job.hash)) if i in p.queued else None
                states[i] = ("running" if st == "running" else "pending") if st is not None else p.state(i)
        finally:
            store.close()
        return p, states, {i for i in p.selected if (g.jobs[i].rule, g.jobs[i].hash) in retried}

    def check(self, plan: Plan, backend: str = "local", options: BuildOptions | None = None) -> list[str]:
        """What `backend` would refuse in this plan (raised) or warn about (returned);
        a template that fails for a job of the plan is refused too (a dry run says so)."""
        warnings = backends.get(backend).check(self.graph, plan, options or BuildOptions(dry_run=True))
        templates.check(self.graph, plan.run)
        return warnings

    def refresh(self) -> None:
        """Take in what finished outside this process (SLURM completion
        records); `status` and `results` call it before they read."""
        if not (state_dir(self.root) / "state.db").exists():
            return
        store = Store.open(self.root, create=False)
        try:
            self._take_in_journal(store)
            for name in backends.names():
                backends.get(name).refresh(self.graph, store)
        finally:
            store.close()

    def _take_in_journal(self, store: Store) -> None:
        """The job ends a killed local build left in its journal, into the
        store, as a build would first; only when no build is running (whose
        journal is live), and best effort (a dry run on a read-only store)."""
        if not os.path.lexists(journal_path(self.root)):
            return
        try:
            fd = os.open(state_dir(self.root) / "build.lock", os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released with the fd; the file is left as it is
            with contextlib.suppress(SweepcError, OSError):
                replay_journal(self.graph, store)
        except BlockingIOError:
            pass  # a build is running
        finally:
            os.close(fd)

    def build(self, targets: Sequence[str] = (), jobs: int | None = None, keep_going: bool = False,
              force: Sequence[str] = (), where: str | None = None, psets: str | None = None,
              explain: bool = False, reporter: Reporter | None = None, argv: Sequence[str] | None = None,
              on_plan: Callable[[Plan], None] | None = None, git_commit: bool = False,
              backend: str = "local", wait: bool = False, render_only: bool = False,
              time_limits: bool = True) -> BuildResult:
        """Build the selected jobs (everything by default) on `backend`
        (local, slurm; see sweepc.backends.names()).

        git_commit=True commits the sweepfile and the files it names first,
        with the run id in the message (psweep's git=True). time_limits=False
        lets local jobs run past their rule's `time` resource.

        Raises Interrupted on Ctrl-C / SIGTERM, after recording what was
        running (a batch backend that waits instead returns status
        "interrupted": its jobs stay queued); StateError when another build
        holds the project."""
        options = BuildOptions(jobs=jobs, keep_going=keep_going, wait=wait, render_only=render_only, time_limits=time_limits)
        chosen = backends.get(backend)
        chosen.validate(options)
        argv = list(argv or ["sweepc.build"])
        stage = partial(self._stage, chosen=chosen, options=options, force=force, explain=explain,
                        reporter=reporter or QuietReporter(), argv=argv, on_plan=on_plan, git_commit=git_commit)
        with BuildLock(self.root) as lock:
            lock.acquire(argv)
            dead = lock.dead_holder
            if dead is not None and isinstance(dead.get("pid"), int):
                from sweepc.backends.local.backend import reap_orphans

                reap_orphans(self.root, dead["pid"])
            store = Store.open(self.root)
            store.end_dead_runs()  # (we hold the lock: a run still `running` died)
            remember(self.graph)  # .sweepc/ exists now: cache the compiled graph
            # a local build killed before it recorded every end its job spawner saw: those first
            replayed = replay_journal(self.graph, store)
            if replayed:
                (reporter or QuietReporter()).note(
                    f"sweepc: the last build stopped before it recorded {replayed} job{'s' if replayed > 1 else ''} "
                    "that ended done; recorded now (from .sweepc/journal)")
            try:
                if not self.graph.sample_rules:
                    return stage(store, lock, targets, where=where, psets=psets)
                # Samples made by a rule: build those rules first, then compile
                # again against what they wrote, then build the rest.
                first = stage(store, lock, sorted(self.graph.sample_rules), where=None, psets=None)
                if first.summary is not None and first.status not in ("ok", "failed"):
                    notes = (*first.notes, "sweepc: what runs over the samples is built once they are: "
                             "run the same build again when the jobs above have finished")
                    return replace(first, notes=notes)
                # What a sample rule that did not end done left (written, then it
                # failed) are no samples: nothing runs over them, and -k does not
                # run that rule a second time in the same build.
                not_done = self._samplers_not_done(store)
                if first.summary is not None or not_done or self.graph.unread:
                    self.graph = load_graph(self.graph.sweepfile, self.overrides, not_done=not_done)
                if self.graph.unread:  # the rule ran and ended done, yet what it made does not fit its sweep
                    raise SweepfileError(list(self.graph.unread.values()), self.graph.source)
                failed = first.summary is not None and not first.summary.ok
                if failed and not keep_going:
                    return replace(first, notes=(*first.notes, *self._pending_notes(), "sweepc: stopped before what runs over "
                                                 "the samples (use -k to build everything that does not need them)"))
                second = stage(store, lock, targets, where=where, psets=psets, leave_out=not_done)
                return _merged(first, second, self._pending_notes() if failed else ())
            finally:
                store.close()

    def _samplers_not_done(self, store: Store) -> frozenset[str]:
        """The sample rules whose one job's row (it runs once) is not done."""
        from sweepc.hashing import pset_hash

        h = pset_hash({})  # (each rule's rows only: not the 200k of a big study)
        return frozenset(r for r in self.graph.sample_rules
                         if (rec := store.records(rule=r).get((r, h))) is None or rec.status != "done")

    def _pending_notes(self) -> tuple[str, ...]:
        return tuple(
            f"sweepc: sweep '{name}' reads what rule{'s' if len(rules) > 1 else ''} {', '.join(sorted(rules))} "
            f"{'make' if len(rules) > 1 else 'makes'}, which did not end done: nothing runs over it yet"
            for name, rules in self.graph.pending.items()
        )

    def _stage(self, store: Store, lock: BuildLock, targets: Sequence[str], *, where: str | None, psets: str | None,
               chosen: Backend, options: BuildOptions, force: Sequence[str], explain: bool, reporter: Reporter,
               argv: list[str], on_plan: Callable[[Plan], None] | None, git_commit: bool,
               waited: bool = False, leave_out: frozenset[str] = frozenset()) -> BuildResult:
        """Plan and run one stage of a build, holding the lock; not the jobs
        of the rules in `leave_out`, nor what needs them."""
        g = self.graph
        own: LiveJobs = {}
        foreign: LiveJobs = {}
        for name in backends.names():
            live = backends.get(name).live(g, store)
            (own if name == chosen.name else foreign).update(live)
        p = self._plan(store, targets, where, psets, force, explain, live={**foreign, **own}, leave_out=leave_out)
        start_writes()  # the graph cache, if its write was held for the planning (cli build: hold_writes())
        elsewhere = [(i, jid) for i, jid in p.queued.items() if (g.jobs[i].rule, g.jobs[i].hash) in foreign]
        if elsewhere:
            i, jid = elsewhere[0]
            raise UsageError(
                f"{len(elsewhere)} of the jobs to build are queued or running in SLURM "
                f"({g.jobs[i].label} as job {jid}, ...)",
                "wait for them: sweepc build --backend slurm --wait; or stop them: sweepc cancel",
            )
        if options.wait and p.queued and not waited:
            # jobs an earlier build queued that the scheduler still has: a
            # build that waits waits for them first, then plans again (what
            # they leave to do: failures with attempts left, what needs them)
            how = chosen.wait(g, store, p.queued, reporter)
            if how == "interrupted":
                return BuildResult(p, None, None, None, "interrupted", (STOPPED_WAITING,))
            if how == "cancelled":  # the user stopped this project's jobs: nothing is submitted again
                return BuildResult(p, None, None, None, "failed", (CANCELLED_WHILE_WAITING,))
            return self._stage(store, lock, targets, where=where, psets=psets, chosen=chosen, options=options, force=force,
                               explain=explain, reporter=reporter, argv=argv, on_plan=on_plan, git_commit=git_commit,
                               waited=True, leave_out=leave_out)
        if on_plan is not None:
            on_plan(p)
        store.put_sources(p.source_updates)
        janitor = TempJanitor(p)
        if not options.render_only:
            janitor.sweep()  # temp outputs whose readers finished since (a SLURM build that did not wait)
        whole = not (targets or where or psets or force or leave_out)  # every job planned: a no-op certificate can say so
        if not p.run:
            if whole:
                noop.certify(g, p, store)
            return BuildResult(p, None, None, None)
        # sweepc's own state folder and the outputs are not the code that ran
        exclude = (state_dir(self.root), g.workdir_path)
        # git is asked while the backend checks (a python: module's import check
        # starts an interpreter): the two waits overlap. Not with --git-commit,
        # whose commit comes first; not for --render-only, which is no run.
        git = GitState(self.root, exclude) if not (git_commit or options.render_only) else None
        run_id = new_run_id()
        # a build refused for its resources never starts, so it is no run
        # (check() may start what the run will use: the local backend's Python workers)
        warnings = tuple(chosen.check(g, p, replace(options, run_id=run_id)))
        try:
            # before anything runs: a template that fails for one pset stops the build
            templates.check(g, p.run)
            if options.render_only:  # submits nothing, so it is no run either
                ex = chosen.execute(p, store, run_id, reporter, options)
                return BuildResult(p, ex.summary, None, None, ex.status, ex.notes, warnings)
            lock.set_run_id(run_id)  # lets `status` meanwhile name the jobs this build runs
            if git_commit:
                commit_project_files(self.root, self.named_files(), run_id)
            commit, dirty = git.result() if git is not None else git_state(self.root, exclude=exclude)
            run_id, seq = store.begin_run(argv, chosen.name, commit, dirty, run_id=run_id)
        except BaseException:
            chosen.release()  # no run: what check() started for it goes
            raise
        summary: Summary | None = None
        status = "interrupted"
        ended = False
        try:
            ex = chosen.execute(p, store, run_id, TempReporter(reporter, janitor), options)
            summary, status = ex.summary, ex.status
            ended = True
        except Interrupted as e:
            summary = e.summary  # what ran before Ctrl-C counts in the runs table
            ended = True
            raise
        except Exception:
            # an error stopped it (SLURM refused a submission, the disk filled
            # up, the store became read-only): the run failed; it was not
            # interrupted (KeyboardInterrupt is not an Exception)
            status = "failed"
            raise
        finally:
            s = summary
            try:
                store.end_run(run_id, s.done if s else 0, len(s.failed) if s else 0, p.uptodate, status)
            except MachineError:
                if ended:  # else the first error (the disk filled up during the build) is the one to tell
                    raise
        if whole and not chosen.batch and ex.status == "ok" and summary is not None and summary.ok and summary.done == len(p.run):
            noop.certify(g, p, store)  # every job it ran ended done, the others were up to date
        return BuildResult(p, summary, run_id, seq, ex.status, ex.notes, warnings)

    def detach(self, argv: Sequence[str]) -> tuple[Conductor | None, int | None, str]:
        """Start a conductor: `sweepc ARGV` (a `build --backend slurm --wait
        --conductor ...`) in the background, in its own session, output to
        .sweepc/conductor.log. Returns once it holds the build lock, with
        its pid and start time; or, when it ended first, its exit code and
        what it printed."""
        from sweepc.backends.slurm import conductor

        return conductor.start(self.root, list(argv))

    def conductor(self) -> Conductor | None:
        """The background conductor of this project, when one is running."""
        from sweepc.backends.slurm import conductor

        return conductor.running(self.root)

    def cancel(self) -> Cancelled:
        """Stop what every backend has queued or running for this project;
        what had not finished is recorded as cancelled. A build that runs
        jobs while it runs (local, dask; in another terminal) is stopped
        first, as Ctrl-C stops it: what it was running is recorded interrupted."""
        stopped = stop_build(self.root, keep=_leaves_jobs_queued)
        build = stopped.pid if stopped is not None else None
        if not (state_dir(self.root) / "state.db").exists():
            return Cancelled((), 0, 0, build=build)
        store = Store.open(self.root)
        try:
            parts = [backends.get(name).cancel(self.graph, store) for name in backends.names()]
        finally:
            store.close()
        return Cancelled(tuple(a for c in parts for a in c.arrays), sum(c.jobs for c in parts), sum(c.finished for c in parts),
                         next((c.conductor for c in parts if c.conductor is not None), None), build)

    # -- results and provenance ------------------------------------------------
    def results(self, rule: str | None = None, where: str | None = None,
                columns: str | Sequence[str] | None = None, psets: str | None = None,
                history: bool = False) -> pd.DataFrame:
        """The results DataFrame. With `rule`: one row per job of that rule with
        its parameters, bookkeeping columns and the values of its results files.
        Without: one table, one row per pset of the main sweep with every
        per-pset rule's results side by side (see docs/results.md).
        history=True: one row per job per run that produced results (of `rule`,
        else of the main rule), with _run_id/_run_seq."""
        from sweepc.results import table as res

        g = self.graph
        if rule is None:
            spec, rules = res.one_table_rules(g)
        else:
            spec = res.pick_rule(g, rule)
            rules = (spec,)
        if history:
            rules = (spec,)
        # the store stays open while the table is made: the rows come as they are read
        store = LookupStore.open(self.root, create=False)
        try:
            # the one table: --where and --psets select psets of the main sweep, every rule fills those rows
            ids = res.one_table_jobs(g, where, psets) if rule is None and not history else select(g, [r.name for r in rules], where=where, psets=psets)
            p = make_plan(g, store, ids)
            runs = store.runs()
            if history:
                df = res.history(p, spec, runs, store.history(spec.name))
            elif rule is None:
                df = res.one_table(p, runs, read=store.job_rows)
            else:
                df = res.table(p, spec, runs, rows=store.job_rows(spec.name))
        finally:
            store.close()
        return res.select_columns(df, columns)

    def report(self, output: str | Path = "report.html") -> Path:
        """Write the HTML report (docs/results.md) to `output`; needs sweepc[report]."""
        self.refuse_output(output)
        return write_report(self.report_data(), output)

    def report_data(self) -> ReportData:
        """What the report shows: every rule's results table, the one table,
        the runs (write it with write_report(); needs sweepc[report])."""
        from sweepc.results import plots
        from sweepc.results import report as rep
        from sweepc.results import table as res

        plots.require_matplotlib()
        g = self.graph
        store = LookupStore.open(self.root, create=False)
        try:
            p = make_plan(g, store, select(g, [r.name for r in g.rules]))
            runs = runs_now(self.root, store.runs())
            tables = {r.name: res.table(p, r, runs, rows=store.job_rows(r.name)) for r in g.rules}
        finally:
            store.close()
        main, _ = res.one_table_rules(g)
        return rep.ReportData(rep.ReportData.lean(g), tuple(runs), tables, res.one_table(p, runs, frames=tables), main.name,
                              len(g.jobs), {k: len(s.psets) for k, s in g.sweeps.items()})

    def plot(self, y: str, x: str, by: str | None = None, output: str | Path | None = None,
             rule: str | None = None, where: str | None = None) -> Path:
        """One picture of result y against parameter x (one line per value of
        `by`; by default the other varied parameter with the fewest values,
        "none" for one line); PNG or SVG by the extension of `output`."""
        if output is not None:
            self.refuse_output(output)
        return write_plot(self.plot_data(y, x, by, rule, where), output)

    def plot_data(self, y: str, x: str, by: str | None = None, rule: str | None = None, where: str | None = None) -> PlotData:
        """What plot() draws from (draw it with write_plot())."""
        from sweepc.results import plots

        plots.require_matplotlib()
        df = self.results(rule, where=where)
        keys = self.graph.rule(rule).keys if rule is not None else [k for k in df.columns if k in self.graph.params]
        return plots.PlotData(df, y, x, by, tuple(keys))

    def view(self, dest: str | Path, rule: str | None = None, where: str | None = None) -> ViewResult:
        """Make (or update) a tree of symlinks to the job folders, named by
        parameters: DEST/<rule>/a=1/b=88 (see sweepc.results.view). A
        relative DEST is relative to the current folder."""
        from sweepc.results.view import make_view

        g = self.graph
        if rule is not None and rule not in g.rule_index:
            raise UsageError(f"unknown rule '{rule}'", did_you_mean(rule, g.rule_index) or f"rules: {listing(g.rule_index)}")
        ids = select(g, [rule] if rule else [], where=where, with_ancestors=False)
        return make_view(g, ids, Path(dest))

    def resources(self, rule: str | None = None) -> list[Usage]:
        """Per rule (or only `rule`): what its recorded jobs (local or SLURM)
        used against what they requested, and a suggested `resources:` line
        (see sweepc/results/resources.py)."""
        from sweepc.results.resources import usage

        if rule is not None and rule not in self.graph.rule_index:
            raise UsageError(f"unknown rule '{rule}'", did_you_mean(rule, self.graph.rule_index) or f"rules: {listing(self.graph.rule_index)}")
        self.refresh()
        store = Store.open(self.root, create=False)
        try:
            return usage(self.graph, store.measured_rows, [rule] if rule else None)
        finally:
            store.close()

    def runs(self) -> pd.DataFrame:
        """Every build that ran something: when, what command, how it went."""
        import pandas as pd

        store = Store.open(self.root, create=False)
        try:
            runs = runs_now(self.root, store.runs())
        finally:
            store.close()
        cols = ["_run_seq", "_run_id", "started_utc", "duration_s", "command", "overrides", "backend", "ran", "failed", "uptodate", "status", "git_commit", "git_dirty"]
        rows = [
            {
                "_run_seq": r.seq, "_run_id": r.run_id,
                "started_utc": pd.Timestamp(r.started, unit="s", tz="UTC").floor("s"),
                "duration_s": round(r.ended - r.started, 1) if r.ended else None,
                "command": " ".join(json.loads(r.argv)) if r.argv else "",
                "overrides": "; ".join(overrides_in(json.loads(r.argv))) if r.argv else "", "backend": r.backend,
                "ran": r.ran, "failed": r.failed, "uptodate": r.uptodate, "status": r.status,
                "git_commit": r.git_commit, "git_dirty": r.git_dirty,
            }
            for r in runs
        ]
        # counts are None while a build runs: integers next to the gap, not 2.0 and 0.0
        return pd.DataFrame.from_records(rows, columns=cols).astype({c: "Int64" for c in ("ran", "failed", "uptodate")})

    def refuse_output(self, path: str | Path) -> None:
        """A UsageError when writing a table, report or plot to `path` would
        destroy the project: the sweepfile, a file it reads (source inputs,
        python: modules, templates, CSV and npy files), anything in
        sweepc's state folder, or in a rule's job folders (a job's results
        file overwritten by a table). (`sweepc results -o .sweepc/state.db` made
        the state store a CSV file; `report -o sweepfile` would make the
        sweepfile a web page.)"""
        from sweepc.lang.project import key_parts

        target = Path(path).resolve()
        g = self.graph
        state = state_dir(self.root).resolve()
        what: str | None = None
        if target == state or state in target.parents:
            what = "in sweepc's state folder .sweepc/"
        elif target == g.sweepfile.resolve():
            what = "the sweepfile"
        elif (rule := _rule_folder_of(g, target)) is not None:
            what = f"in the job folders of rule '{rule}' (where its outputs and results files are)"
        else:
            read = self._inputs()
            parts = key_parts(g)
            if parts is not None:  # the CSV and npy files the compiler read
                read.update((g.root / f).resolve() for f, _ in parts[1])
            if target in read:
                what = "a file the sweepfile reads"
        if what is not None:
            raise UsageError(f"will not write to {path}: it is {what}", "name another file with -o FILE")

    def _inputs(self) -> set[Path]:
        """The source inputs and templates of every rule, resolved."""
        g = self.graph
        names = {src for job in g.jobs for src in job.sources}
        names.update(tf.source for r in g.rules for tf in r.templates)
        return {(g.root / n).resolve() for n in names}

    def named_files(self) -> list[Path]:
        """The sweepfile and every file it names (source inputs, CSV files)."""
        from sweepc.lang import syntax as s
        from sweepc.lang.parser import parse

        g = self.graph
        files: dict[Path, None] = {g.sweepfile.resolve(): None}
        files.update(dict.fromkeys(sorted(self._inputs())))
        module = parse(g.source, g.sweepfile.name)
        stack: list[object] = list(module.statements)
        while stack:
            node = stack.pop()
            if isinstance(node, s.Call) and node.func == "csv" and node.args and isinstance(node.args[0].value, s.Str):
                files[(g.root / node.args[0].value.value).resolve()] = None
            if hasattr(node, "__dataclass_fields__"):
                for f in node.__dataclass_fields__:
                    v = getattr(node, f)
                    stack.extend(v if isinstance(v, tuple) else [v])
        return [f for f in files if f.exists()]


def unknown_outputs(p: Plan) -> int:
    """How many jobs to run already have an output in the workdir when the
    store started from nothing (a lost, deleted or emptied .sweepc/state.db):
    sweepc cannot tell those are up to date, so they run again."""
    if not p.new_store:
        return 0
    g = p.graph
    # One listing per shard folder, not an lstat per output: 100k jobs to run in an
    # empty (or absent) workdir cost almost nothing.
    wd = str(g.workdir_path)
    present: dict[str, frozenset[str]] = {}

    def folders(shard: str) -> frozenset[str]:
        got = present.get(shard)
        if got is None:
            try:
                got = frozenset(os.listdir(f"{wd}/{shard}"))
            except OSError:  # absent, or not a folder: nothing of it is there
                got = frozenset()
            present[shard] = got
        return got

    n = 0
    for i in p.run:
        job = g.jobs[i]
        if job.hash not in folders(f"{job.rule}/{job.hash[:2]}"):
            continue
        d = f"{wd}/{job.reldir}"
        if any(os.path.lexists(f"{d}/{o.path}") for o in g.rule(job.rule).outputs):
            n += 1
    return n


STOPPED_WAITING = ("sweepc: stopped waiting; the jobs an earlier build queued stay queued "
                   "(see them with `sweepc status`, stop them with `sweepc cancel`)")
CANCELLED_WHILE_WAITING = "sweepc: submitted nothing: jobs were cancelled while it waited; build again to run them"


def _merged(first: BuildResult, second: BuildResult, notes: tuple[str, ...]) -> BuildResult:
    """One result for a build in two stages (samples first, then the rest)."""
    a, b = first.summary, second.summary
    if a is None:
        return replace(second, notes=(*second.notes, *notes))
    if b is None:  # nothing over the samples had to run: every job but those the first stage built is up to date
        return replace(first, plan=second.plan, summary=replace(a, uptodate=max(0, second.plan.uptodate - a.done)),
                       notes=(*first.notes, *second.notes, *notes))
    summary = Summary(
        total=a.total + b.total, done=a.done + b.done, failed=a.failed + b.failed, skipped=a.skipped + b.skipped,
        not_started=a.not_started + b.not_started, interrupted=a.interrupted + b.interrupted,
        uptodate=max(0, b.uptodate - a.done),  # what the first stage built counts as done, once
        elapsed=a.elapsed + b.elapsed,
    )
    status = "ok" if summary.ok else second.status if second.status != "ok" else "failed"
    return BuildResult(second.plan, summary, second.run_id, second.run_seq, status,
                       (*first.notes, *second.notes, *notes), first.warnings + second.warnings)


def overrides_in(argv: Sequence[str]) -> list[str]:
    """The -D NAME=VALUE texts of a recorded command line (the global option
    comes before the verb)."""
    out: list[str] = []
    it = iter(argv[1:])
    for a in it:
        if a in ("-D", "--define"):
            out.append(next(it, ""))
        elif a.startswith("--define="):
            out.append(a.removeprefix("--define="))
        elif a.startswith("-D") and len(a) > 2:
            out.append(a[2:])
        elif a in ("-f", "--file", "-C", "--directory"):
            next(it, None)
        elif not a.startswith("-"):
            break  # the verb: what follows is its own
    return out


def commit_project_files(root: Path, files: Sequence[Path], run_id: str) -> None:
    """git add + commit the given files, with the run id in the message."""
    import subprocess

    top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=root, capture_output=True, text=True)
    if top.returncode != 0:
        raise UsageError("--git-commit needs the project to be in a git repository", "run: git init")
    paths = [str(f) for f in files]
    add = subprocess.run(["git", "add", "--", *paths], cwd=root, capture_output=True, text=True)
    if add.returncode != 0:
        raise UsageError(f"git add failed: {add.stderr.strip()}")
    staged = subprocess.run(["git", "diff", "--cached", "--quiet", "--", *paths], cwd=root)
    if staged.returncode == 0:
        return  # nothing changed since the last commit
    done = subprocess.run(["git", "commit", "-q", "-m", f"sweepc run {run_id}", "--", *paths], cwd=root, capture_output=True, text=True)
    if done.returncode != 0:
        raise UsageError(f"git commit failed: {done.stderr.strip() or done.stdout.strip()}")


def git_state(root: Path, exclude: Sequence[Path] = ()) -> tuple[str | None, bool | None]:
    """The commit and whether the tree is dirty, when root is in a git repository.

    Paths in `exclude` (inside root) do not make the tree dirty: without that,
    the untracked .sweepc/ the build itself creates made every run "dirty",
    even one straight after --git-commit."""
    import subprocess  # ~10 ms; a no-op build never gets here

    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return None, None
        spec = [":/"]  # the whole repository, not only the project folder
        for p in exclude:
            try:
                rel = p.resolve().relative_to(root.resolve())
            except ValueError:
                continue  # outside the project: git would refuse the pathspec
            if rel.parts:
                spec.append(f":(exclude){rel.as_posix()}")
        dirty = subprocess.run(["git", "status", "--porcelain", "--", *spec], cwd=root, capture_output=True, text=True, timeout=30)
        return head.stdout.strip(), bool(dirty.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return None, None


class GitState:
    """git_state(), asked in a thread of its own from the moment this is
    made; result() waits for it. git runs as a child process, so the thread
    only waits: meanwhile the build does its checks."""

    def __init__(self, root: Path, exclude: Sequence[Path] = ()) -> None:
        import threading

        self._state: tuple[str | None, bool | None] = (None, None)
        self._thread = threading.Thread(target=self._ask, args=(root, tuple(exclude)), name="sweepc-git", daemon=True)
        self._thread.start()

    def _ask(self, root: Path, exclude: tuple[Path, ...]) -> None:
        try:
            self._state = git_state(root, exclude)
        except Exception:  # noqa: BLE001 - no git facts is what git_state says on any failure too
            self._state = (None, None)

    def result(self) -> tuple[str | None, bool | None]:
        self._thread.join()
        return self._state


def write_report(data: ReportData, output: str | Path = "report.html") -> Path:
    """The report of Study.report_data() as one HTML file."""
    from sweepc.results import report as rep

    path = Path(output)
    try:
        path.write_text(rep.render(data), encoding="utf-8")
    except OSError as e:
        raise UsageError(f"cannot write {output}: {e.strerror or e}") from None
    return path


def _rule_folder_of(g: BuildGraph, target: Path) -> str | None:
    """The rule whose folder in the workdir holds target (or is it), else None."""
    wd = g.workdir_path.resolve()
    if wd not in target.parents:
        return None
    first = target.relative_to(wd).parts[0]
    return first if first in g.rule_index else None


def write_plot(data: PlotData, output: str | Path | None = None) -> Path:
    """The picture of Study.plot_data() as a PNG or SVG file (by the
    extension of `output`; default Y-vs-X.png)."""
    from sweepc.results import plots

    path = Path(output if output is not None else f"{data.y}-vs-{data.x}.png")
    if path.suffix.lower() not in (".png", ".svg"):
        # (matplotlib added ".png" itself: -o mask wrote mask.png, past refuse_output, over the
        # sweepfile's input mask.png, and sweepc said "wrote mask")
        raise UsageError(f"plot -o {output}: the file must end in .png or .svg (its format)",
                         f"for example: -o {path.name or 'plot'}.png")
    fig = data.picture()
    plots.save(fig, str(path))
    return path


def _leaves_jobs_queued(argv: Sequence[str]) -> bool:
    """Whether the lock holder with this command line is anything but a
    build whose jobs run while it runs: `clean`, or a build on a batch
    backend (SLURM: `sweepc cancel` cancels its jobs in the queue and stops
    its conductor; a `--wait` build in a terminal then ends by itself)."""
    if "build" not in argv:
        return True
    name = "local"
    for k, a in enumerate(argv):
        if a == "--backend" and k + 1 < len(argv):
            name = argv[k + 1]
        elif a.startswith("--backend="):
            name = a.partition("=")[2]
    try:
        return backends.get(name).batch
    except (KeyError, ValueError, SweepcError):
        return True  # not a backend sweepc knows: leave it be
