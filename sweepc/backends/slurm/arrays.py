"""Which job arrays a set of jobs goes out as, and how they depend on each other.

Pure functions over the BuildGraph: no files, no scheduler. One array per
(rule, resources) group (a sweep over `cpus` gives one array per value),
`bundle` psets per array task in job order, split when the array would need
an index >= MaxArraySize. Arrays come out in rule (topological) order, so an
array's upstream arrays are always submitted before it.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from sweepc.lang.graph import BuildGraph, Resources

# Without a `bundle` setting, a rule's psets are bundled just enough to fit in
# one array of at most this many tasks (1 pset per task up to 1000 psets).
DEFAULT_MAX_TASKS = 1000
# Externally queued upstream tasks are named one by one up to this many per array,
# else the whole array is waited for.
MAX_NAMED_TASKS = 100


@dataclass(frozen=True)
class Array:
    name: str  # file stem in the submission folder, e.g. "02-square"
    rule: str
    resources: Resources
    bundle: int
    tasks: tuple[tuple[int, ...], ...]  # job ids per array index, in run order
    restart: frozenset[int] = frozenset()  # jobs that run their restart: command
    attempts: Mapping[int, int] | None = None  # job id -> attempt number (default 1)
    pack: int = 1  # psets of a task that run at once, each with `resources`

    @property
    def jobs(self) -> tuple[int, ...]:
        return tuple(i for t in self.tasks for i in t)

    def attempt(self, i: int) -> int:
        return self.attempts.get(i, 1) if self.attempts else 1


@dataclass(frozen=True)
class Deps:
    """What one array waits for. Arrays of the same submission are named by
    their index (their ids exist only once they are submitted)."""

    corr: tuple[int, ...] = ()  # aftercorr: task i waits for task i of these arrays
    ok: tuple[int, ...] = ()  # afterok on these whole arrays
    ok_tasks: tuple[tuple[int, int], ...] = ()  # afterok on single tasks (array index, task index)
    external: tuple[str, ...] = ()  # afterok on jobs queued by earlier builds ("ID" or "ID_TASK")
    # afterany (input: done(RULE)): started once these have ended, whatever their outcome
    any: tuple[int, ...] = ()
    any_tasks: tuple[tuple[int, int], ...] = ()
    external_any: tuple[str, ...] = ()

    def flag(self, ids: Sequence[str]) -> str | None:
        """The --dependency value, given the scheduler ids (or shell variables) of
        the arrays. sbatch: `type:id[:id...]`, types joined by `,` (all must hold)."""
        parts = []
        if self.corr:
            parts.append("aftercorr:" + ":".join(ids[a] for a in self.corr))
        oks = [ids[a] for a in self.ok] + [f"{ids[a]}_{t}" for a, t in self.ok_tasks] + list(self.external)
        if oks:
            parts.append("afterok:" + ":".join(oks))
        anys = [ids[a] for a in self.any] + [f"{ids[a]}_{t}" for a, t in self.any_tasks] + list(self.external_any)
        if anys:
            parts.append("afterany:" + ":".join(anys))
        return ",".join(parts) or None


def default_bundle(n: int, pack: int = 1) -> int:
    """The smallest bundle that fits n psets in DEFAULT_MAX_TASKS tasks; a
    multiple of `pack`, so a packed task has a pset for every slot."""
    b = max(1, math.ceil(n / DEFAULT_MAX_TASKS))
    return math.ceil(b / pack) * pack


def task_time_s(arr: Array) -> int | None:
    """An array task's time limit: the rule's per-pset `time` for each round of
    `pack` psets it runs."""
    t = arr.resources.time_s
    return None if t is None else t * math.ceil(arr.bundle / arr.pack)


def make_arrays(
    g: BuildGraph,
    jobs: Sequence[int],
    bundle: int | None,
    max_array_size: int,
    first: int = 1,
    prefix: str = "",
    restart: Collection[int] = (),
    attempts: Mapping[int, int] | None = None,
    pack: int | None = None,
) -> list[Array]:
    """Group jobs (topologically ordered) into arrays; `first` numbers the first array's name.
    `pack`: the backend block's, for rules without a `pack` resource."""
    groups: dict[tuple[str, Resources], list[int]] = {}
    for i in jobs:
        job = g.jobs[i]
        groups.setdefault((job.rule, job.resources), []).append(i)
    per_array = max(1, max_array_size)  # indexes 0 .. MaxArraySize-1
    restart_set = frozenset(restart)
    out: list[Array] = []
    for (rule, res), ids in groups.items():
        want = res.pack or pack or 1
        b = bundle or default_bundle(len(ids), want)
        p = min(want, b)  # more slots than psets in a task would only waste cpus
        tasks = [tuple(ids[k : k + b]) for k in range(0, len(ids), b)]
        for k in range(0, len(tasks), per_array):
            chunk = tuple(tasks[k : k + per_array])
            members = {i for t in chunk for i in t}
            out.append(Array(
                name=f"{prefix}{first + len(out):02d}-{rule}",
                rule=rule, resources=res, bundle=b, tasks=chunk,
                restart=restart_set & members,
                attempts={i: a for i, a in (attempts or {}).items() if i in members} or None,
                pack=p,
            ))
    return out


