"""The sweep algebra: pure functions over tuples of psets.

A pset is a dict of parameter name -> scalar; it is never mutated after it is
made. Every function returns a new tuple. Mistakes raise SweepMathError with a
message and a hint; the compiler attaches the place in the sweepfile.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from sweepc.hashing import pset_hash
from sweepc.values import RESERVED_PARAMS, Scalar, clean_str, display, join_key, not_expanded

Pset = dict[str, Scalar]
Psets = tuple[Pset, ...]


@dataclass(frozen=True, slots=True)
class IndexColumn:
    """The index column of a csv(..., index="NAME") call: not a parameter (it
    is in no pset and no hash), kept so that tables can show it as `_index`.

    values maps a row's parameter values (join keys of `columns`, in order)
    to its index; rows equal in every parameter keep the first row's index."""

    name: str
    columns: tuple[str, ...]
    values: Mapping[tuple[object, ...], Scalar]

    def of(self, params: Mapping[str, Scalar]) -> Scalar | None:
        try:
            return self.values.get(tuple(join_key(params[c]) for c in self.columns))
        except KeyError:  # a pset without these columns (a gather's)
            return None


@dataclass(frozen=True, slots=True)
class SweepMathError(Exception):
    message: str
    hint: str


_keys_cache: dict[int, tuple[Psets, tuple[str, ...]]] = {}


def keys_of(psets: Psets) -> tuple[str, ...]:
    """Parameter names in first-seen order (memoised per tuple: rules ask often)."""
    hit = _keys_cache.get(id(psets))
    if hit is not None and hit[0] is psets:
        return hit[1]
    keys = _keys_of(psets)
    if len(psets) > 1000:
        _keys_cache[id(psets)] = (psets, keys)  # holds psets, so the id stays unique
    return keys


def _keys_of(psets: Psets) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for p in psets:
        if len(p) != len(seen) or not p.keys() <= seen.keys():  # (a set comparison: no Python loop per pset)
            for k in p:
                seen.setdefault(k, None)
    return tuple(seen)


def from_values(name: str, values: Sequence[Scalar]) -> Psets:
    return tuple({name: v} for v in values)


def _overlap(a: Psets, b: Psets) -> list[str]:
    kb = set(keys_of(b))
    return [k for k in keys_of(a) if k in kb]


def product(a: Psets, b: Psets) -> Psets:
    """Every pset of a with every pset of b; a is the outer loop (psweep's pgrid)."""
    both = _overlap(a, b)
    if both:
        raise SweepMathError(
            f"parameter '{both[0]}' appears on both sides of '*'",
            "a parameter can appear once per pset; use '+' to concatenate sweeps instead",
        )
    return tuple({**x, **y} for x in a for y in b)


ZIP_HINT = "zip pairs the i-th values of each argument; give them the same length, or use '*' for every combination"


def zip_(parts: Sequence[tuple[str, Psets]]) -> Psets:
    """Psets side by side; unequal lengths are an error (psweep truncates silently)."""
    n0 = len(parts[0][1])
    for name, ps in parts[1:]:
        if len(ps) != n0:
            raise SweepMathError(f"zip of unequal lengths: {parts[0][0]} has {n0} psets, {name} has {len(ps)}", ZIP_HINT)
    for i in range(len(parts)):
        for j in range(i + 1, len(parts)):
            both = _overlap(parts[i][1], parts[j][1])
            if both:
                raise SweepMathError(
                    f"parameter '{both[0]}' appears in more than one argument of zip",
                    "a parameter can appear once per pset",
                )
    out: list[Pset] = []
    for row in zip(*(ps for _, ps in parts)):
        merged: Pset = {}
        for p in row:
            merged.update(p)
        out.append(merged)
    return tuple(out)


def unique(psets: Psets) -> Psets:
    """Keep the first of psets that are equal under the hashing rule."""
    seen: set[str] = set()
    out: list[Pset] = []
    for p in psets:
        h = pset_hash(p)
        if h not in seen:
            seen.add(h)
            out.append(p)
    return tuple(out)


def project(psets: Psets, names: Sequence[str]) -> Psets:
    """The distinct sub-psets over `names`, in first-seen order (for `by`)."""
    seen: set[tuple[object, ...]] = set()
    out: list[Pset] = []
    for p in psets:
        key = tuple((k, join_key(p[k])) for k in names if k in p)
        if key not in seen:
            seen.add(key)
            out.append({k: p[k] for k in names if k in p})
    return unique(tuple(out))


def concat(a: Psets, b: Psets) -> Psets:
    return unique(a + b)


def star(centre: Mapping[str, Scalar], vary: Sequence[tuple[str, Sequence[Scalar]]]) -> Psets:
    """One parameter at a time around a centre (psweep's stargrid); the centre once."""
    out: list[Pset] = []
    for name, values in vary:
        for v in values:
            p = dict(centre)
            p[name] = v
            out.append(p)
    return unique(tuple(out))


def where(psets: Psets, test: Callable[[Pset], object]) -> Psets:
    return tuple(p for p in psets if test(p))


# ---- csv ---------------------------------------------------------------------


