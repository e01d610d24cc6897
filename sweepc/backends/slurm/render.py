"""Writing a submission folder: `.sweepc/slurm/<submission>/`.

    runner.sh               the task runner (pure bash), the same for every array
    pyrunner.py             the task runner of python: rules (with sweepc_pyjob.py, a copy of
                            backends/pyjob.py; standard library only), which runner.sh execs
    01-gen.sh               one jobscript per array, rendered from the jinja2 template
    01-gen/task-0.sh ...    one small bash file per array task: its psets and their commands
    logs/%A_%a.out          what SLURM writes (the commands' own output goes to
                            <job folder>/sweepc.log)
    submit.sh               (--render-only) submits the arrays in order, with dependencies

Nothing here is per pset: a jobscript is a few hundred bytes whatever the
number of psets (sbatch limits script size), and a task file holds `bundle`
psets. Commands are written verbatim in quoted here-documents, so the
shell-quoting the compiler did is kept byte for byte.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2

from sweepc.backends.jobdir import pset_json_text, uses_input_list
from sweepc.lang.resources import format_time
from sweepc.errors import UsageError, did_you_mean
from sweepc.lang.graph import INPUT_LIST_NAME, LOG_NAME, MARKER_NAME, PSET_JSON_NAME, RECORD_NAME, REFUSED_DIR, BuildGraph, RuleSpec
from sweepc.backends.slurm.arrays import Array, Deps, task_time_s
from sweepc.backends.slurm.settings import SlurmSettings

RUNNER_NAME = "runner.sh"
# a python: rule's runner and its copy of backends/pyjob.py (stdlib only: the node needs no sweepc)
PYRUNNER_NAME = "pyrunner.py"
PYJOB_NAME = "sweepc_pyjob.py"
PY_END = "SWEEPC_TASK"  # ends the here-document (no JSON line is only this)
LOG_DIR = "logs"
# What a template may use (documented in docs/slurm.md).
TEMPLATE_VARIABLES = (
    "rule", "array", "output", "cpus", "mem", "time", "time_s", "nodes", "ntasks", "gpus",
    "partition", "account", "qos", "directives", "n_psets", "n_tasks", "bundle", "submission",
    "tasks", "runner", "root", "workdir", "psets_text", "tasks_text", "pack",
)


@dataclass(frozen=True)
class PsetLine:
    """What a task file says about one pset."""

    job: int
    fingerprint: str
    cmd_hash: str
    inputs_hash: str
    upstream: tuple[str, ...]  # "RULE/HH/HASH" or "RULE/HH/HASH@SUBMISSION"
    # a job of Plan.dynamic: its fingerprint is made by the runner from these
    # (fp:, rf:, softfp:, soft:, keep: entries; see runner.sh), with fingerprint
    # "dynamic" or "dynamic-soft" and inputs_hash ""
    dynamic: tuple[str, ...] = ()


def _environment(loader: jinja2.BaseLoader) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=loader, undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
        trim_blocks=True, lstrip_blocks=True, autoescape=False,
    )
    env.filters["q"] = lambda v: shlex.quote(str(v))
    return env


def load_template(s: SlurmSettings, root: Path) -> jinja2.Template:
    """The project's template when there is one, else the built-in one."""
    if s.template is None:
        env = _environment(jinja2.PackageLoader("sweepc.backends.slurm", "templates"))
        return env.get_template("array.sh.j2")
    env = _environment(jinja2.FileSystemLoader(str(s.template.parent)))
    try:
        return env.get_template(s.template.name)
    except jinja2.TemplateSyntaxError as e:
        raise UsageError(f"{_rel(s.template, root)}:{e.lineno}: {e.message}", "see the jinja2 template syntax") from None


def render_jobscript(tpl: jinja2.Template, context: Mapping[str, Any], root: Path) -> str:
    try:
        text = tpl.render(**context)
    except jinja2.UndefinedError as e:
        name = tpl.filename or "array.sh.j2"
        m = re.match(r"'(\w+)' is undefined", e.message or "")
        hint = did_you_mean(m.group(1), TEMPLATE_VARIABLES) + " " if m else ""
        raise UsageError(
            f"{_rel(Path(name), root)}: {e.message}",
            hint + "a jobscript template can use: " + ", ".join(TEMPLATE_VARIABLES),
        ) from None
    except jinja2.TemplateError as e:
        raise UsageError(f"{_rel(Path(tpl.filename or 'array.sh.j2'), root)}: {e}") from None
    for line in text.splitlines():
        if line.startswith("#SBATCH") and (line.strip() == "#SBATCH" or line.rstrip().endswith(("=", "=None"))):
            raise UsageError(
                f"{_rel(Path(tpl.filename or 'array.sh.j2'), root)}: renders a directive without a value: {line.rstrip()!r}",
                "guard optional values with {% if NAME %} ... {% endif %}",
            )
    return text


