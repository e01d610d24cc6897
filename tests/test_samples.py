"""Sweeps from files: npy(), csv(header=false), and samples made by a rule (a two-stage build)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

SAMPLER = """\
import argparse, numpy as np
ap = argparse.ArgumentParser()
ap.add_argument("--n", type=int)
ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--out")
a = ap.parse_args()
rng = np.random.default_rng(a.seed)
np.save(a.out, np.round(rng.uniform(0, 1, size=(a.n, 2)), 3))
"""

TWO_STAGE = """\
rule make_samples:
    input: script = "make_samples.py"
    output: "samples.npy"
    shell: "python3 {input.script} --n 4 --out {output}"

sweep s = npy(make_samples, columns=["x", "y"])

rule sim over s:
    output: "out.txt"
    shell: "echo {x} {y} > {output}"

rule collect:
    input: sim
    output: "all.txt"
    shell: "cat {input} > {output}"
"""

PENDING = ("sweepc: sweep 's' reads the output of rule 'make_samples', which is not built yet: its psets, "
           "and the jobs over them, are known once `sweepc build` has made it\n")


def _sims(p: Any) -> list[str]:
    return sorted(j.label for j in p.graph.jobs if j.rule == "sim")


def test_npy_file_rows_are_psets(local_project: Any) -> None:
    p = local_project.write('sweep s = npy("s.npy", columns=["x", "n"], start=1, rows=2)\n'
                            'rule r over s:\n    output: "o"\n    shell: "echo {x} {n} > {output}"\n')
    np.save(p.root / "s.npy", np.array([[0.5, 1], [1.5, 2], [2.5, 3], [3.5, 4]]))
    r = p.sweepc("psets", "s", "--format", "json")
    assert r.code == 0, r.err
    assert [(row["x"], row["n"]) for row in json.loads(r.out)] == [(1.5, 2.0), (2.5, 3.0)]
    np.save(p.root / "s.npy", np.array([[1, 2], [3, 4]], dtype=np.int64))
    r = p.sweepc("psets", "s", "--format", "json")
    assert [row["n"] for row in json.loads(r.out)] == [4]  # rows 1..2 of two rows: the second only
    assert p.job("r[x=3,n=4]") is not None


def test_npy_mistakes(local_project: Any) -> None:
    p = local_project.write('sweep s = npy("s.npy", columns=["x", "y"])\nrule r over s:\n    output: "o"\n    shell: "echo {x} > {output}"\n')
    np.save(p.root / "s.npy", np.arange(6))
    r = p.sweepc("check")
    assert (r.code, r.err) == (2, "sweepfile:1:15: s.npy holds a 1-D array of shape (6,); npy() needs a 2-D one\n"
                                  '  sweep s = npy("s.npy", columns=["x", "y"])\n                ^^^^^^^\n'
                                  "  hint: rows are psets and columns are parameters: numpy.save(path, samples.reshape(n, k))\n")
    np.save(p.root / "s.npy", np.zeros((2, 3)))
    r = p.sweepc("check")
    assert r.code == 2 and r.err.startswith("sweepfile:1:32: columns= names 2 columns, but s.npy has 3 (shape (2, 3))\n"), r.err
    p.write('sweep s = npy("s.npy")\nrule r over s:\n    output: "o"\n    shell: "echo > {output}"\n')
    r = p.sweepc("check")
    assert r.code == 2 and r.err.startswith("sweepfile:1:11: npy() needs columns=[...] to name the columns (a .npy file has no header)\n"), r.err
    p.write('sweep s = npy("none.npy", columns=["x"])\nrule r over s:\n    output: "o"\n    shell: "echo > {output}"\n')
    r = p.sweepc("check")
    assert r.code == 2 and r.err.startswith("sweepfile:1:15: NumPy file 'none.npy' not found\n"), r.err


def test_headerless_csv_is_named_by_columns(local_project: Any) -> None:
    p = local_project.write('sweep h = csv("h.csv", header=false, columns=["p", "q"], start=1)\n'
                            'rule r over h:\n    output: "o"\n    shell: "echo {p} {q} > {output}"\n', **{"h.csv": "1,a\n2,b\n3,c\n"})
    r = p.sweepc("psets", "h", "--format", "json")
    assert r.code == 0, r.err
    assert [(row["p"], row["q"]) for row in json.loads(r.out)] == [(2, "b"), (3, "c")]
    p.write('sweep h = csv("h.csv", header=false, columns=["p"])\nrule r over h:\n    output: "o"\n    shell: "echo {p} > {output}"\n')
    r = p.sweepc("check")
    assert r.code == 2 and r.err.startswith("sweepfile:1:46: columns= names 1 columns, but the rows of h.csv have 2\n"), r.err
    p.write('sweep h = csv("h.csv", header=false)\nrule r over h:\n    output: "o"\n    shell: "echo > {output}"\n')
    r = p.sweepc("check")
    assert r.code == 2 and "csv() needs columns=[...] to name the columns (header=false)" in r.err


def test_samples_made_by_a_rule_build_in_two_stages(local_project: Any) -> None:
    p = local_project.write(TWO_STAGE, **{"make_samples.py": SAMPLER})
    # before the samples exist: check, psets and a dry run say so and show what they can
    r = p.sweepc("check")
    assert (r.code, r.out) == (0, "sweepfile: ok: 0 parameters, 1 sweep, 3 rules, 1 job\n" + PENDING)
    r = p.sweepc("psets", "s")
    assert (r.code, r.err) == (0, PENDING)
    r = p.sweepc("build", "-n")
    assert r.out == "run make_samples: never built\n1 of 1 job to run (make_samples 1), 0 up to date\n" + PENDING
    r = p.sweepc("clean", "orphans", "-n")
    assert (r.code, r.err) == (2, "sweepc: cannot tell orphans while sweep 's' waits for the output of rule 'make_samples'\n"
                                  "  hint: build it first: sweepc build make_samples\n")
    # one build makes the samples, compiles again, and runs what is over them
    r = p.sweepc("build", "-j", "2")
    assert (r.code, r.out.splitlines()[-1].split(" in ")[0]) == (0, "sweepc: 6 done, 0 up to date"), r.out
    assert len(_sims(p)) == 4
    assert p.sweepc("build").out == "sweepc: nothing to do (6 jobs up to date)\n"
    # more samples: the sampler reruns, then exactly the new pset
    before = _sims(p)
    p.edit("--n 4", "--n 5")
    r = p.sweepc("build", "--explain")
    assert r.code == 0, r.out
    (new,) = set(_sims(p)) - set(before)
    assert f"run {new}: never built\n" in r.out
    assert sum(1 for line in r.out.splitlines() if line.startswith("run sim[")) == 1
    assert r.out.splitlines()[-1].startswith("sweepc: 3 done, 4 up to date")
    # the sampler edited, its samples the same: it alone runs, and the line counts the rest up to date
    (p.root / "make_samples.py").write_text(SAMPLER + "# the same samples\n")
    r = p.sweepc("build")
    assert (r.code, r.out.splitlines()[-1].split(" in ")[0]) == (0, "sweepc: 1 done, 6 up to date"), r.out
    assert p.sweepc("build").out == "sweepc: nothing to do (7 jobs up to date)\n"


def test_a_failing_sample_rule_stops_the_build_with_its_log(local_project: Any) -> None:
    p = local_project.write(TWO_STAGE.replace('"make_samples.py"', '"bad.py"'), **{"bad.py": "print('no samples today')\nraise SystemExit(3)\n"})
    r = p.sweepc("build")
    assert r.code == 1
    assert "FAILED make_samples: exit 3\n" in r.out and "  | no samples today\n" in r.out
    assert r.out.endswith(
        "sweepc: sweep 's' reads what rule make_samples makes, which did not end done: nothing runs over it yet\n"
        "sweepc: stopped before what runs over the samples (use -k to build everything that does not need them)\n"
    )


CSV_STAGE = """\
rule make_samples:
    input: script = "make.py"
    output: "samples.csv"
    shell: "python3 {input.script} > {output}"

