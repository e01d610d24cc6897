"""docs/cli.md says what `sweepc --help` and `sweepc VERB --help` say.

For every command: a section `## sweepc VERB` exists; every option string of
its `--help` (`-j`, `--jobs`, ...), every positional argument and every
choice (`{table,csv,json}`) appear in the first column of that section's
table; and the table names no option the command does not have. The same
for the global options under `## Global options`. New options or commands
(the SLURM backend adds some) fail this test until cli.md describes them.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from sweepc.cli import main

CLI_MD = Path(__file__).resolve().parent.parent / "docs" / "cli.md"
OPTION = re.compile(r"(?<![\w-])(--?[A-Za-z][\w-]*)")


def help_text(*args: str, capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main([*args, "--help"])
    assert e.value.code == 0
    return capsys.readouterr().out


def parse_help(text: str) -> tuple[set[str], set[str], set[str]]:
    """(option strings, positional names, choices) of an argparse --help text."""
    options: set[str] = set()
    positionals: set[str] = set()
    choices: set[str] = set()
    section = None
    for line in text.splitlines():
        if line and not line.startswith(" "):
            section = line.rstrip(":")
            continue
        if not re.match(r"^  \S", line):
            continue  # not an argument: a wrapped description, or a subcommand listed under COMMAND
        column = re.split(r"\s{2,}", line.strip())[0]
        for group in re.findall(r"\{([^}]*)\}", column):
            choices.update(group.split(","))
        if section == "options":
            options.update(OPTION.findall(re.sub(r"\{[^}]*\}", "", column)))
        elif section == "positional arguments":
            positionals.add(column)
    return options, positionals, choices


def verbs(text: str) -> list[str]:
    m = re.search(r"\{([^}]*)\}", text.split("\n")[0])  # usage: sweepc ... {check,psets,...} ...
    if m:
        return m.group(1).split(",")
    # metavar COMMAND: the verbs are listed under it, one per line, 4 spaces in
    return re.findall(r"^    (\w+)\s", text, flags=re.MULTILINE)


def sections() -> dict[str, str]:
    out: dict[str, str] = {}
    name = None
    for line in CLI_MD.read_text().splitlines():
        m = re.match(r"^## (.*)$", line)
        if m:
            name = m.group(1).strip()
            out[name] = ""
        elif name is not None:
            out[name] += line + "\n"
    return out


def first_column(section: str) -> list[str]:
    """The first cell of each row of the section's options table."""
    cells = []
    for line in section.splitlines():
        if line.startswith("|") and not re.match(r"^\|\s*(-+|option)\s*\|", line):
            cells.append(line.split("|")[1].strip())
    return cells


def documented(section: str) -> tuple[set[str], set[str]]:
    """(option strings, every word-ish token) in the first column of a section's table."""
    opts: set[str] = set()
    tokens: set[str] = set()
    for cell in first_column(section):
        for code in re.findall(r"`([^`]*)`", cell):
            opts.update(OPTION.findall(re.sub(r"\{[^}]*\}", "", code)))
            tokens.update(re.findall(r"[\w.-]+", code.replace("{", " ").replace("}", " ").replace(",", " ")))
    return opts, tokens


def check(name: str, text: str, section: str) -> list[str]:
    problems = []
    opts, positionals, choices = parse_help(text)
    doc_opts, doc_tokens = documented(section)
    for o in sorted(opts - doc_opts):
        problems.append(f"{name}: option {o} is in --help but not in docs/cli.md")
    for o in sorted(doc_opts - opts):
        problems.append(f"{name}: docs/cli.md names option {o}, which --help does not have")
    lower_tokens = {t.lower() for t in doc_tokens}
    for pos in sorted(positionals):
        words = re.findall(r"[\w.-]+", pos.replace(",", " "))
        if not {w.lower() for w in words} <= lower_tokens:  # `sweep` in --help may be SWEEP here
            problems.append(f"{name}: positional argument {pos} is not in docs/cli.md's table")
    for c in sorted(choices):
        if c not in doc_tokens:
            problems.append(f"{name}: choice {c!r} is not in docs/cli.md's table")
    return problems


def test_every_command_has_a_section_and_no_section_is_stale(capsys: pytest.CaptureFixture[str]) -> None:
    top = help_text(capsys=capsys)
    want = {f"sweepc {v}" for v in verbs(top)}
    have = {s for s in sections() if s.startswith("sweepc ")}
    assert want, top
    assert want - have == set(), f"commands without a section in docs/cli.md: {sorted(want - have)}"
    assert have - want == set(), f"sections in docs/cli.md for commands sweepc does not have: {sorted(have - want)}"


def test_global_options_match_help(capsys: pytest.CaptureFixture[str]) -> None:
    problems = check("sweepc", help_text(capsys=capsys), sections()["Global options"])
    assert not problems, "\n".join(problems)


def test_each_commands_options_match_its_help(capsys: pytest.CaptureFixture[str]) -> None:
    secs = sections()
    problems = []
    for v in verbs(help_text(capsys=capsys)):
        section = secs.get(f"sweepc {v}")
        if section is None:
            continue  # reported by the test above
        problems += check(f"sweepc {v}", help_text(v, capsys=capsys), section)
    assert not problems, "\n".join(problems)


def test_the_installed_command_prints_the_same_help() -> None:
    """The in-process help above is what the `sweepc` on PATH prints."""
    p = subprocess.run(["sweepc", "build", "--help"], check=False, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0
    assert parse_help(p.stdout)[0] >= {"-j", "--jobs", "--backend", "--where", "--psets"}


def test_the_checker_notices_a_missing_and_an_extra_option() -> None:
    help_ = "usage: sweepc x [-h] [--a A] [--fmt {p,q}]\n\noptions:\n  -h, --help  help\n  --a A       an a\n  --fmt {p,q}\n"
    section = "| option | meaning |\n|---|---|\n| `-h`, `--help` | h |\n| `--b B` | b |\n| `--fmt {p}` | f |\n"
    problems = check("sweepc x", help_, section)
    assert problems == [
        "sweepc x: option --a is in --help but not in docs/cli.md",
        "sweepc x: docs/cli.md names option --b, which --help does not have",
        "sweepc x: choice 'q' is not in docs/cli.md's table",
    ]
