"""The results table: one row per job of a rule, as a pandas DataFrame.

Derived each time from the graph, the state store and the job folders, so it
can never disagree with them. Columns: the job's parameters, psweep's
bookkeeping columns, sweepc's own, then the values of the rule's `results:`
JSON files (nested keys flattened with dots).

Three shapes: `table()` (one rule, the latest run of each job), `history()`
(one rule, one row per job per run that produced results, from the store)
and `one_table()` (every per-pset rule side by side, one row per pset of the
main sweep).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import json
import math
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO, TypeVar

import numpy as np
import pandas as pd

from sweepc.backends.jobdir import BOOKKEEPING, check_end, flatten, read_results
from sweepc.errors import UsageError, did_you_mean, listing
from sweepc.lang.graph import LOG_NAME, BuildGraph, RuleSpec
from sweepc.values import join_key
from sweepc.backends.local.limits import time_limit_reached
from sweepc.plan.planner import Plan
from sweepc.plan.selection import select
from sweepc.plan.store import HistoryRow, Record, RecordMap, Run

__all__ = ["BOOKKEEPING", "flatten", "table", "history", "one_table", "one_table_jobs", "display_columns", "write", "write_to"]

# _status values
DONE = "done"
STALE = "stale"
RESULTS_MISSING = "results missing"
RESULTS_MALFORMED = "results malformed"


def default_rule(g: BuildGraph) -> RuleSpec:
    """The last per-pset rule (over a sweep, no `by`) in graph order; else the last rule."""
    per_pset = [r for r in g.rules if r.over is not None and not r.by]
    if per_pset:
        with_results = [r for r in per_pset if r.results]
        return (with_results or per_pset)[-1]
    if not g.rules:
        raise UsageError("the sweepfile has no rules", "add a rule: rule NAME over SWEEP: ...")
    return g.rules[-1]


def pick_rule(g: BuildGraph, name: str | None) -> RuleSpec:
    if name is None:
        return default_rule(g)
    if name not in g.rule_index:
        raise UsageError(f"unknown rule '{name}'", did_you_mean(name, g.rule_index) or f"rules: {listing(g.rule_index)}")
    return g.rule(name)


# A row of Store.job_rows(): hash, start, end, host, exit_code, attempts,
# max_rss_mb, cpu_s, run_id, values_json (the values the store recorded when
# the job's latest run ended done, else None).
JobRow = tuple[Any, ...]


def table(plan: Plan, rule: RuleSpec, runs: Sequence[Run], cwd: Path | None = None,
          rows: Iterable[JobRow] | None = None) -> pd.DataFrame:
    """The results DataFrame of one rule, from a plan that selected its jobs.

    rows: Store.job_rows(rule.name), the store's rows of the rule's jobs, read
    one at a time. A row takes the values the store recorded when its job's
    latest run ended done instead of reading its results files when none of
    those files has changed since (see _stored_values); for any other row the
    files are read, as they always were. Without rows: the plan's records,
    and the files."""
    with _no_gc():
        return _table(plan, rule, runs, cwd, _rows_of(plan, rule) if rows is None else rows)


def _rows_of(plan: Plan, rule: RuleSpec) -> Iterator[JobRow]:
    """Store.job_rows()'s rows from the plan's records (no stored values)."""
    records = plan.records
    get = records.raw if isinstance(records, RecordMap) else records.get
    for name, h in records:
        if name == rule.name:
            rec = get((name, h))
            if rec is not None:
                yield (h, *(rec[k] for k in _REC_FIELDS), None)


@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    """Hundreds of thousands of new objects and no cycles: without the cyclic
    collector scanning them over and over (as in plan.planner.plan())."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _table(plan: Plan, rule: RuleSpec, runs: Sequence[Run], cwd: Path | None, rows: Iterable[JobRow]) -> pd.DataFrame:
    g = plan.graph
    run_seq = {r.run_id: r.seq for r in runs}
    indexed = g.has_index(rule.keys)
    here = cwd or Path.cwd()
    selected = set(plan.selected)
    jobs, state, results = g.jobs, plan.state, rule.results
    ids = [i for i in rule.job_ids if i in selected]
    del selected
    n = len(ids)
    if not n:
        return _frame([], rule, indexed)
    # Column by column, each a list by row, filled as the store's rows come
    # (in its order, not the table's): no record, dict or tuple is held per
    # job (at 100k rows those were most of the memory of a table).
    at = {jobs[i].hash: k for k, i in enumerate(ids)}
    taken = frozenset((*rule.keys, *BOOKKEEPING, *(("_index",) if indexed else ())))
    wd, prefix = _workdir(g, here)
    fromtimestamp, utc = dt.datetime.fromtimestamp, dt.UTC
    log_tail = "/" + LOG_NAME
    statuses: list[str | None] = [None] * n
    nothing: list[Any] = [None] * n
    run_id, host, log, error = (nothing.copy() for _ in range(4))
    del nothing
    # numbers straight into arrays, not a Python object per row (NaN and masks
    # are the gaps that None made in the columns from_records made of them)
    runtime, rss, cpu = (np.full(n, np.nan) for _ in range(3))
    seq, exit_code, attempts, time_us = (np.zeros(n, dtype=np.int64) for _ in range(4))
    no_seq, no_exit, no_attempts = (np.ones(n, dtype=np.bool_) for _ in range(3))
    timed = np.zeros(n, dtype=np.bool_)
    any_cpu, first_start = False, None
    values: dict[str, list[Any]] = {}  # results key -> its column (NaN where a row lacks it, as from_records makes it)
    first: dict[str, tuple[int, int]] = {}  # results key -> (the first row that has it, its place there)
    texts: dict[Any, Any] = {}  # run ids and hosts: each distinct one once

    def take(k: int, i: int, known: tuple[str, float | None] | None) -> str:
        """The status of row k (job i), and its values into `values`."""
        status = state(i)
        if results and (status == DONE or status == STALE):
            d = f"{wd}/{jobs[i].reldir}"
            got = _stored_values(d, results, known) if known is not None else None
            if got is None:
                read = read_results(d, results, ())
                got = read.values
                # A results file that is also an output makes the job "stale" when it
                # is deleted; "results missing" / "results malformed" says better why
                # the result columns of this row are empty, so it wins over "stale" too.
                # (A job whose files were unsound when it ended failed then; these
                # statuses are for files changed since.)
                if read.kind in ("missing", "malformed"):
                    status = RESULTS_MISSING if read.kind == "missing" else RESULTS_MALFORMED
            for j, (key, v) in enumerate(got.items()):
                # Fix: a results key named like a parameter or a bookkeeping column
                # ({"_status": ...}, {"a": 1.0}) overwrote it; those columns are sweepc's.
                if key in taken:
                    continue
                col = values.get(key)
                if col is None:
                    col = values[key] = [_NAN] * n
                    first[key] = (k, j)
                elif (k, j) < first[key]:
                    first[key] = (k, j)
                col[k] = v
        return status

    for h, start, end, rec_host, rec_exit, rec_attempts, rec_rss, rec_cpu, rec_run, values_json in rows:
        k = at.get(h)
        if k is None or statuses[k] is not None:
            continue  # a job not asked for (or no longer in the sweepfile)
        i = ids[k]
        status = statuses[k] = take(k, i, (values_json, end) if values_json is not None else None)
        if status == "failed":
            error[k] = error_text(g, rule, Path(f"{wd}/{jobs[i].reldir}"), rec_exit)
        elif status == "timeout":  # (was empty: why a job failed, for this kind of failure too)
            error[k] = time_limit_reached(jobs[i].resources.time_s)
        if start is None:  # never ran (planned, queued)
            continue
        r = run_id[k] = texts.setdefault(rec_run, rec_run)
        s = run_seq.get(r) if r else None
        if s is not None:
            seq[k], no_seq[k] = s, False
        if start:
            # the microseconds of the datetime (and so of the pd.Timestamp) the row had
            time_us[k], timed[k] = (fromtimestamp(start, utc) - _EPOCH) // _ONE_US, True
            if first_start is None:
                first_start = start
        host[k] = texts.setdefault(rec_host, rec_host)
        if end is not None:
            runtime[k] = round(end - start, 3)
        if rec_exit is not None:
            exit_code[k], no_exit[k] = rec_exit, False
        if rec_attempts:
            attempts[k], no_attempts[k] = rec_attempts, False
        if rec_rss is not None:
            rss[k] = rec_rss
        if rec_cpu is not None:
            cpu[k], any_cpu = rec_cpu, True
        log[k] = prefix + jobs[i].reldir + log_tail
    del at, texts
    for k, i in enumerate(ids):
        if statuses[k] is None:  # no row in the store
            statuses[k] = take(k, i, None)
    # the result columns in the order of the rows (and of each row's keys) that first have them
    ordered = {key: values[key] for key in sorted(values, key=first.__getitem__)}
    values.clear()
    params = [jobs[i].params for i in ids]
    book: dict[str, Any] = {
        "_pset_hash": [jobs[i].hash for i in ids], "_pset_seq": [jobs[i].seq for i in ids], "_run_id": run_id,
        "_run_seq": pd.arrays.IntegerArray(seq, no_seq), "_time_utc": _times(time_us, timed, first_start),
        "_exec_host": host, "_runtime_s": runtime, "_status": statuses,
        "_exit_code": pd.arrays.IntegerArray(exit_code, no_exit), "_attempts": pd.arrays.IntegerArray(attempts, no_attempts),
        "_max_rss_mb": rss, "_cpu_s": cpu if any_cpu else [None] * n,  # no measure at all: a column of None, as before
        "_job_dir": [prefix + jobs[i].reldir for i in ids], "_log": log, "_error": error,
    }
    if indexed:  # csv(..., index=...): the row id
        book = {"_index": [g.index_of(p) for p in params], **book}
    del ids, run_id, seq, time_us, host, runtime, exit_code, attempts, rss, cpu, log, error, statuses  # (book holds them)
    return _assemble(params, book, ordered, rule, indexed)


