"""Finding and loading a project: sweepfile -> parse -> compile."""

from __future__ import annotations

from pathlib import Path

from sweepc.lang.compiler import compile as compile_module
from sweepc.errors import UsageError
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


def load_graph(sweepfile: Path) -> BuildGraph:
    try:
        text = sweepfile.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read {sweepfile}: {e}") from None
    shown = sweepfile.name if sweepfile.parent.resolve() == Path.cwd().resolve() else str(sweepfile)
    module = parse(text, shown)
    return compile_module(module, sweepfile.resolve().parent, sweepfile)
