"""Templates: a template removed from a templates: folder leaves the job
folders, template errors name the pset as the sweepfile writes it, includes.

Real local builds in a tmp project through the CLI (sweepc.cli.main).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import sweepc
from sweepc.cli import main
from sweepc.lang import graph
from sweepc.lang import templates as lang_templates

SWEEPFILE = '''
param a = [1, 2]

rule calc over a:
    templates: "templates/calc/"
    output: "out.txt"
    shell: "ls *.inp > {output}; echo mine > notes.inp"
'''


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    p = tmp_path / "proj"
    (p / "templates" / "calc" / "sub").mkdir(parents=True)
    (p / "sweepfile").write_text(SWEEPFILE)
    (p / "templates" / "calc" / "main.inp.j2").write_text("a = {{ a }}\n")
    monkeypatch.chdir(p)
    return p


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def job_dir(project: Path, **params: object) -> Path:
    g = sweepc.load(project).graph
    (job,) = [j for j in g.jobs if all(j.params[k] == v for k, v in params.items())]
    return g.job_dir(job)


def test_a_template_removed_from_its_folder_leaves_the_job_folders_before_they_rerun(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    extra = project / "templates" / "calc" / "extra.inp"
    extra.write_text("x\n")
    (project / "templates" / "calc" / "sub" / "deep.inp").write_text("{{ a }}\n")
    assert cli(capsys, "build")[0] == 0
    d = job_dir(project, a=1)
    assert (d / "out.txt").read_text() == "extra.inp\nmain.inp\n"
    assert (d / "extra.inp").exists() and (d / "sub" / "deep.inp").exists()
    extra.unlink()
    (project / "templates" / "calc" / "sub" / "deep.inp").unlink()
    (project / "templates" / "calc" / "sub").rmdir()
    # --explain names a removed template (it said only "input changed")
    code, out, _ = cli(capsys, "build", "-n", "--explain")
    assert out.splitlines()[0].endswith(": input changed: template templates/calc/extra.inp was removed"), out
    assert cli(capsys, "build")[0] == 0
    # the code reading *.inp sees only the templates there are now; a file of the command's own stays
    assert (d / "out.txt").read_text() == "main.inp\nnotes.inp\n"
    assert not (d / "extra.inp").exists() and not (d / "sub").exists()
    assert (d / "notes.inp").read_text() == "mine\n"


def test_removing_a_rendered_template_never_goes_through_a_link(project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (project / "templates" / "calc" / "sub" / "deep.inp").write_text("{{ a }}\n")
    (project / "templates" / "calc" / "top.inp").write_text("{{ a }}\n")
    assert cli(capsys, "build")[0] == 0
    d = job_dir(project, a=1)
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "deep.inp").write_text("keep")
    (outside / "top.inp").write_text("keep")
    for p in (d / "sub" / "deep.inp", d / "sub"):
        p.unlink() if p.is_file() else p.rmdir()
    (d / "sub").symlink_to(outside)  # a folder on the way is a link now
    (d / "top.inp").unlink()
    (d / "top.inp").symlink_to(outside / "top.inp")  # and a rendered file is one
    (project / "templates" / "calc" / "sub" / "deep.inp").unlink()
    (project / "templates" / "calc" / "sub").rmdir()
    (project / "templates" / "calc" / "top.inp").unlink()
    assert cli(capsys, "build")[0] == 0
    assert sorted(p.read_text() for p in outside.iterdir()) == ["keep", "keep"]
    assert (d / "sub").is_symlink()  # not sweepc's: the link stays
    assert not os.path.lexists(d / "top.inp")  # the link lost, not its target


def test_a_template_named_like_the_list_of_rendered_templates_is_refused(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert lang_templates.RENDERED_LIST_NAME == graph.RENDERED_LIST_NAME in graph.RESERVED_NAMES
    (project / "templates" / "calc" / ".sweepc-templates").write_text("x\n")
    code, out, err = cli(capsys, "check")
    assert code == 2
    assert err.splitlines()[0] == "sweepfile:5:16: template 'templates/calc/.sweepc-templates' writes '.sweepc-templates', a file sweepc writes itself"


MIXED = '''
param n = [1]
param title = "my run"
param flag = [true]
param x = [0.5]

rule sim over n * title * flag * x:
    templates: "templates/in.j2"
    output: "out.txt"
    shell: "cat in > {output}"
'''


def test_a_template_error_names_the_pset_as_the_sweepfile_writes_it(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (project / "sweepfile").write_text(MIXED)
    (project / "templates" / "in.j2").write_text("x\n{{ 1 / 0 }}\n")
    code, out, err = cli(capsys, "build")
    assert code == 2 and out == ""
    assert err == (
        "templates/in.j2:2: ZeroDivisionError: division by zero\n"
        "  {{ 1 / 0 }}\n"
        "  hint: it failed for pset n=1, title=\"my run\", flag=true, x=0.5 of rule 'sim'\n"
    )


@pytest.mark.parametrize(("line", "tag"), [
    ('{% include "other.j2" %}', "include"),
    ('{% extends "base.j2" %}', "extends"),
    ('{% import "macros.j2" as m %}', "import"),
    ('{% from "macros.j2" import box %}', "import"),
])
def test_a_template_that_reads_another_template_is_refused_when_compiled(
        project: Path, capsys: pytest.CaptureFixture[str], line: str, tag: str) -> None:
    (project / "sweepfile").write_text(MIXED)
    (project / "templates" / "in.j2").write_text(f"x\n{line}\n")
    (project / "templates" / "other.j2").write_text("y\n")
    for command in ("check", "build"):
        code, out, err = cli(capsys, command)
        assert code == 2 and out == ""
        assert err == (
            f"templates/in.j2:2: {{% {tag} %}} is not supported: a template cannot read another template\n"
            f"  {line}\n"
            "  hint: each template is rendered on its own: write what it needs from the other file into this one (template of rule 'sim')\n"
        )
    assert not (project / "calc").exists()
