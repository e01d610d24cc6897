"""syntax.Module -> graph.BuildGraph.

Checks everything a sweepfile can get wrong and reports every independent
mistake (a mistake in one parameter does not hide one in a rule), expands the
sweeps, joins rule inputs on shared parameter names and renders each job's
command. Entry point: compile().
"""

from __future__ import annotations

import math
import os
import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import NoReturn, TypeVar

import networkx as nx

from sweepc.lang import sweeps as alg
from sweepc.lang import syntax as s
from sweepc.errors import Diagnostic, Span, SweepfileError, did_you_mean, listing
from sweepc.lang.expr import ExprError, compile_condition
from sweepc.lang.graph import (
    INPUT_LIST_NAME,
    RESERVED_NAMES,
    BuildGraph,
    InputSpec,
    Job,
    OutputSpec,
    Resources,
    RuleSpec,
    Sweep,
)
from sweepc.hashing import pset_hash
from sweepc.lang.sweeps import Pset, Psets, SweepMathError, keys_of
from sweepc.lang.placeholders import Placeholder, Template, TemplateError, parse_template
from sweepc.values import (
    Scalar,
    clean_float,
    clean_str,
    display,
    join_key,
    shell_quote,
    shell_str,
)

SETTINGS = ("workdir",)
RULE_FIELDS = ("input", "output", "shell", "restart", "resources", "retries", "results", "local")
RESOURCE_NAMES = ("cpus", "mem", "time", "nodes", "tasks", "gpus")
PARAM_FUNCTIONS = ("range", "linspace", "logspace")
SWEEP_FUNCTIONS = ("zip", "star", "csv")
PSET_ATTRS = ("hash", "dir", "seq")
# A single argument to exec() may not exceed this (Linux MAX_ARG_STRLEN).
MAX_COMMAND = 128 * 1024 - 1024

T = TypeVar("T")


class _Bail(Exception):
    """Stop checking the current statement; its diagnostic is recorded."""


def compile(module: s.Module, root: Path | None = None, sweepfile: Path | None = None) -> BuildGraph:
    """Check and expand a parsed sweepfile; raise SweepfileError listing every mistake."""
    path = sweepfile or Path(module.filename)
    return _Compiler(module, root or path.resolve().parent, path).run()


