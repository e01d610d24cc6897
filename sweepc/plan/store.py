"""The state store: SQLite in WAL mode under <project>/.sweepc/.

One row per job (rule, pset hash) in `jobs`; in `results`, one row per job
per run that ended done with results (the values of its results files, read
and checked when it ended: the history). Only the sweepc process writes it; batch
jobs write small completion records that sweepc ingests. The schema carries a
version: a store from another version or a corrupt file gives a clear
message and a safe way on, never a traceback.

Job statuses:
  done         finished with exit 0 and its outputs were there; the row holds
               the fingerprint it was built with
  planned      a build decided to run it and has not recorded an end yet; its
               outputs are not to be trusted (a build killed with SIGKILL
               leaves this behind, and the next build reruns the job); run_id
               names that build, which live_build() tells apart from a dead one
  failed       ended with a non-zero exit code (after its retries)
  timeout      stopped by the local backend at its rule's `time` limit (after
               its retries); SLURM time-outs are recorded `failed`, exit 143
  interrupted  stopped by Ctrl-C / SIGTERM
  queued       submitted to a batch scheduler, not started yet (as far as the
               completion records say)
  running      submitted to a batch scheduler, and its runner said it started
  timeout      stopped by the scheduler at its time limit (after its retries)
  skipped      not run by its batch task because an input was not done
  cancelled    cancelled in the scheduler (sweepc cancel)

Schema 3 added jobs.cpu_s (user + system CPU seconds); a schema-2 store is
upgraded in place when opened (the column starts empty). Schema 5 keeps the
values of a job's latest done run in its row (jobs.values_json) and makes
`results` a history appended to in the order jobs end: a row inserted at a
random place of a B-tree keyed by (rule, hash, run_id) cost ~17 us, most of
a 100k-job build's store time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import operator
import os
import signal
import sqlite3
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from sweepc.errors import StateError, SweepcError, UsageError, machine_error

# 2: the results table (every run's results, for `sweepc results --history`)
# 3: jobs.cpu_s (user + system CPU seconds)
# 4: the store's id and generation, which a no-op certificate names (plan/noop.py)
# 5: jobs.values_json (the latest done run's results), results an unkeyed history
SCHEMA_VERSION = 5
# The generation moves on with every write that changes a job row, whoever
# makes it: these triggers count each row a writer other than sweepc (sqlite3
# by hand) inserts, changes or deletes. sweepc's own writes drop them for the
# length of the transaction and count once (Store.transaction(jobs=True)): a
# trigger per row cost ~9 us a row, ~1 s of a 100k-job build.
_COUNT_ONE = "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'"
_MAKE_TRIGGERS = tuple(f"CREATE TRIGGER IF NOT EXISTS jobs_{ev.lower()} AFTER {ev} ON jobs BEGIN {_COUNT_ONE}; END"
                       for ev in ("INSERT", "UPDATE", "DELETE"))
_DROP_TRIGGERS = tuple(f"DROP TRIGGER IF EXISTS jobs_{ev.lower()}" for ev in ("INSERT", "UPDATE", "DELETE"))
_RESULTS_COLUMNS = """
    rule TEXT NOT NULL,
    hash TEXT NOT NULL,
    run_id TEXT NOT NULL,
    start REAL,
    end REAL,
    host TEXT,
    exit_code INTEGER,
    max_rss_mb REAL,
    attempts INTEGER,
    backend TEXT,
    backend_job_id TEXT,
    values_json TEXT NOT NULL
"""
# older schemas this sweepc upgrades in place: version -> SQL that makes it the next one
_UPGRADES = {
    2: "ALTER TABLE jobs ADD COLUMN cpu_s REAL;",
    3: "INSERT OR IGNORE INTO meta VALUES ('generation', '0');"
       "INSERT OR IGNORE INTO meta VALUES ('store_id', lower(hex(randomblob(16))));"
       + "".join(t + ";" for t in _MAKE_TRIGGERS),
    4: "ALTER TABLE jobs ADD COLUMN values_json TEXT;"
       "UPDATE jobs SET values_json = (SELECT r.values_json FROM results r "
       "WHERE r.rule = jobs.rule AND r.hash = jobs.hash AND r.run_id = jobs.run_id) WHERE status = 'done';"
       f"CREATE TABLE results_5 ({_RESULTS_COLUMNS});"
       "INSERT INTO results_5 SELECT * FROM results ORDER BY start, rule, hash;"
       "DROP TABLE results; ALTER TABLE results_5 RENAME TO results;",
}
STATE_DIR = ".sweepc"
CACHE_MAX_MB = 16  # SQLite's page cache for a big build at most (Store.cache_for; issue 11's memory budget)
DB_NAME = "state.db"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    rule TEXT NOT NULL,
    hash TEXT NOT NULL,
    status TEXT NOT NULL,
    fingerprint TEXT,
    cmd_hash TEXT,
    inputs_hash TEXT,
    exit_code INTEGER,
    start REAL,
    end REAL,
    host TEXT,
    max_rss_mb REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    backend TEXT,
    backend_job_id TEXT,
    run_id TEXT,
    params TEXT,
    cpu_s REAL,
    values_json TEXT,
    PRIMARY KEY (rule, hash)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    started REAL NOT NULL,
    ended REAL,
    argv TEXT,
    backend TEXT,
    git_commit TEXT,
    git_dirty INTEGER,
    ran INTEGER,
    failed INTEGER,
    uptodate INTEGER,
    status TEXT
);
CREATE TABLE IF NOT EXISTS results (""" + _RESULTS_COLUMNS + """);
CREATE TABLE IF NOT EXISTS sources (
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    digest TEXT NOT NULL
) WITHOUT ROWID;
"""


