"""What is stale, and why. Entry point: plan().

A job's fingerprint is a Merkle hash: its rendered command, its pset hash and
the fingerprints of its inputs (upstream jobs' fingerprints, source files'
content digests). It is known before anything runs, so "up to date" is one
comparison with the store: the store says `done` with this fingerprint and
every output exists.

The no-op path costs one read of the store, one stat per output path and one
stat per source file (content is hashed only when size or mtime moved, so a
`touch` alone reruns nothing).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from sweepc.errors import Diagnostic, SweepfileError
from sweepc.lang.graph import BuildGraph, Job
from sweepc.hashing import text_hash
from sweepc.plan.store import I_CMD_HASH, I_FINGERPRINT, I_INPUTS_HASH, I_STATUS, LiveBuild, Record, RecordMap, Store, live_build

# Part of every command hash: changing how fingerprints are made means changing this.
FINGERPRINT_VERSION = "sweepc-fp-1"

# Reason codes, in the order they are told
FORCED = "forced"
NEVER_BUILT = "never-built"
FAILED = "failed"
INTERRUPTED = "interrupted"
UNFINISHED = "unfinished"
RUNNING = "running"  # planned by the build running right now
CANCELLED = "cancelled"
OUTPUT_MISSING = "output-missing"
COMMAND_CHANGED = "command-changed"
INPUT_CHANGED = "input-changed"
UPSTREAM = "upstream"


@dataclass(frozen=True, slots=True)
class Reason:
    code: str
    text: str


@dataclass(frozen=True, repr=False)
class Plan:
    graph: BuildGraph
    selected: tuple[int, ...]  # the jobs considered, topological
    run: tuple[int, ...]  # the jobs to run, topological
    reasons: Mapping[int, tuple[Reason, ...]]  # for each job in run
    queued: Mapping[int, str]  # selected jobs already queued in a scheduler: job id -> scheduler id
    cmd_hashes: Sequence[str]  # by job id ("" for jobs not selected)
    inputs_hashes: Sequence[str]
    fingerprints: Sequence[str]
    records: Mapping[tuple[str, str], Record] = field(repr=False)
    source_updates: tuple[tuple[str, int, int, str], ...] = ()
    new_store: bool = False  # the store started from nothing (none, or an empty file)
    # Jobs whose fingerprint is known only when others have ended: those with
    # `input: done(RULE)` (which of its jobs end done), and every job
    # downstream of one. Job id -> the digests of its source inputs, so that
    # a backend can make its fingerprint again then (dynamic_fingerprint).
    dynamic: Mapping[int, tuple[str, ...]] = field(default_factory=dict, repr=False)

    def __repr__(self) -> str:
        return f"<Plan: {len(self.run)} of {len(self.selected)} jobs to run, {self.uptodate} up to date>"

    def state(self, i: int) -> str:
        """What `status` and `results` call a selected job: done, stale, failed,
        interrupted, cancelled, queued, running (in the build running now) or
        never built."""
        if i in self.queued:
            return "queued"
        reasons = self.reasons.get(i)
        if not reasons:
            return "done"
        codes = {r.code for r in reasons}
        for code, name in ((RUNNING, "running"), (NEVER_BUILT, "never built"), (FAILED, "failed"), (INTERRUPTED, "interrupted"), (CANCELLED, "cancelled")):
            if code in codes:
                return name
        job = self.graph.jobs[i]
        rec = self.records.get((job.rule, job.hash))
        if rec is not None and rec.status == "queued":
            return "queued"  # submitted, and its completion record is not in yet
        return "stale"

    @property
    def uptodate(self) -> int:
        return len(self.selected) - len(self.run) - len(self.queued)

    def counts_by_rule(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for i in self.run:
            r = self.graph.jobs[i].rule
            out[r] = out.get(r, 0) + 1
        return out


def plan(
    g: BuildGraph,
    store: Store,
    selected: Sequence[int],
    forced_rules: Collection[str] = (),
    explain: bool = False,
    live: Mapping[tuple[str, str], str] | None = None,
) -> Plan:
    """Decide what runs. `live` maps (rule, hash) of jobs a scheduler still has
    queued or running to their scheduler id: they are not run again."""
    records = store.records()
    digests, updates = _source_digests(g, store, selected)
    live = live or {}
    jobs = g.jobs
    wd = str(g.workdir_path)
    outputs = {r.name: tuple(o.path for o in r.outputs) for r in g.rules}
    forced = _forced(g, selected, forced_rules)

    # indexed by job id; lists, because this loop is the no-op build at 100k psets
    building: list[LiveBuild | None] = []  # read once, at the first `planned` row
    fps: list[str] = [""] * len(jobs)
    cmds: list[str] = [""] * len(jobs)
    ins: list[str] = [""] * len(jobs)
    will_run: dict[int, tuple[Reason, ...]] = {}
    queued: dict[int, str] = {}
    dynamic: dict[int, tuple[str, ...]] = {}
    for i in selected:
        job = jobs[i]
        cmd_hash = text_hash(FINGERPRINT_VERSION, job.command, job.restart or "")
        soft = job.soft
        parts = [fps[d] for d in job.deps if d not in soft] if soft else [fps[d] for d in job.deps]
        if job.sources:
            parts.extend(digests[p] for p in job.sources)
        inputs_hash = text_hash(*parts)
        if soft:
            # up to date means: built with the done() inputs that are done now
            inputs_hash = soft_inputs_hash(inputs_hash, [fps[d] for d in job.deps if d in soft and _done_now(jobs[d], d, records, will_run, queued)])
        if soft or (dynamic and any(d in dynamic for d in job.deps)):
            dynamic[i] = tuple(digests[p] for p in job.sources)
        fp = text_hash(cmd_hash, job.hash, inputs_hash)
        fps[i] = fp
        cmds[i] = cmd_hash
        ins[i] = inputs_hash
        key = (job.rule, job.hash)
        if live and key in live:
            queued[i] = live[key]
            continue
        rec = records.raw(key)
        reasons: list[Reason] = []
        if i in forced:
            reasons.append(Reason(FORCED, "forced"))
        if rec is None:
            reasons.append(Reason(NEVER_BUILT, "never built"))
        elif rec[I_STATUS] != "done":
            if rec[I_STATUS] == "planned" and not building:
                building.append(live_build(g.root))
            status_reason = _status_reason(Record(*rec), building[0] if building else None)
            if status_reason is not None:
                reasons.append(status_reason)
        if rec is not None and (explain or not reasons):
            if rec[I_FINGERPRINT] is not None:
                if rec[I_CMD_HASH] != cmd_hash:
                    reasons.append(Reason(COMMAND_CHANGED, "command changed"))
                if rec[I_INPUTS_HASH] != inputs_hash:
                    which = _which_input(g, job, records, Record(*rec))
                    # Fix: when no input can be named and an upstream job will run (a changed
                    # source or command further up), a bare "input changed" hid the cause; the
                    # upstream check below names that job instead ("upstream X will run").
                    if which or not any(d in will_run or d in queued for d in job.deps):
                        reasons.append(Reason(INPUT_CHANGED, "input changed" + which))
                elif rec[I_CMD_HASH] == cmd_hash and rec[I_FINGERPRINT] != fp:
                    reasons.append(Reason(INPUT_CHANGED, "input changed"))
            if explain or not reasons:
                base = f"{wd}/{job.reldir}/"
                for name in outputs[job.rule]:
                    try:
                        os.stat(base + name)
                    except OSError:
                        reasons.append(Reason(OUTPUT_MISSING, f"output missing: {name}"))
                        if not explain:
                            break
        if explain or not reasons:
            for d in job.deps:
                if d in will_run or d in queued:
                    dj = jobs[d]
                    how = "will run" if d in will_run else f"is queued as job {queued[d]}"
                    if d in soft:
                        how += f" (done({dj.rule}): left out if it fails)"
                    reasons.append(Reason(UPSTREAM, f"upstream {dj.label} {how}"))
                    break
        if reasons:
            will_run[i] = tuple(reasons)
    run = tuple(i for i in selected if i in will_run)
    return Plan(
        graph=g,
        selected=tuple(selected),
        run=run,
        reasons=will_run,
        queued=queued,
        cmd_hashes=cmds,
        inputs_hashes=ins,
        fingerprints=fps,
        new_store=store.new,
        records=records,
        source_updates=tuple(updates),
        dynamic=dynamic,
    )


def soft_inputs_hash(base: str, done_fingerprints: Sequence[str]) -> str:
    """The inputs hash of a job with `input: done(RULE)`: its other inputs
    (base) and the fingerprints of the done() inputs that ended done."""
    return text_hash("done()", base, *done_fingerprints)


def dynamic_fingerprint(p: Plan, i: int, fps: Sequence[str], ended_done: Collection[int]) -> tuple[str, str]:
    """(inputs hash, fingerprint) of a job of p.dynamic once its inputs have
    ended, from the fingerprints they really have (fps) and, for its done()
    inputs, the ones that ended done. The same sums as plan() makes."""
    job = p.graph.jobs[i]
    soft = job.soft
    parts = [fps[d] for d in job.deps if d not in soft]
    parts.extend(p.dynamic[i])
    inputs_hash = text_hash(*parts)
    if soft:
        inputs_hash = soft_inputs_hash(inputs_hash, [fps[d] for d in job.deps if d in soft and d in ended_done])
    return inputs_hash, text_hash(p.cmd_hashes[i], job.hash, inputs_hash)


def _done_now(job: Job, d: int, records: RecordMap, will_run: Mapping[int, object], queued: Mapping[int, str]) -> bool:
    if d in will_run or d in queued:
        return False
    rec = records.raw((job.rule, job.hash))
    return rec is not None and rec[I_STATUS] == "done"


def _status_reason(rec: Record, building: LiveBuild | None = None) -> Reason | None:
    st = rec.status
    if st == "planned" and building is not None and building.run_id is not None and rec.run_id == building.run_id:
        return Reason(RUNNING, building.text())
    if st == "done":
        return None
    if st == "failed":
        # Fix: "(exit 0)" read as a contradiction; exit 0 is recorded for a job that did not
        # write its outputs, -1 for one that could not be started (local.py).
        if rec.exit_code == 0:
            return Reason(FAILED, "last run failed (exited 0 but its outputs or results files were missing or unsound)")
        if rec.exit_code == -1 and rec.backend == "local":
            return Reason(FAILED, "last run failed (could not start)")
        return Reason(FAILED, f"last run failed (exit {rec.exit_code})")
    if st == "timeout":
        return Reason(FAILED, "last run reached its time limit")
    if st == "interrupted":
        return Reason(INTERRUPTED, "last run was interrupted")
    if st == "cancelled":
        return Reason(CANCELLED, "last run was cancelled")
    if st == "planned" and rec.fingerprint is None:
        return Reason(NEVER_BUILT, "never built")
    if st == "queued":
        return Reason(UNFINISHED, f"was queued as job {rec.backend_job_id} and never reported back")
    return Reason(UNFINISHED, "the last build stopped before this job finished")


def _which_input(g: BuildGraph, job: Job, records: Mapping[tuple[str, str], Record], rec: Record) -> str:
    """Name an input that is newer than the job's last run, when one is."""
    if rec.end is None:
        return ""
    for d in job.deps:
        dj = g.jobs[d]
        drec = records.get((dj.rule, dj.hash))
        if drec is not None and drec.end is not None and drec.end > rec.end:
            return f": {dj.label} was rebuilt"
    for p in job.sources:
        try:
            if os.stat(g.root / p).st_mtime > rec.end:
                return f": {p}"
        except OSError:
            pass
    return ""


