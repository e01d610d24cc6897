"""Pass 4, render(): Joined -> graph.BuildGraph (every job, with its command).

Makes each rule's jobs in run order: the job's hash and folder, its input
paths (upstream outputs and source files), resources per pset, and its
shell (and restart) command with every value shell-quoted. Rendering is the
hot loop of compiling (300k jobs at 100k psets): what does not depend on
the pset (output paths, constant resources, templates) is worked out once
per rule.

Given the jobs of the project's earlier graph (graph.EarlierJobs: a sweepfile
edited since its graph was cached), a job of a rule on the fast paths (a
command of parameters, {input} of ONE upstream rule, or a python: rule whose
inputs are upstream rules and files of fixed paths) whose render_key is
the rule's key then takes its pset hash and command from the earlier job
whose pset has the same values (of the same types; for python:, whose
stand-in command holds the pset as JSON, in the same order too) and, with
{input}, whose upstream jobs had the same hashes in the same order: exactly
what rendering it would give, without pset_hash() and the command text being made again
(adding 10 psets to a 100k study renders 21 jobs). Anything else is
rendered as before. The psets at their old places are checked and taken a
column at a time (_Again.bulk), those after the first that is not one by one.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import islice, repeat
from math import copysign
from operator import eq, is_, itemgetter
from pathlib import Path

from sweepc.errors import Diagnostic, Span, did_you_mean, listing
from sweepc.hashing import pset_hash
from sweepc.lang import sweeps as alg
from sweepc.lang import syntax as s
from sweepc.lang.evaluate import Swept
from sweepc.lang.graph import INPUT_LIST_NAME, BuildGraph, EarlierJobs, Job, Resources, RuleSpec, Sweep
from sweepc.lang.join import Joined, Rule
from sweepc.lang.names import Names
from sweepc.lang.placeholders import Placeholder, Template, parse_template
from sweepc.lang.problems import Bail, Problems
from sweepc.lang.resources import format_time, resource_value
from sweepc.lang.sweeps import Pset, keys_of
from sweepc.values import Scalar, breaks_lines, shell_quote, shell_str, values_json

# placeholder roots that are not parameters
_SPECIAL = frozenset({"input", "output", "pset", "resources", "root"})
_NO_SOFT: frozenset[int] = frozenset()  # = Job's default
# A single argument to exec() may not exceed this (Linux MAX_ARG_STRLEN).
MAX_COMMAND = 128 * 1024 - 1024


@dataclass(frozen=True, slots=True)
class Rendered:
    graph: BuildGraph | None  # None when a job could not be made (see diagnostics)
    diagnostics: tuple[Diagnostic, ...]


def render(module: s.Module, names: Names, swept: Swept, joined: Joined, root: Path, sweepfile: Path,
           earlier: EarlierJobs | None = None) -> Rendered:
    """Make every job of every rule; stop after the first rule that fails.
    earlier: an earlier graph's jobs, to take hashes and commands from (see
    the module's docstring)."""
    p = Problems(module)
    hashes = _Hashes()
    workdir = names.workdir
    up_to_root = "../../../" + ("" if os.path.isabs(workdir) else "../" * len(Path(workdir).parts))
    root_rel = up_to_root.rstrip("/") if not os.path.isabs(workdir) else str(root)
    rules = {r.name: r for r in joined.rules}
    jobs: list[Job] = []
    specs: list[RuleSpec] = []
    prior = _Prior(earlier) if earlier is not None and earlier.params else None
    for r in joined.rules:
        first = joined.first[r.name]
        try:
            renderer = _Renderer(p, hashes, r, rules, jobs, root_rel, workdir)
        except Bail:
            return Rendered(None, tuple(p.diags))
        again = prior.again(renderer) if prior is not None else None
        if again is None:
            for seq, (inst, matches) in enumerate(zip(r.instances, joined.matches[r.name])):
                jobs.append(renderer.job(len(jobs), seq, inst, matches))
        else:
            again.run(r.instances, joined.matches[r.name])
        if renderer.failed:
            return Rendered(None, tuple(p.diags))
        specs.append(
            RuleSpec(
                name=r.name, span=r.span, over=r.over, by=r.by, keys=r.keys, inputs=r.inputs, outputs=r.outputs,
                results=r.results, shell=r.shell.text, restart=r.restart.text if r.restart else None,
                retries=r.retries, local=r.local, first_job=first, n_jobs=len(r.instances),
                python=r.python, render_key=renderer.render_key,
            )
        )
    sweeps = {
        n: Sweep(n, ps, tuple(hashes.of(x) for x in ps), keys_of(ps)) for n, ps in swept.sweeps.items() if ps is not None
    }
    graph = BuildGraph(
        root=root,
        sweepfile=sweepfile,
        source=module.source,
        workdir=workdir,
        params={k: v for k, v in names.values.items() if v is not None},
        sweeps=sweeps,
        rules=tuple(specs),
        jobs=tuple(jobs),
        backends=names.backends,
        rule_index={r.name: i for i, r in enumerate(specs)},
        sample_rules=frozenset(r for reads in swept.over_reads.values() for r in reads),
        pending=dict(swept.pending),
        unread=dict(swept.unread),
        indexes=swept.indexes,
    )
    return Rendered(graph, ())


