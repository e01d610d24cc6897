"""Rendering each rule's templates into the folders of the jobs that will run.

check() renders the templates of every job that will run, without writing,
once per build after planning and before any job starts, on every backend
(api.Study.build): a template that fails for one pset (a misspelt name, a
bad expression) stops the build before anything runs, reported as
`template-file:line: message` with the pset it failed for. rendered() renders
them again into the job's folder as the backend prepares it
(jobdir.prepare_job_dir), so writing 100k folders overlaps with running jobs
instead of delaying the first. On SLURM that is at submission, by sweepc,
so the files are there when the task runs.

Each template is compiled once per build; every file is written to a
temporary name and renamed. Inside a template: every
parameter by name with its own value (not shell-quoted), `pset` (the dict of
parameters, with `pset.hash`, `pset.seq`, `pset.dir`), `rule` and
`resources` (cpus, mem in MB, time as HH:MM:SS, nodes, tasks, gpus).
"""

from __future__ import annotations

import os
import re
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sweepc.errors import Diagnostic, Span, SweepfileError, did_you_mean
from sweepc.lang.graph import BuildGraph, Job, RuleSpec, TemplateFile
from sweepc.values import shell_str

if TYPE_CHECKING:
    import jinja2

CONTEXT_NAMES = ("pset", "rule", "resources")
_UNDEFINED = re.compile(r"'(\w+)' is undefined|has no attribute '(\w+)'")


class PsetView(dict[str, Any]):
    """The `pset` of a template: its parameters, plus .hash, .seq and .dir."""

    __slots__ = ("dir", "hash", "seq")

    def __init__(self, params: Mapping[str, Any], hash: str, seq: int, dir: str) -> None:
        super().__init__(params)
        self.hash, self.seq, self.dir = hash, seq, dir


def context(g: BuildGraph, job: Job) -> dict[str, Any]:
    """What a template of `job` can use. The context names win over a
    parameter of the same name (which stays reachable as pset['name'])."""
    from sweepc.lang.resources import format_time  # (here: with the parser's modules it imports, ~10 ms of every command)

    res = job.resources
    resources = {
        "cpus": res.cpus, "mem": res.mem_mb, "time": format_time(res.time_s) if res.time_s is not None else None,
        "nodes": res.nodes, "tasks": res.tasks, "gpus": res.gpus,
    }
    pset = PsetView(job.params, job.hash, job.seq, f"{g.workdir}/{job.reldir}")
    return {**job.params, "pset": pset, "rule": job.rule, "resources": resources}


class _Compiled:
    """One rule's templates, compiled once."""

    def __init__(self, g: BuildGraph, rule: RuleSpec, env: jinja2.Environment) -> None:
        self.files: list[tuple[TemplateFile, jinja2.Template | None, int, str]] = []
        self.source: dict[str, str] = {}
        for tf in rule.templates:
            path = g.root / tf.source
            mode = os.stat(path).st_mode & 0o777
            if tf.text:
                text = path.read_text(encoding="utf-8")
                self.source[tf.source] = text
                code = env.compile(text, name=tf.source, filename=tf.source)
                t = env.template_class.from_code(env, code, env.make_globals(None))
                self.files.append((tf, t, mode, str(path)))
            else:
                self.files.append((tf, None, mode, str(path)))


_CACHE: dict[int, tuple[weakref.ref[BuildGraph], dict[str, _Compiled]]] = {}


def _compiled(g: BuildGraph, rule: str) -> _Compiled:
    """A rule's templates, compiled once per graph (a build renders them
    once to check, then once per job as it starts)."""
    hit = _CACHE.get(id(g))
    if hit is None or hit[0]() is not g:
        for k in [k for k, (ref, _) in _CACHE.items() if ref() is None]:
            del _CACHE[k]
        hit = _CACHE[id(g)] = (weakref.ref(g), {})
    c = hit[1].get(rule)
    if c is None:
        from sweepc.lang.templates import environment  # (only for templates: see context())

        c = hit[1][rule] = _Compiled(g, g.rule(rule), environment())
    return c


