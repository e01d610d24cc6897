"""Preparing a job's folder before it runs, the same way on every backend."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from sweepc.lang.graph import INPUT_LIST_NAME, BuildGraph, Job, RuleSpec

_USES_INPUT_LIST = re.compile(r"\{\s*input\s*\.\s*list\s*\}")


def uses_input_list(rule: RuleSpec) -> bool:
    return bool(_USES_INPUT_LIST.search(rule.shell) or (rule.restart and _USES_INPUT_LIST.search(rule.restart)))


def input_list_text(g: BuildGraph, job: Job, d: Path) -> str:
    """One input path per line, relative to the job folder d, as {input} names them."""
    lines = [f"../../../{g.jobs[dep].reldir}/{o.path}\n" for dep in job.deps for o in g.rule(g.jobs[dep].rule).outputs]
    root_rel = os.path.relpath(g.root, d)
    lines.extend(f"{root_rel}/{p}\n" for p in job.sources)
    return "".join(lines)


def write_input_list(g: BuildGraph, job: Job, d: Path) -> None:
    tmp = d / (INPUT_LIST_NAME + ".tmp")
    tmp.write_text(input_list_text(g, job, d))
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
