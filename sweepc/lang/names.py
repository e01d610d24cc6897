"""Pass 1, resolve(): syntax.Module -> Names.

Sorts the statements into one namespace (parameters, sweeps and rules share
it), checks the settings and backend blocks, and evaluates every parameter's
values (constants, range/linspace/logspace), checking them.
"""

from __future__ import annotations

import os
from collections.abc import Container, Mapping
from dataclasses import dataclass
from functools import partial

from sweepc.errors import Diagnostic, Span, did_you_mean
from sweepc.hashing import pset_hash
from sweepc.lang import syntax as s
from sweepc.lang.problems import Problems
from sweepc.values import Scalar, clean_float, clean_str, display

SETTINGS = ("workdir",)
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
    backends: Mapping[str, Mapping[str, Scalar | tuple[Scalar, ...]]]
    param_defs: Mapping[str, s.ParamDef]
    sweep_defs: Mapping[str, s.SweepDef]
    rule_defs: Mapping[str, s.RuleDef]
    values: Mapping[str, tuple[Scalar, ...] | None]  # None: the parameter has a mistake (reported)
    diagnostics: tuple[Diagnostic, ...]


def resolve(module: s.Module) -> Names:
    """Collect the names, check settings and backends, evaluate the parameters."""
    p = Problems(module)
    param_defs: dict[str, s.ParamDef] = {}
    sweep_defs: dict[str, s.SweepDef] = {}
    rule_defs: dict[str, s.RuleDef] = {}
    backends: dict[str, dict[str, Scalar | tuple[Scalar, ...]]] = {}
    workdir = ["calc"]
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
            value = p.guard(partial(_setting, p, st))
            if value is not None:
                workdir[0] = value
        elif isinstance(st, s.ParamDef):
            if claim(st.name, st.name_span):
                param_defs[st.name] = st
        elif isinstance(st, s.SweepDef):
            if claim(st.name, st.name_span):
                sweep_defs[st.name] = st
        elif isinstance(st, s.RuleDef):
            if claim(st.name, st.name_span):
                rule_defs[st.name] = st
        elif isinstance(st, s.BackendDef):
            p.guard(partial(_backend, p, st, backends, param_defs))
    values = {name: p.guard(partial(_param, p, st, param_defs)) for name, st in param_defs.items()}
    return Names(workdir[0], backends, param_defs, sweep_defs, rule_defs, values, tuple(p.diags))


def constant(p: Problems, e: s.Expr, params: Container[str]) -> Scalar | list[Scalar]:
    """A value, or a list of values, written in the sweepfile (params: for hints)."""
    return _Constants(p, params).const(e)


def _setting(p: Problems, st: s.Setting) -> str:
    if st.name not in SETTINGS:
        hint = did_you_mean(st.name, SETTINGS) or "to define a parameter write 'param NAME = [...]'"
        p.bail(f"unknown setting '{st.name}'", st.name_span, hint)
    if not isinstance(st.value, s.Str) or not st.value.value.strip():
        p.bail("workdir must be a non-empty string", st.value.span, 'for example: workdir = "calc"')
    value = st.value.value.strip()
    norm = os.path.normpath(value)
    if not os.path.isabs(norm) and (norm == "." or norm.startswith("..")):
        p.bail("workdir must be a folder below the project folder", st.value.span, 'for example: workdir = "calc"')
    return norm


def _backend(
    p: Problems, st: s.BackendDef, backends: dict[str, dict[str, Scalar | tuple[Scalar, ...]]], params: Container[str]
) -> None:
    if st.name in backends:
        p.bail(f"duplicate backend block '{st.name}'", st.name_span, "merge the two blocks into one")
    if st.name not in ("slurm", "local"):
        p.bail(f"unknown backend '{st.name}'", st.name_span, did_you_mean(st.name, ("slurm", "local")) or "backends are 'local' and 'slurm'")
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


def _param(p: Problems, st: s.ParamDef, params: Container[str]) -> tuple[Scalar, ...]:
    v = constant(p, st.value, params)
    values = v if isinstance(v, list) else [v]
    if not values:
        p.bail(f"parameter '{st.name}' has no values", st.value.span, "give at least one value")
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

    def __init__(self, p: Problems, params: Container[str]) -> None:
        self.p = p
        self.params = params

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
                    r = {"+": a + b, "-": a - b, "*": a * b, "**": a**b}.get(e.op) if e.op != "/" else a / b
                except (ZeroDivisionError, OverflowError) as ex:
                    bail(f"cannot compute this value: {ex}", e.span, "check the arithmetic")
                assert r is not None
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
        lin = [a0] if num == 1 else [a0 + (a1 - a0) * i / (num - 1) for i in range(num)]
        if e.func == "logspace":
            return [clean_float(10.0**x) for x in lin]
        return [clean_float(float(x)) for x in lin]
