"""Errors are data: a Diagnostic names a place in a file, a message and a hint.

They are rendered once, at the boundary (the CLI, or ``str()`` of the
exception the API raises), as::

    sweepfile:3:18: unknown parameter 'bb'
      sweep grid = a * bb
                       ^^
      hint: did you mean 'b'?
"""

from __future__ import annotations

import errno
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Span:
    """A region of the sweepfile; lines and columns count from 1."""

    line: int
    column: int
    end_line: int
    end_column: int


@dataclass(frozen=True, slots=True)
class Diagnostic:
    message: str
    span: Span | None
    hint: str
    filename: str
    # the line number to show, where it differs from span.line (the text of a
    # -D override is kept after the sweepfile's lines, but it is line 1 of "-D")
    shown_line: int | None = None
    # the text of `filename` when it is not the sweepfile (a template file);
    # a span with column 0 then names a whole line: `file:line: message`
    source: str | None = None


class SweepcError(Exception):
    """Base of every error sweepc raises on purpose (exit code 2 in the CLI)."""


class SweepfileError(SweepcError):
    """One or more mistakes in a sweepfile, each with its place and a hint."""

    def __init__(self, diagnostics: Sequence[Diagnostic], source: str) -> None:
        self.diagnostics = tuple(diagnostics)
        self.source = source
        super().__init__(self.render())

    def render(self) -> str:
        lines = self.source.splitlines()
        return "\n".join(render(d, lines if d.source is None else d.source.splitlines()) for d in self.diagnostics)


class UsageError(SweepcError):
    """A command-line or API mistake that is not located in the sweepfile."""

    def __init__(self, message: str, hint: str = "") -> None:
        self.message = message
        self.hint = hint
        super().__init__(message + (f"\n  hint: {hint}" if hint else ""))


class StateError(SweepcError):
    """The state store cannot be used as it is (corrupt, locked, other version)."""


class MachineError(SweepcError):
    """sweepc cannot write its own files: a full disk, a read-only file or
    folder, an I/O error (exit code 3 in the CLI). Raised only where the
    store is left consistent: nothing is recorded done that did not finish."""


_FULL = (errno.ENOSPC, errno.EDQUOT)
_READ_ONLY = (errno.EROFS, errno.EACCES, errno.EPERM)


BUILD_AGAIN = "then build again; jobs whose end was not recorded run again"


def machine_error(path: str, folder: str, e: BaseException, then: str = BUILD_AGAIN) -> MachineError | None:
    """The MachineError for failing to write `path` (in `folder`), or None when
    `e` is not a failure of the machine (a full disk, read-only, I/O)."""
    code = e.errno if isinstance(e, OSError) else None
    text = str(e).lower() if not isinstance(e, OSError) else ""
    why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
    if code in _FULL or "disk is full" in text:
        return MachineError(
            f"cannot write {path}: the disk is full ({why}).\n"
            f"  hint: free space on the disk that holds {folder} (df -h {folder}), {then}"
        )
    if code in _READ_ONLY or "readonly" in text or "read-only" in text or "unable to open" in text:
        return MachineError(
            f"cannot write {path}: it is read-only ({why}).\n"
            f"  hint: make {folder} and the files in it writable (check: ls -la {folder}, lsattr, mount), then try again"
        )
    if code == errno.EIO or "disk i/o error" in text:
        return MachineError(f"cannot write {path}: input/output error ({why}).\n  hint: check the disk that holds {folder}")
    return None


def render(diag: Diagnostic, source_lines: Sequence[str]) -> str:
    if diag.span is None:
        head = f"{diag.filename}: {diag.message}"
        return head + (f"\n  hint: {diag.hint}" if diag.hint else "")
    span = diag.span
    if span.column == 0:  # a whole line (jinja2 knows lines, not columns)
        out = [f"{diag.filename}:{span.line}: {diag.message}"]
        if 1 <= span.line <= len(source_lines):
            out.append("  " + source_lines[span.line - 1])
        return "\n".join(out + ([f"  hint: {diag.hint}"] if diag.hint else []))
    out = [f"{diag.filename}:{diag.shown_line or span.line}:{span.column}: {diag.message}"]
    if 1 <= span.line <= len(source_lines):
        text = source_lines[span.line - 1]
        out.append("  " + text)
        # keep tabs so the caret lines up under tab-indented text
        prefix = "".join(c if c == "\t" else " " for c in text[: span.column - 1])
        if span.end_line == span.line and span.end_column > span.column:
            width = span.end_column - span.column
        else:
            width = max(1, len(text) - span.column + 1) if span.end_line > span.line else 1
        out.append("  " + prefix + "^" * max(1, width))
    if diag.hint:
        out.append(f"  hint: {diag.hint}")
    return "\n".join(out)


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """A hint naming the closest candidate, or '' when nothing is close."""
    import difflib  # only for a mistake

    match = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f"did you mean '{match[0]}'?" if match else ""


def listing(candidates: Iterable[str], limit: int = 8) -> str:
    names = sorted(candidates)
    if not names:
        return "(none)"
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def plural(n: int, word: str, words: str | None = None) -> str:
    """`1 job`, `2 jobs` (`words` when adding an s will not do)."""
    return f"{n} {word if n == 1 else (words or word + 's')}"
