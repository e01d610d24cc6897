"""The results table: one row per job of a rule, as a pandas DataFrame.

Derived each time from the graph, the state store and the job folders, so it
can never disagree with them. Columns: the job's parameters, psweep's
bookkeeping columns, sweepc's own, then the values of the rule's `results:`
JSON files (nested keys flattened with dots).
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from .errors import UsageError, did_you_mean, listing
from .graph import LOG_NAME, BuildGraph, RuleSpec
from .planner import CANCELLED, FAILED, INTERRUPTED, NEVER_BUILT, Plan
from .state import Record, Run

BOOKKEEPING = (
    "_pset_hash", "_pset_seq", "_run_id", "_run_seq", "_time_utc", "_exec_host", "_runtime_s",
    "_status", "_exit_code", "_max_rss_mb", "_job_dir", "_log",
)

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


def flatten(obj: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in obj.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _status(plan: Plan, i: int, rec: Record | None) -> str:
    reasons = plan.reasons.get(i)
    if i in plan.queued:
        return "queued"
    if not reasons:
        return DONE
    codes = {r.code for r in reasons}
    if NEVER_BUILT in codes:
        return "never built"
    if FAILED in codes:
        return "failed"
    if INTERRUPTED in codes:
        return "interrupted"
    if CANCELLED in codes:
        return "cancelled"
    if rec is not None and rec.status == "queued":
        return "queued"
    return STALE


def table(plan: Plan, rule: RuleSpec, runs: Sequence[Run], cwd: Path | None = None) -> pd.DataFrame:
    """The results DataFrame of one rule, from a plan that selected its jobs."""
    g = plan.graph
    run_seq = {r.run_id: r.seq for r in runs}
    here = cwd or Path.cwd()
    selected = set(plan.selected)
    rows: list[dict[str, Any]] = []
    for i in rule.job_ids:
        if i not in selected:
            continue
        job = g.jobs[i]
        rec = plan.records.get((job.rule, job.hash))
        status = _status(plan, i, rec)
        d = g.job_dir(job)
        row: dict[str, Any] = dict(job.params)
        has_run = rec is not None and rec.start is not None
        runtime = (rec.end - rec.start) if has_run and rec is not None and rec.end is not None and rec.start is not None else None
        row.update(
            _pset_hash=job.hash,
            _pset_seq=job.seq,
            _run_id=rec.run_id if has_run and rec else None,
            _run_seq=run_seq.get(rec.run_id) if has_run and rec and rec.run_id else None,
            _time_utc=pd.Timestamp(dt.datetime.fromtimestamp(rec.start, dt.timezone.utc)) if has_run and rec and rec.start else None,
            _exec_host=rec.host if has_run and rec else None,
            _runtime_s=round(runtime, 3) if runtime is not None else None,
            _status=status,
            _exit_code=rec.exit_code if has_run and rec else None,
            _max_rss_mb=rec.max_rss_mb if has_run and rec else None,
            _job_dir=_rel(d, here),
            _log=_rel(d / LOG_NAME, here) if has_run else None,
        )
        if status in (DONE, STALE) and rule.results:
            values, problem = _read_results(d, rule.results)
            if problem is not None and status == DONE:
                row["_status"] = problem
            row.update(values)
        rows.append(row)
    columns = list(rule.keys) + list(BOOKKEEPING)
    df = pd.DataFrame.from_records(rows) if rows else pd.DataFrame(columns=columns)
    extra = [c for c in df.columns if c not in columns]
    df = df[[c for c in columns if c in df.columns] + extra]
    return df


def _read_results(d: Path, names: Sequence[str]) -> tuple[dict[str, Any], str | None]:
    values: dict[str, Any] = {}
    for name in names:
        try:
            with open(d / name, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            return values, RESULTS_MISSING
        except (OSError, ValueError, UnicodeDecodeError):
            return values, RESULTS_MALFORMED
        if not isinstance(data, dict):
            return values, RESULTS_MALFORMED
        values.update(flatten(data))
    return values, None


def _rel(p: Path, here: Path) -> str:
    try:
        return os.path.relpath(p, here)
    except ValueError:
        return str(p)


def select_columns(df: pd.DataFrame, columns: str | Sequence[str] | None) -> pd.DataFrame:
    if not columns:
        return df
    names = [c.strip() for c in columns.split(",")] if isinstance(columns, str) else list(columns)
    for c in names:
        if c not in df.columns:
            raise UsageError(f"no column '{c}'", did_you_mean(c, [str(x) for x in df.columns]) or f"columns: {listing(str(x) for x in df.columns)}")
    return df[names]


def write(df: pd.DataFrame, fmt: str, path: str | None) -> str | None:
    """Write df to path in fmt; return the text instead when path is None (not for parquet)."""
    if fmt == "parquet":
        if path is None:
            raise UsageError("parquet is a binary format", "write it to a file: -o results.parquet")
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise UsageError("parquet output needs pyarrow", "install it with: pip install 'sweepc[parquet]'") from None
        df.to_parquet(path, index=False)
        return None
    if fmt == "csv":
        text = df.to_csv(index=False)
    elif fmt == "json":
        text = df.to_json(orient="records", date_format="iso", force_ascii=False) + "\n"
    else:
        text = "(no rows)\n" if df.empty else df.to_string(index=False) + "\n"
    if path is None:
        return text
    Path(path).write_text(text, encoding="utf-8")
    return None


_ = json