class Record(NamedTuple):
    rule: str
    hash: str
    status: str
    fingerprint: str | None
    cmd_hash: str | None
    inputs_hash: str | None
    exit_code: int | None
    start: float | None
    end: float | None
    host: str | None
    max_rss_mb: float | None
    attempts: int
    backend: str | None
    backend_job_id: str | None
    run_id: str | None
    params: str | None
    cpu_s: float | None = None


_COLUMNS = Record._fields
_SELECT = "SELECT " + ", ".join(_COLUMNS) + " FROM jobs"
# positions in a raw row, for the planner's hot loop
I_STATUS, I_FINGERPRINT, I_CMD_HASH, I_INPUTS_HASH = (_COLUMNS.index(c) for c in ("status", "fingerprint", "cmd_hash", "inputs_hash"))
_I_END = _COLUMNS.index("end")


# How many rows a RecordMap reads one by one before it reads them all at once
# (one by one costs ~5 us a row and no memory; all at once ~4 us a row and
# ~1 KB each: 250 MB at 200k rows, which a build that runs 21 jobs should not pay)
FETCH_LIMIT = 2000

Key = tuple[str, str]
Row = tuple[Any, ...]


class RecordMap(Mapping[Key, Record]):
    """(rule, hash) -> Record over raw rows.

    Rows become Records only when asked for: making 200k NamedTuples costs a
    fifth of a no-op build at 100k psets, and the planner needs four fields.
    Made with rows, it holds them. With a loader, the rows are read only
    when first asked for. With a fetcher too (Store.lookup()), a row asked
    for is read alone (a SELECT by primary key), up to FETCH_LIMIT of them;
    only past that (a big rebuild, `results` of a whole rule) are all rows
    read at once: the plan of a build that runs 21 of 200k jobs reads 21
    rows, not 200k.

    pin()/pin_absent(): a row as it was when planned. The plan's records are
    read after the build has marked its jobs `planned` (and recorded their
    ends); a pinned key always gives the row from before."""

    def __init__(self, rows: dict[Key, Row] | None, loader: Callable[[], dict[Key, Row]] | None = None,
                 fetch: Callable[[str, tuple[Any, ...]], list[Any]] | None = None) -> None:
        self._loaded = rows
        self._loader = loader
        self._fetch = fetch  # (query, args) -> rows, through whichever connection works
        self._pinned: dict[Key, Row | None] = {}
        # keys pinned as having no row: rule -> pset hashes (a set of the
        # graph's own strings, not a tuple per key: 200k new psets)
        self._absent: dict[str, set[str]] = {}
        self._left = FETCH_LIMIT

    @property
    def _rows(self) -> dict[Key, Row]:
        if self._loaded is None:
            self._loaded, self._loader = (self._loader() if self._loader is not None else {}), None
        return self._loaded

    def raw(self, key: Key) -> Row | None:
        pinned = self._pinned
        if key in pinned:
            return pinned[key]
        absent = self._absent.get(key[0])
        if absent is not None and key[1] in absent:
            return None
        if self._loaded is None and self._fetch is not None and self._left > 0:
            self._left -= 1
            got = self._fetch(_SELECT + " WHERE rule=? AND hash=?", key)
            # rows read one by one are kept as read: rows of jobs a build
            # does not run do not change while it runs
            row = pinned[key] = got[0] if got else None
            return row
        return self._rows.get(key)

    def pin(self, key: Key) -> None:
        """Keep the row of key as it is now (see the class)."""
        # (rows read all at once are kept as they were read: nothing to pin)
        if self._loaded is None and key not in self._pinned:
            self._pinned[key] = self.raw(key)

    def pin_absent(self, key: Key) -> None:
        """key has no row now (the planner knows it from Store.states())."""
        if self._loaded is None:
            absent = self._absent.get(key[0])
            if absent is None:
                absent = self._absent[key[0]] = set()
            absent.add(key[1])

    def ended_after(self, t: float, rules: Collection[str]) -> set[Key]:
        """The keys of the jobs of these rules that ended after t: one
        query, not a read per job (a gather over 100k jobs asks)."""
        if self._loaded is None and self._fetch is not None:
            marks = ", ".join("?" * len(rules))
            got = {(r, h) for r, h in self._fetch(f"SELECT rule, hash FROM jobs WHERE end > ? AND rule IN ({marks})", (t, *rules))}
        else:
            got = {k for k, r in self._rows.items() if k[0] in rules and _ended_after(r, t)}
        # (for the planner: a row pinned then is the row in the store then)
        pinned, absent = self._pinned, self._absent
        if absent:
            got = {k for k in got if k[1] not in absent.get(k[0], ())}
        return {k for k in got if k not in pinned or _ended_after(pinned[k], t)} if pinned else got

    def __getitem__(self, key: Key) -> Record:
        row = self.raw(key)
        if row is None:
            raise KeyError(key)
        return Record(*row)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, tuple) and len(key) == 2 and self.raw(key) is not None

    def __iter__(self) -> Iterator[Key]:
        rows, pinned, absent = self._rows, self._pinned, self._absent
        for k in rows:
            if (k not in pinned or pinned[k] is not None) and not (absent and k[1] in absent.get(k[0], ())):
                yield k
        for k, r in pinned.items():
            if r is not None and k not in rows:
                yield k

    def __len__(self) -> int:
        return sum(1 for _ in self)


def _ended_after(row: Row | None, t: float) -> bool:
    end = None if row is None else row[_I_END]
    return end is not None and end > t