def _forced(g: BuildGraph, selected: Sequence[int], rules: Collection[str]) -> set[int]:
    if not rules:
        return set()
    sel = set(selected)
    forced = {i for r in rules for i in g.rule(r).job_ids if i in sel}
    # and everything downstream of them
    for i in selected:
        if i not in forced and any(d in forced for d in g.jobs[i].deps):
            forced.add(i)
    return forced


def _source_digests(g: BuildGraph, store: Store, selected: Sequence[int]) -> tuple[dict[str, str], list[tuple[str, int, int, str]]]:
    """Content digests of source inputs; size+mtime fast path, hash to confirm."""
    paths: dict[str, int] = {}
    for i in selected:
        for p in g.jobs[i].sources:
            paths.setdefault(p, i)
    if not paths:
        return {}, []
    known = store.sources()
    digests: dict[str, str] = {}
    updates: list[tuple[str, int, int, str]] = []
    missing: list[Diagnostic] = []
    for p, first in paths.items():
        full = g.root / p
        try:
            st = os.stat(full)
        except OSError:
            missing.append(_missing(g, g.jobs[first], p))
            continue
        old = known.get(p)
        if old is not None and old[0] == st.st_size and old[1] == st.st_mtime_ns:
            digests[p] = old[2]
            continue
        digest = _file_digest(full)
        digests[p] = digest
        updates.append((p, st.st_size, st.st_mtime_ns, digest))
    if missing:
        raise SweepfileError(missing, g.source)
    return digests, updates


def _file_digest(path: os.PathLike[str] | str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:32]


def _missing(g: BuildGraph, job: Job, path: str) -> Diagnostic:
    rule = g.rule(job.rule)
    source_inputs = [inp for inp in rule.inputs if inp.path is not None]
    k = job.sources.index(path)
    span = source_inputs[k].span if k < len(source_inputs) else None
    return Diagnostic(
        f"source input '{path}' does not exist",
        span,
        f"needed by {job.label}; create it, or fix the path (paths are relative to the project folder)",
        g.sweepfile.name,
    )
