"""`sweepc report`: one self-contained HTML file. Entry point: render().

No script and no network: the plots are static SVG from matplotlib, inline in
the page, so the file opens offline, in any browser, and in ten years. The
page holds the study (sweepfile, git commit, runs), per rule the counts by
status and a timeline of runs, runtime and peak-memory distributions, the
failures with their error text and log paths, and each numeric result
against each varied parameter (aggregated: mean line, min..max band).
"""

from __future__ import annotations

import datetime as dt
import html
import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd

from sweepc.lang.graph import BuildGraph
from sweepc.plan.store import Run
from sweepc.results import plots

MAX_RESULTS = 24  # numeric results plotted; the rest are named
MAX_PARAMS = 5  # varied parameters plotted against
MAX_FAILURES = 200  # failures listed; the rest are counted
# the statuses of the results table (Plan.state's, as `sweepc status` orders them, and the two of results files)
STATUS_ORDER = ("done", "stale", "results missing", "results malformed", "pending", "running", "failed", "timeout", "interrupted",
                "cancelled", "skipped", "never built")
FAILED = ("failed", "timeout")  # the statuses listed under Failures (a timeout is a failure of its own kind)


@dataclass(frozen=True)
class ReportData:
    """What the report is made of. Not the graph's jobs, nor its sweeps'
    psets: once the tables are made, a caller that drops the graph (the
    CLI) writes the report of a 100k-pset study without them (~60 MB)."""

    graph: BuildGraph  # without its jobs and sweeps (lean()): root, sweepfile, params, rules
    runs: tuple[Run, ...]
    tables: Mapping[str, pd.DataFrame]  # rule -> its results table (latest run of each job)
    one: pd.DataFrame  # the one table
    main_rule: str
    jobs: int  # how many jobs the graph has
    sweeps: Mapping[str, int]  # sweep -> how many psets

    @staticmethod
    def lean(g: BuildGraph) -> BuildGraph:
        """The graph as ReportData keeps it."""
        return replace(g, jobs=(), sweeps={})


def render(data: ReportData) -> str:
    plots.require_matplotlib()
    with plots.literal_text():  # (a `$` in a value or a name was read as math)
        return _page(data)


def _page(data: ReportData) -> str:
    g = data.graph
    parts = [
        _head(f"sweepc report: {g.root.name}"),
        f"<h1>sweepc report: {_e(g.root.name)}</h1>",
        _study(data),
        _rules(data),
        _resources(data),
        _failures(data),
        _results(data),
        "</body></html>\n",
    ]
    return "\n".join(parts)


# -- sections ---------------------------------------------------------------------