class _Compiler:
    def __init__(self, module: s.Module, root: Path, sweepfile: Path) -> None:
        self.m = module
        self.root = root
        self.sweepfile = sweepfile
        self.diags: list[Diagnostic] = []
        self.params: dict[str, tuple[Scalar, ...] | None] = {}
        self.param_defs: dict[str, s.ParamDef] = {}
        self.sweep_defs: dict[str, s.SweepDef] = {}
        self.sweeps: dict[str, Psets | None] = {}
        self.resolving: list[str] = []
        self.rule_defs: dict[str, s.RuleDef] = {}
        self.input_specs: dict[str, tuple[InputSpec, ...]] = {}
        self.backends: dict[str, dict[str, Scalar | tuple[Scalar, ...]]] = {}
        self.workdir = "calc"
        self.hashes: dict[int, str] = {}
        self.keep: list[Pset] = []

    def hash_of(self, p: Pset) -> str:
        """pset_hash, once per pset object: rules over one sweep share psets."""
        h = self.hashes.get(id(p))
        if h is None:
            h = self.hashes[id(p)] = pset_hash(p)
            self.keep.append(p)  # keeps id(p) from being reused while we cache it
        return h

    # -- diagnostics
    def error(self, message: str, span: Span | None, hint: str) -> None:
        self.diags.append(Diagnostic(message, span, hint, self.m.filename))

    def bail(self, message: str, span: Span | None, hint: str) -> NoReturn:
        self.error(message, span, hint)
        raise _Bail

    # -- driver
    def run(self) -> BuildGraph:
        self.collect()
        for name in self.param_defs:
            self.params[name] = self.guard(partial(self.eval_param, self.param_defs[name]))
        for name in self.sweep_defs:
            self.resolve_sweep(name)
        rules = self.guard(self.build_rules)
        if self.diags or rules is None:
            self.diags.sort(key=lambda d: (d.span.line, d.span.column) if d.span else (0, 0))
            raise SweepfileError(self.diags, self.m.source)
        specs, jobs = rules
        sweeps = {
            n: Sweep(n, ps, tuple(self.hash_of(p) for p in ps), keys_of(ps)) for n, ps in self.sweeps.items() if ps is not None
        }
        return BuildGraph(
            root=self.root,
            sweepfile=self.sweepfile,
            source=self.m.source,
            workdir=self.workdir,
            params={k: v for k, v in self.params.items() if v is not None},
            sweeps=sweeps,
            rules=specs,
            jobs=jobs,
            backends=self.backends,
            rule_index={r.name: i for i, r in enumerate(specs)},
        )

    def guard(self, f: Callable[[], T]) -> T | None:
        """f(), or None when it bailed (its diagnostic is recorded)."""
        try:
            return f()
        except _Bail:
            return None

    # -- names
    def collect(self) -> None:
        seen: dict[str, Span] = {}

        def claim(name: str, span: Span, what: str) -> bool:
            if name in seen:
                first = seen[name]
                self.error(
                    f"duplicate name '{name}'",
                    span,
                    f"'{name}' is already defined on line {first.line}; parameters, sweeps and rules share one namespace",
                )
                return False
            seen[name] = span
            return True

        for st in self.m.statements:
            if isinstance(st, s.Setting):
                self.guard(partial(self.setting, st))
            elif isinstance(st, s.ParamDef):
                if claim(st.name, st.name_span, "parameter"):
                    self.param_defs[st.name] = st
            elif isinstance(st, s.SweepDef):
                if claim(st.name, st.name_span, "sweep"):
                    self.sweep_defs[st.name] = st
            elif isinstance(st, s.RuleDef):
                if claim(st.name, st.name_span, "rule"):
                    self.rule_defs[st.name] = st
            elif isinstance(st, s.BackendDef):
                self.guard(partial(self.backend, st))

    def setting(self, st: s.Setting) -> None:
        if st.name not in SETTINGS:
            hint = did_you_mean(st.name, SETTINGS) or "to define a parameter write 'param NAME = [...]'"
            self.bail(f"unknown setting '{st.name}'", st.name_span, hint)
        if not isinstance(st.value, s.Str) or not st.value.value.strip():
            self.bail("workdir must be a non-empty string", st.value.span, 'for example: workdir = "calc"')
        value = st.value.value.strip()
        norm = os.path.normpath(value)
        if not os.path.isabs(norm) and (norm == "." or norm.startswith("..")):
            self.bail("workdir must be a folder below the project folder", st.value.span, 'for example: workdir = "calc"')
        self.workdir = norm

    def backend(self, st: s.BackendDef) -> None:
        if st.name in self.backends:
            self.bail(f"duplicate backend block '{st.name}'", st.name_span, "merge the two blocks into one")
        if st.name not in ("slurm", "local"):
            self.bail(f"unknown backend '{st.name}'", st.name_span, did_you_mean(st.name, ("slurm", "local")) or "backends are 'local' and 'slurm'")
        values: dict[str, Scalar | tuple[Scalar, ...]] = {}
        for item in st.settings:
            if item.name in values:
                self.error(f"duplicate setting '{item.name}'", item.name_span, "give each setting once")
                continue
            v = self.guard(partial(self.const, item.value))
            if v is None:
                continue
            values[item.name] = tuple(v) if isinstance(v, list) else v
        self.backends[st.name] = values

    # -- constants (parameter values)
    def const(self, e: s.Expr) -> Scalar | list[Scalar]:
        if isinstance(e, (s.Num, s.Str, s.Bool)):
            return clean_str(e.value) if isinstance(e.value, str) else e.value
        if isinstance(e, s.ListExpr):
            out: list[Scalar] = []
            for item in e.items:
                v = self.const(item)
                if isinstance(v, list):
                    self.bail("a list of values cannot contain a list", item.span, "write the values one after another: [1, 2, 3]")
                out.append(v)
            return out
        if isinstance(e, s.UnaryOp) and e.op in "-+":
            v = self.const(e.operand)
            if not isinstance(v, (int, float)) or isinstance(v, bool):
                self.bail(f"'{e.op}' needs a number", e.span, "write a number")
            return -v if e.op == "-" else v
        if isinstance(e, s.BinOp) and e.op in ("+", "-", "*", "/", "**"):
            a, b = self.const(e.left), self.const(e.right)
            if e.op == "+" and isinstance(a, list) and isinstance(b, list):
                return a + b
            if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) and not isinstance(b, bool):
                try:
                    r = {"+": a + b, "-": a - b, "*": a * b, "**": a**b}.get(e.op) if e.op != "/" else a / b
                except (ZeroDivisionError, OverflowError) as ex:
                    self.bail(f"cannot compute this value: {ex}", e.span, "check the arithmetic")
                assert r is not None
                return clean_float(r) if isinstance(r, float) else r
            self.bail(f"'{e.op}' cannot combine these values", e.op_span, "arithmetic works on numbers; '+' also joins two lists")
        if isinstance(e, s.Call):
            return self.param_call(e)
        if isinstance(e, s.Name):
            if e.id in ("true", "false"):
                return e.id == "true"
            self.bail(
                f"'{e.id}' is a name, not a value",
                e.span,
                'strings are quoted: "' + e.id + '"' if e.id not in self.param_defs else "a parameter's values are written out; to combine parameters define a sweep",
            )
        self.bail("expected a value", e.span, "write a number, a string, true/false or a list [...]")

    def number_arg(self, call: s.Call, a: s.Arg, what: str, integer: bool = False) -> int | float:
        v = self.const(a.value)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (integer and not isinstance(v, int)):
            self.bail(f"{call.func}() needs {'a whole number' if integer else 'a number'} for {what}, not {display(v) if not isinstance(v, list) else 'a list'}", a.span, f"for example: {_EXAMPLES[call.func]}")
        return v

    def param_call(self, e: s.Call) -> list[Scalar]:
        if e.func not in PARAM_FUNCTIONS:
            if e.func in SWEEP_FUNCTIONS:
                self.bail(f"{e.func}() makes a sweep, not a parameter's values", e.func_span, f"write: sweep NAME = {e.func}(...)")
            self.bail(f"unknown function '{e.func}'", e.func_span, did_you_mean(e.func, PARAM_FUNCTIONS) or "parameter values come from range(), linspace() or logspace()")
        for a in e.args:
            if a.name is not None:
                self.bail(f"{e.func}() takes no keyword arguments", a.name_span, f"for example: {_EXAMPLES[e.func]}")
        n = len(e.args)
        if e.func == "range":
            if not 1 <= n <= 3:
                self.bail(f"range() takes 1 to 3 arguments, got {n}", e.span, "range(stop), range(start, stop) or range(start, stop, step)")
            nums = [self.number_arg(e, a, ("start", "stop", "step")[i] if n > 1 else "stop", integer=True) for i, a in enumerate(e.args)]
            start, stop, step = (0, nums[0], 1) if n == 1 else (nums[0], nums[1], nums[2] if n == 3 else 1)
            if step == 0:
                self.bail("range() step must not be 0", e.args[2].span, "a step of 0 would never reach the stop value")
            values: list[Scalar] = list(range(int(start), int(stop), int(step)))
            if not values:
                self.bail(f"range({', '.join(str(x) for x in nums)}) is empty", e.span, "the stop value is excluded, as in Python")
            return values
        if n != 3:
            self.bail(f"{e.func}() takes 3 arguments, got {n}", e.span, f"for example: {_EXAMPLES[e.func]}")
        a0 = self.number_arg(e, e.args[0], "the start")
        a1 = self.number_arg(e, e.args[1], "the stop")
        num = int(self.number_arg(e, e.args[2], "the number of values", integer=True))
        if num < 1:
            self.bail(f"{e.func}() needs at least 1 value, got {num}", e.args[2].span, "the third argument is how many values")
        lin = [a0] if num == 1 else [a0 + (a1 - a0) * i / (num - 1) for i in range(num)]
        if e.func == "logspace":
            return [clean_float(10.0**x) for x in lin]
        return [clean_float(float(x)) for x in lin]

    def eval_param(self, st: s.ParamDef) -> tuple[Scalar, ...]:
        v = self.const(st.value)
        values = v if isinstance(v, list) else [v]
        if not values:
            self.bail(f"parameter '{st.name}' has no values", st.value.span, "give at least one value")
        seen: dict[str, Scalar] = {}
        # point at the repeated item when the values are written out as a list
        items = st.value.items if isinstance(st.value, s.ListExpr) and len(st.value.items) == len(values) else None
        for i, x in enumerate(values):
            h = pset_hash({"": x})
            if h in seen:
                first = seen[h]
                same = "" if display(first) == display(x) else f" (the same value as {display(first)})"
                self.bail(
                    f"value {display(x)} appears twice in parameter '{st.name}'{same}",
                    items[i].span if items is not None else st.value.span,
                    "each value makes its own psets; 1 and 1.0 are the same value",
                )
            seen[h] = x
        return tuple(values)

    # -- sweeps
    def resolve_sweep(self, name: str) -> Psets | None:
        if name in self.sweeps:
            return self.sweeps[name]
        st = self.sweep_defs[name]
        if name in self.resolving:
            cycle = " -> ".join(self.resolving[self.resolving.index(name):] + [name])
            self.bail(f"sweep defined in terms of itself: {cycle}", st.name_span, "a sweep can only use parameters and other sweeps")
        self.resolving.append(name)
        try:
            ps = self.guard(lambda: self.sweep_expr(st.value))
        finally:
            self.resolving.pop()
        result = ps if isinstance(ps, tuple) else None
        if result is not None and not result:
            self.error(f"sweep '{name}' is empty", st.value.span, "a 'where' condition removed every pset")
            result = None
        self.sweeps[name] = result
        return result

    def sweep_name(self, e: s.Name) -> Psets:
        if e.id in self.param_defs:
            values = self.params.get(e.id)
            if values is None:
                raise _Bail  # its own error is already reported
            return alg.from_values(e.id, values)
        if e.id in self.sweep_defs:
            ps = self.resolve_sweep(e.id)
            if ps is None:
                raise _Bail
            return ps
        if e.id in self.rule_defs:
            self.bail(f"'{e.id}' is a rule, not a parameter or sweep", e.span, "rules run over sweeps; use 'input: " + e.id + "' to take a rule's outputs")
        self.bail(
            f"unknown parameter or sweep '{e.id}'",
            e.span,
            did_you_mean(e.id, [*self.param_defs, *self.sweep_defs]) or f"define it first: param {e.id} = [...]",
        )

    def sweep_expr(self, e: s.Expr) -> Psets:
        try:
            if isinstance(e, s.Name):
                return self.sweep_name(e)
            if isinstance(e, s.BinOp) and e.op in ("*", "+"):
                left, right = self.guard(lambda: self.sweep_expr(e.left)), self.guard(lambda: self.sweep_expr(e.right))
                if not isinstance(left, tuple) or not isinstance(right, tuple):
                    raise _Bail
                return alg.product(left, right) if e.op == "*" else alg.concat(left, right)
            if isinstance(e, s.BinOp) and e.op == "where":
                return self.where(e)
            if isinstance(e, s.Call):
                return self.sweep_call(e)
        except SweepMathError as ex:
            span = e.op_span if isinstance(e, s.BinOp) else e.span
            self.bail(ex.message, span, ex.hint)
        if isinstance(e, (s.ListExpr, s.Num, s.Str, s.Bool)):
            self.bail("a sweep is made of parameters, not values", e.span, "define the values as a parameter first: param x = [...]")
        if isinstance(e, s.BinOp):
            self.bail(f"'{e.op}' does not combine sweeps", e.op_span, "sweeps combine with '*' (every combination), '+' (one after the other), zip(), star() and 'where'")
        self.bail("expected a sweep", e.span, "a sweep is a parameter, a sweep, A * B, A + B, zip(...), star(...), csv(...) or A where COND")

    def where(self, e: s.BinOp) -> Psets:
        base = self.sweep_expr(e.left)
        keys = keys_of(base)
        try:
            cond = compile_condition(e.right, keys)
        except ExprError as ex:
            self.bail(ex.message, ex.span, ex.hint)
        out: list[Pset] = []
        func = cond.func
        for p in base:
            try:
                if func(p):
                    out.append(p)
            except KeyError as ex:
                self.bail(f"parameter {ex.args[0]!r} is missing from some psets of this sweep", e.right.span, "a condition can only use parameters every pset has")
            except (TypeError, ZeroDivisionError, ValueError, OverflowError) as ex:
                hint = (
                    "a condition must work for every pset; 'and' stops at the first false part, e.g. x != 0 and 1 / x > 2"
                    if isinstance(ex, (ZeroDivisionError, OverflowError, ValueError))
                    else "arithmetic works on numbers only" if "needs numbers" in str(ex)
                    else "compare numbers with numbers and strings with strings"
                )
                self.bail(f"condition fails for pset {alg.describe(p)}: {_plain_error(ex)}", e.right.span, hint)
        return tuple(out)

    def sweep_call(self, e: s.Call) -> Psets:
        if e.func == "zip":
            if len(e.args) < 2:
                self.bail("zip() needs at least two sweeps", e.span, "for example: zip(a, c)")
            parts: list[tuple[str, Psets]] = []
            for a in e.args:
                if a.name is not None:
                    self.bail("zip() takes no keyword arguments", a.name_span, "for example: zip(a, c)")
                label = a.value.id if isinstance(a.value, s.Name) else "an argument"
                parts.append((label, self.sweep_expr(a.value)))
            return alg.zip_(parts)
        if e.func == "star":
            return self.star(e)
        if e.func == "csv":
            return self.csv(e)
        if e.func in PARAM_FUNCTIONS:
            self.bail(f"{e.func}() makes a parameter's values, not a sweep", e.func_span, f"write: param NAME = {e.func}(...), then use NAME in the sweep")
        self.bail(f"unknown function '{e.func}'", e.func_span, did_you_mean(e.func, SWEEP_FUNCTIONS) or "sweeps use zip(), star() and csv()")

    def star(self, e: s.Call) -> Psets:
        centre: dict[str, Scalar] = {}
        vary_arg: s.Arg | None = None
        for a in e.args:
            if a.name is None:
                self.bail("star() takes keyword arguments only", a.span, _EXAMPLES["star"])
            if a.name == "vary":
                vary_arg = a
                continue
            v = self.const(a.value)
            if isinstance(v, list):
                self.bail(f"the centre value of '{a.name}' must be a single value", a.value.span, _EXAMPLES["star"])
            centre[a.name] = v
        if vary_arg is None:
            self.bail("star() needs vary=[...]: the parameters to scan", e.span, _EXAMPLES["star"])
        names = vary_arg.value.items if isinstance(vary_arg.value, s.ListExpr) else (vary_arg.value,)
        vary: list[tuple[str, Sequence[Scalar]]] = []
        for n in names:
            if not isinstance(n, s.Name):
                self.bail("vary= lists parameter names", n.span, _EXAMPLES["star"])
            if n.id not in self.param_defs:
                self.bail(f"unknown parameter '{n.id}'", n.span, did_you_mean(n.id, self.param_defs) or "vary= names parameters defined with 'param'")
            if n.id not in centre:
                self.bail(f"star() needs a centre value for '{n.id}'", n.span, f"add {n.id}=VALUE to star(...)")
            values = self.params.get(n.id)
            if values is None:
                raise _Bail
            vary.append((n.id, values))
        return alg.star(centre, vary)

    def csv(self, e: s.Call) -> Psets:
        path_arg: s.Arg | None = None
        opts: dict[str, s.Arg] = {}
        for a in e.args:
            if a.name is None:
                if path_arg is not None:
                    self.bail("csv() takes one path", a.span, _EXAMPLES["csv"])
                path_arg = a
            elif a.name in ("index", "start", "rows", "columns"):
                opts[a.name] = a
            else:
                self.bail(f"unknown csv() argument '{a.name}'", a.name_span, did_you_mean(a.name, ("index", "start", "rows", "columns")) or _EXAMPLES["csv"])
        if path_arg is None or not isinstance(path_arg.value, s.Str):
            self.bail("csv() needs the path of a CSV file as a string", (path_arg or e).span, _EXAMPLES["csv"])
        index = self.opt_str(opts.get("index"))
        start = self.opt_int(opts.get("start"), 0, 0)
        rows = self.opt_int(opts.get("rows"), None, 1)
        columns: list[str] | None = None
        if "columns" in opts:
            v = self.const(opts["columns"].value)
            if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                self.bail("columns= needs a list of column names", opts["columns"].value.span, _EXAMPLES["csv"])
            columns = [str(x) for x in v]
        shown = path_arg.value.value
        try:
            return alg.read_csv(self.root / shown, shown, index, start, rows, columns)
        except SweepMathError as ex:
            span = path_arg.value.span
            if "index column" in ex.message and "index" in opts:
                span = opts["index"].value.span
            elif ex.message.startswith("column '") and "columns" in opts:
                span = opts["columns"].value.span
            self.bail(ex.message, span, ex.hint)

    def opt_str(self, a: s.Arg | None) -> str | None:
        if a is None:
            return None
        if not isinstance(a.value, s.Str):
            self.bail(f"{a.name}= needs a string", a.value.span, _EXAMPLES["csv"])
        return a.value.value

    def opt_int(self, a: s.Arg | None, default: T, minimum: int) -> int | T:
        if a is None:
            return default
        v = self.const(a.value)
        if not isinstance(v, int) or isinstance(v, bool) or v < minimum:
            self.bail(f"{a.name}= needs a whole number of at least {minimum}", a.value.span, _EXAMPLES["csv"])
        return v

    # -- rules
    def build_rules(self) -> tuple[tuple[RuleSpec, ...], tuple[Job, ...]]:
        checked: dict[str, _Rule] = {}
        for name, rd in self.rule_defs.items():
            r = self.guard(partial(self.check_rule, rd))
            if isinstance(r, _Rule):
                checked[name] = r
        # rule references need every rule's name, so they are checked after
        for name, inputs in self.input_specs.items():
            for inp in inputs:
                if inp.rule is not None and inp.rule not in self.rule_defs:
                    hint = did_you_mean(inp.rule, self.rule_defs)
                    if not hint and (inp.rule in self.param_defs or inp.rule in self.sweep_defs):
                        hint = "inputs name rules or files; parameters are used as {" + inp.rule + "} in the command"
                    self.error(f"unknown rule '{inp.rule}'", inp.span, hint or "an input is a rule name or a quoted file path")
                    checked.pop(name, None)
        order = self.rule_order(checked)
        if self.diags:
            raise _Bail
        return self.expand(checked, order)

    def rule_order(self, rules: Mapping[str, _Rule]) -> list[str]:
        g: nx.DiGraph[str] = nx.DiGraph()
        index = {n: i for i, n in enumerate(self.rule_defs)}
        g.add_nodes_from(rules)
        for r in rules.values():
            for inp in r.inputs:
                if inp.rule is not None and inp.rule in rules:
                    g.add_edge(inp.rule, r.name)
        try:
            cycle = nx.find_cycle(g)
        except nx.NetworkXNoCycle:
            return list(nx.lexicographical_topological_sort(g, key=lambda n: index[n]))
        names = [u for u, _ in cycle]
        # start the story at the rule defined first, and point at its input
        k = min(range(len(names)), key=lambda i: index[names[i]])
        names = names[k:] + names[:k]
        first = rules[names[0]]
        upstream = names[-1]
        span = next(i.span for i in first.inputs if i.rule == upstream)
        self.error(
            "dependency cycle: " + " -> ".join([*names, names[0]]),
            span,
            "a rule cannot need its own outputs, directly or through other rules",
        )
        return []

    def check_rule(self, rd: s.RuleDef) -> _Rule:
        fields: dict[str, s.Field] = {}
        ok = True
        for f in rd.fields:
            if f.name not in RULE_FIELDS:
                self.error(f"unknown rule field '{f.name}'", f.name_span, did_you_mean(f.name, RULE_FIELDS) or "rule fields are: " + ", ".join(RULE_FIELDS))
                ok = False
            elif f.name in fields:
                self.error(f"duplicate field '{f.name}' in rule '{rd.name}'", f.name_span, "give each field once; list several values with commas")
                ok = False
            else:
                fields[f.name] = f
        # inputs do not depend on the psets: check them (and, later, the rule
        # names they use) even when the rest of the rule cannot be checked
        inputs = self.guard(lambda: self.rule_inputs(fields.get("input")))
        if isinstance(inputs, tuple):
            self.input_specs[rd.name] = inputs
        if "shell" not in fields:
            self.bail(f"rule '{rd.name}' has no shell: command", rd.name_span, 'add a line such as: shell: "echo {a} > {output}"')
        psets, over_text = self.rule_psets(rd)
        keys = keys_of(psets)
        by = tuple(b.id for b in rd.by)
        if by:
            if rd.over is None:
                self.bail("'by' needs 'over'", rd.by[0].span, f"write: rule {rd.name} over SWEEP by {by[0]}:")
            for b in rd.by:
                if b.id not in keys:
                    self.bail(
                        f"'by' names parameter '{b.id}', which is not in {over_text}",
                        b.span,
                        did_you_mean(b.id, keys) or f"{over_text} has: {listing(keys)}",
                    )
            instances = alg.project(psets, by)
        else:
            instances = psets
        inst_keys = by if by else keys
        outputs = self.guard(lambda: self.rule_outputs(rd, fields.get("output"), fields.get("results")))
        scalars = {n: self.guard(partial(self.field_scalar, fields.get(n), n)) for n in ("shell", "restart", "retries", "local")}
        resources = self.guard(lambda: self.rule_resources(fields.get("resources"), inst_keys))
        if inputs is None or outputs is None or scalars["shell"] is None:
            raise _Bail
        out_specs, results = outputs
        templates: dict[str, tuple[Template, s.Str]] = {}
        for tname in ("shell", "restart"):
            node = scalars[tname]
            if node is None:
                continue
            if not isinstance(node, s.Str):
                self.error(f"{tname}: needs a string", node.span, 'for example: shell: "echo {a} > {output}"')
                continue
            t = self.guard(partial(self.template, node, rd.name, inst_keys, inputs, out_specs))
            if isinstance(t, Template):
                templates[tname] = (t, node)
        retries = 0
        if scalars["retries"] is not None:
            rv = scalars["retries"]
            if not isinstance(rv, s.Num) or not isinstance(rv.value, int) or rv.value < 0:
                self.error("retries: needs a whole number of at least 0", rv.span, "for example: retries: 2")
            else:
                retries = rv.value
        local = False
        if scalars["local"] is not None:
            lv = scalars["local"]
            if not isinstance(lv, s.Bool):
                self.error("local: needs true or false", lv.span, "for example: local: true")
            else:
                local = lv.value
        # a bad resource or field does not hide mistakes in the command above
        if "shell" not in templates or not isinstance(resources, dict) or not ok:
            raise _Bail
        return _Rule(
            name=rd.name,
            span=rd.name_span,
            over=over_text if rd.over is not None else None,
            by=by,
            keys=inst_keys,
            instances=instances,
            inputs=inputs,
            outputs=out_specs,
            results=results,
            shell=templates["shell"][0],
            restart=templates["restart"][0] if "restart" in templates else None,
            retries=retries,
            local=local,
            resources=resources,
            input_spans={i.name or i.path or "": i.span for i in inputs},
            shell_node=templates["shell"][1],
        )

    def rule_psets(self, rd: s.RuleDef) -> tuple[Psets, str]:
        if rd.over is None:
            return ({},), "everything"
        text = rd.over.id if isinstance(rd.over, s.Name) else f"the sweep of rule '{rd.name}'"
        ps = self.sweep_expr(rd.over)
        if not ps:
            self.bail(f"rule '{rd.name}' runs over an empty sweep", rd.over.span, "a 'where' condition removed every pset")
        if isinstance(rd.over, s.Name):
            text = f"sweep '{rd.over.id}'" if rd.over.id in self.sweep_defs else f"parameter '{rd.over.id}'"
        return ps, text

    def field_scalar(self, f: s.Field | None, name: str) -> s.Expr | None:
        if f is None:
            return None
        if len(f.items) != 1 or f.items[0].name is not None:
            self.bail(f"{name}: takes one value", f.span, 'for example: shell: "echo {a} > {output}"' if name in ("shell", "restart") else f"for example: {name}: 1")
        return f.items[0].value

    def rule_inputs(self, f: s.Field | None) -> tuple[InputSpec, ...]:
        if f is None:
            return ()
        out: list[InputSpec] = []
        names: set[str] = set()
        for it in f.items:
            v = it.value
            if isinstance(v, s.Name):
                spec = InputSpec(it.name or v.id, v.id, None, v.span)
            elif isinstance(v, s.Str):
                path = v.value.strip()
                if not path or os.path.isabs(path):
                    self.bail("a source input is a path relative to the project folder", v.span, 'for example: input: "data/{a}.csv"')
                try:
                    parse_template(path)
                except TemplateError as ex:
                    self.bail(ex.message.replace("command", "path"), v.span, ex.hint)
                spec = InputSpec(it.name, None, path, v.span)
            else:
                self.bail("an input is a rule name or a quoted file path", v.span, 'for example: input: gen, "params.json"')
            if spec.name is not None:
                if spec.name in names:
                    self.bail(f"two inputs are named '{spec.name}'", it.name_span or v.span, "name them apart: input: first = gen, second = other")
                if spec.name == "list":
                    self.bail("an input cannot be named 'list'", it.name_span or v.span, "{input.list} is the file that names every input")
                names.add(spec.name)
            out.append(spec)
        return tuple(out)

    def rule_outputs(self, rd: s.RuleDef, f: s.Field | None, rf: s.Field | None) -> tuple[tuple[OutputSpec, ...], tuple[str, ...]]:
        outs: list[OutputSpec] = []
        for it in f.items if f else ():
            if not isinstance(it.value, s.Str):
                self.bail("an output is a quoted file name", it.value.span, 'for example: output: "out.txt"')
            outs.append(OutputSpec(it.name, self.job_path(it.value, "output"), it.value.span))
        results: list[str] = []
        for it in rf.items if rf else ():
            if not isinstance(it.value, s.Str) or it.name is not None:
                self.bail("results: names a JSON file the job writes", it.value.span, 'for example: results: "result.json"')
            p = self.job_path(it.value, "results")
            results.append(p)
            if all(o.path != p for o in outs):
                outs.append(OutputSpec(None, p, it.value.span))  # results files are outputs too
        seen: dict[str, OutputSpec] = {}
        names: set[str] = set()
        for o in outs:
            if o.path in seen and o.span != seen[o.path].span:
                self.bail(f"two outputs of rule '{rd.name}' produce one file '{o.path}'", o.span, "give every output its own file name")
            seen[o.path] = o
            if o.name is not None:
                if o.name in names:
                    self.bail(f"two outputs are named '{o.name}'", o.span, "give every named output its own name")
                names.add(o.name)
        return tuple(outs), tuple(results)

    def job_path(self, v: s.Str, what: str) -> str:
        p = v.value.strip()
        norm = os.path.normpath(p) if p else ""
        if not p or os.path.isabs(p) or norm.startswith("..") or norm == ".":
            self.bail(
                f"an {what} file must be a path inside the job's own folder",
                v.span,
                "sweepc keeps every job's files in its own folder (<workdir>/<rule>/<hh>/<hash>/); name the file only, e.g. \"out.txt\"",
            )
        if "{" in p or "}" in p:
            self.bail(f"an {what} file name cannot use placeholders", v.span, "every job has its own folder already, so one fixed name is enough")
        if norm in RESERVED_NAMES:
            self.bail(f"'{norm}' is a file sweepc writes itself", v.span, "choose another name")
        return norm

    def rule_resources(self, f: s.Field | None, keys: Sequence[str]) -> dict[str, tuple[s.Expr, Template | str | None]]:
        out: dict[str, tuple[s.Expr, Template | str | None]] = {}
        # each resource on its own: a bad 'mem' does not hide a bad 'time'
        ok = [self.guard(partial(self.rule_resource, it, keys, out)) for it in (f.items if f else ())]
        if None in ok:
            raise _Bail
        return out

    def rule_resource(self, it: s.Item, keys: Sequence[str], out: dict[str, tuple[s.Expr, Template | str | None]]) -> bool:
        """Check one resource into out; True, or _Bail with its diagnostic."""
        if it.name is None:
            self.bail("resources are written name = value", it.span, 'for example: resources: cpus = 2, mem = "4G", time = "01:00:00"')
        if it.name not in RESOURCE_NAMES:
            self.bail(f"unknown resource '{it.name}'", it.name_span, did_you_mean(it.name, RESOURCE_NAMES) or "resources are: " + ", ".join(RESOURCE_NAMES))
        if it.name in out:
            self.bail(f"resource '{it.name}' is given twice", it.name_span, "give each resource once")
        v = it.value
        if isinstance(v, s.Name):
            if v.id not in keys:
                self.bail(f"unknown parameter '{v.id}'", v.span, did_you_mean(v.id, keys) or "a resource can name a parameter of the rule's psets")
            out[it.name] = (v, v.id)
        elif isinstance(v, s.Str):
            try:
                t = parse_template(v.value)
            except TemplateError as ex:
                self.bail(ex.message.replace("command", "resource"), v.span, ex.hint)
            for ph in t.placeholders:
                if ph.attr is not None or ph.root not in keys:
                    self.bail(f"unknown parameter '{ph.text}' in a resource", v.span, did_you_mean(ph.root, keys) or "a resource can use the rule's parameters")
            if not t.placeholders:
                self.resource_value(it.name, v.value, v.span, None)  # a constant: check it once, early
            out[it.name] = (v, t if t.placeholders else None)
        elif isinstance(v, s.Num) and not isinstance(v.value, bool):
            out[it.name] = (v, None)
            self.resource_value(it.name, v.value, v.span, None)  # check constants once, early
        else:
            self.bail(f"bad value for resource '{it.name}'", v.span, 'a number, a string such as "4G" or "01:00:00", or a parameter name')
        return True

    def resource_value(self, name: str, v: Scalar, span: Span, pset: Mapping[str, Scalar] | None) -> int | None:
        where = f" (pset {alg.describe(pset)})" if pset else ""
        if name == "mem":
            mb = parse_mem(v)
            if mb is None:
                self.bail(f"bad memory size {display(v)}{where}", span, 'write megabytes as a number, or a size such as "500M", "4G"')
            return mb
        if name == "time":
            secs = parse_time(v)
            if secs is None:
                self.bail(f"bad time limit {display(v)}{where}", span, 'write minutes as a number, or "HH:MM:SS", "MM:SS" or "D-HH:MM:SS"')
            return secs
        if isinstance(v, str):
            try:
                v = int(v.strip())
            except ValueError:
                pass
        if isinstance(v, bool) or not isinstance(v, int) or v < (0 if name == "gpus" else 1):
            self.bail(f"resource '{name}' needs a whole number of at least {0 if name == 'gpus' else 1}, not {display(v)}{where}", span, f"for example: {name} = 2")
        return v

    def template(self, node: s.Str, rule: str, keys: Sequence[str], inputs: Sequence[InputSpec], outputs: Sequence[OutputSpec]) -> Template:
        try:
            t = parse_template(node.value)
        except TemplateError as ex:
            self.bail(ex.message, self.span_in(node, node.value[ex.offset : ex.offset + ex.length], ex.offset), ex.hint)
        input_names = [i.name for i in inputs if i.name is not None] + ["list"]
        output_names = [o.name for o in outputs if o.name is not None]
        for ph in t.placeholders:
            span = self.span_in(node, ph.text, ph.offset)
            root, attr = ph.root, ph.attr
            if root == "input":
                if not inputs:
                    self.error(f"rule '{rule}' has no inputs", span, "add an input: field, or remove " + ph.text)
                elif attr is not None and attr not in input_names:
                    named = input_names[:-1]  # without "list"
                    self.error(
                        f"unknown input '{attr}' in {ph.text}",
                        span,
                        did_you_mean(attr, input_names)
                        or ("named inputs here: " + listing(named) if named else 'name an input to use it alone: input: NAME = "file"'),
                    )
            elif root == "output":
                if not outputs:
                    self.error(f"rule '{rule}' has no outputs", span, "add an output: field, or remove " + ph.text)
                elif attr is not None and attr not in output_names:
                    self.error(f"unknown output '{attr}' in {ph.text}", span, did_you_mean(attr, output_names) or ("outputs here: " + listing(output_names) if output_names else "name an output: output: NAME = \"file\""))
            elif root == "pset":
                if attr not in PSET_ATTRS:
                    self.error(f"unknown placeholder {ph.text}", span, "pset placeholders are: " + ", ".join("{pset." + a + "}" for a in PSET_ATTRS))
            elif root == "resources":
                if attr not in RESOURCE_NAMES:
                    self.error(f"unknown placeholder {ph.text}", span, did_you_mean(attr or "", RESOURCE_NAMES) or "resources are: " + ", ".join(RESOURCE_NAMES))
            elif root == "root":
                if attr is not None:
                    self.error(f"unknown placeholder {ph.text}", span, "{root} is the project folder")
            elif root in keys:
                if attr is not None:
                    self.error(f"a parameter has no attributes: {ph.text}", span, "write {" + root + "}")
            elif root in self.param_defs:
                self.error(
                    f"parameter '{root}' is not in the psets of rule '{rule}'",
                    span,
                    f"the rule's psets have: {listing(keys)}" if keys else f"rule '{rule}' runs once, over no parameters",
                )
            elif ph.offset > 0 and node.value[ph.offset - 1] == "$":
                # the shell's own ${VAR}: the user wanted literal braces
                self.error(f"unknown placeholder {ph.text}", span, f"for the shell's own ${ph.text} write ${{{ph.text}}}")
            else:
                cands = [*keys, "input", "output", "pset", "resources", "root"]
                self.error(f"unknown placeholder {ph.text}", span, did_you_mean(root, cands) or "placeholders are parameters, {input}, {output}, {pset.hash}, {pset.dir}, {resources.cpus}, {root}")
        return t

    def span_in(self, node: s.Str, text: str, offset: int) -> Span:
        """Where `text` (found at `offset` of the string value) stands in the file.

        Triple-quoted strings are dedented, so search the source for the n-th
        occurrence of the same text inside the literal instead of counting."""
        lines = self.m.source.splitlines()
        sp = node.span
        nth = node.value[:offset].count(text) if text else 0
        seen = 0
        for ln in range(sp.line, sp.end_line + 1):
            if ln > len(lines):
                break
            line = lines[ln - 1]
            start = sp.column - 1 if ln == sp.line else 0
            stop = sp.end_column - 1 if ln == sp.end_line else len(line)
            pos = line.find(text, start, stop) if text else -1
            while pos >= 0:
                if seen == nth:
                    return Span(ln, pos + 1, ln, pos + 1 + len(text))
                seen += 1
                pos = line.find(text, pos + 1, stop)
        return sp

    # -- expansion
    def expand(self, rules: Mapping[str, _Rule], order: Sequence[str]) -> tuple[tuple[RuleSpec, ...], tuple[Job, ...]]:
        jobs: list[Job] = []
        specs: list[RuleSpec] = []
        first: dict[str, int] = {}
        up_to_root = "../../../" + ("" if os.path.isabs(self.workdir) else "../" * len(Path(self.workdir).parts))
        root_rel = up_to_root.rstrip("/") if not os.path.isabs(self.workdir) else str(self.root)
        for name in order:
            r = rules[name]
            first[name] = len(jobs)
            renderer = _Renderer(self, r, rules, first, jobs, root_rel)
            for seq, inst in enumerate(r.instances):
                jobs.append(renderer.job(len(jobs), seq, inst))
            if renderer.failed:
                raise _Bail
            specs.append(
                RuleSpec(
                    name=r.name, span=r.span, over=r.over, by=r.by, keys=r.keys, inputs=r.inputs, outputs=r.outputs,
                    results=r.results, shell=r.shell.text, restart=r.restart.text if r.restart else None,
                    retries=r.retries, local=r.local, first_job=first[name], n_jobs=len(r.instances),
                )
            )
        return tuple(specs), tuple(jobs)


