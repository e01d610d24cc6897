"""What every CLI verb shares: exit codes and turning -f/-C into a project."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from sweepc.lang.identity import find_sweepfile

if TYPE_CHECKING:
    from sweepc.api import Study
    from sweepc.lang.graph import BuildGraph

# 3: sweepc could not write its own files (a full disk, read-only): errors.MachineError
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_MACHINE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def sweepfile_of(args: argparse.Namespace) -> Path:
    return find_sweepfile(args.file, args.directory)


def graph_of(args: argparse.Namespace) -> BuildGraph:
    # One command per process: what exists now (the graph above all) lives to
    # the end, so the cyclic collector need never scan it again.
    from sweepc.lang.project import load_graph  # (not before: a no-op answered by its certificate needs no graph)

    return load_graph(sweepfile_of(args), args.define, freeze=True)


def study_of(args: argparse.Namespace) -> Study:
    from sweepc.api import Study

    return Study(graph_of(args), overrides=args.define)


# True when this process runs one command and ends: `sweepc ...` (or python -m
# sweepc) on the command line, not main([...]) inside a test or a notebook
ONE_COMMAND = False


def text_tables() -> None:
    """For a command that makes a table and writes it as text (results in
    any format but parquet, report, plot, runs, psets): pandas without
    pyarrow, as sweepc without its `parquet` extra has it. pandas 3 imports
    pyarrow whenever it is installed, to keep its text columns in Arrow
    buffers: at 100k psets that is ~40 MB more peak memory and ~0.6 s more
    of every such command, for the same text (tests/test_results_lean.py
    compares the two). Only in a process that runs this one command and
    ends (ONE_COMMAND), and only if nothing has imported pandas or pyarrow
    yet; otherwise what pyarrow frees goes back to the system (arrow_frees)."""
    if ONE_COMMAND and "pandas" not in sys.modules and "pyarrow" not in sys.modules:
        # `import pyarrow` now raises ImportError (a None entry: Python's own way to say "no such module")
        sys.modules["pyarrow"] = None  # type: ignore[assignment]
        return
    arrow_frees()


def arrow_frees() -> None:
    """For a command that makes a big table and ends (results, report): what
    pyarrow (pandas' text columns) frees goes back to the C allocator, not
    into the pool of its own allocator (mimalloc), which kept ~20 MB of a
    100k-row table's freed memory. In this process only: the jobs a build
    starts inherit nothing of it."""
    try:
        import pyarrow
    except ImportError:
        return
    pyarrow.set_memory_pool(pyarrow.system_memory_pool())