def _assemble(params: list[Mapping[str, Any]], book: dict[str, Any], results: dict[str, list[Any]], rule: RuleSpec,
              indexed: bool) -> pd.DataFrame:
    """The table of these rows: the parameter columns, then the bookkeeping
    and results columns (each taken out of its dict as it is converted), as
    one frame of the columns as they are (no copy made by concat and
    consolidation)."""
    by_param = pd.DataFrame.from_records([p if type(p) is dict else dict(p) for p in params])
    params.clear()
    columns: dict[str, Any] = {str(c): by_param[c] for c in by_param.columns}
    del by_param
    columns.update(_columns(book))
    columns.update(_columns(results))
    return _finish(pd.DataFrame(columns, copy=False), rule, indexed)


def _columns(cols: dict[str, Any]) -> dict[str, pd.Series[Any]]:
    """These columns as Series: a list is given the dtype pandas.DataFrame.from_records
    gives it from rows (it converts each column on its own), one column at a
    time (the rows as tuples of every column, and pandas' object array of
    them, cost ~30 MB at 100k rows); an array is taken as it is."""
    out: dict[str, pd.Series[Any]] = {}
    for name in list(cols):
        col = cols.pop(name)
        out[name] = pd.DataFrame.from_records([(v,) for v in col]).iloc[:, 0] if isinstance(col, list) else pd.Series(col, copy=False)
        del col
    return out