@dataclass(frozen=True, slots=True, eq=False)
class _Rule:
    """A checked rule, before expansion (internal to the compiler).

    eq=False: rules compare (and hash) by identity, as before."""

    name: str
    span: Span
    over: str | None
    by: tuple[str, ...]
    keys: tuple[str, ...]
    instances: Psets
    inputs: tuple[InputSpec, ...]
    outputs: tuple[OutputSpec, ...]
    results: tuple[str, ...]
    shell: Template
    restart: Template | None
    retries: int
    local: bool
    resources: dict[str, tuple[s.Expr, Template | str | None]]
    input_spans: dict[str, Span]
    shell_node: s.Str


class _Renderer:
    """Makes the jobs of one rule: joins inputs, renders commands.

    Rendering is the hot loop of planning (300k jobs at 100k psets), so each
    placeholder is resolved once per rule into a small function."""

    def __init__(self, c: _Compiler, r: _Rule, rules: Mapping[str, _Rule], first: Mapping[str, int], jobs: list[Job], root_rel: str) -> None:
        self.c, self.r, self.jobs, self.root_rel = c, r, jobs, root_rel
        self.failed = False
        self.joins: list[tuple[InputSpec, _Join | None]] = []
        for inp in r.inputs:
            if inp.rule is not None:
                ur = rules[inp.rule]
                self.joins.append((inp, _Join(ur, first[inp.rule], r.keys, jobs)))
            else:
                self.joins.append((inp, None))
        self.output_text = {o.name: shell_path(o.path) for o in r.outputs}
        self.all_outputs = " ".join(shell_path(o.path) for o in r.outputs)
        self.upstream_outputs = {inp.rule: [o.path for o in rules[inp.rule].outputs] for inp in r.inputs if inp.rule}
        self.static_resources: dict[str, int | None] = {}
        self.bad_resources: set[str] = set()  # reported once, not once per pset
        for name, (expr, how) in r.resources.items():
            if how is None:
                assert isinstance(expr, (s.Num, s.Str))
                self.static_resources[name] = c.resource_value(name, expr.value, expr.span, None)
        self.constant_resources: Resources | None = None
        if all(how is None for _, how in r.resources.values()):
            self.constant_resources = self.resources({})
        self.source_templates = {inp.path: parse_template(inp.path) for inp in r.inputs if inp.path is not None}
        self.reported: set[str] = set()

    def fail_once(self, key: str, message: str, span: Span, hint: str) -> None:
        if key not in self.reported:
            self.reported.add(key)
            self.c.error(message, span, hint)
        self.failed = True

    def resources(self, inst: Mapping[str, Scalar]) -> Resources:
        if self.constant_resources is not None:
            return self.constant_resources
        vals = dict(self.static_resources)
        for name, (expr, how) in self.r.resources.items():
            if how is None or name in self.bad_resources:
                continue
            raw: Scalar = inst[how] if isinstance(how, str) else _fill(how, inst)
            try:
                vals[name] = self.c.resource_value(name, raw, expr.span, inst)
            except _Bail:
                self.failed = True
                self.bad_resources.add(name)
        return Resources(
            cpus=vals.get("cpus") or 1, mem_mb=vals.get("mem"), time_s=vals.get("time"),
            nodes=vals.get("nodes") or 1, tasks=vals.get("tasks") or 1, gpus=vals.get("gpus") or 0,
        )

    def job(self, jid: int, seq: int, inst: Pset) -> Job:
        r = self.r
        h = self.c.hash_of(inst)
        reldir = f"{r.name}/{h[:2]}/{h}"
        deps: list[int] = []
        inputs_by_name: dict[str, list[str]] = {}
        all_inputs: list[str] = []
        sources: list[str] = []
        for inp, join in self.joins:
            if join is not None:
                assert inp.rule is not None  # a join is made for rule inputs only
                ids = join.match(inst)
                if not ids:
                    self.fail_once(
                        "nojoin:" + inp.rule,
                        f"rule '{r.name}' has a pset with no '{inp.rule}' job to take input from: {alg.describe(inst) or '(no parameters)'}",
                        inp.span,
                        f"'{inp.rule}' jobs are matched on the parameters both rules have ({', '.join(join.shared_for(inst)) or 'none'})",
                    )
                    continue
                deps.extend(ids)
                outs = self.upstream_outputs[inp.rule]
                paths = [f"../../../{self.jobs[i].reldir}/{o}" for i in ids for o in outs]
            else:
                assert inp.path is not None
                t = self.source_templates[inp.path]
                missing = [ph.root for ph in t.placeholders if ph.root not in inst or ph.attr is not None]
                if missing:
                    self.fail_once(
                        "src:" + inp.path,
                        f"unknown parameter '{missing[0]}' in input path",
                        inp.span,
                        did_you_mean(missing[0], r.keys) or f"the rule's psets have: {listing(r.keys)}",
                    )
                    continue
                rel = os.path.normpath(_fill(t, inst))
                sources.append(rel)
                paths = [f"{self.root_rel}/{rel}"]
            if inp.name is not None:
                inputs_by_name.setdefault(inp.name, []).extend(paths)
            all_inputs.extend(paths)
        res = self.resources(inst)
        ctx = _Ctx(inst, h, seq, reldir, all_inputs, inputs_by_name, res, self)
        command = ctx.render(r.shell)
        restart = ctx.render(r.restart) if r.restart is not None else None
        if len(command.encode()) > MAX_COMMAND:
            # point at what makes it long: the first {input} (or {input.NAME})
            big = next((ph for ph in r.shell.placeholders if ph.root == "input" and ph.attr != "list"), None)
            node = self.r.shell_node
            self.fail_once(
                "long",
                f"the command of rule '{r.name}' is {len(command.encode()) // 1024} KiB long"
                + (f" for pset {alg.describe(inst)}" if inst else "")
                + "; the limit is 127 KiB",
                self.c.span_in(node, big.text, big.offset) if big is not None else node.span,
                "use {input.list}, the path of a file that names one input per line, instead of "
                + (big.text if big is not None else "{input}"),
            )
        return Job(jid, r.name, h, seq, inst, tuple(deps), tuple(sources), command, restart, res)