class Outcome(NamedTuple):
    """The end of one job, as a backend reports it."""

    rule: str
    hash: str
    status: str  # done | failed | timeout | interrupted | cancelled
    fingerprint: str | None
    cmd_hash: str | None
    inputs_hash: str | None
    exit_code: int | None
    start: float | None
    end: float | None
    host: str | None
    max_rss_mb: float | None
    attempts: int
    backend: str
    backend_job_id: str | None
    run_id: str
    # the flattened values of a done job's results files (JSON text), read and
    # checked when the job ended; kept in the results table for the history
    results: str | None = None
    cpu_s: float | None = None  # user + system CPU time of the job and its descendants


class HistoryRow(NamedTuple):
    """One run's results of one job, as recorded when it ended."""

    rule: str
    hash: str
    run_id: str
    start: float | None
    end: float | None
    host: str | None
    exit_code: int | None
    max_rss_mb: float | None
    attempts: int | None
    backend: str | None
    backend_job_id: str | None
    values_json: str


@dataclass(frozen=True, slots=True)
class Run:
    run_id: str
    seq: int
    started: float
    ended: float | None
    argv: str
    backend: str | None
    git_commit: str | None
    git_dirty: bool | None
    ran: int | None
    failed: int | None
    uptodate: int | None
    status: str | None


def state_dir(root: Path) -> Path:
    return root / STATE_DIR