def _times(us: np.ndarray[Any, Any], timed: np.ndarray[Any, Any], sample: float | None) -> Any:
    """_time_utc from microseconds since the epoch (NaT where not `timed`):
    the column pandas makes of a pd.Timestamp per row, in its dtype (a column
    of None when no row has a time, as from_records makes it)."""
    if sample is None:
        return [None] * len(us)
    one = pd.Timestamp(dt.datetime.fromtimestamp(sample, dt.UTC))
    dtype = _columns({"t": [one]})["t"].dtype
    stamps = us.astype("datetime64[us]")
    stamps[~timed] = np.datetime64("NaT")
    return pd.Series(pd.DatetimeIndex(stamps).tz_localize(one.tzinfo)).astype(dtype).array


# the fields of a store row that job_rows() gives after the hash, in its order
_REC_FIELDS = tuple(Record._fields.index(f) for f in ("start", "end", "host", "exit_code", "attempts", "max_rss_mb", "cpu_s", "run_id"))
_NAN = float("nan")
_T = TypeVar("_T")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_ONE_US = dt.timedelta(microseconds=1)
# the bookkeeping columns in the order table() makes them (_frame puts them in BOOKKEEPING's)
_BOOK_COLUMNS = (
    "_pset_hash", "_pset_seq", "_run_id", "_run_seq", "_time_utc", "_exec_host", "_runtime_s",
    "_status", "_exit_code", "_attempts", "_max_rss_mb", "_cpu_s", "_job_dir", "_log", "_error",
)
assert set(_BOOK_COLUMNS) == set(BOOKKEEPING)


def _stored_values(d: str, names: Sequence[str], known: tuple[str, float | None]) -> dict[str, Any] | None:
    """The values the store recorded when the job ended, if every results
    file is still the one it read then: there, and not written, renamed or
    touched since the job ended (the file's ctime, which nothing but a
    change sets and nobody can set back, is not after the recorded end).
    None means: read the files (a file changed or gone since, a job rerun
    by hand in its folder, an end time not recorded)."""
    values_json, end = known
    if end is None:
        return None
    for name in names:
        try:
            if os.stat(f"{d}/{name}").st_ctime > end:
                return None
        except OSError:
            return None
    try:
        values = json.loads(values_json)
    except ValueError:
        return None
    return values if isinstance(values, dict) else None


def _frame(rows: list[dict[str, Any]], rule: RuleSpec, indexed: bool = False) -> pd.DataFrame:
    columns = list(rule.keys) + (["_index"] if indexed else []) + list(BOOKKEEPING)
    df = pd.DataFrame.from_records(rows) if rows else pd.DataFrame(columns=columns)
    return _finish(df, rule, indexed)


def _finish(df: pd.DataFrame, rule: RuleSpec, indexed: bool) -> pd.DataFrame:
    columns = list(rule.keys) + (["_index"] if indexed else []) + list(BOOKKEEPING)
    # never-built rows have no exit code or run: keep these columns integers next to the gaps
    for col in ("_run_seq", "_exit_code", "_pset_seq", "_attempts"):
        if col in df.columns:
            df[col] = df[col].astype("Int64")
    # gaps in measurements are NaN (empty in csv, null in json), not None: a column
    # with no measurement at all (SLURM does not measure memory) was of dtype object
    for col in ("_runtime_s", "_max_rss_mb"):
        if col in df.columns:
            df[col] = df[col].astype("float64")
    extra = [c for c in df.columns if c not in columns]
    order = [c for c in columns if c in df.columns] + extra
    if list(df.columns) != order:  # (a copy of every column)
        df = df[order]
    return df


