"""Backends: where a Plan runs. In: a Plan, the state store, options. Out:
outcomes recorded in the store, a Summary, and notes for the CLI.

    base.py     the Backend protocol and the values it hands back
    jobdir.py   preparing a job's folder, the same way on every backend
    local/      this machine: a process pool aware of cpus and memory
    slurm/      SLURM job arrays: rendering, submission, completion records
    dask/       a dask cluster: LocalCluster, dask_jobqueue, or a running scheduler

`get(name)` returns a backend by name; `names()` lists them for the CLI. A new
backend is a new subpackage with a class implementing base.Backend and one
line in _REGISTRY (see docs/architecture.md).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # (typing's Protocol classes take ~5 ms to make: `sweepc build` asks names() first)
    from sweepc.backends.base import Backend

# name -> "module:Class"; imported only when used, so `sweepc status` never
# pays for a backend it does not touch.
_REGISTRY: dict[str, str] = {
    "local": "sweepc.backends.local:LocalBackend",
    "slurm": "sweepc.backends.slurm:SlurmBackend",
    "dask": "sweepc.backends.dask:DaskBackend",
}


def names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def get(name: str) -> Backend:
    """The backend called `name` (a KeyError for an unknown name; the CLI
    offers only registered names)."""
    module, _, cls = _REGISTRY[name].partition(":")
    backend: Backend = getattr(importlib.import_module(module), cls)()
    return backend


__all__ = ["Backend", "get", "names"]