class _Ctx:
    __slots__ = ("all_inputs", "by_name", "h", "inst", "rd", "reldir", "res", "seq")

    def __init__(self, inst: Pset, h: str, seq: int, reldir: str, all_inputs: list[str], by_name: dict[str, list[str]], res: Resources, rd: _Renderer) -> None:
        self.inst, self.h, self.seq, self.reldir = inst, h, seq, reldir
        self.all_inputs, self.by_name, self.res, self.rd = all_inputs, by_name, res, rd

    def render(self, t: Template) -> str:
        out: list[str] = []
        for part in t.parts:
            if isinstance(part, str):
                out.append(part)
            else:
                out.append(self.value(part))
        return "".join(out)

    def value(self, ph: Placeholder) -> str:
        root, attr = ph.root, ph.attr
        if root == "input":
            if attr is None:
                return " ".join(shell_path(p) for p in self.all_inputs)
            if attr == "list":
                return INPUT_LIST_NAME
            return " ".join(shell_path(p) for p in self.by_name.get(attr, ()))
        if root == "output":
            return self.rd.all_outputs if attr is None else self.rd.output_text[attr]
        if root == "pset":
            if attr == "hash":
                return self.h
            if attr == "seq":
                return str(self.seq)
            return shell_path(f"{self.rd.c.workdir}/{self.reldir}")
        if root == "resources":
            res = self.res
            v = {"cpus": res.cpus, "mem": res.mem_mb, "time": res.time_s, "nodes": res.nodes, "tasks": res.tasks, "gpus": res.gpus}[attr or ""]
            if attr == "time" and v is not None:
                return format_time(v)
            return "" if v is None else str(v)
        if root == "root":
            return shell_path(self.rd.root_rel)
        return shell_quote(self.inst[root])


