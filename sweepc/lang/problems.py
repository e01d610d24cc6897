"""What every compiler pass shares: a list of diagnostics and a way to stop.

A pass records each mistake with error() and carries on, so one mistake does
not hide the next; bail() records one and abandons the statement being
checked, and guard() is where that statement ends. Passes hand their
diagnostics on as a tuple; the front door (compiler.compile) raises them
together.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import NoReturn, TypeVar

from sweepc.errors import Diagnostic, Span, SweepfileError
from sweepc.lang import syntax as s

T = TypeVar("T")


class Bail(Exception):
    """Stop checking the current statement; its diagnostic is recorded."""


class Problems:
    """The diagnostics of one pass over one sweepfile."""

    def __init__(self, module: s.Module) -> None:
        self.module = module
        self.diags: list[Diagnostic] = []

    def error(self, message: str, span: Span | None, hint: str) -> None:
        self.diags.append(Diagnostic(message, span, hint, self.module.filename))

    def bail(self, message: str, span: Span | None, hint: str) -> NoReturn:
        self.error(message, span, hint)
        raise Bail

    def guard(self, f: Callable[[], T]) -> T | None:
        """f(), or None when it bailed (its diagnostic is recorded)."""
        try:
            return f()
        except Bail:
            return None

    def span_in(self, node: s.Str, text: str, offset: int) -> Span:
        """Where `text` (found at `offset` of the string value) stands in the file.

        Triple-quoted strings are dedented, so search the source for the n-th
        occurrence of the same text inside the literal instead of counting."""
        lines = self.module.source.splitlines()
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


def fail(module: s.Module, diagnostics: Iterable[Diagnostic]) -> SweepfileError:
    """Every diagnostic, in the order of the file (stable: ties keep pass order)."""
    diags = sorted(diagnostics, key=lambda d: (d.span.line, d.span.column) if d.span else (0, 0))
    return SweepfileError(diags, module.source)
