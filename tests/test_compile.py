"""What the compiler makes of small sweepfiles: psets, joins, rendered commands."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest

from sweepc.lang.compiler import compile as compile_module
from sweepc.errors import SweepfileError
from sweepc.lang.graph import INPUT_LIST_NAME, BuildGraph, Job
from sweepc.hashing import pset_hash
from sweepc.lang.parser import parse


def build(text: str, root: Path, files: dict[str, str] | None = None) -> BuildGraph:
    root.mkdir(parents=True, exist_ok=True)
    for name, content in (files or {}).items():
        (root / name).write_text(content, encoding="utf-8")
    sweepfile = root / "sweepfile"
    sweepfile.write_text(text, encoding="utf-8")
    return compile_module(parse(text, "sweepfile"), root, sweepfile)


def psets(text: str, sweep: str, root: Path, files: dict[str, str] | None = None) -> list[dict[str, object]]:
    return [dict(p) for p in build(text, root, files).sweeps[sweep].psets]


def typed(ps: list[dict[str, object]]) -> list[list[tuple[str, type, object]]]:
    """Psets with the type of each value, so 1 and 1.0 and True differ."""
    return [[(k, type(v), v) for k, v in p.items()] for p in ps]


def jobs_of(g: BuildGraph, rule: str) -> list[Job]:
    return [g.jobs[i] for i in g.rule(rule).job_ids]


# ---- the sweep algebra as written in a sweepfile -------------------------------


def test_product_first_factor_outermost(tmp_path: Path) -> None:
    text = 'param a = [1, 2]\nparam b = ["x", "y", "z"]\nsweep g = a * b\nsweep h = b * a\n'
    assert psets(text, "g", tmp_path) == [
        {"a": 1, "b": "x"}, {"a": 1, "b": "y"}, {"a": 1, "b": "z"},
        {"a": 2, "b": "x"}, {"a": 2, "b": "y"}, {"a": 2, "b": "z"},
    ]
    assert all(list(p) == ["b", "a"] for p in psets(text, "h", tmp_path))
    assert [(p["b"], p["a"]) for p in psets(text, "h", tmp_path)] == [
        ("x", 1), ("x", 2), ("y", 1), ("y", 2), ("z", 1), ("z", 2),
    ]


def test_product_of_three(tmp_path: Path) -> None:
    text = "param a = [1, 2]\nparam b = [3, 4]\nparam c = [5, 6]\nsweep g = a * b * c\n"
    got = psets(text, "g", tmp_path)
    assert [(p["a"], p["b"], p["c"]) for p in got] == [
        (1, 3, 5), (1, 3, 6), (1, 4, 5), (1, 4, 6), (2, 3, 5), (2, 3, 6), (2, 4, 5), (2, 4, 6),
    ]


def test_zip_order(tmp_path: Path) -> None:
    text = 'param a = [3, 1, 2]\nparam c = ["z", "x", "y"]\nparam d = [0.5, 1.5, 2.5]\nsweep p = zip(a, c, d)\n'
    assert psets(text, "p", tmp_path) == [
        {"a": 3, "c": "z", "d": 0.5}, {"a": 1, "c": "x", "d": 1.5}, {"a": 2, "c": "y", "d": 2.5},
    ]


def test_star_centre_once_one_at_a_time(tmp_path: Path) -> None:
    text = "param a = [1, 2, 3]\nparam b = [10, 20, 30]\nsweep s = star(a=2, b=20, vary=[a, b])\n"
    got = psets(text, "s", tmp_path)
    assert got == [
        {"a": 1, "b": 20}, {"a": 2, "b": 20}, {"a": 3, "b": 20},
        {"a": 2, "b": 10}, {"a": 2, "b": 30},
    ]
    centre = {"a": 2, "b": 20}
    assert got.count(centre) == 1
    assert all(sum(p[k] != centre[k] for k in centre) <= 1 for p in got)


def test_star_centre_not_among_values(tmp_path: Path) -> None:
    # the centre is where the scan pivots; it need not be one of the values
    text = "param a = [1, 3]\nparam b = [10, 30]\nsweep s = star(a=2, b=20, vary=[a, b])\n"
    assert psets(text, "s", tmp_path) == [{"a": 1, "b": 20}, {"a": 3, "b": 20}, {"a": 2, "b": 10}, {"a": 2, "b": 30}]


def test_concatenation_keeps_first_duplicate(tmp_path: Path) -> None:
    files = {"more.csv": "a\n2.0\n3.5\n"}
    text = 'param a = [1, 2]\nsweep rows = csv("more.csv")\nsweep ab = a + rows\nsweep ba = rows + a\n'
    g = build(text, tmp_path, files)
    # 2 (int, from a) and 2.0 (float, from the CSV) are one pset: the first one stays
    assert typed([dict(p) for p in g.sweeps["ab"].psets]) == [[("a", int, 1)], [("a", int, 2)], [("a", float, 3.5)]]
    assert typed([dict(p) for p in g.sweeps["ba"].psets]) == [[("a", float, 2.0)], [("a", float, 3.5)], [("a", int, 1)]]


def test_concatenation_of_grid_and_star(tmp_path: Path) -> None:
    text = (
        "param a = [1, 2, 3]\nparam b = [10, 20]\n"
        "sweep grid = a * b\nsweep scan = star(a=2, b=30, vary=[a, b])\nsweep both = grid + scan\n"
    )
    g = build(text, tmp_path)
    grid, scan, both = (list(map(dict, g.sweeps[n].psets)) for n in ("grid", "scan", "both"))
    assert both[: len(grid)] == grid
    assert both[len(grid):] == [p for p in scan if p not in grid]
    assert len(both) == len({pset_hash(p) for p in both}) == 9


@pytest.mark.parametrize(
    ("cond", "expected"),
    [
        ("a * b <= 40", [(1, 10), (1, 20), (1, 30), (2, 10), (2, 20), (3, 10)]),
        ("a + b == 22 or a - b == -29", [(1, 30), (2, 20)]),
        ("a in [1, 3] and b not in [20]", [(1, 10), (1, 30), (3, 10), (3, 30)]),
        ("not a == 2 and not (b > 10)", [(1, 10), (3, 10)]),
        ("b // a == 10 and b % 20 == 0", [(2, 20)]),
        ("b // a == 10", [(1, 10), (2, 20), (3, 30)]),
        ("b / a > 14.5 and a ** 2 >= 4", [(2, 30)]),
        ("max(a, 2) == 2 and abs(-b) >= 30", [(1, 30), (2, 30)]),
    ],
)
def test_where(tmp_path: Path, cond: str, expected: list[tuple[int, int]]) -> None:
    text = f"param a = [1, 2, 3]\nparam b = [10, 20, 30]\nsweep s = a * b where {cond}\n"
    assert [(p["a"], p["b"]) for p in psets(text, "s", tmp_path)] == expected


def test_where_on_strings_and_bools(tmp_path: Path) -> None:
    text = 'param m = ["fast", "slow"]\nparam f = [true, false]\nsweep s = m * f where m == "fast" or not f\n'
    assert psets(text, "s", tmp_path) == [{"m": "fast", "f": True}, {"m": "fast", "f": False}, {"m": "slow", "f": False}]


def test_where_tells_a_bool_from_a_number_as_the_pset_hash_does(tmp_path: Path) -> None:
    # true and 1 are two values (two psets): `a == true` also kept a = 1, and `a in [1]` kept true
    text = ('param a = [0, 1, 2, true, false, "1"]\nsweep t = a where a == true\nsweep one = a where a in [1, 2.0]\n'
            'sweep not1 = a where a != 1\nsweep nf = a where a not in [false, 0]\nsweep n = a where a == 1.0\n')
    def values(name: str) -> list[tuple[type, object]]:
        return [(type(p["a"]), p["a"]) for p in psets(text, name, tmp_path)]
    assert values("t") == [(bool, True)]
    assert values("one") == [(int, 1), (int, 2)]
    assert values("not1") == [(int, 0), (int, 2), (bool, True), (bool, False), (str, "1")]
    assert values("nf") == [(int, 1), (int, 2), (bool, True), (str, "1")]
    assert values("n") == [(int, 1)]  # 1 and 1.0 are one value


CSV = "param_combo,x,y,flag,mixed,name\n0,1,1.5,true,1,a\n1,2,2,false,x,b\n2,3,3.25,TRUE,2.5,c\n3,4,4,False,4,d\n"


def test_csv_types_per_column(tmp_path: Path) -> None:
    text = 'sweep rows = csv("params.csv", index="param_combo")\n'
    got = psets(text, "rows", tmp_path, {"params.csv": CSV})
    assert typed(got)[0] == [
        ("x", int, 1), ("y", float, 1.5), ("flag", bool, True), ("mixed", str, "1"), ("name", str, "a"),
    ]
    # a whole column is one type: "2" in a float column is 2.0
    assert [(type(p["y"]), p["y"]) for p in got] == [(float, 1.5), (float, 2.0), (float, 3.25), (float, 4.0)]
    assert [p["flag"] for p in got] == [True, False, True, False]
    assert [p["mixed"] for p in got] == ["1", "x", "2.5", "4"]
    assert "param_combo" not in got[0]


def test_csv_numeric_cell_is_the_number(tmp_path: Path) -> None:
    """A CSV cell "1" names the same pset as the number 1 written in a sweepfile."""
    g = build('param x = [1, 2]\nsweep rows = csv("p.csv")\n', tmp_path, {"p.csv": "x\n1\n2\n"})
    assert list(g.sweeps["rows"].hashes) == [pset_hash({"x": 1}), pset_hash({"x": 2})]
    assert pset_hash({"x": 1}) == pset_hash({"x": 1.0})


def test_csv_start_rows_columns(tmp_path: Path) -> None:
    text = (
        'sweep first = csv("params.csv", index="param_combo", start=0, rows=2)\n'
        'sweep second = csv("params.csv", index="param_combo", start=2, rows=2)\n'
        'sweep tail = csv("params.csv", index="param_combo", start=3)\n'
        'sweep some = csv("params.csv", index="param_combo", columns=["name", "x"])\n'
    )
    g = build(text, tmp_path, {"params.csv": CSV})
    assert [p["name"] for p in g.sweeps["first"].psets] == ["a", "b"]
    assert [p["name"] for p in g.sweeps["second"].psets] == ["c", "d"]
    # a batch reads its cells with the types of the whole file ("2" in the y column is 2.0)
    assert [(type(p["y"]), p["y"]) for p in g.sweeps["second"].psets] == [(float, 3.25), (float, 4.0)]
    assert [p["name"] for p in g.sweeps["tail"].psets] == ["d"]
    assert [dict(p) for p in g.sweeps["some"].psets] == [
        {"name": "a", "x": 1}, {"name": "b", "x": 2}, {"name": "c", "x": 3}, {"name": "d", "x": 4},
    ]
    assert g.sweeps["some"].keys == ("name", "x")


def test_linspace_logspace_range(tmp_path: Path) -> None:
    text = (
        "param lr = logspace(-4, -1, 4)\nparam t = linspace(0, 1, 5)\nparam r = range(10, 40, 10)\n"
        "param s = range(3)\nparam n = range(5, 0, -2)\nparam one = linspace(2, 3, 1)\nparam k = 1_000\n"
    )
    g = build(text, tmp_path)
    assert g.params["lr"] == (0.0001, 0.001, 0.01, 0.1)
    assert g.params["t"] == (0.0, 0.25, 0.5, 0.75, 1.0)
    assert g.params["r"] == (10, 20, 30)
    assert g.params["s"] == (0, 1, 2)
    assert g.params["n"] == (5, 3, 1)
    assert g.params["one"] == (2.0,)
    assert g.params["k"] == (1000,)
    assert all(type(v) is float for v in g.params["lr"] + g.params["t"])


def test_linspace_has_no_binary_noise(tmp_path: Path) -> None:
    g = build("param x = linspace(0, 0.3, 4)\n", tmp_path)
    assert g.params["x"] == (0.0, 0.1, 0.2, 0.3)


def test_constant_parameter_is_one_value(tmp_path: Path) -> None:
    g = build('param mode = "fast"\nparam n = -4\nparam f = 1e-3\n', tmp_path)
    assert g.params == {"mode": ("fast",), "n": (-4,), "f": (0.001,)}


def test_every_sweep_has_hashes(tmp_path: Path) -> None:
    g = build("param a = [1, 2]\nparam b = [3]\nsweep g = a * b\n", tmp_path)
    sw = g.sweeps["g"]
    assert sw.hashes == tuple(pset_hash(p) for p in sw.psets)
    assert sw.keys == ("a", "b")


# ---- joins -------------------------------------------------------------------------

PIPELINE = """\
param a = [1, 2, 3]
param b = [10, 20]
sweep grid = a * b