sweep s = csv(make_samples, columns=["x", "y"])

rule sim over s:
    output: "out.txt"
    shell: "echo {x} {y} > {output}"
"""

GOOD_SAMPLER = 'print("x,y")\nprint("1,2")\nprint("3,4")\n'


def test_what_a_failed_sampler_left_locks_nothing(local_project: Any) -> None:
    # A sampler that failed (or was stopped) after `>` made its file left it empty,
    # and every later command failed on it -- `build`, `status`, `clean` -- until
    # the file was removed by hand. That output now counts as not there yet.
    p = local_project.write(CSV_STAGE, **{"make.py": "raise SystemExit(3)\n"})
    r = p.sweepc("build")
    assert r.code == 1 and "FAILED make_samples: exit 3\n" in r.out, r.out
    left = p.root / p.graph.output_paths(p.job("make_samples"))[0]
    assert left.read_text() == ""
    unread = ("sweepc: sweep 's' cannot read its samples: calc/make_samples/c1/c1a637e7efbb2dfb/samples.csv (the output of rule "
              "'make_samples') is empty; `sweepc build` first runs rule 'make_samples' again if its last run failed or it is out of date\n")
    r = p.sweepc("check")
    assert (r.code, r.out) == (0, "sweepfile: ok: 0 parameters, 1 sweep, 2 rules, 1 job\n" + unread)
    r = p.sweepc("status", "--format", "json")
    assert r.code == 0 and [(x["rule"], x["failed"], x["jobs"]) for x in json.loads(r.out)] == [("make_samples", 1, 1), ("sim", 0, 0)]
    assert p.sweepc("clean", "outputs", "-n").code == 0
    # fixed: the next build runs the sampler again, then what is over its samples
    (p.root / "make.py").write_text(GOOD_SAMPLER)
    r = p.sweepc("build")
    assert (r.code, r.out.splitlines()[-1].split(" in ")[0]) == (0, "sweepc: 3 done, 0 up to date"), r.out
    assert _sims(p) == ["sim[x=1,y=2]", "sim[x=3,y=4]"]
    assert p.sweepc("build").out == "sweepc: nothing to do (3 jobs up to date)\n"


def test_a_sampler_that_ended_done_but_made_what_its_sweep_cannot_read_is_an_error_of_the_build(local_project: Any) -> None:
    p = local_project.write(CSV_STAGE, **{"make.py": GOOD_SAMPLER})
    assert p.sweepc("build").code == 0
    p.edit('columns=["x", "y"]', 'columns=["x", "y", "w"]')  # the sampler is up to date: running it again makes no w
    r = p.sweepc("build")
    assert (r.code, r.out) == (2, "")
    assert r.err == (
        "sweepfile:6:37: column 'w' is not in calc/make_samples/c1/c1a637e7efbb2dfb/samples.csv (the output of rule 'make_samples')\n"
        '  sweep s = csv(make_samples, columns=["x", "y", "w"])\n'
        "                                      ^^^^^^^^^^^^^^^\n"
        "  hint: its columns are: x, y\n"
    )
    assert p.sweepc("status").code == 0  # and nothing else is locked


def test_with_k_a_sampler_that_wrote_its_file_then_failed_runs_once_and_nothing_runs_over_its_file(local_project: Any) -> None:
    p = local_project.write(CSV_STAGE + 'rule other:\n    output: "o.txt"\n    shell: "echo hi > {output}"\n',
                            **{"make.py": GOOD_SAMPLER + "raise SystemExit(5)\n"})
    r = p.sweepc("build", "-k")
    assert r.code == 1
    assert r.out.count("FAILED make_samples (exit 5)\n") == 1, r.out
    assert r.out.splitlines()[-2:] == [
        r.out.splitlines()[-2],
        "sweepc: sweep 's' reads what rule make_samples makes, which did not end done: nothing runs over it yet",
    ]
    assert r.out.splitlines()[-2].startswith("sweepc: 1 done, 1 failed, 0 up to date"), r.out
    rows = p.rows()
    assert rows["make_samples"]["status"] == "failed" and rows["other"]["status"] == "done"
    assert not any(k.startswith("sim") for k in rows), rows


def test_where_and_zip_over_samples_not_made_yet_wait_for_them(local_project: Any) -> None:
    # a fresh clone (or after `clean all`) could not build: before the sampler had run,
    # `s0 where x > 1` said "unknown parameter 'x'", zip(s0, k) "zip of unequal lengths"
    p = local_project.write("""\
