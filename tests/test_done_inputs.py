"""`input: done(RULE)` (issue 16, item 1): a gather over the jobs of RULE that
ended done. It runs once every one of them has ended (done, or failed after
its retries), reruns when that set changes, and says what it left out; a
failure upstream still makes the build exit 1.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import sweepc
from sweepc.cli import main

# sim[a=2] fails until the file `fixed` exists in the project folder
SWEEPFILE = '''\
param a = [1, 2, 3]
sweep grid = a

rule sim over grid:
    output: "r.json"
    results: "r.json"
    retries: 1
    shell: "if [ {a} = 2 ] && [ ! -e {root}/fixed ]; then echo 'no convergence' >&2; exit 4; fi; echo '{{\\"y\\": {a}}}' > {output}"

rule summary:
    input: done(sim)
    output: "sum.txt"
    shell: "cat $(cat {input.list}) > {output}"

rule after:
    input: summary
    output: "after.txt"
    shell: "cp {input} {output}"
'''


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out + err


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "p"
    root.mkdir()
    (root / "sweepfile").write_text(SWEEPFILE)
    monkeypatch.chdir(root)
    return root


def summary_dir(root: Path) -> Path:
    (d,) = (root / "calc" / "summary").glob("*/*")
    return d


def test_the_graph(root: Path) -> None:
    g = sweepc.load(root).graph
    summary = next(j for j in g.jobs if j.rule == "summary")
    assert summary.deps == (0, 1, 2) and summary.soft == frozenset({0, 1, 2})
    assert next(j for j in g.jobs if j.rule == "after").soft == frozenset()
    spec = g.rule("summary").inputs[0]
    assert (spec.name, spec.rule, spec.only_done) == ("sim", "sim", True)


def test_a_gather_runs_over_what_ended_done(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "build", "-k", "-j", "1")
    assert code == 1, out  # a failure upstream still fails the build
    assert "summary runs without 1 of the 3 jobs of done(sim) that did not end done: sim[a=2]\n" in out
    assert "FAILED sim[a=2]: exit 4\n" in out
    assert "sweepc: 4 done, 1 failed, 0 up to date" in out  # sim x2, summary, after
    d = summary_dir(root)
    assert (d / "sweepc-inputs.txt").read_text().splitlines() == [
        f"../../../sim/{h[:2]}/{h}/r.json" for h in (j.hash for j in sweepc.load(root).graph.jobs if j.rule == "sim" and j.params["a"] != 2)
    ]
    assert (d / "sum.txt").read_text() == '{"y": 1}\n{"y": 3}\n'
    assert (root / "calc" / "after").exists()
    # --explain says what will be left out if the failed job fails again
    code, out = run(capsys, "build", "-n", "--explain")
    assert out.splitlines()[:2] == [
        "run sim[a=2]: last run failed (exit 4); output missing: r.json",
        "run summary: upstream sim[a=2] will run (done(sim): left out if it fails)",
    ]
    # it fails again: the set of done inputs is the same, so summary is kept as it is
    mtime = (d / "sum.txt").stat().st_mtime_ns
    code, out = run(capsys, "build", "-k")
    assert code == 1, out
    assert "summary is up to date: the jobs of its done() inputs that ended done are those it was built with\n" in out
    assert "after is up to date: its inputs came out as they were\n" in out
    assert (d / "sum.txt").stat().st_mtime_ns == mtime
    # (status calls it stale, as build -n does: the next build tries sim[a=2] again, and then summary)
    assert json.loads(run(capsys, "status", "--format", "json")[1])[1]["stale"] == 1
    # it succeeds: the set changed, summary (and what needs it) runs again, with every input
    (root / "fixed").touch()
    code, out = run(capsys, "build")
    assert code == 0, out
    assert "runs without" not in out
    assert (d / "sum.txt").read_text() == '{"y": 1}\n{"y": 2}\n{"y": 3}\n'
    assert run(capsys, "build")[1].startswith("sweepc: nothing to do")


def test_without_keep_going_the_build_stops_as_before(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "build", "-j", "1")
    assert code == 1
    assert not (root / "calc" / "summary").exists()


def test_a_plain_input_of_the_same_job_still_blocks(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (root / "sweepfile").write_text(SWEEPFILE.replace("input: done(sim)\n", "input: done(sim), all = sim\n"))
    assert sweepc.load(root).graph.jobs[3].soft == frozenset()
    code, out = run(capsys, "build", "-k")
    assert code == 1 and "2 not run because an input failed" in out
    assert not (root / "calc" / "summary").exists()


def test_the_slurm_backend_says_it_cannot_run_it_yet(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "build", "--backend", "slurm", "summary")
    assert (code, out) == (2, "sweepc: summary takes done(sim), which the slurm backend cannot run yet\n"
                               "  hint: build it on this machine once the SLURM jobs have ended: sweepc build summary\n")
