"""The no-op certificate: `sweepc build` with nothing to do, without the graph.

A build that leaves every job of the project up to date writes
`.sweepc/uptodate` (certify()): its plan had nothing to run, or every job it
ran ended done. The certificate names what that verdict rests on:

* the graph: the sweepfile's cache key (its text and path, the compiler's
  identity: lang/project.py) and the digest of every file the compiler read;
* the planner's identity (size and mtime of plan/*.py);
* the store: its id, schema version and generation. Each change of a job
  row counts the generation up (a trigger: whoever writes, sweepc or
  sqlite3 by hand), and the planner read the generation before the rows it
  planned from (Store.states), so the same generation means the same rows;
* each source input's size and mtime as the planner saw them;
* every job's outputs, one path a line (rule/hh/hash/name, from the workdir).

The next plain `sweepc build` (no targets, selection, --force, -D, -n;
the local backend) calls check() before it loads anything: the same key,
the same files, the same planner, the same store generation, the same
source stats, no journal to replay, the build lock free and left by a
clean release, and every output there (one access() each, as the planner
does) mean the planner would find nothing to run. Anything else, or any
doubt (a damaged file, another format), and the build takes its usual
path. A certificate is never removed: a later write to the store voids it.

Not certified: graphs with temp() outputs, `done()` inputs, samples made
by a rule or pending sweeps (their plan depends on more than the above),
and builds of a selection, or with jobs queued in a scheduler.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from sweepc.errors import SweepcError
from sweepc.lang.identity import file_stamps, files_unchanged, sweepfile_key
from sweepc.plan.exists import missing
from sweepc.plan.store import DB_NAME, SCHEMA_VERSION, BuildLock, Store, identity, state_dir

if TYPE_CHECKING:  # (check() runs before anything else of a build is imported)
    from sweepc.lang.graph import BuildGraph, Job


class PlanFacts(Protocol):
    """What certify() reads of a planner.Plan (which imports this module)."""

    @property
    def selected(self) -> Sequence[int]: ...
    @property
    def queued(self) -> Mapping[int, str]: ...
    @property
    def dynamic(self) -> Mapping[int, tuple[str, ...]]: ...
    @property
    def source_stats(self) -> Sequence[tuple[str, int, int]]: ...
    @property
    def fingerprints(self) -> Sequence[str]: ...
    @property
    def run(self) -> Sequence[int]: ...
    @property
    def uptodate_outputs(self) -> Sequence[str] | None: ...


__all__ = ["CERT_NAME", "certify", "check", "fingerprints_digest", "packed_digest", "vouched"]

CERT_NAME = "uptodate"
FORMAT = b"sweepc-uptodate 2\n"
_JOURNAL = "journal"  # = backends.local.journal.JOURNAL_NAME (a later stage)


def certify(g: BuildGraph, p: PlanFacts, store: Store) -> bool:
    """Write the certificate of a build that leaves every job up to date: p
    is its plan of every job, and either p.run is empty or every job in it
    ended done. False (and nothing written) when the graph or plan is not
    one check() can vouch for, or the store was written by someone else
    since it was planned."""
    if (len(p.selected) != len(g.jobs) or p.queued or p.dynamic or g.sample_rules or g.pending
            or any(o.temp for r in g.rules for o in r.outputs)):
        return False
    from sweepc.lang.project import key_parts

    parts = key_parts(g)
    if parts is None or store.seen is None:
        return False
    try:
        store_id, generation = store.generation()
    except sqlite3.Error:
        return False
    if generation != store.seen:
        return False
    key, files = parts
    head: dict[str, Any] = {
        "store": store_id, "generation": generation, "key": key, "files": files, "code": _code_id(),
        "workdir": str(g.workdir_path), "sources": p.source_stats, "jobs": len(g.jobs),
    }
    from sweepc.lang.project import graph_key

    # (for vouched(): the graph and the fingerprints every job's row has)
    head["graph"], head["fps"] = graph_key(g), fingerprints_digest(p.fingerprints)
    d = state_dir(g.root)
    path = d / CERT_NAME
    if _says(path, head):
        return True  # (a no-op of the API, which asks no certificate: the paths cost 0.1 s at 100k psets)
    outputs = {r.name: [o.path for o in r.outputs] for r in g.rules}
    if "\n" in "".join(o for outs in outputs.values() for o in outs):
        return False  # (a newline in an output's name: not one path a line)
    # every output as the planner looks for it: rule/hh/hash/name, from the workdir
    data = os.fsencode("\n".join(_output_paths(g, p, outputs)))
    head["bytes"] = len(data)  # of the paths: a file cut short at a line's end is no shorter list
    tmp = d / f"{CERT_NAME}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(FORMAT)
            f.write(json.dumps(head).encode("utf-8", "surrogatepass") + b"\n")
            f.write(data)
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        return False
    return True


def _output_paths(g: BuildGraph, p: PlanFacts, outputs: Mapping[str, Sequence[str]]) -> Sequence[str]:
    """Every job's outputs, one path each (in no set order): those the planner
    looked for (the jobs it found up to date) and those of the jobs that ran,
    when together they are all (at 100k psets 0.1 s less than making 200k
    paths again); else made from the graph."""
    jobs = g.jobs

    def paths(of: Iterable[Job]) -> list[str]:
        return [f"{job.rule}/{job.hash[:2]}/{job.hash}/{name}" for job in of for name in outputs[job.rule]]

    seen = p.uptodate_outputs
    if seen is not None:
        ran = paths(jobs[i] for i in p.run)
        if len(seen) + len(ran) == sum(len(r.job_ids) * len(outputs[r.name]) for r in g.rules):
            return [*seen, *ran]
    return paths(jobs)


def _says(path: Path, head: dict[str, Any]) -> bool:
    """Whether the certificate at path, whole, has this head already (but
    for the byte length of its paths, which the same graph makes the same)."""
    try:
        with open(path, "rb") as f:
            if f.readline() != FORMAT:
                return False
            old = json.loads(f.readline())
            rest = os.fstat(f.fileno()).st_size - f.tell()
    except (OSError, ValueError):
        return False
    return isinstance(old, dict) and old.pop("bytes", None) == rest and old == json.loads(json.dumps(head))


def check(sweepfile: Path, argv: Sequence[str]) -> int | None:
    """The number of jobs, all up to date, when the certificate vouches
    that a build of every job of this sweepfile would run nothing; None
    when it cannot (then plan as usual)."""
    root = sweepfile.resolve().parent
    d = state_dir(root)
    try:
        f = open(d / CERT_NAME, "rb")
    except OSError:
        return None
    try:
        with f:
            if f.readline() != FORMAT:
                return None
            head = json.loads(f.readline())
            if not _current(head, sweepfile, root, d):
                return None
            with BuildLock(root) as lock:
                try:
                    lock.acquire(argv)
                except SweepcError:
                    return None  # another build runs (the usual path says so), or the lock cannot be written
                if lock.dead_holder is not None or not _same_store(d / DB_NAME, head):
                    return None  # (a dead build: the usual path stops what it left running)
                return _outputs_there(f.read(), head)
    except (OSError, ValueError, TypeError, KeyError, IndexError, AttributeError):
        return None  # damaged, or not what this sweepc writes


def fingerprints_digest(fps: Sequence[str]) -> str | None:
    """One digest of the fingerprints, in job order (None when one is not a
    fingerprint): the certificate names its graph's with it, and the planner
    knows the fingerprints cache's again by it (packed_digest())."""
    try:
        packed = bytes.fromhex("".join(fps))
    except ValueError:
        return None
    return packed_digest(packed) if len(packed) == 16 * len(fps) else None