class _Join:
    """Upstream jobs of one input, matched on shared parameter names."""

    def __init__(self, up: _Rule, first: int, my_keys: Sequence[str], jobs: list[Job]) -> None:
        self.up, self.first = up, first
        self.indexes: dict[tuple[str, ...], dict[tuple[object, ...], list[int]]] = {}
        self.shared_cache: dict[tuple[str, ...], tuple[str, ...]] = {}
        groups: dict[tuple[str, ...], list[int]] = {}
        for i, p in enumerate(up.instances):
            groups.setdefault(tuple(p), []).append(first + i)
        self.groups = groups
        # Rules over one sweep share its pset objects: then the match is the
        # upstream job made from the very same object (the common case, and
        # the hot loop of planning at 100k psets).
        self.same_keys = len(groups) == 1 and set(next(iter(groups))) == set(my_keys)
        self.by_id = {id(p): first + i for i, p in enumerate(up.instances)} if self.same_keys else {}

    def shared_for(self, inst: Mapping[str, Scalar]) -> tuple[str, ...]:
        mine = set(inst)
        names: dict[str, None] = {}
        for ks in self.groups:
            for k in ks:
                if k in mine:
                    names[k] = None
        return tuple(names)

    def match(self, inst: Mapping[str, Scalar]) -> list[int]:
        hit = self.by_id.get(id(inst))
        if hit is not None:
            return [hit]
        mykeys = tuple(inst)
        out: list[int] = []
        for ks, ids in self.groups.items():
            shared = self.shared_cache.get(mykeys + ("|",) + ks)
            if shared is None:
                shared = tuple(k for k in ks if k in inst)
                self.shared_cache[mykeys + ("|",) + ks] = shared
            if not shared:
                out.extend(ids)
                continue
            index = self.indexes.get(ks + ("|",) + shared)
            if index is None:
                index = {}
                insts = self.up.instances
                for jid in ids:
                    p = insts[jid - self.first]
                    index.setdefault(tuple(join_key(p[k]) for k in shared), []).append(jid)
                self.indexes[ks + ("|",) + shared] = index
            out.extend(index.get(tuple(join_key(inst[k]) for k in shared), ()))
        if len(self.groups) > 1:
            out.sort()
        return out


