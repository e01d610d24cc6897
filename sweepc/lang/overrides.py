"""Command-line overrides: `sweepc -D NAME=VALUE ...` applied to a parsed sweepfile.

An override replaces a parameter's value (`-D a='[1, 2, 3]'`, `-D
a='range(0, 50)'`) or one keyword of a sweep's csv()/npy() call (`-D
rows.start=3`), in the sweepfile's own expression syntax (Snakemake's
--config, Maestro's --pargs). It is applied to the syntax tree before the
compiler sees it, so every check and error of the sweepfile applies to it.

Errors point into the -D text: its value is parsed as if it stood on a line of
its own after the sweepfile's last line (with the name replaced by an
identifier of the same length, so columns match what was typed), and a
diagnostic on such a line is shown as `-D:1:COL` with the text as typed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace

from sweepc.errors import Diagnostic, Span, SweepfileError, UsageError, did_you_mean
from sweepc.lang import syntax as s
from sweepc.lang.parser import parse

OVERRIDE_FILENAME = "-D"
_NAME = re.compile(r"[A-Za-z_][A-Za-z_0-9]*(\.[A-Za-z_][A-Za-z_0-9]*)?")
_HINT = "write -D NAME=VALUE with a value in the sweepfile's syntax, e.g. -D a='[1, 2, 3]' or -D rows.start=3"
KEYWORD_CALLS = ("csv", "npy")


def apply(module: s.Module, overrides: Sequence[str]) -> s.Module:
    """The module with every override applied (UsageError or SweepfileError if one is wrong)."""
    if not overrides:
        return module
    file_lines = module.source.splitlines()
    shown = list(file_lines)
    statements = list(module.statements)
    seen: dict[str, str] = {}
    for k, text in enumerate(overrides):
        name, eq, value = text.partition("=")
        name = name.strip()
        if not eq or not _NAME.fullmatch(name) or not value.strip():
            raise UsageError(f"malformed override -D {text}", _HINT)
        if name in seen:
            raise UsageError(f"-D {name} is given twice ({seen[name]!r} and {text!r})", "give each name once")
        seen[name] = text
        line = len(file_lines) + k + 1
        expr = _parse_value(text, name, line)
        statements = _splice(statements, name, expr, module)
        shown.append(text)
    return replace(module, source="\n".join(shown) + "\n", statements=tuple(statements))


def from_override(diags: Sequence[Diagnostic], module: s.Module, n_file_lines: int) -> list[Diagnostic]:
    """Diagnostics on an override's line, shown as `-D:1:COL`."""
    out = []
    for d in diags:
        if d.span is not None and d.span.line > n_file_lines:
            out.append(replace(d, filename=OVERRIDE_FILENAME, shown_line=1))
        else:
            out.append(d)
    return out


def _parse_value(text: str, name: str, line: int) -> s.Expr:
    stand_in = re.sub(r"\W", "_", name)  # same length: columns stay those of the text as typed
    try:
        m = parse("\n" * (line - 1) + stand_in + text[text.index("="):], OVERRIDE_FILENAME)
    except SweepfileError as e:
        diags = [replace(d, span=None if d.span is None else Span(1, d.span.column, 1, d.span.end_column), shown_line=None,
                         # -D a=1,2: the shell's habit; the sweepfile's list has brackets
                         hint=(f"a list of values needs brackets: -D {name}='[{text[text.index('=') + 1:]}]'"
                               if d.message.startswith("unexpected ','") else d.hint))
                 for d in e.diagnostics]
        raise SweepfileError(diags, text) from None
    (st,) = m.statements
    assert isinstance(st, s.Setting)
    return st.value


def _splice(statements: list[s.Statement], name: str, expr: s.Expr, module: s.Module) -> list[s.Statement]:
    target, _, keyword = name.partition(".")
    for i, st in enumerate(statements):
        if not keyword and isinstance(st, s.ParamDef) and st.name == target:
            statements[i] = replace(st, value=expr)
            return statements
        if keyword and isinstance(st, s.SweepDef) and st.name == target:
            call = st.value
            if not isinstance(call, s.Call) or call.func not in KEYWORD_CALLS:
                raise UsageError(f"-D {name}: sweep '{target}' is not a csv() or npy() call",
                                 "an override NAME.KEYWORD sets a keyword of csv(...) or npy(...)")
            args = [a for a in call.args if a.name != keyword]
            line = expr.span.line
            name_span = Span(line, len(target) + 2, line, len(name) + 1)  # the keyword as typed
            args.append(s.Arg(keyword, name_span, expr, Span(line, 1, expr.span.end_line, expr.span.end_column)))
            statements[i] = replace(st, value=replace(call, args=tuple(args)))
            return statements
    candidates = [st.name for st in statements if isinstance(st, s.ParamDef)]
    for st in statements:
        if isinstance(st, s.SweepDef) and isinstance(st.value, s.Call) and st.value.func in KEYWORD_CALLS:
            kws = ("start", "rows", "index", "columns", "header") if st.value.func == "csv" else ("start", "rows", "columns")
            candidates += [f"{st.name}.{kw}" for kw in kws]
    hint = did_you_mean(name, candidates) or (f"-D overrides a parameter or a csv()/npy() keyword: {', '.join(candidates)}"
                                              if candidates else "this sweepfile has no parameter to override")
    raise UsageError(f"-D {name}: no parameter '{target}'" if not keyword else f"-D {name}: no csv() or npy() sweep '{target}'", hint)
