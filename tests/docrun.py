"""Run the shell sessions written in Markdown and compare their output.

Used by test_docs.py (docs/tutorial.md, docs/index.md) and test_examples.py
(examples/*/README.md), so the commands the docs show are the commands the
tests run, and the output they show is the output sweepc prints.

The convention (also explained at the end of docs/tutorial.md):

* A fenced block whose info string is ``console`` is a shell session: a line
  ``$ COMMAND`` is a command (a line ending in ``\\`` continues on the next
  one), the lines after it up to the next ``$`` line are its output
  (stdout and stderr together, as a terminal shows them).
* A command must exit with 0, unless its line says ``# exits with N``.
* A block whose info string is ``<language> file=PATH`` (e.g.
  ````` ```python file=simulate.py `````) is written to PATH, relative to the
  folder the session is in at that point, before the commands after it run.
* ``console slurm`` blocks need a SLURM cluster: they run only when the test
  has one (the ``slurm_cluster`` fixture), and are skipped otherwise.
* Any other block (``sh``, ``text``, ...) is for reading only.

Commands a page shows outside its sessions (``sh`` blocks, ``python``
blocks without ``file=``, code spans such as ```sweepc results --psets 0:3```)
are run by ``Session.run_shown`` after the sessions; they must exit with 0.

Output is compared after normalising both sides: trailing blanks and blank
lines at the end are dropped, runs of spaces count as one (table columns
widen and narrow with their values), durations (``0.4s``, ``1m02s``), UTC
times and run ids (UUIDs) are replaced by placeholders, and the progress
line a build prints when its output is not a terminal (``[3/7] 3 done, ...
elapsed``) is left out: on a terminal it is rewritten in place and erased.
A line ``...`` in the shown output stands for any number of lines.
"""

from __future__ import annotations

import bisect
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

FENCE = re.compile(r"^(```+)\s*(.*)$")
EXIT_NOTE = re.compile(r"#\s*exits with (\d+)")


@dataclass(frozen=True)
class Command:
    text: str  # the command as bash runs it
    expected: tuple[str, ...]  # the output shown below it
    exit_code: int
    line: int  # where it is in the Markdown file


@dataclass(frozen=True)
class Block:
    kind: str  # "console" or "file"
    line: int
    tags: frozenset[str] = frozenset()
    path: str | None = None  # for file blocks
    text: str = ""  # for file blocks
    commands: tuple[Command, ...] = field(default_factory=tuple)


def parse(markdown: str) -> list[Block]:
    """The runnable blocks of a Markdown text, in order."""
    lines = markdown.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, info = m.group(1), m.group(2).split()
        start = i + 1
        j = start
        while j < len(lines) and lines[j].strip() != fence:
            j += 1
        body = lines[start:j]
        i = j + 1
        if not info:
            continue
        file_arg = next((w[5:] for w in info[1:] if w.startswith("file=")), None)
        if file_arg is not None:
            blocks.append(Block("file", start, path=file_arg, text="\n".join(body) + "\n"))
        elif info[0] == "console":
            blocks.append(Block("console", start, tags=frozenset(info[1:]), commands=_commands(body, start)))
    return blocks


def _commands(body: list[str], first_line: int) -> tuple[Command, ...]:
    out: list[Command] = []
    k = 0
    while k < len(body):
        line = body[k]
        if not line.startswith("$ "):
            raise ValueError(f"line {first_line + k + 1}: a console block must start with '$ COMMAND', not {line!r}")
        at = first_line + k + 1
        parts = [line[2:]]
        while parts[-1].endswith("\\") and k + 1 < len(body):
            k += 1
            parts.append(body[k])
        text = "\n".join(parts)
        k += 1
        expected: list[str] = []
        while k < len(body) and not body[k].startswith("$ "):
            expected.append(body[k])
            k += 1
        note = EXIT_NOTE.search(text)
        out.append(Command(text, tuple(expected), int(note.group(1)) if note else 0, at))
    return tuple(out)


# -- commands shown outside sessions ---------------------------------------------

SHOWN_PROGRAMS = ("sweepc", "python3", "bash", "tar", "ls", "cat", "cd")
_SPAN = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")


def shown_commands(markdown: str) -> list[tuple[int, str, str]]:
    """(line, kind, text) of the commands a page shows outside its console
    sessions: in ``sh`` blocks (one per line, comments dropped), code spans
    in the prose that start with a program a reader would type
    (``sweepc ...``, ``python3 -c ...``), and ``python`` blocks without
    ``file=`` (kind "python": the whole block is one program)."""
    lines = markdown.splitlines()
    out: list[tuple[int, str, str]] = []
    prose: list[tuple[int, str]] = []  # the paragraph so far: a code span may go over a line break

    def spans() -> None:
        if prose:
            text = " ".join(line for _, line in prose)
            starts = [0]
            for _, line in prose[:-1]:
                starts.append(starts[-1] + len(line) + 1)
            for m in _SPAN.finditer(text):
                span = m.group(1)
                if span.split(" ", 1)[0] in SHOWN_PROGRAMS and " " in span:
                    at = prose[bisect.bisect_right(starts, m.start()) - 1][0]  # the line it starts on
                    out.append((at, "sh", span))
            prose.clear()

    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if m:
            spans()
            fence, info = m.group(1), m.group(2).split()
            j = i + 1
            while j < len(lines) and lines[j].strip() != fence:
                j += 1
            body = lines[i + 1:j]
            if info and info[0] in ("sh", "bash", "shell") and len(info) == 1:
                for k, line in enumerate(body):
                    text = re.sub(r"\s+#.*$", "", line).strip()
                    if text and not text.startswith("#"):
                        out.append((i + 2 + k, "sh", text))
            elif info and info[0] == "python" and len(info) == 1:
                out.append((i + 2, "python", "\n".join(body) + "\n"))
            i = j + 1
            continue
        if lines[i].strip():
            prose.append((i + 1, lines[i]))
        else:
            spans()
        i += 1
    spans()
    return out


