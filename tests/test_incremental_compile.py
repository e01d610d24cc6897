"""After an edit of the sweepfile, the compiler takes the pset hash and the
command of every job made of the same texts from the graph cached before
(commands._Prior/_Again, project.earlier_jobs): adding psets renders the new
jobs and the gathers, not every job. The graph must be exactly the one a
fresh compile makes, job by job and field by field, for every kind of edit."""

from __future__ import annotations

from pathlib import Path

import pytest

import sweepc.lang.commands as commands
import sweepc.lang.project as project
from sweepc.lang.graph import BuildGraph
from sweepc.lang.project import load_graph

SWEEPFILE = """
workdir = "calc"
param a = [1, 2, 3]
param b = [10, 20]
sweep grid = a * b
sweep some = grid where a != 2
sweep rows = csv("rows.csv")
param c = [7]
sweep bc = b * c

rule gen over grid:
    output: "out.txt"
    shell: "echo {a} {b} > {output}"

rule square over grid:
    input: gen
    output: "sq.txt"
    shell: "cat {input} > {output}"

rule pick over some:
    input: sq = square
    output: "p.txt"
    resources: cpus = 2
    shell: "cat {input.sq} > {output}; echo {a} {resources.cpus} {root} >> {output}"

rule fromcsv over rows:
    output: "r.txt"
    shell: "echo {x} {y} > {output}"

rule readcsv over rows:
    input: fromcsv, "src/{y}.txt"
    output: "rr.txt"
    shell: "cat {input} > {output}"

rule templ over grid:
    templates: "tpl/"
    output: "t.txt"
    shell: "bash run.sh {a}"

rule seqd over grid:
    input: gen
    output: "s.txt"
    shell: "echo {pset.seq} {pset.hash} {input} > {output}"

rule py over some:
    python: "model.py:func"
    output: "note.txt"

rule up over bc:
    output: "u.txt"
    shell: "echo {b} {c} > {output}"

rule down over b:
    input: up
    output: "d.txt"
    shell: "cat {input} > {output}"

rule mean over grid by b:
    input: square
    output: "mean.txt"
    shell: "cat {input} > {output}"

rule all:
    input: mean
    output: "all.txt"
    shell: "cat {input} > {output}"
"""

FILES = {
    "rows.csv": "x,y\n1,a\n2,b\n3,c\n",
    "src/a.txt": "A\n", "src/b.txt": "B\n", "src/c.txt": "C\n", "src/d.txt": "D\n",
    "tpl/run.sh": "echo {{ a }}\n",
    "model.py": "def func(pset):\n    return {}\n\n\ndef other(pset):\n    return {}\n",
    "sub/model.py": "def func(pset):\n    return {}\n",
}

# (what, the text it replaces, the text it becomes): each applied both ways
EDITS = [
    ("values added", "param a = [1, 2, 3]", "param a = [1, 2, 3, 4]"),
    ("values added first", "param a = [1, 2, 3]", "param a = [0, 1, 2, 3]"),
    ("values removed", "param a = [1, 2, 3]", "param a = [1, 3]"),
    ("a value replaced", "param a = [1, 2, 3]", "param a = [1, 2, 4]"),
    ("the pset of a job's one input job", "param c = [7]", "param c = [8]"),
    ("values reordered", "param b = [10, 20]", "param b = [20, 10]"),
    ("a value of another type (same hash, another command)", "param a = [1, 2, 3]", "param a = [1.0, 2, 3]"),
    ("a value of another type (bool)", "param a = [1, 2, 3]", "param a = [true, 2, 3]"),
    ("string values", "param a = [1, 2, 3]", "param a = [\"1\", \"x y\", \"é'\"]"),
    ("a rule's shell edited", "shell: \"echo {a} {b} > {output}\"", "shell: \"echo {b} {a} > {output}\""),
    ("an output renamed (its downstream rules' commands)", "output: \"out.txt\"", "output: \"o.txt\""),
    ("an input renamed", "sq = square\n    output: \"p.txt\"\n    resources: cpus = 2\n    shell: \"cat {input.sq}",
     "sqr = square\n    output: \"p.txt\"\n    resources: cpus = 2\n    shell: \"cat {input.sqr}"),
    ("{input.NAME} to {input}", "cat {input.sq}", "cat {input}"),
    ("the upstream rule of a rule changed", "rule pick over some:\n    input: sq = square",
     "rule pick over some:\n    input: sq = gen"),
    ("a where condition", "grid where a != 2", "grid where a != 3"),
    ("the workdir", "workdir = \"calc\"", "workdir = \"runs/deep\""),
    ("a constant resource", "resources: cpus = 2", "resources: cpus = 3"),
    ("a resource per pset", "resources: cpus = 2", "resources: cpus = a"),
    ("a python: function", "python: \"model.py:func\"", "python: \"model.py:other\""),
    ("a python: module moved", "python: \"model.py:func\"", "python: \"sub/model.py:func\""),
    ("a python: rule's inputs", "python: \"model.py:func\"\n    output: \"note.txt\"",
     "python: \"model.py:func\"\n    input: gen, \"src/a.txt\"\n    output: \"note.txt\""),
    ("a python: rule's resources", "python: \"model.py:func\"\n    output: \"note.txt\"",
     "python: \"model.py:func\"\n    output: \"note.txt\"\n    resources: mem = \"2G\""),
    ("the rule of a python: function renamed", "rule py over some:", "rule pyf over some:"),
    # the same psets, their keys in another order: one pset hash, another stand-in command (its JSON)
    ("the parameters' order (a python: job's JSON)", "sweep grid = a * b\n", "sweep grid = b * a\n"),
    ("a comment only", "sweep grid = a * b\n", "sweep grid = a * b  # the grid\n"),
    ("a gather's by", "rule mean over grid by b:", "rule mean over grid by a:"),
    ("a rule added before the others", "rule gen over grid:", "rule first over b:\n    output: \"f.txt\"\n    shell: \"echo {b} > {output}\"\n\nrule gen over grid:"),
    ("a rule removed", "rule all:\n    input: mean\n    output: \"all.txt\"\n    shell: \"cat {input} > {output}\"\n", ""),
]


