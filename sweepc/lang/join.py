"""Pass 3, join(): Names + Swept -> Joined (checked rules in run order, each job's upstream jobs).

Checks every rule's fields (inputs, outputs, command and restart templates,
resources, by), then the rule names its inputs use and the rule graph
(cycles), orders the rules upstream first, and joins each rule's psets to
its upstream rules' jobs on the parameter names they share. Job ids follow
from that order: a rule's jobs are numbered after all its upstream rules'.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import heapq

from sweepc.errors import Diagnostic, Span, did_you_mean, listing
from sweepc.lang import sweeps as alg
from sweepc.lang import syntax as s
from sweepc.lang.evaluate import Swept
from sweepc.lang.graph import PYTHON_RESULT_NAME, RESERVED_NAMES, InputSpec, OutputSpec
from sweepc.lang.names import Names
from sweepc.lang.placeholders import Template, TemplateError, parse_template
from sweepc.lang.problems import Bail, Problems
from sweepc.lang.resources import RESOURCE_NAMES, resource_value
from sweepc.lang.sweeps import Psets, keys_of
from sweepc.values import Scalar, breaks_lines, join_key, not_expanded

RULE_FIELDS = ("input", "output", "shell", "python", "restart", "resources", "retries", "results", "local", "templates")
PSET_ATTRS = ("hash", "dir", "seq")

# A resource: its expression, and how to get it per pset: None (a constant),
# a parameter name, or a template over parameters.
ResourceHow = tuple[s.Expr, Template | str | None]
# Upstream job ids per pset of a rule, per input (() for a source input).
Matches = tuple[tuple[tuple[int, ...], ...], ...]


@dataclass(frozen=True, slots=True, eq=False)
class Rule:
    """A checked rule, before its jobs are made.

    eq=False: rules compare (and hash) by identity."""

    name: str
    span: Span
    over: str | None
    by: tuple[str, ...]
    keys: tuple[str, ...]
    instances: Psets
    inputs: tuple[InputSpec, ...]
    outputs: tuple[OutputSpec, ...]
    results: tuple[str, ...]
    shell: Template
    restart: Template | None
    retries: int
    local: bool
    resources: Mapping[str, ResourceHow]
    input_spans: Mapping[str, Span]
    shell_node: s.Str
    python: tuple[str, str] | None = None  # (module path relative to the project, function name)


@dataclass(frozen=True, slots=True)
class Joined:
    rules: tuple[Rule, ...]  # in run order: upstream rules first
    first: Mapping[str, int]  # the job id of each rule's first job
    matches: Mapping[str, Matches]  # per rule
    diagnostics: tuple[Diagnostic, ...]


def join(module: s.Module, names: Names, swept: Swept, root: Path | None = None) -> Joined:
    """Check the rules, order them, and find each job's upstream jobs.

    root: the project folder, where `python:` modules are looked up (default:
    the sweepfile's folder)."""
    j = _Joiner(Problems(module), names, swept, root or Path(module.filename).resolve().parent)
    checked: dict[str, Rule] = {}
    for name, rd in names.rule_defs.items():
        r = j.p.guard(partial(j.check_rule, rd))
        if isinstance(r, Rule):
            checked[name] = r
    # rule references need every rule's name, so they are checked after
    for name, inputs in j.input_specs.items():
        for inp in inputs:
            if inp.rule is not None and inp.rule not in names.rule_defs:
                hint = did_you_mean(inp.rule, names.rule_defs)
                if not hint and (inp.rule in names.param_defs or inp.rule in names.sweep_defs):
                    hint = "inputs name rules or files; parameters are used as {" + inp.rule + "} in the command"
                j.p.error(f"unknown rule '{inp.rule}'", inp.span, hint or "an input is a rule name or a quoted file path")
                checked.pop(name, None)
    order = j.rule_order(checked)
    if j.p.diags or names.diagnostics or swept.diagnostics:
        return Joined((), {}, {}, tuple(j.p.diags))
    # Rules over samples not built yet have no jobs; nor has what needs them.
    pending = {n for n, o in swept.over.items() if o is not None and o.keys is not None}
    for n in order:
        r = checked[n]
        if n in pending or any(i.rule in pending for i in r.inputs):
            pending.add(n)
            checked[n] = replace(r, instances=())
    rules = tuple(checked[n] for n in order)
    first: dict[str, int] = {}
    matches: dict[str, Matches] = {}
    n_jobs = 0
    for r in rules:
        first[r.name] = n_jobs
        n_jobs += len(r.instances)
        matches[r.name] = j.match(r, checked, first)
    return Joined(rules, first, matches, tuple(j.p.diags))


class _Joiner:
    def __init__(self, p: Problems, names: Names, swept: Swept, root: Path) -> None:
        self.p = p
        self.root = root
        self.n = names
        self.swept = swept
        self.input_specs: dict[str, tuple[InputSpec, ...]] = {}

    def match(self, r: Rule, rules: Mapping[str, Rule], first: Mapping[str, int]) -> Matches:
        # column by column (one input at a time): the hot loop at 100k psets
        columns: list[Sequence[tuple[int, ...]]] = []
        reported: set[str] = set()  # one message per upstream rule
        for inp in r.inputs:
            if inp.rule is None:
                columns.append(((),) * len(r.instances))
                continue
            up = rules[inp.rule]
            ids = _one_to_one(r, up, first[inp.rule])
            if ids is not None:
                columns.append(ids)
                continue
            m = _Matcher(up, first[inp.rule], r.keys)
            ids = [m.match(inst) for inst in r.instances]
            if not all(ids) and inp.rule not in reported:
                reported.add(inp.rule)
                inst = r.instances[ids.index(())]
                self.p.error(
                    f"rule '{r.name}' has a pset with no '{inp.rule}' job to take input from: {alg.describe(inst) or '(no parameters)'}",
                    inp.span,
                    f"'{inp.rule}' jobs are matched on the parameters both rules have ({', '.join(m.shared_for(inst)) or 'none'})",
                )
            columns.append(ids)
        if not columns:
            return ((),) * len(r.instances)
        return tuple(zip(*columns))

    def check_rule(self, rd: s.RuleDef) -> Rule:
        fields: dict[str, s.Field] = {}
        ok = True
        for f in rd.fields:
            if f.name not in RULE_FIELDS:
                self.p.error(f"unknown rule field '{f.name}'", f.name_span, did_you_mean(f.name, RULE_FIELDS) or "rule fields are: " + ", ".join(RULE_FIELDS))
                ok = False
            elif f.name in fields:
                self.p.error(f"duplicate field '{f.name}' in rule '{rd.name}'", f.name_span, "give each field once; list several values with commas")
                ok = False
            else:
                fields[f.name] = f
        # inputs do not depend on the psets: check them (and, later, the rule
        # names they use) even when the rest of the rule cannot be checked
        inputs = self.p.guard(lambda: self.rule_inputs(fields.get("input")))
        if isinstance(inputs, tuple):
            self.input_specs[rd.name] = inputs
        python = None
        if "python" in fields:
            if "shell" in fields:
                self.p.bail(
                    f"rule '{rd.name}' has both shell: and python:",
                    fields["python"].name_span,
                    "a rule runs either a command (shell:) or a Python function (python:); keep one",
                )
            if "restart" in fields:
                self.p.bail("restart: goes with shell:, not python:", fields["restart"].name_span,
                            "a python: rule's retries call the function again; remove restart:")
            python = self.python_target(fields["python"])
            if isinstance(inputs, tuple):  # the module is a source input: editing it reruns the jobs
                inputs = (InputSpec(None, None, python[0], python[2]), *inputs)
                self.input_specs[rd.name] = inputs
        elif "shell" not in fields:
            self.p.bail(f"rule '{rd.name}' has no shell: command", rd.name_span, 'add a line such as: shell: "echo {a} > {output}"')
        over = self.swept.over.get(rd.name)
        if over is None:
            raise Bail  # its own error is already reported
        psets, over_text = over.psets, over.text
        keys = over.keys if over.keys is not None else keys_of(psets)
        by = tuple(b.id for b in rd.by)
        if by:
            if rd.over is None:
                self.p.bail("'by' needs 'over'", rd.by[0].span, f"write: rule {rd.name} over SWEEP by {by[0]}:")
            for b in rd.by:
                if b.id not in keys:
                    self.p.bail(
                        f"'by' names parameter '{b.id}', which is not in {over_text}",
                        b.span,
                        did_you_mean(b.id, keys) or f"{over_text} has: {listing(keys)}",
                    )
            instances = alg.project(psets, by)
        else:
            instances = psets
        inst_keys = by if by else keys
        outputs = self.p.guard(lambda: self.rule_outputs(rd, fields.get("output"), fields.get("results"), python is not None))
        scalars = {n: self.p.guard(partial(self.field_scalar, fields.get(n), n)) for n in ("shell", "restart", "retries", "local")}
        if python is not None:
            scalars["shell"] = s.Str("", fields["python"].span)  # no command: the backend calls the function
        resources = self.p.guard(lambda: self.rule_resources(fields.get("resources"), inst_keys))
        if inputs is None or outputs is None or scalars["shell"] is None:
            raise Bail
        out_specs, results = outputs
        templates: dict[str, tuple[Template, s.Str]] = {}
        for tname in ("shell", "restart"):
            node = scalars[tname]
            if node is None:
                continue
            if not isinstance(node, s.Str):
                self.p.error(f"{tname}: needs a string", node.span, 'for example: shell: "echo {a} > {output}"')
                continue
            t = self.p.guard(partial(self.template, node, rd.name, inst_keys, inputs, out_specs))
            if isinstance(t, Template):
                templates[tname] = (t, node)
        retries = 0
        if scalars["retries"] is not None:
            rv = scalars["retries"]
            if not isinstance(rv, s.Num) or not isinstance(rv.value, int) or rv.value < 0:
                self.p.error("retries: needs a whole number of at least 0", rv.span, "for example: retries: 2")
            else:
                retries = rv.value
        local = False
        if scalars["local"] is not None:
            lv = scalars["local"]
            if not isinstance(lv, s.Bool):
                self.p.error("local: needs true or false", lv.span, "for example: local: true")
            else:
                local = lv.value
        # a bad resource or field does not hide mistakes in the command above
        if "shell" not in templates or not isinstance(resources, dict) or not ok:
            raise Bail
        return Rule(
            name=rd.name,
            span=rd.name_span,
            over=over_text if rd.over is not None else None,
            by=by,
            keys=inst_keys,
            instances=instances,
            inputs=inputs,
            outputs=out_specs,
            results=results,
            shell=templates["shell"][0],
            restart=templates["restart"][0] if "restart" in templates else None,
            retries=retries,
            local=local,
            resources=resources,
            input_spans={i.name or i.path or "": i.span for i in inputs},
            shell_node=templates["shell"][1],
            python=python[:2] if python is not None else None,
        )

    def field_scalar(self, f: s.Field | None, name: str) -> s.Expr | None:
        if f is None:
            return None
        if len(f.items) != 1 or f.items[0].name is not None:
            self.p.bail(f"{name}: takes one value", f.span, 'for example: shell: "echo {a} > {output}"' if name in ("shell", "restart") else f"for example: {name}: 1")
        return f.items[0].value

    def rule_inputs(self, f: s.Field | None) -> tuple[InputSpec, ...]:
        if f is None:
            return ()
        out: list[InputSpec] = []
        names: set[str] = set()
        for it in f.items:
            v = it.value
            if isinstance(v, s.Name):
                spec = InputSpec(it.name or v.id, v.id, None, v.span)
            elif isinstance(v, s.Call) and v.func == "done":
                if len(v.args) != 1 or not isinstance(v.args[0].value, s.Name) or v.args[0].name is not None:
                    self.p.bail("done() takes one rule name", v.span, "for example: input: done(sim)")
                arg = v.args[0].value
                spec = InputSpec(it.name or arg.id, arg.id, None, arg.span, only_done=True)
            elif isinstance(v, s.Str):
                path = v.value.strip()
                if not path or os.path.isabs(path):
                    self.p.bail("a source input is a path relative to the project folder", v.span, 'for example: input: "data/{a}.csv"')
                if breaks_lines(path):
                    self.p.bail("a source input path cannot hold a line break", v.span,
                                "the job's input list names one path a line; rename the file")
                try:
                    parse_template(path)
                except TemplateError as ex:
                    self.p.bail(ex.message.replace("command", "path"), v.span, ex.hint)
                spec = InputSpec(it.name, None, path, v.span)
            else:
                self.p.bail("an input is a rule name, done(RULE) or a quoted file path", v.span, 'for example: input: gen, "params.json"')
            if spec.name is not None:
                if spec.name in names:
                    self.p.bail(f"two inputs are named '{spec.name}'", it.name_span or v.span, "name them apart: input: first = gen, second = other")
                if spec.name == "list":
                    self.p.bail("an input cannot be named 'list'", it.name_span or v.span, "{input.list} is the file that names every input")
                names.add(spec.name)
            out.append(spec)
        return tuple(out)

    def python_target(self, f: s.Field) -> tuple[str, str, Span]:
        """python: "path/to/module.py:function" -> (normalised path, function, span of the string)."""
        example = 'for example: python: "model.py:run" (the file, a colon, the function)'
        if len(f.items) != 1 or f.items[0].name is not None or not isinstance(f.items[0].value, s.Str):
            self.p.bail("python: needs one string, \"FILE.py:FUNCTION\"", f.span, example)
        node = f.items[0].value
        text = node.value.strip()
        path, sep, func = text.rpartition(":")
        if sep and not path:  # python: ":run"
            self.p.bail(f"python: \"{text}\" names no module", node.span, f'write the file before the colon: python: "model.py{text}"')
        if not sep:
            self.p.bail(f"python: \"{text}\" names no function", node.span, f'add the function to call: python: "{text or "model.py"}:run"')
        module_end = text.find(".py:")
        if ":" in path and not path.endswith(".py") and module_end > 0:  # python: "m.py:run:x"
            path, func = text[:module_end + 3], text[module_end + 4:]
        if not func.isidentifier():
            self.p.bail(f"python: '{func}' is not a function name", node.span,
                        f'the function is one Python name after the colon: python: "{path}:{func.split(":")[0] or "run"}"' if ":" in func else example)
        norm = os.path.normpath(path)
        if os.path.isabs(path) or norm.startswith(".."):
            self.p.bail("a python: module is a path relative to the project folder", node.span, example)
        if "{" in path or "}" in path:
            self.p.bail("a python: module path cannot use placeholders", node.span, "every job calls the same function with its own parameters")
        if not norm.endswith(".py"):
            self.p.bail(f"python: '{path}' is not a .py file", node.span, example)
        full = self.root / norm
        try:
            code = full.read_bytes()
        except OSError:
            self.p.bail(f"python: module '{norm}' does not exist", node.span,
                        "paths are relative to the project folder (where the sweepfile is)" + not_expanded(norm))
        try:
            tree = ast.parse(code, filename=str(full))
        except (SyntaxError, ValueError) as ex:
            where = f" (line {ex.lineno})" if isinstance(ex, SyntaxError) and ex.lineno else ""
            self.p.bail(f"python: module '{norm}' does not parse{where}: {ex.msg if isinstance(ex, SyntaxError) else ex}", node.span,
                        f"fix {norm}; python3 -c 'import ast; ast.parse(open(\"{norm}\").read())' shows the error")
        defined = _top_level_names(tree)
        if func not in defined:
            funcs = [n for n, is_func in defined.items() if is_func]
            self.p.bail(f"python: module '{norm}' has no function '{func}'", node.span,
                        did_you_mean(func, funcs) or (f"functions defined there: {listing(funcs)}" if funcs else f"define it at the top level of {norm}: def {func}(pset): ..."))
        return norm, func, node.span

    def rule_outputs(self, rd: s.RuleDef, f: s.Field | None, rf: s.Field | None, python: bool = False) -> tuple[tuple[OutputSpec, ...], tuple[str, ...]]:
        outs: list[OutputSpec] = []
        for it in f.items if f else ():
            v, temp = it.value, False
            if isinstance(v, s.Call) and v.func == "temp":  # temp("big.dat"): removed once its readers are done
                if len(v.args) != 1 or v.args[0].name is not None or not isinstance(v.args[0].value, s.Str):
                    self.p.bail("temp() takes one quoted file name", v.span, 'for example: output: temp("big.dat")')
                v, temp = v.args[0].value, True
            if not isinstance(v, s.Str):
                self.p.bail("an output is a quoted file name", it.value.span, 'for example: output: "out.txt", or temp("big.dat") for one removed once its readers are done')
            outs.append(OutputSpec(it.name, self.job_path(v, "output"), v.span, temp))
        results: list[str] = []
        for it in rf.items if rf else ():
            if not isinstance(it.value, s.Str) or it.name is not None:
                self.p.bail("results: names a JSON file the job writes", it.value.span, 'for example: results: "result.json"')
            p = self.job_path(it.value, "results")
            if any(o.temp and o.path == p for o in outs):
                self.p.bail("a results file cannot be temp()", it.value.span, "results are read after the build; drop temp() from this output")
            results.append(p)
            if all(o.path != p for o in outs):
                outs.append(OutputSpec(None, p, it.value.span))  # results files are outputs too
        if python:  # the function's return value, written by the backend: a results file and an output
            results.append(PYTHON_RESULT_NAME)
            outs.append(OutputSpec(None, PYTHON_RESULT_NAME, rd.name_span))
        seen: dict[str, OutputSpec] = {}
        names: set[str] = set()
        for o in outs:
            if o.path in seen and o.span != seen[o.path].span:
                self.p.bail(f"two outputs of rule '{rd.name}' produce one file '{o.path}'", o.span, "give every output its own file name")
            seen[o.path] = o
            if o.name is not None:
                if o.name in names:
                    self.p.bail(f"two outputs are named '{o.name}'", o.span, "give every named output its own name")
                names.add(o.name)
        return tuple(outs), tuple(results)

    def job_path(self, v: s.Str, what: str) -> str:
        a = "an" if what[:1] in "aeiou" else "a"  # an output file, a results file
        p = v.value.strip()
        norm = os.path.normpath(p) if p else ""
        if not p or os.path.isabs(p) or norm.startswith("..") or norm == ".":
            self.p.bail(
                f"{a} {what} file must be a path inside the job's own folder",
                v.span,
                "sweepc keeps every job's files in its own folder (<workdir>/<rule>/<hh>/<hash>/); name the file only, e.g. \"out.txt\"",
            )
        if "{" in p or "}" in p:
            self.p.bail(f"{a} {what} file name cannot use placeholders", v.span, "every job has its own folder already, so one fixed name is enough")
        if breaks_lines(p):
            self.p.bail(f"{a} {what} file name cannot hold a line break", v.span,
                        "the input list of a job that reads it names one path a line; choose a name without line breaks")
        if norm in RESERVED_NAMES:
            self.p.bail(f"'{norm}' is a file sweepc writes itself", v.span, "choose another name")
        if any(len(part.encode()) > 255 for part in norm.split(os.sep)):
            self.p.bail(f"{a} {what} file name is longer than 255 bytes", v.span, "no file system takes such a name; choose a shorter one")
        return norm

    def rule_resources(self, f: s.Field | None, keys: Sequence[str]) -> dict[str, tuple[s.Expr, Template | str | None]]:
        out: dict[str, tuple[s.Expr, Template | str | None]] = {}
        # each resource on its own: a bad 'mem' does not hide a bad 'time'
        ok = [self.p.guard(partial(self.rule_resource, it, keys, out)) for it in (f.items if f else ())]
        if None in ok:
            raise Bail
        return out

    def rule_resource(self, it: s.Item, keys: Sequence[str], out: dict[str, tuple[s.Expr, Template | str | None]]) -> bool:
        """Check one resource into out; True, or Bail with its diagnostic."""
        if it.name is None:
            self.p.bail("resources are written name = value", it.span, 'for example: resources: cpus = 2, mem = "4G", time = "01:00:00"')
        if it.name not in RESOURCE_NAMES:
            self.p.bail(f"unknown resource '{it.name}'", it.name_span, did_you_mean(it.name, RESOURCE_NAMES) or "resources are: " + ", ".join(RESOURCE_NAMES))
        if it.name in out:
            self.p.bail(f"resource '{it.name}' is given twice", it.name_span, "give each resource once")
        v = it.value
        if isinstance(v, s.Name):
            if v.id not in keys:
                self.p.bail(f"unknown parameter '{v.id}'", v.span, did_you_mean(v.id, keys) or "a resource can name a parameter of the rule's psets")
            out[it.name] = (v, v.id)
        elif isinstance(v, s.Str):
            try:
                t = parse_template(v.value)
            except TemplateError as ex:
                self.p.bail(ex.message.replace("command", "resource"), v.span, ex.hint)
            for ph in t.placeholders:
                if ph.attr is not None or ph.root not in keys:
                    self.p.bail(f"unknown parameter '{ph.text}' in a resource", v.span, did_you_mean(ph.root, keys) or "a resource can use the rule's parameters")
            if not t.placeholders:
                resource_value(self.p, it.name, v.value, v.span, None)  # a constant: check it once, early
            out[it.name] = (v, t if t.placeholders else None)
        elif isinstance(v, s.Num) and not isinstance(v.value, bool):
            out[it.name] = (v, None)
            resource_value(self.p, it.name, v.value, v.span, None)  # check constants once, early
        else:
            self.p.bail(f"bad value for resource '{it.name}'", v.span, 'a number, a string such as "4G" or "01:00:00", or a parameter name')
        return True

    def runs_once_hint(self, rule: str, param: str) -> str:
        """What to do about {param} in a rule without 'over' (one that makes
        samples cannot take an 'over': its hint must not send the user there)."""
        makes_samples = any(rule in rules for rules in self.swept.reads.values())
        values = self.n.values.get(param)
        if makes_samples:
            one = f" ({param} has one value: {values[0]!r})" if values is not None and len(values) == 1 else ""
            return f"rule '{rule}' makes samples, so it runs once, over no parameters: write the value into its command{one}"
        return f"rule '{rule}' runs once, over no parameters: add 'over {param}' to run it once per value"

    def template(self, node: s.Str, rule: str, keys: Sequence[str], inputs: Sequence[InputSpec], outputs: Sequence[OutputSpec]) -> Template:
        try:
            t = parse_template(node.value)
        except TemplateError as ex:
            self.p.bail(ex.message, self.p.span_in(node, node.value[ex.offset : ex.offset + ex.length], ex.offset), ex.hint)
        input_names = [i.name for i in inputs if i.name is not None] + ["list"]
        output_names = [o.name for o in outputs if o.name is not None]
        soft = [i for i in inputs if i.only_done]
        for ph in t.placeholders:
            span = self.p.span_in(node, ph.text, ph.offset)
            root, attr = ph.root, ph.attr
            if root == "input" and soft and (attr is None or attr in {i.name for i in soft}):
                # which jobs end done is known only when they have ended, after the command is made
                self.p.error(
                    f"{ph.text} cannot name the inputs of done({soft[0].rule}): which of its jobs end done is known only once they have ended",
                    span, "read them from {input.list}: the file names the inputs that ended done, one per line",
                )
            elif root == "input":
                if not inputs:
                    self.p.error(f"rule '{rule}' has no inputs", span, "add an input: field, or remove " + ph.text)
                elif attr is not None and attr not in input_names:
                    named = input_names[:-1]  # without "list"
                    self.p.error(
                        f"unknown input '{attr}' in {ph.text}",
                        span,
                        did_you_mean(attr, input_names)
                        or ("named inputs here: " + listing(named) if named else 'name an input to use it alone: input: NAME = "file"'),
                    )
            elif root == "output":
                if not outputs:
                    self.p.error(f"rule '{rule}' has no outputs", span, "add an output: field, or remove " + ph.text)
                elif attr is not None and attr not in output_names:
                    self.p.error(f"unknown output '{attr}' in {ph.text}", span, did_you_mean(attr, output_names) or ("outputs here: " + listing(output_names) if output_names else "name an output: output: NAME = \"file\""))
            elif root == "pset":
                if attr not in PSET_ATTRS:
                    self.p.error(f"unknown placeholder {ph.text}", span, "pset placeholders are: " + ", ".join("{pset." + a + "}" for a in PSET_ATTRS))
            elif root == "resources":
                if attr not in RESOURCE_NAMES:
                    self.p.error(f"unknown placeholder {ph.text}", span, did_you_mean(attr or "", RESOURCE_NAMES) or "resources are: " + ", ".join(RESOURCE_NAMES))
            elif root == "root":
                if attr is not None:
                    self.p.error(f"unknown placeholder {ph.text}", span, "{root} is the project folder")
            elif root in keys:
                if attr is not None:
                    self.p.error(f"a parameter has no attributes: {ph.text}", span, "write {" + root + "}")
            elif root in self.n.param_defs:
                self.p.error(f"parameter '{root}' is not in the psets of rule '{rule}'", span,
                             f"the rule's psets have: {listing(keys)}" if keys else self.runs_once_hint(rule, root))
            elif ph.offset > 0 and node.value[ph.offset - 1] == "$":
                # the shell's own ${VAR}: the user wanted literal braces
                self.p.error(f"unknown placeholder {ph.text}", span, f"for the shell's own ${ph.text} write ${{{ph.text}}}")
            else:
                cands = [*keys, "input", "output", "pset", "resources", "root"]
                self.p.error(f"unknown placeholder {ph.text}", span, did_you_mean(root, cands) or "placeholders are parameters, {input}, {output}, {pset.hash}, {pset.dir}, {resources.cpus}, {root}")
        return t

    def rule_order(self, rules: Mapping[str, Rule]) -> list[str]:
        index = {n: i for i, n in enumerate(self.n.rule_defs)}
        succ: dict[str, list[str]] = {n: [] for n in rules}
        reads = self.swept.over_reads
        for r in rules.values():
            ups = [inp.rule for inp in r.inputs if inp.rule is not None and inp.rule in rules]
            ups += [sampler for sampler in reads.get(r.name, ()) if sampler in rules]  # its sweep reads what that rule makes
            for u in ups:
                if r.name not in succ[u]:
                    succ[u].append(r.name)
        cycle = _find_cycle(succ)
        if cycle is None:
            return _topological(succ, index)
        names = cycle
        # start the story at the rule defined first, and point at its input
        k = min(range(len(names)), key=lambda i: index[names[i]])
        names = names[k:] + names[:k]
        first = rules[names[0]]
        upstream = names[-1]
        rd = self.n.rule_defs[first.name]
        span = next((i.span for i in first.inputs if i.rule == upstream), rd.over.span if rd.over is not None else rd.name_span)
        self.p.error(
            "dependency cycle: " + " -> ".join([*names, names[0]]),
            span,
            "a rule cannot need its own outputs, directly or through other rules",
        )
        return []


def _find_cycle(succ: Mapping[str, list[str]]) -> list[str] | None:
    """The rules of the first dependency cycle a depth-first walk meets
    (from the rules in order, along their edges in order), or None."""
    done: set[str] = set()
    for start in succ:
        if start in done:
            continue
        path: list[str] = [start]
        on_path = {start}
        nexts = [iter(succ[start])]
        while nexts:
            n = next(nexts[-1], None)
            if n is None:
                left = path.pop()
                done.add(left)
                on_path.discard(left)
                nexts.pop()
                continue
            if n in on_path:
                return path[path.index(n):]
            if n not in done:
                path.append(n)
                on_path.add(n)
                nexts.append(iter(succ[n]))
    return None


def _topological(succ: Mapping[str, list[str]], index: Mapping[str, int]) -> list[str]:
    """Kahn's order, taking the rule defined first whenever several are ready."""
    need = {n: 0 for n in succ}
    for outs in succ.values():
        for n in outs:
            need[n] += 1
    ready = [(index[n], n) for n, k in need.items() if k == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        _, n = heapq.heappop(ready)
        order.append(n)
        for m in succ[n]:
            need[m] -= 1
            if need[m] == 0:
                heapq.heappush(ready, (index[m], m))
    return order


def _top_level_names(tree: ast.Module) -> dict[str, bool]:
    """Names a module binds at its top level -> whether it is a def (an
    import or assignment may bind a callable too: it counts, as not a def)."""
    out: dict[str, bool] = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            out[node.name] = True
        elif isinstance(node, ast.ClassDef):
            out.setdefault(node.name, False)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for a in node.names:
                out.setdefault((a.asname or a.name).split(".")[0], False)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for tg in targets:
                for n in ast.walk(tg):
                    if isinstance(n, ast.Name):
                        out.setdefault(n.id, False)
    return out


def _one_to_one(r: Rule, up: Rule, first: int) -> list[tuple[int, ...]] | None:
    """What _Matcher gives, in the two common cases made without it, else None:
    both rules over the very same psets, each with every key (each pset's
    job takes the upstream job of the same pset object), or no key shared
    (each takes every upstream job, in order)."""
    if not up.instances:
        return None
    if not set(r.keys) & set(up.keys):
        every = tuple(range(first, first + len(up.instances)))
        return [every] * len(r.instances)
    if up.instances is r.instances and set(map(len, r.instances)) == {len(r.keys)}:
        return [(first + i,) for i in range(len(r.instances))]
    return None


class _Matcher:
    """Upstream jobs of one input, matched on shared parameter names."""

    def __init__(self, up: Rule, first: int, my_keys: Sequence[str]) -> None:
        self.up, self.first = up, first
        self.indexes: dict[tuple[str, ...], dict[tuple[object, ...], list[int]]] = {}
        self.shared_cache: dict[tuple[str, ...], tuple[str, ...]] = {}
        groups: dict[tuple[str, ...], list[int]] = {}
        for i, p in enumerate(up.instances):
            groups.setdefault(tuple(p), []).append(first + i)
        self.groups = groups
        # Rules over one sweep share its pset objects: then the match is the
        # upstream job made from the very same object (the common case, and
        # the hot loop of planning at 100k psets).
        self.same_keys = len(groups) == 1 and set(next(iter(groups))) == set(my_keys)
        self.by_id = {id(p): first + i for i, p in enumerate(up.instances)} if self.same_keys else {}

    def shared_for(self, inst: Mapping[str, Scalar]) -> tuple[str, ...]:
        mine = set(inst)
        names: dict[str, None] = {}
        for ks in self.groups:
            for k in ks:
                if k in mine:
                    names[k] = None
        return tuple(names)

    def match(self, inst: Mapping[str, Scalar]) -> tuple[int, ...]:
        hit = self.by_id.get(id(inst))
        if hit is not None:
            return (hit,)
        mykeys = tuple(inst)
        out: list[int] = []
        for ks, ids in self.groups.items():
            shared = self.shared_cache.get(mykeys + ("|",) + ks)
            if shared is None:
                shared = tuple(k for k in ks if k in inst)
                self.shared_cache[mykeys + ("|",) + ks] = shared
            if not shared:
                out.extend(ids)
                continue
            index = self.indexes.get(ks + ("|",) + shared)
            if index is None:
                index = {}
                insts = self.up.instances
                for jid in ids:
                    p = insts[jid - self.first]
                    index.setdefault(tuple(join_key(p[k]) for k in shared), []).append(jid)
                self.indexes[ks + ("|",) + shared] = index
            out.extend(index.get(tuple(join_key(inst[k]) for k in shared), ()))
        if len(self.groups) > 1:
            out.sort()
        return tuple(out)