# -- comparing output --------------------------------------------------------

_SUBS = [
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b"), "<RUN-ID>"),
    (re.compile(r"\b\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(\.\d+)?(\+00:00|Z)?"), "<TIME>"),
    (re.compile(r"\b(\d+h)?(\d+m)?\d+(\.\d+)?s\b"), "<DURATION>"),
    # SLURM job ids: "job 170", "job 170_3", "afterok:170", "as jobs 76, 77"
    (re.compile(r"\b(job |after(?:ok|corr|any|notok):)\d+(?:_\d+)?"), r"\1<JOB>"),
    (re.compile(r"\bjobs \d+(?:_\d+)?(?:, \d+(?:_\d+)?)*"), "jobs <JOBS>"),
]
_PROGRESS = re.compile(r"^\[\d+/\d+\] \d+ done, .* elapsed")


def normalise(lines: list[str] | tuple[str, ...]) -> list[str]:
    out = []
    for line in lines:
        line = line.rstrip()
        if _PROGRESS.match(line):
            continue
        for rx, sub in _SUBS:
            line = rx.sub(sub, line)
        out.append(re.sub(r"[ \t]+", " ", line))
    while out and not out[-1]:
        out.pop()
    return out


def matches(expected: list[str], actual: list[str]) -> bool:
    """expected (with '...' lines standing for any lines) matches actual."""
    if not expected:
        return not actual
    head, rest = expected[0], expected[1:]
    if head.strip() == "...":
        return any(matches(rest, actual[k:]) for k in range(len(actual) + 1))
    return bool(actual) and head == actual[0] and matches(rest, actual[1:])


# -- running -----------------------------------------------------------------


@dataclass
class Session:
    """A shell session in a folder: runs the blocks of one Markdown file in order."""

    cwd: Path
    env: dict[str, str] | None = None
    timeout: float = 120
    transcript: list[str] = field(default_factory=list)

    def write(self, block: Block) -> None:
        assert block.path is not None
        p = self.cwd / block.path
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(block.text)

    def run(self, cmd: Command, where: str) -> str:
        env = dict(self.env if self.env is not None else os.environ)
        env["PYTHONUNBUFFERED"] = "1"  # stdout and stderr interleave as on a terminal
        with tempfile.NamedTemporaryFile("r", suffix=".cwd") as cwd_file:
            script = f"{cmd.text}\n__rc=$?\npwd > {cwd_file.name}\nexit $__rc\n"
            p = subprocess.run(
                ["bash", "-c", script], check=False, cwd=self.cwd, env=env, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, text=True, timeout=self.timeout, stdin=subprocess.DEVNULL,
            )
            new_cwd = cwd_file.read().strip()
        if new_cwd:
            self.cwd = Path(new_cwd)
        self.transcript.append(f"$ {cmd.text}\n{p.stdout}")
        problems = []
        if p.returncode != cmd.exit_code:
            problems.append(f"exit code {p.returncode}, the doc says {cmd.exit_code}")
        want, got = normalise(cmd.expected), normalise(p.stdout.splitlines())
        if not matches(want, got):
            problems.append("output differs")
        if problems:
            raise AssertionError(
                f"{where}:{cmd.line}: `{cmd.text}`: {'; '.join(problems)}\n"
                f"--- shown in the doc (normalised)\n" + "\n".join(want) + "\n"
                "--- printed (normalised)\n" + "\n".join(got) + "\n"
                f"--- printed (raw)\n{p.stdout}"
            )
        return p.stdout

    def run_shown(self, markdown: str, where: str, skip: tuple[str, ...] = ()) -> int:
        """Run every command shown_commands() finds; each must exit with 0
        (its output is not compared: the page does not show it). Commands
        containing one of `skip` (placeholders like `…`, SLURM without a
        cluster) are left out. Returns how many ran."""
        n = 0
        for line, kind, text in shown_commands(markdown):
            if any(s in text for s in skip):
                continue
            if kind == "python":
                with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
                    f.write(text)
                cmd = Command(f"python3 {f.name}", (), 0, line)
            else:
                cmd = Command(text, (), 0, line)
            env = dict(self.env if self.env is not None else os.environ)
            p = subprocess.run(["bash", "-c", cmd.text], check=False, cwd=self.cwd, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, timeout=self.timeout, stdin=subprocess.DEVNULL)
            self.transcript.append(f"$ {cmd.text}\n{p.stdout}")
            if p.returncode != 0:
                raise AssertionError(f"{where}:{line}: `{text.strip()}` exited with {p.returncode}\n{p.stdout}")
            n += 1
        return n

    def run_blocks(self, blocks: list[Block], where: str, slurm: bool = False) -> int:
        """Run every block; `slurm` blocks only when slurm=True. Returns how many commands ran."""
        n = 0
        for b in blocks:
            if b.kind == "file":
                self.write(b)
            elif "slurm" in b.tags and not slurm:
                continue
            else:
                for c in b.commands:
                    self.run(c, where)
                    n += 1
        return n