def write(root: Path, text: str, files: dict[str, str] | None = None) -> Path:
    for name, content in (files or FILES).items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(content)
    (root / "sweepfile").write_text(text)
    return root / "sweepfile"


def assert_same(got: BuildGraph, fresh: BuildGraph) -> None:
    """The same graph: every job field by field (and the types of its values:
    1 and 1.0 are equal in Python, not in a command), every rule, sweep, the rest."""
    assert len(got.jobs) == len(fresh.jobs)
    for j, f in zip(got.jobs, fresh.jobs):
        assert j._asdict() == f._asdict()
        assert repr(j) == repr(f)
        assert [type(v) for v in j.params.values()] == [type(v) for v in f.params.values()]
    assert got.rules == fresh.rules
    assert got.sweeps == fresh.sweeps
    assert got == fresh


@pytest.fixture(autouse=True, params=["bulk", "bulk-from-1"])
def bulk_min(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    """Each test as it is (_Again.bulk takes 64 psets or more at once), and
    with bulk taking every run of psets, however short, so that these small
    sweepfiles go through its checks too."""
    if request.param == "bulk-from-1":
        monkeypatch.setattr(commands, "_BULK_MIN", 1)
    return commands._BULK_MIN


@pytest.fixture
def proj(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    (root / ".sweepc").mkdir(parents=True)  # the cache is written only into an existing .sweepc/
    return root


def rendered(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The rules of the jobs _Renderer.job() makes from now on (those not taken from the earlier graph)."""
    made: list[str] = []
    real = commands._Renderer.job

    def counting(self, jid, seq, inst, matches):  # type: ignore[no-untyped-def]
        made.append(self.r.name)
        return real(self, jid, seq, inst, matches)

    monkeypatch.setattr(commands._Renderer, "job", counting)
    return made


@pytest.mark.parametrize("backwards", [False, True], ids=["forth", "back"])
@pytest.mark.parametrize(("what", "old", "new"), EDITS, ids=[e[0] for e in EDITS])
def test_a_compile_after_an_edit_is_the_graph_a_fresh_compile_makes(proj: Path, what: str, old: str, new: str, backwards: bool) -> None:
    assert old in SWEEPFILE
    before, after = SWEEPFILE, SWEEPFILE.replace(old, new, 1)
    if backwards:
        before, after = after, before
    sf = write(proj, before)
    load_graph(sf)  # cached: the earlier graph of the next compile
    assert (proj / ".sweepc" / project.CACHE_NAME).is_file()
    write(proj, after)
    got = load_graph(sf)
    fresh = load_graph(sf, cache=False)
    assert got is not fresh
    assert_same(got, fresh)


def test_a_changed_csv_is_the_graph_a_fresh_compile_makes(proj: Path) -> None:
    sf = write(proj, SWEEPFILE)
    load_graph(sf)
    # the same sweepfile, another CSV: new values, a value of another type, one row less
    write(proj, SWEEPFILE, {**FILES, "rows.csv": "x,y\n1.0,a\n5,b\n"})
    got = load_graph(sf)
    assert_same(got, load_graph(sf, cache=False))
    assert [j.params for j in got.jobs if j.rule == "fromcsv"] == [{"x": 1.0, "y": "a"}, {"x": 5, "y": "b"}]


def test_changed_templates_are_the_graph_a_fresh_compile_makes(proj: Path) -> None:
    sf = write(proj, SWEEPFILE)
    load_graph(sf)
    # a template file edited and one added; the sweepfile grows by a value
    write(proj, SWEEPFILE.replace("param a = [1, 2, 3]", "param a = [1, 2, 3, 4]"),
          {**FILES, "tpl/run.sh": "echo {{ a }} {{ b }}\n", "tpl/more.txt": "more\n"})
    got = load_graph(sf)
    assert_same(got, load_graph(sf, cache=False))
    assert [t.dest for t in got.rule("templ").templates] == ["more.txt", "run.sh"]


def test_adding_values_renders_the_new_jobs_and_the_changed_gathers_only(proj: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sf = write(proj, SWEEPFILE)
    load_graph(sf)
    write(proj, SWEEPFILE.replace("param a = [1, 2, 3]", "param a = [1, 2, 3, 4]"))
    made = rendered(monkeypatch)
    got = load_graph(sf)
    # new psets (a=4: two of grid, two of some): gen, square, pick, templ, py
    # (python:) get their 2 new jobs; seqd (pset.seq, pset.hash) is
    # always rendered; each gather of mean has one input more; `all` reads
    # the same two mean jobs (same hashes): taken; fromcsv/readcsv unchanged
    # (readcsv reads a source file: always rendered)
    assert sorted(made) == sorted(
        ["gen"] * 2 + ["square"] * 2 + ["pick"] * 2 + ["templ"] * 2 + ["seqd"] * 8 + ["py"] * 2 + ["mean"] * 2 + ["readcsv"] * 3
    )
    monkeypatch.undo()
    assert_same(got, load_graph(sf, cache=False))


def test_values_added_first_are_found_by_value(proj: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every pset moves one place: the jobs are looked up by their values."""
    big = SWEEPFILE.replace("param a = [1, 2, 3]", "param a = range(0, 100)")
    sf = write(proj, big)
    load_graph(sf)
    write(proj, big.replace("range(0, 100)", "range(-1, 100)"))
    made = rendered(monkeypatch)
    got = load_graph(sf)
    # per rule: the first 64 psets not where they were (2 new ones among
    # them) are rendered, then the rest are looked up by their values
    assert made.count("gen") == made.count("square") == made.count("templ") == 64
    assert made.count("pick") == 64  # over `some`: 2 new psets, 66 moved
    monkeypatch.undo()
    assert_same(got, load_graph(sf, cache=False))


def test_an_earlier_graph_of_another_sweepc_is_not_rendered_from(proj: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Commands rendered by another version of the compiler are no template
    for this one's: its jobs are all rendered (the graph is the same)."""
    sf = write(proj, SWEEPFILE)
    monkeypatch.setattr(project, "_code_id", lambda: "another sweepc")
    load_graph(sf)
    monkeypatch.undo()
    _grown_renders_everything(proj, sf, monkeypatch)


def test_a_damaged_earlier_part_means_rendering_everything(proj: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sf = write(proj, SWEEPFILE)
    load_graph(sf)
    cache = proj / ".sweepc" / project.CACHE_NAME
    data = bytearray(cache.read_bytes())
    # the part read before compiling starts after the offsets
    at = _offsets_at(bytes(data)) + project._OFFSETS.size
    data[at + 20: at + 40] = b"\xff" * 20
    cache.write_bytes(bytes(data))
    _grown_renders_everything(proj, sf, monkeypatch)


def _grown_renders_everything(proj: Path, sf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A value added: every job is rendered (nothing taken from the earlier
    graph), and the graph is the one a fresh compile makes."""
    write(proj, SWEEPFILE.replace("param a = [1, 2, 3]", "param a = [1, 2, 3, 4]"))
    made = rendered(monkeypatch)
    got = load_graph(sf)
    assert len(made) == len(got.jobs)
    monkeypatch.undo()
    assert_same(got, load_graph(sf, cache=False))


def _offsets_at(data: bytes) -> int:
    """Where the cache's (second part, length) offsets are: after the format line and the pickled header."""
    import io
    import pickle

    f = io.BytesIO(data)
    f.readline()
    pickle.load(f)
    return f.tell()


ZERO = """
param a = [0.0, 2.5]

rule g over a:
    output: "o.txt"
    shell: "echo {a} > {output}"

rule h over a:
    input: g
    output: "p.txt"
    shell: "cat {input} > {output}; echo {a} >> {output}"
"""


@pytest.mark.parametrize("backwards", [False, True], ids=["forth", "back"])
def test_a_zero_that_changed_sign_is_rendered_again(proj: Path, backwards: bool) -> None:
    """0.0 and -0.0 are equal (and one pset hash) but two command texts."""
    before, after = ZERO, ZERO.replace("[0.0,", "[-0.0,")
    if backwards:
        before, after = after, before
    sf = write(proj, before, {})
    load_graph(sf)
    write(proj, after, {})
    got = load_graph(sf)
    assert_same(got, load_graph(sf, cache=False))
    assert got.jobs[0].command == ("echo 0.0 > o.txt" if backwards else "echo -0.0 > o.txt")
    assert got.jobs[2].command.endswith("echo 0.0 >> p.txt" if backwards else "echo -0.0 >> p.txt")


def test_the_cache_keeps_zeros_of_both_signs(proj: Path) -> None:
    """Fix: the cache stored equal psets once, and 0.0 and -0.0 were equal:
    a graph read back from it had one of them with the other's sign."""
    text = ('sweep one = csv("one.csv")\nsweep two = csv("two.csv")\n\n'
            'rule g over one:\n    output: "o.txt"\n    shell: "echo {x} > {output}"\n\n'
            'rule h over two:\n    output: "o.txt"\n    shell: "echo {x} > {output}"\n')
    sf = write(proj, text, {"one.csv": "x\n0.0\n", "two.csv": "x\n-0.0\n"})
    compiled = load_graph(sf)
    project.wait_writes()
    cached = load_graph(sf)
    assert cached is not compiled
    assert_same(cached, compiled)
    assert [repr(j.params["x"]) for j in cached.jobs] == ["0.0", "-0.0"]
    assert [j.command for j in cached.jobs] == ["echo 0.0 > o.txt", "echo -0.0 > o.txt"]


MANY = """
param a = [{values}]
param b = [1, 2]
sweep grid = a * b

rule g over grid:
    output: "o.txt"
    shell: "echo {{a}} {{b}} > {{output}}"

rule h over grid:
    input: g
    output: "p.txt"
    shell: "cat {{input}} > {{output}}; echo {{a}} >> {{output}}"

rule k over a:
    input: h
    output: "k.txt"
    shell: "cat {{input}} > {{output}}"
"""


@pytest.mark.parametrize(("was", "now"), [("1000", "1000.0"), ("1000", "true"), ("0.0", "-0.0"), ("-0.0", "0.0"),
                                          ("1000", "1001"), ("1000", '"1000"')])
def test_one_pset_changed_amid_many_is_rendered_again(proj: Path, monkeypatch: pytest.MonkeyPatch, was: str, now: str) -> None:
    """Psets taken a column at a time (_Again.bulk) up to the one whose
    value changed (or changed type, or the sign of its zero), the rest one
    by one: the graph a fresh compile makes; the changed pset's jobs (and
    the gather over it) are rendered, every other one taken."""
    values = [str(v) for v in range(2, 202)]  # (none is 1, true's value)
    values[150] = was
    sf = write(proj, MANY.format(values=", ".join(values)), {})
    load_graph(sf)
    values[150] = now
    write(proj, MANY.format(values=", ".join(values)), {})
    made = rendered(monkeypatch)
    got = load_graph(sf)
    assert sorted(made) == ["g", "g", "h", "h", "k"]
    monkeypatch.undo()
    assert_same(got, load_graph(sf, cache=False))
    assert got.jobs[300].params == {"a": eval(now.replace("true", "True")), "b": 1}


MIXED = """
param a = [1, 2, 3]
param b = [10]
sweep grid = (a * b where a == 1) + (SECOND where a >= 2)

rule py over grid:
    python: "model.py:func"
"""


@pytest.mark.parametrize("backwards", [False, True], ids=["forth", "back"])
def test_a_pset_whose_keys_changed_order_gets_its_python_command_again(proj: Path, backwards: bool) -> None:
    """The rule's keys stay (a, b), the psets of a >= 2 change order: equal
    dicts, one pset hash, but a python: job's stand-in command holds the pset
    as JSON in its order, so it is rendered again, not taken."""
    before, after = MIXED.replace("SECOND", "a * b"), MIXED.replace("SECOND", "b * a")
    if backwards:
        before, after = after, before
    sf = write(proj, before)
    load_graph(sf)
    write(proj, after)
    got = load_graph(sf)
    assert_same(got, load_graph(sf, cache=False))
    moved = ["b", "a"] if not backwards else ["a", "b"]  # the order of a >= 2 now
    assert [list(j.params) for j in got.jobs] == [["a", "b"], moved, moved]
    assert ('{"b":10,"a":2}' if not backwards else '{"a":2,"b":10}') in got.jobs[1].command