def packed_digest(packed: bytes) -> str:
    """fingerprints_digest() of fingerprints packed as 16 bytes each, as the planner's cache holds them."""
    try:  # (BLAKE2 as CPython builds it in: a command that plans need not load OpenSSL, as hashlib does)
        from _blake2 import blake2b
    except ImportError:  # pragma: no cover - a Python built without it
        from hashlib import blake2b
    return blake2b(packed, digest_size=16).hexdigest()


def vouched(root: Path, store: Store, graph: str, fps: str) -> int | None:
    """The store's generation now, when the certificate of the project at
    root was written at that generation, by this planner, for the graph
    `graph` (lang.project.graph_key()) whose fingerprints digest to `fps`
    (fingerprints_digest()): then the row of every job of that graph
    says done with its fingerprint, as when it was written, whatever else
    has changed since (the sweepfile, sources, outputs). None otherwise.
    The planner then knows those rows without reading them (Store.states())."""
    try:
        with open(state_dir(root) / CERT_NAME, "rb") as f:
            if f.readline() != FORMAT:
                return None
            head = json.loads(f.readline())
        if head["graph"] != graph or head["fps"] != fps or head["code"] != _code_id():
            return None
        store_id, generation = store.generation()
    except (OSError, ValueError, TypeError, KeyError, sqlite3.Error):
        return None
    if (store_id, generation) != (head["store"], head["generation"]) or type(generation) is not int:
        return None
    return generation


def _current(head: dict[str, Any], sweepfile: Path, root: Path, d: Path) -> bool:
    """Whether the graph, the planner and the source inputs are those certified, and no journal waits."""
    if head["code"] != _code_id() or head["key"] != sweepfile_key(sweepfile):
        return False
    with contextlib.suppress(OSError):
        if os.stat(d / _JOURNAL).st_size:
            return False  # ends of a killed build to record
    for p, size, mtime_ns in head["sources"]:
        try:
            st = os.stat(root / p)
        except OSError:
            return False
        if st.st_size != size or st.st_mtime_ns != mtime_ns:
            return False  # (touched, maybe edited: the planner tells which)
    return files_unchanged([(str(p), str(digest)) for p, digest in head["files"]])


def _same_store(path: Path, head: dict[str, Any]) -> bool:
    return identity(path) == (head["store"], head["generation"], str(SCHEMA_VERSION))


def _outputs_there(paths: bytes, head: dict[str, Any]) -> int | None:
    """head's job count when every certified output exists (as the planner looks: from the workdir, by its
    relative path rule/hh/hash/name, one a line), else None."""
    if len(paths) != head["bytes"]:
        return None  # cut short, or grown
    try:
        wd = os.open(head["workdir"], os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        # (bytes as they are in the file: at 100k psets, 0.1 s less than making
        # the paths from the hashes, and no encoding at each call)
        if paths and missing(paths.split(b"\n"), wd, first_only=True):
            return None
    finally:
        os.close(wd)
    n = head["jobs"]
    return n if isinstance(n, int) else None


def _code_id() -> str:
    """Size and mtime of every file of the plan stage: another planner may judge otherwise."""
    return " ".join(file_stamps(sorted(Path(__file__).resolve().parent.glob("*.py"))))