class Store:
    """A connection to a project's state store."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self.conn = conn
        self.path = path
        # True when there was no store (or an empty file) and this one starts
        # from nothing: outputs already in the workdir are then unknown to it
        self.new = False
        # The store's generation as this connection last knew it whole: read
        # by states() (before the rows), moved on by each of its own writes;
        # None once someone else may have written in between. Each change of
        # a job row counts it up (a trigger), so a no-op certificate
        # (plan/noop.py) names the rows a plan saw.
        self.seen: int | None = None

    # -- opening ---------------------------------------------------------
    @classmethod
    def open(cls, root: Path, create: bool = True) -> Store:
        d = state_dir(root)
        path = d / DB_NAME
        if not path.exists():
            if not create:
                return cls(sqlite3.connect(":memory:"), path)._init()
            try:
                d.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise _cannot_write(d, e) from None
        conn: sqlite3.Connection | None = None
        try:
            conn = sqlite3.connect(path, timeout=30.0, isolation_level=None)
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                store = cls(conn, path)
                return store._init()
            except BaseException:
                conn.close()  # fix: a refused store (wrong schema, corrupt) left its connection open
                raise
        except sqlite3.OperationalError as e:
            if "not a database" not in str(e):
                if create:
                    raise _cannot_write(path, e) from None
                readonly = cls._open_immutable(path)
                if readonly is not None:
                    return readonly
                raise StateError(f"the state store {_rel(path, root)} cannot be used: {e}") from None
            raise StateError(
                f"the state store {_rel(path, root)} is corrupt ({e}).\n"
                f"  hint: move it away to start over (every job will then rebuild): mv {_rel(path, root)} {_rel(path, root)}.bad"
            ) from None
        except sqlite3.DatabaseError as e:
            raise StateError(
                f"the state store {_rel(path, root)} is corrupt ({e}).\n"
                f"  hint: move it away to start over (every job will then rebuild): mv {_rel(path, root)} {_rel(path, root)}.bad"
            ) from None

    @classmethod
    def _open_immutable(cls, path: Path) -> Store | None:
        """For reading only (status, results): a store in a read-only folder,
        where SQLite cannot make the WAL index it wants. Without locking: fine
        for a store nobody can write."""
        try:
            conn = sqlite3.connect(path.resolve().as_uri() + "?immutable=1", uri=True)
        except (sqlite3.Error, ValueError, OSError):
            return None
        try:
            return cls(conn, path)._init()
        except (sqlite3.Error, StateError):
            conn.close()
            return None

    def _init(self) -> Store:
        c = self.conn
        tables = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        shown = _rel(self.path)
        if "meta" in tables:
            row = c.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            try:
                version = int(row[0]) if row else 0
            except (TypeError, ValueError):  # fix: a non-number here was a traceback
                version = 0
            while version in _UPGRADES and version < SCHEMA_VERSION:
                c.executescript(
                    "BEGIN IMMEDIATE;" + _UPGRADES[version]
                    + f"UPDATE meta SET value='{version + 1}' WHERE key='schema_version'; COMMIT;"
                )
                version += 1
            if version != SCHEMA_VERSION:
                who = "a newer" if version > SCHEMA_VERSION else "an older"
                raise StateError(
                    f"the state store {shown} was written by {who} sweepc (schema {version}; this sweepc reads schema {SCHEMA_VERSION}).\n"
                    + (
                        "  hint: upgrade sweepc, or move the store away to start over (every job will then rebuild)"
                        if version > SCHEMA_VERSION
                        else "  hint: move the store away to start over (every job will then rebuild)"
                    )
                    + f": mv {shown} {shown}.v{version}"
                )
            # a store that never recorded a job or a run (a dry run made its schema) is as good as new
            self.new = not c.execute("SELECT EXISTS (SELECT 1 FROM jobs) OR EXISTS (SELECT 1 FROM runs)").fetchone()[0]
        elif tables:
            raise StateError(f"{shown} is not a sweepc state store.\n  hint: move it away: mv {shown} {shown}.bad")
        else:
            # executescript commits on its own, so the script carries its own transaction
            c.executescript(
                "BEGIN IMMEDIATE;" + _SCHEMA + _UPGRADES[3]
                + f"INSERT OR REPLACE INTO meta VALUES ('schema_version', '{SCHEMA_VERSION}'); COMMIT;"
            )
            self.new = True
        return self

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.conn.close()

    @contextlib.contextmanager
    def transaction(self, jobs: bool = False) -> Iterator[sqlite3.Connection]:
        """One write, all or nothing. A full disk or a read-only store raises
        MachineError (naming the file) after the rollback: nothing of the
        transaction is kept, so nothing is recorded that did not happen.

        jobs: the write may change job rows; the generation then moves on by
        one if it did (any change counts: the transaction changes job rows
        and what goes with them), not by one per row, with the counting
        triggers dropped until the commit, which makes them again (no other
        connection sees the store without them: a transaction is atomic)."""
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            raise self._write_error(e) from None
        seen = None
        try:
            # whether anybody else changed a job row since this connection last knew the store
            known = self.seen is not None and self._generation() == self.seen
            if jobs:
                for stmt in _DROP_TRIGGERS:
                    self.conn.execute(stmt)
                changes = self.conn.total_changes
            yield self.conn
            if jobs:
                if self.conn.total_changes != changes:
                    self.conn.execute(_COUNT_ONE)
                for stmt in _MAKE_TRIGGERS:
                    self.conn.execute(stmt)
            if known:
                seen = self._generation()
        except BaseException as e:
            with contextlib.suppress(sqlite3.Error):  # SQLite may have rolled back already (disk full)
                self.conn.execute("ROLLBACK")
            if isinstance(e, sqlite3.Error):
                raise self._write_error(e) from None
            raise
        else:
            try:
                self.conn.execute("COMMIT")
            except sqlite3.Error as e:
                with contextlib.suppress(sqlite3.Error):
                    self.conn.execute("ROLLBACK")
                raise self._write_error(e) from None
            self.seen = seen

    def _write_error(self, e: sqlite3.Error) -> SweepcError:
        return _cannot_write(self.path, e)

    # -- reading -----------------------------------------------------------
    def records(self, rule: str | None = None, status: str | None = None) -> RecordMap:
        """Every job row in one read (the no-op build path reads the store once);
        or those of one rule, or with one status."""
        q, args = (_SELECT, ()) if rule is None else (_SELECT + " WHERE rule=?", (rule,))
        if status is not None:
            q, args = q + (" AND" if rule is not None else " WHERE") + " status=?", (*args, status)
        try:
            return RecordMap({(r[0], r[1]): r for r in self.conn.execute(q, args)})
        except sqlite3.DatabaseError as e:
            raise _unreadable(self.path, e) from None

    def has_jobs(self) -> bool:
        """Whether the store has a row of any job."""
        return bool(self.conn.execute("SELECT EXISTS (SELECT 1 FROM jobs)").fetchone()[0])

    def has_status(self, status: str) -> bool:
        """Whether any job has this status (one indexed-less probe, stops at the first)."""
        return self.conn.execute("SELECT 1 FROM jobs WHERE status = ? LIMIT 1", (status,)).fetchone() is not None

    def unfinished(self) -> dict[tuple[str, str], str]:
        """(rule, hash) -> status of the jobs handed to a scheduler and not
        taken back in (`queued`, `running`): what `sweepc status` tells of
        them without planning them."""
        rows = self._query("SELECT rule, hash, status FROM jobs WHERE status IN ('queued', 'running')")
        return {(r, h): st for r, h, st in rows}

    def retried(self) -> set[tuple[str, str]]:
        """The jobs whose last run was a second attempt or later."""
        return {(r, h) for r, h in self._query("SELECT rule, hash FROM jobs WHERE attempts > 1")}

    def _query(self, query: str) -> list[Any]:
        try:
            return self.conn.execute(query).fetchall()
        except sqlite3.DatabaseError as e:
            raise _unreadable(self.path, e) from None

    def states(self) -> dict[str, dict[str, str]]:
        """rule -> pset hash -> the fingerprint of a `done` job, or "!" + the
        status of any other: all the planner needs to see that a job is up to
        date, in a third of the memory and time of records()."""
        out: dict[str, dict[str, str]] = {}
        try:
            # first: a write between the two reads makes the rows newer than the
            # generation (a certificate of it is then void), never older
            self.seen = self._generation()
            rules = [r[0] for r in self.conn.execute("SELECT DISTINCT rule FROM jobs")]
            for rule in rules:
                out[rule] = dict(self.conn.execute(
                    "SELECT hash, CASE WHEN status = 'done' AND fingerprint IS NOT NULL THEN fingerprint ELSE '!' || status END "
                    "FROM jobs WHERE rule = ?", (rule,)))
        except sqlite3.DatabaseError as e:
            raise _unreadable(self.path, e) from None
        return out

    def generation(self) -> tuple[str, int]:
        """The store's id (random, made with it) and its generation now (how
        many job rows were inserted, changed or deleted in its life)."""
        store_id, generation, _ = _identity(self.conn)
        return store_id, generation

    def _generation(self) -> int:
        row = self.conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        return int(row[0]) if row is not None else -1

    def lookup(self) -> RecordMap:
        """records(), each row read when first asked for (by primary key; all
        at once past FETCH_LIMIT): what the planner reads. Works on after
        this store is closed, or from another thread, through a read-only
        connection of its own."""
        conns: list[sqlite3.Connection] = [self.conn]
        path = self.path

        def fetch(query: str, args: tuple[Any, ...]) -> list[Any]:
            try:
                try:
                    return conns[-1].execute(query, args).fetchall()
                except sqlite3.ProgrammingError:  # closed, or used from another thread
                    own = _reader(path)
                    if own is None:
                        return []  # no store file: no rows
                    conns.append(own)
                    return own.execute(query, args).fetchall()
            except sqlite3.DatabaseError as e:
                raise _unreadable(path, e) from None

        return RecordMap(None, lambda: {(r[0], r[1]): r for r in fetch(_SELECT, ())}, fetch)

    def records_later(self) -> RecordMap:
        """records(), read on first use (by then through a connection of its
        own: this one may be closed)."""
        path = self.path
        if not path.exists():
            return RecordMap({})

        def load() -> dict[tuple[str, str], tuple[Any, ...]]:
            try:
                conn = sqlite3.connect(path, timeout=30.0)
            except sqlite3.Error:
                return {}
            try:
                return {(r[0], r[1]): r for r in conn.execute(_SELECT)}
            except sqlite3.Error:
                return {}
            finally:
                conn.close()

        return RecordMap(None, load)

    def sources(self) -> dict[str, tuple[int, int, str]]:
        return {r[0]: (r[1], r[2], r[3]) for r in self.conn.execute("SELECT path, size, mtime_ns, digest FROM sources")}

    def history(self, rule: str) -> Iterator[HistoryRow]:
        """Every recorded run's results of the jobs of one rule, oldest first,
        as read (nothing held: at 100k jobs a list of them was ~60 MB)."""
        rows = self.conn.execute(
            "SELECT " + ", ".join(HistoryRow._fields) + " FROM results WHERE rule=? AND rowid IN "
            "(SELECT MAX(rowid) FROM results WHERE rule=? GROUP BY hash, run_id) ORDER BY start, hash", (rule, rule)
        )
        return map(HistoryRow._make, rows)

    def latest_results(self, rule: str) -> dict[str, tuple[str, float | None]]:
        """pset hash -> (the values of its results files as recorded when it
        ended, its end time) for each job of `rule` whose latest run ended
        done with results: one query, for the results table (which still
        reads a file changed since; see results/table.py)."""
        try:
            rows = self.conn.execute(
                "SELECT hash, values_json, end FROM jobs WHERE rule = ? AND status = 'done' AND values_json IS NOT NULL",
                (rule,))
            return {h: (v, end) for h, v, end in rows}
        except sqlite3.DatabaseError as e:
            raise _unreadable(self.path, e) from None

    def measured_rows(self, rule: str) -> Iterator[tuple[str, str, float | None, float | None, float | None, float | None]]:
        """(hash, status, start, end, max_rss_mb, cpu_s) of each recorded job
        of `rule`, as read: what `sweepc resources` needs (records() of 100k
        jobs held ~60 MB more)."""
        try:
            yield from self.conn.execute("SELECT hash, status, start, end, max_rss_mb, cpu_s FROM jobs WHERE rule = ?", (rule,))
        except sqlite3.DatabaseError as e:
            raise _unreadable(self.path, e) from None

    def job_rows(self, rule: str) -> Iterator[tuple[Any, ...]]:
        """One row per recorded job of `rule`, as read (nothing held):
        (hash, start, end, host, exit_code, attempts, max_rss_mb, cpu_s,
        run_id, values_json), values_json being what latest_results() holds
        for it (the values its latest run recorded when it ended done with
        results), else None. What the results table needs of the store, in
        one query: at 100k jobs, records() and latest_results() held ~125 MB."""
        try:
            yield from self.conn.execute(
                "SELECT j.hash, j.start, j.end, j.host, j.exit_code, j.attempts, j.max_rss_mb, j.cpu_s, j.run_id, "
                "CASE WHEN j.status = 'done' THEN j.values_json END FROM jobs j WHERE j.rule = ?", (rule,))
        except sqlite3.DatabaseError as e:
            raise _unreadable(self.path, e) from None

    def rows_on_demand(self) -> RecordMap:
        """records(), each row read when first asked for (one primary-key
        lookup), not all at once: for a command that plans only to read
        (status, results, report), where the planner asks for the few jobs
        that are not up to date. Iterating it reads every row."""
        return _RowsOnDemand(self)

    def runs(self) -> list[Run]:
        rows = self.conn.execute(
            "SELECT run_id, seq, started, ended, argv, backend, git_commit, git_dirty, ran, failed, uptodate, status FROM runs ORDER BY seq"
        )
        return [Run(r[0], r[1], r[2], r[3], r[4], r[5], r[6], None if r[7] is None else bool(r[7]), r[8], r[9], r[10], r[11]) for r in rows]

    # -- writing -----------------------------------------------------------
    def put_sources(self, rows: Iterable[tuple[str, int, int, str]]) -> None:
        rows = list(rows)
        if rows:
            with self.transaction() as c:
                c.executemany("INSERT OR REPLACE INTO sources VALUES (?, ?, ?, ?)", rows)

    def cache_for(self, jobs: int) -> None:
        """A build is about to record the ends of `jobs` jobs: SQLite's page
        cache (2 MB by default) is made big enough for their rows, about
        1 KiB a job, at most CACHE_MAX_MB. Rows are keyed by pset hash, in
        no order, so a commit of a few hundred ends touches as many pages;
        with the default cache each one is read again from the file (at 100k
        jobs ~10 us a job). The cache only takes memory for pages it holds."""
        kib = min(CACHE_MAX_MB * 1024, jobs)
        if kib > 2000:
            with contextlib.suppress(sqlite3.Error):
                self.conn.execute(f"PRAGMA cache_size=-{int(kib)}")

    def mark_planned(self, jobs: Iterable[tuple[str, str, str]], run_id: str) -> None:
        """Before anything runs: the jobs of this build are no longer trusted.

        (rule, hash, params_json). Keeps the old fingerprints for --explain; a
        build killed before it records an end leaves 'planned' behind."""
        # in key order, as record(): the B-tree grows at its end, not at random
        # places (100k new jobs: 1.7 -> 1.5 s, the sort included)
        rows = sorted(jobs, key=_RULE_HASH)
        with self.transaction(jobs=True) as c:
            c.executemany(
                "INSERT INTO jobs (rule, hash, status, params, run_id) VALUES (?, ?, 'planned', ?, ?) "
                "ON CONFLICT (rule, hash) DO UPDATE SET status='planned', params=excluded.params, run_id=excluded.run_id",
                ((r, h, p, run_id) for r, h, p in rows),
            )

    def record(self, outcomes: Sequence[Outcome]) -> None:
        if not outcomes:
            return
        if len(outcomes) > 1:
            # in key order (a stable sort: a job's later outcome still comes
            # last): the B-tree's pages are then walked in order, not at random
            # (100k rows in commits of 16k, measured outside sweepc: 18.7 -> 15 us a row)
            outcomes = sorted(outcomes, key=_RULE_HASH)
        with self.transaction(jobs=True) as c:
            c.executemany(
                "UPDATE jobs SET status=?, fingerprint=COALESCE(?, fingerprint), cmd_hash=COALESCE(?, cmd_hash), "
                "inputs_hash=COALESCE(?, inputs_hash), exit_code=?, start=?, end=?, host=?, max_rss_mb=?, cpu_s=?, "
                "attempts=?, backend=?, backend_job_id=?, run_id=?, values_json=? WHERE rule=? AND hash=?",
                (
                    (
                        o.status, o.fingerprint if o.status == "done" else None, o.cmd_hash if o.status == "done" else None,
                        o.inputs_hash if o.status == "done" else None, o.exit_code, o.start, o.end, o.host, o.max_rss_mb, o.cpu_s,
                        o.attempts, o.backend, o.backend_job_id, o.run_id, o.results if o.status == "done" else None,
                        o.rule, o.hash,
                    )
                    for o in outcomes
                ),
            )
            # the history: one row per job per run that produced results, appended
            # (history() reads the last row of a job and run, should one come twice)
            c.executemany(
                "INSERT INTO results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    (o.rule, o.hash, o.run_id, o.start, o.end, o.host, o.exit_code, o.max_rss_mb, o.attempts,
                     o.backend, o.backend_job_id, o.results)
                    for o in outcomes if o.status == "done" and o.results is not None
                ),
            )

    def set_queued(self, rows: Iterable[tuple[str, str, str, int]], run_id: str | None = None) -> None:
        """(rule, hash, backend job id, the attempt it is on) of jobs handed
        to a scheduler, by the build run_id (the submission whose completion
        records count)."""
        with self.transaction(jobs=True) as c:
            c.executemany(
                "UPDATE jobs SET status='queued', backend='slurm', backend_job_id=?, run_id=COALESCE(?, run_id), attempts=? "
                "WHERE rule=? AND hash=?",
                ((j, run_id, a, r, h) for r, h, j, a in rows),
            )

    def set_status(self, rows: Iterable[tuple[str, str]], status: str) -> None:
        with self.transaction(jobs=True) as c:
            c.executemany("UPDATE jobs SET status=? WHERE rule=? AND hash=?", ((status, r, h) for r, h in rows))

    def delete(self, keys: Iterable[tuple[str, str]]) -> None:
        with self.transaction(jobs=True) as c:
            c.executemany("DELETE FROM jobs WHERE rule=? AND hash=?", keys)

    def begin_run(self, argv: Sequence[str], backend: str, git_commit: str | None, git_dirty: bool | None,
                  run_id: str | None = None) -> tuple[str, int]:
        run_id = run_id or new_run_id()
        with self.transaction() as c:
            seq = c.execute("SELECT COALESCE(MAX(seq), -1) + 1 FROM runs").fetchone()[0]
            c.execute(
                "INSERT INTO runs (run_id, seq, started, argv, backend, git_commit, git_dirty, status) VALUES (?, ?, ?, ?, ?, ?, ?, 'running')",
                (run_id, seq, time.time(), json.dumps(list(argv)), backend, git_commit, None if git_dirty is None else int(git_dirty)),
            )
        return run_id, int(seq)

    def end_dead_runs(self) -> int:
        """Runs still `running` are `killed`: called by a build that holds the
        lock, so no build of them runs any more (kill -9, the out-of-memory
        killer, a reboot: they could not record how they ended). How many."""
        if not self.conn.execute("SELECT EXISTS (SELECT 1 FROM runs WHERE status = 'running')").fetchone()[0]:
            return 0  # (no write in the usual case)
        with self.transaction() as c:
            return int(c.execute("UPDATE runs SET status = 'killed' WHERE status = 'running'").rowcount)

    def end_run(self, run_id: str, ran: int, failed: int, uptodate: int, status: str) -> None:
        with self.transaction() as c:
            c.execute(
                "UPDATE runs SET ended=?, ran=?, failed=?, uptodate=?, status=? WHERE run_id=?",
                (time.time(), ran, failed, uptodate, status, run_id),
            )


class LookupStore(Store):
    """A Store for commands that plan only to read (status, results,
    report): its records() (and records_later()) reads rows one at a time
    as the planner or Plan.state() asks for them (rows_on_demand()). At
    100k jobs with a few not up to date, every row at once was ~100 MB."""

    def records(self, rule: str | None = None, status: str | None = None) -> RecordMap:
        if rule is None and status is None:
            return self.rows_on_demand()
        return super().records(rule, status)

    def records_later(self) -> RecordMap:
        return self.rows_on_demand()


class _RowsOnDemand(RecordMap):
    """Store.rows_on_demand(): a row per key from the store's connection
    (kept once read); once that is closed, from records_later() (every row,
    through a connection of its own)."""

    _ONE = _SELECT + " WHERE rule = ? AND hash = ?"

    def __init__(self, store: Store) -> None:
        super().__init__({})
        self._store = store
        self._got: dict[tuple[str, str], tuple[Any, ...] | None] = {}
        self._all: RecordMap | None = None

    def _every(self) -> RecordMap:
        if self._all is None:
            self._all = Store.records_later(self._store)
        return self._all

    def raw(self, key: tuple[str, str]) -> tuple[Any, ...] | None:
        try:
            return self._got[key]
        except KeyError:
            pass
        try:
            row: tuple[Any, ...] | None = self._store.conn.execute(self._ONE, key).fetchone()
        except sqlite3.ProgrammingError:  # closed
            row = self._every().raw(key)
        except sqlite3.DatabaseError as e:
            raise _unreadable(self._store.path, e) from None
        self._got[key] = row
        return row

    def __getitem__(self, key: tuple[str, str]) -> Record:
        row = self.raw(key)
        if row is None:
            raise KeyError(key)
        return Record(*row)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, tuple) and len(key) == 2 and self.raw((key[0], key[1])) is not None

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._every())

    def __len__(self) -> int:
        return len(self._every())


def _identity(conn: sqlite3.Connection) -> tuple[str, int, str]:
    """The store's id, generation and schema version (meta)."""
    got = dict(conn.execute("SELECT key, value FROM meta WHERE key IN ('store_id', 'generation', 'schema_version')").fetchall())
    return str(got.get("store_id", "")), int(got.get("generation", -1)), str(got.get("schema_version", ""))


