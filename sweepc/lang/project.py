"""Finding and loading a project: sweepfile -> parse -> compile."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from sweepc.lang.compiler import compile as compile_module
from sweepc.errors import SweepfileError, UsageError
from sweepc.lang.overrides import apply as apply_overrides
from sweepc.lang.overrides import from_override
from sweepc.lang.graph import BuildGraph
from sweepc.lang.parser import parse


def find_sweepfile(path: str | Path | None = None, directory: str | Path | None = None) -> Path:
    """The sweepfile named by path (a file or a folder holding one), relative to directory."""
    base = Path(directory) if directory is not None else Path.cwd()
    if directory is not None and not base.is_dir():
        raise UsageError(f"no such folder: {directory}")
    target = base / (path if path is not None else "sweepfile")
    if target.is_dir():
        target = target / "sweepfile"
    if not target.is_file():
        raise UsageError(
            f"no sweepfile at {target}",
            "run sweepc in the folder that holds the sweepfile, or name it with -f FILE or -C DIR",
        )
    return target


def load_graph(sweepfile: Path, overrides: Sequence[str] = ()) -> BuildGraph:
    """Read, parse and compile a sweepfile, with -D overrides (NAME=VALUE) applied."""
    try:
        text = sweepfile.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read {sweepfile}: {e}") from None
    shown = sweepfile.name if sweepfile.parent.resolve() == Path.cwd().resolve() else str(sweepfile)
    module = parse(text, shown)
    if not overrides:
        return compile_module(module, sweepfile.resolve().parent, sweepfile)
    n_lines = len(module.source.splitlines())
    module = apply_overrides(module, overrides)
    try:
        return compile_module(module, sweepfile.resolve().parent, sweepfile)
    except SweepfileError as e:
        raise SweepfileError(from_override(e.diagnostics, module, n_lines), e.source) from None
