"""The SLURM backend on the REAL local cluster (scripts/slurm-local.sh): real
sbatch, squeue, scancel, slurmctld and slurmd. No fakes here: the PATH
wrappers only count calls and exec the real commands.

Without a usable cluster the `slurm_cluster` fixture skips these tests, and
fails them when CI=true. The TIMEOUT test is marked slow (SLURM's shortest
time limit is one minute, and TIMEOUT arrives 60-90 s after the start).
"""

from __future__ import annotations

import json
import re
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from sweepc.cli import main
from sweepc.plan.store import Store

pytestmark = pytest.mark.slurm


@pytest.fixture
def calls(slurm_cluster: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """PATH wrappers that log each sbatch/squeue/scancel call and exec the real
    command; returns the log."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "calls.log"
    for name in ("sbatch", "squeue", "scancel"):
        real = shutil.which(name, path=slurm_cluster.get("PATH"))
        assert real is not None, f"{name} is not on PATH"
        (bindir / name).write_text(f'#!/bin/bash\necho "{name} $*" >> {log}\nexec {real} "$@"\n')
        (bindir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    log.touch()
    return log


def count(log: Path, name: str) -> int:
    return sum(1 for line in log.read_text().splitlines() if line.split(" ", 1)[0] == name)


class Project:
    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
        self.root, self.monkeypatch, self.capsys = root, monkeypatch, capsys

    def sweepc(self, *args: str) -> tuple[int, str]:
        self.monkeypatch.chdir(self.root)
        self.capsys.readouterr()
        code = main(list(args))
        out, err = self.capsys.readouterr()
        return code, out + err

    def status(self) -> dict[str, dict[str, int]]:
        code, out = self.sweepc("status", "--format", "json")
        assert code == 0, out
        return {row["rule"]: row for row in json.loads(out)}

    def outputs(self, rule: str, name: str) -> list[str]:
        return sorted(p.read_text() for p in (self.root / "calc" / rule).glob(f"*/*/{name}"))


def make(tmp_path: Path, text: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Project:
    root = tmp_path / "project"
    root.mkdir()
    (root / "sweepfile").write_text(text)
    return Project(root, monkeypatch, capsys)


TWO_RULES = """\
param a = range(0, 5)
param b = [10, 20, 30, 40]
param s = ["it's $HOME `x` \\"q\\"  two"]
sweep grid = a * b * s

rule gen over grid:
    output: "out.txt"
    shell: "echo {a} {b} > {output}; printf '%s\\n' {s} >> {output}"

rule square over grid:
    input: gen
    output: "sq.txt"
    shell: "read x y < {input}; echo $((x * y)) > {output}"

rule total:
    input: square
    output: "total.txt"
    local: true
    shell: '''awk '{{ s += $1 }} END {{ printf "%.0f", s; print "" }}' $(cat {input.list}) > {output}'''

backend slurm:
    bundle = 3
    throttle = 2
"""


def test_two_rules_in_two_arrays_then_nothing_to_do(calls: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    p = make(tmp_path, TWO_RULES, monkeypatch, capsys)
    code, out = p.sweepc("build", "--backend", "slurm", "--wait")
    assert code == 0, out
    assert count(calls, "sbatch") == 2  # 20 psets x 2 rules, 3 per task: one array per rule
    assert "submitted gen: job " in out and ", 20 psets in 7 tasks\n" in out
    assert "submitted square: job " in out and ", 20 psets in 7 tasks after aftercorr:" in out
    assert "sweepc: 41 done, 0 up to date" in out
    # right outputs, parameter text kept byte for byte through the task files
    assert p.outputs("gen", "out.txt") == sorted(f"{a} {b}\nit's $HOME `x` \"q\"  two\n" for a in range(5) for b in (10, 20, 30, 40))
    assert p.outputs("square", "sq.txt") == sorted(f"{a * b}\n" for a in range(5) for b in (10, 20, 30, 40))
    assert p.outputs("total", "total.txt") == ["1000\n"]  # the local: true rule ran here, after the arrays
    (script,) = p.root.glob(".sweepc/slurm/*/01-gen.sh")
    assert "#SBATCH --array=0-6%2\n" in script.read_text()
    status = p.status()
    assert {r: (s["jobs"], s["done"]) for r, s in status.items()} == {"gen": (20, 20), "square": (20, 20), "total": (1, 1)}
    # every record was ingested; the store says who ran what
    store = Store.open(p.root)
    recs = store.records()
    store.close()
    assert {r.status for r in recs.values()} == {"done"}
    assert {r.backend for r in recs.values()} == {"slurm", "local"}
    assert all(r.backend_job_id and "_" in r.backend_job_id for r in recs.values() if r.rule != "total")

    code, out = p.sweepc("build", "--backend", "slurm", "--wait")
    assert code == 0, out
    assert out == "sweepc: nothing to do (41 jobs up to date)\n"
    assert count(calls, "sbatch") == 2


FAILING = """\
param a = [1, 2, 3]
param b = [1, 2]
sweep grid = a * b

rule gen over grid:
    output: "out.txt"
    results: "r.json"
    shell: "if [ {a} = 2 ] && [ {b} = 1 ]; then echo boom >&2; exit 3; fi; echo {a} {b} > out.txt; echo '{{\\"v\\": {a}}}' > r.json"

rule square over grid:
    input: gen
    output: "sq.txt"
    shell: "cat ../../../gen/*/$(basename $PWD)/out.txt > {output}"

backend slurm:
    bundle = 2
"""


def test_a_failing_pset_leaves_its_siblings_intact(calls: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    p = make(tmp_path, FAILING, monkeypatch, capsys)
    code, out = p.sweepc("build", "--backend", "slurm", "--wait", "-k")
    assert code == 1, out
    assert "FAILED gen[a=2,b=1]: exit 3\n" in out
    assert "  | boom\n" in out
    assert "sweepc: 10 done, 1 failed, 1 not run because an input failed, 0 up to date" in out
    # gen[a=2,b=2] ran in the same array task, right after the failing pset
    assert p.outputs("gen", "out.txt") == sorted(["1 1\n", "1 2\n", "2 2\n", "3 1\n", "3 2\n"])
    assert len(p.outputs("square", "sq.txt")) == 5
    status = p.status()
    assert (status["gen"]["done"], status["gen"]["failed"]) == (5, 1)
    assert (status["square"]["done"], status["square"]["skipped"]) == (5, 1)  # its input failed
    code, out = p.sweepc("results", "--rule", "gen", "--format", "json")
    assert code == 0, out
    rows = {(r["a"], r["b"]): r for r in json.loads(out)}
    assert (rows[(2, 1)]["_status"], rows[(2, 1)]["_exit_code"]) == ("failed", 3)
    assert (rows[(2, 2)]["_status"], rows[(2, 2)]["v"]) == ("done", 2)
    # the next build runs the failed pset and what needs it, nothing else
    code, out = p.sweepc("build", "--backend", "slurm", "-n")
    assert "2 of 12 jobs to run (gen 1, square 1), 10 up to date\n" in out


SLOW_GEN = """\
param a = [1, 2, 3, 4, 5, 6]
sweep grid = a

rule gen over grid:
    output: "out.txt"
    shell: "sleep 2; echo {a} > {output}"

rule square over grid:
    input: gen
    output: "sq.txt"
    shell: "echo $(( $(cat {input}) * $(cat {input}) )) > {output}"

backend slurm:
    throttle = 2
"""


EARLIER = """\
param a = [1, 2, 3, 4]
sweep grid = a

rule gen over grid:
    output: "out.txt"
    shell: "sleep SECONDS; echo {a} > {output}"

rule total:
    input: gen
    output: "total.txt"
    local: true
    shell: '''awk '{{ s += $1 }} END {{ print s }}' $(cat {input.list}) > {output}'''

backend slurm:
    throttle = 2
"""


def test_wait_takes_over_the_jobs_an_earlier_build_queued(calls: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """`build --wait` after a build that did not wait (or whose wait was
    stopped) waits for what that build queued, then does what is left: the
    command the first build's last line points to. It said `nothing to do`
    and returned at once before, while the jobs were still queued."""
    p = make(tmp_path, EARLIER.replace("SECONDS", "2"), monkeypatch, capsys)
    code, out = p.sweepc("build", "--backend", "slurm")
    assert code == 0, out
    gen_id = out.split("submitted gen: job ", 1)[1].split(",", 1)[0]
    assert "sweepc: 1 job waits for jobs that are not finished" in out
    assert "wait with `sweepc build --backend slurm --wait`" in out

    code, out = p.sweepc("build", "--backend", "slurm", "--wait")
    assert code == 0, out
    # (how many are still queued depends on timing: throttle 2, 2 s each)
    assert re.match(rf"sweepc: waiting for [1-4] jobs? that an earlier build queued in SLURM \(job {gen_id}\); "
                    r"Ctrl-C stops waiting, not them\n", out), out
    assert "sweepc: they have ended\n" in out
    assert out.endswith("sweepc: 1 done, 4 up to date in " + out.rpartition(" up to date in ")[2]), out
    assert count(calls, "sbatch") == 1  # nothing submitted twice
    assert p.outputs("total", "total.txt") == ["10\n"]
    assert p.outputs("gen", "out.txt") == ["1\n", "2\n", "3\n", "4\n"]

    code, out = p.sweepc("build", "--backend", "slurm", "--wait")
    assert (code, out) == (0, "sweepc: nothing to do (5 jobs up to date)\n")


def test_ctrl_c_stops_waiting_for_an_earlier_build_not_its_jobs(slurm_cluster: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import signal
    import subprocess
    import sys

    p = make(tmp_path, EARLIER.replace("SECONDS", "20"), monkeypatch, capsys)
    code, out = p.sweepc("build", "--backend", "slurm")
    assert code == 0, out
    gen_id = out.split("submitted gen: job ", 1)[1].split(",", 1)[0]
    try:
        w = subprocess.Popen([sys.executable, "-m", "sweepc", "build", "--backend", "slurm", "--wait"], cwd=p.root,
                             env=slurm_cluster, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert w.stdout is not None
        first = w.stdout.readline()
        assert first == (f"sweepc: waiting for 4 jobs that an earlier build queued in SLURM (job {gen_id}); "
                         "Ctrl-C stops waiting, not them\n")
        w.send_signal(signal.SIGINT)
        rest, _ = w.communicate(timeout=60)
        assert w.returncode == 130, rest
        assert rest == ("sweepc: stopped waiting; the jobs an earlier build queued stay queued "
                        "(see them with `sweepc status`, stop them with `sweepc cancel`)\n")
        status = p.status()
        assert status["gen"]["pending"] + status["gen"]["running"] == 4  # still SLURM's, untouched
    finally:
        code, out = p.sweepc("cancel")
    assert code == 0 and out.startswith("sweepc: cancelled 1 job array ("), out


def test_cancel_while_a_build_waits_for_an_earlier_one_stops_it_submitting(slurm_cluster: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """`sweepc cancel` from another terminal while `build --wait` waits for
    what an earlier build queued: the waiting build submits nothing again
    (it resubmitted everything cancelled, undoing the cancel), says why and
    exits 1, as a build --wait whose own jobs are cancelled does."""
    import subprocess
    import sys

    p = make(tmp_path, EARLIER.replace("SECONDS", "20"), monkeypatch, capsys)
    code, out = p.sweepc("build", "--backend", "slurm")
    assert code == 0, out
    gen_id = out.split("submitted gen: job ", 1)[1].split(",", 1)[0]
    w = subprocess.Popen([sys.executable, "-m", "sweepc", "build", "--backend", "slurm", "--wait"], cwd=p.root,
                         env=slurm_cluster, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert w.stdout is not None
        first = w.stdout.readline()
        assert first.startswith("sweepc: waiting for 4 jobs that an earlier build queued in SLURM"), first
        code, out = p.sweepc("cancel")
        assert code == 0 and out.startswith(f"sweepc: cancelled 1 job array ({gen_id}); 4 jobs recorded as cancelled"), out
        rest, _ = w.communicate(timeout=60)
    finally:
        if w.poll() is None:
            w.kill()
    assert w.returncode == 1, rest
    assert rest == ("sweepc: they have ended; 4 jobs of them were cancelled (sweepc cancel or scancel)\n"
                    "sweepc: submitted nothing: jobs were cancelled while it waited; build again to run them\n")
    status = p.status()
    assert status["gen"]["cancelled"] == 4 and status["gen"]["pending"] == status["gen"]["running"] == 0

    def ours_in_queue() -> list[str]:
        return [line for line in subprocess.run(["squeue", "-h", "-o", "%Z"], env=slurm_cluster, capture_output=True,
                                                text=True).stdout.splitlines() if str(p.root) in line]

    # the cancelled array may show a moment longer, COMPLETING while slurmd kills its running task
    # (the build stopped waiting once `sweepc cancel` had recorded the jobs cancelled)
    deadline = time.monotonic() + 30
    while ours_in_queue() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not ours_in_queue()


def test_queued_jobs_are_not_submitted_twice_and_cancel_then_build_resumes(calls: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    p = make(tmp_path, SLOW_GEN, monkeypatch, capsys)
    code, out = p.sweepc("build", "--backend", "slurm", "gen")
    assert code == 0, out
    assert count(calls, "sbatch") == 1
    gen_id = out.split("submitted gen: job ", 1)[1].split(",", 1)[0]

    code, out = p.sweepc("build", "--backend", "slurm", "-n", "--explain")
    assert code == 0, out
    assert f"skip gen[a=6]: queued as job {gen_id}_5\n" in out
    assert f"run square[a=6]: never built; upstream gen[a=6] is queued as job {gen_id}_5\n" in out

    # their scripts are still needed
    code, out = p.sweepc("clean", "batch")
    assert code == 2 and re.match(r"sweepc: [1-6] jobs of this project are queued or running in SLURM; their scripts are in \.sweepc/slurm/\n", out), out
    assert (p.root / ".sweepc" / "slurm").is_dir()

    # a local build must not run what SLURM still has queued
    code, out = p.sweepc("build", "-j", "2")
    assert code == 2, out
    # (how many are still queued depends on timing: throttle 2, 2 s each)
    assert re.fullmatch(
        rf"sweepc: [1-6] of the jobs to build are queued or running in SLURM \(gen\[a=\d\] as job {gen_id}_\d, \.\.\.\)\n"
        r"  hint: wait for them: sweepc build --backend slurm --wait; or stop them: sweepc cancel\n", out), out
    assert count(calls, "sbatch") == 1

    squeues = count(calls, "squeue")
    code, out = p.sweepc("build", "--backend", "slurm")
    assert code == 0, out
    assert count(calls, "squeue") == squeues + 1  # one squeue for every queued job
    assert count(calls, "sbatch") == 2  # square only; gen is not submitted again
    assert "submitted gen" not in out
    assert "submitted square: job " in out and f"after afterok:{gen_id}_" in out

    code, out = p.sweepc("build", "--backend", "slurm")
    assert code == 0, out
    assert out.startswith("sweepc: nothing to do (") and "still queued in SLURM" in out
    assert count(calls, "sbatch") == 2

    code, out = p.sweepc("cancel")
    assert code == 0, out
    assert out.startswith("sweepc: cancelled 2 job arrays (")
    assert count(calls, "scancel") == 1
    status = p.status()
    assert status["gen"]["pending"] == status["square"]["pending"] == status["gen"]["running"] == 0
    assert status["gen"]["cancelled"] + status["square"]["cancelled"] >= 7  # square never started
    finished = status["gen"]["done"]

    code, out = p.sweepc("build", "--backend", "slurm", "--wait")
    assert code == 0, out
    assert f"sweepc: {12 - finished} done, {finished} up to date" in out
    assert p.outputs("square", "sq.txt") == sorted(f"{a * a}\n" for a in range(1, 7))
    status = p.status()
    assert (status["gen"]["done"], status["square"]["done"]) == (6, 6)


TIMEOUT = """\
param a = [1, 2]
sweep grid = a

rule sim over grid:
    output: "out.txt"
    resources: time = 1
    retries: 1
    shell: "if [ {a} = 1 ]; then sleep 300; fi; echo first > {output}"
    restart: "echo restarted > {output}"

rule post over grid:
    input: sim
    output: "post.txt"
    shell: "cat {input} > {output}"
"""


@pytest.mark.slow
def test_timeout_then_restart(calls: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    p = make(tmp_path, TIMEOUT, monkeypatch, capsys)
    code, out = p.sweepc("build", "--backend", "slurm", "--wait")
    assert code == 0, out
    assert "sim[a=1] reached its time limit, retrying (attempt 2)\n" in out
    assert "sweepc: 4 done, 0 up to date" in out
    assert p.outputs("sim", "out.txt") == ["first\n", "restarted\n"]
    # post[a=1] was cancelled with its broken dependency, and went out again after the restart
    assert p.outputs("post", "post.txt") == ["first\n", "restarted\n"]
    assert count(calls, "sbatch") >= 3
    store = Store.open(p.root)
    recs = store.records()
    store.close()
    assert sorted(r.attempts for r in recs.values() if r.rule == "sim") == [1, 2]


KILLED = """\
param a = [1, 2]
sweep grid = a

rule gen over grid:
    output: "out.txt"
    shell: "if [ {a} = 1 ]; then kill -KILL $(ps -o ppid= -p $PPID); exit 7; fi; echo {a} > {output}"

rule post over grid:
    input: gen
    output: "post.txt"
    shell: "cat {input} > {output}"

backend slurm:
    bundle = 2
"""


def test_a_task_that_dies_without_records(calls: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # gen[a=1] kills the runner (its command's grandparent: the parent is the
    # measuring python3): the task ends FAILED with no record for either pset.
    # squeue tells: the pset that was running failed, its sibling never ran and goes
    # out again; post's task is cancelled with its broken dependency.
    p = make(tmp_path, KILLED, monkeypatch, capsys)
    code, out = p.sweepc("build", "--backend", "slurm", "--wait")
    assert code == 1, out
    assert "FAILED gen[a=1]: array task " in out and "_0 ended failed without a completion record\n" in out
    assert "sweepc: 2 done, 1 failed, 1 not run because an input failed, 0 up to date" in out
    assert p.outputs("gen", "out.txt") == ["2\n"]
    assert p.outputs("post", "post.txt") == ["2\n"]
    assert count(calls, "sbatch") == 4  # gen, post, then gen[a=2] and post[a=2] again
    status = p.status()
    assert (status["gen"]["done"], status["gen"]["failed"]) == (1, 1)


def test_a_project_folder_with_a_space_in_its_path(calls: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # the scheduler log path in #SBATCH --output holds the project path
    root = tmp_path / "my project"
    root.mkdir()
    (root / "sweepfile").write_text(
        'param a = [1, 2, 3]\n'
        'rule gen over a:\n'
        '    output: "out.txt"\n'
        '    shell: "echo {a} > {output}"\n'
        'backend slurm:\n'
        '    bundle = 2\n'
    )
    p = Project(root, monkeypatch, capsys)
    code, out = p.sweepc("build", "--backend", "slurm", "--wait")
    assert code == 0, out
    assert p.outputs("gen", "out.txt") == ["1\n", "2\n", "3\n"]
    logs = list((root / ".sweepc" / "slurm").glob("*/logs/*.out"))
    assert len(logs) == 2  # one scheduler log per array task, in the quoted folder


# -- job folders the runner makes on the node ------------------------------------------

PLAIN = """\
param a = [1, 2]
param x = [0.5, 2.0]
param s = ["it's \\"q\\" é $HOME"]
sweep grid = a * x * s

rule gen over grid:
    output: "out.txt"
    shell: "cat pset.json > {output}"

backend slurm:
    bundle = 2
"""


def until(cond: Callable[[], bool], timeout: float, step: float = 1.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(step)
    return cond()


def _job_files(root: Path) -> dict[str, tuple[bytes, bytes]]:
    return {d.name: ((d / "pset.json").read_bytes(), (d / ".sweepc-job").read_bytes()) for d in sorted((root / "calc" / "gen").glob("*/*"))}


def test_the_runner_makes_a_template_less_job_folder_as_a_local_build_does(calls: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "local").mkdir()
    local = make(tmp_path / "local", PLAIN, monkeypatch, capsys)
    code, out = local.sweepc("build")
    assert code == 0, out
    p = make(tmp_path, PLAIN, monkeypatch, capsys)
    code, out = p.sweepc("build", "--backend", "slurm")
    assert code == 0, out
    # sweepc made no job folder before submitting: the task files carry pset.json, the runner writes it
    (task,) = p.root.glob(".sweepc/slurm/*/01-gen/task-0.sh")
    assert "SWEEPC_MAKE_DIRS=1\n" in task.read_text() and "_sweepc_pj=" in task.read_text()
    assert until(lambda: p.status()["gen"]["done"] == 4, 120), p.status()
    made, expected = _job_files(p.root), _job_files(local.root)
    assert len(made) == 4 and made == expected  # byte for byte
    assert p.outputs("gen", "out.txt") == sorted(v[0].decode() for v in expected.values())  # the command saw it


def test_a_link_planted_at_a_job_folder_is_refused_on_the_node(calls: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    p = make(tmp_path, PLAIN, monkeypatch, capsys)
    code, out = p.sweepc("build", "--backend", "slurm", "--render-only")  # to learn the job folders; no folder is made
    assert code == 0, out
    from sweepc.lang.project import load_graph

    g = load_graph(p.root / "sweepfile")
    victim = next(j for j in g.jobs if j.params["a"] == 1 and j.params["x"] == 0.5)
    assert not (p.root / "calc").exists()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "out.txt").write_text("not sweepc's\n")
    link = p.root / "calc" / victim.reldir
    link.parent.mkdir(parents=True)
    link.symlink_to(outside)
    code, out = p.sweepc("build", "--backend", "slurm", "--wait")
    assert code == 1, out
    assert (f"FAILED {victim.label}: refusing to run it: {link} is a symbolic link (to {outside}); sweepc writes job files "
            "only into real folders inside the workdir: remove the link\n") in out, out
    assert "sweepc: 3 done, 1 failed, 0 up to date" in out, out
    assert sorted(q.name for q in outside.iterdir()) == ["out.txt"] and (outside / "out.txt").read_text() == "not sweepc's\n"
    assert link.is_symlink()  # not sweepc's to remove
    st = p.status()["gen"]
    assert (st["done"], st["failed"]) == (3, 1), st
    # its record is in the submission folder, never written through the link
    (rec,) = p.root.glob(f".sweepc/slurm/*/refused/gen/{victim.hash}/sweepc-record.json")
    data = json.loads(rec.read_text())
    assert (data["status"], data["exit_code"], data["hash"]) == ("failed", None, victim.hash)
    assert data["note"].startswith(f"refusing to run it: {link} is a symbolic link"), data
    # the next build runs it again (and is refused again while the link is there)
    code, out = p.sweepc("build", "--backend", "slurm", "-n")
    assert out.endswith("1 of 4 jobs to run (gen 1), 3 up to date\n"), out


def test_status_takes_in_the_record_of_a_refused_job_folder(calls: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    p = make(tmp_path, PLAIN, monkeypatch, capsys)
    from sweepc.lang.project import load_graph

    g = load_graph(p.root / "sweepfile")
    victim = g.jobs[0]
    (tmp_path / "outside").mkdir()
    link = p.root / "calc" / victim.reldir
    link.parent.mkdir(parents=True)
    link.symlink_to(tmp_path / "outside")
    code, out = p.sweepc("build", "--backend", "slurm")  # no --wait: status takes the records in
    assert code == 0, out
    assert until(lambda: p.status()["gen"]["done"] == 3, 120), p.status()
    assert until(lambda: p.status()["gen"]["failed"] == 1, 10), p.status()
    assert list((tmp_path / "outside").iterdir()) == []


def test_wait_for_an_earlier_build_says_how_many_are_left_and_backs_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """backend.wait_queued alone (no cluster): one records.sync a poll, the
    poll interval doubling to 10 s; a line when the count moved and 30 s
    have passed since the last; the last line once none is live."""
    from types import SimpleNamespace

    from sweepc.backends.slurm import backend as b

    g = SimpleNamespace(jobs=[SimpleNamespace(rule="gen", hash=f"h{i}") for i in range(3)])
    live = [{("gen", "h0"): "5_0", ("gen", "h1"): "5_1", ("gen", "h2"): "7_0"},
            {("gen", "h1"): "5_1", ("gen", "h2"): "7_0"},
            {("gen", "h1"): "5_1", ("gen", "h2"): "7_0"},
            {("gen", "h2"): "7_0", ("other", "x"): "9_0"},
            {("other", "x"): "9_0"}]  # (another build's job: not waited for)
    polls = iter(live)
    monkeypatch.setattr(b.rec_, "sync", lambda g, store, scheduler: next(polls))
    clock = [0.0]
    monkeypatch.setattr(b.time, "monotonic", lambda: clock[0])
    sleeps: list[float] = []

    def sleep(s: float) -> None:
        sleeps.append(s)
        clock[0] += 10.0

    notes: list[str] = []
    reporter = SimpleNamespace(note=notes.append)
    # the store's rows by status: first another project's job only
    rows: dict[str, dict[tuple[str, str], None]] = {"cancelled": {("other", "x"): None}}
    store = SimpleNamespace(records=lambda status: rows.get(status, {}))
    how = b.wait_queued(g, store, None, {0: "5_0", 1: "5_1", 2: "7_0"}, reporter, sleep=sleep)  # type: ignore[arg-type]
    assert how == "ended"
    assert notes == [
        "sweepc: waiting for 3 jobs that an earlier build queued in SLURM (jobs 5, 7); Ctrl-C stops waiting, not them",
        # (3 -> 2 after 20 s: no line yet; 2 -> 1 after 40 s)
        "sweepc: 1 of them still queued or running",
        "sweepc: they have ended",
    ]
    assert sleeps == [0.5, 1.0, 2.0, 4.0, 8.0]
    assert next(polls, None) is None

    # cancelled meanwhile (sweepc cancel from another terminal): the build must
    # submit nothing more. Gone from the queue while its row still says queued
    # (the cancel records `cancelled` just after its scancel): a grace first
    polls = iter([{("gen", "h2"): "7_0"}, {}])
    rows["queued"] = {("gen", "h2"): None}
    sleeps.clear()
    notes.clear()

    def sleep_and_cancel(s: float) -> None:
        sleep(s)
        if s == b.GRACE_S:
            rows["cancelled"][("gen", "h2")] = None

    how = b.wait_queued(g, store, None, {2: "7_0"}, reporter, sleep=sleep_and_cancel)  # type: ignore[arg-type]
    assert how == "cancelled"
    assert sleeps == [0.5, 1.0, b.GRACE_S]
    assert notes == [
        "sweepc: waiting for 1 job that an earlier build queued in SLURM (job 7); Ctrl-C stops waiting, not them",
        "sweepc: they have ended; 1 job of them was cancelled (sweepc cancel or scancel)",
    ]
