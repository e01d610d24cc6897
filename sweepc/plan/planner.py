"""What is stale, and why. Entry point: plan().

A job's fingerprint is a Merkle hash: its rendered command, its pset hash and
the fingerprints of its inputs (upstream jobs' fingerprints, source files'
content digests). It is known before anything runs, so "up to date" is one
comparison with the store: the store says `done` with this fingerprint and
every output exists.

The no-op path costs one read of the store, one stat per output path and one
stat per source file (content is hashed only when size or mtime moved, so a
`touch` alone reruns nothing).
The full store row of a job is read (by primary key) only when the job is
not up to date: adding 10 psets to a 100k study reads one row, the gather's.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import pickle
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, overload

from sweepc.errors import Diagnostic, SweepfileError
from sweepc.lang.graph import RENDERED_LIST_NAME, BuildGraph, Job
from sweepc.hashing import bulk_sha256, text_hash
from sweepc.values import not_expanded
from sweepc.plan.exists import missing
from sweepc.plan.noop import packed_digest, vouched
from sweepc.plan.store import I_CMD_HASH, I_FINGERPRINT, I_INPUTS_HASH, I_STATUS, LiveBuild, Record, RecordMap, Store, live_build, state_dir

if TYPE_CHECKING:
    from sweepc.lang.project import EarlierJobs

# Part of every command hash: changing how fingerprints are made means changing this.
FINGERPRINT_VERSION = "sweepc-fp-1"
# A source file is "racy" (git's word) when its mtime is a whole second, less
# than RACY_NS before the moment it is looked at: a file system that keeps
# mtimes to the second (Lustre, ext3, some NFS servers; FAT to 2 s) gives
# an edit made within the same second the same mtime, and one that keeps
# the size would pass for unchanged. Its digest is stored with RACY_MTIME,
# which no file has, so the next look hashes it again; the no-op
# certificate never vouches for it. (Where mtimes have nanoseconds, an edit
# moves them: no file written there is racy, but for one in a billion.)
RACY_NS = 2_000_000_000
RACY_MTIME = -1

# Reason codes, in the order they are told
FORCED = "forced"
NEVER_BUILT = "never-built"
FAILED = "failed"
INTERRUPTED = "interrupted"
UNFINISHED = "unfinished"
RUNNING = "running"  # planned by the build running right now
CANCELLED = "cancelled"
SKIPPED = "skipped"
OUTPUT_MISSING = "output-missing"
COMMAND_CHANGED = "command-changed"
INPUT_CHANGED = "input-changed"
UPSTREAM = "upstream"
TEMP_NEEDED = "temp-needed"


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
    # (path, size, mtime_ns) of each source input as the planner saw it (its digest
    # is the one of that size and mtime): what a no-op certificate checks (plan/noop.py)
    source_stats: tuple[tuple[str, int, int], ...] = ()
    new_store: bool = False  # the store started from nothing (none, or an empty file)
    # Jobs whose fingerprint is known only when others have ended: those with
    # `input: done(RULE)` (which of its jobs end done), and every job
    # downstream of one. Job id -> the digests of its source inputs, so that
    # a backend can make its fingerprint again then (dynamic_fingerprint).
    dynamic: Mapping[int, tuple[str, ...]] = field(default_factory=dict, repr=False)
    # The outputs of the jobs found up to date, as rule/hh/hash/name from the
    # workdir, each looked for (plan/exists.py): what the no-op certificate
    # lists of them (noop.certify). None when the planner did not keep them.
    uptodate_outputs: Sequence[str] | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        return f"<Plan: {len(self.run)} of {len(self.selected)} jobs to run, {self.uptodate} up to date>"

    def state(self, i: int) -> str:
        """What `status` and `results` call a selected job: done, stale,
        pending, running, failed, timeout, interrupted, cancelled, skipped or
        never built (STATES, in the order `status` shows them)."""
        reasons = self.reasons.get(i)
        if not reasons and i not in self.queued:
            return "done"  # most jobs: no record read (100k Records cost a second)
        job = self.graph.jobs[i]
        rec = self.records.get((job.rule, job.hash))
        if i in self.queued:
            return "running" if rec is not None and rec.status == "running" else "pending"
        assert reasons
        codes = {r.code for r in reasons}
        if RUNNING in codes:
            return "running"  # in the build running now
        if NEVER_BUILT in codes:
            return "never built"
        st = rec.status if rec is not None else None
        if FAILED in codes:
            return "timeout" if st == "timeout" else "failed"
        for code, name in ((INTERRUPTED, "interrupted"), (CANCELLED, "cancelled"), (SKIPPED, "skipped")):
            if code in codes:
                return name
        if st == "queued":
            return "pending"  # submitted, and no completion record says it started
        if st == "running":
            return "running"  # its runner said it started, and no record says it ended
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
    # Hundreds of thousands of new objects and no cycles: without the cyclic
    # collector scanning them over and over, a third faster at 100k psets.
    was = gc.isenabled()
    gc.disable()
    try:
        return _plan(g, store, selected, forced_rules, explain, live)
    finally:
        if was:
            gc.enable()


def _plan(
    g: BuildGraph,
    store: Store,
    selected: Sequence[int],
    forced_rules: Collection[str],
    explain: bool,
    live: Mapping[tuple[str, str], str] | None,
) -> Plan:
    digests, updates, seen, changed = _source_digests(g, store, selected)
    live = live or {}
    jobs = g.jobs
    wd = str(g.workdir_path)
    # a missing temp() output alone never makes a job stale (see _rebuild_temps)
    outputs = {r.name: tuple(o.path for o in r.outputs if not o.temp) for r in g.rules}
    forced = _forced(g, selected, forced_rules)
    fps: Sequence[str]
    cmds: Sequence[str]
    ins: Sequence[str]
    # input: done(RULE): the fingerprint of such a job (and of every job
    # downstream of one) depends on which of those inputs ended done; it is
    # made here, in order, over the static ones (_hashes) of the rest
    dyn = _dynamic_jobs(g, selected)
    dynamic: dict[int, tuple[str, ...]] = {}
    has_rows = store.has_jobs()
    read: list[_Earlier] = []  # the fingerprints cache, as _hashes read it
    if dyn:
        static, cmds, static_ins = _hashes(g, selected, digests)
        fps = list(static)
        ins = _Overlay(static_ins)
        tparts = _SourceParts(g, digests)
    elif has_rows:
        fps, cmds, ins = _hashes(g, selected, digests, read)
    else:
        # nothing was ever built: every job is "never built" and no hash is
        # compared; they are made when a backend first asks (not for -n)
        later = _Later(lambda: _hashes(g, selected, digests, keep=True))
        fps, cmds, ins = later.part(0), later.part(1), later.part(2)
    # The fast path needs one string per job (Store.states()); the whole rows
    # are read only once some job is not up to date, or for --explain. (Read
    # after the hashes: what _hashes reads of an earlier graph is gone by then.)
    # When the no-op certificate of the graph whose fingerprints _hashes read
    # is of the store as it is now, its rows are known without reading them
    # (_trusted_states): those of the other jobs are read one by one.
    trusted = _trusted_states(g, store, read[0]) if read and not explain else None
    states = store.states() if trusted is None else trusted
    # rows read one by one, as jobs turn out not to be up to date (a build
    # that runs 21 of 200k jobs reads 21 rows, not 200k); none when there are
    # none (then nothing needs pinning either: the map stays empty)
    recs = store.lookup() if has_rows else RecordMap({})
    try:
        wd_fd = os.open(wd, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        wd_fd = -1  # no workdir: no output exists, every job takes the slow path

    # Optimistic first: a job done with this very fingerprint is taken as up
    # to date when nothing it needs will run, its outputs looked for all at
    # once after the loop (exists.missing(): in threads). They are nearly
    # always there; when some are not, the loop runs again knowing which
    # jobs lack one (those run, and so does what needs them), as a loop that
    # looked at each job's outputs in turn decides.
    try:
        gone: set[int] | None = None
        while True:
            will_run: dict[int, tuple[Reason, ...]] = {}
            queued: dict[int, str] = {}
            building: list[LiveBuild | None] = []  # read once, at the first `planned` row
            looked: list[str] = []  # the outputs of the jobs taken as up to date (first loop)
            owners: list[int] = []  # the job of each
            rule: str | None = None
            rule_states: dict[str, str] = {}
            outs: tuple[str, ...] = ()
            lookups = 0
            for i in selected:
                job = jobs[i]
                if job.rule != rule:
                    rule = job.rule
                    rule_states = states.get(rule, {})
                    outs = outputs[rule]
                if i in dyn:
                    assert isinstance(fps, list) and isinstance(ins, _Overlay)
                    dynamic[i] = tuple(tparts.of(job))
                    soft = job.soft
                    parts = [fps[d] for d in job.deps if d not in soft] if soft else [fps[d] for d in job.deps]
                    inputs_hash = text_hash(*parts, *dynamic[i])
                    if soft:
                        # up to date means: built with the done() inputs that are done now
                        inputs_hash = soft_inputs_hash(inputs_hash, [
                            fps[d] for d in job.deps
                            if d in soft and d not in will_run and d not in queued and _is_done(states, jobs[d])
                        ])
                    fps[i] = text_hash(cmds[i], job.hash, inputs_hash)
                    ins.over[i] = inputs_hash
                if live and (job.rule, job.hash) in live:
                    queued[i] = live[(job.rule, job.hash)]
                    continue
                state = rule_states.get(job.hash)
                if state is None and trusted is not None:
                    # a job that graph had not: its row, if it has one
                    lookups += 1
                    if lookups > TRUSTED_LOOKUPS:
                        break  # (many: all rows read at once are fewer reads)
                    state = _row_state(recs.raw((job.rule, job.hash)))
                if state is None:  # never built: no hash needed, no row to read
                    if not explain and i not in forced:
                        will_run[i] = _NEVER_BUILT
                        recs.pin_absent((job.rule, job.hash))
                        continue
                    fp = ""
                else:
                    fp = fps[i]
                if not explain and state == fp and wd_fd >= 0 and i not in forced:
                    # done with this very fingerprint: up to date if nothing it
                    # needs will run and its outputs are there
                    if will_run or queued:
                        deps = job.deps
                        if len(deps) == 1:  # (most jobs: no generator made)
                            waits = deps[0] in will_run or deps[0] in queued
                        else:
                            waits = any(d in will_run or d in queued for d in deps)
                    else:
                        waits = False
                    if not waits:
                        if gone is None:
                            h = job.hash
                            base = f"{rule}/{h[:2]}/{h}/"
                            for name in outs:
                                looked.append(base + name)
                                owners.append(i)
                            continue
                        if i not in gone:
                            continue
                cmd_hash, inputs_hash = ("", "") if state is None else (cmds[i], ins[i])
                reasons = _reasons(g, job, i, fp, cmd_hash, inputs_hash, recs, explain, i in forced, wd, outputs[job.rule], will_run,
                                   queued, building, changed)
                if reasons:
                    will_run[i] = reasons
            else:
                if not looked:
                    break
                lacking = missing(looked, wd_fd)
                if not lacking:
                    break
                gone = {owners[k] for k in lacking}
                continue
            # (the loop stopped: too many rows to read one by one)
            states, trusted, gone = store.states(), None, None
    finally:
        if wd_fd >= 0:
            os.close(wd_fd)
    # (after a second loop they were not collected: the certificate makes them)
    seen_outputs = looked if gone is None else None
    _rebuild_temps(g, selected, will_run, queued, wd)
    run = tuple(i for i in selected if i in will_run)
    for i in run:  # the rows as they are now: the build changes them (mark_planned)
        recs.pin((jobs[i].rule, jobs[i].hash))
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
        records=recs,
        source_updates=tuple(updates),
        source_stats=tuple(seen),
        dynamic=dynamic,
        uptodate_outputs=seen_outputs,
    )


# Jobs of a graph the certificate does not name whose rows the planner reads
# one by one (by primary key, ~10 us each) before it reads them all at once
# (Store.states(), 0.25 s at 100k psets).
TRUSTED_LOOKUPS = 500


def _trusted_states(g: BuildGraph, store: Store, read: _Earlier) -> dict[str, dict[str, str]] | None:
    """Store.states() for the jobs of the graph whose fingerprints _hashes
    read (this graph, or the earlier one of a changed sweepfile), without
    reading the store, when the no-op certificate vouches that each of their
    rows says done with that fingerprint (plan/noop.py: it was written at the
    store's generation of now, for that graph and those fingerprints). Else
    None. The planner reads the rows of other jobs one by one."""
    generation = vouched(g.root, store, read.key, read.digest)
    if generation is None:
        return None
    store.seen = generation  # (as Store.states() does: a certificate of this plan names it)
    return read.states()


def _row_state(row: tuple[object, ...] | None) -> str | None:
    """What Store.states() says of a row (None: there is none)."""
    if row is None:
        return None
    st = row[I_STATUS]
    fp = row[I_FINGERPRINT]
    return fp if st == "done" and isinstance(fp, str) else f"!{st}"


def _dynamic_jobs(g: BuildGraph, selected: Sequence[int]) -> set[int]:
    """The selected jobs with done() inputs, and every selected job downstream of one."""
    jobs = g.jobs
    if not any(r.inputs and any(inp.only_done for inp in r.inputs) for r in g.rules):
        return set()
    dyn: set[int] = set()
    for i in selected:
        job = jobs[i]
        if job.soft or (dyn and any(d in dyn for d in job.deps)):
            dyn.add(i)
    return dyn


def _is_done(states: Mapping[str, Mapping[str, str]], job: Job) -> bool:
    """Whether the job's row says done (Store.states(): a done row is its
    fingerprint, or "!done" when it has none; any other is "!" + its status)."""
    st = states.get(job.rule, {}).get(job.hash)
    return st is not None and (st[:1] != "!" or st == "!done")


class _ByJob(Sequence[str]):
    """Hashes by job id, each made by at(i) when asked for (a slice: a list)."""

    def at(self, i: int) -> str:
        raise NotImplementedError

    @overload
    def __getitem__(self, i: int) -> str: ...

    @overload
    def __getitem__(self, i: slice) -> Sequence[str]: ...

    def __getitem__(self, i: int | slice) -> str | Sequence[str]:
        if isinstance(i, slice):
            return [self.at(k) for k in range(len(self))[i]]
        return self.at(i)


class _Overlay(_ByJob):
    """Hashes by job id: a few made during planning over the rest."""

    def __init__(self, base: Sequence[str]) -> None:
        self.base = base
        self.over: dict[int, str] = {}

    def at(self, i: int) -> str:
        got = self.over.get(i)
        return self.base[i] if got is None else got

    def __len__(self) -> int:
        return len(self.base)


def _reasons(
    g: BuildGraph, job: Job, i: int, fp: str, cmd_hash: str, inputs_hash: str, records: RecordMap, explain: bool,
    forced: bool, wd: str, outputs: tuple[str, ...], will_run: Mapping[int, object], queued: Mapping[int, str],
    building: list[LiveBuild | None], changed: Collection[str] = (),
) -> tuple[Reason, ...]:
    """Every reason job i runs (the first one only, unless explain); changed:
    the source files whose digest is not the one last recorded."""
    rec = records.raw((job.rule, job.hash))
    if rec is None and not forced and not explain:
        return _NEVER_BUILT
    reasons: list[Reason] = []
    if forced:
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
                which = _which_input(g, job, records, Record(*rec), changed)
                # Fix: when no input can be named and an upstream job will run (a changed
                # source or command further up), a bare "input changed" hid the cause; the
                # upstream check below names that job instead ("upstream X will run").
                if which or not any(d in will_run or d in queued for d in job.deps):
                    reasons.append(Reason(INPUT_CHANGED, "input changed" + which))
            elif rec[I_CMD_HASH] == cmd_hash and rec[I_FINGERPRINT] != fp:
                reasons.append(Reason(INPUT_CHANGED, "input changed"))
        if explain or not reasons:
            base = f"{wd}/{job.reldir}/"
            for name in outputs:
                try:
                    os.stat(base + name)
                except OSError:
                    reasons.append(Reason(OUTPUT_MISSING, f"output missing: {name}"))
                    if not explain:
                        break
    if explain or not reasons:
        for d in job.deps:
            if d in will_run or d in queued:
                dj = g.jobs[d]
                how = "will run" if d in will_run else f"is queued as job {queued[d]}"
                if d in job.soft:
                    how += f" (done({dj.rule}): left out if it fails)"
                reasons.append(Reason(UPSTREAM, f"upstream {dj.label} {how}"))
                break
    return tuple(reasons)


_NEVER_BUILT = (Reason(NEVER_BUILT, "never built"),)


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


# -- fingerprints ---------------------------------------------------------------

_FP_CACHE = "fingerprints.cache"


def _hashes(g: BuildGraph, selected: Sequence[int], digests: Mapping[str, str], read: list[_Earlier] | None = None,
            keep: bool = False) -> tuple[Sequence[str], Sequence[str], Sequence[str]]:
    """(fingerprints, command hashes, inputs hashes) by job id, for the
    selected jobs at least.

    Fingerprints depend only on the graph and the sources' digests, so they
    are kept in .sweepc/fingerprints.cache under the graph's cache key
    (lang/project.py) and the digests: a no-op build at 100k psets then
    hashes nothing (600k hashes otherwise). Taken from there, command and
    inputs hashes are made only for the jobs someone asks about.

    read: when given, the cached fingerprints read (of this graph or of the
    earlier one whose jobs reuse them) are appended to it, as an _Earlier.
    keep: every job will run (nothing was built yet), and each is asked for
    both hashes at its start and at its end: those made here are kept,
    packed (16 bytes each, _Packed), instead of made again (at 100k psets
    800k sums less, for 6.4 MB)."""
    from sweepc.lang.project import earlier_jobs, graph_key

    key = graph_key(g)
    path = state_dir(g.root) / _FP_CACHE
    reuse: _Reuse | None = None
    if key is not None:
        cached = _read_fingerprints(path)
        if cached is not None:
            known_key, known_digests, old_fps, fps_digest = cached
            same = known_key == key and len(old_fps) == len(g.jobs)
            if same and read is not None:
                read.append(_Earlier(known_key, fps_digest, old_fps, None, g))
            # the fingerprints of the selected jobs hold if the sources they read are unchanged
            if same and all(known_digests.get(p) == d for p, d in digests.items()):
                return old_fps, _Derived(g, old_fps, digests, cmd=True), _Derived(g, old_fps, digests, cmd=False)
            # another graph's (the sweepfile changed): those of its jobs that
            # are the same sums are taken as they are
            earlier = None if same else earlier_jobs(known_key)
            if earlier is not None and len(earlier.hash) == len(old_fps):
                reuse = _Reuse(g, earlier, old_fps, known_digests)
                if read is not None:
                    read.append(_Earlier(known_key, fps_digest, old_fps, earlier, g))
    jobs = g.jobs
    # indexed by job id; a list, because this loop is the no-op build at 100k psets
    fps = [""] * len(jobs)
    tparts = _SourceParts(g, digests)
    # text_hash() written out: 600k of them at 100k psets (the same sums)
    sha256 = bulk_sha256()
    version = FINGERPRINT_VERSION + "\0"
    # _Reuse inlined (a method call per job costs what hashing it does)
    rule = None
    first = end = -1  # where the jobs of `rule` are in the earlier graph; -1: no reuse for it
    if reuse is not None:
        e_hash, e_cmd, e_restart, e_deps, e_src = reuse.e.hash, reuse.e.command, reuse.e.restart, reuse.e.deps, reuse.e.sources
        e_fps, e_digests = reuse.fps, reuse.digests
    if keep:
        cmd_packed, ins_packed, made = bytearray(16 * len(jobs)), bytearray(16 * len(jobs)), bytearray(len(jobs))
    for i in selected:
        job = jobs[i]
        if reuse is not None:
            # (one unpacking: a field read by name costs as much as a comparison)
            _, j_rule, j_hash, seq, _, deps, sources, command, restart, _, _ = job
            if j_rule != rule:
                rule = j_rule
                first, end = reuse.span.get(rule, (-1, -1)) if rule not in reuse.templated else (-1, -1)
            if first >= 0:
                # the earlier job of this rule and pset hash: where it was, else looked up
                o: int | None = first + seq
                if first + seq >= end or e_hash[first + seq] != j_hash:
                    o = reuse.find(rule, j_hash)
                if o is not None and command == e_cmd[o] and restart == e_restart[o] and sources == e_src[o]:
                    before = e_deps[o]
                    if len(deps) == len(before) and (
                        len(deps) == 0 or (fps[deps[0]] == e_fps[before[0]] if len(deps) == 1
                                           else [fps[d] for d in deps] == [e_fps[b] for b in before])
                    ) and (not sources or all(digests[p] == e_digests.get(p) for p in sources)):
                        fps[i] = e_fps[o]
                        continue
        # (digest()[:16].hex() is hexdigest()[:32], at its cost: the bytes are what keep packs)
        cmd_bytes = sha256((version + job.command + "\0" + (job.restart or "")).encode("utf-8", "surrogatepass")).digest()[:16]
        cmd_hash = cmd_bytes.hex()
        deps = job.deps
        if job.sources or job.rule in tparts.rules:
            parts = [fps[d] for d in deps]
            parts.extend(tparts.of(job))
            joined = "\0".join(parts)
        elif len(deps) == 1:
            joined = fps[deps[0]]
        else:
            joined = "\0".join([fps[d] for d in deps])
        ins_bytes = sha256(joined.encode("utf-8", "surrogatepass")).digest()[:16]
        inputs_hash = ins_bytes.hex()
        fps[i] = sha256((cmd_hash + "\0" + job.hash + "\0" + inputs_hash).encode()).hexdigest()[:32]
        if keep:
            at = 16 * i
            cmd_packed[at:at + 16] = cmd_bytes
            ins_packed[at:at + 16] = ins_bytes
            made[i] = 1
    if key is not None and len(selected) == len(jobs) and path.parent.is_dir():
        _write_fingerprints(path, key, digests, fps)
    if keep:
        return (fps, _Packed(cmd_packed, made, _Derived(g, fps, digests, cmd=True)),
                _Packed(ins_packed, made, _Derived(g, fps, digests, cmd=False)))
    # the command and inputs hashes are made again for the few jobs someone asks
    # about (those not up to date): 400k strings less to hold at 100k psets
    return fps, _Derived(g, fps, digests, cmd=True), _Derived(g, fps, digests, cmd=False)


@dataclass(frozen=True)
class _Earlier:
    """The fingerprints cache as _hashes() read it: the graph they are of
    (its key; its jobs' columns when that is an earlier graph, else g's own
    jobs), and their digest."""

    key: str
    digest: str
    fps: Sequence[str]
    earlier: EarlierJobs | None
    g: BuildGraph

    def states(self) -> dict[str, dict[str, str]]:
        """rule -> pset hash -> fingerprint of every job of that graph, as
        Store.states() gives them for rows that are `done`."""
        fps = self.fps
        if self.earlier is None:
            jobs = self.g.jobs
            return {r.name: {jobs[k].hash: fps[k] for k in r.job_ids} for r in self.g.rules}
        e = self.earlier
        return {rule: dict(zip(e.hash[first:end], fps[first:end]))
                for rule, (first, end) in e.spans(dict.fromkeys(e.rule)).items()}


class _Reuse:
    """The fingerprints of an earlier graph of the project (the one cached
    before this command compiled the changed sweepfile; lang.project.
    earlier_jobs()) that jobs of this one take without hashing (in _hashes).

    A job takes the fingerprint of the earlier job of its rule and pset hash
    when every text its sums are made of is the same: its command and
    restart text, the fingerprints of its inputs (in order: made before it,
    taken or made afresh) and the digests of its source files. So the value
    is the one the sums would give. Jobs of rules with templates: are always
    hashed. Adding 10 psets to a 100k study hashes 21 jobs, not 200k."""

    def __init__(self, g: BuildGraph, earlier: EarlierJobs, fps: Sequence[str], digests: Mapping[str, str]) -> None:
        self.e, self.fps, self.digests = earlier, fps, digests
        self.templated = {r.name for r in g.rules if r.templates}
        # where each rule's jobs are in the earlier graph
        self.span = earlier.spans(r.name for r in g.rules)
        self.by_hash: dict[str, dict[str, int]] = {}
        self.scans = 64

    def find(self, rule: str, h: str) -> int | None:
        """The earlier job of this rule and pset hash (psets keep their place
        when values are added at the end; when not, a search: the first few
        by a scan, which costs no memory, then through a dict per rule)."""
        by = self.by_hash.get(rule)
        if by is not None:
            return by.get(h)
        first, end = self.span[rule]
        hashes = self.e.hash
        if self.scans > 0:
            self.scans -= 1
            try:
                return hashes.index(h, first, end)
            except ValueError:
                return None
        by = self.by_hash[rule] = {hashes[k]: k for k in range(first, end)}
        return by.get(h)


class _Later:
    """The three hash sequences of _hashes(), made on first use."""

    def __init__(self, make: Callable[[], tuple[Sequence[str], Sequence[str], Sequence[str]]]) -> None:
        self.make: Callable[[], tuple[Sequence[str], Sequence[str], Sequence[str]]] | None = make
        self.got: tuple[Sequence[str], Sequence[str], Sequence[str]] | None = None

    def get(self, k: int) -> Sequence[str]:
        if self.got is None:
            assert self.make is not None
            self.got, self.make = self.make(), None
        return self.got[k]

    def part(self, k: int) -> _LaterPart:
        return _LaterPart(self, k)


class _LaterPart(Sequence[str]):
    def __init__(self, later: _Later, k: int) -> None:
        self.later, self.k = later, k

    @overload
    def __getitem__(self, i: int) -> str: ...

    @overload
    def __getitem__(self, i: slice) -> Sequence[str]: ...

    def __getitem__(self, i: int | slice) -> str | Sequence[str]:
        return self.later.get(self.k)[i]

    def __iter__(self) -> Iterator[str]:
        return iter(self.later.get(self.k))

    def __len__(self) -> int:
        return len(self.later.get(self.k))


class _Derived(_ByJob):
    """Command or inputs hashes by job id, made when asked for."""

    def __init__(self, g: BuildGraph, fps: Sequence[str], digests: Mapping[str, str], cmd: bool) -> None:
        self.g, self.fps, self.digests, self.cmd = g, fps, digests, cmd
        self.parts = _SourceParts(g, digests)

    def at(self, i: int) -> str:
        job = self.g.jobs[i]
        if self.cmd:
            return text_hash(FINGERPRINT_VERSION, job.command, job.restart or "")
        return text_hash(*[self.fps[d] for d in job.deps], *self.parts.of(job))

    def __len__(self) -> int:
        return len(self.g.jobs)


class _Packed(_ByJob):
    """Hashes by job id, kept as _hashes() made them (16 bytes each), for
    the jobs it made them for (made[i]); the others' made when asked for."""

    def __init__(self, packed: bytearray, made: bytearray, rest: _Derived) -> None:
        self.packed, self.made, self.rest = packed, made, rest

    def at(self, i: int) -> str:
        if self.made[i]:
            return self.packed[16 * i:16 * i + 16].hex()
        return self.rest.at(i)

    def __len__(self) -> int:
        return len(self.made)