# -- _error: why a job failed, in a few lines -------------------------------------

ERROR_LINES = 3
ERROR_CHARS = 300
_ATTEMPT_MARK = "=== sweepc: attempt "
_TRACEBACK = "Traceback (most recent call last):"
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt|Warning)\b.*|^[A-Za-z_][\w.]*: ")


def error_text(g: BuildGraph, rule: RuleSpec, d: Path, exit_code: int | None) -> str:
    """The `_error` of a failed job: what sweepc found wrong when it exited 0
    (an output or results file), else the exception line of a Python
    traceback in its log, else the last lines of its log (its last attempt),
    trimmed; `exit N` when the log says nothing."""
    if exit_code == 0:
        problem, _ = check_end(g, rule.name, d)
        if problem is not None:
            return problem
    text = _log_tail(d / LOG_NAME)
    if _ATTEMPT_MARK in text:
        text = text[text.rindex(_ATTEMPT_MARK):].partition("\n")[2]
    lines = [ln.rstrip() for ln in text.splitlines() if ln.strip()]
    if _TRACEBACK in text:
        after = text[text.rindex(_TRACEBACK):].splitlines()[1:]
        exc = [ln.rstrip() for ln in after if ln.strip() and not ln[:1].isspace() and _EXCEPTION_LINE.match(ln)]
        if exc:
            lines = exc[-1:]
    lines = lines[-ERROR_LINES:]
    out = "\n".join(ln if len(ln) <= ERROR_CHARS else ln[: ERROR_CHARS - 1] + "…" for ln in lines)
    if len(out) > ERROR_CHARS:
        out = "…" + out[-(ERROR_CHARS - 1):]
    return out or (f"exit {exit_code}" if exit_code is not None else "failed")


def _log_tail(path: Path, size: int = 8192) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - size))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


# -- the history: every run's results -------------------------------------------------


