"""Right-sizing: what each rule's jobs used against what they asked for.

In: the graph and the state store's rows (local and SLURM jobs record their
runtime, peak memory `max_rss_mb` and CPU time `cpu_s`). Out: one Usage per
rule: runtime and peak memory (median, p95, max), what was requested, the
efficiency (used / requested, as `seff` reports it), the jobs that hit their
time or memory limit, and a suggested `resources:` line:

    mem  = p95 of the peaks x 1.2, rounded up (64M steps below 1G, 256M below
           16G, 1G above), and never below the largest peak;
    time = the longest runtime x 1.5, rounded up (1 min below 1 h, 15 min
           below 1 day, 1 h above), at least one minute;
    cpus = the p95 of CPU time / runtime, rounded up (at least 1).

Only jobs that ran to their end (start and end recorded: done, failed,
timeout) count; a timed-out job's runtime is a lower bound, so with one the
suggested time is at least twice its limit. A job stopped by Ctrl-C or
`sweepc cancel` (interrupted, cancelled) is left out: its runtime and peak
say only when it was stopped, not what it needs (counted, it made the
suggested time shorter than a whole run); `left_out` counts them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

from sweepc.lang.graph import BuildGraph, Resources
from sweepc.lang.resources import format_time

MEM_HIT = 0.95  # a peak at or above this share of the requested memory counts as hitting the limit
RAN = ("done", "failed", "timeout")
STOPPED = ("interrupted", "cancelled")  # stopped from outside: what they used says nothing of what they need


@dataclass(frozen=True)
class Stats:
    median: float
    p95: float
    max: float


@dataclass(frozen=True)
class Usage:
    rule: str
    jobs: int  # jobs of the rule with a recorded run
    runtime_s: Stats | None
    max_rss_mb: Stats | None  # None: nothing measured (no peak memory recorded)
    cpu_s: Stats | None
    cpus: int  # requested (the largest over the rule's jobs)
    mem_mb: int | None
    time_s: int | None
    time_eff: float | None  # longest runtime / time requested
    mem_eff: float | None  # p95 peak / memory requested
    cpu_eff: float | None  # CPU time / (runtime x cpus), over all jobs
    hit_time: int  # jobs stopped at their time limit
    hit_mem: int  # jobs that peaked at >= 95 % of their memory
    suggest_cpus: int | None
    suggest_mem_mb: int | None
    suggest_time_s: int | None
    left_out: int = 0  # jobs whose last run was interrupted or cancelled (not in the numbers above)

    @property
    def suggestion(self) -> str:
        """The suggested `resources:` line ('' when nothing ran)."""
        parts = []
        if self.suggest_cpus is not None:
            parts.append(f"cpus = {self.suggest_cpus}")
        if self.suggest_mem_mb is not None:
            parts.append(f'mem = "{format_mem(self.suggest_mem_mb)}"')
        if self.suggest_time_s is not None:
            parts.append(f'time = "{format_time(self.suggest_time_s)}"')
        return "resources: " + ", ".join(parts) if parts else ""


def stats(values: Sequence[float]) -> Stats | None:
    if not values:
        return None
    v = sorted(values)
    n = len(v)
    mid = v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2
    p95 = v[min(n - 1, max(0, math.ceil(0.95 * n) - 1))]  # nearest rank
    return Stats(mid, p95, v[-1])


def round_mem(mb: float) -> int:
    step = 64 if mb <= 1024 else 256 if mb <= 16 * 1024 else 1024
    return max(step, int(math.ceil(mb / step) * step))


def format_mem(mb: int) -> str:
    return f"{mb // 1024}G" if mb % 1024 == 0 else f"{mb}M"


def round_time(s: float) -> int:
    step = 60 if s <= 3600 else 900 if s <= 86400 else 3600
    return max(60, int(math.ceil(s / step) * step))


class Measured(NamedTuple):
    """What `resources` takes of a job's row in the store (Store.measured_rows())."""

    hash: str
    status: str
    start: float | None
    end: float | None
    max_rss_mb: float | None
    cpu_s: float | None


def usage(g: BuildGraph, rows_of: Callable[[str], Iterable[tuple[Any, ...]]], rules: Sequence[str] | None = None) -> list[Usage]:
    """One Usage per rule (those named, else every rule), from the rows of its
    current jobs (rows_of(rule): Store.measured_rows)."""
    out = []
    for spec in g.rules:
        if rules and spec.name not in rules:
            continue
        ran: dict[str, Measured] = {}
        stopped: set[str] = set()
        for m in map(Measured._make, rows_of(spec.name)):
            if m.status in RAN and m.start is not None and m.end is not None:
                ran[m.hash] = m
            elif m.status in STOPPED:
                stopped.add(m.hash)
        res: list[Resources] = []
        rows: list[Measured] = []
        left_out = 0
        for i in spec.job_ids:  # in job order, as the sums were made before
            job = g.jobs[i]
            res.append(job.resources)
            got = ran.get(job.hash)
            if got is not None:
                rows.append(got)
            elif job.hash in stopped:
                left_out += 1
        del ran, stopped
        out.append(replace(_usage(spec.name, res, rows), left_out=left_out))
    return out


def _usage(rule: str, res: Sequence[Resources], rows: Sequence[Measured]) -> Usage:
    cpus = max((r.cpus for r in res), default=1)
    mems = [r.mem_mb for r in res if r.mem_mb is not None]
    times = [r.time_s for r in res if r.time_s is not None]
    mem_mb = max(mems) if mems else None
    time_s = max(times) if times else None
    runtimes = [max(0.0, (r.end or 0.0) - (r.start or 0.0)) for r in rows]
    peaks = [r.max_rss_mb for r in rows if r.max_rss_mb is not None]
    cpu = [r.cpu_s for r in rows if r.cpu_s is not None]
    rt, mem, cs = stats(runtimes), stats(peaks), stats(cpu)
    hit_time = sum(1 for r in rows if r.status == "timeout")
    hit_mem = sum(1 for p in peaks if mem_mb is not None and p >= MEM_HIT * mem_mb)
    wall_cpu = sum(rt_ * cpus for r, rt_ in zip(rows, runtimes) if r.cpu_s is not None)
    cpu_eff = sum(cpu) / wall_cpu if cpu and wall_cpu > 0 else None
    suggest_mem = None
    if mem is not None:
        suggest_mem = round_mem(max(mem.p95 * 1.2, mem.max))
    suggest_time = None
    if rt is not None:
        longest = rt.max
        if hit_time and time_s is not None:
            longest = max(longest, 2 * time_s / 1.5)  # it needed more than its limit: at least double it
        suggest_time = round_time(max(longest * 1.5, rt.max))
    suggest_cpus = None
    per_job = [r.cpu_s / t for r, t in zip(rows, runtimes) if r.cpu_s is not None and t > 0]
    busy = stats(per_job)
    if busy is not None:
        suggest_cpus = max(1, math.ceil(busy.p95 - 0.05))  # 1.02 cores busy is 1 core plus noise
    return Usage(
        rule=rule, jobs=len(rows), runtime_s=rt, max_rss_mb=mem, cpu_s=cs, cpus=cpus, mem_mb=mem_mb, time_s=time_s,
        time_eff=rt.max / time_s if rt is not None and time_s else None,
        mem_eff=mem.p95 / mem_mb if mem is not None and mem_mb else None,
        cpu_eff=cpu_eff, hit_time=hit_time, hit_mem=hit_mem,
        suggest_cpus=suggest_cpus, suggest_mem_mb=suggest_mem, suggest_time_s=suggest_time,
    )