def _read_fingerprints(path: Path) -> tuple[str, dict[str, str], list[str], str] | None:
    """(graph key, source digests, fingerprints by job id, noop.fingerprints_digest()
    of them) of the cache, or None."""
    try:
        with open(path, "rb") as f:
            version, known_key, known_digests, packed = pickle.load(f)
    except Exception:  # missing, damaged, another format: compute them
        return None
    if version != FINGERPRINT_VERSION or not isinstance(known_key, str) or not isinstance(known_digests, dict):
        return None
    if isinstance(packed, bytes) and len(packed) % 16 == 0:
        text = packed.hex()
        return known_key, known_digests, [text[k:k + 32] for k in range(0, len(text), 32)], packed_digest(packed)
    return None


def _write_fingerprints(path: Path, key: str, digests: Mapping[str, str], fps: list[str]) -> None:
    # the fingerprints packed as 16 bytes each (32 hex digits): a list of 200k
    # strings took 0.1 s to pickle
    try:
        packed = bytes.fromhex("".join(fps))
    except ValueError:
        return
    if len(packed) != 16 * len(fps):
        return
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            pickle.dump((FINGERPRINT_VERSION, key, dict(digests), packed), f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _rebuild_temps(g: BuildGraph, selected: Sequence[int], will_run: dict[int, tuple[Reason, ...]], queued: Mapping[int, str], wd: str) -> None:
    """A job whose temp() output is gone runs again when a job that reads it
    must run. Its fingerprint does not change, so nothing else reruns for it.
    Downstream first, so the upstream job's own removed inputs come back too."""
    temps = {r.name: tuple(o.path for o in r.outputs if o.temp) for r in g.rules if any(o.temp for o in r.outputs)}
    if not temps or not will_run:
        return
    chosen = set(selected)
    jobs = g.jobs
    for i in reversed(selected):
        if i not in will_run:
            continue
        for d in jobs[i].deps:
            dj = jobs[d]
            if d in will_run or d in queued or d not in chosen or dj.rule not in temps:
                continue
            base = f"{wd}/{dj.reldir}/"
            gone = [n for n in temps[dj.rule] if not os.path.exists(base + n)]
            if gone:
                will_run[d] = (Reason(TEMP_NEEDED, f"temp output {gone[0]} was removed and {jobs[i].label} needs it"),)


class _SourceParts:
    """What a job's fingerprint takes from files: its source inputs' digests
    and, for a rule with templates:, one digest over its template files
    (their names and contents; the job's seq and resources too when the
    templates mention them). The same in every place fingerprints are made."""

    def __init__(self, g: BuildGraph, digests: Mapping[str, str]) -> None:
        self.g, self.digests = g, digests
        self.rules: dict[str, str] = {}
        for r in g.rules:
            if r.templates and all(t.source in digests for t in r.templates):
                self.rules[r.name] = text_hash("templates", *(f"{t.dest}\0{digests[t.source]}" for t in r.templates), *r.template_uses)

    def of(self, job: Job) -> list[str]:
        digests = self.digests
        out = [digests[p] for p in job.sources]
        t = self.rules.get(job.rule)
        if t is not None:
            uses = self.g.rule(job.rule).template_uses
            if uses:
                extra = [t]
                if "seq" in uses:
                    extra.append(f"seq={job.seq}")
                if "resources" in uses:
                    extra.append("resources=" + repr(tuple(job.resources)))
                t = text_hash(*extra)
            out.append(t)
        return out


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
    if st == "skipped":
        return Reason(SKIPPED, "last run did not run it: an input was not done")
    if st == "cancelled":
        return Reason(CANCELLED, "last run was cancelled")
    if st == "planned" and rec.fingerprint is None:
        return Reason(NEVER_BUILT, "never built")
    if st == "queued":
        return Reason(UNFINISHED, f"was queued as job {rec.backend_job_id} and never reported back")
    if st == "running":
        return Reason(UNFINISHED, f"was running as job {rec.backend_job_id} and never reported back")
    return Reason(UNFINISHED, "the last build stopped before this job finished")


def _template_gone_reason(g: BuildGraph, job: Job) -> str:
    """": template X was removed" for a template the job's folder has a file of
    (its list of rendered templates, RENDERED_LIST_NAME) that the rule no
    longer has; else "". Read last, and only for a rule with templates: a
    file per job, where many jobs' inputs changed."""
    if not g.rule(job.rule).templates:
        return ""
    try:
        with open(g.job_dir(job) / RENDERED_LIST_NAME, "rb") as f:
            listed = json.loads(f.read(1 << 24))
    except (OSError, ValueError):
        return ""
    if not isinstance(listed, dict):
        return ""
    now = {t.source for t in g.rule(job.rule).templates}
    gone = sorted(v for v in listed.values() if isinstance(v, str) and v not in now)
    return f": template {gone[0]} was removed" if gone else ""


def _which_input(g: BuildGraph, job: Job, records: RecordMap, rec: Record, changed: Collection[str] = ()) -> str:
    """Name an input that is newer than the job's last run, when one is: a
    source whose digest is not the one last recorded (an edit in the second
    of the last look, where mtimes have whole seconds, is no newer), else one
    rebuilt or written since the job ended."""
    for p in job.sources:
        if p in changed:
            return f": {p}"
    for t in g.rule(job.rule).templates:
        if t.source in changed:
            return f": template {t.source}"
    if rec.end is None:
        return _template_gone_reason(g, job)
    if len(job.deps) > 16:
        # a gather: one query for the inputs that ended after it, not a row per input
        newer = records.ended_after(rec.end, g.rule(job.rule).upstream)
        if newer:
            for d in job.deps:
                dj = g.jobs[d]
                if (dj.rule, dj.hash) in newer:
                    return f": {dj.label} was rebuilt"
    else:
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
    for t in g.rule(job.rule).templates:
        try:
            if os.stat(g.root / t.source).st_mtime > rec.end:
                return f": template {t.source}"
        except OSError:
            pass
    return _template_gone_reason(g, job)


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


def _source_digests(g: BuildGraph, store: Store, selected: Sequence[int]
                    ) -> tuple[dict[str, str], list[tuple[str, int, int, str]], list[tuple[str, int, int]], set[str]]:
    """Content digests of source inputs; size+mtime fast path, hash to confirm.
    Also the rows to store for the files hashed now, and each file's size and
    mtime (RACY_MTIME for a racy one: hashed again next time), and the files
    whose digest is not the one recorded before."""
    paths: dict[str, int] = {}
    for i in selected:
        for p in g.jobs[i].sources:
            paths.setdefault(p, i)
    # template files are hashed the same way: editing one reruns the jobs of
    # the rules that use it, a touch reruns nothing
    templates: dict[str, str] = {}
    if any(r.templates for r in g.rules):
        rules_selected = {g.jobs[i].rule: i for i in selected}
        for r in g.rules:
            if r.name in rules_selected:
                for tf in r.templates:
                    templates.setdefault(tf.source, r.name)
                    paths.setdefault(tf.source, rules_selected[r.name])
    if not paths:
        return {}, [], [], set()
    known = store.sources()
    now = time.time_ns()
    digests: dict[str, str] = {}
    updates: list[tuple[str, int, int, str]] = []
    seen: list[tuple[str, int, int]] = []
    changed: set[str] = set()
    missing: list[Diagnostic] = []
    for p, first in paths.items():
        full = g.root / p
        try:
            st = os.stat(full)
        except OSError:
            if p in templates:
                tf = next(t for t in g.rule(templates[p]).templates if t.source == p)
                missing.append(Diagnostic(f"template '{p}' does not exist", tf.span, f"rule '{templates[p]}' needs it; restore it or fix templates:", g.sweepfile.name))
            else:
                missing.append(_missing(g, g.jobs[first], p))
            continue
        mtime = st.st_mtime_ns
        if mtime % 1_000_000_000 == 0 and now - mtime < RACY_NS:
            mtime = RACY_MTIME
        seen.append((p, st.st_size, mtime))
        old = known.get(p)
        if old is not None and mtime != RACY_MTIME and old[0] == st.st_size and old[1] == mtime:
            digests[p] = old[2]
            continue
        digest = _file_digest(full)
        digests[p] = digest
        updates.append((p, st.st_size, mtime, digest))
        if old is not None and old[2] != digest:
            changed.add(p)
    if missing:
        raise SweepfileError(missing, g.source)
    return digests, updates, seen, changed


def _file_digest(path: os.PathLike[str] | str) -> str:
    h = bulk_sha256()()
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
        f"needed by {job.label}; create it, or fix the path (paths are relative to the project folder{not_expanded(path)})",
        g.sweepfile.name,
    )
