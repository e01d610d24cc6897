"""Hostile sweepfiles: every one a `file:line:col` error, at once, never a traceback.

(The golden cases in tests/cases/errors/ pin the messages of the plain ones;
these need an absolute path, a timing, or a limit raised.)
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from sweepc.errors import SweepfileError
from sweepc.lang.compiler import compile as compile_module
from sweepc.lang.graph import BuildGraph
from sweepc.lang.parser import parse

HOSTILE = {
    "not x200": "param a = [1, 2]\nsweep s = a where " + "not " * 200 + "a > 1\n",
    "minus x200 in where": "param a = [1, 2]\nsweep s = a where " + "-" * 200 + "a > 1\n",
    "200-term sum in where": "param a = [1, 2]\nsweep s = a where " + "+".join(["a"] * 200) + " > 1\n",
    "list nesting 500": "param a = " + "[" * 500 + "1" + "]" * 500 + "\n",
    "500-term sweep sum": "param a = [1, 2]\nsweep s = " + " + ".join(["a"] * 500) + "\n",
    "logspace overflow": "param a = logspace(0, 400, 3)\n",
    "4301-digit literal": "param a = [" + "7" * 4301 + "]\n",
    "power in where": "param a = [1, 2]\nsweep s = a where 9 ** 9 ** 9 > a\n",
    "power of a constant": "param a = [9 ** 9 ** 9]\n",
    "product in where": "param a = [1, 2]\nsweep s = a where 10 ** 4000 * 10 ** 4000 > a\n",
    "round in where": "param a = [1, 2]\nsweep s = a where round(a, -10**9) > a\n",
    "list repeated in where": "param a = [1, 2]\nsweep s = a where a in [1] * 10**9\n",
    "range 10**12": "param a = range(0, 10**12)\n",
    "product of four range(1000)": "param a = range(1000)\nparam b = range(1000)\nparam c = range(1000)\nparam d = range(1000)\nsweep s = a * b * c * d\n",
    "linspace 10**9": "param a = linspace(0, 1, 10**9)\n",
    "range 10**7": "param a = range(10**7)\n",
    "zip of 10**7 and 3": "param a = range(10**7)\nparam b = range(3)\nsweep s = zip(a, b)\n",
    "range 10**12 in star": "param a = [1, 2]\nsweep s = star(a=range(10**12), vary=[a])\n",
    "complex power": "param a = [(-8) ** 0.5]\n",
    "NUL in a backend setting": 'backend slurm:\n    partition = "a\\x00b"\n',
    "NUL in a command": 'rule r:\n    output: "o"\n    shell: "echo \\0 > {output}"\n',
    "NUL byte in the file": "param a = [1,\x00 2]\n",
    "output name of 256 bytes": 'rule r:\n    output: "' + "o" * 256 + '"\n    shell: "echo > {output}"\n',
}


def compile_text(text: str, root: Path) -> BuildGraph:
    root.mkdir(parents=True, exist_ok=True)
    sweepfile = root / "sweepfile"
    sweepfile.write_text(text, encoding="utf-8")
    return compile_module(parse(text, "sweepfile"), root, sweepfile)


def error_of(text: str, root: Path) -> str:
    with pytest.raises(SweepfileError) as e:
        compile_text(text, root)
    return str(e.value)


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_input_is_an_error_with_a_caret_in_well_under_a_second(name: str, tmp_path: Path) -> None:
    start = time.process_time()
    message = error_of(HOSTILE[name], tmp_path)
    took = time.process_time() - start
    assert message.startswith("sweepfile:"), message
    assert "^" in message and "  hint: " in message
    assert took < 0.5, f"{name}: {took:.2f} s of CPU"


def test_a_200_term_sum_says_how_deep_it_may_nest(tmp_path: Path) -> None:
    text = HOSTILE["200-term sum in where"]
    assert error_of(text, tmp_path).splitlines()[0] == "sweepfile:2:11: this expression is nested more than 100 levels deep"


def test_a_deep_expression_within_the_limit_works(tmp_path: Path) -> None:
    text = "param a = [1, 2]\nsweep s = a where " + "+".join(["a"] * 90) + " > 100\n"
    g = compile_text(text, tmp_path)
    assert [dict(p) for p in g.sweeps["s"].psets] == [{"a": 2}]


def test_the_checks_in_conditions_keep_their_results(tmp_path: Path) -> None:
    text = "param a = [1, 2, 3]\nsweep s = a where 2 ** a * 3 > 10 and round(a / 3, 1) != 0.3 and round(a) == a\n"
    assert [dict(p) for p in compile_text(text, tmp_path).sweeps["s"].psets] == [{"a": 2}, {"a": 3}]


def test_a_float_literal_beyond_range_is_infinity_in_a_condition(tmp_path: Path) -> None:
    # found by the fuzzer: the condition's code said `inf`, a NameError
    text = "param a = [1, 2]\nsweep s = a where a < 1e999 and 1 / (1e999 - 1) < 0.5 and -1e999 < a\n"
    assert [dict(p) for p in compile_text(text, tmp_path).sweeps["s"].psets] == [{"a": 1}, {"a": 2}]


def test_zip_of_unequal_lengths_is_reported_at_once_even_with_the_limit_raised(tmp_path: Path) -> None:
    text = "max_psets = 10**7\nparam a = range(10**7)\nparam b = range(3)\nsweep s = zip(a, b)\n"
    start = time.process_time()
    message = error_of(text, tmp_path)
    assert message.splitlines()[0] == "sweepfile:4:11: zip of unequal lengths: a has 10000000 psets, b has 3"
    assert time.process_time() - start < 5


def test_max_psets_raises_the_limit(tmp_path: Path) -> None:
    text = "param a = range(3)\nparam b = range(4)\nsweep s = a * b\n"
    assert len(compile_text(text, tmp_path / "default").sweeps["s"].psets) == 12
    message = error_of("max_psets = 11\n" + text, tmp_path / "low")
    assert message.splitlines()[0] == "sweepfile:4:11: this sweep has 12 psets; the limit is 11"
    assert message.splitlines()[-1] == "  hint: if you mean it, raise the limit with the setting max_psets = 12"
    assert len(compile_text("max_psets = 12\n" + text, tmp_path / "enough").sweeps["s"].psets) == 12


def test_the_limit_applies_to_a_parameter_sum_and_a_where(tmp_path: Path) -> None:
    assert error_of("max_psets = 4\nparam a = [1, 2, 3] + [4, 5]\n", tmp_path / "p").splitlines()[0] == (
        "sweepfile:2:11: parameter 'a' has 5 values; the limit is 4"
    )
    text = "max_psets = 4\nparam a = [1, 2, 3]\nparam b = [4, 5]\nsweep s = a + b\n"
    assert error_of(text, tmp_path / "s").splitlines()[0] == "sweepfile:4:11: this sweep has 5 psets; the limit is 4"
    text = "max_psets = 4\nparam a = [1, 2]\nparam b = [4, 5, 6]\nsweep s = a * b where a > 1\n"
    assert error_of(text, tmp_path / "w").splitlines()[0] == "sweepfile:4:11: this sweep has 6 psets; the limit is 4"


def test_workdir_may_be_an_absolute_path_inside_the_project(tmp_path: Path) -> None:
    root = tmp_path / "project"
    text = f'workdir = "{root}/runs"\nrule r:\n    output: "o"\n    shell: "echo > {{output}}"\n'
    assert compile_text(text, root).workdir == f"{root}/runs"


@pytest.mark.parametrize(
    ("workdir", "message"),
    [
        ("{root}", "workdir cannot be the project folder itself"),
        ("{root}/", "workdir cannot be the project folder itself"),
        ("{root}/runs/..", "workdir cannot be the project folder itself"),
        ("{root}/.sweepc/jobs", "workdir cannot be inside .sweepc/: sweepc keeps its state there"),
        ("{parent}", "workdir must be a folder below the project folder"),
        ("{parent}/shared", "workdir must be a folder below the project folder"),
        ("/", "workdir must be a folder below the project folder"),
        ("./", "workdir cannot be the project folder itself"),
        ("calc/../..", "workdir must be a folder below the project folder"),
        ("x" * 256, "a folder name in workdir is longer than 255 bytes"),
    ],
)
def test_workdir_is_strictly_inside_the_project(workdir: str, message: str, tmp_path: Path) -> None:
    root = tmp_path / "project"
    value = workdir.format(root=root, parent=tmp_path)
    text = f'workdir = "{value}"\n'
    first = error_of(text, root).splitlines()[0]
    assert first == f"sweepfile:1:11: {message}"


def test_workdir_through_a_symlink_to_the_project_is_the_project(tmp_path: Path) -> None:
    root = tmp_path / "project"
    root.mkdir()
    (tmp_path / "link").symlink_to(root)
    assert error_of(f'workdir = "{tmp_path}/link"\n', root).splitlines()[0] == "sweepfile:1:11: workdir cannot be the project folder itself"


def test_workdir_cannot_hold_a_sweepfile_kept_below_the_root(tmp_path: Path) -> None:
    # compile() may be given a root other than the sweepfile's folder (the API does)
    root = tmp_path / "project"
    (root / "conf").mkdir(parents=True)
    sweepfile = root / "conf" / "sweepfile"
    text = 'workdir = "conf"\n'
    sweepfile.write_text(text)
    with pytest.raises(SweepfileError) as e:
        compile_module(parse(text, "sweepfile"), root, sweepfile)
    assert str(e.value).splitlines()[0] == "sweepfile:1:11: workdir cannot hold the sweepfile"


def test_nul_in_a_csv_cell_names_file_row_and_column(tmp_path: Path) -> None:
    (tmp_path).mkdir(exist_ok=True)
    (tmp_path / "p.csv").write_bytes(b"x,y\n1,ok\n2,b\x00d\n")
    message = error_of('sweep s = csv("p.csv")\n', tmp_path)
    assert message.splitlines()[0] == "sweepfile:1:15: NUL character in column 'y' (p.csv:3)"


def test_a_nul_in_a_csv_column_left_out_is_harmless(tmp_path: Path) -> None:
    (tmp_path).mkdir(exist_ok=True)
    (tmp_path / "p.csv").write_bytes(b"x,y\n1,ok\n2,b\x00d\n")
    g = compile_text('sweep s = csv("p.csv", columns=["x"])\n', tmp_path)
    assert [dict(p) for p in g.sweeps["s"].psets] == [{"x": 1}, {"x": 2}]


def test_npy_rows_count_against_the_limit_and_refuse_nul(tmp_path: Path) -> None:
    import numpy as np

    tmp_path.mkdir(exist_ok=True)
    np.save(tmp_path / "s.npy", np.arange(12.0).reshape(6, 2))
    text = 'max_psets = 5\nsweep s = npy("s.npy", columns=["x", "y"])\n'
    assert error_of(text, tmp_path).splitlines()[0] == "sweepfile:2:15: s.npy gives 6 psets; the limit is 5"
    np.save(tmp_path / "t.npy", np.array([["a", "b\x00c"]]))
    text = 'sweep s = npy("t.npy", columns=["x", "y"])\n'
    assert error_of(text, tmp_path).splitlines()[0] == "sweepfile:1:15: NUL character in column 'y' of t.npy"
