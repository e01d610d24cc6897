"""Incremental local builds, end to end: every rebuild reason with its exact
text, what an edit to the sweepfile reruns, orphans, moving the project,
targets, and the Python API agreeing with the CLI.

Real processes, real files, a tmp project (the `local_project` fixture in
conftest.py). The CLI runs in-process through sweepc.cli.main unless a real
process is needed (signals).
"""

from __future__ import annotations

import os
import re
import time
from collections import Counter
from pathlib import Path

import pytest

import sweepc

# 4 gen + 4 square (per pset), 2 mean (gather by a), 1 total (over everything).
# gen fails when {root}/fail-A-B exists and sends Ctrl-C to sweepc (its
# parent) when {root}/stop-A-B exists: failures and interrupts on demand.
SWEEPFILE = '''
param a = [1, 2]
param b = [10, 20]
sweep grid = a * b

rule gen over grid:
    input: "src.txt"
    output: "out.txt"
    shell: """
        if [ -e {root}/fail-{a}-{b} ]; then echo boom; exit 4; fi
        if [ -e {root}/stop-{a}-{b} ]; then kill -INT $SWEEPC_BUILD_PID; sleep 20; fi
        echo {a} {b} > {output}
    """

rule square over grid:
    input: gen
    output: "sq.txt"
    shell: "sed s/^/sq/ {input} > {output}"

rule mean over grid by a:
    input: square
    output: "mean.txt"
    shell: "cat {input} > {output}"

rule total:
    input: mean
    output: "total.txt"
    shell: "cat {input} | sort > {output}"
'''

GENS = ["gen[a=1,b=10]", "gen[a=1,b=20]", "gen[a=2,b=10]", "gen[a=2,b=20]"]
SQUARES = [g.replace("gen", "square") for g in GENS]
MEANS = ["mean[a=1]", "mean[a=2]"]
ALL = [*GENS, *SQUARES, *MEANS, "total"]
SUMMARY_RE = re.compile(r"^sweepc: (.*) in \d+\.\ds\n$")


@pytest.fixture
def proj(local_project):
    return local_project.write(SWEEPFILE, **{"src.txt": "hello\n"})


@pytest.fixture
def built(proj):
    r = proj.sweepc("build", "-j", "2")
    assert r.code == 0, r
    assert proj.sweepc("build", "-n").out == "sweepc: nothing to do (11 jobs up to date)\n"
    return proj


def dry(p, *args: str) -> str:
    r = p.sweepc("build", "-n", *args)
    assert r.code == 0, r
    assert r.err == ""
    return r.out


def summary_of(out: str) -> str:
    """The words of the final 'sweepc: ... in 0.1s' line, without the time."""
    last = out.splitlines(keepends=True)[-1]
    m = SUMMARY_RE.match(last)
    assert m, out
    return m.group(1)


# ---------------------------------------------------------------- every reason


def test_never_built_plan_build_and_nothing_to_do(proj):
    assert dry(proj) == "".join(f"run {j}: never built\n" for j in ALL) + (
        "11 of 11 jobs to run (gen 4, square 4, mean 2, total 1), 0 up to date\n"
    )
    assert not (proj.root / "calc").exists(), "a dry run must not run or create anything"
    r = proj.sweepc("build", "-j", "2")
    assert r.code == 0
    assert summary_of(r.out) == "11 done, 0 up to date"
    assert proj.out("total").read_text() == "sq1 10\nsq1 20\nsq2 10\nsq2 20\n"
    assert set(proj.statuses().values()) == {"done"}
    # the no-op build says the same words as the no-op dry run
    assert dry(proj) == "sweepc: nothing to do (11 jobs up to date)\n"
    r = proj.sweepc("build")
    assert (r.code, r.out) == (0, "sweepc: nothing to do (11 jobs up to date)\n")


