"""Sweepfile text -> syntax.Module.

lark stays inside this module: the grammar is loaded once, the transformer is
purely structural, and lark's exceptions are turned into Diagnostics here.
"""

from __future__ import annotations

import ast as pyast
import functools
import textwrap
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, NoReturn

from lark import Lark, Token, Transformer, Tree, v_args
from lark.exceptions import (
    UnexpectedCharacters,
    UnexpectedEOF,
    UnexpectedInput,
    UnexpectedToken,
    VisitError,
)
from lark.indenter import Indenter

from sweepc.lang import syntax as s
from sweepc.errors import Diagnostic, Span, SweepfileError

# Expressions may nest this many levels (each operator, 'not', unary '-',
# list and call is a level): later passes walk them recursively, and a
# Python condition nested much deeper would not compile.
MAX_DEPTH = 100
# Integers may have this many digits (Python's int <-> text limit is 4300).
MAX_INT_DIGITS = 4000


def grammar_path() -> Path:
    """The grammar inside an installed wheel, else the checkout's grammar/."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "grammar" / "sweepfile.lark", here.parent.parent / "grammar" / "sweepfile.lark"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("sweepfile.lark not found next to the sweepc package")


class _DedentMismatch(Exception):
    def __init__(self, token: Token) -> None:
        self.token = token


class _SweepIndenter(Indenter):
    NL_type = "_NEWLINE"
    OPEN_PAREN_types = ["LPAR", "LSQB"]
    CLOSE_PAREN_types = ["RPAR", "RSQB"]
    INDENT_type = "_INDENT"
    DEDENT_type = "_DEDENT"
    tab_len = 8

    def handle_NL(self, token: Token) -> Iterator[Token]:
        # lark's own DedentError carries no position; ours does.
        if self.paren_level > 0:
            return
        yield token
        indent_str = token.rsplit("\n", 1)[1]
        indent = indent_str.count(" ") + indent_str.count("\t") * self.tab_len
        if indent > self.indent_level[-1]:
            self.indent_level.append(indent)
            yield Token.new_borrow_pos(self.INDENT_type, indent_str, token)
        else:
            while indent < self.indent_level[-1]:
                self.indent_level.pop()
                yield Token.new_borrow_pos(self.DEDENT_type, indent_str, token)
            if indent != self.indent_level[-1]:
                raise _DedentMismatch(token)


@functools.cache
def _lark() -> Lark:
    return Lark(
        grammar_path().read_text(encoding="utf-8"),
        parser="lalr",
        postlex=_SweepIndenter(),
        propagate_positions=True,
        maybe_placeholders=False,
        cache=True,
    )


def parse(text: str, filename: str = "sweepfile") -> s.Module:
    """Parse sweepfile text; raise SweepfileError with the place of a mistake."""
    source = text if text.endswith("\n") else text + "\n"
    try:
        tree = _lark().parse(source)
    except _DedentMismatch as e:
        line = e.token.end_line or 1
        col = len(source.splitlines()[line - 1]) - len(source.splitlines()[line - 1].lstrip()) + 1
        _fail(
            text,
            filename,
            "indentation does not match any outer block",
            Span(line, col, line, col),
            "indent every field of a block by the same amount",
        )
    except UnexpectedInput as e:
        _fail(text, filename, *_describe(e, source))
    deep = _too_deep(tree)
    if deep is not None:
        _fail(
            text,
            filename,
            f"this expression is nested more than {MAX_DEPTH} levels deep",
            _mspan(deep.meta),
            "each operator, 'not', sign, list and call is a level; split it into parameters or sweeps of its own",
        )
    try:
        statements = _ToAst().transform(tree)
    except VisitError as e:  # a bad literal is the only thing that can fail here
        if isinstance(e.orig_exc, _BadLiteral):
            _fail(text, filename, e.orig_exc.message, e.orig_exc.span, e.orig_exc.hint)
        raise
    return s.Module(filename=filename, source=text, statements=tuple(statements))


# statements and their parts; every other tree node is an expression
_NOT_EXPRESSIONS = {"start", "setting", "param_def", "sweep_def", "rule_def", "over_clause", "by_clause", "field", "item", "backend_def"}


def _too_deep(tree: Tree[Token]) -> Tree[Token] | None:
    """The first expression (in file order) nested more than MAX_DEPTH levels.

    Iterative: a recursive walk is what overflows on such trees."""
    # (node, its depth inside its outermost expression, that expression)
    todo: list[tuple[Tree[Token], int, Tree[Token] | None]] = [(tree, 0, None)]
    while todo:
        node, depth, top = todo.pop()
        if top is None and node.data not in _NOT_EXPRESSIONS:
            top = node
        if top is not None:
            depth += 1
            if depth > MAX_DEPTH:
                return top
        todo.extend((c, depth, top) for c in reversed(node.children) if isinstance(c, Tree))
    return None


def _fail(text: str, filename: str, message: str, span: Span, hint: str) -> NoReturn:
    raise SweepfileError([Diagnostic(message, span, hint, filename)], text)


# ---- turning lark's exceptions into words a user knows ----------------------

_WORDS = {
    "NAME": "a name",
    "INT": "a number",
    "FLOAT": "a number",
    "STRING": "a string",
    "COMP_OP": "a comparison",
    "_NEWLINE": "the end of the line",
    "_INDENT": "an indented block",
    "_DEDENT": "the end of the block",
    "$END": "the end of the file",
}
_EXPR_START = {"NAME", "INT", "FLOAT", "STRING", "LSQB", "LPAR", "MINUS", "PLUS", "TRUE", "FALSE", "NOT"}


def _terminal_words(name: str) -> str:
    if name in _WORDS:
        return _WORDS[name]
    try:
        pattern = _lark().get_terminal(name).pattern
    except KeyError:
        return name.lower()
    return f"'{pattern.value}'"


_OPERATORS = {"+", "-", "*", "/", "//", "%", "**", "and", "or", "not", "in", "where"}


def _expected_words(expected: set[str]) -> str:
    names = set(expected)
    # inside brackets the useful answer is how to go on with the list
    for close in ("RSQB", "RPAR"):
        if close in names:
            return f"',' or {_terminal_words(close)}"
    words: list[str] = []
    # where a value can start, '-', '+' and 'not' start it: they are not operators there
    if len(names & _EXPR_START) >= 4:
        words.append("a value")
        names -= _EXPR_START
    ops = {n for n in names if n == "COMP_OP" or _terminal_words(n).strip("'") in _OPERATORS}
    if ops and len(names) > 3:
        names -= ops
        words.append("an operator")
    if "COLON" in names:
        names.discard("COLON")
        words.insert(0, "':'")
    for name in sorted(names, key=lambda n: (n not in _WORDS, n)):
        w = _terminal_words(name)
        if w not in words:
            words.append(w)
    if not words:
        return "something else"
    if len(words) > 6:
        words = words[:6] + ["..."]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def _token_words(tok: Token) -> str:
    if tok.type == "_NEWLINE":
        return "end of line"
    if tok.type == "_INDENT":
        return "indentation"
    if tok.type == "_DEDENT":
        return "end of block"
    if tok.type == "$END":
        return "end of file"
    value = str(tok.value)
    if len(value) > 30:
        value = value[:27] + "..."
    return f"'{value}'"


def _accepted(e: UnexpectedInput, fallback: Iterable[str]) -> set[str]:
    """The tokens the parser could really take at the error.

    lark's own expected/allowed sets come from the LALR state, which merges the
    lookaheads of many contexts (after `[1, 2]` it would offer ']' and ':'),
    so ask the parser instead by trying each token on a copy of it."""
    ip = getattr(e, "interactive_parser", None)
    if ip is not None:
        accepted = set(ip.accepts())
        if accepted:
            return accepted
    return set(fallback)


def _describe(e: UnexpectedInput, source: str) -> tuple[str, Span, str]:
    lines = source.splitlines()
    if isinstance(e, UnexpectedCharacters):
        line, col = e.line, e.column
        pos = e.pos_in_stream or 0  # always set for UnexpectedCharacters; lark types it None
        ch = source[pos] if pos < len(source) else ""
        if ch in "\"'":
            if col > 2 and source[pos - 2 : pos + 1] == ch * 3:
                # the lexer took the first two quotes of an open """ for an empty string
                return ("unterminated string", Span(line, col - 2, line, col + 1), f"close it with {ch * 3}")
            return ("unterminated string", Span(line, col, line, col + 1),
                    "close the string with the same quote on the same line, or use \"\"\"...\"\"\" for text over several lines")
        if ch == "\t" or ch == " ":
            return ("unexpected indentation", Span(line, col, line, col + 1), "only rule and backend blocks are indented")
        shown = f"'{ch}'" if ch.isprintable() else ascii(ch)
        if (ch.isalpha() or ch.isdigit()) and not ch.isascii():
            # `param α = ...`: a name as Python would take it
            return (f"unexpected character {shown}", Span(line, col, line, col + 1),
                    "names use ASCII letters, digits and _ only (they become shell variables and file names); "
                    "write non-ASCII text in strings")
        return (f"unexpected character {shown}", Span(line, col, line, col + 1),
                f"expected {_expected_words(_accepted(e, e.allowed or ()))}")
    if isinstance(e, UnexpectedEOF):
        last = len(lines)
        return ("unexpected end of file", Span(last, 1, last, 1), "is a bracket or a string left open?")
    assert isinstance(e, UnexpectedToken)
    tok = e.token
    expected = _accepted(e, e.expected)
    line = tok.line if tok.line is not None else (e.line if e.line > 0 else len(lines))
    col = tok.column if tok.column is not None else 1
    bracket = _unclosed_bracket(source, tok.start_pos if tok.start_pos is not None else len(source))
    if bracket is not None and (bracket[0] < line or tok.type == "$END") and ("RSQB" in expected or "RPAR" in expected):
        bl, bc, ch = bracket
        return (f"'{ch}' was never closed", Span(bl, bc, bl, bc + 1), "close it with '" + {"[": "]", "(": ")"}[ch] + "' before the end of the statement")
    if tok.type == "_INDENT":
        # the token stands at the end of the line before; point at the indented text
        line = tok.end_line or line
        text = lines[line - 1] if 0 < line <= len(lines) else ""
        col = len(text) - len(text.lstrip()) + 1
        if "_DEDENT" in expected:
            hint = "indent every field of a block by the same amount"
        else:
            hint = "only the body of a rule or backend block is indented"
        return "unexpected indentation", Span(line, col, line, col), hint
    prev = _previous_code_line(lines, line)
    if tok.column == 1 and tok.type not in ("_DEDENT", "$END") and 0 < prev < line and lines[prev - 1].rstrip().endswith(":"):
        return (
            f"expected an indented block after line {prev}",
            Span(line, 1, line, 1 + len(str(tok.value)) if tok.type == "NAME" else 2),
            "indent the body of a rule or backend block, e.g. by four spaces",
        )
    if tok.type in ("_NEWLINE", "_DEDENT", "$END"):
        # point just past the last thing on the line, where the missing piece goes
        line = _previous_code_line(lines, line + 1 if tok.type != "$END" else len(lines) + 1)
        text = lines[line - 1] if 0 < line <= len(lines) else ""
        col = len(_strip_comment(text).rstrip()) + 1
        span = Span(line, col, line, col)
    elif tok.type == "_INDENT":
        text = lines[line - 1] if 0 < line <= len(lines) else ""
        col = len(text) - len(text.lstrip()) + 1
        span = Span(line, col, line, col)
    else:
        span = Span(line, col, tok.end_line or line, tok.end_column or col + len(str(tok.value)))
    message = f"unexpected {_token_words(tok)}; expected {_expected_words(expected)}"
    return message, span, _hint(tok, expected)


