"""sweepc clean all: what it says when the workdir is a link."""

from __future__ import annotations

from pathlib import Path

import pytest

from sweepc.cli import main

SWEEPFILE = '''
param n = [1, 2]
rule r over n:
    output: "o"
    shell: "echo {n} > {output}"
'''


def test_clean_all_of_a_linked_workdir_says_the_link_and_its_folder_are_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    p, scratch = tmp_path / "proj", tmp_path / "scratch"
    p.mkdir()
    scratch.mkdir()
    (p / "sweepfile").write_text(SWEEPFILE)
    (p / "calc").symlink_to("../scratch")
    monkeypatch.chdir(p)
    assert main(["build"]) == 0
    capsys.readouterr()
    assert main(["clean", "all", "-n"]) == 0
    assert capsys.readouterr().out == (
        "would remove 2 job folders in calc/ (a link to ../scratch; the link and its folder are kept)\n"
        "would remove .sweepc/\n"
    )
    assert main(["clean", "all", "-y"]) == 0
    assert capsys.readouterr().out == (
        "removed 2 job folders in calc/ (a link to ../scratch; the link and its folder are kept)\n"
        "removed .sweepc/\n"
    )
    assert (p / "calc").is_symlink() and scratch.is_dir() and list(scratch.iterdir()) == []
    assert not (p / ".sweepc").exists()


def test_clean_all_of_a_real_workdir_still_removes_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "proj"
    p.mkdir()
    (p / "sweepfile").write_text(SWEEPFILE)
    monkeypatch.chdir(p)
    assert main(["build"]) == 0
    capsys.readouterr()
    assert main(["clean", "all", "-y"]) == 0
    assert capsys.readouterr().out == "removed calc/\nremoved .sweepc/\n"
    assert not (p / "calc").exists()
