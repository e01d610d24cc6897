"""`sweepc -D NAME=VALUE`: parameters and csv()/npy() keywords from the command line."""

from __future__ import annotations

import json
from typing import Any

import sweepc


SWEEPFILE = """\
param a = [1, 2]
param b = [10]
sweep grid = a * b
sweep rows = csv("p.csv", start=0, rows=2)

rule r over grid:
    output: "o.txt"
    shell: "echo {a} {b} > {output}"

rule q over rows:
    output: "o.txt"
    shell: "echo {x} > {output}"
"""
CSV = "x,y\n1,2\n3,4\n5,6\n7,8\n9,10\n"


def test_a_parameter_is_replaced_in_the_sweepfile_syntax(local_project: Any) -> None:
    p = local_project.write(SWEEPFILE, **{"p.csv": CSV})
    r = p.sweepc("-D", "a=range(0, 3)", "psets", "grid", "--format", "json")
    assert r.code == 0, r.err
    assert [row["a"] for row in json.loads(r.out)] == [0, 1, 2]
    # the hashes are those of the values: a=1 is the same pset with or without -D
    plain = {row["a"]: row["_pset_hash"] for row in json.loads(p.sweepc("psets", "grid", "--format", "json").out)}
    over = {row["a"]: row["_pset_hash"] for row in json.loads(r.out)}
    assert over[1] == plain[1]


def test_a_csv_keyword_is_replaced(local_project: Any) -> None:
    p = local_project.write(SWEEPFILE, **{"p.csv": CSV})
    r = p.sweepc("-D", "rows.start=2", "--define", "rows.rows=2", "psets", "rows", "--format", "json")
    assert r.code == 0, r.err
    assert [row["x"] for row in json.loads(r.out)] == [5, 7]


def test_maestro_batches_become_a_shell_loop_over_D(local_project: Any) -> None:
    p = local_project.write(SWEEPFILE, **{"p.csv": CSV})
    for start in (0, 2):
        r = p.sweepc("-D", f"rows.start={start}", "build", "q", "-j", "2")
        assert r.code == 0, r.err + r.out
    # the sweepfile as written (rows 0-1) is up to date; a third batch is not
    assert p.sweepc("build", "q", "-n").out == "sweepc: nothing to do (2 jobs up to date)\n"
    r = p.sweepc("-D", "rows.start=2", "-D", "rows.rows=3", "build", "q", "-n")
    assert r.out.endswith("1 of 3 jobs to run (q 1), 2 up to date\n"), r.out
    # every batch is built: all four rows are up to date under their own -D
    r = p.sweepc("-D", "rows.rows=4", "build", "q", "-n")
    assert r.out == "sweepc: nothing to do (4 jobs up to date)\n"
    runs = p.sweepc("runs", "--format", "json")
    assert [row["overrides"] for row in json.loads(runs.out)] == ["rows.start=0", "rows.start=2"]


def test_syntax_error_points_into_the_D_text(local_project: Any) -> None:
    p = local_project.write(SWEEPFILE, **{"p.csv": CSV})
    r = p.sweepc("-D", "a=[1, 2", "check")
    assert (r.code, r.err) == (2, "-D:1:3: '[' was never closed\n  a=[1, 2\n    ^\n  hint: close it with ']' before the end of the statement\n")
    # a list written as the shell would write it: the hint shows the brackets
    r = p.sweepc("-D", "a=1,2", "check")
    assert (r.code, r.err) == (2, "-D:1:4: unexpected ','; expected the end of the line or 'where'\n  a=1,2\n     ^\n"
                                  "  hint: a list of values needs brackets: -D a='[1,2]'\n")


def test_compile_error_points_into_the_D_text(local_project: Any) -> None:
    p = local_project.write(SWEEPFILE, **{"p.csv": CSV})
    r = p.sweepc("-D", 'a=range("x")', "check")
    assert (r.code, r.err) == (2, "-D:1:9: range() needs a whole number for stop, not 'x'\n  a=range(\"x\")\n          ^^^\n  hint: for example: range(10, 40, 10)\n")
    r = p.sweepc("-D", "rows.strt=3", "check")
    assert (r.code, r.err) == (2, "-D:1:6: unknown csv() argument 'strt'\n  rows.strt=3\n       ^^^^\n  hint: did you mean 'start'?\n")


def test_unknown_names_and_malformed_overrides(local_project: Any) -> None:
    p = local_project.write(SWEEPFILE, **{"p.csv": CSV})
    r = p.sweepc("-D", "aa=[1]", "check")
    assert (r.code, r.err) == (2, "sweepc: -D aa: no parameter 'aa'\n  hint: did you mean 'a'?\n")
    r = p.sweepc("-D", "c=3", "check")
    assert (r.code, r.err) == (2, "sweepc: -D c: no parameter 'c'\n  hint: -D overrides a parameter or a csv()/npy() keyword: "
                                  "a, b, rows.start, rows.rows, rows.index, rows.columns, rows.header\n")
    r = p.sweepc("-D", "grid.start=1", "check")
    assert (r.code, r.err) == (2, "sweepc: -D grid.start: sweep 'grid' is not a csv() or npy() call\n"
                                  "  hint: an override NAME.KEYWORD sets a keyword of csv(...) or npy(...)\n")
    for bad in ("a", "a=", "=3", "1a=3", "a.b.c=1"):
        r = p.sweepc("-D", bad, "check")
        assert r.code == 2 and r.err.startswith(f"sweepc: malformed override -D {bad}\n"), r.err
    r = p.sweepc("-D", "a=[1]", "-D", "a=[2]", "check")
    assert (r.code, r.err) == (2, "sweepc: -D a is given twice ('a=[1]' and 'a=[2]')\n  hint: give each name once\n")


def test_the_api_takes_overrides(local_project: Any) -> None:
    p = local_project.write(SWEEPFILE, **{"p.csv": CSV})
    study = sweepc.load(p.root, overrides=["a=[5, 6, 7]"])
    assert list(study.psets("grid")["a"]) == [5, 6, 7]
    assert study.overrides == ("a=[5, 6, 7]",)