def _unclosed_bracket(source: str, pos: int) -> tuple[int, int, str] | None:
    """The innermost '[' or '(' still open at pos (strings and comments skipped)."""
    stack: list[tuple[int, int, str]] = []
    line, col, i = 1, 1, 0
    quote = ""
    while i < pos and i < len(source):
        c = source[i]
        if quote:
            if source.startswith(quote, i):
                i += len(quote)
                col += len(quote)
                quote = ""
                continue
            if c == "\\":
                i += 1
                col += 1
        elif c == "#":
            while i < len(source) and source[i] != "\n":
                i += 1
            continue
        elif c in "\"'":
            quote = source[i : i + 3] if source.startswith(c * 3, i) else c
            i += len(quote)
            col += len(quote)
            continue
        elif c in "[(":
            stack.append((line, col, c))
        elif c in "])" and stack:
            stack.pop()
        if c == "\n":
            line, col = line + 1, 1
        else:
            col += 1
        i += 1
    return stack[-1] if stack else None


def _previous_code_line(lines: list[str], line: int) -> int:
    i = min(line, len(lines) + 1) - 1
    while i > 1 and not _strip_comment(lines[i - 1]).strip():
        i -= 1
    return max(i, 1)


def _strip_comment(text: str) -> str:
    # good enough for placing a caret: a '#' inside a string is rare on such lines
    return text.split("#", 1)[0] if "#" in text and '"' not in text and "'" not in text else text