rule gen over grid:
    output: "out.txt"
    shell: "echo {a} {b} > {output}"

rule square over grid:
    input: gen
    output: "sq.txt"
    shell: "cat {input} > {output}"

rule mean over grid by a:
    input: square
    output: "mean.txt"
    shell: "cat {input} > {output}"

rule total:
    input: mean
    output: "total.txt"
    shell: "cat {input} > {output}"

rule per_b over b:
    output: "b.txt"
    shell: "echo {b} > {output}"

rule use_b over grid:
    input: per_b
    output: "u.txt"
    shell: "cat {input} > {output}"
"""


def test_join_same_sweep_is_one_upstream_job(tmp_path: Path) -> None:
    g = build(PIPELINE, tmp_path)
    for job in jobs_of(g, "square"):
        assert len(job.deps) == 1
        up = g.jobs[job.deps[0]]
        assert up.rule == "gen" and dict(up.params) == dict(job.params) and up.hash == job.hash


def test_join_by_gathers_everything_with_that_value(tmp_path: Path) -> None:
    g = build(PIPELINE, tmp_path)
    means = jobs_of(g, "mean")
    assert [dict(j.params) for j in means] == [{"a": 1}, {"a": 2}, {"a": 3}]
    for job in means:
        ups = [g.jobs[d] for d in job.deps]
        assert [u.rule for u in ups] == ["square", "square"]
        assert [dict(u.params) for u in ups] == [{"a": job.params["a"], "b": 10}, {"a": job.params["a"], "b": 20}]
        assert job.hash == pset_hash({"a": job.params["a"]})


def test_join_without_over_takes_everything(tmp_path: Path) -> None:
    g = build(PIPELINE, tmp_path)
    (total,) = jobs_of(g, "total")
    assert dict(total.params) == {}
    assert total.hash == pset_hash({})
    assert sorted(total.deps) == sorted(j.id for j in jobs_of(g, "mean"))


def test_join_broadcast_from_fewer_parameters(tmp_path: Path) -> None:
    g = build(PIPELINE, tmp_path)
    uses = jobs_of(g, "use_b")
    assert len(uses) == 6
    for job in uses:
        assert len(job.deps) == 1
        up = g.jobs[job.deps[0]]
        assert up.rule == "per_b" and dict(up.params) == {"b": job.params["b"]}


def test_rules_in_dependency_order(tmp_path: Path) -> None:
    g = build(PIPELINE, tmp_path)
    order = [r.name for r in g.rules]
    for r in g.rules:
        for up in r.upstream:
            assert order.index(up) < order.index(r.name)
    for j in g.jobs:
        assert all(d < j.id for d in j.deps)


def test_join_matches_int_and_float_values(tmp_path: Path) -> None:
    """Upstream over a CSV column 2.0, downstream over a param 2: the same value."""
    text = (
        'param a = [1, 2]\nsweep rows = csv("p.csv")\n'
        'rule up over rows:\n    output: "o"\n    shell: "echo {a} > {output}"\n'
        'rule down over a:\n    input: up\n    output: "d"\n    shell: "cat {input} > {output}"\n'
    )
    g = build(text, tmp_path, {"p.csv": "a\n1.0\n2.5\n2.0\n"})
    downs = jobs_of(g, "down")
    assert [[g.jobs[d].params["a"] for d in j.deps] for j in downs] == [[1.0], [2.0]]


# ---- rendered commands ---------------------------------------------------------------


def bash_words(command_part: str) -> list[str]:
    """What bash makes of some rendered words: one line per word."""
    out = subprocess.run(["bash", "-c", f"printf '%s\\n' {command_part}"], capture_output=True, text=True, check=True)
    return out.stdout.splitlines()


def test_values_are_shell_quoted(tmp_path: Path) -> None:
    text = (
        "param s = [\"it's a b\", \"$HOME `id` ; rm -rf x\", \"*\", \"tab\\there\"]\n"
        "param x = [0.1]\nparam f = [true]\nsweep g = s * x * f\n"
        'rule r over g:\n    output: "o"\n    shell: "{s} {x} {f}"\n'
    )
    g = build(text, tmp_path)
    jobs = jobs_of(g, "r")
    assert [bash_words(j.command) for j in jobs] == [
        ["it's a b", "0.1", "true"],
        ["$HOME `id` ; rm -rf x", "0.1", "true"],
        ["*", "0.1", "true"],
        ["tab\there", "0.1", "true"],
    ]
    assert jobs[0].command == "'it'\"'\"'s a b' 0.1 true"


def test_braces_and_plain_text(tmp_path: Path) -> None:
    text = 'param a = [1]\nrule r over a:\n    output: "o"\n    shell: "awk \'{{print ${a}}}\' in > {output}; echo ${{HOME}}"\n'
    (job,) = build(text, tmp_path).jobs
    assert job.command == "awk '{print $1}' in > o; echo ${HOME}"


def test_path_placeholders(tmp_path: Path) -> None:
    text = """\
