"""SLURM campaigns on the REAL local cluster (scripts/slurm-local.sh): packed
tasks, true job states, measured resources, retries resumed by a later build,
the background conductor, and portable --render-only folders.

Without a usable cluster the `slurm_cluster` fixture skips these tests, and
fails them when CI=true. Other jobs may share the queue (the cluster is shared
with other test suites): nothing here counts on an empty queue, and only this
project's jobs are ever cancelled (through `sweepc cancel`, which knows their
ids). The TIMEOUT tests are marked slow: SLURM's shortest limit is a minute.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from sweepc.cli import main
from sweepc.plan.store import Store

pytestmark = pytest.mark.slurm


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

    def results(self, rule: str) -> list[dict[str, object]]:
        code, out = self.sweepc("results", "--rule", rule, "--format", "json")
        assert code == 0, out
        rows: list[dict[str, object]] = json.loads(out)
        return rows

    def outputs(self, rule: str, name: str) -> list[str]:
        return sorted(p.read_text() for p in (self.root / "calc" / rule).glob(f"*/*/{name}"))

    def rows(self) -> dict[tuple[str, str], object]:
        store = Store.open(self.root)
        try:
            return dict(store.records())
        finally:
            store.close()


def make(tmp_path: Path, text: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], name: str = "project") -> Project:
    root = tmp_path / name
    root.mkdir()
    (root / "sweepfile").write_text(text)
    return Project(root, monkeypatch, capsys)


def until(what: Callable[[], bool], timeout: float, step: float = 1.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if what():
            return True
        time.sleep(step)
    return what()


def gone(pid: int) -> bool:
    """Whether process pid has exited (a zombie not reaped yet counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"


@pytest.fixture
def cleanup(slurm_cluster: dict[str, str]) -> object:
    """Projects whose jobs are cancelled (only theirs) when a test ends early."""
    projects: list[Project] = []
    yield projects
    for p in projects:
        p.sweepc("cancel")


# -- packing -----------------------------------------------------------------------

PACKED = """\
param a = range(0, 8)

rule nap over a:
    output: "out.txt"
    shell: "sleep 3; echo {a} > {output}"

backend slurm:
    bundle = 8
    pack = 4
"""


def test_a_packed_task_runs_four_psets_at_once(slurm_cluster: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    p = make(tmp_path, PACKED, monkeypatch, capsys)
    code, out = p.sweepc("build", "--backend", "slurm", "--wait")
    assert code == 0, out
    assert "submitted nap: job " in out and ", 8 psets in 1 task\n" in out
    (script,) = p.root.glob(".sweepc/slurm/*/01-nap.sh")
    assert "#SBATCH --cpus-per-task=4\n" in script.read_text()  # 4 psets x 1 cpu
    runs = [(r.start, r.end) for r in p.rows().values()]  # type: ignore[attr-defined]
    assert len(runs) == 8 and all(s is not None and e is not None for s, e in runs)
    # at most four at a time, and four did run together
    most = max(sum(1 for s, e in runs if s <= t < e) for t, _ in runs)
    assert most == 4, runs
    # two rounds of ~3 s, not eight in a row (24 s); generous for a loaded machine
    span = max(e for _, e in runs) - min(s for s, _ in runs)
    assert span < 16, span
    assert p.outputs("nap", "out.txt") == sorted(f"{a}\n" for a in range(8))
    # each pset has its own record, measured
    for row in p.results("nap"):
        assert row["_status"] == "done" and row["_attempts"] == 1
        assert isinstance(row["_max_rss_mb"], float) and isinstance(row["_cpu_s"], float)


# -- true states -------------------------------------------------------------------

LONG = """\
param a = [1]

rule hold over a:
    output: "out.txt"
    shell: "sleep 60; echo {a} > {output}"
"""


def test_status_says_running_for_a_running_task_and_cancel_records_it(slurm_cluster: dict[str, str], cleanup: list[Project], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    p = make(tmp_path, LONG, monkeypatch, capsys)
    cleanup.append(p)
    code, out = p.sweepc("build", "--backend", "slurm")
    assert code == 0, out
    first = p.status()["hold"]
    assert first["pending"] + first["running"] == 1, first  # submitted: pending, or started already
    assert until(lambda: p.status()["hold"]["running"] == 1, 60), p.status()
    code, out = p.sweepc("results", "--format", "json")
    assert json.loads(out)[0]["_status"] == "running"
    code, out = p.sweepc("cancel")
    assert code == 0 and re.match(r"sweepc: cancelled 1 job array \(\d+\); 1 job recorded as cancelled\n", out), out
    assert p.status()["hold"]["cancelled"] == 1


# -- measured resources ------------------------------------------------------------

BIG = """\
param a = [1, 2]

rule alloc over a:
    output: "out.txt"
    resources: mem = "1G", time = 5
    shell: "python3 -c 'x = b\\"x\\" * (200 << 20); print(len(x))' > {output}"
"""


def test_peak_memory_and_cpu_time_are_measured_on_the_node_and_resources_suggests_more(slurm_cluster: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    p = make(tmp_path, BIG, monkeypatch, capsys)
    code, out = p.sweepc("build", "--backend", "slurm", "--wait")
    assert code == 0, out
    rows = p.results("alloc")
    peaks = [float(r["_max_rss_mb"]) for r in rows]  # type: ignore[arg-type]
    assert all(200 <= m < 400 for m in peaks), peaks
    assert all(isinstance(r["_cpu_s"], float) and r["_cpu_s"] > 0 for r in rows), rows
    code, out = p.sweepc("resources")
    assert code == 0, out
    m = re.search(r'^alloc: suggested resources: cpus = 1, mem = "(\d+)M", time = "00:01:00"$', out, re.M)
    assert m is not None, out
    assert int(m.group(1)) > max(peaks)
    assert "1 cpu, 1G, 00:05:00" in out


# -- TIMEOUT: resubmitted with restart: --------------------------------------------

TIMEOUT = """\
param a = [1, 2]
sweep grid = a

rule sim over grid:
    output: "out.txt"
    resources: time = 1
    retries: 1
    shell: "if [ {a} = 1 ]; then sleep 300; fi; echo first > {output}"
    restart: "echo restarted > {output}"
"""


@pytest.mark.slow
def test_a_timeout_is_resubmitted_with_restart_by_the_next_plain_build(slurm_cluster: dict[str, str], cleanup: list[Project], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    p = make(tmp_path, TIMEOUT, monkeypatch, capsys)
    cleanup.append(p)
    code, out = p.sweepc("build", "--backend", "slurm")
    assert code == 0, out
    # the queue is shared: the task may pend a while; then SLURM's limit is a minute plus its check interval
    assert until(lambda: p.status()["sim"]["running"] + p.status()["sim"]["timeout"] >= 1, 180, 2), p.status()
    assert until(lambda: p.status()["sim"]["timeout"] == 1, 180, 3), p.status()
    st = p.status()["sim"]
    assert (st["done"], st["timeout"], st["pending"], st["running"]) == (1, 1, 0, 0)
    # the next plain build goes on counting: attempt 2, with restart:
    code, out = p.sweepc("build", "--backend", "slurm")
    assert code == 0, out
    assert "sweepc: 1 job failed in an earlier submission and has attempts left: resubmitting them, 1 with their restart: command\n" in out
    assert until(lambda: p.status()["sim"]["done"] == 2, 90, 2), p.status()
    assert p.outputs("sim", "out.txt") == ["first\n", "restarted\n"]
    assert sorted(r.attempts for r in p.rows().values()) == [1, 2]  # type: ignore[attr-defined]
    assert p.status()["sim"]["retried"] == 1


@pytest.mark.slow
def test_detach_starts_a_conductor_that_retries_and_exits_when_done(slurm_cluster: dict[str, str], cleanup: list[Project], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    p = make(tmp_path, TIMEOUT, monkeypatch, capsys)
    cleanup.append(p)
    t0 = time.monotonic()
    code, out = p.sweepc("build", "--backend", "slurm", "--detach")
    assert code == 0, out
    assert time.monotonic() - t0 < 30  # returns once the conductor holds the project, not when the jobs end
    m = re.match(r"sweepc: conductor started \(pid (\d+)\); it submits, resubmits and waits in the background, log in \.sweepc/conductor\.log\n"
                 r"sweepc: follow it with `sweepc status`, stop it and its jobs with `sweepc cancel`\n$", out)
    assert m is not None, out
    pid = int(m.group(1))
    code, out = p.sweepc("status")
    assert re.search(rf"^sweepc: a conductor is running since \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d \(pid {pid}\); log: \.sweepc/conductor\.log$", out, re.M), out
    # another build is refused while it runs
    code, out = p.sweepc("build", "--backend", "slurm")
    assert code == 2 and "another sweepc build is running in this project" in out, out

    assert until(lambda: gone(pid), 240, 3), (p.root / ".sweepc" / "conductor.log").read_text()
    log = (p.root / ".sweepc" / "conductor.log").read_text()
    assert "sim[a=1] reached its time limit, retrying (attempt 2)" in log, log
    assert "sweepc: 2 done, 0 up to date" in log, log
    code, out = p.sweepc("status")
    assert "conductor" not in out
    st = p.status()["sim"]
    assert (st["done"], st["pending"], st["running"], st["timeout"]) == (2, 0, 0, 0), st
    assert p.outputs("sim", "out.txt") == ["first\n", "restarted\n"]
    code, out = p.sweepc("cancel")
    assert out == "sweepc: nothing to cancel\n"


OVERRIDDEN = """\
param a = [1, 2]

rule sim over a:
    output: "out.txt"
    shell: "test {a} != 6 && echo {a} > {output}"

rule total:
    input: sim
    output: "total.txt"
    shell: "cat {input} > {output}"
"""


def test_the_conductor_builds_what_the_command_line_asked_for(slurm_cluster: dict[str, str], cleanup: list[Project], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """`-D` and `-k` go to the conductor. They were left behind: the
    conductor of `sweepc -D a=[5,6,7] build --detach -k` built the
    sweepfile's a = [1, 2], and would have stopped at the first failure."""
    p = make(tmp_path, OVERRIDDEN, monkeypatch, capsys)
    cleanup.append(p)
    code, out = p.sweepc("-D", "a=[5, 6, 7]", "build", "--backend", "slurm", "--detach", "-k", "sim")
    assert code == 0, out
    pid = int(re.findall(r"pid (\d+)", out)[0])

    assert until(lambda: gone(pid), 120, 1), (p.root / ".sweepc" / "conductor.log").read_text()
    log = (p.root / ".sweepc" / "conductor.log").read_text()
    assert log.startswith("==> ")
    assert f" sweepc -D a=[5, 6, 7] -f {p.root / 'sweepfile'} build --backend slurm --wait --conductor -k -- sim\n" in log, log
    assert "sweepc: 2 done, 1 failed, 0 up to date" in log, log
    assert p.outputs("sim", "out.txt") == ["5\n", "7\n"]  # not the sweepfile's 1 and 2; 7 ran after 6 failed
    assert p.outputs("total", "total.txt") == []  # only the target


def test_cancel_stops_the_conductor_and_its_jobs(slurm_cluster: dict[str, str], cleanup: list[Project], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    p = make(tmp_path, LONG, monkeypatch, capsys)
    cleanup.append(p)
    code, out = p.sweepc("build", "--backend", "slurm", "--detach")
    assert code == 0, out
    pid = int(re.findall(r"pid (\d+)", out)[0])
    assert until(lambda: p.status()["hold"]["pending"] + p.status()["hold"]["running"] == 1, 60), p.status()
    c = p.status()["hold"]["conductor"]
    assert (c["pid"], c["log"]) == (pid, ".sweepc/conductor.log"), c  # as the text status says
    code, out = p.sweepc("cancel")
    assert code == 0, out
    assert out.startswith(f"sweepc: stopped the conductor (pid {pid})\nsweepc: cancelled 1 job array ("), out + (p.root / ".sweepc" / "conductor.log").read_text()
    assert "conductor" not in p.sweepc("status")[1]
    assert p.status()["hold"]["cancelled"] == 1 and "conductor" not in p.status()["hold"]


# -- portable --render-only --------------------------------------------------------

TWO = """\
param a = [1, 2, 3]
sweep grid = a

rule gen over grid:
    output: "out.txt"
    shell: "echo {a} > {output}"

rule square over grid:
    input: gen
    output: "sq.txt"
    shell: "echo $(( $(cat {input}) * $(cat {input}) )) > {output}"

backend slurm:
    bundle = 2
"""


def test_render_only_scripts_run_from_a_copy_and_their_records_are_taken_in_back_home(slurm_cluster: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    p = make(tmp_path, TWO, monkeypatch, capsys)
    code, out = p.sweepc("build", "--backend", "slurm", "--render-only")
    assert code == 0, out
    assert str(p.root) not in "".join(f.read_text() for f in p.root.glob(".sweepc/slurm/*/**/*.sh"))
    assert p.status()["gen"]["pending"] == 3  # rendered: waiting for submit.sh
    # the "cluster": a copy of the project somewhere else
    away = tmp_path / "elsewhere" / "copy of project"
    shutil.copytree(p.root, away)
    (submit,) = away.glob(".sweepc/slurm/*/submit.sh")
    done = subprocess.run(["bash", str(submit)], cwd=tmp_path, capture_output=True, text=True, env=slurm_cluster, check=False)
    assert done.returncode == 0, done.stderr
    assert re.match(r"gen: job \d+, 3 psets in 2 tasks \(01-gen\.sh\)\nsquare: job \d+, 3 psets in 2 tasks \(02-square\.sh\)\n$", done.stdout), done.stdout

    def finished() -> bool:
        recs = [json.loads(f.read_text()) for f in (away / "calc" / "square").glob("*/*/sweepc-record.json")]
        return len(recs) == 3 and all(r["status"] == "done" for r in recs)

    assert until(finished, 120), list((away / ".sweepc" / "slurm").glob("*/logs/*"))
    assert sorted(f.read_text() for f in (away / "calc" / "square").glob("*/*/sq.txt")) == ["1\n", "4\n", "9\n"]
    # back home: nothing yet, then the job folders come back
    assert p.status()["square"]["pending"] == 3
    shutil.copytree(away / "calc", p.root / "calc", dirs_exist_ok=True)
    rows = p.results("square")
    assert [(r["a"], r["_status"]) for r in rows] == [(1, "done"), (2, "done"), (3, "done")]
    assert all(r["_exec_host"] for r in rows)
    code, out = p.sweepc("build", "--backend", "slurm", "-n")
    assert out.startswith("sweepc: nothing to do (6 jobs up to date"), out


# -- python: rules: the bundle runner (pyrunner.py) ----------------------------------

PYTHON_STUDY = """\
param a = range(0, 6)

rule prep over a:
    output: "x.txt"
    shell: "test {a} != 5 && echo {a} > {output}"

rule work over a:
    input: prep
    python: "model.py:run"
    retries: 1

backend slurm:
    bundle = 3
    pack = 2
"""

PYTHON_MODEL = """\
import ctypes, os, sys
here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "imports.txt"), "a") as f:
    f.write(f"{os.getpid()} {os.environ.get('SLURM_ARRAY_JOB_ID', 'here')}_{os.environ.get('SLURM_ARRAY_TASK_ID', '')}\\n")

def run(pset):
    if pset["a"] == 1:
        raise ValueError("a is one")
    if pset["a"] == 2:
        ctypes.string_at(0)  # a segfault
    if pset["a"] == 3 and not os.path.exists(os.path.join(here, "tried")):
        open(os.path.join(here, "tried"), "w").close()
        raise RuntimeError("first attempt")
    return {"y": VALUE * pset["a"], "sweepc_loaded": "sweepc" in sys.modules, "cwd_ok": os.getcwd() == pset["_job_dir"]}
"""


def test_a_python_rule_runs_in_bundles_importing_its_module_once_per_task(slurm_cluster: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    p = make(tmp_path, PYTHON_STUDY, monkeypatch, capsys)
    (p.root / "model.py").write_text(PYTHON_MODEL.replace("VALUE", "10"))
    code, out = p.sweepc("build", "--backend", "slurm", "--wait", "-k")
    assert code == 1, out
    assert "submitted work: job " in out and ", 6 psets in 2 tasks\n" in out
    (folder,) = p.root.glob(".sweepc/slurm/*/")
    assert (folder / "pyrunner.py").is_file() and (folder / "sweepc_pyjob.py").is_file()
    # imported once in each of the two array tasks, not once per pset (and by sweepc's check before submitting)

    def imports() -> list[str]:
        """The array tasks (JOB_TASK) that imported the module, one line per import."""
        return [ln.split()[1] for ln in (p.root / "imports.txt").read_text().splitlines() if not ln.endswith(" here_")]

    # the two tasks of the first round, and the retry tasks (one or two rounds, as the
    # failures come in): each imported it once, whatever number of psets it ran
    first = imports()
    assert len(first) == len(set(first)) and 3 <= len(first) <= 4, first
    rows = {r["a"]: r for r in p.results("work")}
    assert {a: r["_status"] for a, r in rows.items()} == {0: "done", 1: "failed", 2: "failed", 3: "done", 4: "done", 5: "skipped"}
    assert {a: r["_attempts"] for a, r in rows.items() if a != 5} == {0: 1, 1: 2, 2: 2, 3: 2, 4: 1}
    assert rows[1]["_error"] == "ValueError: a is one"
    assert rows[2]["_error"] == "the Python process of this pset was killed by signal 11 (SIGSEGV)"
    assert "Traceback (most recent call last):" in (p.root / str(rows[1]["_log"])).read_text()
    for a in (0, 3, 4):
        r = rows[a]
        assert r["y"] == 10 * a and r["sweepc_loaded"] is False and r["cwd_ok"] is True, r
        assert isinstance(r["_max_rss_mb"], float) and r["_max_rss_mb"] > 0 and isinstance(r["_cpu_s"], float), r
    # what ended done is up to date; what failed (and prep[a=5], and so work[a=5]) runs again
    code, out = p.sweepc("build", "--backend", "slurm", "-n")
    assert out.splitlines()[-1] == "4 of 12 jobs to run (prep 1, work 3), 8 up to date", out
    # editing the module reruns its jobs (touching it does not)
    os.utime(p.root / "model.py")
    code, out = p.sweepc("build", "--backend", "slurm", "-n")
    assert out.splitlines()[-1] == "4 of 12 jobs to run (prep 1, work 3), 8 up to date", out
    (p.root / "model.py").write_text(PYTHON_MODEL.replace("VALUE", "100").replace('pset["a"] == 1', "False").replace('pset["a"] == 2', "False"))
    code, out = p.sweepc("build", "--backend", "slurm", "--wait", "-k")
    assert code == 1, out  # prep[a=5] still fails
    again = imports()[len(first):]
    assert len(again) == len(set(again)) == 2, again  # the 6 psets of work in 2 tasks
    rows = {r["a"]: r for r in p.results("work")}
    assert {a: (r["_status"], r["y"]) for a, r in rows.items() if a != 5} == {a: ("done", 100 * a) for a in range(5)}
    assert rows[5]["_status"] == "skipped"
    code, out = p.sweepc("build", "--backend", "slurm", "-n")
    assert out.splitlines()[-1] == "2 of 12 jobs to run (prep 1, work 1), 10 up to date", out


PYTHON_DONE = """\
param a = [1, 2, 3]

rule sim over a:
    output: "r.txt"
    shell: "if [ {a} = 2 ] && [ ! -e {root}/fixed ]; then exit 4; fi; echo {a} > {output}"

rule summary:
    input: done(sim)
    python: "gather.py:run"

rule after:
    input: summary
    python: "gather.py:after"
"""

PYTHON_GATHER = """\
import json

def run(pset):  # _inputs: the input list, of the sim jobs that ended done (decided on the node)
    paths = pset["_inputs"]
    assert all(p.startswith("../../../sim/") and p.endswith("/r.txt") for p in paths), paths
    return {"total": sum(int(open(p).read()) for p in paths), "n": len(paths)}

def after(pset):
    (summary,) = pset["_inputs"]  # summary's result file
    return {"ok": True, "seen": json.load(open(summary))["total"]}
"""


def test_a_python_gather_of_done_inputs_decides_on_the_node(slurm_cluster: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # submitted without --wait: sim and summary are in one submission, so which
    # sim jobs ended done (and whether summary must run at all) is decided by pyrunner.py
    p = make(tmp_path, PYTHON_DONE, monkeypatch, capsys)
    (p.root / "gather.py").write_text(PYTHON_GATHER)

    def settle() -> dict[str, dict[str, int]]:
        assert until(lambda: all(r["pending"] == 0 and r["running"] == 0 for r in p.status().values()), 120)
        return p.status()

    code, out = p.sweepc("build", "--backend", "slurm")
    assert code == 0, out
    rows = settle()
    # summary ran over the two that ended done; status calls it stale, as locally (sim[a=2] runs next)
    assert (rows["sim"]["done"], rows["sim"]["failed"], rows["summary"]["stale"], rows["after"]["stale"]) == (2, 1, 1, 1), rows
    (s,) = p.results("summary")
    assert (s["total"], s["n"]) == (4, 2), s
    (d,) = (p.root / "calc" / "summary").glob("*/*")
    assert json.loads((d / "sweepc-record.json").read_text())["note"] == "ran without 1 of the 3 done() inputs that were not done when it started"
    # again: sim[a=2] fails again, and summary (and after) are kept as they were, on the node
    mtime = (d / "sweepc-result.json").stat().st_mtime_ns
    code, out = p.sweepc("build", "--backend", "slurm")
    assert code == 0, out
    settle()
    assert (d / "sweepc-result.json").stat().st_mtime_ns == mtime
    assert json.loads((d / "sweepc-record.json").read_text())["note"] == "up to date: its inputs came out as they were"
    # fixed: sim[a=2] runs, summary runs again over the three
    (p.root / "fixed").touch()
    code, out = p.sweepc("build", "--backend", "slurm")
    assert code == 0, out
    rows = settle()
    assert (rows["sim"]["done"], rows["summary"]["done"], rows["after"]["done"]) == (3, 1, 1), rows
    (s,) = p.results("summary")
    assert (s["total"], s["n"]) == (6, 3), s
    (a,) = p.results("after")
    assert a["seen"] == 6, a
    code, out = p.sweepc("build", "--backend", "slurm", "-n")
    assert out.startswith("sweepc: nothing to do"), out
