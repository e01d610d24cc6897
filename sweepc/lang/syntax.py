"""The sweepfile's abstract syntax tree: frozen dataclasses, each with its Span."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from sweepc.errors import Span


@dataclass(frozen=True, slots=True)
class Num:
    value: int | float
    span: Span


@dataclass(frozen=True, slots=True)
class Str:
    value: str
    span: Span


@dataclass(frozen=True, slots=True)
class Bool:
    value: bool
    span: Span


@dataclass(frozen=True, slots=True)
class Name:
    id: str
    span: Span


@dataclass(frozen=True, slots=True)
class ListExpr:
    items: tuple[Expr, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class Arg:
    name: str | None
    name_span: Span | None
    value: Expr
    span: Span


@dataclass(frozen=True, slots=True)
class Call:
    func: str
    func_span: Span
    args: tuple[Arg, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class BinOp:
    """op is one of + - * / // % ** == != < <= > >= in notin and or where."""

    op: str
    left: Expr
    right: Expr
    span: Span
    op_span: Span


@dataclass(frozen=True, slots=True)
class UnaryOp:
    """op is one of - + not."""

    op: str
    operand: Expr
    span: Span


Expr = Union[Num, Str, Bool, Name, ListExpr, Call, BinOp, UnaryOp]


@dataclass(frozen=True, slots=True)
class Setting:
    name: str
    name_span: Span
    value: Expr
    span: Span


@dataclass(frozen=True, slots=True)
class ParamDef:
    name: str
    name_span: Span
    value: Expr
    span: Span


@dataclass(frozen=True, slots=True)
class SweepDef:
    name: str
    name_span: Span
    value: Expr
    span: Span


@dataclass(frozen=True, slots=True)
class Item:
    """One entry of a rule field: ``value`` or ``name = value``."""

    name: str | None
    name_span: Span | None
    value: Expr
    span: Span


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    name_span: Span
    items: tuple[Item, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class RuleDef:
    name: str
    name_span: Span
    over: Expr | None
    by: tuple[Name, ...]
    fields: tuple[Field, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class BackendDef:
    name: str
    name_span: Span
    settings: tuple[Setting, ...]
    span: Span


Statement = Union[Setting, ParamDef, SweepDef, RuleDef, BackendDef]


@dataclass(frozen=True, slots=True)
class Module:
    filename: str
    source: str
    statements: tuple[Statement, ...]