def identity(path: Path) -> tuple[str, int, str] | None:
    """_identity() of the store file at path, read without opening a Store
    (no schema check, nothing made): a no-op certificate's check. None when
    it cannot be read."""
    try:
        conn = sqlite3.connect(path, timeout=30.0)
    except sqlite3.Error:
        return None
    try:
        return _identity(conn)
    except (sqlite3.Error, ValueError):
        return None
    finally:
        conn.close()


def _reader(path: Path) -> sqlite3.Connection | None:
    """A connection for reading the store at path, usable from any thread;
    immutable when the folder cannot be written (see Store._open_immutable);
    None when there is no store file."""
    if not path.exists():
        return None
    for target, uri in ((str(path), False), (path.resolve().as_uri() + "?immutable=1", True)):
        conn: sqlite3.Connection | None = None
        try:
            conn = sqlite3.connect(target, timeout=30.0, uri=uri, check_same_thread=False)
            conn.execute("SELECT 1 FROM jobs LIMIT 1").fetchall()
            return conn
        except (sqlite3.Error, ValueError, OSError):
            if conn is not None:
                conn.close()
    return None


def _cannot_write(path: Path, e: BaseException) -> SweepcError:
    """A failed write of sweepc's own state, as a message naming the file."""
    shown, folder = _rel(path), path.parent
    while not folder.is_dir() and folder.parent != folder:  # (.sweepc/ could not be made: name it and its folder)
        shown, folder = _rel(folder) + "/", folder.parent
    err = machine_error(shown, _rel(folder) + "/", e)
    if err is not None:
        return err
    return StateError(f"cannot write {_rel(path)} ({e}).\n  hint: check the disk and the permissions of {_rel(path.parent)}/")


