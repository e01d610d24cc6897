"""The small expression language of ``where`` conditions.

A condition is compiled once into a Python function of one pset, so that
filtering 100k psets costs one call each. Only the operators below exist;
names are parameters, so nothing a sweepfile writes can reach Python itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

from sweepc.lang import syntax as s
from sweepc.errors import Span, did_you_mean
from sweepc.values import Scalar

Condition = Callable[[Mapping[str, Scalar]], object]

_BINOPS = {
    "+": "+", "-": "-", "*": "*", "/": "/", "//": "//", "%": "%", "**": "**",
    "==": "==", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">=",
    "and": "and", "or": "or", "in": "in", "notin": "not in",
}


def _round(x: object, ndigits: object = None) -> object:
    # round(5, -10**9) would compute 10**(10**9) first
    if isinstance(ndigits, int) and abs(ndigits) > 4000:
        raise OverflowError("round() takes at most 4000 digits")
    return round(x, ndigits)  # type: ignore[call-overload]


FUNCTIONS: dict[str, Callable[..., object]] = {"abs": abs, "min": min, "max": max, "round": _round}


# Integers stop growing here (~4000 digits): 9 ** 9 ** 9 would take minutes
# and gigabytes, and Python cannot print an int of more than 4300 digits.
MAX_INT_BITS = 13_288


def _numbers(op: str, a: object, b: object) -> None:
    if isinstance(a, str) or isinstance(b, str):
        raise TypeError(f"'{op}' needs numbers, not a string")
    if isinstance(a, tuple) or isinstance(b, tuple):
        raise TypeError(f"'{op}' needs numbers, not a list")


def check_int(r: object) -> None:
    """Refuse an integer too large to use (OverflowError, as float arithmetic does)."""
    if isinstance(r, int) and r.bit_length() > MAX_INT_BITS:
        raise OverflowError("the result has more than 4000 digits")


def bounded_pow(a: object, b: object) -> object:
    """a ** b, refusing an integer result of more than ~4000 digits before computing it."""
    if isinstance(a, int) and isinstance(b, int) and b > 0 and abs(a) > 1 and (abs(a).bit_length() - 1) * b > MAX_INT_BITS:
        raise OverflowError("the result has more than 4000 digits")
    try:
        r = a**b  # type: ignore[operator]
    except OverflowError:  # a float's: its words were a tuple, (34, 'Numerical result out of range')
        raise OverflowError("number too large") from None
    check_int(r)
    return r


def bounded_mul(a: object, b: object) -> object:
    r = a * b  # type: ignore[operator]
    check_int(r)
    return r


def _pow(a: object, b: object) -> object:
    _numbers("**", a, b)
    return bounded_pow(a, b)


def _mod(a: object, b: object) -> object:
    _numbers("%", a, b)
    return a % b  # type: ignore[operator]


def _mul(a: object, b: object) -> object:
    _numbers("*", a, b)
    return bounded_mul(a, b)


_NUMERIC_ONLY = {"%": "_n_mod", "*": "_n_mul", "**": "_n_pow"}


def _eq(a: object, b: object) -> bool:
    """a == b as the sweepfile means it: a bool is not a number (true is not 1,
    as the pset hash has it), and 1 is 1.0."""
    return a == b and (a is True or a is False) == (b is True or b is False)


def _in(a: object, items: object) -> bool:
    if isinstance(items, tuple):
        return any(_eq(a, x) for x in items)
    return a in items  # type: ignore[operator]  # (a string in a string; a number in one: Python's TypeError)


# comparisons that must tell a bool from a number (Python: True == 1, True in (1,))
_TYPED = {"==": "_c_eq({0}, {1})", "!=": "(not _c_eq({0}, {1}))", "in": "_c_in({0}, {1})", "notin": "(not _c_in({0}, {1}))"}


@dataclass(frozen=True, slots=True)
class ExprError(Exception):
    message: str
    span: Span
    hint: str


@dataclass(frozen=True, slots=True)
class Compiled:
    func: Condition
    names: frozenset[str]
    text: str


def compile_condition(expr: s.Expr, known: Collection[str]) -> Compiled:
    """Compile a condition over parameters in ``known``; raise ExprError."""
    names: set[str] = set()
    code = _gen(expr, known, names)
    env: dict[str, object] = {
        "__builtins__": {}, "_n_mod": _mod, "_n_mul": _mul, "_n_pow": _pow, "_inf": math.inf, "_nan": math.nan,
        "_c_eq": _eq, "_c_in": _in,
        **{f"_f_{k}": v for k, v in FUNCTIONS.items()},
    }
    try:
        func = eval(f"lambda p: ({code})", env)  # safe: the code is generated from our own AST
    except (SyntaxError, RecursionError, MemoryError):  # the parser limits nesting; this is the backstop
        raise ExprError("this condition is too complex", expr.span, "split it, or filter in two steps: (A where C1) where C2") from None
    return Compiled(func, frozenset(names), code)


def _gen(e: s.Expr, known: Collection[str], names: set[str]) -> str:
    if isinstance(e, s.Num):
        if isinstance(e.value, float) and not math.isfinite(e.value):
            return "_inf" if e.value > 0 else "_nan"  # 1e999 is inf; repr() would be the name 'inf'
        return repr(e.value)
    if isinstance(e, s.Str):
        return repr(e.value)
    if isinstance(e, s.Bool):
        return "True" if e.value else "False"
    if isinstance(e, s.Name):
        if e.id not in known:
            hint = did_you_mean(e.id, known) or (
                "a condition can use the parameters of the sweep it filters: " + ", ".join(sorted(known))
            )
            raise ExprError(f"unknown parameter '{e.id}'", e.span, hint)
        names.add(e.id)
        return f"p[{e.id!r}]"
    if isinstance(e, s.ListExpr):
        return "(" + "".join(_gen(i, known, names) + "," for i in e.items) + ")"
    if isinstance(e, s.UnaryOp):
        op = "not " if e.op == "not" else e.op
        return f"({op}{_gen(e.operand, known, names)})"
    if isinstance(e, s.BinOp):
        if e.op == "where":
            raise ExprError("'where' cannot be used inside a condition", e.op_span, "filter once: SWEEP where COND")
        left, right = _gen(e.left, known, names), _gen(e.right, known, names)
        if e.op in _NUMERIC_ONLY:
            # Python would format (str % x) or repeat (str * n); here they are mistakes
            return f"{_NUMERIC_ONLY[e.op]}({left}, {right})"
        if e.op in _TYPED:
            return _TYPED[e.op].format(left, right)
        return f"({left} {_BINOPS[e.op]} {right})"
    if isinstance(e, s.Call):
        if e.func not in FUNCTIONS:
            raise ExprError(
                f"unknown function '{e.func}' in a condition",
                e.func_span,
                did_you_mean(e.func, FUNCTIONS) or "conditions can call " + ", ".join(sorted(FUNCTIONS)),
            )
        for a in e.args:
            if a.name is not None and a.name_span is not None:
                raise ExprError(f"'{e.func}' takes no keyword arguments", a.name_span, f"write {e.func}(x, y)")
        return f"_f_{e.func}(" + ", ".join(_gen(a.value, known, names) for a in e.args) + ")"
    raise AssertionError(e)