class _Hashes:
    """pset_hash, once per pset object: rules over one sweep share psets."""

    def __init__(self) -> None:
        self.hashes: dict[int, str] = {}
        self.keep: list[Pset] = []

    def of(self, p: Pset) -> str:
        h = self.hashes.get(id(p))
        if h is None:
            h = self.hashes[id(p)] = pset_hash(p)
            self.keep.append(p)  # keeps id(p) from being reused while we cache it
        return h

    def put(self, p: Pset, h: str) -> None:
        """p's hash is h (taken from an earlier graph's job of the same pset)."""
        if id(p) not in self.hashes:
            self.hashes[id(p)] = h
            self.keep.append(p)


class _Renderer:
    """Makes the jobs of one rule."""

    def __init__(self, p: Problems, hashes: _Hashes, r: Rule, rules: Mapping[str, Rule], jobs: list[Job], root_rel: str, workdir: str) -> None:
        self.p, self.hashes, self.r, self.jobs, self.root_rel, self.workdir = p, hashes, r, jobs, root_rel, workdir
        self.failed = False
        self.python_around: tuple[str, str] | None = None  # python_command's text before and after the pset
        self.output_text = {o.name: shell_path(o.path) for o in r.outputs}
        self.all_outputs = " ".join(shell_path(o.path) for o in r.outputs)
        self.upstream_outputs = {inp.rule: [o.path for o in rules[inp.rule].outputs] for inp in r.inputs if inp.rule}
        self.static_resources: dict[str, int | None] = {}
        self.bad_resources: set[str] = set()  # reported once, not once per pset
        for name, (expr, how) in r.resources.items():
            if how is None:
                assert isinstance(expr, (s.Num, s.Str))
                self.static_resources[name] = resource_value(p, name, expr.value, expr.span, None)
        self.constant_resources: Resources | None = None
        if all(how is None for _, how in r.resources.values()):
            self.constant_resources = self.resources({})
        self.source_templates = {inp.path: parse_template(inp.path) for inp in r.inputs if inp.path is not None}
        # a source input path with no placeholder is the same for every job
        # (a python: rule's module): written out once
        self.constant_sources = {
            path: os.path.normpath(_fill(t, {})) for path, t in self.source_templates.items() if not t.placeholders
        }
        self.reported: set[str] = set()
        # the command templates with what is the same for every job written out once
        self.shell_parts = self.folded(r.shell)
        self.restart_parts = self.folded(r.restart) if r.restart is not None else None
        # only parameters left to fill in: no per-job context needed
        placeholders = [part for part in (*self.shell_parts, *(self.restart_parts or ())) if not isinstance(part, str)]
        # {input} or {input.NAME} in a command: the jobs need their input paths
        self.needs_paths = any(ph.root == "input" for ph in placeholders)
        self.params_only = all(
            isinstance(part, str) or (part.root in r.keys and part.root not in _SPECIAL and part.attr is None) for part in self.shell_parts
        )
        # Jobs made from the pset alone: only upstream rules as inputs (no source
        # files, no done()), constant resources, no restart:, a command of
        # parameters only (the usual per-pset rule; job() has a fast path)
        self.plain = (
            self.params_only and r.python is None and r.restart is None and self.constant_resources is not None
            and all(inp.rule is not None and not inp.only_done for inp in r.inputs)
        )
        self.plain_resources = self.constant_resources or Resources()
        # A python: rule whose jobs are made from the pset alone too: its
        # stand-in command is the pset (as JSON, in its order) and hash, its
        # sources (the module, other files) the same paths for every job
        self.python_plain = (
            r.python is not None and r.restart is None and self.constant_resources is not None
            and all((inp.rule is not None and not inp.only_done) or (inp.path is not None and inp.path in self.constant_sources)
                    for inp in r.inputs)
        )
        self.python_sources: tuple[str, ...] = tuple(
            self.constant_sources[inp.path] for inp in r.inputs if inp.rule is None and inp.path is not None
        ) if self.python_plain else ()
        # The same, but with {input} or {input.NAME} in the command (the usual
        # rule that reads its upstream jobs' outputs): job() renders it without
        # a _Ctx (the same text, ctx.render's)
        self.with_inputs = (
            not self.plain and r.python is None and r.restart is None and self.constant_resources is not None
            and all(inp.rule is not None and not inp.only_done for inp in r.inputs)
            and all(
                isinstance(part, str) or (part.root == "input" and part.attr != "list")
                or (part.root in r.keys and part.root not in _SPECIAL and part.attr is None)
                for part in self.shell_parts
            )
        )
        # What decides a job's command besides its pset (and, with {input}, the
        # hashes of its upstream jobs), for a rule whose jobs an earlier graph's
        # can stand for (_Prior): the command with its constants written out
        # (outputs, {root}, resources), the pset's keys, its one input.
        self.render_key = ""
        if self.python_plain:
            assert r.python is not None
            self.render_key = repr((
                "python", r.name, self.root_rel, r.python, r.keys,
                tuple((inp.name, inp.rule, inp.path) for inp in r.inputs),
                self.python_sources, tuple(self.plain_resources),
            ))
        elif self.plain or (self.with_inputs and len(r.inputs) == 1):
            self.render_key = repr((
                "plain" if self.plain else "inputs",
                tuple(part if isinstance(part, str) else (part.root, part.attr) for part in self.shell_parts),
                r.keys,
                tuple((inp.name, inp.rule) for inp in r.inputs),
                tuple((u, tuple(outs)) for u, outs in self.upstream_outputs.items()),
                tuple(self.plain_resources),
            ))

    def folded(self, t: Template) -> tuple[str | Placeholder, ...]:
        out: list[str | Placeholder] = []
        for part in t.parts:
            if not isinstance(part, str):
                c = self.constant(part)
                if c is None:
                    out.append(part)
                    continue
                part = c
            if out and isinstance(out[-1], str):
                out[-1] += part
            else:
                out.append(part)
        return tuple(out)

    def constant(self, ph: Placeholder) -> str | None:
        """The text of a placeholder that is the same for every job of the rule (as _Ctx.value gives it)."""
        root, attr = ph.root, ph.attr
        if root == "input":
            return INPUT_LIST_NAME if attr == "list" else None
        if root == "output":
            return self.all_outputs if attr is None else self.output_text[attr]
        if root == "root":
            return shell_path(self.root_rel)
        if root == "resources" and self.constant_resources is not None:
            return resource_text(self.constant_resources, attr)
        return None

    def fail_once(self, key: str, message: str, span: Span, hint: str) -> None:
        if key not in self.reported:
            self.reported.add(key)
            self.p.error(message, span, hint)
        self.failed = True

    def resources(self, inst: Mapping[str, Scalar]) -> Resources:
        if self.constant_resources is not None:
            return self.constant_resources
        vals = dict(self.static_resources)
        for name, (expr, how) in self.r.resources.items():
            if how is None or name in self.bad_resources:
                continue
            raw: Scalar = inst[how] if isinstance(how, str) else _fill(how, inst)
            try:
                vals[name] = resource_value(self.p, name, raw, expr.span, inst)
            except Bail:
                self.failed = True
                self.bad_resources.add(name)
        return Resources(
            cpus=vals.get("cpus") or 1, mem_mb=vals.get("mem"), time_s=vals.get("time"),
            nodes=vals.get("nodes") or 1, tasks=vals.get("tasks") or 1, gpus=vals.get("gpus") or 0,
            pack=vals.get("pack"),
        )

    def python_command(self, inst: Pset, h: str) -> str:
        """A python: job as a shell command: what a backend without a Python
        worker pool runs (one interpreter per pset), and what --dry-run shows.
        Its text is the job's command hash: module path, function, pset."""
        around = self.python_around
        if around is None:  # what comes before and after the pset, quoted once for the rule
            assert self.r.python is not None
            path, func = self.r.python
            around = self.python_around = (
                " ".join(shlex.quote(a) for a in ("python3", "-m", "sweepc.backends.pyjob", f"{self.root_rel}/{path}", func)) + " ",
                " " + shlex.quote(self.r.name) + " ",
            )
        # shlex.quote's text, written out: the pset's JSON always needs quoting
        # (it holds "{"); its hash (hex digits) never does
        return around[0] + "'" + values_json(inst).replace("'", "'\"'\"'") + "'" + around[1] + h

    def too_long(self, command: str, inst: Pset) -> None:
        if len(command.encode()) <= MAX_COMMAND:
            return
        r = self.r
        # point at what makes it long: the first {input} (or {input.NAME})
        big = next((ph for ph in r.shell.placeholders if ph.root == "input" and ph.attr != "list"), None)
        node = self.r.shell_node
        pset = alg.describe(inst) if inst else ""
        if len(pset) > 200:  # (the values that make it long: not all of them again)
            pset = pset[:200] + "..."
        self.fail_once(
            "long",
            f"the command of rule '{r.name}' is {len(command.encode()) // 1024} KiB long"
            + (f" for pset {pset}" if inst else "")
            + "; the limit is 127 KiB",
            self.p.span_in(node, big.text, big.offset) if big is not None else node.span,
            "use {input.list}, the path of a file that names one input per line, instead of " + big.text if big is not None
            # no {input}: parameter values (or the command's own text) make it long
            else "read long values from the job's pset.json ($SWEEPC_PSET_JSON) or write them with a template, "
                 "not into the command",
        )

    def job(self, jid: int, seq: int, inst: Pset, matches: tuple[tuple[int, ...], ...]) -> Job:
        r = self.r
        h = self.hashes.of(inst)
        if self.plain:
            deps = [d for ids in matches for d in ids]
            command = "".join([part if isinstance(part, str) else shell_quote(inst[part.root]) for part in self.shell_parts])
            if len(command) * 4 > MAX_COMMAND:
                self.too_long(command, inst)
            return Job(jid, r.name, h, seq, inst, tuple(deps), (), command, None, self.plain_resources)
        if self.with_inputs:
            return self.job_with_inputs(jid, seq, inst, matches, h)
        if self.python_plain:  # what the general case below makes of it, in short
            command = self.python_command(inst, h)
            if len(command) * 4 > MAX_COMMAND:
                self.too_long(command, inst)
            return Job(jid, r.name, h, seq, inst, tuple([d for ids in matches for d in ids]), self.python_sources, command, None,
                       self.plain_resources)
        reldir = f"{r.name}/{h[:2]}/{h}"
        deps = []
        soft: list[int] = []
        inputs_by_name: dict[str, list[str]] = {}
        all_inputs: list[str] = []
        sources: list[str] = []
        for inp, ids in zip(r.inputs, matches):
            if inp.rule is not None:
                deps.extend(ids)
                if inp.only_done:
                    soft.extend(ids)
                if not self.needs_paths:
                    continue
                outs = self.upstream_outputs[inp.rule]
                jobs = self.jobs
                paths = [f"../../../{jobs[i].reldir}/{o}" for i in ids for o in outs]
            else:
                assert inp.path is not None
                rel = self.constant_sources.get(inp.path)
                if rel is None:
                    t = self.source_templates[inp.path]
                    missing = [ph.root for ph in t.placeholders if ph.root not in inst or ph.attr is not None]
                    if missing:
                        self.fail_once(
                            "src:" + inp.path,
                            f"unknown parameter '{missing[0]}' in input path",
                            inp.span,
                            did_you_mean(missing[0], r.keys) or f"the rule's psets have: {listing(r.keys)}",
                        )
                        continue
                    rel = os.path.normpath(_fill(t, inst))
                    if breaks_lines(rel):
                        self.fail_once(
                            "ctl:" + inp.path,
                            f"the input path {inp.path!r} makes a path with a line break"
                            + (f" for pset {alg.describe(inst)}" if inst else ""),
                            inp.span,
                            "the job's input list names one path a line; use parameter values without line breaks in paths",
                        )
                        continue
                sources.append(rel)
                paths = [f"{self.root_rel}/{rel}"]
            if inp.name is not None:
                inputs_by_name.setdefault(inp.name, []).extend(paths)
            all_inputs.extend(paths)
        res = self.resources(inst)
        ctx: _Ctx | None = None
        if r.python is not None:
            command = self.python_command(inst, h)
        elif self.params_only:
            command = "".join([part if isinstance(part, str) else shell_quote(inst[part.root]) for part in self.shell_parts])
        else:
            ctx = _Ctx(inst, h, seq, reldir, all_inputs, inputs_by_name, res, self)
            command = ctx.render(self.shell_parts)
        restart = None
        if self.restart_parts is not None:
            ctx = ctx or _Ctx(inst, h, seq, reldir, all_inputs, inputs_by_name, res, self)
            restart = ctx.render(self.restart_parts)
        if len(command) * 4 > MAX_COMMAND:
            self.too_long(command, inst)
        if soft:  # a job named by done() and also by a plain input is a plain (hard) input
            soft_set = frozenset(soft) - {d for inp, ids in zip(r.inputs, matches) if inp.rule is not None and not inp.only_done for d in ids}
            return Job(jid, r.name, h, seq, inst, tuple(deps), tuple(sources), command, restart, res, soft_set)
        return Job(jid, r.name, h, seq, inst, tuple(deps), tuple(sources), command, restart, res)

    def job_with_inputs(self, jid: int, seq: int, inst: Pset, matches: tuple[tuple[int, ...], ...], h: str) -> Job:
        """job() for a rule of self.with_inputs: the same Job, made faster."""
        r = self.r
        jobs = self.jobs
        deps: list[int] = []
        all_inputs: list[str] = []
        by_name: dict[str, list[str]] = {}
        for inp, ids in zip(r.inputs, matches):
            deps.extend(ids)
            outs = self.upstream_outputs[inp.rule]  # type: ignore[index]
            paths = []
            for i in ids:
                dj = jobs[i]
                dh = dj.hash
                base = f"../../../{dj.rule}/{dh[:2]}/{dh}/"
                paths.extend([base + o for o in outs])
            if inp.name is not None:
                by_name.setdefault(inp.name, []).extend(paths)
            all_inputs.extend(paths)
        out: list[str] = []
        for part in self.shell_parts:
            if isinstance(part, str):
                out.append(part)
            elif part.root == "input":
                out.append(" ".join([shell_path(x) for x in (all_inputs if part.attr is None else by_name.get(part.attr, ()))]))
            else:
                out.append(shell_quote(inst[part.root]))
        command = "".join(out)
        if len(command) * 4 > MAX_COMMAND:
            self.too_long(command, inst)
        return Job(jid, r.name, h, seq, inst, tuple(deps), (), command, None, self.plain_resources)


