"""`input: done(RULE)` (issue 16, item 1): a gather over the jobs of RULE that
ended done. It runs once every one of them has ended (done, or failed after
its retries), reruns when that set changes, and says what it left out; a
failure upstream still makes the build exit 1.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from typing import Any
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


REBUILT = (
    'param a = [1, 2, 3]\nrule sim over a:\n    output: "o.txt"\n    shell: "echo {a} $(cat {root}/salt) > {output}"\n'
    'rule g:\n    input: done(sim)\n    output: "g.txt"\n    GATHER\n'
    'rule h:\n    input: g\n    output: "h.txt"\n    shell: "grep -hvx {{}} {input} > {output}"\n'  # (not python:'s sweepc-result.json)
)
GATHERS = {
    "shell": 'shell: "cat $(cat {input.list}) > {output}"',
    "python": 'python: "gather.py:run"',
}


def _in_a_process(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """run(), as its own process: a dask LocalCluster leaves threads in the process that
    ran it, and tests after it (the graph cache's forked writer) see a threaded process."""
    import sys

    r = subprocess.run([sys.executable, "-m", "sweepc", *args], capture_output=True, text=True, timeout=300)
    return r.returncode, r.stdout + r.stderr


def _a_gather_reruns_when_one_of_its_done_inputs_is_rebuilt(root: Path, capsys: pytest.CaptureFixture[str], gather: str,
                                                          *backend: str, block: str = "", run: Any = run) -> None:
    # sim[a=1]'s output deleted: it runs again with the same fingerprint, and what it
    # writes may differ (here: a file the command reads and does not name). The
    # gather was kept "up to date" over the old output (the set of its done inputs
    # was the same), and the next build said there was nothing to do.
    (root / "sweepfile").write_text(REBUILT.replace("GATHER", GATHERS[gather]) + block)
    (root / "gather.py").write_text("def run(p):\n    open('g.txt', 'w').write(''.join(open(f).read() for f in p['_inputs']))\n")
    (root / "salt").write_text("one\n")
    code, out = run(capsys, "build", *backend)
    assert code == 0, out
    g = sweepc.load(root).graph
    sim1 = next(j for j in g.jobs if j.label == "sim[a=1]")
    (g.job_dir(sim1) / "o.txt").unlink()
    (root / "salt").write_text("two\n")
    code, out = run(capsys, "build", *backend)
    assert code == 0, out
    assert "sweepc: 3 done, 2 up to date" in out, out
    assert "is up to date: " not in out, out
    (gd,) = (root / "calc" / "g").glob("*/*")
    (hd,) = (root / "calc" / "h").glob("*/*")
    assert (gd / "g.txt").read_text() == (hd / "h.txt").read_text() == "1 two\n2 one\n3 one\n"
    assert run(capsys, "build", *backend)[1].startswith("sweepc: nothing to do")


@pytest.mark.parametrize("gather", GATHERS)
def test_a_gather_reruns_when_one_of_its_done_inputs_is_rebuilt(root: Path, capsys: pytest.CaptureFixture[str], gather: str) -> None:
    _a_gather_reruns_when_one_of_its_done_inputs_is_rebuilt(root, capsys, gather)


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


# -- on SLURM ------------------------------------------------------------------------
# The array of a gather waits for its done() inputs with afterany; the runner
# (pure bash, on the node) lists those whose records say done and makes the
# gather's fingerprint as planner.dynamic_fingerprint() does.


def sim_hashes(root: Path, *values: int) -> list[str]:
    return [j.hash for j in sweepc.load(root).graph.jobs if j.rule == "sim" and j.params["a"] in values]


def listed(root: Path, *values: int) -> list[str]:
    return [f"../../../sim/{h[:2]}/{h}/r.json" for h in sim_hashes(root, *values)]


def test_a_gather_waits_for_its_done_inputs_with_afterany() -> None:
    from sweepc.backends.slurm.arrays import Array, dependencies
    from sweepc.lang.graph import Resources

    class G:  # the jobs dependencies() looks at
        def __init__(self, jobs: list[object]) -> None:
            self.jobs = jobs

    class J:
        def __init__(self, deps: tuple[int, ...], soft: frozenset[int] = frozenset()) -> None:
            self.deps, self.soft = deps, soft

    res = Resources(cpus=1, mem_mb=None, time_s=None, gpus=0, nodes=1, tasks=1)
    g = G([J(()), J(()), J(()), J((0, 1, 2), frozenset({0, 1, 2})), J((3,)), J((0, 1, 2), frozenset({0, 1}))])
    sim = Array("01-sim", "sim", res, 1, ((0,), (1,), (2,)))
    summary = Array("02-summary", "summary", res, 1, ((3,),))
    after = Array("03-after", "after", res, 1, ((4,),))
    mixed = Array("04-mixed", "mixed", res, 1, ((5,),))
    where = {0: (0, 0), 1: (0, 1), 2: (0, 2), 3: (1, 0), 4: (2, 0), 5: (3, 0)}
    deps = dependencies(g, [sim, summary, after, mixed], where, {})  # type: ignore[arg-type]
    assert [d.flag(["11", "12", "13", "14"]) for d in deps] == [None, "afterany:11", "aftercorr:12", "afterok:11"]
    # a resubmission names tasks; jobs queued by an earlier build are named by their ids
    deps = dependencies(g, [summary], {0: (0, 2), 1: (1, 0)}, {2: "7_2"}, exact=True, offset=2)  # type: ignore[arg-type]
    assert deps[0].flag(["20", "21", "22"]) == "afterany:20_2:21_0:7_2"


def run_rendered(root: Path) -> list[str]:
    """Run the array tasks of a --render-only folder by hand, in order, as
    SLURM would (runner.sh and bash only). Returns the dependency of each array."""
    (folder,) = (root / ".sweepc" / "slurm").iterdir()
    submit = (folder / "submit.sh").read_text()
    for k, script in enumerate(sorted(folder.glob("*.sh"))):
        if script.name in ("runner.sh", "submit.sh"):
            continue
        for task in sorted((folder / script.stem).glob("task-*.sh")):
            t = task.stem.split("-")[1]
            env = {"PATH": os.environ["PATH"], "SLURM_ARRAY_JOB_ID": str(100 + k), "SLURM_ARRAY_TASK_ID": t, "SLURM_JOB_ID": str(100 + k)}
            subprocess.run(["bash", "runner.sh", f"{script.stem}/{task.name}"], cwd=folder, env=env, check=True)
    return [line.split("--dependency=")[1].split()[0] for line in submit.splitlines() if "--dependency=" in line]


def test_the_runner_lists_what_ended_done_and_fingerprints_the_gather_as_sweepc_does(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "build", "--backend", "slurm", "--render-only")
    assert code == 0, out
    assert "rendered summary: .sweepc/slurm/" in out and " after afterany:$j0\n" in out
    assert run_rendered(root) == ["afterany:$j0", "aftercorr:$j1"]
    assert (summary_dir(root) / "sweepc-inputs.txt").read_text().splitlines() == listed(root, 1, 3)
    assert (summary_dir(root) / "sum.txt").read_text() == '{"y": 1}\n{"y": 3}\n'
    record = json.loads((summary_dir(root) / "sweepc-record.json").read_text())
    assert (record["status"], record["note"]) == ("done", "ran without 1 of the 3 done() inputs that were not done when it started")
    # taken in (by status): summary and after have the fingerprints the planner makes (else: "input changed")
    assert run(capsys, "status")[0] == 0
    code, out = run(capsys, "build", "-n", "--explain")
    assert out.splitlines()[:3] == [
        "run sim[a=2]: last run failed (exit 4); output missing: r.json",
        "run summary: upstream sim[a=2] will run (done(sim): left out if it fails)",
        "run after: upstream summary will run",
    ], out
    # sim[a=2] succeeds: every job again, over the three
    (root / "fixed").touch()
    shutil.rmtree(root / ".sweepc" / "slurm")
    assert run(capsys, "build", "--backend", "slurm", "--render-only")[0] == 0
    run_rendered(root)
    assert (summary_dir(root) / "sweepc-inputs.txt").read_text().splitlines() == listed(root, 1, 2, 3)
    assert (summary_dir(root) / "sum.txt").read_text() == '{"y": 1}\n{"y": 2}\n{"y": 3}\n'
    assert run(capsys, "status")[0] == 0
    code, out = run(capsys, "build", "-n")
    assert out.startswith("sweepc: nothing to do"), out


@pytest.mark.slurm
def test_on_slurm_with_wait(slurm_cluster: dict[str, str], root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "build", "--backend", "slurm", "--wait")
    assert code == 1, out  # a failure upstream still fails the build
    # sim[a=2] is retried first; summary goes out once every sim job has its final outcome
    assert "sim[a=2] failed (exit 4), retrying (attempt 2)\n" in out
    assert out.index("FAILED sim[a=2] (exit 4)\n") < out.index("summary runs without 1 of the 3 jobs of done(sim) that did not end done: sim[a=2]\n") < out.index("submitted summary: job ")
    assert "sweepc: 4 done, 1 failed, 0 up to date" in out
    d = summary_dir(root)
    assert (d / "sweepc-inputs.txt").read_text().splitlines() == listed(root, 1, 3)
    assert (d / "sum.txt").read_text() == '{"y": 1}\n{"y": 3}\n'
    # it fails again: summary (and after) are kept as they are, on the node
    mtime = (d / "sum.txt").stat().st_mtime_ns
    code, out = run(capsys, "build", "--backend", "slurm", "--wait")
    assert code == 1, out
    assert "summary is up to date: the jobs of its done() inputs that ended done are those it was built with\n" in out
    assert "after is up to date: its inputs came out as they were\n" in out
    assert (d / "sum.txt").stat().st_mtime_ns == mtime
    # fixed: sim[a=2] runs, summary runs again over the three
    (root / "fixed").touch()
    code, out = run(capsys, "build", "--backend", "slurm", "--wait")
    assert code == 0, out
    assert "submitted sim: job " in out and ", 1 pset in 1 task\n" in out and "runs without" not in out
    assert (d / "sweepc-inputs.txt").read_text().splitlines() == listed(root, 1, 2, 3)
    assert (d / "sum.txt").read_text() == '{"y": 1}\n{"y": 2}\n{"y": 3}\n'
    assert run(capsys, "build", "--backend", "slurm")[1].startswith("sweepc: nothing to do")


def test_on_dask_a_gather_reruns_when_one_of_its_done_inputs_is_rebuilt(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from conftest import need

    need("distributed")
    _a_gather_reruns_when_one_of_its_done_inputs_is_rebuilt(root, capsys, "python", "--backend", "dask",
                                                          block='backend dask:\n    dashboard = "127.0.0.1:0"\n', run=_in_a_process)


@pytest.mark.slurm
@pytest.mark.parametrize("gather", GATHERS)
def test_on_slurm_a_gather_reruns_when_one_of_its_done_inputs_is_rebuilt(slurm_cluster: dict[str, str], root: Path,
                                                                         capsys: pytest.CaptureFixture[str], gather: str) -> None:
    # with --wait the gather goes out once its inputs ended: sweepc decides whether it may be kept
    _a_gather_reruns_when_one_of_its_done_inputs_is_rebuilt(root, capsys, gather, "--backend", "slurm", "--wait")


@pytest.mark.slurm
@pytest.mark.parametrize("gather", GATHERS)
def test_on_slurm_without_wait_the_runner_reruns_a_gather_whose_input_ran_again(slurm_cluster: dict[str, str], root: Path,
                                                                                capsys: pytest.CaptureFixture[str], gather: str) -> None:
    # without --wait the gather goes out with its inputs (afterany): the runner on the
    # node decides (runner.sh; pyrunner.py for python:), from the inputs' records
    (root / "sweepfile").write_text(REBUILT.replace("GATHER", GATHERS[gather]))
    (root / "gather.py").write_text("def run(p):\n    open('g.txt', 'w').write(''.join(open(f).read() for f in p['_inputs']))\n")
    (root / "salt").write_text("one\n")
    code, out = run(capsys, "build", "--backend", "slurm", "--wait")
    assert code == 0, out
    g = sweepc.load(root).graph
    (g.job_dir(next(j for j in g.jobs if j.label == "sim[a=1]")) / "o.txt").unlink()
    (root / "salt").write_text("two\n")
    code, out = run(capsys, "build", "--backend", "slurm")
    assert code == 0 and "submitted g: job " in out and "after afterany:" in out, out
    wait_for_slurm(capsys)
    (gd,) = (root / "calc" / "g").glob("*/*")
    (hd,) = (root / "calc" / "h").glob("*/*")
    assert (gd / "g.txt").read_text() == (hd / "h.txt").read_text() == "1 two\n2 one\n3 one\n"
    assert json.loads((gd / "sweepc-record.json").read_text())["note"] == ""  # ran, not kept
    assert run(capsys, "build", "--backend", "slurm")[1].startswith("sweepc: nothing to do")


def test_the_runners_know_the_note_of_a_kept_job() -> None:
    from sweepc.backends.slurm import pyrunner, records
    from sweepc.backends.slurm.render import runner_text

    assert pyrunner.KEPT_NOTE == records.KEPT_NOTE
    assert runner_text().count(records.KEPT_NOTE) == 2  # the record it writes, the one it reads


def wait_for_slurm(capsys: pytest.CaptureFixture[str], timeout: float = 120) -> list[dict[str, object]]:
    """Poll `sweepc status` until nothing is pending or running."""
    deadline = time.monotonic() + timeout
    while True:
        code, out = run(capsys, "status", "--format", "json")
        assert code == 0, out
        rows: list[dict[str, object]] = json.loads(out)
        if not any(r["pending"] or r["running"] for r in rows):
            return rows
        assert time.monotonic() < deadline, rows
        time.sleep(1)


@pytest.mark.slurm
def test_on_slurm_submitted_then_taken_in_by_status_and_build(slurm_cluster: dict[str, str], root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (root / "sweepfile").write_text(SWEEPFILE.replace("    retries: 1\n", ""))
    code, out = run(capsys, "build", "--backend", "slurm")
    assert code == 0, out
    assert "submitted summary: job " in out and re.search(r", 1 pset in 1 task after afterany:\d+\n", out), out
    rows = {r["rule"]: r for r in wait_for_slurm(capsys)}
    assert (rows["sim"]["done"], rows["sim"]["failed"]) == (2, 1)
    # summary ran over the two that ended done; status calls it stale, as locally (sim[a=2] runs next)
    d = summary_dir(root)
    assert (d / "sweepc-inputs.txt").read_text().splitlines() == listed(root, 1, 3)
    assert (d / "sum.txt").read_text() == '{"y": 1}\n{"y": 3}\n'
    assert (rows["summary"]["stale"], rows["after"]["stale"]) == (1, 1)
    code, out = run(capsys, "build", "-n", "--explain")
    assert out.splitlines()[:3] == [
        "run sim[a=2]: last run failed (exit 4); output missing: r.json",
        "run summary: upstream sim[a=2] will run (done(sim): left out if it fails)",
        "run after: upstream summary will run",
    ], out
    # again: sim[a=2] fails again, and the runner keeps summary and after as they are
    (before,) = json.loads(run(capsys, "results", "--rule", "summary", "--format", "json")[1])
    mtime = (d / "sum.txt").stat().st_mtime_ns
    assert run(capsys, "build", "--backend", "slurm")[0] == 0
    wait_for_slurm(capsys)
    assert (d / "sum.txt").stat().st_mtime_ns == mtime
    assert (d / "sweepc-inputs.txt").read_text().splitlines() == listed(root, 1, 3)
    assert json.loads((d / "sweepc-record.json").read_text())["note"] == "up to date: its inputs came out as they were"
    (row,) = json.loads(run(capsys, "results", "--rule", "summary", "--format", "json")[1])
    assert row["_runtime_s"] == before["_runtime_s"] and row["_runtime_s"] is not None, (row, before)
    # fixed: the set changes, summary and after run again
    (root / "fixed").touch()
    assert run(capsys, "build", "--backend", "slurm")[0] == 0
    rows = {r["rule"]: r for r in wait_for_slurm(capsys)}
    assert all(r["done"] == r["jobs"] for r in rows.values()), rows
    assert (d / "sum.txt").read_text() == '{"y": 1}\n{"y": 2}\n{"y": 3}\n'
    assert (root / "calc" / "after").exists()
    assert run(capsys, "build", "--backend", "slurm")[1].startswith("sweepc: nothing to do")


@pytest.mark.slurm
def test_on_slurm_the_conductor_retries_the_inputs_before_the_gather(slurm_cluster: dict[str, str], root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "build", "--backend", "slurm", "--detach")
    assert code == 0, out
    m = re.match(r"sweepc: conductor started \(pid (\d+)\)", out)
    assert m is not None, out
    pid = int(m.group(1))
    try:
        deadline = time.monotonic() + 180
        while Path(f"/proc/{pid}").exists() and Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z":
            assert time.monotonic() < deadline, "the conductor did not end"
            time.sleep(1)
    finally:
        run(capsys, "cancel")
    log = (root / ".sweepc" / "conductor.log").read_text()
    # sim[a=2] fails twice (retries: 1) before summary goes out, over the two that ended done
    assert log.index("sim[a=2] failed (exit 4), retrying (attempt 2)\n") < log.index("FAILED sim[a=2] (exit 4)\n") \
        < log.index("summary runs without 1 of the 3 jobs of done(sim) that did not end done: sim[a=2]\n") \
        < log.index("submitted summary: job "), log
    assert "sweepc: 4 done, 1 failed, 0 up to date" in log, log
    assert (summary_dir(root) / "sweepc-inputs.txt").read_text().splitlines() == listed(root, 1, 3)
    rows = {r["rule"]: r for r in json.loads(run(capsys, "status", "--format", "json")[1])}
    assert (rows["sim"]["done"], rows["sim"]["failed"], rows["summary"]["stale"], rows["after"]["stale"]) == (2, 1, 1, 1), rows


@pytest.mark.slurm
def test_on_slurm_a_local_gather_takes_what_the_slurm_jobs_ended_as(slurm_cluster: dict[str, str], root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (root / "sweepfile").write_text(SWEEPFILE.replace("    input: done(sim)\n", "    local: true\n    input: done(sim)\n"))
    code, out = run(capsys, "build", "--backend", "slurm", "--wait")
    assert code == 1, out
    assert "summary runs without 1 of the 3 jobs of done(sim) that did not end done: sim[a=2]\n" in out
    d = summary_dir(root)
    assert (d / "sweepc-inputs.txt").read_text().splitlines() == listed(root, 1, 3)
    code, out = run(capsys, "build", "--backend", "slurm", "--wait")
    assert "summary is up to date: the jobs of its done() inputs that ended done are those it was built with\n" in out, out
    # sim[a=2] ends done in the same build that runs summary: summary takes it
    (root / "fixed").touch()
    code, out = run(capsys, "build", "--backend", "slurm", "--wait")
    assert code == 0 and "runs without" not in out, out
    assert (d / "sum.txt").read_text() == '{"y": 1}\n{"y": 2}\n{"y": 3}\n'
    assert run(capsys, "build", "--backend", "slurm")[1].startswith("sweepc: nothing to do")


def runner_function(name: str) -> str:
    from sweepc.backends.slurm.render import runner_text

    m = re.search(rf"^{name}\(\) {{\n.*?^}}\n", runner_text(), re.S | re.M)
    assert m is not None
    return m.group(0)


def test_the_runner_hashes_as_sweepc_does() -> None:
    from sweepc.hashing import text_hash

    parts = ["done()", "0123abcd" * 4, "", "ffff" * 8]
    script = runner_function("_sweepc_hash") + '_sweepc_hash "$@"; echo "$_sweepc_h"; _sweepc_hash; echo "$_sweepc_h"\n'
    out = subprocess.run(["bash", "-c", script, "bash", *parts], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == [text_hash(*parts), text_hash()]


def test_the_runner_removes_a_kept_output_never_through_a_link(tmp_path: Path) -> None:
    job, elsewhere = tmp_path / "job", tmp_path / "elsewhere"
    (job / "plots").mkdir(parents=True)
    (job / "plots" / "a.png").write_text("old")
    elsewhere.mkdir()
    (elsewhere / "b.png").write_text("not sweepc's")
    (job / "sub").symlink_to(elsewhere)
    (job / "out.txt").symlink_to(elsewhere / "b.png")
    script = runner_function("_sweepc_rm_output") + 'for o in plots out.txt sub/b.png missing/x; do _sweepc_rm_output "$1" "$o"; done\n'
    subprocess.run(["bash", "-c", script, "bash", str(job)], check=True)
    assert sorted(p.name for p in job.iterdir()) == []  # the folder, the two links: gone
    assert (elsewhere / "b.png").read_text() == "not sweepc's"
