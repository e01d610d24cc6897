"""The dask backend: settings checked with file:line:col, a job batch on a
worker, and real builds through a real dask LocalCluster (worker processes
bound to 127.0.0.1) and a real dask_jobqueue.SLURMCluster on the local SLURM.

Every build here runs `sweepc build --backend dask` as a real process, as a
user would; the LocalCluster tests are in the default run (dask is in the
`test` extra), so in CI they fail, not skip, without dask.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import psutil
import pytest

from sweepc.backends.dask import tasks
from sweepc.backends.dask.tasks import JobSpec, run_batch
from conftest import need

SUMMARY_RE = re.compile(r"^sweepc: (.*) in \d+\.\ds$")
DASHBOARD = 'dashboard = "127.0.0.1:0"'


@pytest.fixture(autouse=True)
def _close_this_threads_pool():
    """run_batch keeps one process pool (and its spawner) per thread, as a
    dask worker thread does; a test calling it on pytest's own thread closes
    that pool after it, or the spawner outlives the test (tests/test_procs.py
    counts every child process of the test run)."""
    yield
    for name in ("pool", "pypool"):
        pool = getattr(tasks._LOCAL, name, None)
        if pool is not None:
            pool.close()
            setattr(tasks._LOCAL, name, None)


def summary_of(out: str) -> str:
    lines = [ln for ln in out.splitlines() if SUMMARY_RE.match(ln)]
    assert len(lines) == 1, out
    return SUMMARY_RE.match(lines[0]).group(1)  # type: ignore[union-attr]


def wait_until(predicate, timeout: float = 60.0, what: str = "condition") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


# ---------------------------------------------------------------- settings


def compile_errors(local_project, block: str) -> str:  # type: ignore[no-untyped-def]
    p = local_project.write('param a = [1]\nrule r over a:\n    output: "o"\n    shell: "echo {a} > {output}"\n' + block)
    r = p.sweepc("build", "--backend", "dask", "-n")
    assert r.code == 2, r
    assert "Traceback" not in r.err
    return r.err


def test_an_unknown_cluster_is_a_sweepfile_error_at_its_value(local_project):
    err = compile_errors(local_project, 'backend dask:\n    cluster = "slrum"\n')
    assert err == (
        "sweepfile:6:15: unknown dask cluster 'slrum'\n"
        '      cluster = "slrum"\n'
        "                ^^^^^^^\n"
        "  hint: did you mean 'slurm'?\n"
    ), err


def test_settings_errors_point_at_the_setting(local_project):
    err = compile_errors(local_project, 'backend dask:\n    workers = 2\n    wrokers = 3\n')
    assert "sweepfile:7:5: unknown dask setting 'wrokers'" in err and "hint: did you mean 'workers'?" in err, err
    err = compile_errors(local_project, 'backend dask:\n    workers = 0\n')
    assert "sweepfile:6:15: workers must be a whole number of at least 1, not 0" in err, err
    err = compile_errors(local_project, 'backend dask:\n    cluster = "local"\n    scheduler = "tcp://127.0.0.1:8786"\n')
    assert "sweepfile:7:17: give either cluster or scheduler, not both" in err, err
    err = compile_errors(local_project, 'backend dask:\n    jobs = 4\n')
    assert "sweepfile:6:5: 'jobs' applies to batch-job clusters (cluster = \"slurm\", ...), not to a local one" in err, err
    err = compile_errors(local_project, 'backend dask:\n    memory = "lots"\n')
    assert 'sweepfile:6:14: memory must be an amount such as "16GB", not "lots"' in err, err


def test_an_option_dask_jobqueue_rejects_is_a_sweepfile_error(local_project):
    need("dask_jobqueue")
    base = 'backend dask:\n    cluster = "slurm"\n    cores = 2\n    memory = "2GB"\n'
    err = compile_errors(local_project, base + '    walltme = "01:00:00"\n')
    assert "sweepfile:9:5: dask_jobqueue's SLURMCluster has no option 'walltme'" in err, err
    assert "hint: did you mean 'walltime'?" in err, err
    err = compile_errors(local_project, 'backend dask:\n    cluster = "slurm"\n    cores = 2\n')
    assert "sweepfile:6:15: cluster = \"slurm\" needs memory (per batch job)" in err, err
    err = compile_errors(local_project, base + '    scheduler_options = "x"\n')
    assert "sweepfile:9:5: 'scheduler_options' cannot be set here: use host and dashboard" in err, err


def test_the_compiler_accepts_a_dask_block_and_names_dask_for_a_typo(local_project):
    p = local_project.write('param a = [1]\nrule r over a:\n    output: "o"\n    shell: "echo {a} > {output}"\nbackend dsak:\n    workers = 2\n')
    r = p.sweepc("build", "-n")
    assert r.code == 2 and "sweepfile:5:9: unknown backend 'dsak'" in r.err and "did you mean 'dask'?" in r.err, r.err


def test_without_dask_installed_the_backend_says_what_to_install(local_project, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "distributed" else real(name, *a))
    p = local_project.write('param a = [1]\nrule r over a:\n    output: "o"\n    shell: "echo {a} > {output}"\n')
    r = p.sweepc("build", "--backend", "dask")
    assert r.code == 2
    assert r.err == ("sweepc: --backend dask needs distributed, which is not installed\n"
                     "  hint: install it with: pip install 'sweepc[dask]'\n"), r.err


def test_an_unreachable_scheduler_is_one_line_naming_address_and_timeout(local_project):
    p = local_project.write('param a = [1]\nrule r over a:\n    output: "o"\n    shell: "echo {a} > {output}"\n'
                            'backend dask:\n    scheduler = "tcp://127.0.0.1:9"\n    connect_timeout = 2\n')
    t0 = time.monotonic()
    r = p.run("build", "--backend", "dask", timeout=60)
    assert time.monotonic() - t0 < 30, "the connect timeout bounds the wait"
    assert r.code == 2, r
    first = r.err.splitlines()[0]
    assert first.startswith("sweepc: cannot reach the dask scheduler at tcp://127.0.0.1:9 within 2 s ("), r.err
    assert "Traceback" not in r.err and r.out == ""
    assert not (p.root / ".sweepc" / "state.db").exists() or p.sweepc("runs", "--format", "csv").out.count("\n") == 1


# ---------------------------------------------------------------- a batch on a worker (no dask)


def specs_in(tmp_path: Path, commands: list[str]) -> list[JobSpec]:
    out = []
    for k, c in enumerate(commands):
        d = tmp_path / f"j{k}"
        d.mkdir()
        out.append(JobSpec(k, c, str(d), str(d / "sweepc.log"), {"SWEEPC_TEST_MARK": f"m{k}"}, False))
    return out


def test_a_batch_runs_its_jobs_in_order_measuring_each(tmp_path):
    specs = specs_in(tmp_path, ['echo "$SWEEPC_TEST_MARK" > o; echo to-err >&2',
                                "exit 4", "python3 -c 'b = bytearray(60_000_000); b[::4096] = b\"x\" * len(b[::4096])'"])
    res = run_batch("r1", specs)
    assert [r.key for r in res] == [0, 1, 2] and [r.state for r in res] == ["ran"] * 3
    assert [r.exit_code for r in res] == [0, 4, 0]
    assert (tmp_path / "j0" / "o").read_text() == "m0\n"
    assert (tmp_path / "j0" / "sweepc.log").read_text() == "to-err\n"
    assert all(r.start <= r.end for r in res) and res[0].end <= res[1].start
    # peak memory is the job's, measured through the small spawner
    assert res[0].max_rss_kb < 40_000 and res[2].max_rss_kb > 60_000, res
    assert all(r.cpu_s is not None and 0 <= r.cpu_s < 5 for r in res), res


def test_stop_kills_the_running_jobs_tree_and_leaves_the_rest_unrun(tmp_path):
    specs = specs_in(tmp_path, ["sleep 60 & sleep 60", "echo never > o"])
    box: list[list[tasks.JobResult]] = []
    t = threading.Thread(target=lambda: box.append(run_batch("r2", specs)))
    t.start()

    def sleeps() -> list[psutil.Process]:
        found = []
        for q in psutil.process_iter(["name", "environ"]):
            try:
                if q.info["name"] == "sleep" and (q.info["environ"] or {}).get("SWEEPC_TEST_MARK") == "m0":
                    found.append(q)
            except psutil.Error:
                pass
        return found

    wait_until(lambda: len(sleeps()) == 2, 20, "both sleeps")
    running = sleeps()
    tasks.set_flag("r2", "stop")
    t.join(20)
    assert not t.is_alive()
    (first, second) = box[0]
    assert first.state == "interrupted" and second.state == "not-run"
    for q in running:
        assert not q.is_running() or q.status() == psutil.STATUS_ZOMBIE
    assert not (tmp_path / "j1" / "o").exists()
    tasks.clear_flag("r2")


def test_drain_finishes_the_running_job_and_starts_no_other(tmp_path):
    specs = specs_in(tmp_path, ["sleep 1; echo a > o", "echo b > o"])
    box: list[list[tasks.JobResult]] = []
    t = threading.Thread(target=lambda: box.append(run_batch("r3", specs)))
    t.start()
    time.sleep(0.4)
    tasks.set_flag("r3", "drain")
    t.join(20)
    assert [r.state for r in box[0]] == ["ran", "not-run"]
    assert (tmp_path / "j0" / "o").read_text() == "a\n" and not (tmp_path / "j1" / "o").exists()
    tasks.clear_flag("r3")


# ---------------------------------------------------------------- real LocalCluster builds

STUDY = '''
param a = [1, 2, 3, 4, 5, 6]
sweep s = a

rule square over s:
    output: "sq.txt"
    shell: "echo $(( {a} * {a} )) > {output}; echo host $(hostname)"

rule wide over s:
    input: square
    resources: cpus = 2
    output: "w.txt"
    shell: "date +%s.%N > start; sleep 0.3; cat {input} > {output}; date +%s.%N > end"

rule total:
    input: wide
    output: "total.txt"
    shell: "cat {input} | paste -sd+ - | bc > {output}"

backend dask:
    workers = 2
    cores = 2
''' + "    " + DASHBOARD + "\n"


def build(p, *args: str, timeout: float = 240):  # type: ignore[no-untyped-def]
    return p.run("build", "--backend", "dask", *args, timeout=timeout)


def test_a_multi_rule_study_with_a_gather_runs_on_a_local_cluster(local_project):
    p = local_project.write(STUDY)
    r = build(p)
    assert r.code == 0, r
    assert r.err == "", r.err
    lines = r.out.splitlines()
    assert re.fullmatch(r"sweepc: dask: a LocalCluster of 2 workers x 2 slots, dashboard at http://127\.0\.0\.1:\d+/status", lines[0]), lines[0]
    assert summary_of(r.out) == "13 done, 0 up to date"
    (total,) = p.root.glob("calc/total/*/*/total.txt")
    assert total.read_text() == f"{sum(a * a for a in range(1, 7))}\n"
    # each job ran in its own folder, its output in its log, measured on the worker
    rows = p.rows()
    for label, row in rows.items():
        assert row["status"] == "done" and row["backend"] == "dask", (label, row)
        assert row["backend_job_id"].startswith("tcp://127.0.0.1:")
        assert row["start"] <= row["end"] and row["max_rss_mb"] is not None and 0 < row["max_rss_mb"] < 60
        assert row["cpu_s"] is not None and 0 <= row["cpu_s"] < 5, (label, row)  # wait4's, as locally
    assert (p.dir("square[a=3]") / "sweepc.log").read_text().startswith("host ")
    # a 2-cpu job takes both slots of a worker: never more than two run at once
    spans = sorted((float((p.dir(f"wide[a={a}]") / "start").read_text()), float((p.dir(f"wide[a={a}]") / "end").read_text()))
                   for a in range(1, 7))
    for k, (s0, _) in enumerate(spans):
        assert sum(1 for s, e in spans if s <= s0 < e) <= 2, spans
    # a job starts only once its inputs are done
    for a in range(1, 7):
        assert rows[f"wide[a={a}]"]["start"] >= rows[f"square[a={a}]"]["end"]
    assert rows["total"]["start"] >= max(rows[f"wide[a={a}]"]["end"] for a in range(1, 7))
    # no worker outlives the build
    assert p.job_processes() == []
    # the folders are marked as sweepc's, as local ones: clean knows them
    assert p.sweepc("clean", "--rule", "square", "-n").out.endswith("sweepc: would remove 6 job folders and 6 records\n")
    # the second build has nothing to do, on either backend
    r2 = build(p)
    assert r2.code == 0 and r2.out == "sweepc: nothing to do (13 jobs up to date)\n", r2
    assert p.sweepc("build").out == "sweepc: nothing to do (13 jobs up to date)\n"
    import csv
    import io

    runs = list(csv.DictReader(io.StringIO(p.sweepc("runs", "--format", "csv").out)))
    assert [(r["backend"], r["ran"], r["status"]) for r in runs] == [("dask", "13", "ok")], runs


def test_a_job_too_big_for_every_worker_is_an_error_before_anything_starts(local_project):
    p = local_project.write(STUDY.replace("cpus = 2", "cpus = 3"))
    r = build(p)
    assert r.code == 2
    assert r.err == ("sweepc: wide[a=1] needs 3 cpus, but each worker of a LocalCluster of 2 workers x 2 slots has 2\n"
                     "  hint: give each worker more (cores, workers or -j in the backend dask: block), or lower its resources: cpus\n"), r.err
    assert r.out == ""


FAILING = '''
param a = [1, 2, 3, 4]
sweep s = a

rule work over s:
    output: "out.txt"
    retries: 1
    restart: """
        if [ {a} = 2 ]; then echo "bad two again" >&2; exit 3; fi
        echo restarted {a} > {output}
    """
    shell: """
        if [ {a} = 2 ]; then echo "bad two" >&2; exit 3; fi
        if [ {a} = 3 ]; then echo "first try fails"; exit 5; fi
        echo {a} > {output}
    """

rule post over s:
    input: work
    output: "post.txt"
    shell: "cat {input} > {output}"

backend dask:
    workers = 2
''' + "    " + DASHBOARD + "\n"


def test_failures_with_keep_going_and_retries_with_restart(local_project):
    p = local_project.write(FAILING)
    r = build(p, "-k")
    assert r.code == 1, r
    assert summary_of(r.out) == "6 done, 1 failed, 1 not run because an input failed, 0 up to date"
    assert "work[a=3] failed (exit 5), retrying (attempt 2)\n" in r.out
    assert "work[a=2] failed (exit 3), retrying (attempt 2)\n" in r.out
    assert "FAILED work[a=2]: exit 3\n" in r.out and "  | bad two again\n" in r.out
    st = p.statuses()
    assert st["work[a=2]"] == "failed" and st["post[a=2]"] == "planned"
    assert p.out("work[a=3]").read_text() == "restarted 3\n"
    rows = p.rows()
    assert rows["work[a=3]"]["attempts"] == 2 and rows["work[a=2]"]["attempts"] == 2 and rows["work[a=1]"]["attempts"] == 1
    log = (p.dir("work[a=3]") / "sweepc.log").read_text()
    assert log == "first try fails\n\n=== sweepc: attempt 2 (restart) ===\n", log
    assert p.job_processes() == []
    # the next build reruns what failed and what was skipped, nothing else
    r2 = p.run("build", "-n")
    assert r2.out.splitlines()[-1] == "2 of 8 jobs to run (work 1, post 1), 6 up to date", r2.out


def test_a_failure_without_keep_going_stops_new_work(local_project):
    p = local_project.write(FAILING.replace("    retries: 1\n", "")
                            .replace('if [ {a} = 2 ]; then echo "bad two" >&2; exit 3; fi', 'if [ {a} = 1 ]; then exit 3; fi')
                            .replace('if [ {a} = 3 ]; then echo "first try fails"; exit 5; fi', "sleep 1")
                            .replace("    workers = 2\n", "    workers = 1\n    cores = 1\n    batch = 1\n"))
    r = build(p)
    assert r.code == 1, r
    s = summary_of(r.out)
    assert re.fullmatch(r"[01] done, 1 failed, 1 not run because an input failed, [56] not started "
                        r"\(use -k to keep going after a failure\), 0 up to date", s), s
    st = p.statuses()
    assert st["work[a=1]"] == "failed"
    assert st["work[a=3]"] == st["work[a=4]"] == "planned"  # never handed out


SLOW = '''
param a = range(0, 6)
sweep s = a

rule slow over s:
    output: "out.txt"
    shell: "if [ -e {root}/slow ]; then sleep 60 & sleep 60; fi; echo {a} > {output}"

backend dask:
    workers = 2
    cores = 1
''' + "    " + DASHBOARD + "\n"


def start_two_sleeping(p):  # type: ignore[no-untyped-def]
    """A real `sweepc build --backend dask` with two jobs running (their sleeps seen)."""
    p.write(SLOW)
    (p.root / "slow").write_text("")
    proc = p.spawn("build", "--backend", "dask")

    def sleeping() -> list[psutil.Process]:
        return [q for q in p.job_processes() if q.name() == "sleep"]

    try:
        wait_until(lambda: len(sleeping()) == 4, 120, "two jobs with two sleeps each")
    except AssertionError:
        proc.kill()
        raise AssertionError(proc.communicate(timeout=30)) from None
    family = psutil.Process(proc.pid).children(recursive=True)  # dask workers, spawners, jobs
    return proc, family


def gone(procs: list[psutil.Process]) -> bool:
    return all(not q.is_running() or q.status() == psutil.STATUS_ZOMBIE for q in procs)


def test_ctrl_c_kills_running_jobs_on_the_workers_records_them_and_exits_130(local_project):
    p = local_project
    proc, family = start_two_sleeping(p)
    assert any("multiprocessing" in " ".join(q.cmdline()) for q in family), "the workers are processes"
    t0 = time.monotonic()
    os.kill(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (out, err)
    assert time.monotonic() - t0 < 60
    assert err == ""
    assert summary_of(out) == "0 done, 4 not started, 2 interrupted, 0 up to date"
    assert out.endswith("sweepc: interrupted; the jobs that were running are recorded as interrupted and will rerun\n")
    assert p.job_processes() == []
    wait_until(lambda: gone(family), 30, "the cluster sweepc started to shut down")
    assert sorted(p.statuses().values()) == ["interrupted"] * 2 + ["planned"] * 4
    assert [ln for ln in p.sweepc("runs", "--format", "csv").out.splitlines()[1:]][0].count(",interrupted,") == 1
    # the next build reruns all six, and only those
    (p.root / "slow").unlink()
    r = build(p)
    assert r.code == 0 and summary_of(r.out) == "6 done, 0 up to date", r


def test_kill_9_of_sweepc_ends_the_jobs_and_the_next_build_is_correct(local_project):
    p = local_project
    proc, family = start_two_sleeping(p)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    # the workers lose their nanny and scheduler; their spawners stop the job trees
    wait_until(lambda: p.job_processes() == [], 60, "the jobs to end after sweepc was killed")
    wait_until(lambda: gone(family), 60, "the dask workers to exit")
    assert all(v in ("planned", "interrupted") for v in p.statuses().values())
    (p.root / "slow").unlink()
    r = build(p)
    assert r.code == 0 and summary_of(r.out) == "6 done, 0 up to date", r
    assert set(p.statuses().values()) == {"done"}
    assert [p.out(f"slow[a={a}]").read_text() for a in range(6)] == [f"{a}\n" for a in range(6)]


# ---------------------------------------------------------------- a real dask_jobqueue.SLURMCluster


def slurm_block(name: str, logs: Path) -> str:
    # scheduler and workers on loopback only; the worker batch jobs go through sbatch
    return f'''
backend dask:
    cluster = "slurm"
    cores = 2
    memory = "1GB"
    processes = 1
    jobs = 2
    walltime = "00:10:00"
    interface = "lo"
    host = "127.0.0.1"
    {DASHBOARD}
    job_name = "{name}"
    log_directory = "{logs}"
'''


def queued(name: str, env: dict[str, str]) -> list[str]:
    out = subprocess.run(["squeue", "-h", "-n", name, "-o", "%i %T"], env=env, capture_output=True, text=True, check=True, timeout=30)
    return out.stdout.split("\n")[:-1]


SLURM_STUDY = '''
param a = [1, 2, 3, 4]
sweep s = a

rule square over s:
    output: "sq.txt"
    shell: "echo $(( {a} * {a} )) > {output}; echo slurm job $SLURM_JOB_ID"

rule total:
    input: square
    output: "total.txt"
    shell: "cat {input} | paste -sd+ - | bc > {output}"
'''


@pytest.mark.slurm
def test_a_study_on_a_slurm_cluster_through_dask_jobqueue(local_project, slurm_cluster, tmp_path):
    name = f"sweepc-dask-{uuid.uuid4().hex[:8]}"
    logs = tmp_path / "dask-logs"
    p = local_project.write(SLURM_STUDY + slurm_block(name, logs))
    r = build(p)
    assert r.code == 0, r
    assert r.out.splitlines()[0].startswith("sweepc: dask: a SLURMCluster of 2 batch jobs, 1 worker x 2 slots each, dashboard at http://127.0.0.1:"), r.out
    assert summary_of(r.out) == "5 done, 0 up to date"
    (total,) = p.root.glob("calc/total/*/*/total.txt")
    assert total.read_text() == "30\n"
    # the jobs ran inside the worker batch jobs sbatch started
    worker_jobs = {f.name.removeprefix(name + "-").removesuffix(".out") for f in logs.glob(f"{name}-*.out")}
    assert 1 <= len(worker_jobs) <= 2, list(logs.iterdir())
    for a in range(1, 5):
        said = (p.dir(f"square[a={a}]") / "sweepc.log").read_text()
        assert said.startswith("slurm job ") and said.split()[-1] in worker_jobs, said
    # the cluster sweepc started is gone: no worker batch job left in the queue
    wait_until(lambda: queued(name, slurm_cluster) == [], 30, "the dask-worker batch jobs to leave squeue")
    r2 = build(p)
    assert r2.code == 0 and r2.out == "sweepc: nothing to do (5 jobs up to date)\n", r2


@pytest.mark.slurm
def test_ctrl_c_on_a_slurm_cluster_cancels_the_worker_batch_jobs(local_project, slurm_cluster, tmp_path):
    name = f"sweepc-dask-{uuid.uuid4().hex[:8]}"
    p = local_project.write(SLOW.split("backend dask:")[0] + slurm_block(name, tmp_path / "dask-logs"))
    (p.root / "slow").write_text("")
    proc = p.spawn("build", "--backend", "dask")
    wait_until(lambda: len([q for q in p.job_processes() if q.name() == "sleep"]) >= 2, 120, "a job running in a worker batch job")
    assert len(queued(name, slurm_cluster)) == 2
    os.kill(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (out, err)
    assert re.fullmatch(r"0 done, [2-5] not started, [1-4] interrupted, 0 up to date", summary_of(out)), out
    wait_until(lambda: p.job_processes() == [], 30, "the jobs to be killed")
    wait_until(lambda: queued(name, slurm_cluster) == [], 30, "the dask-worker batch jobs to leave squeue")


def test_importing_dask_jobqueue_leaves_ctrl_c_to_python():
    # dask_jobqueue's runner module sets SIGINT to sys.exit() on import; a
    # build would then end on Ctrl-C without recording anything
    code = ("import signal; from sweepc.backends.dask.settings import jobqueue_class; jobqueue_class('slurm'); "
            "assert signal.getsignal(signal.SIGINT) is signal.default_int_handler, signal.getsignal(signal.SIGINT)")
    r = subprocess.run(["python3", "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


@pytest.mark.slurm
def test_worker_batch_jobs_the_scheduler_refuses_are_one_error_not_a_hang(local_project, slurm_cluster, tmp_path):
    name = f"sweepc-dask-{uuid.uuid4().hex[:8]}"
    p = local_project.write(SLURM_STUDY + slurm_block(name, tmp_path / "dask-logs") + '    queue = "no-such-partition"\n')
    t0 = time.monotonic()
    r = build(p, timeout=120)
    assert time.monotonic() - t0 < 90
    assert r.code == 2, r
    assert r.err.startswith("sweepc: dask_jobqueue could not submit the worker batch jobs: "
                            "sbatch: error: invalid partition specified: no-such-partition"), r.err
    assert "Traceback" not in r.err and len(r.err.splitlines()) == 2, r.err
    assert "#SBATCH -p no-such-partition" in r.err
    assert queued(name, slurm_cluster) == []


def test_a_batch_enforces_the_time_limit_and_says_so(tmp_path):
    (spec, nxt) = specs_in(tmp_path, ["sleep 60 & sleep 60", "echo next > o"])
    t0 = time.monotonic()
    res = run_batch("r4", [spec._replace(time_s=1), nxt])
    assert time.monotonic() - t0 < 15
    assert [r.state for r in res] == ["timeout", "ran"]
    assert (tmp_path / "j1" / "o").read_text() == "next\n"


def test_a_rules_time_limit_holds_on_the_workers_and_restart_follows(local_project):
    p = local_project.write('''
param a = [1, 2]
rule slow over a:
    output: "o.txt"
    resources: time = "00:02"
    retries: 1
    restart: "echo resumed {a} > {output}"
    shell: "if [ {a} = 2 ]; then sleep 60; fi; echo {a} > {output}"
backend dask:
    workers = 2
''' + "    " + DASHBOARD + "\n")
    r = build(p)
    assert r.code == 0, r
    assert "slow[a=2] reached its time limit, retrying (attempt 2)\n" in r.out, r.out
    assert summary_of(r.out) == "2 done, 0 up to date"
    rows = p.rows()
    assert rows["slow[a=2]"]["attempts"] == 2 and rows["slow[a=1]"]["attempts"] == 1
    assert p.out("slow[a=2]").read_text() == "resumed 2\n"
    assert "=== sweepc: time limit reached (00:00:02), job stopped ===" in (p.dir("slow[a=2]") / "sweepc.log").read_text()
    assert p.job_processes() == []


def test_a_done_gather_runs_without_what_failed_as_locally(local_project):
    p = local_project.write('''
param a = [1, 2, 3]
rule work over a:
    output: "o.txt"
    shell: "if [ {a} = 2 ]; then exit 1; fi; echo {a} > {output}"
rule total:
    input: done(work)
    output: "t.txt"
    shell: "xargs cat < {input.list} | paste -sd+ - | bc > {output}"
backend dask:
    workers = 2
''' + "    " + DASHBOARD + "\n")
    r = build(p, "-k")
    assert r.code == 1, r
    assert summary_of(r.out) == "3 done, 1 failed, 0 up to date"
    assert "total runs without 1 of the 3 jobs of done(work) that did not end done: work[a=2]\n" in r.out, r.out
    (t,) = p.root.glob("calc/total/*/*/t.txt")
    assert t.read_text() == "4\n"
    # again: work[a=2] fails again, so total's done() inputs are those it was built with
    r2 = build(p, "-k")
    assert r2.code == 1, r2
    assert "total is up to date: the jobs of its done() inputs that ended done are those it was built with\n" in r2.out, r2.out
    assert summary_of(r2.out) == "1 done, 1 failed, 2 up to date"
    assert p.rows()["total"]["run_id"] != p.last_run_id()  # its record stays from the first build


# ---------------------------------------------------------------- python: jobs


def test_a_python_done_gather_gets_the_inputs_that_ended_done_as_inputs(local_project):
    import json

    p = local_project.write('''
param a = [1, 2, 3]
rule work over a:
    output: "o.txt"
    shell: "if [ {a} = 2 ]; then exit 1; fi; echo {a} > {output}"
rule total:
    input: done(work)
    python: "gather.py:total"
backend dask:
    workers = 2
''' + "    " + DASHBOARD + "\n", **{"gather.py": '''
def total(pset):
    paths = pset["_inputs"]
    return {"total": sum(int(open(q).read()) for q in paths), "n": len(paths)}
'''})
    r = build(p, "-k")
    assert r.code == 1, r
    assert summary_of(r.out) == "3 done, 1 failed, 0 up to date"
    (t,) = json.loads(p.sweepc("results", "--rule", "total", "--format", "json").out)
    assert (t["total"], t["n"]) == (4, 2), t


def test_a_batch_calls_python_functions_in_one_worker_and_reimports_an_edited_module(tmp_path):
    from sweepc.backends.dask.tasks import PyCall

    model = tmp_path / "model.py"
    model.write_text("import os\nPID = os.getpid()\nV = 1\ndef run(pset):\n    return {'y': V * pset['a'], 'pid': PID}\n")

    def specs(keys):  # type: ignore[no-untyped-def]
        out = []
        for k in keys:
            d = tmp_path / f"j{k}"
            d.mkdir(exist_ok=True)
            out.append(JobSpec(k, "false", str(d), str(d / "sweepc.log"), {}, False,
                               python=PyCall(str(model), "run", {"a": k}, "work", f"h{k}")))
        return out

    import json

    res = run_batch("r1", specs([1, 2, 3]))
    assert [(r.state, r.exit_code, r.message) for r in res] == [("ran", 0, "")] * 3
    got = [json.loads((tmp_path / f"j{k}" / "sweepc-result.json").read_text()) for k in (1, 2, 3)]
    assert [g["y"] for g in got] == [1, 2, 3] and len({g["pid"] for g in got}) == 1  # imported once
    assert all(r.max_rss_kb > 0 for r in res)
    # an edited module (a long-lived cluster between two builds) is imported afresh
    model.write_text(model.read_text().replace("V = 1", "V = 100 "))
    (r4,) = run_batch("r2", specs([4]))
    g4 = json.loads((tmp_path / "j4" / "sweepc-result.json").read_text())
    assert r4.exit_code == 0 and g4["y"] == 400 and g4["pid"] != got[0]["pid"]


PYTHON_STUDY = '''
param a = range(0, 12)

rule work over a:
    python: "model.py:run"

backend dask:
    workers = 2
    cores = 1
''' + "    " + DASHBOARD + "\n"

PYTHON_MODEL = """\
import ctypes, os
here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "imports.txt"), "a") as f:
    f.write(f"{os.getpid()}\\n")