def _hint(tok: Token, expected: set[str]) -> str:
    if "COLON" in expected and tok.type in ("_NEWLINE", "NAME"):
        return "a rule or backend header ends with ':' and its body is indented below it"
    if expected == {"_INDENT"} or "_INDENT" in expected and len(expected) <= 2:
        return "indent the body of a rule or backend block"
    if tok.type == "_INDENT":
        return "only the body of a rule or backend block is indented"
    if expected == {"COLON"}:
        return "rule fields are written 'name: value'"
    if tok.type == "EQUAL" and "COLON" in expected:
        return "rule fields are written 'name: value', settings 'name = value'"
    if tok.type == "COLON" and "EQUAL" in expected:
        return "settings are written 'name = value'; only rule fields use ':'"
    if "RSQB" in expected or "RPAR" in expected:
        return "is a bracket left open, or a comma missing between items?"
    if tok.type == "NAME" and tok.value in ("input", "output", "shell") and "EQUAL" in expected:
        return "rule fields belong in an indented block under 'rule NAME:'"
    if "EQUAL" in expected:
        return "a statement is 'param NAME = ...', 'sweep NAME = ...', 'NAME = value', 'rule NAME:' or 'backend NAME:'"
    if expected & _EXPR_START:
        return "write a value: a number, a string, a list [...], a name or a call such as range(1, 5)"
    return "see docs/language.md for the sweepfile syntax"