_TYPE_WORDS = {"str": "a string", "int": "a number", "float": "a number", "bool": "a bool", "tuple": "a list"}


def _plain_error(ex: Exception) -> str:
    """Python's words for a failed operation, in the sweepfile's words."""
    text = str(ex)
    m = re.fullmatch(r"'(.+)' not supported between instances of '(\w+)' and '(\w+)'", text)
    if m:
        return f"'{m.group(1)}' cannot compare {_TYPE_WORDS.get(m.group(2), m.group(2))} with {_TYPE_WORDS.get(m.group(3), m.group(3))}"
    m = re.fullmatch(r"unsupported operand type\(s\) for (.+): '(\w+)' and '(\w+)'", text)
    if m:
        return f"'{m.group(1)}' cannot combine {_TYPE_WORDS.get(m.group(2), m.group(2))} with {_TYPE_WORDS.get(m.group(3), m.group(3))}"
    m = re.fullmatch(r'can only concatenate (\w+) \(not "(\w+)"\) to \w+', text)
    if m:
        return f"'+' cannot combine {_TYPE_WORDS.get(m.group(1), m.group(1))} with {_TYPE_WORDS.get(m.group(2), m.group(2))}"
    if isinstance(ex, ZeroDivisionError):
        return "division by zero"
    return text