def run(pset):
    if pset["a"] == 1:
        raise ValueError("a is one")
    if pset["a"] == 2:
        ctypes.string_at(0)  # a segfault
    return {"y": VALUE * pset["a"], "pid": os.getpid(), "cwd_ok": os.getcwd() == pset["_job_dir"]}
"""


def test_python_jobs_run_on_local_cluster_workers_importing_the_module_once_per_worker(local_project):
    import json

    p = local_project.write(PYTHON_STUDY, **{"model.py": PYTHON_MODEL.replace("VALUE", "10")})
    r = build(p, "-k")
    assert r.code == 1, r
    assert summary_of(r.out) == "10 done, 2 failed, 0 up to date"
    assert "FAILED work[a=1]: ValueError: a is one\n" in r.out
    assert "FAILED work[a=2]: the Python worker was killed by signal 11 (SIGSEGV)\n" in r.out
    imports = (p.root / "imports.txt").read_text().split()
    # sweepc's check before the build, one per worker, one more after each failure: not one per pset
    assert len(imports) <= 5, imports
    rows = {row["a"]: row for row in json.loads(p.sweepc("results", "--format", "json").out)}
    assert rows[1]["_status"] == "failed" and rows[1]["_error"] == "ValueError: a is one"
    assert rows[2]["_status"] == "failed" and rows[2]["_error"] == "the Python worker was killed by signal 11 (SIGSEGV)"
    done = [row for a, row in rows.items() if a not in (1, 2)]
    assert all(row["_status"] == "done" and row["y"] == 10 * row["a"] and row["cwd_ok"] is True for row in done), done
    assert all(str(int(row["pid"])) in imports for row in done)  # (a float column: the failed rows have none)
    assert len({row["pid"] for row in done}) < len(done)  # a worker called several psets
    assert all(isinstance(row["_max_rss_mb"], float) and row["_max_rss_mb"] > 0 for row in done)
    assert all(isinstance(row["_cpu_s"], float) and 0 <= row["_cpu_s"] < 5 for row in done), done  # measured by the worker
    assert p.job_processes() == []
    # what ended done is up to date; touching the module changes nothing, editing it reruns all
    assert p.run("build", "--backend", "dask", "-n").out.splitlines()[-1] == "2 of 12 jobs to run (work 2), 10 up to date"
    os.utime(p.root / "model.py")
    assert p.run("build", "--backend", "dask", "-n").out.splitlines()[-1] == "2 of 12 jobs to run (work 2), 10 up to date"
    (p.root / "model.py").write_text(PYTHON_MODEL.replace("VALUE", "100").replace('pset["a"] == 1', "False").replace('pset["a"] == 2', "False"))
    r = build(p)
    assert r.code == 0, r
    assert summary_of(r.out) == "12 done, 0 up to date"
    rows = {row["a"]: row for row in json.loads(p.sweepc("results", "--format", "json").out)}
    assert {a: row["y"] for a, row in rows.items()} == {a: 100 * a for a in range(12)}
    assert build(p).out == "sweepc: nothing to do (12 jobs up to date)\n"


def test_a_stop_while_the_local_cluster_starts_is_quiet(local_project):
    """SIGTERM (`sweepc cancel`) or Ctrl-C while the LocalCluster's first
    worker process was starting: `sweepc: interrupted`, then distributed's
    atexit hook printed 'Exception ignored in atexit callback' and a
    traceback (AssertionError: Status.init); or the workers it was still
    starting printed theirs (FileNotFoundError in SemLock._rebuild: sweepc had
    gone). The stop is sent as soon as the build has a child process (the
    cluster's first), and a little later."""
    p = local_project.write(STUDY)
    for sig, extra in ((signal.SIGTERM, 0.0), (signal.SIGINT, 0.0), (signal.SIGTERM, 0.05), (signal.SIGINT, 0.1),
                       (signal.SIGTERM, 0.2), (signal.SIGINT, 0.3)):
        proc = p.spawn("build", "--backend", "dask", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            me = psutil.Process(proc.pid)
            wait_until(lambda: bool(me.children()) or proc.poll() is not None, 60, "the cluster's first process")
            family = me.children(recursive=True)
            time.sleep(extra)
            proc.send_signal(sig)
            out, err = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode in (0, 130), (sig, proc.returncode, out, err)
        assert "Traceback" not in out + err and "Exception ignored" not in out + err, (sig, out, err)
        wait_until(lambda: gone(family), 30, "the half-started cluster to go")


def test_the_clusters_processes_write_their_stderr_to_the_log(tmp_path):
    """What the processes started while the LocalCluster starts print goes to
    .sweepc/dask-workers.log; after a start cut short (KeyboardInterrupt) fd 2
    stays there for what dask still starts, and sweepc's own messages
    (sys.stderr) still reach the terminal. (The first case of the test above,
    workers dying with a SemLock traceback after sweepc had gone, is a window
    of milliseconds; this is the mechanism that keeps it off the terminal.)"""
    script = tmp_path / "s.py"
    script.write_text(
        "import subprocess, sys\n"
        "from pathlib import Path\n"
        "from sweepc.backends.dask.cluster import _stderr_of_children\n"
        "log = Path(sys.argv[1])\n"
        "child = [sys.executable, '-c', 'import os; os.write(2, b\"child says \" + os.environ[\"N\"].encode() + b\"\\\\n\")']\n"
        "with _stderr_of_children(log):\n"
        "    subprocess.run(child, env={'N': '1'}, check=True)\n"
        "subprocess.run(child, env={'N': '2'}, check=True)\n"
        "try:\n"
        "    with _stderr_of_children(log):\n"
        "        raise KeyboardInterrupt\n"
        "except KeyboardInterrupt:\n"
        "    subprocess.run(child, env={'N': '3'}, check=True)\n"
        "    sys.stderr.write('sweepc: interrupted\\n')\n"
    )
    log = tmp_path / "dask-workers.log"
    done = subprocess.run([sys.executable, str(script), str(log)], capture_output=True, text=True, check=False,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
    assert done.returncode == 0, done.stderr
    assert done.stderr == "child says 2\nsweepc: interrupted\n"
    assert log.read_text() == "child says 1\nchild says 3\n"
