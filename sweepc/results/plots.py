"""Results against parameters, drawn with matplotlib (the optional extra
`sweepc[report]`). Entry points: `result_figure()` for one picture and the
choosers `varied()`, `numeric_results()`, `default_by()` that the report and
`sweepc plot` share.

Points are aggregated before anything is drawn: for each value of x (and of
`by`), the mean of y as a line and its min..max over the other parameters as
a band. 100k psets give as many points as x has values, not 100k markers.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from sweepc.errors import UsageError, did_you_mean, listing

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

MAX_LINES = 8  # more values of `by` than this read as noise: aggregate over it instead
MAX_TICKS = 20  # category labels on a non-numeric x axis
MAX_POINTS = 200  # a numeric x with more values than this is binned...
BINS = 60  # ...into this many bins


@dataclass(frozen=True)
class PlotData:
    """What `sweepc plot` draws from: the results table, the columns asked
    for, and the parameters a default `by` is chosen among."""

    frame: pd.DataFrame  # every row; picture() keeps those that ended done (or are stale)
    y: str
    x: str
    by: str | None  # None: the default; "none": one line
    params: tuple[str, ...]

    def picture(self) -> Figure:
        if self.frame.empty:  # (said: no column 'Y' to plot as y)
            raise UsageError("no pset to plot: none is selected", "a where that no pset matches? see the psets with: sweepc psets")
        ok = self.frame[self.frame["_status"].isin(["done", "stale"])]
        by = self.by
        if by is None:
            by = default_by(ok, self.x, varied(ok, list(self.params)))
        elif by == "none":
            by = None
        return result_figure(ok, self.y, self.x, by)


def require_matplotlib() -> None:
    """matplotlib, set up for files (no display); a clear message without it."""
    try:
        import matplotlib
    except ImportError:
        raise UsageError("plots need matplotlib", "install it with: pip install 'sweepc[report]'") from None
    matplotlib.use("Agg", force=True)
    # text stays text in SVG: small files, no glyph definitions shared between inline SVGs
    matplotlib.rcParams["svg.fonttype"] = "none"
    matplotlib.rcParams["svg.hashsalt"] = "sweepc"  # the same figure gives the same file


@contextlib.contextmanager
def literal_text() -> Iterator[None]:
    """Text drawn as it is written, while figures are made and saved: values,
    column names and labels come from the data, and matplotlib read a `$` in
    them as the start of math (`$x_$` made a traceback, `$10 to $20` came
    out as math). Tick labels are made when the figure is saved, so saving
    needs it too."""
    import matplotlib

    with matplotlib.rc_context({"text.parse_math": False, "text.usetex": False}):
        yield


def varied(df: pd.DataFrame, params: Sequence[str]) -> list[str]:
    """The parameters that take more than one value in df, in sweepfile order."""
    return [p for p in params if p in df.columns and df[p].nunique(dropna=False) > 1]


def numeric_results(df: pd.DataFrame, params: Sequence[str]) -> list[str]:
    """Result columns (not parameters, not bookkeeping) holding numbers."""
    out = []
    for c in df.columns:
        name = str(c)
        if name in params or name.startswith("_") or "._" in name:
            continue
        col = df[c]
        if _is_numeric(col) and _finite_mask(col).any():
            out.append(name)
    return out


def default_by(df: pd.DataFrame, x: str, candidates: Sequence[str]) -> str | None:
    """The other varied parameter with the fewest values (at most MAX_LINES):
    one line per value of it reads well; None when there is none."""
    best: tuple[int, str] | None = None
    for p in candidates:
        if p == x:
            continue
        n = int(df[p].nunique(dropna=False))
        if 1 < n <= MAX_LINES and (best is None or n < best[0]):
            best = (n, p)
    return best[1] if best else None


def check_columns(df: pd.DataFrame, y: str, x: str, by: str | None) -> None:
    for what, name in (("y", y), ("--x", x), ("--by", by)):
        if name is not None and name not in df.columns:
            names = [str(c) for c in df.columns]
            raise UsageError(f"no column '{name}' to plot as {what}", did_you_mean(name, names) or f"columns: {listing(names)}")
    if by is not None and by == x:  # (was a traceback: cannot insert k, already exists)
        raise UsageError(f"--by {by} is the column on --x too", "give --by another column, or --by none for one line")
    for what, name in (("--x", x), ("--by", by)):
        held = _held(df[name]) if name is not None else None
        if held is not None:  # (was a traceback: unhashable type: 'list')
            raise UsageError(f"column '{name}' holds {held}: it cannot be plotted as {what}", f"give {what} a column of numbers or text")
    if not _is_numeric(df[y]):
        raise UsageError(f"column '{y}' does not hold numbers", "plot a numeric result")


def aggregate(df: pd.DataFrame, y: str, x: str, by: str | None) -> pd.DataFrame:
    """mean, min, max and count of the finite values of y for each (by, x).
    A numeric x with more than MAX_POINTS values is binned (the bin's middle)."""
    keys = [by, x] if by else [x]
    vals = pd.to_numeric(df[y], errors="coerce").astype(float)
    d = pd.DataFrame({k: df[k] for k in keys})
    if _is_numeric(df[x]) and df[x].nunique() > MAX_POINTS:
        xs = pd.to_numeric(df[x], errors="coerce").to_numpy(dtype=float)
        lo, width = float(np.nanmin(xs)), (float(np.nanmax(xs)) - float(np.nanmin(xs))) / BINS
        d[x] = lo + (np.clip(np.floor((xs - lo) / width), 0, BINS - 1) + 0.5) * width
    d["_y"] = vals.where(_finite_mask(vals))
    d = d.dropna(subset=["_y"])
    if d.empty:
        return pd.DataFrame(columns=[*keys, "mean", "min", "max", "count"])
    g = d.groupby(keys, dropna=False, sort=True)["_y"].agg(["mean", "min", "max", "count"]).reset_index()
    return g


def bools_apart(df: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """df with the bools of these columns written true/false where the column
    holds numbers too: pandas groups True with 1 (True == 1), and a plot over
    a = [0, 1, true, false] drew the 0 psets and the false ones as one point."""
    out = df
    for c in columns:
        col = df[c]
        if col.dtype == object:
            is_bool = col.map(lambda v: v is True or v is False)
            if is_bool.any() and not is_bool[col.notna()].all():
                out = out.assign(**{c: col.where(~is_bool, col.map({True: "true", False: "false"}))})
    return out


def draw(ax: Axes, df: pd.DataFrame, y: str, x: str, by: str | None) -> int:
    """y against x on ax (one line per value of `by`); returns the points drawn."""
    df = bools_apart(df, [x] if by is None else [x, by])
    agg = aggregate(df, y, x, by)
    numeric_x = _is_numeric(df[x])
    cats: list[Any] = []
    if not numeric_x:
        cats = pd.unique(df[x].dropna()).tolist()  # in pset order, which is the sweepfile's order
    groups = [(None, agg)] if by is None else list(agg.groupby(by, dropna=False, sort=True))
    n = 0
    lines, labels = [], []
    for value, part in groups:
        part = part.sort_values(x) if numeric_x else part.assign(_pos=part[x].map({c: k for k, c in enumerate(cats)})).sort_values("_pos")
        xs = part[x].to_numpy(dtype=float) if numeric_x else part["_pos"].to_numpy(dtype=float)
        label = None if by is None else f"{by}={_fmt(value)}"
        many = len(part) > 60
        (line,) = ax.plot(xs, part["mean"].to_numpy(dtype=float), marker=None if many else "o", markersize=3, linewidth=1.4)
        if label is not None:
            lines.append(line)
            labels.append(label)
        if (part["count"] > 1).any():
            ax.fill_between(xs, part["min"].to_numpy(dtype=float), part["max"].to_numpy(dtype=float), alpha=0.18, color=line.get_color(), linewidth=0)
        n += len(part)
    if not numeric_x:
        step = max(1, math.ceil(len(cats) / MAX_TICKS))
        ax.set_xticks(range(0, len(cats), step), [_fmt(c) for c in cats[::step]], rotation=30 if len(cats) > 6 else 0)
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.grid(True, alpha=0.3)
    if lines:
        # handed over, not found by their label: matplotlib leaves out a label
        # that starts with "_" (--by _status drew no legend, and warned)
        ax.legend(lines, labels, fontsize="small", title=None, frameon=False)
    ax.set_title(f"{y} against {x}" + (f", by {by}" if by else ""), fontsize="medium")
    return n


def result_figure(df: pd.DataFrame, y: str, x: str, by: str | None, size: tuple[float, float] = (6.4, 4.0)) -> Figure:
    require_matplotlib()
    from matplotlib.figure import Figure

    check_columns(df, y, x, by)
    with literal_text():
        fig = Figure(figsize=size, layout="constrained")
        draw(fig.add_subplot(), df, y, x, by)
    return fig


def svg(fig: Figure) -> str:
    """The figure as an <svg> element to put inline in HTML."""
    buf = io.StringIO()
    with literal_text():
        fig.savefig(buf, format="svg", metadata={"Date": None})  # the same study gives the same page
    text = buf.getvalue()
    return text[text.index("<svg"):]


def save(fig: Figure, path: str) -> None:
    """PNG or SVG (or anything matplotlib writes), by the file's extension."""
    try:
        with literal_text():
            fig.savefig(path, dpi=120)
    except (OSError, ValueError) as e:
        raise UsageError(f"cannot write {path}: {getattr(e, 'strerror', None) or e}", "name a .png or .svg file in a folder that exists") from None


def _held(col: pd.Series[Any]) -> str | None:
    """'lists' or 'dicts' when some value of col is one (a results key holding
    JSON arrays or objects): no line or group can be made of those."""
    if col.dtype != object:
        return None
    for v in col:
        if isinstance(v, (list, tuple)):
            return "lists"
        if isinstance(v, dict):
            return "dicts"
    return None


def _is_numeric(col: pd.Series[Any]) -> bool:
    """Numbers, not booleans; also a column of Python ints and floats that
    pandas keeps as objects (an int beyond 64 bits, 2**70, among them)."""
    if pd.api.types.is_bool_dtype(col):
        return False
    if pd.api.types.is_numeric_dtype(col):
        return True
    return col.dtype == object and pd.api.types.infer_dtype(col, skipna=True) in ("integer", "floating", "mixed-integer-float")


def _finite_mask(col: pd.Series[Any]) -> pd.Series[bool]:
    vals = pd.to_numeric(col, errors="coerce").astype(float)
    mask: pd.Series[bool] = pd.Series(np.isfinite(vals.to_numpy()), index=col.index, dtype=bool)
    return mask


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)