def test_output_missing_reruns_that_job_and_its_downstream_only(built):
    built.out("gen[a=2,b=10]").unlink()
    assert dry(built) == (
        "run gen[a=2,b=10]: output missing: out.txt\n"
        "run square[a=2,b=10]: upstream gen[a=2,b=10] will run\n"
        "run mean[a=2]: upstream square[a=2,b=10] will run\n"
        "run total: upstream mean[a=2] will run\n"
        "4 of 11 jobs to run (gen 1, square 1, mean 1, total 1), 7 up to date\n"
    )
    r = built.sweepc("build")
    assert summary_of(r.out) == "4 done, 7 up to date"
    assert built.ran_in_last_build() == {"gen[a=2,b=10]", "square[a=2,b=10]", "mean[a=2]", "total"}
    assert built.out("gen[a=2,b=10]").read_text() == "2 10\n"


def test_command_changed_reruns_that_rule_and_downstream(built):
    built.edit("sed s/^/sq/ {input}", "sed s/^/SQ/ {input}")
    assert dry(built) == (
        "".join(f"run {s}: command changed\n" for s in SQUARES)
        + "run mean[a=1]: upstream square[a=1,b=10] will run\n"
        "run mean[a=2]: upstream square[a=2,b=10] will run\n"
        "run total: upstream mean[a=1] will run\n"
        "7 of 11 jobs to run (square 4, mean 2, total 1), 4 up to date\n"
    )
    r = built.sweepc("build")
    assert summary_of(r.out) == "7 done, 4 up to date"
    assert built.ran_in_last_build() == {*SQUARES, *MEANS, "total"}
    assert built.out("total").read_text() == "SQ1 10\nSQ1 20\nSQ2 10\nSQ2 20\n"


def test_source_content_change_reruns_and_touch_alone_does_not(built):
    src = built.root / "src.txt"
    # touch (mtime moves, content does not): nothing is stale, in -n or in a build
    later = time.time() + 5
    os.utime(src, (later, later))
    assert dry(built) == "sweepc: nothing to do (11 jobs up to date)\n"
    assert built.sweepc("build").out == "sweepc: nothing to do (11 jobs up to date)\n"
    # the same bytes written again: still nothing
    src.write_text("hello\n")
    assert dry(built) == "sweepc: nothing to do (11 jobs up to date)\n"

    src.write_text("changed\n")
    assert dry(built) == (
        "".join(f"run {g}: input changed: src.txt\n" for g in GENS)
        + "".join(f"run {s}: upstream {g} will run\n" for g, s in zip(GENS, SQUARES))
        + "run mean[a=1]: upstream square[a=1,b=10] will run\n"
        "run mean[a=2]: upstream square[a=2,b=10] will run\n"
        "run total: upstream mean[a=1] will run\n"
        "11 of 11 jobs to run (gen 4, square 4, mean 2, total 1), 0 up to date\n"
    )
    assert summary_of(built.sweepc("build").out) == "11 done, 0 up to date"
    assert dry(built) == "sweepc: nothing to do (11 jobs up to date)\n"


def test_input_changed_because_upstream_was_rebuilt_separately(built):
    built.edit("echo {a} {b} > {output}", "echo {a} {b} new > {output}")
    r = built.sweepc("build", "gen")
    assert summary_of(r.out) == "4 done, 0 up to date"
    assert built.ran_in_last_build() == set(GENS)
    assert dry(built) == (
        "".join(f"run {s}: input changed: {g} was rebuilt\n" for g, s in zip(GENS, SQUARES))
        + "run mean[a=1]: upstream square[a=1,b=10] will run\n"
        "run mean[a=2]: upstream square[a=2,b=10] will run\n"
        "run total: upstream mean[a=1] will run\n"
        "7 of 11 jobs to run (square 4, mean 2, total 1), 4 up to date\n"
    )
    assert summary_of(built.sweepc("build").out) == "7 done, 4 up to date"
    assert built.out("square[a=1,b=10]").read_text() == "sq1 10 new\n"


