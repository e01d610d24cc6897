"""The Python API. The CLI is a thin layer over it.

    import sweepc
    study = sweepc.load("sweepfile")      # or a directory
    study.psets("grid")                   # DataFrame of psets with hashes
    plan = study.plan()                   # what would run, and why
    summary = study.build(jobs=2)         # local build
    df = study.results("square")          # the results DataFrame
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import UsageError, did_you_mean, listing
from .graph import BuildGraph, Job
from .local import Reporter, Summary, execute
from .planner import Plan
from .planner import plan as make_plan
from .project import find_sweepfile, load_graph
from .selection import select
from .state import BuildLock, Outcome, Store

if TYPE_CHECKING:
    import pandas as pd


def load(path: str | Path = "sweepfile") -> Study:
    """Load a project from its sweepfile (or the folder that holds it).

    Raises SweepfileError (with file:line:col, the line, a caret and a hint for
    each mistake) or UsageError."""
    return Study(load_graph(find_sweepfile(path)))


@dataclass(frozen=True)
class BuildResult:
    plan: Plan
    summary: Summary | None  # None when nothing had to run
    run_id: str | None
    run_seq: int | None


class _Quiet:
    def job_started(self, job: Job, attempt: int) -> None:
        pass

    def job_ended(self, job: Job, outcome: Outcome, will_retry: bool) -> None:
        pass


class Study:
    def __init__(self, graph: BuildGraph) -> None:
        self.graph = graph

    @property
    def root(self) -> Path:
        return self.graph.root

    def psets(self, sweep: str | None = None) -> pd.DataFrame:
        """The expanded psets of one sweep (or of every sweep, with a _sweep column),
        with _pset_hash and _pset_seq."""
        import pandas as pd

        g = self.graph
        if sweep is not None and sweep not in g.sweeps:
            names = list(g.sweeps) + list(g.params)
            if sweep in g.params:
                names = [sweep]
            else:
                raise UsageError(f"unknown sweep '{sweep}'", did_you_mean(sweep, names) or f"sweeps: {listing(g.sweeps)}")
        if sweep is None and not g.sweeps:
            return pd.DataFrame(columns=["_pset_hash", "_pset_seq"])
        chosen = [sweep] if sweep is not None else list(g.sweeps)
        frames = []
        for name in chosen:
            sw = g.sweeps[name]
            df = pd.DataFrame.from_records(list(sw.psets), columns=list(sw.keys))
            df["_pset_hash"] = sw.hashes
            df["_pset_seq"] = range(len(sw.psets))
            if sweep is None:
                df.insert(0, "_sweep", name)
            frames.append(df)
        # several sweeps can have different parameters: keep ints ints next to gaps
        return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True).convert_dtypes()

    # -- planning and building ------------------------------------------------
    def _plan(self, store: Store, targets: Sequence[str], where: str | None, psets: str | None,
              force: Sequence[str], explain: bool, live: dict[tuple[str, str], str] | None = None) -> Plan:
        g = self.graph
        for r in force:
            if r not in g.rule_index:
                raise UsageError(f"unknown rule '{r}' in --force", did_you_mean(r, g.rule_index) or f"rules: {listing(g.rule_index)}")
        selected = select(g, targets, where=where, psets=psets)
        return make_plan(g, store, selected, forced_rules=force, explain=explain, live=live)

    def plan(self, targets: Sequence[str] = (), where: str | None = None, psets: str | None = None,
             force: Sequence[str] = (), explain: bool = False) -> Plan:
        """What a build would run, and why. Reads the store, changes nothing."""
        store = Store.open(self.root, create=False)
        try:
            return self._plan(store, targets, where, psets, force, explain)
        finally:
            store.close()

    def build(self, targets: Sequence[str] = (), jobs: int | None = None, keep_going: bool = False,
              force: Sequence[str] = (), where: str | None = None, psets: str | None = None,
              explain: bool = False, reporter: Reporter | None = None, argv: Sequence[str] | None = None,
              on_plan: Callable[[Plan], None] | None = None) -> BuildResult:
        """Build the selected jobs (everything by default) on this machine.

        Raises local.Interrupted on Ctrl-C / SIGTERM, after recording what was
        running; StateError when another build holds the project."""
        argv = list(argv or ["sweepc.build"])
        with BuildLock(self.root) as lock:
            lock.acquire(argv)
            store = Store.open(self.root)
            try:
                p = self._plan(store, targets, where, psets, force, explain)
                if on_plan is not None:
                    on_plan(p)
                store.put_sources(p.source_updates)
                if not p.run:
                    return BuildResult(p, None, None, None)
                commit, dirty = git_state(self.root)
                run_id, seq = store.begin_run(argv, "local", commit, dirty)
                summary: Summary | None = None
                try:
                    summary = execute(p, store, run_id, reporter or _Quiet(), jobs=jobs, keep_going=keep_going)
                finally:
                    s = summary
                    status = "interrupted" if s is None else ("ok" if s.ok else "failed")
                    store.end_run(run_id, s.done if s else 0, len(s.failed) if s else 0, p.uptodate, status)
                return BuildResult(p, summary, run_id, seq)
            finally:
                store.close()


def git_state(root: Path) -> tuple[str | None, bool | None]:
    """The commit and whether the tree is dirty, when root is in a git repository."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return None, None
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True, timeout=30)
        return head.stdout.strip(), bool(dirty.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return None, None
