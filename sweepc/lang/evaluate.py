"""Pass 2, evaluate(): Names -> Swept (every sweep, and each rule's 'over', as psets).

Sweeps are evaluated in the order they are defined; a sweep may use
parameters and other sweeps (a sweep defined in terms of itself is an
error). Each rule's 'over' expression is evaluated here too, so the join
pass only sees psets.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TypeVar

from sweepc.errors import Diagnostic, Span, did_you_mean
from sweepc.lang import sweeps as alg
from sweepc.lang import syntax as s
from sweepc.lang.expr import ExprError, compile_condition
from sweepc.lang.names import EXAMPLES, PARAM_FUNCTIONS, SWEEP_FUNCTIONS, Names, constant, too_many_psets
from sweepc.lang.problems import Bail, Problems
from sweepc.lang.sweeps import Pset, Psets, SweepMathError, keys_of
from sweepc.values import Scalar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Over:
    """The psets a rule runs over, and how messages name them."""

    psets: Psets
    text: str  # "sweep 'grid'", "parameter 'a'", "everything", ...
    keys: tuple[str, ...] | None = None  # when psets is empty because its samples are not built yet


@dataclass(frozen=True, slots=True)
class Swept:
    sweeps: Mapping[str, Psets | None]  # None: the sweep has a mistake (reported)
    over: Mapping[str, Over | None]  # per rule; None: its 'over' has a mistake (reported)
    diagnostics: tuple[Diagnostic, ...]
    # Samples made by a rule (csv(RULE, ...), npy(RULE, ...)): the rules whose
    # output each sweep, and each rule's 'over', reads (transitively); and the
    # sweeps whose psets are not known yet because such an output is missing.
    reads: Mapping[str, frozenset[str]] = field(default_factory=dict)
    over_reads: Mapping[str, frozenset[str]] = field(default_factory=dict)
    pending: Mapping[str, frozenset[str]] = field(default_factory=dict)  # sweep -> rules not built yet
    indexes: tuple[alg.IndexColumn, ...] = ()  # of csv(..., index=...) calls, for `_index` columns
    # rule -> why its output, there, could not be read as samples (its sweeps are pending)
    unread: Mapping[str, Diagnostic] = field(default_factory=dict)


def evaluate(module: s.Module, names: Names, root: Path, not_done: frozenset[str] = frozenset()) -> Swept:
    """Evaluate every sweep, then every rule's 'over' expression. The
    outputs of the rules in `not_done` (sample rules whose last run did not
    end done) count as not there."""
    ev = _Evaluator(Problems(module), names, root, not_done)
    for name in names.sweep_defs:
        ev.sweep(name)
    over: dict[str, Over | None] = {}
    for name, rd in names.rule_defs.items():
        ev.collect.append(set())
        try:
            over[name] = ev.p.guard(partial(ev.rule_over, rd))
        finally:
            ev.over_reads[name] = frozenset(ev.collect.pop())
    pending = {k: v & ev.missing for k, v in ev.reads.items() if v & ev.missing}
    return Swept(ev.sweeps, over, tuple(ev.p.diags), ev.reads, ev.over_reads, pending, tuple(ev.indexes), dict(ev.unread))


class _Evaluator:
    def __init__(self, p: Problems, names: Names, root: Path, not_done: frozenset[str] = frozenset()) -> None:
        self.p = p
        self.n = names
        self.root = root
        self.not_done = not_done
        self.unread: dict[str, Diagnostic] = {}
        self.sweeps: dict[str, Psets | None] = {}
        self.resolving: list[str] = []
        self.reads: dict[str, frozenset[str]] = {}  # sweep -> rules whose output it reads
        self.over_reads: dict[str, frozenset[str]] = {}  # rule -> rules whose output its 'over' reads
        self.collect: list[set[str]] = []  # the reads of what is being evaluated, innermost last
        self.missing: set[str] = set()  # rules whose output a sweep reads and that is not there yet
        # Shape mode: samples not built yet stand in as one row of their
        # declared columns, and 'where' keeps every row, so that the
        # parameter names of what runs over them are known (for checking
        # placeholders) while no job is made.
        self.shape = False
        self.shapes: dict[str, Psets | None] = {}
        self.indexes: list[alg.IndexColumn] = []
        self.param_psets: dict[str, Psets] = {}

    def read(self, rules: frozenset[str] | set[str]) -> None:
        if self.collect:
            self.collect[-1].update(rules)

    def sweep(self, name: str) -> Psets | None:
        if self.shape:
            if name not in self.shapes:
                st = self.n.sweep_defs[name]
                self.shapes[name] = self.p.guard(lambda: self.expr(st.value))
            return self.shapes[name]
        if name in self.sweeps:
            return self.sweeps[name]
        st = self.n.sweep_defs[name]
        if name in self.resolving:
            cycle = " -> ".join(self.resolving[self.resolving.index(name):] + [name])
            self.p.bail(f"sweep defined in terms of itself: {cycle}", st.name_span, "a sweep can only use parameters and other sweeps")
        self.resolving.append(name)
        self.collect.append(set())
        try:
            ps = self.p.guard(lambda: self.expr(st.value))
        finally:
            self.resolving.pop()
            self.reads[name] = frozenset(self.collect.pop())
            self.read(self.reads[name])
        result = ps if isinstance(ps, tuple) else None
        if result is not None and not result and self.reads[name] & self.missing:
            pass  # samples not built yet: known after the build makes them
        elif result is not None and not result:
            self.p.error(f"sweep '{name}' is empty", st.value.span, "a 'where' condition removed every pset")
            result = None
        self.sweeps[name] = result
        return result

    def rule_over(self, rd: s.RuleDef) -> Over:
        if rd.over is None:
            return Over(({},), "everything")
        text = rd.over.id if isinstance(rd.over, s.Name) else f"the sweep of rule '{rd.name}'"
        ps = self.expr(rd.over)
        if not ps and self.collect and self.collect[-1] & self.missing:
            self.shape = True
            try:
                keys = keys_of(self.expr(rd.over))
            finally:
                self.shape = False
            return Over(ps, f"sweep '{rd.over.id}'" if isinstance(rd.over, s.Name) else text, keys)
        if not ps:
            self.p.bail(f"rule '{rd.name}' runs over an empty sweep", rd.over.span, "a 'where' condition removed every pset")
        if isinstance(rd.over, s.Name):
            text = f"sweep '{rd.over.id}'" if rd.over.id in self.n.sweep_defs else f"parameter '{rd.over.id}'"
        return Over(ps, text)

    def name(self, e: s.Name) -> Psets:
        n = self.n
        if e.id in n.param_defs:
            values = n.values.get(e.id)
            if values is None:
                raise Bail  # its own error is already reported
            ps = self.param_psets.get(e.id)
            if ps is None:  # one set of pset objects per parameter: rules over it share their hashes
                ps = self.param_psets[e.id] = alg.from_values(e.id, values)
            return ps
        if e.id in n.sweep_defs:
            ps = self.sweep(e.id)
            self.read(self.reads.get(e.id, frozenset()))
            if ps is None:
                raise Bail
            return ps
        if e.id in n.rule_defs:
            self.p.bail(f"'{e.id}' is a rule, not a parameter or sweep", e.span, "rules run over sweeps; use 'input: " + e.id + "' to take a rule's outputs")
        self.p.bail(
            f"unknown parameter or sweep '{e.id}'",
            e.span,
            did_you_mean(e.id, [*n.param_defs, *n.sweep_defs]) or f"define it first: param {e.id} = [...]",
        )

    def expr(self, e: s.Expr) -> Psets:
        bail = self.p.bail
        try:
            if isinstance(e, s.Name):
                return self.name(e)
            if isinstance(e, s.BinOp) and e.op in ("*", "+"):
                limit = self.n.max_psets
                size = self.size(e)
                if size is not None and size > limit:
                    too_many_psets(self.p, size, limit, e.span)  # known before anything is made
                left, right = self.p.guard(lambda: self.expr(e.left)), self.p.guard(lambda: self.expr(e.right))
                if not isinstance(left, tuple) or not isinstance(right, tuple):
                    raise Bail
                if e.op == "*":
                    if len(left) * len(right) > limit:
                        too_many_psets(self.p, len(left) * len(right), limit, e.span)
                    return alg.product(left, right)
                both = alg.concat(left, right)  # at most twice the limit
                if len(both) > limit:
                    too_many_psets(self.p, len(both), limit, e.span)
                return both
            if isinstance(e, s.BinOp) and e.op == "where":
                return self.where(e)
            if isinstance(e, s.Call):
                return self.call(e)
        except SweepMathError as ex:
            span = e.op_span if isinstance(e, s.BinOp) else e.span
            bail(ex.message, span, ex.hint)
        if isinstance(e, (s.ListExpr, s.Num, s.Str, s.Bool)):
            bail("a sweep is made of parameters, not values", e.span, "define the values as a parameter first: param x = [...]")
        if isinstance(e, s.BinOp):
            bail(f"'{e.op}' does not combine sweeps", e.op_span, "sweeps combine with '*' (every combination), '+' (one after the other), zip(), star() and 'where'")
        bail("expected a sweep", e.span, "a sweep is a parameter, a sweep, A * B, A + B, zip(...), star(...), csv(...) or A where COND")

    def pending_name(self, e: s.Expr) -> bool:
        """Whether e names a sweep with no psets yet: samples a rule has not made."""
        return isinstance(e, s.Name) and self.sweeps.get(e.id) == () and bool(self.reads.get(e.id, frozenset()) & self.missing)

    def size(self, e: s.Expr) -> int | None:
        """The number of psets of e, when it is known without making them."""
        if isinstance(e, s.Name):
            if e.id in self.n.param_defs:
                return self.n.sizes.get(e.id)
            ps = self.sweeps.get(e.id)
            return len(ps) if ps is not None else None
        if isinstance(e, s.BinOp) and e.op == "*":
            a, b = self.size(e.left), self.size(e.right)
            return a * b if a is not None and b is not None else None
        if isinstance(e, s.Call) and e.func == "zip" and e.args:
            sizes = {self.size(a.value) for a in e.args}
            return sizes.pop() if len(sizes) == 1 else None
        return None

    def waiting(self) -> bool:
        """Whether what is being evaluated reads samples a rule has not made yet."""
        return bool(self.collect and self.collect[-1] & self.missing)

    def where(self, e: s.BinOp) -> Psets:
        base = self.expr(e.left)
        if self.shape or (not base and self.waiting()):
            return base  # (samples not made yet: their parameters, and what the condition keeps, are known later)
        keys = keys_of(base)
        try:
            cond = compile_condition(e.right, keys)
        except ExprError as ex:
            self.p.bail(ex.message, ex.span, ex.hint)
        out: list[Pset] = []
        func = cond.func
        for p in base:
            try:
                if func(p):
                    out.append(p)
            except KeyError as ex:
                self.p.bail(f"parameter {ex.args[0]!r} is missing from some psets of this sweep", e.right.span, "a condition can only use parameters every pset has")
            except (TypeError, ZeroDivisionError, ValueError, OverflowError) as ex:
                hint = (
                    "a condition must work for every pset; 'and' stops at the first false part, e.g. x != 0 and 1 / x > 2"
                    if isinstance(ex, (ZeroDivisionError, OverflowError, ValueError))
                    else "arithmetic works on numbers only" if "needs numbers" in str(ex)
                    else "compare numbers with numbers and strings with strings"
                )
                self.p.bail(f"condition fails for pset {alg.describe(p)}: {_plain_error(ex)}", e.right.span, hint)
        return tuple(out)

    def call(self, e: s.Call) -> Psets:
        bail = self.p.bail
        if e.func == "zip":
            if len(e.args) < 2:
                bail("zip() needs at least two sweeps", e.span, "for example: zip(a, c)")
            labels = [a.value.id if isinstance(a.value, s.Name) else "an argument" for a in e.args]
            sizes = [None if self.pending_name(a.value) else self.size(a.value) for a in e.args]
            for label, n in zip(labels[1:], sizes[1:]):
                if sizes[0] is not None and n is not None and n != sizes[0]:
                    # say so before making (maybe millions of) psets
                    bail(f"zip of unequal lengths: {labels[0]} has {sizes[0]} psets, {label} has {n}", e.span, alg.ZIP_HINT)
            parts: list[tuple[str, Psets]] = []
            for a, label in zip(e.args, labels):
                if a.name is not None:
                    bail("zip() takes no keyword arguments", a.name_span, "for example: zip(a, c)")
                parts.append((label, self.expr(a.value)))
            if self.waiting() and (self.shape or not all(ps for _, ps in parts)):
                # samples not made yet: no psets (or, in shape mode, one row of every key)
                return ({k: v for _, ps in parts for k, v in ps[0].items()},) if self.shape and all(ps for _, ps in parts) else ()
            return alg.zip_(parts)
        if e.func == "star":
            return self.star(e)
        if e.func in ("csv", "npy"):
            return self.table_file(e)
        if e.func in PARAM_FUNCTIONS:
            bail(f"{e.func}() makes a parameter's values, not a sweep", e.func_span, f"write: param NAME = {e.func}(...), then use NAME in the sweep")
        bail(f"unknown function '{e.func}'", e.func_span, did_you_mean(e.func, SWEEP_FUNCTIONS) or "sweeps use zip(), star(), csv() and npy()")

    def const(self, e: s.Expr) -> Scalar | list[Scalar]:
        return constant(self.p, e, self.n.param_defs, self.n.max_psets)

    def star(self, e: s.Call) -> Psets:
        bail = self.p.bail
        centre: dict[str, Scalar] = {}
        vary_arg: s.Arg | None = None
        for a in e.args:
            if a.name is None:
                bail("star() takes keyword arguments only", a.span, EXAMPLES["star"])
            if a.name == "vary":
                vary_arg = a
                continue
            v = self.const(a.value)
            if isinstance(v, list):
                bail(f"the centre value of '{a.name}' must be a single value", a.value.span, EXAMPLES["star"])
            centre[a.name] = v
        if vary_arg is None:
            bail("star() needs vary=[...]: the parameters to scan", e.span, EXAMPLES["star"])
        names = vary_arg.value.items if isinstance(vary_arg.value, s.ListExpr) else (vary_arg.value,)
        vary: list[tuple[str, Sequence[Scalar]]] = []
        for n in names:
            if not isinstance(n, s.Name):
                bail("vary= lists parameter names", n.span, EXAMPLES["star"])
            if n.id not in self.n.param_defs:
                bail(f"unknown parameter '{n.id}'", n.span, did_you_mean(n.id, self.n.param_defs) or "vary= names parameters defined with 'param'")
            if n.id not in centre:
                bail(f"star() needs a centre value for '{n.id}'", n.span, f"add {n.id}=VALUE to star(...)")
            values = self.n.values.get(n.id)
            if values is None:
                raise Bail
            vary.append((n.id, values))
        out = alg.star(centre, vary)  # at most len(vary) times the limit
        if len(out) > self.n.max_psets:
            too_many_psets(self.p, len(out), self.n.max_psets, e.span)
        return out

    def table_file(self, e: s.Call) -> Psets:
        """csv(...) or npy(...): rows of a file as psets. The file is a path
        relative to the project, or a rule whose one output it is (samples
        made by a rule; until that rule has run, the sweep is pending)."""
        bail = self.p.bail
        kind = e.func
        allowed = ("index", "start", "rows", "columns", "header") if kind == "csv" else ("start", "rows", "columns")
        path_arg: s.Arg | None = None
        opts: dict[str, s.Arg] = {}
        for a in e.args:
            if a.name is None:
                if path_arg is not None:
                    bail(f"{kind}() takes one path", a.span, EXAMPLES[kind])
                path_arg = a
            elif a.name in allowed:
                opts[a.name] = a
            else:
                bail(f"unknown {kind}() argument '{a.name}'", a.name_span, did_you_mean(a.name, allowed) or EXAMPLES[kind])
        if path_arg is None or not isinstance(path_arg.value, (s.Str, s.Name)):
            what = "a CSV file" if kind == "csv" else "a .npy file"
            bail(f"{kind}() needs the path of {what} as a string, or a rule that makes it", (path_arg or e).span, EXAMPLES[kind])
        index = self.opt_str(opts.get("index"))
        start = self.opt_int(opts.get("start"), 0, 0)
        rows = self.opt_int(opts.get("rows"), None, 1)
        header = True
        if "header" in opts:
            hv = opts["header"].value
            if not isinstance(hv, s.Bool):
                bail("header= needs true or false", hv.span, 'csv("h.csv", header=false, columns=["p", "q"])')
            header = hv.value
        columns: list[str] | None = None
        if "columns" in opts:
            v = self.const(opts["columns"].value)
            if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                bail("columns= needs a list of column names", opts["columns"].value.span, EXAMPLES[kind])
            columns = [str(x) for x in v]
        if columns is None and (kind == "npy" or not header):
            why = "a .npy file has no header" if kind == "npy" else "header=false"
            bail(f"{kind}() needs columns=[...] to name the columns ({why})", e.span, EXAMPLES[kind] if kind == "npy" else 'csv("h.csv", header=false, columns=["p", "q"])')

        def read() -> Psets:
            if kind == "npy":
                return alg.read_npy(path, shown, start, rows, columns or [], limit=self.n.max_psets)
            psets, idx = alg.read_csv_indexed(path, shown, index, start, rows, columns, header, limit=self.n.max_psets)
            if idx is not None:
                self.indexes.append(idx)
            return psets

        if isinstance(path_arg.value, s.Name):
            if columns is None:
                bail(f"{kind}() of a rule's output needs columns=[...]: the parameters are known before the file is",
                     e.span, f'{kind}({path_arg.value.id}, columns=["x", "y"])')
            path, shown = self.rule_output(path_arg.value, kind)
            alg.FILES_READ.append(path)  # its absence decides the graph too (lang/project.py)
            rule = path_arg.value.id
            self.read({rule})
            if path.exists() and rule not in self.not_done:
                try:
                    return read()
                except SweepMathError as ex:
                    # An output a failed or stopped run left (an empty file), or one
                    # the sweepfile no longer fits (a column added): the sweep waits
                    # for the rule to run again, as for an output not there. (It was
                    # an error of every command, `clean` too, until removed by hand.)
                    self.unread[rule] = Diagnostic(ex.message, self.table_span(ex, path_arg, opts), ex.hint, self.p.module.filename)
            self.missing.add(rule)
            return ({c: 0 for c in columns},) if self.shape else ()
        else:
            shown = path_arg.value.value
            path = self.root / shown
        try:
            return read()
        except SweepMathError as ex:
            bail(ex.message, self.table_span(ex, path_arg, opts), ex.hint)

    @staticmethod
    def table_span(ex: SweepMathError, path_arg: s.Arg, opts: Mapping[str, s.Arg]) -> Span:
        """Where in the csv()/npy() call a file's problem points."""
        if "index column" in ex.message and "index" in opts:
            return opts["index"].value.span
        if (ex.message.startswith("column '") or "columns" in ex.message) and "columns" in opts:
            return opts["columns"].value.span
        return path_arg.value.span

    def rule_output(self, ref: s.Name, kind: str) -> tuple[Path, str]:
        """Where rule `ref` writes its one output (it runs once: no 'over')."""
        from sweepc.hashing import pset_hash

        rd = self.n.rule_defs.get(ref.id)
        if rd is None:
            if ref.id in self.n.param_defs or ref.id in self.n.sweep_defs:
                self.p.bail(f"{kind}() reads a file; '{ref.id}' is a {'parameter' if ref.id in self.n.param_defs else 'sweep'}", ref.span, EXAMPLES[kind])
            self.p.bail(f"unknown rule '{ref.id}'", ref.span, did_you_mean(ref.id, self.n.rule_defs) or EXAMPLES[kind])
        if rd.over is not None:
            self.p.bail(f"rule '{ref.id}' runs over a sweep, so it has no one output for {kind}() to read", ref.span,
                        f"a rule that makes samples runs once: remove 'over' from rule '{ref.id}', and write the values it needs into its command")
        outputs = [it for f in rd.fields if f.name == "output" for it in f.items]
        if len(outputs) == 1 and isinstance(outputs[0].value, s.Call) and outputs[0].value.func == "temp":
            # (it said "reads the one output of rule 'mk', which has 1")
            self.p.bail(f"{kind}() reads the output of rule '{ref.id}', which is temp(): sweepc removes those once read, "
                        "and the samples are read again at every build", outputs[0].value.span,
                        f"make it a plain output of rule '{ref.id}'")
        if len(outputs) != 1 or not isinstance(outputs[0].value, s.Str):
            self.p.bail(f"{kind}() reads the one output of rule '{ref.id}', which has {len(outputs)}", ref.span,
                        f"give rule '{ref.id}' exactly one output: the file {kind}() reads")
        out = outputs[0].value
        assert isinstance(out, s.Str)
        h = pset_hash({})
        rel = f"{self.n.workdir}/{ref.id}/{h[:2]}/{h}/{out.value}"
        return self.root / rel, f"{rel} (the output of rule '{ref.id}')"

    def opt_str(self, a: s.Arg | None) -> str | None:
        if a is None:
            return None
        if not isinstance(a.value, s.Str):
            self.p.bail(f"{a.name}= needs a string", a.value.span, EXAMPLES["csv"])
        return a.value.value

    def opt_int(self, a: s.Arg | None, default: T, minimum: int) -> int | T:
        if a is None:
            return default
        v = self.const(a.value)
        if not isinstance(v, int) or isinstance(v, bool) or v < minimum:
            self.p.bail(f"{a.name}= needs a whole number of at least {minimum}", a.value.span, EXAMPLES["csv"])
        return v


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