def dependencies(
    g: BuildGraph,
    arrays: Sequence[Array],
    where: Mapping[int, tuple[int, int]],
    external: Mapping[int, str],
    exact: bool = False,
    offset: int = 0,
) -> list[Deps]:
    """For each array, what it must wait for.

    where: job id -> (array index, task index) for every job of this submission
    that is not finished yet (including those of `arrays`, and, for a
    resubmission, earlier arrays still in the scheduler); external: job id ->
    scheduler id "ID_TASK" of upstream jobs queued by an earlier build.

    aftercorr is used only when it is exactly right: every upstream job that a
    task i needs from array U is in task i of U (same join, same bundling, same
    order, checked pset by pset). exact=True names single upstream tasks
    instead of whole arrays (for resubmissions, whose indexes never line up).
    Array indexes are global: `arrays` are numbered from `offset` on.

    A job's done() inputs (Job.soft) are waited for with afterany: it starts
    once they have ended, done or not (the runner then lists those that ended
    done). Where a job needs an upstream array both ways, afterok wins.
    """
    out = []
    for a, arr in enumerate(arrays, start=offset):
        pairs: dict[int, set[tuple[int, int]]] = {}  # upstream array -> {(my task, its task)}
        ext: dict[str, set[str]] = {}  # external array id -> task ids
        soft: dict[int, set[int]] = {}  # upstream array -> its tasks, waited for with afterany
        ext_soft: dict[str, set[str]] = {}
        for t, task in enumerate(arr.tasks):
            for i in task:
                job = g.jobs[i]
                for d in job.deps:
                    loc = where.get(d)
                    if loc is not None:
                        if loc[0] == a:  # (a job never needs another of its own array: one rule each)
                            continue
                        if d in job.soft:
                            soft.setdefault(loc[0], set()).add(loc[1])
                        else:
                            pairs.setdefault(loc[0], set()).add((t, loc[1]))
                    elif d in external:
                        arr_id, _, task_id = external[d].partition("_")
                        (ext_soft if d in job.soft else ext).setdefault(arr_id, set()).add(task_id)
        for u in pairs:
            soft.pop(u, None)
        for e in ext:
            ext_soft.pop(e, None)
        any_: list[int] = []
        any_tasks: list[tuple[int, int]] = []
        for u, tasks in sorted(soft.items()):
            if exact:
                any_tasks.extend((u, ut) for ut in sorted(tasks))
            else:
                any_.append(u)
        corr, ok, ok_tasks = [], [], []
        for u, links in sorted(pairs.items()):
            if exact:
                ok_tasks.extend(sorted({(u, ut) for _, ut in links}))
            elif all(t == ut for t, ut in links):
                corr.append(u)
            else:
                ok.append(u)
        out.append(Deps(tuple(corr), tuple(ok), tuple(ok_tasks), _external(ext),
                        tuple(any_), tuple(any_tasks), _external(ext_soft)))
    return out


def _external(ext: Mapping[str, set[str]]) -> tuple[str, ...]:
    ids: list[str] = []
    for arr_id, tasks in sorted(ext.items()):
        if "" in tasks or len(tasks) > MAX_NAMED_TASKS:
            ids.append(arr_id)
        else:
            ids.extend(f"{arr_id}_{t}" for t in sorted(tasks, key=_num))
    return tuple(ids)


def _num(s: str) -> tuple[int, str]:
    return (int(s), "") if s.isdigit() else (1 << 62, s)