# ---- the structural transformer ----------------------------------------------


class _BadLiteral(Exception):
    def __init__(self, message: str, span: Span, hint: str) -> None:
        self.message = message
        self.span = span
        self.hint = hint


def _tspan(tok: Token) -> Span:
    return Span(tok.line or 0, tok.column or 0, tok.end_line or 0, tok.end_column or 0)


def _mspan(meta: Any) -> Span:
    return Span(meta.line, meta.column, meta.end_line, meta.end_column)


def _upto(meta: Any, last: Any) -> Span:
    """A statement's span, from its start to the end of its last part.

    (lark's meta would run on over the newlines and blank lines after it.)"""
    end = last.span if hasattr(last, "span") else _tspan(last)
    return Span(meta.line, meta.column, end.end_line, end.end_column)


def _espan(a: s.Expr, b: s.Expr) -> Span:
    return Span(a.span.line, a.span.column, b.span.end_line, b.span.end_column)


def _string_value(tok: Token) -> str:
    raw = str(tok.value)
    try:
        value = pyast.literal_eval(raw)
    except (SyntaxError, ValueError) as e:
        raise _BadLiteral(
            f"bad string literal: {e.args[0] if e.args else e}", _tspan(tok), "write strings as in Python: \"...\", '...' or \"\"\"...\"\"\""
        ) from None
    assert isinstance(value, str)
    # no command, file name or argument can hold these (execve and open refuse them)
    if "\0" in value:
        raise _BadLiteral("a string cannot contain a NUL character (\\0)", _tspan(tok), "remove the \\0 (or \\x00, \\u0000) from the string")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        bad = ascii(value[e.start])[1:-1]
        raise _BadLiteral(f"a string cannot contain a lone surrogate ({bad})", _tspan(tok), "write the character itself, or its \\U0001xxxx escape") from None
    body = raw.lstrip("rR")
    if body.startswith(('"""', "'''")):
        # long commands are indented with the sweepfile; take that indent away
        value = textwrap.dedent(value).strip("\n")
    return value