def _study(data: ReportData) -> str:
    g = data.graph
    last = data.runs[-1] if data.runs else None
    commit = "not in git" if last is None or last.git_commit is None else last.git_commit[:12] + (" (uncommitted changes)" if last.git_dirty else "")
    facts = [
        ("sweepfile", str(g.sweepfile)),
        ("parameters", ", ".join(f"{k} ({len(v)} values)" for k, v in g.params.items()) or "none"),
        ("sweeps", ", ".join(f"{k} ({n} psets)" for k, n in data.sweeps.items()) or "none"),
        ("jobs", str(data.jobs)),
        ("git commit of the last run", commit),
        ("written", dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")),
    ]
    out = ["<section id='study'><h2>Study</h2><table class='facts'>"]
    out += [f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in facts]
    out.append("</table><h3>Runs</h3>")
    if not data.runs:
        out.append("<p>No build has run yet.</p>")
    else:
        rows = [
            {
                "run": r.seq, "started (UTC)": dt.datetime.fromtimestamp(r.started, dt.UTC).strftime("%Y-%m-%d %H:%M:%S"),
                "duration": _dur(r.ended - r.started) if r.ended else "", "command": " ".join(json.loads(r.argv)) if r.argv else "",
                "backend": r.backend or "", "ran": r.ran, "failed": r.failed, "up to date": r.uptodate, "status": r.status or "",
                "git commit": (r.git_commit or "")[:12],
            }
            for r in data.runs
        ]
        out.append(_table(pd.DataFrame.from_records(rows)))
    out.append("</section>")
    return "\n".join(out)


def _rules(data: ReportData) -> str:
    out = ["<section id='rules'><h2>Rules</h2><h3>Jobs by status</h3>"]
    counts: dict[str, dict[str, int]] = {}
    for name, df in data.tables.items():
        counts[name] = {str(k): int(v) for k, v in df["_status"].value_counts().items()} if len(df) else {}
    statuses = [s for s in STATUS_ORDER if any(s in c for c in counts.values())]
    statuses += sorted({s for c in counts.values() for s in c} - set(statuses))
    rows = [{"rule": name, "jobs": len(data.tables[name]), **{s: c.get(s, 0) for s in statuses}} for name, c in counts.items()]
    out.append(_table(pd.DataFrame.from_records(rows), classes={s: f"st-{s.replace(' ', '-')}" for s in statuses}))
    fig = _timeline(data)
    if fig is not None:
        out.append("<h3>Timeline of runs</h3><p class='note'>Per rule, the span of each run's jobs (the latest run of each job).</p>")
        out.append(_figure(fig, "timeline"))
    out.append("</section>")
    return "\n".join(out)


def _timeline(data: ReportData) -> Any:
    from matplotlib.figure import Figure

    spans: list[tuple[str, int, float, float]] = []
    for name, df in data.tables.items():
        if not len(df) or df["_time_utc"].isna().all():
            continue
        d = df.dropna(subset=["_time_utc"])
        start = (pd.to_datetime(d["_time_utc"], utc=True) - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
        end = start + pd.to_numeric(d["_runtime_s"], errors="coerce").fillna(0.0)
        seq = d["_run_seq"].fillna(-1).astype(int)
        for run, idx in seq.groupby(seq).groups.items():
            spans.append((name, int(str(run)), float(start[idx].min()), float(end[idx].max())))
    if not spans:
        return None
    t0 = min(s[2] for s in spans)
    names = list(dict.fromkeys(s[0] for s in spans))
    fig = Figure(figsize=(7.5, 0.5 + 0.45 * len(names)), layout="constrained")
    ax = fig.add_subplot()
    colors = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c"]
    for name, run, a, b in spans:
        y = names.index(name)
        ax.barh(y, max(b - a, 0.05), left=a - t0, height=0.6, color=colors[run % len(colors)], alpha=0.85)
        ax.text(a - t0, y, f" run {run}", va="center", fontsize="x-small")
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.set_xlabel(f"seconds since {dt.datetime.fromtimestamp(t0, dt.UTC).strftime('%Y-%m-%d %H:%M:%S')} UTC")
    ax.grid(True, axis="x", alpha=0.3)
    return fig


def _resources(data: ReportData) -> str:
    from matplotlib.figure import Figure

    out = ["<section id='resources'><h2>Runtime and peak memory</h2>"]
    shown = 0
    for name, df in data.tables.items():
        # (a job stopped by Ctrl-C or cancel ran a part of its time: left out, as `sweepc resources` does)
        df = df[~df["_status"].isin(["interrupted", "cancelled"])] if len(df) else df
        rt = pd.to_numeric(df["_runtime_s"], errors="coerce").dropna() if len(df) else pd.Series(dtype=float)
        mem = pd.to_numeric(df["_max_rss_mb"], errors="coerce").dropna() if len(df) else pd.Series(dtype=float)
        if rt.empty and mem.empty:
            continue
        fig = Figure(figsize=(7.5, 2.4), layout="constrained")
        for k, (series, label) in enumerate(((rt, "runtime (s)"), (mem, "peak memory (MB)"))):
            ax = fig.add_subplot(1, 2, k + 1)
            if series.empty:
                ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes)
            else:
                ax.hist(series.to_numpy(dtype=float), bins=min(40, max(5, int(len(series) ** 0.5))), color="#4c72b0")
                ax.set_title(f"{label}: median {series.median():.3g}, max {series.max():.3g}", fontsize="small")
            ax.set_xlabel(label)
            ax.set_ylabel("jobs")
        out.append(f"<h3>{_e(name)}</h3>")
        out.append(_figure(fig, f"resources-{name}"))
        shown += 1
    if not shown:
        out.append("<p>No job has run yet.</p>")
    out.append("</section>")
    return "\n".join(out)


def _failures(data: ReportData) -> str:
    g = data.graph
    out = ["<section id='failures'><h2>Failures</h2>"]
    rows: list[dict[str, Any]] = []
    total = 0
    for name, df in data.tables.items():
        if not len(df):
            continue
        failed = df[df["_status"].isin(FAILED)]
        total += len(failed)
        keys = list(g.rule(name).keys)
        for rec in failed.head(MAX_FAILURES - len(rows)).to_dict(orient="records") if len(rows) < MAX_FAILURES else []:
            label = ",".join(f"{k}={plots._fmt(rec[k])}" for k in keys)
            rows.append({"job": f"{name}[{label}]" if keys else name, "exit": rec.get("_exit_code"), "error": rec.get("_error") or "", "log": rec.get("_log") or ""})
    if not rows:
        out.append("<p class='ok'>No job failed.</p>")
    else:
        out.append("<table class='failures'><tr><th>job</th><th>exit</th><th>error</th><th>log</th></tr>")
        for r in rows:
            code = "" if r["exit"] is None or pd.isna(r["exit"]) else str(r["exit"])
            out.append(f"<tr><td>{_e(r['job'])}</td><td>{_e(code)}</td><td><pre>{_e(r['error'])}</pre></td><td><code>{_e(r['log'])}</code></td></tr>")
        out.append("</table>")
        if total > len(rows):
            out.append(f"<p class='note'>{total - len(rows)} more failures: sweepc results --format csv lists them all.</p>")
    out.append("</section>")
    return "\n".join(out)


def _results(data: ReportData) -> str:
    g = data.graph
    df = data.one
    params = list(g.rule(data.main_rule).keys)
    out = ["<section id='results'><h2>Results against parameters</h2>"]
    # the rows with results, in the columns drawn from (parameters and results:
    # numeric_results() passes over the rest), not a copy of the whole one table
    shown_from = [c for c in df.columns if str(c) in params or not (str(c).startswith("_") or "._" in str(c))]
    ok = df.loc[df["_status"].isin(["done", "stale"]), shown_from] if len(df) else df
    ys = plots.numeric_results(ok, params)
    xs = plots.varied(ok, params)
    if not len(ok) or not ys:
        out.append("<p>No numeric results yet.</p></section>")
        return "\n".join(out)
    out.append(
        f"<p class='note'>{len(ok)} psets with results (of {len(df)}); each line is the mean over the parameters not on the axes, "
        "the band their min..max. One picture: <code>sweepc plot Y --x A --by B</code>.</p>"
    )
    if not xs:
        out.append(_table(ok[params + ys]))
        out.append("</section>")
        return "\n".join(out)
    from matplotlib.figure import Figure

    for y in ys[:MAX_RESULTS]:
        shown = xs[:MAX_PARAMS]
        fig = Figure(figsize=(min(4.2 * len(shown), 13.0), 3.4), layout="constrained")
        for k, x in enumerate(shown):
            ax = fig.add_subplot(1, len(shown), k + 1)
            plots.draw(ax, ok, y, x, plots.default_by(ok, x, xs))
        out.append(f"<h3>{_e(y)}</h3>")
        out.append(_figure(fig, f"result-{y}"))
    if len(ys) > MAX_RESULTS:
        out.append(f"<p class='note'>Not drawn: {_e(', '.join(ys[MAX_RESULTS:]))}.</p>")
    if len(xs) > MAX_PARAMS:
        out.append(f"<p class='note'>Also varied, not on an axis: {_e(', '.join(xs[MAX_PARAMS:]))}.</p>")
    out.append("</section>")
    return "\n".join(out)


# -- HTML bits --------------------------------------------------------------------

_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 2em auto; max-width: 72em; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .5em 0; } th, td { border: 1px solid #ddd; padding: .25em .6em; text-align: left; vertical-align: top; }
table.facts th { background: #f6f6f6; font-weight: 600; }
pre { margin: 0; white-space: pre-wrap; max-width: 50em; font-size: 12px; }
.note { color: #666; font-size: .92em; } .ok { color: #2a7a2a; }
.st-failed, .st-timeout { color: #b00020; font-weight: 600; } .st-done { color: #2a7a2a; }
figure.plot { margin: .5em 0 1.5em; } figure.plot svg { max-width: 100%; height: auto; }
"""


def _head(title: str) -> str:
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
    )


def _figure(fig: Any, name: str) -> str:
    return f"<figure class='plot' data-plot='{_e(name)}'>{plots.svg(fig)}</figure>"


def _table(df: pd.DataFrame, classes: Mapping[str, str] | None = None) -> str:
    cols = [str(c) for c in df.columns]
    out = ["<table><tr>" + "".join(f"<th>{_e(c)}</th>" for c in cols) + "</tr>"]
    for rec in df.itertuples(index=False):
        cells = []
        for c, v in zip(cols, rec):
            cls = f" class='{classes[c]}'" if classes and c in classes and v else ""
            cells.append(f"<td{cls}>{_e(_cell(v))}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table>")
    return "".join(out)


def _cell(v: Any) -> str:
    if v is None or (isinstance(v, float) and v != v) or v is pd.NA:
        return ""
    return plots._fmt(v)


def _dur(s: float) -> str:
    return f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min"


def _e(s: object) -> str:
    return html.escape(str(s), quote=True)