class _Ctx:
    __slots__ = ("all_inputs", "by_name", "h", "inst", "rd", "reldir", "res", "seq")

    def __init__(self, inst: Pset, h: str, seq: int, reldir: str, all_inputs: list[str], by_name: dict[str, list[str]], res: Resources, rd: _Renderer) -> None:
        self.inst, self.h, self.seq, self.reldir = inst, h, seq, reldir
        self.all_inputs, self.by_name, self.res, self.rd = all_inputs, by_name, res, rd

    def render(self, parts: tuple[str | Placeholder, ...]) -> str:
        out: list[str] = []
        for part in parts:
            if isinstance(part, str):
                out.append(part)
            else:
                out.append(self.value(part))
        return "".join(out)

    def value(self, ph: Placeholder) -> str:
        root, attr = ph.root, ph.attr
        if root == "input":
            if attr is None:
                return " ".join(shell_path(p) for p in self.all_inputs)
            if attr == "list":
                return INPUT_LIST_NAME
            return " ".join(shell_path(p) for p in self.by_name.get(attr, ()))
        if root == "output":
            return self.rd.all_outputs if attr is None else self.rd.output_text[attr]
        if root == "pset":
            if attr == "hash":
                return self.h
            if attr == "seq":
                return str(self.seq)
            return shell_path(f"{self.rd.workdir}/{self.reldir}")
        if root == "resources":
            return resource_text(self.res, attr)
        if root == "root":
            return shell_path(self.rd.root_rel)
        return shell_quote(self.inst[root])