def test_last_run_failed_and_never_built_downstream(proj):
    (proj.root / "fail-1-10").touch()
    r = proj.sweepc("build", "-k", "-j", "1")
    assert r.code == 1
    assert dry(proj) == (
        "run gen[a=1,b=10]: last run failed (exit 4)\n"
        # planned by the failed build but never started: still "never built"
        "run square[a=1,b=10]: never built\n"
        "run mean[a=1]: never built\n"
        "run total: never built\n"
        "4 of 11 jobs to run (gen 1, square 1, mean 1, total 1), 7 up to date\n"
    )
    (proj.root / "fail-1-10").unlink()
    r = proj.sweepc("build")
    assert (r.code, summary_of(r.out)) == (0, "4 done, 7 up to date")
    assert dry(proj) == "sweepc: nothing to do (11 jobs up to date)\n"


def test_last_run_interrupted_and_unfinished_planned_rows(built):
    """A real Ctrl-C (gen[a=2,b=20] sends SIGINT to its sweepc): the running
    job is 'interrupted', the jobs the build had planned but not finished keep
    their old fingerprint and rerun as 'stopped before this job finished'."""
    built.out("gen[a=2,b=20]").unlink()
    (built.root / "stop-2-20").touch()
    r = built.run("build", "-j", "1")
    assert r.code == 130, r
    assert summary_of(r.out.replace(
        "sweepc: interrupted; the jobs that were running are recorded as interrupted and will rerun\n", ""
    )) == "0 done, 3 not started, 1 interrupted, 7 up to date"
    assert r.out.endswith("sweepc: interrupted; the jobs that were running are recorded as interrupted and will rerun\n")
    assert built.statuses()["gen[a=2,b=20]"] == "interrupted"
    (built.root / "stop-2-20").unlink()
    assert dry(built) == (
        "run gen[a=2,b=20]: last run was interrupted\n"
        "run square[a=2,b=20]: the last build stopped before this job finished\n"
        "run mean[a=2]: the last build stopped before this job finished\n"
        "run total: the last build stopped before this job finished\n"
        "4 of 11 jobs to run (gen 1, square 1, mean 1, total 1), 7 up to date\n"
    )
    assert summary_of(built.sweepc("build").out) == "4 done, 7 up to date"
    assert dry(built) == "sweepc: nothing to do (11 jobs up to date)\n"


def test_planned_row_left_by_a_build_stopped_by_a_failure(built):
    """A job that was up to date, planned again (--force), and not started
    because the build stopped at a failure: its outputs are not trusted."""
    (built.root / "fail-1-10").touch()
    r = built.sweepc("build", "-j", "1", "--force", "gen")
    assert r.code == 1
    assert summary_of(r.out) == (
        "0 done, 1 failed, 3 not run because an input failed, 7 not started (use -k to keep going after a failure), 0 up to date"
    )
    (built.root / "fail-1-10").unlink()
    out = dry(built)
    assert out.splitlines()[:2] == [
        "run gen[a=1,b=10]: last run failed (exit 4)",
        "run gen[a=1,b=20]: the last build stopped before this job finished",
    ]
    assert out.endswith("11 of 11 jobs to run (gen 4, square 4, mean 2, total 1), 0 up to date\n")
    # only the unfinished rows say so; nothing else about them changed
    assert out.count(": the last build stopped before this job finished\n") == 10


def test_forced_rule_and_downstream(built):
    assert dry(built, "--force", "square") == (
        "".join(f"run {s}: forced\n" for s in SQUARES)
        + "".join(f"run {m}: forced\n" for m in MEANS)
        + "run total: forced\n"
        "7 of 11 jobs to run (square 4, mean 2, total 1), 4 up to date\n"
    )
    r = built.sweepc("build", "--force", "square")
    assert summary_of(r.out) == "7 done, 4 up to date"
    assert built.ran_in_last_build() == {*SQUARES, *MEANS, "total"}
    r = built.sweepc("build", "-n", "--force", "sqare")
    assert (r.code, r.err) == (2, "sweepc: unknown rule 'sqare' in --force\n  hint: did you mean 'square'?\n")