def jobscript_context(g: BuildGraph, s: SlurmSettings, arr: Array, folder: Path, submission: str, throttle: int | None) -> dict[str, Any]:
    res = arr.resources
    n = len(arr.tasks)
    time_s = task_time_s(arr)  # a task runs `bundle` psets, `pack` at a time
    return {
        "rule": arr.rule,
        "array": f"0-{n - 1}" + (f"%{throttle}" if throttle else ""),
        "output": f"{LOG_DIR}/%A_%a.out",  # relative: a job runs in the submission folder
        "cpus": res.cpus * arr.pack,  # each of the `pack` psets running at once has the rule's cpus
        "mem": f"{res.mem_mb * arr.pack}M" if res.mem_mb is not None else None,
        "time": format_time(time_s) if time_s is not None else None,
        "time_s": time_s,
        "nodes": res.nodes,
        "ntasks": res.tasks,
        "gpus": res.gpus,
        "partition": s.partition,
        "account": s.account,
        "qos": s.qos,
        "directives": list(s.directives),
        "n_psets": len(arr.jobs),
        "psets_text": plural(len(arr.jobs), "pset"),
        "tasks_text": plural(n, "array task"),
        "n_tasks": n,
        "bundle": arr.bundle,
        "pack": arr.pack,
        "submission": submission,
        "tasks": arr.name,  # relative to the submission folder, so it can be copied elsewhere
        "runner": RUNNER_NAME,
        "root": str(g.root),
        "workdir": str(g.workdir_path),
    }


def runner_text() -> str:
    text = resources.files("sweepc.backends.slurm").joinpath("templates/runner.sh").read_text(encoding="utf-8")
    for key, value in (("@RECORD@", RECORD_NAME), ("@LOG@", LOG_NAME), ("@MARKER@", MARKER_NAME),
                       ("@PSET_JSON@", PSET_JSON_NAME), ("@REFUSED@", REFUSED_DIR), ("@INPUTS@", INPUT_LIST_NAME)):
        text = text.replace(key, value)
    return text


def made_by_runner(rule: RuleSpec) -> bool:
    """Whether the runner prepares the rule's job folders on the node (folder,
    marker, pset.json, stale outputs removed): when sweepc has nothing else to
    write there first (no templates, no input list) and the rule is run by
    runner.sh itself (not a python: rule). Making 100k folders on
    the submitting machine would cost more than everything else a submission
    does (docs/slurm.md, "Submission at scale")."""
    return not rule.templates and not uses_input_list(rule) and rule.python is None  # (pyrunner.py makes none)


def task_text(g: BuildGraph, arr: Array, t: int, lines: Sequence[PsetLine], submission: str, time_s: int | None) -> str:
    rule = g.rule(arr.rule)
    make_dirs = made_by_runner(rule)
    q = shlex.quote
    if rule.python is not None:
        return python_task_text(g, arr, t, lines, submission, time_s)
    out = [
        f"# sweepc: task {t} of {arr.name}, {plural(len(lines), 'pset')} of rule {arr.rule}; run by {RUNNER_NAME}\n",
        f"SWEEPC_SUBMISSION={q(submission)}\n",
        f"SWEEPC_RULE={q(arr.rule)}\n",
        f"SWEEPC_ARRAY={q(arr.name)}\n",
        f"SWEEPC_PACK={arr.pack}\n",
        f"SWEEPC_WORKDIR={q(workdir_text(g))}\n",
        "SWEEPC_OUTPUTS=(" + " ".join(q(o.path) for o in rule.outputs) + ")\n",
        f"SWEEPC_TIME_LIMIT={time_s if time_s is not None else ''}\n",
    ]
    if make_dirs:
        out.append("SWEEPC_MAKE_DIRS=1\n")
    for pl in lines:
        job = g.jobs[pl.job]
        command = job.restart if (pl.job in arr.restart and job.restart is not None) else job.command
        end = _delimiter(job.hash, command)
        args = [job.hash, pl.fingerprint, pl.cmd_hash, pl.inputs_hash, str(arr.attempt(pl.job)), *pl.upstream, *pl.dynamic]
        out.append(f"\n# {_one_line(job.label)}\n")
        if make_dirs:
            out.append(f"_sweepc_pj={q(pset_json_text(g, job))}\n")
        out.append("sweepc_pset " + " ".join(q(a) for a in args) + f" <<'{end}'\n")
        out.append(command if command.endswith("\n") else command + "\n")
        out.append(end + "\n")
    return "".join(out)