_RULE_HASH = operator.itemgetter(0, 1)  # an Outcome's (rule, hash)


def new_run_id() -> str:
    """A random UUID (version 4), as str(uuid.uuid4()) makes it: the uuid
    module imports platform, ~5 ms of every build that runs something."""
    b = bytearray(os.urandom(16))
    b[6] = (b[6] & 0x0F) | 0x40  # version 4
    b[8] = (b[8] & 0x3F) | 0x80  # the RFC 4122 variant
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _unreadable(path: Path, e: sqlite3.DatabaseError) -> StateError:
    """The error for a store whose rows cannot be read."""
    shown = _rel(path)
    return StateError(f"the state store {shown} cannot be read ({e}).\n  hint: move it away to start over: mv {shown} {shown}.bad")


def _rel(path: Path, root: Path | None = None) -> str:
    """`path` as the user can type it from where they are.

    Fix: this was relative to the project root, so the "mv ..." hints were wrong when
    sweepc ran from elsewhere (-C DIR, -f FILE), and the schema message used the
    absolute path instead: both now use a path relative to the current folder when
    the store is under it, else the absolute path."""
    try:
        return str(path.relative_to(Path.cwd()))
    except (ValueError, OSError):
        return str(path)


# -- the build lock ---------------------------------------------------------


