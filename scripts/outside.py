"""What scripts/chaos.py and scripts/edits.py share: a fresh project
folder, the environment of the sweepc commands they run, and the verdict.
Standard library only (they import sweepc itself to check what it built)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def new_project(folder: str | None, prefix: str) -> Path:
    """An empty folder `project` in `folder` (emptied first), or in a new temporary one."""
    base = Path(folder) if folder else Path(tempfile.mkdtemp(prefix=prefix))
    project = (base / "project").resolve()
    shutil.rmtree(project, ignore_errors=True)
    project.mkdir(parents=True)
    return project


def command_env() -> dict[str, str]:
    """The environment of the sweepc commands: as a user's, whose Python writes
    .pyc files (what a stale one would do is part of what is tried)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def verdict(problems: list[str]) -> int:
    """Print the problems and the last line ('no problem' or how many); the exit status."""
    for p in problems:
        print("PROBLEM:", p)
    print("no problem" if not problems else f"{len(problems)} problems")
    return 0 if not problems else 1
