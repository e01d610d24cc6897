"""What identifies a compiled graph without compiling it, or even importing
the compiler: the sweepfile's cache key (its text and full path, and the
compiler's identity), and the digest of each file the compiler read. The
graph cache (lang/project.py) is keyed by them, and the no-op certificate
(plan/noop.py) checks them before anything else of a build is imported.
Also finding the sweepfile."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

from sweepc.errors import Diagnostic, Span, SweepfileError, UsageError
from sweepc.hashing import bulk_sha256, short_sha256

__all__ = ["ABSENT", "CACHE_FORMAT", "cache_key", "code_identity", "digest", "file_stamps", "files_unchanged",
           "find_sweepfile", "graph_key_of", "read_sweepfile", "sweepfile_key"]

CACHE_FORMAT = b"sweepc-graph-cache 3\n"
ABSENT = "-"  # the digest of a file that does not exist


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


def graph_key_of(key: str, files: Sequence[tuple[str, str]]) -> str:
    """The cache key and the digests of the files the compiler read: what
    tells one graph from another (the cache's key alone does not: the same
    sweepfile over another CSV is another graph)."""
    return short_sha256("\0".join([key, *(f"{p}\0{d}" for p, d in files)]).encode("utf-8", "surrogateescape")).hexdigest()


BOM = b"\xef\xbb\xbf"


def read_sweepfile(sweepfile: Path, shown: str | None = None) -> str:
    """The sweepfile's text: UTF-8, a leading byte order mark dropped (as
    Python does for its source files; Windows editors write one). Not UTF-8:
    a SweepfileError at the first bad byte (`shown`: the name to give).
    OSError when it cannot be read."""
    data = sweepfile.read_bytes()
    if data.startswith(BOM):
        data = data[len(BOM):]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        start = data.rfind(b"\n", 0, e.start) + 1
        line = data.count(b"\n", 0, e.start) + 1
        column = len(data[start:e.start].decode("utf-8", "replace")) + 1
        text = data.decode("utf-8", "replace")
        bad = data[e.start:e.end]
        span = Span(line, column, line, column + 1)
        diag = Diagnostic(f"not UTF-8 text (byte {', '.join(f'0x{b:02x}' for b in bad)})",
                          span, "save the file as UTF-8", shown if shown is not None else str(sweepfile))
        raise SweepfileError([diag], text) from None


def sweepfile_key(sweepfile: Path) -> str | None:
    """The cache key of the sweepfile as it is now (its text and full path,
    the compiler's identity), or None when it cannot be read. With the
    files it reads unchanged (files_unchanged()), the same key means the
    same graph."""
    try:
        text = read_sweepfile(sweepfile)
    except (OSError, SweepfileError):
        return None
    return cache_key(text, sweepfile.resolve().parent / sweepfile.name)


def files_unchanged(files: Sequence[tuple[str, str]]) -> bool:
    """Whether each file the compiler read has the digest it had then (a missing one, still missing)."""
    return all((digest(Path(p)) or ABSENT) == want for p, want in files)


def cache_key(text: str, sweepfile: Path) -> str:
    h = short_sha256()
    for part in (CACHE_FORMAT.decode(), sys.version, str(sweepfile), *code_identity()):
        h.update(part.encode("utf-8", "surrogatepass") + b"\0")
    h.update(text.encode("utf-8", "surrogatepass"))
    return h.hexdigest()


def code_identity() -> list[str]:
    """Size and mtime of every file that decides what a sweepfile compiles to."""
    pkg = Path(__file__).resolve().parent.parent
    return file_stamps([*sorted((pkg / "lang").glob("*.py")), pkg / "hashing.py", pkg / "values.py", pkg / "errors.py",
                        pkg / "lang" / "grammar" / "sweepfile.lark", pkg.parent / "grammar" / "sweepfile.lark"])


def file_stamps(files: Sequence[Path]) -> list[str]:
    """"path:size:mtime_ns" of each file ("path:-" when it is missing): code that, changed, decides otherwise."""
    out = []
    for f in files:
        try:
            st = os.stat(f)
            out.append(f"{f}:{st.st_size}:{st.st_mtime_ns}")
        except OSError:
            out.append(f"{f}:-")
    return out


def digest(path: Path) -> str | None:
    h = bulk_sha256()()
    if os.path.isdir(path):
        # a template folder (templates:): what is in it decides the graph
        for top, dirs, names in os.walk(path):
            dirs.sort()
            for n in sorted(names):
                h.update(os.path.relpath(os.path.join(top, n), path).encode("utf-8", "surrogateescape") + b"\0")
        return "dir:" + h.hexdigest()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except OSError:
        return None
    return h.hexdigest()
