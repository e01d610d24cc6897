"""-D overrides that make a sweep too big: the error is the -D's."""

from __future__ import annotations

from pathlib import Path

import pytest

from sweepc.cli import main

SWEEPFILE = '''
param a = [1, 2]
param b = [1, 2]
param c = [1, 2]
sweep g = a * b
rule r over g:
    shell: "true"
rule q over a * b * c:
    shell: "true"
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


def test_a_d_too_big_for_a_sweep_too_is_one_error_at_the_d_whose_hint_works(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (project / "sweepfile").write_text("max_psets = 100\n" + SWEEPFILE)
    code, out, err = cli(capsys, "-D", "a=range(200)", "check")
    assert code == 2 and out == ""
    assert err == (
        "-D:1:3: range() makes 200 values; the limit is 100\n"
        "  a=range(200)\n"
        "    ^^^^^^^^^^\n"
        "  hint: the limit is the sweepfile's (-D sets parameters, not settings): if you mean it, "
        "write max_psets = 800 there (the sweep of rule 'q' then has 800 psets)\n"
    )
    # and the hint works
    (project / "sweepfile").write_text("max_psets = 800\n" + SWEEPFILE)
    code, out, err = cli(capsys, "-D", "a=range(200)", "check")
    assert code == 0, err


def test_a_sweep_too_big_only_because_of_a_d_is_shown_at_the_d(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (project / "sweepfile").write_text("max_psets = 1000\n" + SWEEPFILE)
    code, out, err = cli(capsys, "-D", "b=range(300)", "check")
    assert code == 2 and out == ""
    assert err == (
        "-D:1:3: with this value, the sweep of rule 'q' has 1,200 psets; the limit is 1,000\n"
        "  b=range(300)\n"
        "    ^^^^^^^^^^\n"
        "  hint: the limit is the sweepfile's (-D sets parameters, not settings): if you mean it, write max_psets = 1200 there\n"
    )


def test_a_sweep_too_big_without_a_d_is_still_the_sweepfiles(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (project / "sweepfile").write_text("max_psets = 1000\n" + SWEEPFILE.replace("param a = [1, 2]", "param a = range(600)"))
    code, out, err = cli(capsys, "-D", "b=[1, 2]", "check")  # an override, but not what made it too big
    assert code == 2
    assert err.splitlines()[0] == "sweepfile:6:11: this sweep has 1,200 psets; the limit is 1,000"
    assert err.splitlines()[3] == "  hint: if you mean it, raise the limit with the setting max_psets = 1200"