def shell_path(p: str) -> str:
    return shlex.quote(p)


def _fill(t: Template, inst: Mapping[str, Scalar]) -> str:
    return "".join(p if isinstance(p, str) else shell_str(inst[p.root]) for p in t.parts)




_MEM = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([KMGT]?)B?\s*$", re.IGNORECASE)


def parse_mem(v: Scalar) -> int | None:
    """Memory in MB (SLURM's unit): 500, "500M", "4G", "1.5G", "1T"."""
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return int(math.ceil(v)) if v > 0 else None
    m = _MEM.match(v)
    if not m:
        return None
    num = float(m.group(1))
    mult = {"": 1, "K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}[m.group(2).upper()]
    mb = int(math.ceil(num * mult))
    return mb if mb > 0 else None


def parse_time(v: Scalar) -> int | None:
    """A time limit in seconds: minutes as a number, "MM:SS", "HH:MM:SS", "D-HH:MM:SS", "D-HH"."""
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return int(v * 60) if v > 0 else None
    text = v.strip()
    days = 0
    if "-" in text:
        d, _, text = text.partition("-")
        if not d.isdigit():
            return None
        days = int(d)
        parts = text.split(":")
        if not all(p.isdigit() for p in parts) or not 1 <= len(parts) <= 3:
            return None
        nums = [int(p) for p in parts] + [0] * (3 - len(parts))
        secs = days * 86400 + nums[0] * 3600 + nums[1] * 60 + nums[2]
        return secs or None
    parts = text.split(":")
    if not all(p.isdigit() for p in parts) or not 1 <= len(parts) <= 3:
        return None
    nums = [int(p) for p in parts]
    if len(nums) == 1:
        secs = nums[0] * 60
    elif len(nums) == 2:
        secs = nums[0] * 60 + nums[1]
    else:
        secs = nums[0] * 3600 + nums[1] * 60 + nums[2]
    return secs or None


def format_time(secs: int) -> str:
    """SLURM's D-HH:MM:SS (or HH:MM:SS under a day)."""
    d, rest = divmod(secs, 86400)
    h, rest = divmod(rest, 3600)
    m, s_ = divmod(rest, 60)
    return f"{d}-{h:02d}:{m:02d}:{s_:02d}" if d else f"{h:02d}:{m:02d}:{s_:02d}"


_EXAMPLES = {
    "range": "range(10, 40, 10)",
    "linspace": "linspace(0, 1, 5)",
    "logspace": "logspace(-4, -1, 4)",
    "star": "star(a=2, b=20, vary=[a, b])",
    "csv": 'csv("params.csv", index="param_combo", start=0, rows=3)',
}