def _number(text: str) -> str:
    return text.replace("_", "")


class _ToAst(Transformer[Token, Any]):
    # -- statements
    def start(self, children: list[Any]) -> list[s.Statement]:
        return [c for c in children if not isinstance(c, Token)]

    @v_args(meta=True)
    def setting(self, meta: Any, c: list[Any]) -> s.Setting:
        return s.Setting(str(c[0]), _tspan(c[0]), c[1], _upto(meta, c[1]))

    @v_args(meta=True)
    def param_def(self, meta: Any, c: list[Any]) -> s.ParamDef:
        return s.ParamDef(str(c[0]), _tspan(c[0]), c[1], _upto(meta, c[1]))

    @v_args(meta=True)
    def sweep_def(self, meta: Any, c: list[Any]) -> s.SweepDef:
        return s.SweepDef(str(c[0]), _tspan(c[0]), c[1], _upto(meta, c[1]))

    @v_args(meta=True)
    def rule_def(self, meta: Any, c: list[Any]) -> s.RuleDef:
        name = c[0]
        over: s.Expr | None = None
        by: tuple[s.Name, ...] = ()
        fields: list[s.Field] = []
        for child in c[1:]:
            if isinstance(child, tuple) and child and child[0] == "over":
                over = child[1]
            elif isinstance(child, tuple) and child and child[0] == "by":
                by = child[1]
            elif isinstance(child, s.Field):
                fields.append(child)
        return s.RuleDef(str(name), _tspan(name), over, by, tuple(fields), _upto(meta, fields[-1]) if fields else _mspan(meta))

    def over_clause(self, c: list[Any]) -> tuple[str, s.Expr]:
        return ("over", c[0])

    def by_clause(self, c: list[Token]) -> tuple[str, tuple[s.Name, ...]]:
        return ("by", tuple(s.Name(str(t), _tspan(t)) for t in c))

    @v_args(meta=True)
    def field(self, meta: Any, c: list[Any]) -> s.Field:
        items = tuple(x for x in c[1:] if isinstance(x, s.Item))
        return s.Field(str(c[0]), _tspan(c[0]), items, _upto(meta, items[-1] if items else c[0]))

    @v_args(meta=True)
    def item(self, meta: Any, c: list[Any]) -> s.Item:
        if len(c) == 2:
            return s.Item(str(c[0]), _tspan(c[0]), c[1], _mspan(meta))
        return s.Item(None, None, c[0], _mspan(meta))

    @v_args(meta=True)
    def backend_def(self, meta: Any, c: list[Any]) -> s.BackendDef:
        settings = tuple(x for x in c[1:] if isinstance(x, s.Setting))
        return s.BackendDef(str(c[0]), _tspan(c[0]), settings, _upto(meta, settings[-1]) if settings else _mspan(meta))

    # -- expressions
    def name(self, c: list[Token]) -> s.Name:
        return s.Name(str(c[0]), _tspan(c[0]))

    def int_(self, c: list[Token]) -> s.Num:
        digits = _number(c[0])
        if len(digits.lstrip("0")) > MAX_INT_DIGITS:
            raise _BadLiteral(
                f"this number has {len(digits.lstrip('0')):,} digits; the limit is {MAX_INT_DIGITS:,}",
                _tspan(c[0]),
                "write a float such as 1e300 if you need a large number",
            )
        return s.Num(int(digits), _tspan(c[0]))

    def float_(self, c: list[Token]) -> s.Num:
        return s.Num(float(_number(c[0])), _tspan(c[0]))

    def string(self, c: list[Token]) -> s.Str:
        return s.Str(_string_value(c[0]), _tspan(c[0]))

    @v_args(meta=True)
    def true(self, meta: Any, c: list[Any]) -> s.Bool:
        return s.Bool(True, _mspan(meta))

    @v_args(meta=True)
    def false(self, meta: Any, c: list[Any]) -> s.Bool:
        return s.Bool(False, _mspan(meta))

    @v_args(meta=True)
    def list_(self, meta: Any, c: list[Any]) -> s.ListExpr:
        return s.ListExpr(tuple(x for x in c if x is not None and not isinstance(x, Token)), _mspan(meta))

    @v_args(meta=True)
    def call(self, meta: Any, c: list[Any]) -> s.Call:
        func = c[0]
        return s.Call(str(func), _tspan(func), tuple(a for a in c[1:] if isinstance(a, s.Arg)), _mspan(meta))

    @v_args(meta=True)
    def arg(self, meta: Any, c: list[Any]) -> s.Arg:
        if len(c) == 2:
            return s.Arg(str(c[0]), _tspan(c[0]), c[1], _mspan(meta))
        return s.Arg(None, None, c[0], _mspan(meta))

    def _bin(self, op: str, c: list[Any]) -> s.BinOp:
        left, right = c[0], c[-1]
        op_span = _tspan(c[1]) if len(c) == 3 and isinstance(c[1], Token) else Span(
            left.span.end_line, left.span.end_column + 1, left.span.end_line, left.span.end_column + 1 + len(op)
        )
        return s.BinOp(op, left, right, _espan(left, right), op_span)

    def where(self, c: list[Any]) -> s.BinOp:
        return self._bin("where", c)

    def or_(self, c: list[Any]) -> s.BinOp:
        return self._bin("or", c)

    def and_(self, c: list[Any]) -> s.BinOp:
        return self._bin("and", c)

    def compare(self, c: list[Any]) -> s.BinOp:
        return self._bin(str(c[1]), c)

    def in_(self, c: list[Any]) -> s.BinOp:
        return self._bin("in", c)

    def not_in(self, c: list[Any]) -> s.BinOp:
        return self._bin("notin", c)

    def add(self, c: list[Any]) -> s.BinOp:
        return self._bin("+", c)

    def sub(self, c: list[Any]) -> s.BinOp:
        return self._bin("-", c)

    def mul(self, c: list[Any]) -> s.BinOp:
        return self._bin("*", c)

    def div(self, c: list[Any]) -> s.BinOp:
        return self._bin("/", c)

    def floordiv(self, c: list[Any]) -> s.BinOp:
        return self._bin("//", c)

    def mod(self, c: list[Any]) -> s.BinOp:
        return self._bin("%", c)

    def pow(self, c: list[Any]) -> s.BinOp:
        return self._bin("**", c)

    @v_args(meta=True)
    def not_(self, meta: Any, c: list[Any]) -> s.UnaryOp:
        return s.UnaryOp("not", c[-1], _mspan(meta))

    @v_args(meta=True)
    def neg(self, meta: Any, c: list[Any]) -> s.UnaryOp:
        return s.UnaryOp("-", c[-1], _mspan(meta))

    @v_args(meta=True)
    def pos(self, meta: Any, c: list[Any]) -> s.UnaryOp:
        return s.UnaryOp("+", c[-1], _mspan(meta))


__all__ = ["grammar_path", "parse"]