def test_explain_gives_every_reason_and_plain_gives_the_first(built):
    built.edit("echo {a} {b} > {output}", "echo {a} {b} v2 > {output}")
    built.out("gen[a=1,b=10]").unlink()
    first = dry(built).splitlines()
    every = dry(built, "--explain").splitlines()
    assert first[0] == "run gen[a=1,b=10]: command changed"
    assert every[0] == "run gen[a=1,b=10]: command changed; output missing: out.txt"
    assert every[1] == "run gen[a=1,b=20]: command changed"
    assert every[4] == "run square[a=1,b=10]: upstream gen[a=1,b=10] will run"
    assert first[-1] == every[-1] == "11 of 11 jobs to run (gen 4, square 4, mean 2, total 1), 0 up to date"
    # a real build with --explain prints the plan first, then runs it
    r = built.sweepc("build", "--explain")
    assert r.out.startswith("run gen[a=1,b=10]: command changed; output missing: out.txt\n")
    assert summary_of(r.out) == "11 done, 0 up to date"


# ---------------------------------------------------------------- editing the sweepfile


def test_adding_a_value_runs_only_new_psets_and_the_gathers_that_include_them(built):
    built.edit("param a = [1, 2]", "param a = [1, 2, 3]")
    assert dry(built).splitlines()[-1] == "6 of 16 jobs to run (gen 2, square 2, mean 1, total 1), 10 up to date"
    r = built.sweepc("build", "-j", "2")
    assert summary_of(r.out) == "6 done, 10 up to date"
    ran = built.ran_in_last_build()
    assert Counter(label.split("[")[0] for label in ran) == {"gen": 2, "square": 2, "mean": 1, "total": 1}
    assert ran == {"gen[a=3,b=10]", "gen[a=3,b=20]", "square[a=3,b=10]", "square[a=3,b=20]", "mean[a=3]", "total"}
    assert built.out("total").read_text().splitlines()[-1] == "sq3 20"


def test_removed_value_leaves_orphans_that_clean_orphans_removes(built):
    old = {label: built.dir(label) for label in ALL}
    orphans = ["gen[a=2,b=10]", "gen[a=2,b=20]", "square[a=2,b=10]", "square[a=2,b=20]", "mean[a=2]"]
    built.edit("param a = [1, 2]", "param a = [1]")
    before = built.rows()
    # total's input list shrank; every other kept job is still up to date
    assert dry(built) == "run total: command changed\n1 of 6 jobs to run (total 1), 5 up to date\n"

    listed = sorted(f"would remove {os.path.relpath(old[o], built.root)}/\n" for o in orphans)
    r = built.sweepc("clean", "orphans", "-n")
    assert r.code == 0
    lines = r.out.splitlines(keepends=True)
    assert sorted(lines[:-1]) == listed
    assert lines[-1] == "sweepc: would remove 5 job folders and 5 records\n"
    assert all(old[o].is_dir() for o in orphans), "-n removed something"
    assert built.rows() == before

    r = built.sweepc("clean", "orphans")
    assert r.out.splitlines()[-1] == "sweepc: removed 5 job folders and 5 records"
    assert not any(old[o].exists() for o in orphans)
    assert not any(old[o].parent.exists() for o in orphans if not any(
        old[k].parent == old[o].parent for k in ALL if k not in orphans)), "empty shard folders are pruned"
    kept = [k for k in ALL if k not in orphans]
    assert all(old[k].is_dir() for k in kept)
    rows = built.rows()
    assert set(rows) == set(kept)
    assert all(rows[k] == before[k] for k in kept), "records of kept jobs changed"
    assert dry(built) == "run total: command changed\n1 of 6 jobs to run (total 1), 5 up to date\n"
    assert built.sweepc("clean", "orphans").out == "sweepc: nothing to clean\n"
    # with -D the sweepfile's own psets would be the orphans: refused, nothing removed
    r = built.sweepc("-D", "a=[7]", "clean", "orphans")
    assert (r.code, r.out, r.err) == (2, "", "sweepc: clean orphans does not go with -D: it would take the sweepfile's own psets for orphans "
                                             "and remove them\n  hint: run it without -D: sweepc clean orphans -n shows what it removes\n")
    assert all(old[k].is_dir() for k in kept) and set(built.rows()) == set(kept)