class BuildLock:
    """One build per project at a time. flock is released by the kernel when a
    process dies, so a lock left by a dead build is simply taken over."""

    def __init__(self, root: Path) -> None:
        self.path = state_dir(root) / "build.lock"
        self.fd: int | None = None
        self.dead_holder: dict[str, Any] | None = None

    def acquire(self, argv: Sequence[str]) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError as e:
            raise _cannot_write(self.path, e) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise StateError(
                f"another sweepc build is running in this project ({holder}).\n"
                "  hint: wait for it to finish, or stop it with Ctrl-C / kill"
            ) from None
        # A release empties the file; something left in it means the last
        # holder died without releasing (SIGKILL, power cut): its jobs may live on.
        try:
            left = json.loads(os.pread(fd, 65536, 0).decode() or "null")
        except (OSError, ValueError):
            left = None
        self.dead_holder = left if isinstance(left, dict) and left.get("pid") != os.getpid() else None
        self.info: dict[str, Any] = {"pid": os.getpid(), "host": os.uname().nodename, "started": time.time(), "argv": list(argv)}
        self.fd = fd
        try:
            self._write()
        except SweepcError:
            self.release()
            raise

    def set_run_id(self, run_id: str) -> None:
        """Name the run this build records its jobs under, so that a dry run
        or `status` meanwhile can tell its `planned` jobs from a dead build's."""
        self.info["run_id"] = run_id
        self._write()

    def _write(self) -> None:
        if self.fd is not None:
            try:
                os.ftruncate(self.fd, 0)
                os.pwrite(self.fd, json.dumps(self.info).encode(), 0)
            except OSError as e:
                raise _cannot_write(self.path, e) from None

    def release(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self.fd, 0)
                fcntl.flock(self.fd, fcntl.LOCK_UN)
                os.close(self.fd)
            self.fd = None

    def __enter__(self) -> BuildLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


