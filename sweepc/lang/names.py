"""Pass 1, resolve(): syntax.Module -> Names.

Sorts the statements into one namespace (parameters, sweeps and rules share
it), checks the settings and backend blocks, and evaluates every parameter's
values (constants, range/linspace/logspace), checking them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Container, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from sweepc.errors import Diagnostic, Span, did_you_mean
from sweepc.hashing import pset_hash
from sweepc.lang import syntax as s
from sweepc.lang.expr import bounded_mul, bounded_pow
from sweepc.lang.problems import Bail, Problems
from sweepc.values import RESERVED_PARAMS, Scalar, clean_float, clean_str, display

SETTINGS = ("workdir", "max_psets")
# No parameter has more values, and no sweep more psets, unless the sweepfile
# says `max_psets = N`: sizes are checked before anything is made, so a typo
# such as range(10**12) is an error at once, not a machine out of memory.
# (At 100k psets a build plans in seconds and needs ~250 MB; memory and time
# grow linearly.)
DEFAULT_MAX_PSETS = 1_000_000
STATE_DIR = ".sweepc"
BACKENDS = ("slurm", "local", "dask")  # blocks the backends read and check themselves
PARAM_FUNCTIONS = ("range", "linspace", "logspace")
SWEEP_FUNCTIONS = ("zip", "star", "csv", "npy")
EXAMPLES = {
    "range": "range(10, 40, 10)",
    "linspace": "linspace(0, 1, 5)",
    "logspace": "logspace(-4, -1, 4)",
    "star": "star(a=2, b=20, vary=[a, b])",
    "csv": 'csv("params.csv", index="param_combo", start=0, rows=3)',
    "npy": 'npy("samples.npy", columns=["x", "y"]) or npy(make_samples, columns=["x", "y"])',
}


@dataclass(frozen=True, slots=True)
class Names:
    """The sweepfile's names and settings, and each parameter's values."""

    workdir: str
    max_psets: int
    backends: Mapping[str, Mapping[str, Scalar | tuple[Scalar, ...]]]
    param_defs: Mapping[str, s.ParamDef]
    sweep_defs: Mapping[str, s.SweepDef]
    rule_defs: Mapping[str, s.RuleDef]
    values: Mapping[str, tuple[Scalar, ...] | None]  # None: the parameter has a mistake (reported)
    sizes: Mapping[str, int]  # how many values each parameter has (also when that is too many)
    diagnostics: tuple[Diagnostic, ...]


class TooMany(Exception):
    """A value list larger than the limit (found before it is made)."""

    def __init__(self, what: str, size: int, limit: int, span: Span) -> None:
        self.what, self.size, self.limit, self.span = what, size, limit, span

    def report(self, p: Problems) -> None:
        p.error(
            f"{self.what} {self.size:,} values; the limit is {self.limit:,}",
            self.span,
            f"if you mean it, raise the limit with the setting max_psets = {self.size}",
        )


def too_many_psets(p: Problems, size: int, limit: int, span: Span) -> None:
    p.bail(
        f"this sweep has {size:,} psets; the limit is {limit:,}",
        span,
        f"if you mean it, raise the limit with the setting max_psets = {size}",
    )


# the messages of too_many_psets() and TooMany, read back by overrides.py (an
# error that a -D override caused is shown at the -D): (size, limit)
_TOO_MANY_PSETS = re.compile(r"this sweep has ([\d,]+) psets; the limit is ([\d,]+)")
_TOO_MANY_VALUES = re.compile(r".* ([\d,]+) values; the limit is ([\d,]+)")


def too_many(message: str) -> tuple[str, int, int] | None:
    """("psets" or "values", size, limit) of a diagnostic's message about the
    max_psets limit; None for any other message."""
    for kind, pattern in (("psets", _TOO_MANY_PSETS), ("values", _TOO_MANY_VALUES)):
        m = pattern.fullmatch(message)
        if m:
            return kind, int(m.group(1).replace(",", "")), int(m.group(2).replace(",", ""))
    return None


def resolve(module: s.Module, root: Path, sweepfile: Path) -> Names:
    """Collect the names, check settings and backends, evaluate the parameters."""
    p = Problems(module)
    param_defs: dict[str, s.ParamDef] = {}
    sweep_defs: dict[str, s.SweepDef] = {}
    rule_defs: dict[str, s.RuleDef] = {}
    backends: dict[str, dict[str, Scalar | tuple[Scalar, ...]]] = {}
    settings: dict[str, str | int] = {"workdir": "calc", "max_psets": DEFAULT_MAX_PSETS}
    seen: dict[str, Span] = {}

    def claim(name: str, span: Span) -> bool:
        if name in seen:
            first = seen[name]
            p.error(
                f"duplicate name '{name}'",
                span,
                f"'{name}' is already defined on line {first.line}; parameters, sweeps and rules share one namespace",
            )
            return False
        seen[name] = span
        return True

    for st in module.statements:
        if isinstance(st, s.Setting):
            value = p.guard(partial(_setting, p, st, root, sweepfile))
            if value is not None:
                settings[st.name] = value
        elif isinstance(st, s.ParamDef):
            if st.name in RESERVED_PARAMS:
                p.error(f"'{st.name}' is a column sweepc fills itself, not a parameter name", st.name_span,
                        "rename the parameter (sweepc's own columns start with '_')")
            if claim(st.name, st.name_span):  # (known all the same: no error about it as unknown later)
                param_defs[st.name] = st
        elif isinstance(st, s.SweepDef):
            if claim(st.name, st.name_span):
                sweep_defs[st.name] = st
        elif isinstance(st, s.RuleDef):
            if claim(st.name, st.name_span):
                rule_defs[st.name] = st
        elif isinstance(st, s.BackendDef):
            p.guard(partial(_backend, p, st, backends, param_defs))
    workdir, limit = str(settings["workdir"]), int(settings["max_psets"])
    values: dict[str, tuple[Scalar, ...] | None] = {}
    sizes: dict[str, int] = {}
    for name, st in param_defs.items():
        values[name] = p.guard(partial(_param, p, st, param_defs, limit, sizes))
    return Names(workdir, limit, backends, param_defs, sweep_defs, rule_defs, values, sizes, tuple(p.diags))


def constant(p: Problems, e: s.Expr, params: Container[str], limit: int = DEFAULT_MAX_PSETS) -> Scalar | list[Scalar]:
    """A value, or a list of values, written in the sweepfile (params: for hints)."""
    try:
        return _Constants(p, params, limit).const(e)
    except TooMany as ex:
        ex.report(p)
        raise Bail from None


def value_count(e: s.Expr) -> int | None:
    """How many values a parameter's expression makes, found without making
    a range() or the like (None: it has a mistake)."""
    try:
        v = _Constants(Problems(s.Module("", "", ())), (), 0).const(e)
    except TooMany as ex:
        if isinstance(e, s.BinOp) and e.op == "+":  # range(5) + [9]: both sides
            a, b = value_count(e.left), value_count(e.right)
            return a + b if a is not None and b is not None else None
        return ex.size
    except Bail:
        return None
    return len(v) if isinstance(v, list) else 1


def _setting(p: Problems, st: s.Setting, root: Path, sweepfile: Path) -> str | int:
    if st.name not in SETTINGS:
        hint = did_you_mean(st.name, SETTINGS) or "to define a parameter write 'param NAME = [...]'"
        p.bail(f"unknown setting '{st.name}'", st.name_span, hint)
    if st.name == "max_psets":
        v = constant(p, st.value, ())
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            p.bail("max_psets must be a whole number of at least 1", st.value.span, "for example: max_psets = 5_000_000")
        return v
    if not isinstance(st.value, s.Str) or not st.value.value.strip():
        p.bail("workdir must be a non-empty string", st.value.span, 'for example: workdir = "calc"')
    return _workdir(p, st.value, root, sweepfile)


def _workdir(p: Problems, node: s.Str, root: Path, sweepfile: Path) -> str:
    """The workdir: a folder strictly inside the project, that is not sweepc's own.

    `sweepc clean` removes job folders below it, so it must never be (or hold)
    the project itself, the sweepfile or the state store."""
    value = node.value.strip()
    norm = os.path.normpath(value)
    hint = 'for example: workdir = "calc"'
    if value.startswith("~") or "$" in value:
        # taken as written, `~` and `$HOME` were folders of those names in the project
        # (and `rm -rf ~` is what a shell user would then type to remove one)
        p.bail(f"workdir {value!r} is taken as written: sweepc does not expand '~' or '$' variables",
               node.span, "write the folder's path itself, inside the project; " + hint)
    if os.path.isabs(norm):
        real_root = os.path.realpath(root)
        rel = os.path.relpath(os.path.realpath(norm), real_root)
    else:
        rel = norm
    if rel == ".":
        p.bail("workdir cannot be the project folder itself", node.span, "sweepc needs a folder of its own for the job folders; " + hint)
    if rel == ".." or rel.startswith(".." + os.sep) or os.path.isabs(rel):
        p.bail("workdir must be a folder below the project folder", node.span, hint)
    if rel.split(os.sep)[0] == STATE_DIR:
        where = STATE_DIR if rel == STATE_DIR else f"inside {STATE_DIR}/"
        p.bail(f"workdir cannot be {where}: sweepc keeps its state there", node.span, hint)
    inside = os.path.relpath(os.path.realpath(sweepfile), os.path.realpath(os.path.join(root, rel)))
    if not (inside == ".." or inside.startswith(".." + os.sep)):
        p.bail("workdir cannot hold the sweepfile", node.span, hint)
    for part in rel.split(os.sep):
        if len(part.encode()) > 255:
            p.bail("a folder name in workdir is longer than 255 bytes", node.span, "no file system takes such a name; " + hint)
    return norm


def _backend(
    p: Problems, st: s.BackendDef, backends: dict[str, dict[str, Scalar | tuple[Scalar, ...]]], params: Container[str]
) -> None:
    if st.name in backends:
        p.bail(f"duplicate backend block '{st.name}'", st.name_span, "merge the two blocks into one")
    if st.name not in BACKENDS:
        p.bail(f"unknown backend '{st.name}'", st.name_span, did_you_mean(st.name, BACKENDS) or "backends are 'local', 'slurm' and 'dask'")
    values: dict[str, Scalar | tuple[Scalar, ...]] = {}
    for item in st.settings:
        if item.name in values:
            p.error(f"duplicate setting '{item.name}'", item.name_span, "give each setting once")
            continue
        v = p.guard(partial(constant, p, item.value, params))
        if v is None:
            continue
        values[item.name] = tuple(v) if isinstance(v, list) else v
    backends[st.name] = values


def _param(p: Problems, st: s.ParamDef, params: Container[str], limit: int, sizes: dict[str, int]) -> tuple[Scalar, ...]:
    try:
        v = _Constants(p, params, limit).const(st.value)
    except TooMany as ex:
        if ex.span == st.value.span:
            sizes[st.name] = ex.size  # zip() can still say its lengths differ
        ex.report(p)
        raise Bail from None
    values = v if isinstance(v, list) else [v]
    sizes[st.name] = len(values)
    if not values:
        p.bail(f"parameter '{st.name}' has no values", st.value.span, "give at least one value")
    if len(values) > limit:
        TooMany(f"parameter '{st.name}' has", len(values), limit, st.value.span).report(p)
        raise Bail
    if isinstance(st.value, s.Call) and st.value.func == "range":
        return tuple(values)  # whole numbers, all different
    if len(set(values)) == len(values) and not any(x != x for x in values):
        # all different (Python's == is the hashing rule's, but for NaN and
        # for true == 1, which the slow check below tells apart)
        return tuple(values)
    seen: dict[str, Scalar] = {}
    # point at the repeated item when the values are written out as a list
    items = st.value.items if isinstance(st.value, s.ListExpr) and len(st.value.items) == len(values) else None
    for i, x in enumerate(values):
        h = pset_hash({"": x})
        if h in seen:
            first = seen[h]
            same = "" if display(first) == display(x) else f" (the same value as {display(first)})"
            p.bail(
                f"value {display(x)} appears twice in parameter '{st.name}'{same}",
                items[i].span if items is not None else st.value.span,
                "each value makes its own psets; 1 and 1.0 are the same value",
            )
        seen[h] = x
    return tuple(values)


class _Constants:
    """Evaluates constant expressions: values, lists, arithmetic, range() & co."""

    def __init__(self, p: Problems, params: Container[str], limit: int) -> None:
        self.p = p
        self.params = params
        self.limit = limit

    def const(self, e: s.Expr) -> Scalar | list[Scalar]:
        bail = self.p.bail
        if isinstance(e, (s.Num, s.Str, s.Bool)):
            return clean_str(e.value) if isinstance(e.value, str) else e.value
        if isinstance(e, s.ListExpr):
            out: list[Scalar] = []
            for item in e.items:
                v = self.const(item)
                if isinstance(v, list):
                    bail("a list of values cannot contain a list", item.span, "write the values one after another: [1, 2, 3]")
                out.append(v)
            return out
        if isinstance(e, s.UnaryOp) and e.op in "-+":
            v = self.const(e.operand)
            if not isinstance(v, (int, float)) or isinstance(v, bool):
                bail(f"'{e.op}' needs a number", e.span, "write a number")
            return -v if e.op == "-" else v
        if isinstance(e, s.BinOp) and e.op in ("+", "-", "*", "/", "**"):
            a, b = self.const(e.left), self.const(e.right)
            if e.op == "+" and isinstance(a, list) and isinstance(b, list):
                return a + b
            if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) and not isinstance(b, bool):
                try:
                    if e.op == "**":
                        r = bounded_pow(a, b)
                    elif e.op == "*":
                        r = bounded_mul(a, b)
                    else:
                        r = {"+": a + b, "-": a - b}.get(e.op) if e.op != "/" else a / b
                except (ZeroDivisionError, OverflowError) as ex:
                    bail(f"cannot compute this value: {ex}", e.span, "check the arithmetic")
                if not isinstance(r, (int, float)):  # (-8) ** 0.5 is a complex number
                    bail("cannot compute this value: the result is not a real number", e.span, "check the arithmetic")
                return clean_float(r) if isinstance(r, float) else r
            bail(f"'{e.op}' cannot combine these values", e.op_span, "arithmetic works on numbers; '+' also joins two lists")
        if isinstance(e, s.Call):
            return self.call(e)
        if isinstance(e, s.Name):
            if e.id in ("true", "false"):
                return e.id == "true"
            bail(
                f"'{e.id}' is a name, not a value",
                e.span,
                'strings are quoted: "' + e.id + '"' if e.id not in self.params else "a parameter's values are written out; to combine parameters define a sweep",
            )
        bail("expected a value", e.span, "write a number, a string, true/false or a list [...]")

    def number_arg(self, call: s.Call, a: s.Arg, what: str, integer: bool = False) -> int | float:
        v = self.const(a.value)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (integer and not isinstance(v, int)):
            self.p.bail(f"{call.func}() needs {'a whole number' if integer else 'a number'} for {what}, not {display(v) if not isinstance(v, list) else 'a list'}", a.span, f"for example: {EXAMPLES[call.func]}")
        return v

    def call(self, e: s.Call) -> list[Scalar]:
        bail = self.p.bail
        if e.func not in PARAM_FUNCTIONS:
            if e.func in SWEEP_FUNCTIONS:
                bail(f"{e.func}() makes a sweep, not a parameter's values", e.func_span, f"write: sweep NAME = {e.func}(...)")
            bail(f"unknown function '{e.func}'", e.func_span, did_you_mean(e.func, PARAM_FUNCTIONS) or "parameter values come from range(), linspace() or logspace()")
        for a in e.args:
            if a.name is not None:
                bail(f"{e.func}() takes no keyword arguments", a.name_span, f"for example: {EXAMPLES[e.func]}")
        n = len(e.args)
        if e.func == "range":
            if not 1 <= n <= 3:
                bail(f"range() takes 1 to 3 arguments, got {n}", e.span, "range(stop), range(start, stop) or range(start, stop, step)")
            nums = [self.number_arg(e, a, ("start", "stop", "step")[i] if n > 1 else "stop", integer=True) for i, a in enumerate(e.args)]
            start, stop, step = (0, nums[0], 1) if n == 1 else (nums[0], nums[1], nums[2] if n == 3 else 1)
            if step == 0:
                bail("range() step must not be 0", e.args[2].span, "a step of 0 would never reach the stop value")
            count = max(0, (int(stop) - int(start) + int(step) - (1 if step > 0 else -1)) // int(step))
            if count > self.limit:
                raise TooMany("range() makes", count, self.limit, e.span)
            values: list[Scalar] = list(range(int(start), int(stop), int(step)))
            if not values:
                bail(f"range({', '.join(str(x) for x in nums)}) is empty", e.span, "the stop value is excluded, as in Python")
            return values
        if n != 3:
            bail(f"{e.func}() takes 3 arguments, got {n}", e.span, f"for example: {EXAMPLES[e.func]}")
        a0 = self.number_arg(e, e.args[0], "the start")
        a1 = self.number_arg(e, e.args[1], "the stop")
        num = int(self.number_arg(e, e.args[2], "the number of values", integer=True))
        if num < 1:
            bail(f"{e.func}() needs at least 1 value, got {num}", e.args[2].span, "the third argument is how many values")
        if num > self.limit:
            raise TooMany(f"{e.func}() makes", num, self.limit, e.span)
        try:
            lin = [a0] if num == 1 else [a0 + (a1 - a0) * i / (num - 1) for i in range(num)]
            if e.func == "logspace":
                return [clean_float(10.0**x) for x in lin]
            return [clean_float(float(x)) for x in lin]
        except OverflowError:
            bail(f"{e.func}() makes values too large for a number", e.span, "floats reach about 1.8e308: logspace() exponents up to 308")