def test_clean_all_batch_and_orphans_refuse_options_that_would_pick_some_jobs(built):
    # `clean all --where 'a == 1' -y` removed every job folder and the whole history:
    # all, batch and orphans take no selection, and say which command does
    before = built.rows()
    cases = {
        ("all", "--where", "a == 1", "-y"): "sweepc: clean all does not go with --where: it removes the whole workdir and .sweepc/\n"
                                           "  hint: to remove some jobs' outputs: sweepc clean outputs --where 'a == 1'\n",
        ("all", "--rule", "square", "--rule", "total", "-n"): "sweepc: clean all does not go with --rule: it removes the whole workdir and .sweepc/\n"
                                                         "  hint: to remove some jobs' outputs: sweepc clean outputs --rule square --rule total\n",
        ("batch", "--psets", "0:2"): "sweepc: clean batch does not go with --psets: it removes every SLURM script and log\n"
                                     "  hint: to remove some jobs' outputs: sweepc clean outputs --psets 0:2\n",
        ("orphans", "--where", "a > 1", "--psets", "1:"): "sweepc: clean orphans does not go with --where: it removes every pset no longer in the sweepfile\n"
                                                          "  hint: to remove some jobs' outputs: sweepc clean outputs --where 'a > 1' --psets 1:\n",
    }
    for argv, err in cases.items():
        r = built.sweepc("clean", *argv)
        assert (r.code, r.out, r.err) == (2, "", err), argv
    assert built.rows() == before and (built.root / ".sweepc").is_dir()
    assert all(built.dir(k).is_dir() for k in before)


def test_moving_the_project_folder_makes_nothing_stale(built, tmp_path):
    (tmp_path / "elsewhere").mkdir()
    moved = built.moved_to(tmp_path / "elsewhere" / "renamed")
    assert not built.root.exists()
    assert dry(moved) == "sweepc: nothing to do (11 jobs up to date)\n"
    assert moved.sweepc("build").out == "sweepc: nothing to do (11 jobs up to date)\n"
    # and the moved project still builds: a changed source reruns from its new place
    (moved.root / "src.txt").write_text("moved\n")
    r = moved.sweepc("build")
    assert summary_of(r.out) == "11 done, 0 up to date"
    assert moved.out("total").read_text() == "sq1 10\nsq1 20\nsq2 10\nsq2 20\n"


# ---------------------------------------------------------------- targets


def _built_jobs(p) -> set[str]:
    return {j.label for j in p.graph.jobs if all(o.exists() for o in p.graph.output_paths(j))}


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["gen"], set(GENS)),
        (["square[a=1,b=20]"], {"gen[a=1,b=20]", "square[a=1,b=20]"}),
        (["square[b=20]"], {"gen[a=1,b=20]", "gen[a=2,b=20]", "square[a=1,b=20]", "square[a=2,b=20]"}),
        (["mean[a=2]"], {"gen[a=2,b=10]", "gen[a=2,b=20]", "square[a=2,b=10]", "square[a=2,b=20]", "mean[a=2]"}),
        (["gen[a=1,b=10]", "gen[a=2,b=20]"], {"gen[a=1,b=10]", "gen[a=2,b=20]"}),
        (["--where", "a > 1"], {"gen[a=2,b=10]", "gen[a=2,b=20]", "square[a=2,b=10]", "square[a=2,b=20]", "mean[a=2]"}),
        (["square", "--where", "b == 10"], {"gen[a=1,b=10]", "gen[a=2,b=10]", "square[a=1,b=10]", "square[a=2,b=10]"}),
        (["--psets", "0:2"], {"gen[a=1,b=10]", "gen[a=1,b=20]", "square[a=1,b=10]", "square[a=1,b=20]"}),
        (["--psets", "3:"], {"gen[a=2,b=20]", "square[a=2,b=20]"}),
        (["total"], set(ALL)),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else None,
)
def test_targets_build_exactly_what_they_name_and_need(proj, args, expected):
    n = len(expected)
    assert dry(proj, *args).splitlines()[-1].startswith(f"{n} of {n} jobs to run")
    r = proj.sweepc("build", *args)
    assert (r.code, summary_of(r.out)) == (0, f"{n} done, 0 up to date")
    assert _built_jobs(proj) == expected
    assert set(proj.statuses()) == expected