workdir = "calc"
param a = [1, 2]
param b = [10]
param ncores = [4]
sweep grid = a * b * ncores

rule gen over grid:
    output: "out.txt"
    shell: "echo {a} > {output}"

rule other over grid:
    output: "other.txt"
    shell: "echo {b} > {output}"

rule use over grid:
    input: g = gen, other, cfg = "config/{a}.json"
    output: data = "data.json", log = "run.log"
    resources: cpus = ncores, mem = "2G", time = 90
    shell: "run {input.g} {input.other} {input.cfg} {input} -l {input.list} -o {output.data} {output.log} {output} h={pset.hash} d={pset.dir} c={resources.cpus} m={resources.mem} t={resources.time} r={root}"
"""
    g = build(text, tmp_path)
    use = jobs_of(g, "use")[0]
    gen = jobs_of(g, "gen")[0]
    other = jobs_of(g, "other")[0]
    h = pset_hash({"a": 1, "b": 10, "ncores": 4})
    assert use.hash == gen.hash == other.hash == h
    gen_out = f"../../../gen/{h[:2]}/{h}/out.txt"
    other_out = f"../../../other/{h[:2]}/{h}/other.txt"
    assert use.command == (
        f"run {gen_out} {other_out} ../../../../config/1.json {gen_out} {other_out} ../../../../config/1.json"
        f" -l {INPUT_LIST_NAME} -o data.json run.log data.json run.log"
        f" h={h} d=calc/use/{h[:2]}/{h} c=4 m=2048 t=01:30:00 r=../../../.."
    )
    assert use.sources == ("config/1.json",)
    assert use.resources.cpus == 4 and use.resources.mem_mb == 2048 and use.resources.time_s == 5400
    # outputs live at <workdir>/<rule>/<hh>/<hash>/<file>
    assert g.output_paths(use) == (
        tmp_path / "calc" / "use" / h[:2] / h / "data.json",
        tmp_path / "calc" / "use" / h[:2] / h / "run.log",
    )
    assert use.reldir == f"use/{h[:2]}/{h}"
    # the relative paths really lead there from the job's own directory
    job_dir = g.job_dir(use)
    assert (job_dir / gen_out).resolve() == g.output_paths(gen)[0].resolve()
    assert (job_dir / "../../../..").resolve() == tmp_path.resolve()
    # {pset.dir} is relative to the project folder: {root}/{pset.dir} is the job's folder
    assert (job_dir / "../../../.." / f"calc/use/{h[:2]}/{h}").resolve() == job_dir.resolve()


def test_deeper_workdir_root(tmp_path: Path) -> None:
    text = 'workdir = "build/runs"\nrule r:\n    output: "o"\n    shell: "cd {root} && pwd > {output}"\n'
    g = build(text, tmp_path)
    (job,) = g.jobs
    assert job.command == "cd ../../../../.. && pwd > o"
    assert (g.job_dir(job) / "../../../../..").resolve() == tmp_path.resolve()
    assert g.job_dir(job) == tmp_path / "build" / "runs" / "r" / job.hash[:2] / job.hash


def test_resources_from_a_parameter(tmp_path: Path) -> None:
    text = (
        'param ncores = [1, 2, 8]\nparam mem = ["1G", "500M"]\nsweep g = ncores * mem\n'
        'rule r over g:\n    resources: cpus = ncores, mem = mem\n    shell: "run -n {resources.cpus} -m {resources.mem} {ncores}"\n'
    )
    g = build(text, tmp_path)
    assert [(j.resources.cpus, j.resources.mem_mb) for j in g.jobs] == [
        (1, 1024), (1, 500), (2, 1024), (2, 500), (8, 1024), (8, 500),
    ]
    assert g.jobs[4].command == "run -n 8 -m 1024 8"


def test_no_output_rule_and_default_resources(tmp_path: Path) -> None:
    (job,) = build('rule r:\n    shell: "true"\n', tmp_path).jobs
    assert job.command == "true"
    assert tuple(job.resources) == (1, None, None, 1, 1, 0, None)


def test_triple_quoted_command_is_dedented(tmp_path: Path) -> None:
    text = 'param a = [1]\nrule r over a:\n    shell: """\n        echo {a}\n        if true; then\n            echo in\n        fi\n    """\n'
    (job,) = build(text, tmp_path).jobs
    assert job.command == "echo 1\nif true; then\n    echo in\nfi"


def test_moving_the_project_changes_no_command(tmp_path: Path) -> None:
    text = PIPELINE + '\nrule src over a:\n    input: "data/{a}.csv"\n    output: "s"\n    shell: "cat {input} {root} {pset.dir} > {output}"\n'
    one = build(text, tmp_path / "here")
    two = build(text, tmp_path / "somewhere" / "else" / "entirely")
    assert one.root != two.root
    assert [j.command for j in one.jobs] == [j.command for j in two.jobs]
    assert [(j.rule, j.hash, j.deps, j.sources) for j in one.jobs] == [(j.rule, j.hash, j.deps, j.sources) for j in two.jobs]
    assert all(str(tmp_path) not in j.command for j in one.jobs + two.jobs)


def test_sweepfile_error_lists_every_mistake(tmp_path: Path) -> None:
    text = "param a = [1, 1]\nparam b = [2]\nsweep g = a * zz\nrule r over b:\n    shell: \"echo {q}\"\n"
    with pytest.raises(SweepfileError) as info:
        build(text, tmp_path)
    assert [(d.span.line, d.message) for d in info.value.diagnostics if d.span] == [
        (1, "value 1 appears twice in parameter 'a'"),
        (3, "unknown parameter or sweep 'zz'"),
        (5, "unknown placeholder {q}"),
    ]


def test_example_from_the_design(tmp_path: Path) -> None:
    text = (Path(__file__).parent / "cases" / "parse" / "design_example.sweep").read_text()
    g = build(text, tmp_path, {"params.csv": "param_combo,x,y\n0,1,a\n1,2,b\n2,3,c\n3,4,d\n"})
    assert {n: len(s.psets) for n, s in g.sweeps.items()} == {"grid": 9, "pairs": 3, "scan": 5, "rows": 3, "both": 9, "small": 6}
    assert [(r.name, r.n_jobs) for r in g.rules] == [("gen", 9), ("square", 9), ("mean", 3), ("total", 1)]
    square = g.rule("square")
    assert square.results == ("square.json",) and square.retries == 1
    assert g.rule("total").local is True
    assert dict(g.backends["slurm"]) == {"partition": "debug", "account": "testbank", "bundle": 50, "throttle": 20}
    assert [dict(p) for p in g.sweeps["small"].psets] == [
        {"a": 1, "b": 10}, {"a": 1, "b": 20}, {"a": 1, "b": 30}, {"a": 2, "b": 10}, {"a": 2, "b": 20}, {"a": 3, "b": 10},
    ]
    # the star's psets all lie on the grid, so grid + scan is the grid
    assert g.sweeps["both"].hashes == g.sweeps["grid"].hashes
    assert [dict(p) for p in g.sweeps["pairs"].psets] == [{"a": 1, "c": "x"}, {"a": 2, "c": "y"}, {"a": 3, "c": "z"}]
    sq = jobs_of(g, "square")[0]
    assert shlex.split(sq.command)[:5] == ["python", "square.py", "--a", "1", "--b"]


def test_paths_are_quoted_too(tmp_path: Path) -> None:
    text = (
        'param a = [1]\nrule gen over a:\n    output: "my out.txt"\n    shell: "echo {a} > {output}"\n'
        'rule use over a:\n    input: gen, "data dir/{a}.csv"\n    output: "x"\n    shell: "cat {input} > {output}"\n'
    )
    g = build(text, tmp_path)
    gen, use = g.jobs
    assert gen.command == "echo 1 > 'my out.txt'"
    h = gen.hash
    assert bash_words(use.command.split(" > ")[0].removeprefix("cat ")) == [
        f"../../../gen/{h[:2]}/{h}/my out.txt",
        "../../../../data dir/1.csv",
    ]
