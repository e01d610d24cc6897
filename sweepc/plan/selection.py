"""Which jobs a command is about: targets, --where, --psets, --rule.

Targets are `RULE`, `RULE[a=1,b=2]`, or a path inside the workdir (an output
file or a job folder). A job is selected with everything it needs.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from pathlib import Path

from sweepc.errors import SweepfileError, UsageError, did_you_mean, listing
from sweepc.lang.graph import BuildGraph
from sweepc.values import Scalar, join_key

_TARGET = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(?:\[(.*)\])?$")


def parse_condition(text: str, known: Collection[str], what: str = "--where") -> Condition:
    """A condition typed on the command line, in the sweepfile's expression language."""
    from sweepc.lang import syntax as s  # the parser (lark) only when there is a condition
    from sweepc.lang.expr import ExprError, compile_condition
    from sweepc.lang.parser import parse

    prefix = "sweep _ = _ where "
    try:
        module = parse(prefix + text + "\n", what)
    except SweepfileError as e:
        d = e.diagnostics[0]
        col = (d.span.column - len(prefix)) if d.span else 0
        raise UsageError(f"{what}: {d.message} (at column {max(col, 1)} of '{text}')", d.hint) from None
    st = module.statements[0]
    assert isinstance(st, s.SweepDef) and isinstance(st.value, s.BinOp)
    try:
        compiled = compile_condition(st.value.right, known)
    except ExprError as e:
        raise UsageError(f"{what}: {e.message}", e.hint) from None
    return Condition(text, compiled.func, compiled.names)


class Condition:
    def __init__(self, text: str, func: object, names: frozenset[str]) -> None:
        self.text, self.func, self.names = text, func, names

    def __call__(self, params: Mapping[str, Scalar]) -> bool:
        if not self.names <= params.keys():
            return False  # a job without the parameter is not selected
        try:
            return bool(self.func(params))  # type: ignore[operator]
        except (TypeError, ZeroDivisionError, ValueError, OverflowError) as e:
            raise UsageError(f"--where '{self.text}' fails for {dict(params)}: {e}") from None


def all_param_names(g: BuildGraph) -> list[str]:
    names: dict[str, None] = {}
    for r in g.rules:
        for k in r.keys:
            names[k] = None
    return list(names)


def where_filter(g: BuildGraph, text: str | None) -> Condition | None:
    return None if text is None else parse_condition(text, all_param_names(g))


def parse_slice(text: str | None) -> slice | None:
    if text is None:
        return None
    m = re.fullmatch(r"\s*(-?\d*)\s*:\s*(-?\d*)\s*", text)
    if not m:
        raise UsageError(f"--psets takes START:STOP, not '{text}'", "for example --psets 0:100 (STOP excluded, as in Python)")
    a, b = m.groups()
    return slice(int(a) if a else None, int(b) if b else None)


def _value(text: str) -> Scalar:
    t = text.strip()
    if len(t) >= 2 and t[0] == t[-1] and t[0] in "\"'":
        return t[1:-1]
    if t in ("true", "false"):
        return t == "true"
    for conv in (int, float):
        try:
            return conv(t)
        except ValueError:
            pass
    return t


def _target_jobs(g: BuildGraph, target: str, cwd: Path) -> list[int]:
    m = _TARGET.match(target.strip())
    if m and m.group(1) in g.rule_index:
        rule = g.rule(m.group(1))
        ids = list(rule.job_ids)
        if m.group(2) is None:
            return ids
        want: dict[str, Scalar] = {}
        for part in filter(None, (p.strip() for p in m.group(2).split(","))):
            if "=" not in part:
                raise UsageError(f"bad target '{target}'", "write RULE[name=value,...], e.g. gen[a=1,b=20]")
            k, v = part.split("=", 1)
            k = k.strip()
            if k not in rule.keys:
                raise UsageError(f"rule '{rule.name}' has no parameter '{k}'", did_you_mean(k, rule.keys) or f"its parameters: {listing(rule.keys)}")
            want[k] = _value(v)
        keyed = {k: join_key(v) for k, v in want.items()}
        hits = [i for i in ids if all(k in g.jobs[i].params and join_key(g.jobs[i].params[k]) == kv for k, kv in keyed.items())]
        if not hits:
            raise UsageError(f"no job of rule '{rule.name}' has {', '.join(f'{k}={v}' for k, v in want.items())}", "see: sweepc psets")
        return hits
    # a path: an output file or a job folder inside the workdir
    p = Path(target)
    full = (cwd / p) if not p.is_absolute() else p
    try:
        rel = Path(os.path.normpath(full)).relative_to(Path(os.path.normpath(g.workdir_path)))
    except ValueError:
        rel = None
    if rel is not None and len(rel.parts) >= 3:
        rule_name, _, h = rel.parts[:3]
        if rule_name in g.rule_index:
            for i in g.rule(rule_name).job_ids:
                if g.jobs[i].hash == h:
                    return [i]
    if m:
        raise UsageError(f"unknown target '{target}'", did_you_mean(m.group(1), g.rule_index) or f"targets are rules ({listing(g.rule_index)}), RULE[a=1], or output paths")
    raise UsageError(f"'{target}' is not a rule or an output of this project", "outputs live at <workdir>/<rule>/<hh>/<hash>/<file>")


def target_rules(g: BuildGraph, targets: Sequence[str], cwd: Path | None = None) -> set[str]:
    """The rules of the jobs the targets name (a rule, RULE[a=1], an output path)."""
    here = cwd or Path.cwd()
    return {g.jobs[i].rule for t in targets for i in _target_jobs(g, t, here)}


def select(
    g: BuildGraph,
    targets: Sequence[str] = (),
    where: str | None = None,
    psets: str | None = None,
    rules: Iterable[str] = (),
    cwd: Path | None = None,
    with_ancestors: bool = True,
) -> list[int]:
    """Job ids the command is about, in topological order."""
    here = cwd or Path.cwd()
    chosen: set[int] | None = None
    if targets:
        chosen = set()
        for t in targets:
            chosen.update(_target_jobs(g, t, here))
    for rname in rules:
        if rname not in g.rule_index:
            raise UsageError(f"unknown rule '{rname}'", did_you_mean(rname, g.rule_index) or f"rules: {listing(g.rule_index)}")
        ids = set(g.rule(rname).job_ids)
        chosen = ids if chosen is None else chosen & ids
    cond = where_filter(g, where)
    part = parse_slice(psets)
    if cond is not None or part is not None:
        base = chosen if chosen is not None else set(range(len(g.jobs)))
        keep: set[int] = set()
        for r in g.rules:
            rule_ids = [i for i in r.job_ids if i in base]
            if part is not None:
                if r.over is None or r.by:
                    # --psets slices per-pset rules; a gather comes in whole when
                    # named as a target, otherwise only as something a job needs
                    if targets:
                        keep.update(rule_ids)
                    continue
                rule_ids = rule_ids[part]
            if cond is not None:
                rule_ids = [i for i in rule_ids if cond(g.jobs[i].params)]
            keep.update(rule_ids)
        chosen = keep
    if chosen is None:
        return list(range(len(g.jobs)))
    if with_ancestors:
        chosen = g.ancestors(chosen)
    return sorted(chosen)