def history(plan: Plan, rule: RuleSpec, runs: Sequence[Run], rows: Iterable[HistoryRow], cwd: Path | None = None) -> pd.DataFrame:
    """One row per selected job of `rule` per run that produced results, as the
    store recorded them when the job ended (old outputs are not kept, their
    results are); ordered by run, then pset. Made column by column as the
    store's rows come, like table() (a dict per row held ~150 MB more at
    100k rows)."""
    g = plan.graph
    here = cwd or Path.cwd()
    run_seq = {r.run_id: r.seq for r in runs}
    by_hash = {g.jobs[i].hash: i for i in rule.job_ids}
    selected = set(plan.selected)
    _, prefix = _workdir(g, here)
    jobs = g.jobs
    taken = frozenset((*rule.keys, *BOOKKEEPING))
    ids: list[int] = []
    run_id: list[str] = []
    seq: list[int | None] = []
    start: list[float] = []
    timed: list[bool] = []
    host: list[str | None] = []
    runtime: list[float | None] = []
    exit_code: list[int | None] = []
    attempts: list[int | None] = []
    rss: list[float | None] = []
    values: dict[str, list[Any]] = {}  # results key -> its column (NaN where a row lacks it)
    first: dict[str, tuple[int, int]] = {}  # results key -> (the first row that has it, its place there)
    texts: dict[Any, Any] = {}  # run ids and hosts: each distinct one once
    first_start: float | None = None
    for h in rows:
        i = by_hash.get(h.hash)
        if i is None or i not in selected:
            continue  # a pset no longer in the sweepfile, or not asked for
        k = len(ids)
        ids.append(i)
        run_id.append(texts.setdefault(h.run_id, h.run_id))
        seq.append(run_seq.get(h.run_id))
        start.append(h.start or 0.0)
        timed.append(bool(h.start))
        if h.start and first_start is None:
            first_start = h.start
        host.append(texts.setdefault(h.host, h.host))
        runtime.append(round(h.end - h.start, 3) if h.start is not None and h.end is not None else None)
        exit_code.append(h.exit_code)
        attempts.append(h.attempts)
        rss.append(h.max_rss_mb)
        try:
            got = json.loads(h.values_json)
        except ValueError:
            got = {}
        if isinstance(got, dict):
            for j, (key, v) in enumerate(got.items()):
                if key in taken:
                    continue  # a results key named like a parameter or a bookkeeping column
                col = values.get(key)
                if col is None:
                    col = values[key] = [_NAN] * k
                    first[key] = (k, j)
                col.append(v)
        for col in values.values():
            if len(col) == k:
                col.append(_NAN)
    n = len(ids)
    if not n:
        return _frame([], rule)
    ordered = {key: values[key] for key in sorted(values, key=first.__getitem__)}
    values.clear()
    # by run, then pset (runs unknown to the store first), stably: the rows
    # put in that order here, not the frame sorted (a copy of every column)
    pset_seq = [jobs[i].seq for i in ids]
    order = sorted(range(n), key=lambda k: (seq[k] is not None, seq[k] or 0, pset_seq[k]))
    ids, run_id, seq, start = _in(order, ids), _in(order, run_id), _in(order, seq), _in(order, start)
    timed, host, runtime, exit_code = _in(order, timed), _in(order, host), _in(order, runtime), _in(order, exit_code)
    attempts, rss, pset_seq = _in(order, attempts), _in(order, rss), _in(order, pset_seq)
    for key, col in ordered.items():
        ordered[key] = _in(order, col)
    del order
    us = np.array([(dt.datetime.fromtimestamp(t, dt.UTC) - _EPOCH) // _ONE_US if ok else 0 for t, ok in zip(start, timed)], dtype=np.int64)
    params = [jobs[i].params for i in ids]
    book: dict[str, Any] = {
        "_pset_hash": [jobs[i].hash for i in ids], "_pset_seq": pset_seq, "_run_id": run_id,
        "_run_seq": seq, "_time_utc": _times(us, np.array(timed, dtype=np.bool_), first_start), "_exec_host": host,
        "_runtime_s": runtime, "_status": [DONE] * n, "_exit_code": exit_code, "_attempts": attempts,
        "_max_rss_mb": rss, "_cpu_s": [None] * n,
        "_job_dir": [prefix + jobs[i].reldir for i in ids], "_log": [f"{prefix}{jobs[i].reldir}/{LOG_NAME}" for i in ids],
        "_error": [None] * n,
    }
    del ids, us, start, timed, run_id, host, runtime, exit_code, attempts, rss  # (book holds them)
    return _assemble(params, book, ordered, rule, False)


def _in(order: Sequence[int], col: list[_T]) -> list[_T]:
    """col's items in this order."""
    return [col[k] for k in order]


# -- the one table: every per-pset rule side by side ---------------------------------


def one_table_rules(g: BuildGraph) -> tuple[RuleSpec, tuple[RuleSpec, ...]]:
    """(the main rule, the rules of the one table, in graph order).

    The main rule is the default rule (the last per-pset rule with results);
    its sweep is the main sweep, one row per pset. Another per-pset rule joins
    when its parameters are among the main rule's: a rule over the same sweep
    or a part of it (`where`) lines up pset by pset, a rule over fewer
    parameters (`over a`) repeats on every row that shares its values. A rule
    with parameters the main sweep lacks, a gather (`by`) and a rule without
    `over` are left out: `--rule R` shows them."""
    main = default_rule(g)
    if main.over is None or main.by:
        return main, (main,)
    keys = set(main.keys)
    rules = tuple(r for r in g.rules if r.over is not None and not r.by and set(r.keys) <= keys)
    return main, rules


def one_table_jobs(g: BuildGraph, where: str | None = None, psets: str | None = None) -> list[int]:
    """The jobs to plan for the one table, as select() gives them (with every
    job they need): the main rule's jobs that `where` and `psets` select, and
    of each other rule of the table the jobs that fill those rows. `where`
    and `psets` select psets of the main sweep, not of each rule: a rule over
    fewer parameters (`prep over a`) lost all its values to a where on b
    (no job of prep has b), and `--psets 4:6` sliced prep's own psets."""
    main, rules = one_table_rules(g)
    if where is None and psets is None:
        return select(g, [r.name for r in rules])
    chosen = set(select(g, [main.name], where=where, psets=psets, with_ancestors=False))
    jobs = g.jobs
    for r in rules:
        if r is main:
            continue
        keys = r.keys
        rows = {tuple(join_key(jobs[i].params[k]) for k in keys) for i in chosen if jobs[i].rule == main.name}
        chosen.update(i for i in r.job_ids if tuple(join_key(jobs[i].params[k]) for k in keys) in rows)
    return sorted(g.ancestors(chosen))


def one_table(plan: Plan, runs: Sequence[Run], cwd: Path | None = None, frames: Mapping[str, pd.DataFrame] | None = None,
              read: Callable[[str], Iterable[JobRow]] | None = None) -> pd.DataFrame:
    """One row per selected pset of the main sweep: the main rule's table, then
    for each other rule of the one table its bookkeeping as `RULE._status`,
    `RULE._run_id`, ... and its results (as `RULE.key` when the name is taken
    otherwise: _one_table_names). The unprefixed bookkeeping columns are the main rule's, so a study
    of one rule gets the same table as `--rule`."""
    g = plan.graph
    main, rules = one_table_rules(g)
    made = dict(frames or {})  # tables already made (the report makes every rule's)
    for r in rules:
        if r.name not in made:
            made[r.name] = table(plan, r, runs, cwd, rows=read(r.name) if read is not None else None)
    base = made[main.name]
    if len(rules) == 1:
        return base
    frames = {r.name: made[r.name] for r in rules}
    names = _one_table_names(main, rules, frames)
    out = base.rename(columns=names[main.name])
    for r in rules:
        if r is main:
            continue
        df = frames[r.name]
        # the main rule's _pset_seq and _index (csv(..., index=)) are the row's
        df = df.drop(columns=[c for c in ("_pset_seq", "_index") if c in df.columns]).rename(columns=names[r.name])
        on = list(r.keys)
        if not on:
            continue
        df = df.drop_duplicates(subset=on, keep="last")
        for k in on:  # an empty table has object columns; ints must meet ints
            if df[k].dtype != out[k].dtype:
                try:
                    df[k] = df[k].astype(out[k].dtype)
                except (TypeError, ValueError):
                    out[k], df[k] = out[k].astype(object), df[k].astype(object)
        out = out.merge(df, how="left", on=on)
    return out


def _one_table_names(main: RuleSpec, rules: Sequence[RuleSpec], frames: Mapping[str, pd.DataFrame]) -> dict[str, dict[str, str]]:
    """rule -> {column of its table: its name in the one table}, for the
    columns renamed. The main rule's parameters and bookkeeping keep their
    names; another rule's bookkeeping is `RULE._status`, ...; a results key
    keeps its name unless another column of the table has it (another rule's
    key of the same name: both become `RULE.key`; a parameter) or it starts
    with the name of a rule of the table and a dot, as the columns of that
    rule do (a nested key `fit.slope` of rule sim next to rule fit:
    `sim.fit.slope`). pandas' merge suffixed such names `_x` and `_y`."""
    bk = set(BOOKKEEPING)
    rule_names = {r.name for r in rules}
    fixed: dict[str, str] = {}  # a name no rename changes -> whose it is
    results: list[tuple[str, str]] = []  # (rule, key)
    for r in rules:
        for c in map(str, frames[r.name].columns):
            if c in r.keys or c == "_index" or c in bk:
                if r is main:
                    fixed.setdefault(c, f"the column {c}")
                elif c in bk and c != "_pset_seq":  # (its parameters are the main rule's; _pset_seq, _index dropped)
                    fixed.setdefault(f"{r.name}.{c}", f"rule {r.name}'s {c}")
            else:
                results.append((r.name, c))
    name = {rk: rk[1] for rk in results}
    while True:
        taken: dict[str, int] = {}
        for n in (*fixed, *name.values()):
            taken[n] = taken.get(n, 0) + 1
        clash = [rk for rk, n in name.items() if n == rk[1] and (taken[n] > 1 or n.partition(".")[0] in rule_names)]
        if not clash:
            break
        for rule, key in clash:  # prefixed once: RULE.key is unique among the prefixed
            name[(rule, key)] = f"{rule}.{key}"
    seen = dict(fixed)
    for (rule, key), n in name.items():
        other = seen.setdefault(n, f"rule {rule}'s results key '{key}'")
        if other != f"rule {rule}'s results key '{key}'":  # (cannot happen: each rename makes a name of its own)
            raise UsageError(f"two columns of the one table are named '{n}': {other} and rule {rule}'s results key '{key}'",
                             f"see each rule's own table: sweepc results --rule {rule}")
    out: dict[str, dict[str, str]] = {r.name: {} for r in rules}
    for r in rules:
        if r is not main:
            out[r.name].update({c: f"{r.name}.{c}" for c in map(str, frames[r.name].columns) if c in bk})
    for (rule, key), n in name.items():
        if n != key:
            out[rule][key] = n
    return out


def display_columns(df: pd.DataFrame, history: bool = False) -> pd.DataFrame:
    """The terminal's default view: parameters, statuses, why jobs failed
    (`_error`, `RULE._error`: only when some job did) and results; the
    other bookkeeping columns (also a rule's `RULE._run_id`) left out.
    history: the table of every run, whose rows are told apart by their
    run: `_run_seq` is shown too (`sweepc runs` tells when each ran)."""
    hidden = set(BOOKKEEPING) - {"_status"} - ({"_run_seq"} if history else set())

    def shown(c: object) -> bool:
        name = str(c)
        last = name.rpartition(".")[2]
        if name not in hidden and last not in hidden:
            return True
        return last == "_error" and bool(df[c].notna().any())

    out = df[[c for c in df.columns if shown(c)]]
    errors = [c for c in out.columns if str(c).rpartition(".")[2] == "_error"]
    return out.assign(**{str(c): out[c].fillna("") for c in errors}) if errors else out


def _workdir(g: BuildGraph, here: Path) -> tuple[str, str]:
    """(the workdir, absolute; the prefix that makes a job's reldir a path
    from `here`): os.path.relpath once, not twice per row (it was most of the
    time of a 100k-row table)."""
    wd = g.workdir_path
    rel = _rel(wd, here)
    return str(wd), "" if rel == "." else rel + "/"


def _rel(p: Path, here: Path) -> str:
    try:
        return os.path.relpath(p, here)
    except ValueError:
        return str(p)


def select_columns(df: pd.DataFrame, columns: str | Sequence[str] | None) -> pd.DataFrame:
    if not columns:
        return df
    names = [c.strip() for c in columns.split(",")] if isinstance(columns, str) else list(columns)
    for k, c in enumerate(names):
        # Fix: a name given twice made parquet fail with a traceback and json drop columns
        if c in names[:k]:
            raise UsageError(f"column '{c}' is named twice", "name each column once")
        if c not in df.columns:
            raise UsageError(f"no column '{c}'", did_you_mean(c, [str(x) for x in df.columns]) or f"columns: {listing(str(x) for x in df.columns)}")
    return df[names]


def write(df: pd.DataFrame, fmt: str, path: str | None) -> str | None:
    """Write df to path in fmt; return the text instead when path is None (not for parquet)."""
    if fmt == "parquet":
        if path is None:
            raise UsageError("parquet is a binary format", "write it to a file: -o results.parquet")
        try:
            import pyarrow
        except ImportError:
            raise UsageError("parquet output needs pyarrow", "install it with: pip install 'sweepc[parquet]'") from None
        # Fix: these were tracebacks. A results key whose values differ in type
        # from row to row (1 in one file, "n/a" in another) cannot be a parquet column.
        try:
            df.to_parquet(path, index=False)
        except pyarrow.ArrowException as e:
            why = _shortened("; ".join(str(a) for a in e.args) or str(e))
            raise UsageError(
                f"cannot write {path} as parquet: {why}",
                "a column holds values of different types; write --format csv or json, or leave it out with --columns",
            ) from None
        except OSError as e:
            raise UsageError(f"cannot write {path}: {e.strerror or e}") from None
        return None
    if path is None:
        return "".join(_pieces(df, fmt))
    try:
        with open(Path(path), "w", encoding="utf-8") as f:
            for piece in _pieces(df, fmt):
                f.write(piece)
    except OSError as e:  # Fix: was a traceback (no such folder, no permission, a folder)
        raise UsageError(f"cannot write {path}: {e.strerror or e}") from None
    return None


def _shortened(message: str, most: int = 60) -> str:
    """message with each quoted value longer than `most` characters cut ("..."):
    pyarrow's errors quote the value that failed, whole, a megabyte or more."""
    import re

    return re.sub(r"'([^']{%d})[^']+'" % most, lambda m: f"'{m.group(1)}...'", message)


def write_to(df: pd.DataFrame, fmt: str, out: TextIO) -> None:
    """write(df, fmt, None), written to `out` piece by piece: the csv and json
    of 100k rows are never one text (40 and 85 MB, and as much again encoded)."""
    if fmt == "parquet":
        raise UsageError("parquet is a binary format", "write it to a file: -o results.parquet")
    for piece in _pieces(df, fmt):
        out.write(piece)


# the widest cell of the table format, in characters
CELL_WIDTH = 100

# rows per piece of csv or json
_ROWS_AT_ONCE = 5000


def _pieces(df: pd.DataFrame, fmt: str) -> Iterator[str]:
    """The text of df in fmt (csv, json, table), in pieces of _ROWS_AT_ONCE rows."""
    if fmt == "csv":
        yield from _csv_pieces(df)
    elif fmt == "json":
        # Not df.to_json: it keeps 10 significant digits (a result of 1e-12 came
        # out as 0.0, 1.2345678901234567 as 1.2345678901) and times to the ms.
        # json.dumps writes floats that read back exactly. What json.dumps
        # writes of the whole list, a piece of rows at a time.
        yield "["
        for lo in range(0, len(df), _ROWS_AT_ONCE):
            rows = [{str(k): _json_value(v) for k, v in rec.items()} for rec in df.iloc[lo:lo + _ROWS_AT_ONCE].to_dict(orient="records")]
            text = json.dumps(rows, ensure_ascii=False, separators=(",", ":"))
            yield ("," if lo else "") + text[1:-1]
        yield "]\n"
    else:
        # (a cell is cut at CELL_WIDTH characters, "..." at its end: one result of a
        # megabyte made every line of the table a megabyte wide; csv and json keep it whole)
        yield "(no rows)\n" if df.empty else _floats_shown(df).to_string(index=False, max_colwidth=CELL_WIDTH) + "\n"


def _floats_shown(df: pd.DataFrame) -> pd.DataFrame:
    """df with the floats of its object columns (a parameter or results key of
    mixed types: 1e-300 and true, 1e-9 and "diverged") as short text that
    keeps their value: pandas printed such a column's floats with a fixed
    number of decimals, 1e-300 as 0.0 and 1e300 as an integer of 300 digits."""
    out = df
    for k in range(len(df.columns)):
        col = df.iloc[:, k]
        if col.dtype != object:
            continue
        values = col.tolist()
        if not any(type(v) is float or isinstance(v, np.floating) for v in values):
            continue
        if out is df:
            out = df.copy(deep=False)
        out.isetitem(k, [_float_text(v) if isinstance(v, (float, np.floating)) else v for v in values])
    return out


def _float_text(v: float | np.floating[Any]) -> str:
    """A float as %g writes it (6 significant digits, an exponent when it is
    large or small), still looking like a float: 1e-300, 1e+300, 0.1, 3.0, NaN."""
    x = float(v)
    if math.isnan(x):
        return "NaN"
    text = f"{x:.6g}"
    return text if any(c in text for c in ".en") else text + ".0"


# what pandas.read_csv reads as a gap by default, quoted or not
_NA_TEXTS = frozenset({"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
                       "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"})


def to_csv(df: pd.DataFrame) -> str:
    """CSV whose values say their type: booleans as the sweepfile spells them
    (`true`, `false`), numbers bare (floats as repr, so they read back exactly),
    gaps empty, and text quoted whenever it would read as a number, a boolean
    or a gap (`"1"`, `"true"`, `"NA"`), besides where CSV needs quotes.

    pandas.read_csv then gives ints, floats and booleans back as such; it infers
    a column's type from its values and ignores quotes, so a column of text that
    looks like numbers needs `dtype={"name": str}` (docs/cli.md)."""
    return "".join(_csv_pieces(df))


def _csv_pieces(df: pd.DataFrame) -> Iterator[str]:
    yield ",".join(_csv_text(str(c), False) for c in df.columns) + "\n"
    # Column by column (each as itertuples gives it), with shortcuts that give
    # what _csv_cell gives: 3.5M cells of a 100k-row table took seconds one by
    # one. A piece of rows at a time: the cells of every row at once were ~200 MB.
    for lo in range(0, len(df), _ROWS_AT_ONCE):
        part = df.iloc[lo:lo + _ROWS_AT_ONCE]
        cells = [_csv_column(part.iloc[:, k]) for k in range(len(part.columns))]
        yield "".join(",".join(row) + "\n" for row in zip(*cells))


def _csv_column(col: pd.Series[Any]) -> list[str]:
    dtype = col.dtype
    if dtype == "Int64":  # integers with gaps (_run_seq, _exit_code, ...)
        gaps = col.isna().to_numpy()
        ints = col.to_numpy(dtype="int64", na_value=0).tolist()
        return ["" if gap else str(v) for v, gap in zip(ints, gaps.tolist())]
    if isinstance(dtype, pd.StringDtype):
        values = list(col.to_numpy(dtype=object))  # str, and the dtype's gap (NaN or NA)
    else:
        values = list(col)  # Python scalars for numpy columns, as itertuples gives them
    if dtype == "int64":
        return [str(v) for v in values]
    if dtype == "float64":
        return ["" if v != v else repr(v) for v in values]
    # text and times repeat (statuses, hosts, run ids, a rule over fewer
    # parameters): each distinct one once
    memo: dict[Any, str] = {}
    out: list[str] = []
    one_zone = isinstance(dtype, pd.DatetimeTZDtype)  # equal Timestamps print alike only in one time zone
    for v in values:
        t = type(v)
        if t is str or (one_zone and t is pd.Timestamp):
            text = memo.get(v)
            if text is None:
                text = memo[v] = _csv_cell(v)
            out.append(text)
        else:
            out.append(_csv_cell(v))
    return out


def _csv_cell(v: Any) -> str:
    if v is None or v is pd.NA or v is pd.NaT:
        return ""
    if isinstance(v, pd.Timestamp):
        return str(v)
    item = getattr(v, "item", None)  # numpy scalars
    if callable(item) and not isinstance(v, (list, dict, str)):
        v = item()
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "" if math.isnan(v) else repr(v)
    if isinstance(v, str):
        return _csv_text(v, _reads_as_other_type(v))
    return _csv_text(str(v), False)


def _reads_as_other_type(text: str) -> bool:
    if text in _NA_TEXTS or text.lower() in ("true", "false"):
        return True
    try:
        float(text)
    except ValueError:
        return False
    return True


def _csv_text(text: str, force: bool) -> str:
    if force or any(ch in text for ch in ',"\n\r') or text != text.strip():
        return '"' + text.replace('"', '""') + '"'
    return text


def _json_value(v: Any) -> Any:
    """A cell as a JSON value: gaps as null, times as ISO 8601 UTC, numpy scalars as Python ones."""
    if v is None or v is pd.NA or v is pd.NaT:
        return None
    if isinstance(v, pd.Timestamp):
        return v.isoformat() if v.tzinfo is None else v.tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    item = getattr(v, "item", None)  # numpy scalars
    if callable(item) and not isinstance(v, (list, dict, str)):
        v = item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, (list, tuple)):
        return [_json_value(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _json_value(x) for k, x in v.items()}
    return v