@dataclass(frozen=True, slots=True)
class LiveBuild:
    """The build that holds a project's lock right now."""

    pid: int
    started: float
    run_id: str | None
    argv: tuple[str, ...] = ()  # its command line

    def text(self) -> str:
        return f"being built by the running build (pid {self.pid}, since {time.strftime('%H:%M:%S', time.localtime(self.started))})"


def running_run(root: Path) -> tuple[bool, str | None]:
    """Whether a build of this project may be running now (its lock file says
    so, and its process lives, or it is on another machine, where that
    cannot be checked), and its run id when it has one. Takes no lock."""
    try:
        info = _lock_info(root)
    except FileNotFoundError:
        return False, None
    except (OSError, ValueError):
        return True, None  # unreadable: say nothing of any run
    if not isinstance(info, dict):
        return False, None  # a released lock leaves the file empty
    run_id = info.get("run_id") if isinstance(info.get("run_id"), str) else None
    if info.get("host") != os.uname().nodename or info.get("pid") == os.getpid():
        return True, run_id
    return _holder(info) is not None, run_id


def runs_now(root: Path, runs: list[Run]) -> list[Run]:
    """The runs as they are now: one still `running` that no build runs any
    more died without recording how it ended (kill -9, the out-of-memory
    killer, a reboot) and is shown `killed`, as the next build records it
    (Store.end_dead_runs)."""
    maybe, live_id = running_run(root)

    def dead(r: Run) -> bool:
        return r.status == "running" and (not maybe or (live_id is not None and r.run_id != live_id))

    return [dataclasses.replace(r, status="killed") if dead(r) else r for r in runs]


def live_build(root: Path) -> LiveBuild | None:
    """The other sweepc process on this machine building this project now,
    from the lock file (a released lock leaves it empty; a dead holder's pid
    is gone or belongs to a process started after it). Takes no lock."""
    try:
        info = _lock_info(root)
    except (OSError, ValueError):
        return None
    return _holder(info) if isinstance(info, dict) else None


def _lock_info(root: Path) -> object:
    """What the lock file says (JSON; None when it is empty). OSError, ValueError."""
    with open(state_dir(root) / "build.lock", "rb") as f:
        return json.loads(f.read(65536).decode() or "null")


def _holder(info: dict[str, Any]) -> LiveBuild | None:
    """The live build the lock file's info names: another process, on this machine."""
    import psutil

    pid, started, run_id = info.get("pid"), info.get("started"), info.get("run_id")
    if not isinstance(pid, int) or not isinstance(started, (int, float)) or pid == os.getpid():
        return None
    if info.get("host") != os.uname().nodename:
        return None  # another machine's build on a shared file system: cannot be checked from here
    try:
        proc = psutil.Process(pid)
        if proc.create_time() > started + 1.0:
            return None  # the pid was recycled
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None  # it has exited; its parent has not reaped it yet
    except psutil.Error:
        return None
    argv = info.get("argv")
    return LiveBuild(pid, float(started), run_id if isinstance(run_id, str) else None,
                     tuple(str(a) for a in argv) if isinstance(argv, list) else ())


STOP_TIMEOUT_S = 30.0


def stop_build(root: Path, keep: Callable[[Sequence[str]], bool]) -> LiveBuild | None:
    """SIGTERM the build that holds this project's lock on this machine
    (unless keep(its command line)) and wait until it has let go of the lock:
    it stops as after Ctrl-C, recording the jobs it was running as
    interrupted. None when no such build runs."""
    b = live_build(root)
    if b is None or keep(b.argv):
        return None

    def holds() -> bool:
        now = live_build(root)
        return now is not None and now.pid == b.pid

    terminate(b.pid, holds, "the build running in this project")
    return b


def terminate(pid: int, alive: Callable[[], bool], what: str) -> None:
    """SIGTERM process pid and wait while alive() (at most STOP_TIMEOUT_S);
    `what` names it in the errors (UsageError)."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    except PermissionError:
        raise UsageError(f"{what} (pid {pid}) is another user's; sweepc cannot stop it") from None
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while alive():
        if time.monotonic() > deadline:
            raise UsageError(f"{what} (pid {pid}) did not stop within {STOP_TIMEOUT_S:.0f} s of SIGTERM",
                             f"stop it with: kill -KILL {pid}; then run sweepc cancel again")
        time.sleep(0.05)


def _read_holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 65536, 0).decode() or "{}")
    except (OSError, ValueError):
        return "holder unknown"
    if not info:
        return "holder unknown"
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.get("started", 0)))
    cmd = " ".join(info.get("argv", [])) or "sweepc"
    return f"pid {info.get('pid')} on {info.get('host')}, started {started}: {cmd}"