def resource_text(res: Resources, attr: str | None) -> str:
    """What {resources.ATTR} becomes in a command."""
    v = {"cpus": res.cpus, "mem": res.mem_mb, "time": res.time_s, "nodes": res.nodes, "tasks": res.tasks, "gpus": res.gpus, "pack": res.pack}[attr or ""]
    if attr == "time" and v is not None:
        return format_time(v)
    return "" if v is None else str(v)


def shell_path(p: str) -> str:
    return shlex.quote(p)


def _fill(t: Template, inst: Mapping[str, Scalar]) -> str:
    return "".join(p if isinstance(p, str) else shell_str(inst[p.root]) for p in t.parts)


# a rule takes fewer of its earlier jobs than this one by one (_Again.bulk)
_BULK_MIN = 64


def _agree(same: Iterable[bool], n: int) -> int:
    """How many of the first n are true before the first false."""
    flags = list(islice(same, n))
    try:
        return flags.index(False)
    except ValueError:
        return len(flags)


class _Prior:
    """The jobs of an earlier graph (EarlierJobs), for render(): where each
    rule's jobs were (rule by rule there too)."""

    def __init__(self, e: EarlierJobs) -> None:
        self.e = e
        self.span = e.spans(e.render_keys)

    def again(self, rd: _Renderer) -> _Again | None:
        """For a rule whose earlier jobs were made from the same texts, else None."""
        name = rd.r.name
        if not rd.render_key or self.e.render_keys.get(name) != rd.render_key or name not in self.span:
            return None
        return _Again(self.e, rd, *self.span[name])