def _infer(column: str, cells: list[str], rows: list[int], path: str) -> list[Scalar]:
    """Per-column types: all int -> int, else all float -> float, else all
    true/false -> bool, else str. So a numeric cell '1' is the number 1."""
    for i, c in enumerate(cells):
        if c.strip() == "":
            raise SweepMathError(
                f"empty cell in column '{column}' ({path}:{rows[i]})",
                "every row needs a value for every column",
            )
    stripped = [c.strip() for c in cells]
    try:
        return [int(c) for c in stripped]
    except ValueError:
        pass
    try:
        return [float(c) for c in stripped]
    except ValueError:
        pass
    lowered = [c.lower() for c in stripped]
    if all(c in ("true", "false") for c in lowered):
        return [c == "true" for c in lowered]
    return [clean_str(c) for c in cells]


# Every file read_csv()/read_npy() opened, or found missing (evaluate.py), for
# the compiled-graph cache (lang/project.py): a cached graph is only good while
# these files are unchanged.
FILES_READ: list[Path] = []


def read_csv(
    path: Path,
    shown_path: str,
    index: str | None,
    start: int,
    rows: int | None,
    columns: Sequence[str] | None,
    header: bool = True,
    limit: int | None = None,
) -> Psets:
    """Rows [start, start+rows) of a CSV, as psets (Maestro's pgen batches).

    With header=False the file has no header line and `columns` names its
    columns in order (Merlin's column_labels)."""
    return read_csv_indexed(path, shown_path, index, start, rows, columns, header, limit)[0]


