"""The SLURM backend: job-script rendering (jinja2), arrays, submission, ingest.

    settings.py   the `backend slurm:` block, checked
    arrays.py     jobs -> arrays (grouping, bundling, splitting) and their dependencies
    render.py     the submission folder: jobscripts, task files, runner.sh, submit.sh
    scheduler.py  sbatch/squeue/scancel/scontrol behind a small interface
    records.py    completion records -> the state store (ingest, sync before planning)
    backend.py    execute(): submit, wait, retry; cancel()

Entry points: backend.execute(), backend.cancel(), records.sync(),
records.refresh(). Imported lazily: `sweepc status` only needs records.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Scheduler", "SubprocessScheduler", "cancel", "execute", "refresh", "sync"]


def __getattr__(name: str) -> Any:
    if name in ("execute", "cancel"):
        from sweepc.backends.slurm import backend

        return getattr(backend, name)
    if name in ("sync", "refresh"):
        from sweepc.backends.slurm import records

        return getattr(records, name)
    if name in ("SubprocessScheduler", "Scheduler"):
        from sweepc.backends.slurm import scheduler

        return getattr(scheduler, name)
    raise AttributeError(name)