param k = [10, 20, 30, 40]
rule make_samples:
    input: script = "make_samples.py"
    output: "samples.npy"
    shell: "python3 {input.script} --n 4 --out {output}"
sweep s0 = npy(make_samples, columns=["x", "y"])
sweep big = s0 where x > 0.5
sweep paired = zip(s0, k)
rule sim over big:
    output: "out.txt"
    shell: "echo {x} {y} > {output}"
rule pair over paired:
    output: "out.txt"
    shell: "echo {x} {k} > {output}"
""", **{"make_samples.py": SAMPLER})
    r = p.sweepc("check")
    assert (r.code, r.out.splitlines()[0]) == (0, "sweepfile: ok: 1 parameter, 3 sweeps, 3 rules, 1 job"), r.out + r.err
    r = p.sweepc("build")
    assert r.code == 0, r.out + r.err
    samples = np.load(next((p.root / "calc" / "make_samples").glob("*/*/samples.npy")))
    assert sorted(j.label for j in p.graph.jobs if j.rule == "sim") == sorted(
        f"sim[x={x:g},y={y:g}]" for x, y in samples if x > 0.5)
    assert sorted(j.label for j in p.graph.jobs if j.rule == "pair") == sorted(
        f"pair[x={x:g},y={y:g},k={k}]" for (x, y), k in zip(samples, (10, 20, 30, 40)))
    assert p.sweepc("build").out.startswith("sweepc: nothing to do")


def test_the_hints_about_a_sampler_and_parameters_do_not_send_the_user_in_circles(local_project: Any) -> None:
    # {seed} in a sampler said it "runs once, over no parameters"; adding 'over seed' then
    # said "remove 'over'": a sampler runs once, so its values go into its command
    text = ('param seed = [7]\nrule make_samples:\n    output: "s.npy"\n    shell: "mk --seed {seed} {output}"\n'
            'sweep s = npy(make_samples, columns=["x"])\nrule r over s:\n    shell: "echo {x}"\n')
    p = local_project.write(text)
    r = p.sweepc("check")
    assert (r.code, r.err.splitlines()[-1]) == (2, "  hint: rule 'make_samples' makes samples, so it runs once, over no parameters: "
                                                   "write the value into its command (seed has one value: 7)")
    p.write(text.replace("rule make_samples:", "rule make_samples over seed:"))
    r = p.sweepc("check")
    assert (r.code, r.err.splitlines()[-1]) == (2, "  hint: a rule that makes samples runs once: remove 'over' from rule 'make_samples', "
                                                   "and write the values it needs into its command")
    p.write('param a = [1, 2]\nrule r:\n    shell: "echo {a}"\n')  # any other rule: 'over' is the way
    r = p.sweepc("check")
    assert (r.code, r.err.splitlines()[-1]) == (2, "  hint: rule 'r' runs once, over no parameters: add 'over a' to run it once per value")


def test_a_sweep_reading_a_rule_is_a_dependency(local_project: Any) -> None:
    p = local_project.write(TWO_STAGE.replace('input: script = "make_samples.py"', 'input: script = "make_samples.py", sim'),
                            **{"make_samples.py": SAMPLER})
    r = p.sweepc("check")
    assert r.code == 2 and r.err.startswith("sweepfile:2:40: dependency cycle: make_samples -> sim -> make_samples\n"), r.err


def test_sample_rule_mistakes(local_project: Any) -> None:
    p = local_project.write('param a = [1]\nrule g over a:\n    output: "s.npy"\n    shell: "true"\n'
                            'sweep s = npy(g, columns=["x"])\nrule r over s:\n    output: "o"\n    shell: "echo {x} > {output}"\n')
    r = p.sweepc("check")
    assert r.code == 2 and r.err.startswith("sweepfile:5:15: rule 'g' runs over a sweep, so it has no one output for npy() to read\n"), r.err
    p.write('rule g:\n    output: "s.npy"\n    shell: "true"\n'
            'sweep s = npy(g)\nrule r over s:\n    output: "o"\n    shell: "echo > {output}"\n')
    r = p.sweepc("check")
    assert r.code == 2 and "npy() needs columns=[...]" in r.err
    p.write('rule g:\n    output: "s.npy"\n    shell: "true"\n'
            'sweep s = npy(gg, columns=["x"])\nrule r over s:\n    output: "o"\n    shell: "echo {x} > {output}"\n')
    r = p.sweepc("check")
    assert r.code == 2 and r.err.startswith("sweepfile:4:15: unknown rule 'gg'\n"), r.err
    p.write('rule g:\n    output: temp("s.npy")\n    shell: "true"\n'
            'sweep s = npy(g, columns=["x"])\nrule r over s:\n    output: "o"\n    shell: "echo {x} > {output}"\n')
    r = p.sweepc("check")
    assert (r.code, r.err) == (2, "sweepfile:2:13: npy() reads the output of rule 'g', which is temp(): sweepc removes those once read, "
                                  "and the samples are read again at every build\n"
                                  '      output: temp("s.npy")\n'
                                  "              ^^^^^^^^^^^^^\n"
                                  "  hint: make it a plain output of rule 'g'\n")
