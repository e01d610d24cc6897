"""Job folders a simulation code can use: templates:, pset.json, temp(), view.

Real local builds in a tmp project through the CLI (sweepc.cli.main); the
bad-input messages of the compiler are golden files in tests/cases/errors/
(template_*, temp_*), the ones that need a build or a folder git cannot hold
are pinned here.
"""

from __future__ import annotations

import json
import shutil
import os
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import sweepc
from sweepc.cli import main
from sweepc.results.view import escape, value_text

SWEEPFILE = '''
param a = [1, 2]
param b = [88, 99]
param title = "my run"
sweep grid = a * b * title

rule sim over grid:
    templates: "templates/input.deck.j2", "templates/calc/"
    resources: cpus = 1
    output: "out.txt"
    shell: "cat input.deck > {output}; printenv SWEEPC_PSET_JSON > env.txt"

rule post over grid:
    input: sim
    output: "post.txt"
    shell: "cat {input} > {output}"

rule plain over a:
    output: "plain.txt"
    shell: "echo {a} > {output}"
'''

DECK = """title = {{ title }}
a = {{ a }} b = {{ b }} sum = {{ a + b }}
hash = {{ pset.hash }} rule = {{ rule }} cpus = {{ resources.cpus }} n = {{ pset | length }}
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    p = tmp_path / "proj"
    (p / "templates" / "calc" / "sub").mkdir(parents=True)
    (p / "sweepfile").write_text(SWEEPFILE)
    (p / "templates" / "input.deck.j2").write_text(DECK)
    (p / "templates" / "calc" / "params.in").write_text("x = {{ a * 2 }}\n")
    (p / "templates" / "calc" / "sub" / "mesh.bin").write_bytes(b"\x00\x01{{ a }}\xff")
    run = p / "templates" / "calc" / "run.sh.j2"
    run.write_text("#!/bin/sh\necho $HOME {{ b }}\n")
    run.chmod(0o755)
    monkeypatch.chdir(p)
    return p


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def job_dir(project: Path, rule: str, **params: object) -> Path:
    g = sweepc.load(project).graph
    (job,) = [j for j in g.jobs if j.rule == rule and all(j.params[k] == v for k, v in params.items())]
    return g.job_dir(job)


def ran(out: str) -> list[str]:
    return [ln.split(":")[0].removeprefix("run ") for ln in out.splitlines() if ln.startswith("run ")]


# -- templates ------------------------------------------------------------------


def test_templates_are_rendered_into_every_job_folder(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "build", "-j", "2")
    assert code == 0, err
    d = job_dir(project, "sim", a=2, b=99)
    h = d.name
    # raw values (no shell quoting), pset, pset.hash, rule, resources, filters
    assert (d / "input.deck").read_text() == f"title = my run\na = 2 b = 99 sum = 101\nhash = {h} rule = sim cpus = 1 n = 3\n"
    assert (d / "out.txt").read_text() == (d / "input.deck").read_text()
    # a folder keeps its layout; .j2 dropped; a binary file copied byte for byte; the x bit kept
    assert (d / "params.in").read_text() == "x = 4\n"
    assert (d / "sub" / "mesh.bin").read_bytes() == b"\x00\x01{{ a }}\xff"
    assert (d / "run.sh").read_text() == "#!/bin/sh\necho $HOME 99\n" and os.access(d / "run.sh", os.X_OK)
    assert not (d / "run.sh.j2").exists()
    # only the rule that names templates gets them
    assert sorted(p.name for p in job_dir(project, "post", a=2, b=99).iterdir()) == [".sweepc-job", "post.txt", "pset.json", "sweepc.log"]


def test_templates_and_pset_json_never_write_through_a_link(project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = job_dir(project, "sim", a=1, b=88)
    (d / "sub").mkdir(parents=True)
    outside = tmp_path / "precious"
    outside.mkdir()
    for name in ("input.deck", "pset.json", "sub/mesh.bin"):
        (outside / name.replace("/", "-")).write_text("keep")
        (d / name).symlink_to(outside / name.replace("/", "-"))
    assert cli(capsys, "build")[0] == 0
    assert sorted(p.read_text() for p in outside.iterdir()) == ["keep"] * 3
    assert not (d / "input.deck").is_symlink() and (d / "input.deck").read_text().startswith("title = my run")
    assert json.loads((d / "pset.json").read_text())["params"]["a"] == 1
    assert (d / "sub" / "mesh.bin").read_bytes() == b"\x00\x01{{ a }}\xff"


def test_editing_a_template_reruns_exactly_its_rules_jobs_and_touch_reruns_nothing(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(capsys, "build")[0] == 0
    deck = project / "templates" / "input.deck.j2"
    later = time.time() + 5
    os.utime(deck, (later, later))
    assert cli(capsys, "build") == (0, "sweepc: nothing to do (10 jobs up to date)\n", "")
    deck.write_text(DECK + "# edited\n")
    os.utime(deck, (later + 5, later + 5))
    code, out, _ = cli(capsys, "build", "-n")
    assert code == 0
    assert out.splitlines()[0] == "run sim[a=1,b=88,title=my run]: input changed: template templates/input.deck.j2"
    assert sorted(ran(out)) == sorted([f"sim[a={a},b={b},title=my run]" for a in (1, 2) for b in (88, 99)] + [f"post[a={a},b={b},title=my run]" for a in (1, 2) for b in (88, 99)])
    # a file added to a template folder too (the compiled graph is cached: the folder is part of its key)
    assert cli(capsys, "build")[0] == 0
    (project / "templates" / "calc" / "extra.txt").write_text("{{ b }}\n")
    code, out, _ = cli(capsys, "build", "-n")
    assert len(ran(out)) == 8
    assert cli(capsys, "build")[0] == 0
    assert (job_dir(project, "sim", a=1, b=99) / "extra.txt").read_text() == "99\n"
    # a binary file of a template folder counts too
    assert cli(capsys, "build")[0] == 0
    (project / "templates" / "calc" / "sub" / "mesh.bin").write_bytes(b"\x00\x02")
    code, out, _ = cli(capsys, "build", "-n")
    assert len(ran(out)) == 8 and all(not r.startswith("plain") for r in ran(out))


def test_a_template_that_fails_for_one_pset_stops_the_build_before_anything_runs(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (project / "templates" / "input.deck.j2").write_text("a = {{ a }}\n{% if a == 2 %}{{ titel }}{% endif %}\n")
    code, out, err = cli(capsys, "build")
    assert code == 2 and out == ""
    assert err == (
        "templates/input.deck.j2:2: 'titel' is undefined\n"
        "  {% if a == 2 %}{{ titel }}{% endif %}\n"
        "  hint: it failed for pset a=2, b=88, title=\"my run\" of rule 'sim'; did you mean 'title'?\n"
    )
    assert not (project / "calc").exists()  # nothing ran, not even 'plain'
    assert cli(capsys, "build", "-n") == (2, "", err)  # a dry run says so too
    # any error raised inside a template is reported the same way
    (project / "templates" / "input.deck.j2").write_text("a = {{ a }}\nr = {{ b / (a - 1) }}\n")
    code, out, err = cli(capsys, "build")
    assert code == 2
    assert err.splitlines()[0] == "templates/input.deck.j2:2: ZeroDivisionError: division by zero"
    assert err.splitlines()[2] == "  hint: it failed for pset a=1, b=88, title=\"my run\" of rule 'sim'"


def test_an_empty_template_folder_is_an_error(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (project / "templates" / "empty").mkdir()
    (project / "sweepfile").write_text(SWEEPFILE.replace('"templates/calc/"', '"templates/empty"'))
    code, out, err = cli(capsys, "check")
    assert code == 2
    assert err == (
        "sweepfile:8:43: template folder 'templates/empty' is empty\n"
        '      templates: "templates/input.deck.j2", "templates/empty"\n'
        "                                            ^^^^^^^^^^^^^^^^^\n"
        "  hint: put the files every job folder should get into it, or remove it from templates:\n"
    )


def test_a_template_that_mentions_seq_reruns_when_the_pset_moves(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(capsys, "build")[0] == 0
    (project / "sweepfile").write_text(SWEEPFILE.replace("param a = [1, 2]", "param a = [0, 1, 2]"))
    code, out, _ = cli(capsys, "build", "-n")
    # the deck does not use seq: only the new psets run
    assert sorted(ran(out)) == sorted([f"{r}[a=0,b={b},title=my run]" for r in ("sim", "post") for b in (88, 99)] + ["plain[a=0]"])
    (project / "templates" / "input.deck.j2").write_text(DECK + "seq = {{ pset.seq }}\n")
    assert cli(capsys, "build")[0] == 0
    assert (job_dir(project, "sim", a=2, b=99) / "input.deck").read_text().endswith("seq = 5\n")


# -- pset.json ------------------------------------------------------------------


def test_every_job_folder_has_pset_json_and_the_command_sees_its_path(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(capsys, "build")[0] == 0
    d = job_dir(project, "sim", a=1, b=99)
    doc = json.loads((d / "pset.json").read_text())
    assert doc == {
        "sweepc": 1, "rule": "sim", "sweep": "grid", "hash": d.name, "seq": 1,
        "params": {"a": 1, "b": 99, "title": "my run"}, "types": {"a": "int", "b": "int", "title": "str"},
    }
    assert (d / "env.txt").read_text() == f"{d / 'pset.json'}\n"
    plain = json.loads((job_dir(project, "plain", a=2) / "pset.json").read_text())
    assert plain["sweep"] == "a" and plain["params"] == {"a": 2}
    assert not list(project.glob("calc/*/*/*/pset.json.tmp"))


def test_pset_json_keeps_float_and_bool_types(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "sweepfile").write_text('param x = [1.0, 2.5]\nparam f = [true]\nrule r over x * f:\n    output: "o"\n    shell: "touch o"\n')
    monkeypatch.chdir(tmp_path)
    assert cli(capsys, "build")[0] == 0
    docs = sorted((json.loads(p.read_text()) for p in tmp_path.glob("calc/r/*/*/pset.json")), key=lambda d: d["params"]["x"])
    assert [d["params"] for d in docs] == [{"x": 1.0, "f": True}, {"x": 2.5, "f": True}]
    assert docs[0]["types"] == {"x": "float", "f": "bool"} and docs[0]["sweep"] is None
    assert isinstance(docs[0]["params"]["x"], float)



# psets of every kind of value: floats of every kind, big ints, quotes, escapes, NUL, non-ASCII keys
PSETS = [
    {},
    {"a": 1},
    {"x": 2.5, "y": float("nan"), "z": float("inf"), "w": -float("inf"), "n": -0.0, "big": 10**30, "e": 1e-300, "f": 1.0},
    {"s": 'it\'s "q" \\ $HOME `x`\n\ttab \u00e9\u4e2d\U0001f600 \x00\x1f', "t": True, "f": False, "\u00e9": "k"},
]


@pytest.mark.parametrize("params", PSETS)
def test_pset_json_text_is_byte_for_byte_what_json_dumps_with_indent_writes(params: dict[str, object]) -> None:
    """pset_json_text() writes the indented JSON by hand (json's indent is slow);
    the runner on a SLURM node writes this same text for the folders it makes."""
    from types import SimpleNamespace

    from sweepc.backends.jobdir import pset_json_text

    for over in ("sweep 'grid'", None):
        rule = SimpleNamespace(over=over)
        g = SimpleNamespace(rule=lambda name: rule)
        job = SimpleNamespace(rule="r", hash="ab12", seq=7, params=params)
        doc = {"sweepc": 1, "rule": "r", "sweep": "grid" if over else None, "hash": "ab12", "seq": 7, "params": dict(params),
               "types": {k: {bool: "bool", int: "int", float: "float", str: "str"}[type(v)] for k, v in params.items()}}
        assert pset_json_text(g, job) == json.dumps(doc, indent=2, ensure_ascii=False) + "\n"  # type: ignore[arg-type]

# -- temp() -----------------------------------------------------------------------

TEMP = '''
param a = [1, 2]
rule make over a:
    output: big = temp("big.dat"), "small.txt"
    shell: "echo {a} > big.dat; echo s > small.txt"
rule use over a:
    input: make
    output: "use.txt"
    shell: "cat {input.make} > {output}; echo v1 >> {output}"
rule lonely over a:
    output: temp("kept.dat")
    shell: "echo {a} > kept.dat"
'''


def test_temp_outputs_go_once_their_readers_are_done_and_come_back_when_needed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "sweepfile").write_text(TEMP)
    monkeypatch.chdir(tmp_path)
    assert cli(capsys, "build", "-j", "1")[0] == 0
    make1 = job_dir(tmp_path, "make", a=1)
    assert not (make1 / "big.dat").exists() and (make1 / "small.txt").exists()
    assert (job_dir(tmp_path, "use", a=1) / "use.txt").read_text() == "1\ns\nv1\n"
    assert (job_dir(tmp_path, "lonely", a=1) / "kept.dat").exists()  # nobody reads it: kept
    # a missing temp output alone reruns nothing
    assert cli(capsys, "build") == (0, "sweepc: nothing to do (6 jobs up to date)\n", "")
    code, out, _ = cli(capsys, "status")
    assert out.splitlines()[-1] == "make: 2 of its done jobs have their temp() outputs removed (rebuilt when a job that reads them must run)"
    assert out.splitlines()[1].split() == ["make", "2", "2", "0", "0", "0", "0", "0", "0", "0", "0", "0", "0"]
    code, out, _ = cli(capsys, "status", "--format", "json")
    assert json.loads(out)[0]["temp_removed"] == 2 and "temp_removed" not in json.loads(out)[1]
    # a reader that must run brings it back first, and nothing else reruns
    (tmp_path / "sweepfile").write_text(TEMP.replace("v1", "v2"))
    code, out, _ = cli(capsys, "build", "-n", "--where", "a == 2")
    assert out == (
        "run make[a=2]: temp output big.dat was removed and use[a=2] needs it\n"
        "run use[a=2]: command changed\n"
        "2 of 3 jobs to run (make 1, use 1), 1 up to date\n"
    )
    assert cli(capsys, "build", "--where", "a == 2")[0] == 0
    assert (job_dir(tmp_path, "use", a=2) / "use.txt").read_text() == "2\ns\nv2\n"
    assert not (job_dir(tmp_path, "make", a=2) / "big.dat").exists()  # gone again
    code, out, _ = cli(capsys, "build", "-n")
    assert ran(out) == ["make[a=1]", "use[a=1]"]


def test_a_failed_reader_keeps_the_temp_output_and_clean_temp_removes_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "sweepfile").write_text(TEMP.replace("echo v1 >> {output}", "test {a} = 1"))
    monkeypatch.chdir(tmp_path)
    assert cli(capsys, "build", "-k")[0] == 1  # use[a=2] fails
    assert not (job_dir(tmp_path, "make", a=1) / "big.dat").exists()
    big2 = job_dir(tmp_path, "make", a=2) / "big.dat"
    assert big2.exists()
    code, out, _ = cli(capsys, "clean", "temp", "-n")
    assert out.splitlines() == [f"would remove {os.path.relpath(big2)}", f"would remove {os.path.relpath(job_dir(tmp_path, 'lonely', a=1) / 'kept.dat')}",
                                f"would remove {os.path.relpath(job_dir(tmp_path, 'lonely', a=2) / 'kept.dat')}", "sweepc: would remove 3 temp outputs"]
    code, out, _ = cli(capsys, "clean", "temp", "--rule", "make")
    assert out.splitlines()[-1] == "sweepc: removed 1 temp outputs" and not big2.exists()
    # still done; the failed reader reruns, and so does its maker
    code, out, _ = cli(capsys, "build", "-n")
    assert ran(out) == ["make[a=2]", "use[a=2]"]


def test_the_janitor_removes_a_temp_output_whichever_job_is_reported_first(tmp_path: Path) -> None:
    """A batch backend may report a reader's end before its maker's (SLURM
    records taken in one poll): the temp output still goes."""
    from sweepc.backends.temps import TempJanitor
    from sweepc.plan.store import Outcome

    (tmp_path / "sweepfile").write_text(TEMP)
    study = sweepc.load(tmp_path)
    g = study.graph
    plan = study.plan()
    make, use = (next(j for j in g.jobs if j.rule == r and j.params["a"] == 1) for r in ("make", "use"))
    big = g.job_dir(make) / "big.dat"
    big.parent.mkdir(parents=True)
    big.write_text("1\n")
    janitor = TempJanitor(plan)
    done = Outcome(rule="", hash="", status="done", fingerprint=None, cmd_hash=None, inputs_hash=None, exit_code=0,
                   start=0.0, end=0.0, host="", max_rss_mb=0.0, attempts=1, backend="slurm", backend_job_id=None, run_id="r")
    janitor.ended(use, done)
    assert big.exists()  # its maker has not been reported yet
    janitor.ended(make, done)
    assert not big.exists() and janitor.removed == 1


# -- view -------------------------------------------------------------------------


def test_view_links_job_folders_by_parameters(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(capsys, "build")[0] == 0
    code, out, _ = cli(capsys, "view", "view")
    assert out == "sweepc: view view: 10 links (10 new or changed, 0 removed)\n"
    link = project / "view" / "sim" / "a=2" / "b=99" / "title=my%20run"
    d = job_dir(project, "sim", a=2, b=99)
    assert os.readlink(link) == f"../../../../calc/sim/{d.name[:2]}/{d.name}"
    assert (link / "input.deck").read_text().startswith("title = my run")
    assert os.readlink(project / "view" / "plain" / "a=1").startswith("../../calc/plain/")
    # relative: the project moves, the links still work
    moved = project.parent / "moved"
    project.rename(moved)
    assert (moved / "view" / "sim" / "a=2" / "b=99" / "title=my%20run" / "input.deck").is_file()


def test_view_updates_and_never_touches_what_it_did_not_make(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(capsys, "build")[0] == 0
    view = project / "view"
    assert cli(capsys, "view", "view")[0] == 0
    (view / "sim" / "notes.txt").write_text("mine")
    (view / "plain" / "a=3").mkdir()  # someone else's folder
    code, out, _ = cli(capsys, "view", "view", "--rule", "sim", "--where", "a == 1")
    assert out == "sweepc: view view: 2 links (0 new or changed, 8 removed)\n"
    assert sorted(str(p.relative_to(view)) for p in view.rglob("*")) == [
        ".sweepc-view.json", "plain", "plain/a=3", "sim", "sim/a=1", "sim/a=1/b=88", "sim/a=1/b=88/title=my%20run",
        "sim/a=1/b=99", "sim/a=1/b=99/title=my%20run", "sim/notes.txt",
    ]
    # a file of someone else's where a link should go: refused before any change
    (view / "sim" / "a=2").mkdir()
    (view / "sim" / "a=2" / "b=88").write_text("mine")
    code, out, err = cli(capsys, "view", "view")
    assert code == 2 and out == ""
    assert err == f"sweepc: refusing to replace {view / 'sim' / 'a=2' / 'b=88'}: sweepc view did not make it\n  hint: move it away, or choose another folder\n"
    assert (view / "sim" / "a=2" / "b=88").read_text() == "mine" and not (view / "post").exists()


def test_view_refuses_the_workdir(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "view", "calc/v")
    assert code == 2
    assert err == f"sweepc: refusing to make a view in {project / 'calc' / 'v'}: it would mix with the project's own files\n  hint: choose a new folder, e.g. sweepc view view/\n"
    # and sweepc's state folder (links were made among the state store's files)
    for where in (".sweepc", ".sweepc/v"):
        code, _, err = cli(capsys, "view", where)
        assert code == 2
        assert err == f"sweepc: refusing to make a view in {project / where}: it would mix with the project's own files\n  hint: choose a new folder, e.g. sweepc view view/\n"
    assert not (project / ".sweepc" / "v").exists() and not (project / ".sweepc" / "sim").exists()


def test_view_names_escape_unsafe_characters_and_refuse_overlong_ones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    assert escape("path=a/b c%d") == "path=a%2Fb%20c%25d"
    assert escape("name=é..") == "name=%C3%A9.."
    assert [value_text(v) for v in (True, 1, 0.001, 1e-05, "x")] == ["true", "1", "0.001", "1e-05", "x"]
    long = "x" * 300
    (tmp_path / "sweepfile").write_text(f'param s = ["a/b", "..", "{long}"]\nrule r over s:\n    output: "o"\n    shell: "touch o"\n')
    monkeypatch.chdir(tmp_path)
    assert cli(capsys, "build")[0] == 0
    code, out, err = cli(capsys, "view", "v")
    assert code == 2
    assert err == (
        f"sweepc: the view name of parameter 's' for r[s={long}] would be 302 bytes long; file names are limited to 255\n"
        "  hint: use a shorter value, or leave this rule out: sweepc view DIR --rule OTHER\n"
    )
    assert not (tmp_path / "v").exists()
    code, out, err = cli(capsys, "view", "v", "--where", "s != '" + long + "'")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "v" / "r").iterdir()) == ["s=..", "s=a%2Fb"]
    assert (tmp_path / "v" / "r" / "s=a%2Fb" / "o").exists()


def test_view_names_tell_a_string_from_the_number_or_bool_it_reads_as(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    # 1 and "1", true and "true" are distinct psets: the view linked one of each pair under
    # the same name, said "3 links" for 6 jobs, and no warning
    assert [value_text(v) for v in ("1", "true", "1.5", "inf", "-2e3", '"q', "1a")] == ['"1"', '"true"', '"1.5"', '"inf"', '"-2e3"', '""q"', "1a"]
    (tmp_path / "sweepfile").write_text('param x = [1, "1", true, "true", 1.5, "1.5"]\nrule r over x:\n    output: "o"\n    shell: "echo {x} > o"\n')
    monkeypatch.chdir(tmp_path)
    assert cli(capsys, "build")[0] == 0
    code, out, err = cli(capsys, "view", "v")
    assert (code, err) == (0, "")
    names = {p.name: (p / "o").read_text() for p in (tmp_path / "v" / "r").iterdir()}
    assert names == {"x=1": "1\n", "x=%221%22": "1\n", "x=true": "true\n", "x=%22true%22": "true\n", "x=1.5": "1.5\n", "x=%221.5%22": "1.5\n"}
    assert {os.readlink(tmp_path / "v" / "r" / n) for n in names} == {
        os.path.relpath(tmp_path / "calc" / "r" / h[:2] / h, tmp_path / "v" / "r") for h in (j.hash for j in sweepc.load(tmp_path).graph.jobs)}


# -- on SLURM -----------------------------------------------------------------------

SLURM = '''
param a = [1, 2, 3]
param s = ["it's $HOME"]
sweep grid = a * s
rule sim over grid:
    templates: "deck.j2"
    output: big = temp("big.dat")
    shell: "cat deck > big.dat; cat $SWEEPC_PSET_JSON > seen.json"
rule use over grid:
    input: sim
    output: "use.txt"
    shell: "cat {input} > {output}"
backend slurm:
    bundle = 2
'''


@pytest.mark.slurm
def test_on_slurm_templates_are_in_place_pset_json_is_seen_and_temp_outputs_go(
    slurm_cluster: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "sweepfile").write_text(SLURM)
    (tmp_path / "deck.j2").write_text("s = {{ s }}\na = {{ a }}\n")
    monkeypatch.chdir(tmp_path)
    code, out, err = cli(capsys, "build", "--backend", "slurm", "--wait")
    assert code == 0, out + err
    assert "sweepc: 6 done, 0 up to date" in out
    for a in (1, 2, 3):
        d = job_dir(tmp_path, "sim", a=a)
        assert (d / "deck").read_text() == f"s = it's $HOME\na = {a}\n"  # rendered at submission, raw values
        assert json.loads((d / "seen.json").read_text())["params"] == {"a": a, "s": "it's $HOME"}
        assert not (d / "big.dat").exists()  # its reader finished done
        assert (job_dir(tmp_path, "use", a=a) / "use.txt").read_text() == f"s = it's $HOME\na = {a}\n"
    assert cli(capsys, "build", "--backend", "slurm", "--wait")[1] == "sweepc: nothing to do (6 jobs up to date)\n"


# -- on dask ------------------------------------------------------------------------


def test_on_dask_templates_pset_json_and_temp_outputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A real LocalCluster: the dask backend prepares folders through jobdir too."""
    (tmp_path / "sweepfile").write_text(SLURM.replace("backend slurm:\n    bundle = 2\n", 'backend dask:\n    workers = 1\n    cores = 1\n    dashboard = "127.0.0.1:0"\n'))
    (tmp_path / "deck.j2").write_text("s = {{ s }}\na = {{ a }}\n")
    monkeypatch.chdir(tmp_path)
    code, out, err = cli(capsys, "build", "--backend", "dask")
    assert code == 0, out + err
    for a in (1, 2, 3):
        d = job_dir(tmp_path, "sim", a=a)
        assert (d / "deck").read_text() == f"s = it's $HOME\na = {a}\n"
        assert json.loads((d / "seen.json").read_text())["params"] == {"a": a, "s": "it's $HOME"}
        assert not (d / "big.dat").exists()
    assert cli(capsys, "build", "--backend", "dask")[1] == "sweepc: nothing to do (6 jobs up to date)\n"


def test_pset_json_text_is_exactly_json_dumps_with_indent_2(tmp_path: Path) -> None:
    """jobdir writes pset.json with the C encoder, value by value (json's
    indenting encoder is pure Python, ~0.2 ms a job): the text must not change."""
    import json
    import random

    from sweepc.backends.jobdir import PSET_JSON_VERSION, _type_name, pset_json_text, sweep_name
    from sweepc.lang.project import load_graph
    from sweepc.values import Scalar

    (tmp_path / "sweepfile").write_text('param a = [1, 2]\nrule r over a:\n    output: "o"\n    shell: "true > {output}"\n')
    g = load_graph(tmp_path / "sweepfile", cache=False)
    job = g.jobs[0]
    rng = random.Random(7)
    psets: list[dict[str, Scalar]] = [
        {}, {"i": 0, "x": 1.5, "s": 'h\u00e9"\\\n\x00\u2028', "b": True, "n": float("nan"), "inf": float("-inf"), "big": 10**30, "f": 1e-300},
    ]
    for _ in range(500):
        values: list[Scalar] = [rng.random() * 10 ** rng.randint(-30, 30), rng.randint(-10**20, 10**20),
                  "".join(chr(rng.randint(0, 0x2FFF)) for _ in range(5)), rng.random() < 0.5]
        psets.append({f"k{j}": rng.choice(values) for j in range(rng.randint(0, 4))})
    for params in psets:
        j = job._replace(params=params, seq=rng.randint(0, 10**6))
        doc = {"sweepc": PSET_JSON_VERSION, "rule": j.rule, "sweep": sweep_name(g.rule(j.rule)), "hash": j.hash, "seq": j.seq,
               "params": params, "types": {k: _type_name(v) for k, v in params.items()}}
        assert pset_json_text(g, j) == json.dumps(doc, indent=2, ensure_ascii=False) + "\n", params


def test_job_dirs_keep_the_folders_above_open_and_walk_again_when_one_goes(tmp_path):
    import shutil

    from sweepc.backends.jobdir import JobDirError, JobDirs

    wd = tmp_path / "calc"
    dirs = JobDirs(wd)
    try:
        fd, made = dirs.job("r/ab/ab1")
        os.close(fd)
        assert made and (wd / "r" / "ab" / "ab1").is_dir() and list(dirs.fds) == ["r/ab"]
        fd, made = dirs.job("r/ab/ab1")  # there already: not made now
        os.close(fd)
        assert not made
        shutil.rmtree(wd / "r" / "ab")  # removed behind sweepc's back: the next job walks again
        fd, made = dirs.job("r/ab/ab2")
        os.close(fd)
        assert made and (wd / "r" / "ab" / "ab2").is_dir()
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        (wd / "r" / "cd").symlink_to(elsewhere)  # a link in the way is refused, never followed
        with pytest.raises(JobDirError, match="is a symbolic link"):
            dirs.job("r/cd/cd1")
        assert list(elsewhere.iterdir()) == []
    finally:
        dirs.close()
    assert dirs.fds == {}


def test_the_folders_of_outputs_in_subfolders_are_made_before_the_command_runs(local_project: Any, tmp_path: Path) -> None:
    p = local_project.write("""
        param a = [1, 2]
        rule draw over a:
            output: "plots/a.txt", deep = "x/y/z.txt", "top.txt"
            shell: "echo {a} > plots/a.txt && echo {a} > x/y/z.txt && echo {a} > top.txt"
        rule fit over a:
            python: "model.py:run"
            output: "sub/w.txt"
    """, **{"model.py": "def run(pset):\n    open('sub/w.txt', 'w').write(str(pset['a']))\n    return {'w': pset['a']}\n"})
    r = p.sweepc("build", "-j", "2")
    assert r.code == 0, r.out + r.err
    assert (p.dir("draw[a=2]") / "x" / "y" / "z.txt").read_text() == "2\n"
    assert (p.dir("fit[a=1]") / "sub" / "w.txt").read_text() == "1"
    # a link in the way is never followed: an earlier run's output folder
    # that is a link loses the link, and the folders are made anew
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    d = p.dir("draw[a=1]")
    shutil.rmtree(d / "x")
    (d / "x").symlink_to(elsewhere)
    p.edit("echo {a} > top.txt", "echo {a} > top.txt && echo again > /dev/null")
    r = p.sweepc("build", "-j", "2")
    assert r.code == 0, r.out + r.err
    assert not (d / "x").is_symlink() and (d / "x" / "y" / "z.txt").read_text() == "1\n"
    assert list(elsewhere.iterdir()) == []


def test_a_file_where_an_output_folder_would_be_fails_only_that_job(local_project: Any) -> None:
    from sweepc.backends.jobdir import _make_output_folders

    d = local_project.root / "job"
    d.mkdir(parents=True)
    (d / "plots").write_text("a file")
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        _make_output_folders(fd, [SimpleNamespace(path="plots/a.png"), SimpleNamespace(path="ok/b.png")])
    finally:
        os.close(fd)
    assert (d / "plots").read_text() == "a file" and (d / "ok").is_dir()


@pytest.mark.parametrize("params", PSETS)
def test_a_pool_worker_writes_the_pset_json_sweepc_would(params: dict[str, object]) -> None:
    """A python: job's worker makes its pset.json (pyworker.pset_json) from
    the task line sweepc sends (the pset as JSON, read back) and the rule's
    beginning of it (jobdir.pset_json_head): byte for byte pset_json_text()'s."""
    from types import SimpleNamespace

    from sweepc.backends.jobdir import pset_json_head, pset_json_text
    from sweepc.backends.local import pyworker
    from sweepc.values import values_json

    for over, sweep in (("sweep 'grid'", "grid"), (None, None)):
        rule = SimpleNamespace(over=over)
        g = SimpleNamespace(rule=lambda name: rule)
        job = SimpleNamespace(rule="r\u00e9", hash="ab12", seq=7, params=params)
        sent = json.loads(values_json(params))  # the pset as the worker reads it from its task line
        text = pyworker.pset_json(pset_json_head("r\u00e9", sweep), "ab12", 7, sent)
        assert text == pset_json_text(g, job)  # type: ignore[arg-type]