def test_output_path_and_job_folder_targets(proj):
    g = proj.graph
    job = proj.job("square[a=2,b=10]")
    rel_out = os.path.relpath(g.output_paths(job)[0], proj.root)
    r = proj.sweepc("build", rel_out)
    assert (r.code, summary_of(r.out)) == (0, "2 done, 0 up to date")
    assert _built_jobs(proj) == {"gen[a=2,b=10]", "square[a=2,b=10]"}
    # a job folder, given as an absolute path, names the same job
    r = proj.sweepc("build", "-n", str(g.job_dir(proj.job("mean[a=1]"))))
    assert r.out.splitlines() == [
        "run gen[a=1,b=10]: never built",
        "run gen[a=1,b=20]: never built",
        "run square[a=1,b=10]: never built",
        "run square[a=1,b=20]: never built",
        "run mean[a=1]: never built",
        "5 of 5 jobs to run (gen 2, square 2, mean 1), 0 up to date",
    ]


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("gne", "sweepc: unknown target 'gne'\n  hint: did you mean 'gen'?\n"),
        ("meen[a=1]", "sweepc: unknown target 'meen[a=1]'\n  hint: did you mean 'mean'?\n"),
        ("gen[a=5]", "sweepc: no job of rule 'gen' has a=5\n  hint: see: sweepc psets\n"),
        ("gen[c=5]", "sweepc: rule 'gen' has no parameter 'c'\n  hint: its parameters: a, b\n"),
        ("calc/nope/out.txt", (
            "sweepc: 'calc/nope/out.txt' is not a rule or an output of this project\n"
            "  hint: outputs live at <workdir>/<rule>/<hh>/<hash>/<file>\n"
        )),
    ],
)
def test_bad_targets_are_usage_errors(proj, target, message):
    for args in (["build", "-n", target], ["build", target]):
        r = proj.sweepc(*args)
        assert (r.code, r.out, r.err) == (2, "", message)
    assert not (proj.root / "calc").exists()


def test_bad_where_and_psets_are_usage_errors(proj):
    r = proj.sweepc("build", "--where", "c > 1")
    assert r.code == 2 and r.err.startswith("sweepc: --where: ") and "'c'" in r.err
    r = proj.sweepc("build", "--psets", "1-2")
    assert (r.code, r.err) == (2, "sweepc: --psets takes START:STOP, not '1-2'\n  hint: for example --psets 0:100 (STOP excluded, as in Python)\n")
    assert not (proj.root / "calc").exists()


# ---------------------------------------------------------------- API == CLI


def _cli_plan(out: str) -> list[tuple[str, str]]:
    return [tuple(line[4:].split(": ", 1)) for line in out.splitlines() if line.startswith("run ")]


