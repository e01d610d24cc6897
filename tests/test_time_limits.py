"""A rule's `time` resource on the local backend: the job's process tree is
stopped at the limit, recorded `timeout`, retried with `restart:` while
`retries:` last; `--no-time-limits` lets jobs run past it.

Real `bash` jobs in a tmp project (the `local_project` fixture in conftest.py).
"""

from __future__ import annotations

import json
import os
import time

from test_local_backend import summary_of, wait_until

SLEEPER = '''
    param a = [1]
    sweep s = a

    rule sim over s:
        output: "out.txt"
        resources: time = "00:00:02"
        shell: "sleep 5; echo first > {output}"
'''


def test_a_job_past_its_time_limit_is_stopped_and_recorded_timeout(local_project):
    p = local_project.write(SLEEPER)
    t0 = time.monotonic()
    r = p.sweepc("build")
    took = time.monotonic() - t0
    assert r.code == 1
    assert 1.9 < took < 4.0, f"the build took {took:.1f} s; the limit is 2 s"
    log = os.path.relpath(p.dir("sim[a=1]") / "sweepc.log", p.root)
    assert r.out.startswith(
        "FAILED sim[a=1] (time limit reached)\n"
        "FAILED sim[a=1]: time limit reached (00:00:02)\n"
        f"  log: {log}\n"
        "  | \n"
        "  | === sweepc: time limit reached (00:00:02), job stopped ===\n"
    ), r.out
    assert summary_of(r.out) == "0 done, 1 failed, 0 up to date"
    row = p.rows()["sim[a=1]"]
    assert (row["status"], row["exit_code"], row["attempts"]) == ("timeout", 143, 1)
    assert not p.out("sim[a=1]").exists()
    assert p.sweepc("build", "-n").out.splitlines() == [
        "run sim[a=1]: last run reached its time limit",
        "1 of 1 job to run (sim 1), 0 up to date",
    ]
    [status] = json.loads(p.sweepc("status", "--format", "json").out)
    assert (status["jobs"], status["failed"], status["timeout"]) == (1, 0, 1)  # its own column, as on SLURM
    # and the results table says why, as for any failure (its _error was empty)
    [res] = json.loads(p.sweepc("results", "--format", "json").out)
    assert (res["_status"], res["_error"]) == ("timeout", "time limit reached (00:00:02)")
    assert p.sweepc("results").out.splitlines() == [
        " a _status                        _error",
        " 1 timeout time limit reached (00:00:02)",
    ]


def test_a_timed_out_job_is_retried_with_its_restart_command(local_project):
    p = local_project.write(SLEEPER.replace(
        '        shell: "sleep 5; echo first > {output}"\n',
        '        retries: 1\n'
        '        shell: "sleep 5; echo first > {output}"\n'
        '        restart: "echo restarted > {output}"\n',
    ))
    t0 = time.monotonic()
    r = p.sweepc("build")
    took = time.monotonic() - t0
    assert r.code == 0, r.out + r.err
    assert took < 4.0
    assert "sim[a=1] reached its time limit, retrying (attempt 2)\n" in r.out
    assert summary_of(r.out) == "1 done, 0 up to date"
    assert p.out("sim[a=1]").read_text() == "restarted\n"
    assert (p.dir("sim[a=1]") / "sweepc.log").read_text() == (
        "\n=== sweepc: time limit reached (00:00:02), job stopped ===\n"
        "\n=== sweepc: attempt 2 (restart) ===\n"
    )
    row = p.rows()["sim[a=1]"]
    assert (row["status"], row["attempts"]) == ("done", 2)


def test_the_whole_process_tree_is_stopped_even_what_ignores_sigterm(local_project):
    # a child that left the job's process group (setsid) and one that ignores
    # SIGTERM: the first goes with the TERM, the second with the KILL 2 s later
    p = local_project.write('''
        param a = [1]
        sweep s = a

        rule sim over s:
            output: "out.txt"
            resources: time = "00:00:01"
            shell: "setsid sleep 60 & (trap '' TERM; sleep 61) & sleep 62; echo > {output}"
    ''')
    t0 = time.monotonic()
    r = p.sweepc("build")
    assert r.code == 1
    assert "FAILED sim[a=1]: time limit reached (00:00:01)\n" in r.out
    wait_until(lambda: p.job_processes() == [], timeout=10, what="every process of the job to stop")
    assert time.monotonic() - t0 < 6.0


def test_no_time_limits_lets_jobs_run_past_their_limit(local_project):
    p = local_project.write(SLEEPER.replace("sleep 5", "sleep 2.5").replace('"00:00:02"', '"00:00:01"'))
    r = p.sweepc("build", "--no-time-limits")
    assert r.code == 0, r.out + r.err
    assert summary_of(r.out) == "1 done, 0 up to date"
    assert p.out("sim[a=1]").read_text() == "first\n"
