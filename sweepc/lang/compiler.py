"""The compiler's front door: syntax.Module -> graph.BuildGraph.

Four passes, each a module with one verb, each handing the next a frozen
dataclass and its diagnostics (a mistake in one parameter does not hide one
in a rule; every independent mistake is reported at once):

    names.resolve     the namespace, settings, backend blocks, parameter values
    evaluate.evaluate sweeps (and each rule's 'over') to psets
    join.join         rules checked, ordered, joined to their upstream jobs
    templates.collect each rule's templates: field checked against the files
    commands.render   every job, its hash, folder, inputs and command (or
                      its hash and command from `earlier`, the jobs of an
                      earlier graph, when made of the same texts)
"""

from __future__ import annotations

from pathlib import Path

from sweepc.lang import syntax as s
from sweepc.lang.commands import render
from sweepc.lang.evaluate import evaluate
from sweepc.lang.graph import BuildGraph, EarlierJobs
from sweepc.lang.join import join
from sweepc.lang.names import resolve
from sweepc.lang.problems import fail
from sweepc.lang.templates import attach, collect


def compile(module: s.Module, root: Path | None = None, sweepfile: Path | None = None, earlier: EarlierJobs | None = None, not_done: frozenset[str] = frozenset()) -> BuildGraph:
    """Check and expand a parsed sweepfile (`not_done`: sample rules whose output counts as not there)."""
    path = sweepfile or Path(module.filename)
    root = root or path.resolve().parent
    names = resolve(module, root, sweepfile or root / path.name)
    swept = evaluate(module, names, root, not_done)
    joined = join(module, names, swept, root)
    templates = collect(module, names, joined, root)
    found = names.diagnostics + swept.diagnostics + joined.diagnostics + templates.diagnostics
    rendered = render(module, names, swept, joined, root, path, earlier) if not found else None
    if rendered is None or rendered.graph is None:
        raise fail(module, found + (rendered.diagnostics if rendered else ()))
    return attach(rendered.graph, templates)
