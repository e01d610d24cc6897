"""python: rules: what sweepc says about the function a python: field names."""

from __future__ import annotations

from pathlib import Path

import pytest

from sweepc.cli import main

SWEEPFILE = '''
param n = [1]

rule sim over n:
    python: "m.py:run"
'''


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    p = tmp_path / "proj"
    p.mkdir()
    (p / "sweepfile").write_text(SWEEPFILE)
    monkeypatch.chdir(p)
    return p


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(("module", "says"), [
    ("run = 3\n", "TypeError: run in m.py is an int, not a function"),
    ("run = 'x'\n", "TypeError: run in m.py is a str, not a function"),
    ("run = None\n", "TypeError: run in m.py is None, not a function"),
])
def test_a_name_that_is_not_a_function_is_said_to_be_no_function(project: Path, capsys: pytest.CaptureFixture[str], module: str, says: str) -> None:
    (project / "m.py").write_text(module)
    code, out, err = cli(capsys, "build")
    assert code == 2 and out == ""
    assert err == (
        "sweepc: python: \"m.py:run\" of rule 'sim' cannot be imported:\n"
        f"    {says}\n"
        "  hint: fix the module; sweepc imports it from the project folder, as its workers do\n"
    )
    assert not (project / "calc").exists()


@pytest.mark.parametrize(("field", "message", "hint"), [
    (":run", "python: \":run\" names no module", 'write the file before the colon: python: "model.py:run"'),
    ("m.py:run:x", "python: 'run:x' is not a function name", 'the function is one Python name after the colon: python: "m.py:run"'),
])
def test_a_python_field_with_a_colon_too_many_or_no_module_says_so(project: Path, capsys: pytest.CaptureFixture[str], field: str, message: str, hint: str) -> None:
    (project / "m.py").write_text("def run(pset):\n    return None\n")
    (project / "sweepfile").write_text(SWEEPFILE.replace("m.py:run", field))
    code, out, err = cli(capsys, "check")
    assert code == 2 and out == ""
    lines = err.splitlines()
    assert lines[0] == f"sweepfile:5:13: {message}"
    assert lines[-1] == f"  hint: {hint}"