class _Again:
    """The jobs of one rule, taken from the earlier graph's where they are the same."""

    def __init__(self, e: EarlierJobs, rd: _Renderer, first: int, end: int) -> None:
        self.e, self.rd, self.first, self.end = e, rd, first, end
        # a python: rule's jobs are made of the pset alone, as a plain rule's
        self.python = rd.python_plain
        self.name, self.plain, self.resources = rd.r.name, rd.plain or rd.python_plain, rd.plain_resources
        self.sources = rd.python_sources  # () but for a python: rule
        self.by_values: dict[tuple[tuple[str, type, Scalar], ...], int] | None = None
        self.misses = 64  # looked for by values only after this many psets were not where they were

    def same(self, o: int, inst: Pset) -> bool:
        """Whether the earlier job o's pset has inst's values, of the same types
        (1, 1.0 and true are equal in Python, not in a command; so are 0.0 and
        -0.0, which are one pset hash but two command texts)."""
        op = self.e.params[o]
        return op == inst and all(
            type(v) is type(inst[k]) and (type(v) is not float or v != 0.0 or str(v) == str(inst[k])) for k, v in op.items()
        ) and (not self.python or list(op) == list(inst))

    def find(self, inst: Pset) -> int | None:
        """The earlier job of these values when it is not at the same place (a value removed or inserted)."""
        if self.by_values is None:
            self.misses -= 1
            if self.misses >= 0:
                return None
            params = self.e.params
            self.by_values = {tuple([(k, type(v), v) for k, v in params[o].items()]): o for o in range(self.first, self.end)}
        o = self.by_values.get(tuple([(k, type(v), v) for k, v in inst.items()]))
        return o if o is not None and self.same(o, inst) else None

    def run(self, instances: Sequence[Pset], all_matches: Sequence[tuple[tuple[int, ...], ...]]) -> None:
        """Append the rule's jobs: those _Renderer.job() would make, taken from
        the earlier ones where they are the same (job() below, written out for
        the usual case: the earlier job at the same place, one input job or none)."""
        e, rd = self.e, self.rd
        jobs, make, memo, keep = rd.jobs, rd.job, rd.hashes.hashes, rd.hashes.keep
        params, hashes, commands, e_deps = e.params, e.hash, e.command, e.deps
        first, end, name, plain, res = self.first, self.end, self.name, self.plain, self.resources
        sources, python = self.sources, self.python
        new = tuple.__new__
        base = len(jobs)  # each turn appends one job: the job id is base + seq
        no_inputs = not rd.r.inputs
        done = self.bulk(instances, all_matches)
        for seq, (inst, matches) in enumerate(islice(zip(instances, all_matches), done, None), done):
            o = first + seq
            if o < end:
                op = params[o]
                same = op == inst
                if same:  # the same values; of the same types, zeros of the same sign? (same() written out)
                    for k, v in op.items():
                        w = inst[k]
                        if type(v) is not type(w) or (type(v) is float and v == 0.0 and str(v) != str(w)):
                            same = False
                            break
                    if python and same and list(op) != list(inst):
                        same = False  # the stand-in command's JSON has the pset's order
                if same:
                    if no_inputs:
                        deps: tuple[int, ...] = ()
                    elif plain:
                        deps = tuple([d for ids in matches for d in ids])
                    else:
                        deps = matches[0]
                        before = e_deps[o]
                        if not (len(deps) == 1 == len(before) and jobs[deps[0]].hash == hashes[before[0]]):
                            jobs.append(self.job(base + seq, seq, inst, matches) or make(base + seq, seq, inst, matches))
                            continue
                    h = hashes[o]
                    if id(inst) not in memo:
                        memo[id(inst)] = h
                        keep.append(inst)
                    jobs.append(new(Job, (base + seq, name, h, seq, inst, deps, sources, commands[o], None, res, _NO_SOFT)))
                    continue
            jobs.append(self.job(base + seq, seq, inst, matches) or make(base + seq, seq, inst, matches))

    def bulk(self, instances: Sequence[Pset], all_matches: Sequence[tuple[tuple[int, ...], ...]]) -> int:
        """Append the first k jobs of the rule, k as many as run() would take
        from the earlier jobs at the same places one by one, made column by
        column (every check a comparison of whole columns, in C: at 100k psets
        5x faster than the loop); returns k (0: too few, or psets of mixed
        keys or value types the columns do not compare: run() does it all)."""
        e, rd = self.e, self.rd
        first = self.first
        n = min(len(instances), self.end - first)
        # the columns of upstream rules (a python: rule's sources are columns of no job)
        ups = [c for c, inp in enumerate(rd.r.inputs) if inp.rule is not None]
        if n < _BULK_MIN or len(ups) > 1:
            return 0
        olds, news = e.params[first:first + n], tuple(instances[:n])
        # the same values (dict ==: 1, 1.0 and true are equal here) ...
        k = _agree(map(eq, olds, news), n)
        if k < _BULK_MIN:
            return 0
        olds, news = olds[:k], news[:k]
        keys = tuple(news[0])
        try:
            if list(map(len, news)).count(len(keys)) != k:
                return 0  # psets of other keys (equal dicts: the earlier ones too)
            for key in keys:
                get = itemgetter(key)
                was, now = list(map(get, olds)), list(map(get, news))
                # ... of the same types ...
                k = _agree(map(is_, map(type, was), map(type, now)), k)
                if float in set(map(type, now[:k])):
                    # ... zeros of the same sign (0.0 and -0.0: one pset hash, two texts)
                    one = repeat(1.0, k)
                    k = _agree(map(eq, map(copysign, one, was), map(copysign, one, now)), k)
            if self.python:  # ... and, in a python: rule's stand-in command, in the same order
                k = _agree(map(eq, map(tuple, olds[:k]), map(tuple, news[:k])), k)
        except (KeyError, TypeError):  # a key some pset has not; a value copysign() takes not
            return 0
        matches = all_matches[:k]
        if not ups:
            deps: Iterable[tuple[int, ...]] = repeat((), k)
        else:
            # the one input's job ids: what job() makes deps of (a plain command is made of the pset alone)
            ids = list(map(itemgetter(ups[0]), matches))
            deps = ids
            if not self.plain:
                # {input}: one upstream job each, now and then, of the same hash
                before = e.deps[first:first + k]
                k = min(_agree(map(eq, map(len, ids), repeat(1, k)), k), _agree(map(eq, map(len, before), repeat(1, k)), k))
                jobs, hashes = rd.jobs, e.hash
                k = _agree(map(eq, map(itemgetter(2), map(jobs.__getitem__, map(itemgetter(0), ids[:k]))),
                               map(hashes.__getitem__, map(itemgetter(0), before[:k]))), k)
                deps = ids[:k]
        if k < _BULK_MIN:
            return 0
        news = news[:k]
        h = e.hash[first:first + k]
        # (a hash the memo had for one of them is the same: the pset's)
        rd.hashes.hashes.update(zip(map(id, news), h))
        rd.hashes.keep.extend(news)
        base = len(rd.jobs)
        rd.jobs.extend(map(partial(tuple.__new__, Job), zip(
            range(base, base + k), repeat(self.name, k), h, range(k), news, deps, repeat(self.sources, k), e.command[first:first + k],
            repeat(None, k), repeat(self.resources, k), repeat(_NO_SOFT, k))))
        return k

    def job(self, jid: int, seq: int, inst: Pset, matches: tuple[tuple[int, ...], ...]) -> Job | None:
        """The job _Renderer.job() would make, or None when it must be rendered."""
        o = self.first + seq
        if o >= self.end or not self.same(o, inst):
            found = self.find(inst)
            if found is None:
                return None
            o = found
        e = self.e
        if self.plain:  # the command is made of the pset alone
            deps = tuple([d for ids in matches for d in ids])
        else:  # and of the paths of its one input's jobs: the same if their hashes are
            deps = tuple(matches[0])
            before = e.deps[o]
            if len(deps) != len(before):
                return None
            jobs, hashes = self.rd.jobs, e.hash
            if len(deps) == 1:
                if jobs[deps[0]].hash != hashes[before[0]]:
                    return None
            elif [jobs[d].hash for d in deps] != [hashes[b] for b in before]:
                return None
        h = e.hash[o]
        self.rd.hashes.put(inst, h)
        return Job(jid, self.name, h, seq, inst, deps, self.sources, e.command[o], None, self.resources)
