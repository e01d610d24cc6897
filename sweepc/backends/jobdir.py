"""A job's folder, the same way on every backend: preparing it before the
job runs, and checking its outputs and results files when it has ended."""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sweepc.lang.graph import INPUT_LIST_NAME, BuildGraph, Job, RuleSpec

_USES_INPUT_LIST = re.compile(r"\{\s*input\s*\.\s*list\s*\}")


def uses_input_list(rule: RuleSpec) -> bool:
    return bool(_USES_INPUT_LIST.search(rule.shell) or (rule.restart and _USES_INPUT_LIST.search(rule.restart)))


def input_list_text(g: BuildGraph, job: Job, d: Path, only: Container[int] | None = None) -> str:
    """One input path per line, relative to the job folder d, as {input} names
    them; with `only`, of those upstream jobs only (input: done(RULE))."""
    deps = job.deps if only is None else [dep for dep in job.deps if dep in only]
    lines = [f"../../../{g.jobs[dep].reldir}/{o.path}\n" for dep in deps for o in g.rule(g.jobs[dep].rule).outputs]
    root_rel = os.path.relpath(g.root, d)
    lines.extend(f"{root_rel}/{p}\n" for p in job.sources)
    return "".join(lines)


def write_input_list(g: BuildGraph, job: Job, d: Path, only: Container[int] | None = None) -> None:
    tmp = d / (INPUT_LIST_NAME + ".tmp")
    tmp.write_text(input_list_text(g, job, d, only))
    os.replace(tmp, d / INPUT_LIST_NAME)


def remove_outputs(g: BuildGraph, job: Job, d: Path) -> None:
    """Leftovers of an earlier run must not survive a run that fails to write them."""
    for o in g.rule(job.rule).outputs:
        remove_path(d / o.path)


def remove_path(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        try:
            path.unlink()
        except FileNotFoundError:
            pass


# -- the end of a job: outputs and results files, the same check on every backend

# The bookkeeping columns of the results table (psweep's names, then sweepc's).
# A results key may not take one of these names, nor a parameter's.
BOOKKEEPING = (
    "_pset_hash", "_pset_seq", "_run_id", "_run_seq", "_time_utc", "_exec_host", "_runtime_s",
    "_status", "_exit_code", "_max_rss_mb", "_job_dir", "_log", "_error",
)
# and `_index`, the row id of a csv(..., index=) sweep
RESERVED_KEYS = frozenset((*BOOKKEEPING, "_index"))


@dataclass(frozen=True, slots=True)
class ResultsRead:
    """What a job's `results:` files hold: the flattened values read so far,
    and the first problem met (None when every file is a JSON object whose
    keys are its own). `kind` sorts the problem for the results table."""

    values: dict[str, Any]
    problem: str | None = None
    kind: str | None = None  # "missing" | "malformed" | "clash"


def flatten(obj: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested keys joined with dots: {"a": {"b": 1}} -> {"a.b": 1}."""
    out: dict[str, Any] = {}
    for k, v in obj.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


_JSON_KIND = {list: "a list", str: "a string", int: "a number", float: "a number", bool: "a boolean", type(None): "null"}


def read_results(d: Path | str, names: Sequence[str], params: Sequence[str]) -> ResultsRead:
    """Read and check the results files `names` of the job in folder d.

    A file must hold a JSON object; after flattening, no key may be a
    parameter name (`params`), a bookkeeping column or a key of an earlier
    file. NaN and ±Infinity are values like any other (Python's json reads
    them). Called at the end of every job (local and SLURM) and by the
    results table, so a job is `done` only when its results are readable."""
    values: dict[str, Any] = {}
    owner: dict[str, str] = {}
    taken = frozenset(params)
    clash: str | None = None  # the first; the other keys are still read (the results table shows them)
    for name in names:
        try:
            with open(os.path.join(d, name), encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            return ResultsRead(values, f"results file {name} is missing", "missing")
        except (OSError, ValueError, UnicodeDecodeError) as e:
            return ResultsRead(values, f"results file {name} is not valid JSON ({_why(e)})", "malformed")
        if not isinstance(data, dict):
            return ResultsRead(values, f"results file {name} holds {_JSON_KIND.get(type(data), 'a JSON value')}, not a JSON object", "malformed")
        for key, v in flatten(data).items():
            why = (
                "is the name of a parameter" if key in taken
                else "is the name of a bookkeeping column" if key in RESERVED_KEYS
                else f"is in {owner[key]} too" if key in owner
                else None
            )
            if why is None:
                owner[key] = name
                values[key] = v
            elif clash is None:
                clash = f"results file {name}: key '{key}' {why}"
    return ResultsRead(values, clash, None if clash is None else "clash")


def _why(e: BaseException) -> str:
    if isinstance(e, OSError):
        return e.strerror or str(e)
    if isinstance(e, UnicodeDecodeError):
        return "not UTF-8 text"
    return str(e)


def check_end(g: BuildGraph, rule: str, d: Path) -> tuple[str | None, str | None]:
    """After a job exited 0: (problem, results). problem is None when every
    output is there and the results files are sound; results is then the
    flattened values as JSON text (None for a rule without `results:`), for
    the store's history."""
    spec = g.rule(rule)
    missing = [o.path for o in spec.outputs if not os.path.exists(d / o.path)]
    if missing:
        return "exited 0 but did not write " + ", ".join(missing), None
    if not spec.results:
        return None, None
    read = read_results(d, spec.results, spec.keys)
    if read.problem is not None:
        return read.problem, None
    return None, json.dumps(read.values, ensure_ascii=False, separators=(",", ":"))