def _render(g: BuildGraph, job: Job) -> list[tuple[TemplateFile, str | None, int, str]] | Diagnostic:
    c = _compiled(g, job.rule)
    ctx = context(g, job)
    out: list[tuple[TemplateFile, str | None, int, str]] = []
    for tf, t, mode, src in c.files:
        if t is None:
            out.append((tf, None, mode, src))
            continue
        try:
            out.append((tf, t.render(ctx), mode, src))
        except Exception as e:  # noqa: BLE001 - any error inside a template is the user's to fix
            return _diagnostic(e, tf, c.source[tf.source], job, ctx)
    return out


def check(g: BuildGraph, jobs: Sequence[int]) -> int:
    """Render the templates of `jobs` (ids) without writing them, before
    anything runs; how many jobs have templates. Raises SweepfileError naming
    the template, its line and the pset, once for every rule that fails."""
    failed: dict[str, Diagnostic] = {}  # per rule: its first failure
    n = 0
    if not any(r.templates for r in g.rules):
        return 0
    for i in jobs:
        job = g.jobs[i]
        if job.rule in failed or not g.rule(job.rule).templates:
            continue
        n += 1
        r = _render(g, job)
        if isinstance(r, Diagnostic):
            failed[job.rule] = r
    if failed:
        raise SweepfileError(list(failed.values()), g.source)
    return n


def rendered(g: BuildGraph, job: Job) -> list[tuple[str, bytes | Path, int]]:
    """The job's template files as (job-folder path, bytes or a file to copy,
    mode), for jobdir.prepare_job_dir to write. A template that fails now
    (edited since the check) raises OSError, which the backend reports as a
    job that could not be prepared."""
    if not g.rule(job.rule).templates:
        return []
    r = _render(g, job)
    if isinstance(r, Diagnostic):
        raise OSError(f"template {r.filename}: {r.message}")
    return [(tf.dest, Path(src) if text is None else text.encode("utf-8"), mode) for tf, text, mode, src in r]


def sources(g: BuildGraph, job: Job) -> dict[str, str]:
    """The job's template files now: {job-folder path: template file}."""
    return {tf.dest: tf.source for tf in g.rule(job.rule).templates}


def _diagnostic(e: Exception, tf: TemplateFile, text: str, job: Job, ctx: Mapping[str, Any]) -> Diagnostic:
    import traceback

    line = 0
    for frame in traceback.extract_tb(e.__traceback__):
        if frame.filename == tf.source and frame.lineno:
            line = frame.lineno
    where = f"pset {_describe(job)} of rule '{job.rule}'" if job.params else f"rule '{job.rule}'"
    message = str(e) if str(e) else type(e).__name__
    hint = f"it failed for {where}"
    m = _UNDEFINED.search(message)
    if m and m.group(1):
        close = did_you_mean(m.group(1), [k for k in ctx if k not in CONTEXT_NAMES] + list(CONTEXT_NAMES))
        hint += "; " + (close or "a template can use: " + ", ".join([*job.params, *CONTEXT_NAMES]))
    elif type(e).__name__ not in ("UndefinedError", "TemplateError"):
        message = f"{type(e).__name__}: {message}"
    return Diagnostic(message, Span(line, 0, line, 0) if line else None, hint, tf.source, source=text)


def _describe(job: Job) -> str:
    """The pset as the sweepfile writes its values: a=1, flag=true, title="my run"
    (a bool and a float as the job's label has them, a string quoted)."""
    return ", ".join(f"{k}={_as_written(v)}" for k, v in job.params.items())


def _as_written(v: Any) -> str:
    import json

    return json.dumps(v, ensure_ascii=False) if isinstance(v, str) else shell_str(v)