def test_api_plan_and_build_agree_with_the_cli(built):
    built.edit("sed s/^/sq/ {input}", "sed s/^/SQ/ {input}")
    built.out("gen[a=1,b=20]").unlink()
    study = sweepc.load(built.root)
    for cli_args, api_kw in [
        ((), {}),
        (("--explain",), {"explain": True}),
        (("mean[a=2]",), {"targets": ["mean[a=2]"]}),
        (("--where", "b == 20"), {"where": "b == 20"}),
        (("--force", "gen"), {"force": ["gen"]}),
    ]:
        p = study.plan(**api_kw)
        api = [(p.graph.jobs[i].label, "; ".join(r.text for r in (p.reasons[i] if api_kw.get("explain") else p.reasons[i][:1]))) for i in p.run]
        out = dry(built, *cli_args)
        assert api == _cli_plan(out), cli_args
        assert out.splitlines()[-1] == f"{len(p.run)} of {len(p.selected)} jobs to run ({', '.join(f'{k} {v}' for k, v in p.counts_by_rule().items())}), {p.uptodate} up to date"

    p = study.plan()
    labels = {p.graph.jobs[i].label for i in p.run}
    result = study.build(jobs=2)
    assert result.summary is not None and result.summary.ok
    assert (result.summary.done, result.summary.uptodate) == (len(p.run), 11 - len(p.run))
    assert built.ran_in_last_build() == labels
    assert dry(built) == "sweepc: nothing to do (11 jobs up to date)\n"
    # and the API sees what the CLI built
    assert study.plan().run == ()
    again = study.build()
    assert again.summary is None and again.plan.uptodate == 11



@pytest.mark.parametrize("through", ["build", "build -n"])
def test_an_edit_in_the_same_second_that_keeps_the_size_reruns_where_mtimes_have_whole_seconds(proj, through):
    """A file system that keeps mtimes to the second (Lustre, ext3, some NFS
    servers) gives an edit made in the second of the last look the same
    mtime; one that keeps the size looks unchanged by size and mtime. Such a
    file (a whole-second mtime, less than 2 s old when looked at) is hashed
    again the next time, by the planner and instead of the no-op certificate."""
    src = proj.root / "src.txt"
    second = int(time.time())  # what such a file system gives both writes
    os.utime(src, (second, second))
    assert summary_of(proj.sweepc("build", "-j", "2").out) == "11 done, 0 up to date"
    src.write_text("HELLO\n")  # the same size
    os.utime(src, (second, second))
    if through == "build -n":
        assert dry(proj).startswith("".join(f"run {g}: input changed: src.txt\n" for g in GENS))
    assert summary_of(proj.sweepc("build", "-j", "2").out) == "11 done, 0 up to date"
    assert proj.out("total").read_text() == "sq1 10\nsq1 20\nsq2 10\nsq2 20\n"
    assert proj.out("gen[a=1,b=10]").read_text() == "1 10\n"
    # two seconds later the file is looked at as any other: a touch reruns nothing
    os.utime(src, (second - 10, second - 10))
    assert proj.sweepc("build").out == "sweepc: nothing to do (11 jobs up to date)\n"
    assert proj.sweepc("build").out == "sweepc: nothing to do (11 jobs up to date)\n"

def test_thirty_random_edits_each_rebuild_exactly_right(tmp_path: Path) -> None:
    """scripts/edits.py, short: a project with a shell rule reading a source
    file, a template, a python: rule, a gather, a rule over CSV rows and one
    over samples another rule makes, edited at random (values, sources,
    module, template, command, comments, CSV cells and rows, samples, -D,
    deleted outputs, clean) with a build after each edit. Every job's files
    must be byte for byte what the files say after each build, and the next
    build must have nothing to do."""
    import subprocess
    import sys

    script = Path(__file__).resolve().parent.parent / "scripts" / "edits.py"
    r = subprocess.run([sys.executable, str(script), "--edits", "30", "--seed", "5", "--dir", str(tmp_path)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert r.stdout.splitlines()[-1] == "no problem", r.stdout[-4000:]
    assert sum(1 for line in r.stdout.splitlines() if " done, " in line) >= 10, r.stdout  # edits that made jobs run
