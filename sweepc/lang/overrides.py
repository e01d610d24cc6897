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
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import fields, is_dataclass, replace

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
    """Diagnostics on an override's line, shown as `-D:1:COL`; a sweep made
    too big by an override is reported there too (_blame_overrides)."""
    out = []
    for d in _blame_overrides(diags, module, n_file_lines):
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


# -- a sweep too big because of an override -------------------------------------

def _blame_overrides(diags: Sequence[Diagnostic], module: s.Module, n_file_lines: int) -> list[Diagnostic]:
    """A sweep over the max_psets limit because of a -D (`-D a='range(10**7)'`)
    was an error at the sweep, in the sweepfile, whose hint (set max_psets)
    did not say that -D made it so. It is shown at the -D instead, or left
    out when that -D has an error of its own about the limit (whose hint then
    names the limit the sweep needs). The limit is a setting of the
    sweepfile (-D sets parameters only): the hints say to raise it there."""
    from sweepc.lang.names import too_many

    limits = [too_many(d.message) for d in diags]
    if not any(t is not None for t in limits):
        return list(diags)
    lines = module.source.splitlines()
    params = {st.name: st for st in module.statements if isinstance(st, s.ParamDef)}
    grew = _grown(module, params, n_file_lines)
    sweeps = {st.name: st for st in module.statements if isinstance(st, s.SweepDef)}
    own = {d.span.line for d, t in zip(diags, limits) if t is not None and t[0] == "values" and d.span is not None and d.span.line > n_file_lines}
    needs: dict[int, tuple[int, str]] = {}  # -D line -> the biggest sweep it made too big: (psets, which)
    kept: list[Diagnostic] = []
    for d, t in zip(diags, limits):
        found = None
        if t is not None and t[0] == "psets" and d.span is not None and d.span.line <= n_file_lines:
            found = _sweep_at(module, d.span, lines)
        blame = _override_in(found[0], params, sweeps, n_file_lines, grew) if found is not None else None
        if found is None or blame is None or t is None:
            kept.append(d)
            continue
        line, span = blame
        which = found[1]
        if line in own:
            needs[line] = max(needs.get(line, (0, "")), (t[1], which))
            continue
        kept.append(replace(d, message=f"with this value, {which} has {t[1]:,} psets; the limit is {t[2]:,}", span=span,
                            hint=_raise_hint(t[1])))
    out = []
    for d in kept:
        t = too_many(d.message)
        if t is not None and t[0] == "values" and d.span is not None and d.span.line in own:
            size, which = needs.get(d.span.line, (0, ""))
            d = replace(d, hint=_raise_hint(size, which) if size > t[1] else _raise_hint(t[1]))
        out.append(d)
    return out


def _raise_hint(size: int, which: str = "") -> str:
    then = f" ({which} then has {size:,} psets)" if which else ""
    return f"the limit is the sweepfile's (-D sets parameters, not settings): if you mean it, write max_psets = {size} there{then}"


def _sweep_at(module: s.Module, span: Span, lines: Sequence[str]) -> tuple[s.Expr, str] | None:
    """The sweep expression of the sweepfile at `span`, and how to name it."""
    for st in module.statements:
        top = st.value if isinstance(st, s.SweepDef) else st.over if isinstance(st, s.RuleDef) else None
        if top is None:
            continue
        node = _find(top, span)
        if node is None:
            continue
        whole = f"sweep '{st.name}'" if isinstance(st, s.SweepDef) else f"the sweep of rule '{st.name}'"
        if node is top:
            return node, whole
        text = lines[span.line - 1][span.column - 1:span.end_column - 1] if span.line == span.end_line else ""
        return node, f"{text} (in {whole})" if text else whole
    return None


def _find(node: object, span: Span) -> s.Expr | None:
    if getattr(node, "span", None) == span and not isinstance(node, (s.Arg, s.Item)):
        return node  # type: ignore[return-value]
    for child in _children(node):
        found = _find(child, span)
        if found is not None:
            return found
    return None


def _children(node: object) -> Iterator[object]:
    for f in fields(node):  # type: ignore[arg-type]
        v = getattr(node, f.name)
        for x in v if isinstance(v, tuple) else (v,):
            if is_dataclass(x) and not isinstance(x, Span):
                yield x


def _grown(module: s.Module, params: Mapping[str, s.ParamDef], n_file_lines: int) -> set[str]:
    """The parameters an override gave more values than the sweepfile does."""
    from sweepc.lang.names import value_count

    overridden = {name for name, st in params.items() if st.value.span.line > n_file_lines}
    if not overridden:
        return set()
    try:
        text = "".join(module.source.splitlines(keepends=True)[:n_file_lines])
        before = {st.name: st.value for st in parse(text, module.filename).statements if isinstance(st, s.ParamDef)}
    except SweepfileError:
        return overridden
    out = set()
    for name in overridden:
        new, old = value_count(params[name].value), (value_count(before[name]) if name in before else None)
        if new is None or old is None or new > old:
            out.add(name)
    return out


def _override_in(expr: object, params: Mapping[str, s.ParamDef], sweeps: Mapping[str, s.SweepDef], n_file_lines: int,
                 grew: set[str], seen: set[str] | None = None) -> tuple[int, Span] | None:
    """(line, span) of the first override that made `expr` bigger (a parameter
    it names, through the sweeps it names, given more values; or a keyword of
    its csv()/npy()), None when there is none."""
    seen = set() if seen is None else seen
    if isinstance(expr, s.Arg) and expr.span.line > n_file_lines:
        return expr.span.line, expr.span  # -D rows.start=3
    if isinstance(expr, s.Name) and expr.id not in seen:
        seen.add(expr.id)
        if expr.id in params:
            value = params[expr.id].value
            return (value.span.line, value.span) if expr.id in grew else None
        if expr.id in sweeps:
            return _override_in(sweeps[expr.id].value, params, sweeps, n_file_lines, grew, seen)
    for child in _children(expr):
        found = _override_in(child, params, sweeps, n_file_lines, grew, seen)
        if found is not None:
            return found
    return None
