"""Golden error tests: every mistake a sweepfile can make, and what `sweepc check` says.

Adding a case is adding a file: ``tests/cases/errors/NAME.sweep`` holds the
sweepfile, ``NAME.err`` the exact stderr of ``sweepc check`` (``file:line:col:
message``, the source line, a caret line, ``  hint: ...``), and an optional
``NAME.files/`` folder holds files the sweepfile reads (CSV files).

Maintainers: ``SWEEPC_UPDATE_GOLDEN=1 pytest tests/test_errors_golden.py``
rewrites the .err files from what sweepc prints now. Read every changed file
before committing it: the text is what users see.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from sweepc.cli import main

CASES = Path(__file__).parent / "cases" / "errors"
UPDATE = os.environ.get("SWEEPC_UPDATE_GOLDEN", "") not in ("", "0")

CASE_FILES = sorted(CASES.glob("*.sweep"))


def run_check(case: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    project = tmp_path / "project"
    project.mkdir()
    shutil.copyfile(case, project / "sweepfile")
    extra = case.with_suffix(".files")
    if extra.is_dir():
        shutil.copytree(extra, project, dirs_exist_ok=True)
    monkeypatch.chdir(project)
    code = main(["check"])
    out, err = capsys.readouterr()
    return code, out, err


def test_there_are_cases() -> None:
    assert len(CASE_FILES) >= 40


@pytest.mark.parametrize("case", CASE_FILES, ids=[c.stem for c in CASE_FILES])
def test_error_case(case: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_check(case, tmp_path, monkeypatch, capsys)
    golden = case.with_suffix(".err")
    if UPDATE:
        golden.write_text(err, encoding="utf-8")
    assert code == 2, f"exit code {code}, stdout {out!r}, stderr {err!r}"
    assert out == ""
    assert "Traceback" not in err
    assert golden.exists(), f"{golden.name} is missing; run with SWEEPC_UPDATE_GOLDEN=1 and read it"
    assert err == golden.read_text(encoding="utf-8")


@pytest.mark.parametrize("case", CASE_FILES, ids=[c.stem for c in CASE_FILES])
def test_error_shape(case: Path) -> None:
    """Every diagnostic in a golden file has a place, the line, a caret and a hint."""
    text = case.with_suffix(".err").read_text(encoding="utf-8")
    lines = text.splitlines()
    source = case.read_text(encoding="utf-8").splitlines()
    heads = [i for i, ln in enumerate(lines) if re.match(r"^sweepfile:\d+:\d+: ", ln)]
    if not heads and re.match(r"^templates/[^:]+:\d+: ", text):
        # a template's mistake: `template-file:line: message`, the line, a hint (jinja2 knows no columns)
        m = re.match(r"^(templates/[^:]+):(\d+): ", lines[0])
        assert m, text
        template = (case.with_suffix(".files") / m.group(1)).read_text(encoding="utf-8").splitlines()
        assert lines[1] == "  " + template[int(m.group(2)) - 1]
        assert lines[2].startswith("  hint: ") and len(lines) == 3
        return
    assert heads, text
    for i in heads:
        m = re.match(r"^sweepfile:(\d+):(\d+): ", lines[i])
        assert m
        line, col = int(m.group(1)), int(m.group(2))
        # the quoted line is the source line, the caret starts at the column
        assert lines[i + 1] == "  " + source[line - 1]
        caret = lines[i + 2]
        assert re.fullmatch(r"  [ \t]*\^+", caret), caret
        assert caret.index("^") - 2 == col - 1
        assert lines[i + 3].startswith("  hint: ") and len(lines[i + 3]) > len("  hint: ")
    if len(heads) > 1:
        assert lines[-1] == f"{len(heads)} errors"
        places = [tuple(int(x) for x in re.match(r"^sweepfile:(\d+):(\d+)", lines[i]).groups()) for i in heads]  # type: ignore[union-attr]
        assert places == sorted(places)