def python_task_text(g: BuildGraph, arr: Array, t: int, lines: Sequence[PsetLine], submission: str, time_s: int | None) -> str:
    """The task file of a `python:` rule: runner.sh hands its JSON (a header
    line, then a line per pset) to pyrunner.py (see there)."""
    rule = g.rule(arr.rule)
    assert rule.python is not None
    module, func = rule.python
    header = {
        "submission": submission, "rule": arr.rule, "array": arr.name, "pack": arr.pack, "workdir": workdir_text(g),
        "outputs": [o.path for o in rule.outputs], "time_limit": time_s,
        "module": module, "func": func, "inputs": uses_input_list(rule),
        "names": {"record": RECORD_NAME, "log": LOG_NAME, "marker": MARKER_NAME, "inputs": INPUT_LIST_NAME},
    }
    out = [
        f"# sweepc: task {t} of {arr.name}, {plural(len(lines), 'pset')} of rule {arr.rule} "
        f"(python: {_one_line(module)}:{func}); {RUNNER_NAME} hands them to {PYRUNNER_NAME}\n",
        f"sweepc_python <<'{PY_END}'\n",
        json.dumps(header, ensure_ascii=True) + "\n",
    ]
    for pl in lines:
        job = g.jobs[pl.job]
        out.append(json.dumps({
            "hash": job.hash, "fp": pl.fingerprint, "ch": pl.cmd_hash, "ih": pl.inputs_hash, "attempt": arr.attempt(pl.job),
            "up": [*pl.upstream, *pl.dynamic], "time": job.resources.time_s, "params": dict(job.params),
        }, ensure_ascii=True, allow_nan=True) + "\n")
    out.append(PY_END + "\n")
    return "".join(out)


def workdir_text(g: BuildGraph) -> str:
    """The workdir as the task files name it: relative to the project folder
    (the runner finds that from where it is) unless it lies outside."""
    try:
        return g.workdir_path.resolve().relative_to(g.root.resolve()).as_posix() or "."
    except ValueError:
        return str(g.workdir_path)


def _one_line(text: str) -> str:
    """Text for a comment line: a newline in a parameter value must not end the comment."""
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")


def _delimiter(h: str, command: str) -> str:
    end = f"SWEEPC_CMD_{h[:8]}"
    lines = set(command.splitlines())
    while end in lines:
        end += "_"
    return end


def submit_script(folder: Path, arrays: Sequence[Array], deps: Sequence[Deps]) -> str:
    """submit.sh: the arrays in order, each one's id in a shell variable for those after it."""
    out = [
        "#!/bin/bash\n",
        "# Submits this build's job arrays in order, with their dependencies (written by\n",
        "# `sweepc build --backend slurm --render-only`). Nothing here names the project's\n",
        "# folder: copy the project (with this folder) to a cluster and run it there. Each\n",
        "# array's id goes to NAME.jobid; the completion records land in the job folders,\n",
        "# and sweepc status/results/build take them in here (or once they are copied back).\n",
        "set -euo pipefail\n",
        'cd -- "$(dirname -- "${BASH_SOURCE[0]}")"\n',
    ]
    names = [f"$j{k}" for k in range(len(arrays))]
    for k, (arr, d) in enumerate(zip(arrays, deps)):
        flag = d.flag(names)
        opts = f"--dependency={flag} --kill-on-invalid-dep=yes " if flag else ""
        out.append(f'j{k}=$(sbatch --parsable {opts}{shlex.quote(arr.name + ".sh")})\n')
        out.append(f"j{k}=${{j{k}%%;*}}\n")
        out.append(f'echo "$j{k}" > {shlex.quote(arr.name + ".jobid")}\n')
        out.append(f'echo "{arr.rule}: job $j{k}, {plural(len(arr.jobs), "pset")} in {plural(len(arr.tasks), "task")} ({arr.name}.sh)"\n')
    return "".join(out)


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def write_text(path: Path, text: str, mode: int = 0o644) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)  # whatever was there (a link, too): never written through
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    with open(fd, "w", encoding="utf-8") as f:
        f.write(text)
        os.fchmod(f.fileno(), mode)
    os.replace(tmp, path)


def write_array(
    g: BuildGraph, s: SlurmSettings, tpl: jinja2.Template, folder: Path, arr: Array, line_of: Callable[[int], PsetLine],
    submission: str, throttle: int | None,
) -> Path:
    """The jobscript and the task files of one array; returns the jobscript.
    line_of(job id): its task line, asked for once per job, in task order."""
    ctx = jobscript_context(g, s, arr, folder, submission, throttle)
    script = folder / f"{arr.name}.sh"
    write_text(script, render_jobscript(tpl, ctx, g.root), 0o755)
    tasks = folder / arr.name
    tasks.mkdir(parents=True, exist_ok=True)
    for t, task in enumerate(arr.tasks):
        write_text(tasks / f"task-{t}.sh", task_text(g, arr, t, [line_of(i) for i in task], submission, ctx["time_s"]))
    return script


def prepare_folder(folder: Path, python: bool = False) -> None:
    """The logs folder and runner.sh; with python, also what the arrays of
    python: rules run (pyrunner.py and its copy of pyjob.py)."""
    (folder / LOG_DIR).mkdir(parents=True, exist_ok=True)
    runner = folder / RUNNER_NAME
    if not runner.exists():
        write_text(runner, runner_text(), 0o755)
    if not python:
        return
    for name, module in ((PYRUNNER_NAME, "sweepc.backends.slurm"), (PYJOB_NAME, "sweepc.backends")):
        if not (folder / name).exists():
            source = "pyrunner.py" if name == PYRUNNER_NAME else "pyjob.py"
            write_text(folder / name, resources.files(module).joinpath(source).read_text(encoding="utf-8"))


def _rel(p: Path, root: Path) -> str:
    try:
        return str(p.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(p)