def read_csv_indexed(
    path: Path,
    shown_path: str,
    index: str | None,
    start: int,
    rows: int | None,
    columns: Sequence[str] | None,
    header: bool = True,
    limit: int | None = None,
) -> tuple[Psets, IndexColumn | None]:
    """read_csv(), and the index column of the rows read when `index` names one."""
    FILES_READ.append(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            if header:
                try:
                    names = [h.strip() for h in next(reader)]
                except StopIteration:
                    raise SweepMathError(f"{shown_path} is empty", "the first line names the columns") from None
            body = list(reader)
    except FileNotFoundError:
        raise SweepMathError(
            f"CSV file '{shown_path}' not found", "paths are relative to the folder that holds the sweepfile" + not_expanded(shown_path)
        ) from None
    except csv.Error as e:
        if "field larger than field limit" in str(e):  # (not a question of encoding)
            raise SweepMathError(f"a cell of {shown_path} has more than {csv.field_size_limit():,} characters",
                                 "keep long texts in files of their own, and their paths in the CSV file") from None
        raise SweepMathError(f"cannot read {shown_path}: {e}", "is it a UTF-8 CSV file?") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SweepMathError(f"cannot read {shown_path}: {e}", "is it a UTF-8 CSV file?") from None
    from sweepc.errors import did_you_mean, listing

    first_line = 1
    if not header:
        assert columns is not None
        width = max((len(r) for r in body if r and any(c.strip() for c in r)), default=0)
        if width != len(columns):
            raise SweepMathError(
                f"columns= names {len(columns)} columns, but the rows of {shown_path} have {width}",
                "with header=false, columns=[...] names every column of the file, in order",
            )
        names, first_line = list(columns), 0
    header_row = names

    for name in [index] if index else []:
        if name not in header_row:
            raise SweepMathError(
                f"index column '{name}' is not in {shown_path}",
                did_you_mean(name, header_row) or f"its columns are: {listing(header_row)}",
            )
    wanted = list(columns) if columns else [h for h in header_row if h != index]
    for name in wanted:
        if name not in header_row:
            raise SweepMathError(
                f"column '{name}' is not in {shown_path}",
                did_you_mean(name, header_row) or f"its columns are: {listing(header_row)}",
            )
    for name in wanted:
        # a column becomes a parameter: {name} in commands, a name in conditions,
        # and the hashing rule relies on parameter names being identifiers
        if header_row.count(name) > 1:
            raise SweepMathError(f"{shown_path} has {header_row.count(name)} columns named '{name}'", "give every column its own name")
        if not _IDENTIFIER.fullmatch(name):
            raise SweepMathError(
                f"column name '{name}' in {shown_path} is not a parameter name",
                "parameter names are letters, digits and '_', not starting with a digit; rename the column, or leave it out with columns=[...]",
            )
        if name in RESERVED_PARAMS:
            raise SweepMathError(f"column '{name}' of {shown_path} is a column sweepc fills itself, not a parameter name",
                                 "rename the column, or leave it out with columns=[...] (or make it the index: index=...)")
    data_rows: list[tuple[int, list[str]]] = []
    line_no = first_line
    for r in body:
        line_no += 1
        if not r or all(not c.strip() for c in r):
            continue
        if len(r) != len(header_row):
            raise SweepMathError(
                f"row {line_no} of {shown_path} has {len(r)} cells, " + (f"the header has {len(header_row)}" if header else f"columns= names {len(header_row)}"),
                "every row needs one cell per column (quote cells that contain commas)",
            )
        data_rows.append((line_no, r))
    stop = len(data_rows) if rows is None else start + rows
    if not data_rows[start:stop]:
        raise SweepMathError(
            f"no rows selected from {shown_path} (it has {len(data_rows)} rows, start={start})",
            "start counts data rows from 0",
        )
    selected = len(data_rows[start:stop])
    if limit is not None and selected > limit:
        raise SweepMathError(
            f"{shown_path} gives {selected:,} psets; the limit is {limit:,}",
            f"if you mean it, raise the limit with the setting max_psets = {selected}; or take a batch with start= and rows=",
        )
    wanted_at = [(name, header_row.index(name)) for name in wanted]
    for line_no, r in data_rows[start:stop]:
        for name, j in wanted_at:
            if "\0" in r[j]:
                raise SweepMathError(
                    f"NUL character in column '{name}' ({shown_path}:{line_no})",
                    "no command or file name can hold a NUL byte; remove it from the CSV file",
                )
    # types come from the whole file, so a batch reads its cells as every other batch does
    cols: list[list[Scalar]] = []
    for name in wanted:
        j = header_row.index(name)
        cols.append(_infer(name, [r[j] for _, r in data_rows], [n for n, _ in data_rows], shown_path)[start:stop])
    psets = unique(tuple(dict(zip(wanted, vals)) for vals in zip(*cols)))
    if not index:
        return psets, None
    j = header_row.index(index)
    ids = _infer(index, [r[j] for _, r in data_rows], [n for n, _ in data_rows], shown_path)[start:stop]
    table: dict[tuple[object, ...], Scalar] = {}
    for vals, idx in zip(zip(*cols), ids):
        table.setdefault(tuple(join_key(v) for v in vals), idx)
    return psets, IndexColumn(index, tuple(wanted), table)


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def read_npy(path: Path, shown_path: str, start: int, rows: int | None, columns: Sequence[str], limit: int | None = None) -> Psets:
    """Rows [start, start+rows) of a 2-D NumPy array (rows = psets), its
    columns named by `columns` (Merlin's samples with column_labels)."""
    FILES_READ.append(path)
    import numpy as np

    try:
        arr = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise SweepMathError(f"NumPy file '{shown_path}' not found",
                             "paths are relative to the folder that holds the sweepfile" + not_expanded(shown_path)) from None
    except (OSError, ValueError) as e:
        raise SweepMathError(f"cannot read {shown_path}: {e}", "npy() reads a .npy file written by numpy.save (no pickled objects)") from None
    if not isinstance(arr, np.ndarray):
        raise SweepMathError(f"{shown_path} is not a .npy array", "npy() reads one array written by numpy.save, not an .npz archive")
    if arr.ndim != 2:
        raise SweepMathError(f"{shown_path} holds a {arr.ndim}-D array of shape {arr.shape}; npy() needs a 2-D one",
                             "rows are psets and columns are parameters: numpy.save(path, samples.reshape(n, k))")
    if arr.shape[1] != len(columns):
        raise SweepMathError(f"columns= names {len(columns)} columns, but {shown_path} has {arr.shape[1]} (shape {arr.shape})",
                             "name every column of the array, in order")
    for name in columns:
        if not _IDENTIFIER.fullmatch(name):
            raise SweepMathError(f"column name '{name}' is not a parameter name", "parameter names are letters, digits and '_', not starting with a digit")
        if name in RESERVED_PARAMS:
            raise SweepMathError(f"column name '{name}' is a column sweepc fills itself, not a parameter name",
                                 "name it otherwise (sweepc's own columns start with '_')")
    if len(set(columns)) != len(columns):
        raise SweepMathError("columns= names a column twice", "give every column its own name")
    if arr.dtype.kind not in "biuf" and arr.dtype.kind != "U":
        raise SweepMathError(f"{shown_path} holds values of type {arr.dtype}; npy() reads numbers, booleans or strings",
                             "save a numeric array: numpy.save(path, samples.astype(float))")
    stop = arr.shape[0] if rows is None else start + rows
    part = arr[start:stop]
    if len(part) == 0:
        raise SweepMathError(f"no rows selected from {shown_path} (it has {arr.shape[0]} rows, start={start})", "start counts rows from 0")
    if limit is not None and len(part) > limit:
        raise SweepMathError(
            f"{shown_path} gives {len(part):,} psets; the limit is {limit:,}",
            f"if you mean it, raise the limit with the setting max_psets = {len(part)}; or take a batch with start= and rows=",
        )
    out: list[Pset] = []
    for row in part.tolist():  # numpy scalars -> Python int/float/bool/str
        pset: Pset = {}
        for name, v in zip(columns, row):
            if isinstance(v, float) and not math.isfinite(v):
                raise SweepMathError(f"{shown_path} holds {v} in column '{name}'", "a parameter value must be a finite number")
            if isinstance(v, str) and "\0" in v:
                raise SweepMathError(f"NUL character in column '{name}' of {shown_path}", "no command or file name can hold a NUL character")
            pset[name] = clean_str(v) if isinstance(v, str) else v
        out.append(pset)
    return unique(tuple(out))


def describe(p: Mapping[str, Scalar]) -> str:
    return ",".join(f"{k}={display(v)}" for k, v in p.items())

