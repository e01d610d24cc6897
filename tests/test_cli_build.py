"""`sweepc status`, `sweepc clean ...` and the build command's own output
(progress, usage errors), end to end on a tmp project."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import time
from pathlib import Path

import pytest

MIXED = '''
param a = [1, 2, 3, 4, 5]
sweep s = a

rule gen over s:
    output: "out.txt"
    shell: """
        if [ {a} = 3 ]; then echo "bad input" >&2; exit 7; fi
        if [ {a} = 4 ]; then kill -INT $SWEEPC_BUILD_PID; sleep 20; fi
        echo {a} > {output}
    """

rule post over s:
    input: gen
    output: "post.txt"
    shell: "cat {input} > {output}"
'''

STATUS_HEADER = "rule  jobs  done  stale  pending  running  failed  timeout  interrupted  cancelled  skipped  never built  retried"


def mixed(p):
    """gen: 1 2 5 done, 3 failed, 4 interrupted.
    post: 2 5 done, 1 stale (output missing), 3 never built (planned, its
    input failed), 4 never built (no record)."""
    p.write(MIXED)
    r = p.sweepc("build", "-k", "-j", "1", "--where", "a != 4")
    assert r.code == 1, r
    r = p.run("build", "-j", "1", "gen[a=4]")  # a real process: the job Ctrl-C's its sweepc
    assert r.code == 130, r
    p.out("post[a=1]").unlink()
    return p


def test_status_table_and_json_after_a_mixed_build(local_project):
    p = mixed(local_project)
    r = p.sweepc("status")
    assert (r.code, r.err) == (0, "")
    assert r.out == (
        f"{STATUS_HEADER}\n"
        "gen      5     3      0        0        0       1        0            1          0        0            0        0\n"
        "post     5     2      1        0        0       0        0            0          0        0            2        0\n"
    )
    r = p.sweepc("status", "--format", "json")
    assert json.loads(r.out) == [
        {"rule": "gen", "jobs": 5, "done": 3, "stale": 0, "pending": 0, "running": 0, "failed": 1, "timeout": 0, "interrupted": 1, "cancelled": 0, "skipped": 0, "never built": 0, "retried": 0},
        {"rule": "post", "jobs": 5, "done": 2, "stale": 1, "pending": 0, "running": 0, "failed": 0, "timeout": 0, "interrupted": 0, "cancelled": 0, "skipped": 0, "never built": 2, "retried": 0},
    ]
    # --rule and --where narrow the rows and the counts
    r = p.sweepc("status", "--rule", "post", "--where", "a >= 3", "--format", "json")
    assert json.loads(r.out) == [
        {"rule": "post", "jobs": 3, "done": 1, "stale": 0, "pending": 0, "running": 0, "failed": 0, "timeout": 0, "interrupted": 0, "cancelled": 0, "skipped": 0, "never built": 2, "retried": 0},
    ]
    # status only reads
    assert p.sweepc("build", "-n").out.splitlines()[-1] == "5 of 10 jobs to run (gen 2, post 3), 5 up to date"


def test_status_of_a_fresh_project_and_of_a_finished_one(local_project):
    p = local_project.write('''
        param a = [1, 2]
        sweep s = a

        rule gen over s:
            output: "out.txt"
            shell: "echo {a} > {output}"
    ''')
    assert p.sweepc("status").out == f"{STATUS_HEADER}\ngen      2     0      0        0        0       0        0            0          0        0            2        0\n"
    assert p.sweepc("build").code == 0
    assert p.sweepc("status").out == f"{STATUS_HEADER}\ngen      2     2      0        0        0       0        0            0          0        0            0        0\n"
    r = p.sweepc("status", "--rule", "gne")
    assert (r.code, r.err) == (2, "sweepc: unknown target 'gne'\n  hint: did you mean 'gen'?\n")


# ---------------------------------------------------------------- clean

TWO_RULES = '''
param a = [1, 2, 3]
param b = [10, 20]
sweep grid = a * b

rule gen over grid:
    output: "out.txt"
    shell: "echo {a} {b} > {output}"

rule post over grid:
    input: gen
    output: "post.txt"
    shell: "cat {input} > {output}"
'''


@pytest.fixture
def two(local_project):
    p = local_project.write(TWO_RULES)
    assert p.sweepc("build", "-j", "2").code == 0
    return p


def _labels(rule: str, cond) -> list[str]:
    return [f"{rule}[a={a},b={b}]" for a in (1, 2, 3) for b in (10, 20) if cond(a, b)]


def test_clean_outputs_by_rule_and_where_lists_then_removes_only_those(two):
    p = two
    chosen = _labels("post", lambda a, b: a > 1)
    dirs = {k: p.dir(k) for k in _labels("gen", lambda a, b: True) + _labels("post", lambda a, b: True)}
    before = p.rows()
    listing = "".join(f"would remove {os.path.relpath(dirs[k], p.root)}/\n" for k in chosen)
    r = p.sweepc("clean", "outputs", "--rule", "post", "--where", "a > 1", "-n")
    assert (r.code, r.out) == (0, listing + "sweepc: would remove 4 job folders and 4 records\n")
    assert all(d.is_dir() for d in dirs.values()) and p.rows() == before

    r = p.sweepc("clean", "outputs", "--rule", "post", "--where", "a > 1")
    assert r.code == 0
    assert r.out == listing.replace("would remove", "removed") + "sweepc: removed 4 job folders and 4 records\n"
    for k, d in dirs.items():
        assert d.is_dir() == (k not in chosen), k
    rows = p.rows()
    assert set(rows) == set(before) - set(chosen)
    assert all(rows[k] == before[k] for k in rows)
    # the next build redoes exactly those
    assert p.sweepc("build", "-n").out == "".join(f"run {k}: never built\n" for k in chosen) + (
        "4 of 12 jobs to run (post 4), 8 up to date\n"
    )
    assert p.sweepc("clean", "outputs", "--rule", "post", "--where", "a > 1").out == "sweepc: nothing to clean\n"


def test_clean_outputs_of_a_whole_rule_makes_its_downstream_stale(two):
    p = two
    r = p.sweepc("clean", "outputs", "--rule", "gen")
    assert r.out.endswith("sweepc: removed 6 job folders and 6 records\n")
    assert not (p.root / "calc" / "gen").exists(), "empty shard folders are pruned"
    assert (p.root / "calc" / "post").is_dir()
    lines = p.sweepc("build", "-n").out.splitlines()
    assert lines[0] == "run gen[a=1,b=10]: never built"
    assert lines[6] == "run post[a=1,b=10]: upstream gen[a=1,b=10] will run"
    assert lines[-1] == "12 of 12 jobs to run (gen 6, post 6), 0 up to date"


def test_clean_batch_never_touches_results(two):
    p = two
    batch = p.root / ".sweepc" / "slurm"
    (batch / "gen").mkdir(parents=True)
    for name in ("job.sh", "submit.sh", "slurm-1_0.out"):
        (batch / "gen" / name).write_text("x\n")
    outputs = sorted((p.root / "calc").rglob("*"))
    before = p.rows()
    r = p.sweepc("clean", "batch", "-n")
    assert r.out == "would remove .sweepc/slurm/ (3 files: job scripts, submit scripts, scheduler logs)\n"
    assert batch.is_dir()
    r = p.sweepc("clean", "batch")
    assert (r.code, r.out) == (0, "removed .sweepc/slurm/ (3 files: job scripts, submit scripts, scheduler logs)\n")
    assert not batch.exists()
    assert sorted((p.root / "calc").rglob("*")) == outputs
    assert p.rows() == before
    assert p.sweepc("build", "-n").out == "sweepc: nothing to do (12 jobs up to date)\n"
    assert p.sweepc("clean", "batch").out == "sweepc: nothing to clean\n"


def test_clean_all(two):
    p = two
    (p.root / "notes.txt").write_text("mine\n")
    # not on a terminal and no -y: refused, nothing removed
    r = p.run("clean", "all")
    assert (r.code, r.out) == (2, "")
    assert r.err == "sweepc: 'clean all' removes every output and the state store\n  hint: add -y to confirm\n"
    assert (p.root / "calc").is_dir() and (p.root / ".sweepc").is_dir()
    r = p.sweepc("clean", "all", "-n")
    assert r.out == "would remove calc/\nwould remove .sweepc/\n"
    r = p.sweepc("clean", "all", "-y")
    assert (r.code, r.out) == (0, "removed calc/\nremoved .sweepc/\n")
    assert sorted(x.name for x in p.root.iterdir()) == ["notes.txt", "sweepfile"]
    assert p.sweepc("clean", "all", "-y").out == "sweepc: nothing to clean\n"
    assert p.sweepc("build", "-n").out.splitlines()[-1] == "12 of 12 jobs to run (gen 6, post 6), 0 up to date"


# ---------------------------------------------------------------- build's own output

PROGRESS = '''
param a = range(0, 8)
sweep s = a

rule w over s:
    output: "out.txt"
    shell: "sleep 0.1; echo {a} > {output}"
'''


def test_progress_off_a_terminal_is_plain_lines(local_project):
    p = local_project.write(PROGRESS)
    r = p.run("build", "-j", "2")
    assert r.code == 0
    assert "\r" not in r.out and "\x1b" not in r.out
    lines = r.out.splitlines()
    # a progress line every 5 s at most (none for a build this short), then the summary
    progress = re.compile(r"\[\d/8\] \d done, [0-2] running, 0 failed, \d+\.\ds elapsed(, ETA \d+\.\ds)?")
    assert all(progress.fullmatch(ln) for ln in lines[:-1]), lines
    assert re.fullmatch(r"sweepc: 8 done, 0 up to date in \d+\.\ds", lines[-1]), lines
    assert r.err == ""


def test_progress_on_a_terminal_rewrites_one_line(local_project):
    p = local_project.write(PROGRESS)
    master, slave = pty.openpty()
    proc = subprocess.Popen(["sweepc", "build", "-j", "2"], cwd=p.root, stdout=slave, stderr=subprocess.PIPE)
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.1)
        if ready:
            try:
                data = os.read(master, 4096)
            except OSError:  # the other end closed
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    os.close(master)
    assert proc.wait(timeout=10) == 0
    text = b"".join(chunks).decode()
    assert "\r\x1b[K[" in text, text
    assert text.endswith("sweepc: 8 done, 0 up to date in " + text.rsplit(" in ", 1)[1])
    # one progress line rewritten in place: no progress text on lines of its own
    assert [ln for ln in text.replace("\r\n", "\n").split("\n") if ln.startswith("[")] == []


@pytest.mark.parametrize(("args", "err"), [
    (["build", "--wait"], "sweepc: --wait and --render-only go with --backend slurm\n"),
    (["build", "-j", "0"], "sweepc: error: argument -j/--jobs: must be at least 1\n"),
    (["build", "-j", "x"], "sweepc: error: argument -j/--jobs: not a whole number: x\n"),
])
def test_build_usage_errors(local_project, args, err):
    p = local_project.write(PROGRESS)
    r = p.sweepc(*args)
    assert r.code == 2
    assert r.err.endswith(err)
    assert not (p.root / "calc").exists() and not (p.root / ".sweepc").exists()


# ---------------------------------------------------------------- dry runs

def test_a_dry_run_that_cannot_fit_here_shows_the_plan_and_warns(local_project):
    # a study meant for SLURM: a dry run still shows what would run, only a real local build refuses
    p = local_project.write('''
        param a = [1, 2]
        sweep s = a

        rule cp over s:
            output: "out.txt"
            resources: cpus = 8
            shell: "echo {a} > {output}"
    ''')
    r = p.sweepc("build", "-n", "-j", "2")
    assert (r.code, r.err) == (0, "")
    assert r.out == (
        "sweepc: warning: cp[a=1] needs 8 cpus, but this build may use 2; a local build would refuse to start "
        "(run with -j 8 or more, or lower its resources: cpus)\n"
        "run cp[a=1]: never built\nrun cp[a=2]: never built\n2 of 2 jobs to run (cp 2), 0 up to date\n"
    )
    r = p.sweepc("build", "-j", "2")
    assert (r.code, r.out) == (2, "")
    assert r.err == "sweepc: cp[a=1] needs 8 cpus, but this build may use 2\n  hint: run with -j 8 or more, or lower its resources: cpus\n"


def test_a_dry_run_and_status_during_a_build_name_the_running_build(local_project):
    from test_local_backend import start_two_sleeping

    p = local_project
    proc, _ = start_two_sleeping(p)
    try:
        lock = json.loads((p.root / ".sweepc" / "build.lock").read_text())
        since = time.strftime("%H:%M:%S", time.localtime(lock["started"]))
        assert lock["pid"] == proc.pid and lock["run_id"] == p.last_run_id()
        why = f"being built by the running build (pid {proc.pid}, since {since})"
        r = p.sweepc("build", "-n")
        assert (r.code, r.out) == (0, "".join(f"run slow[a={a}]: {why}\n" for a in range(4)) + "4 of 4 jobs to run (slow 4), 0 up to date\n")
        r = p.sweepc("status")
        assert r.out == f"{STATUS_HEADER}\nslow     4     0      0        0        4       0        0            0          0        0            0        0\n"
        r = p.sweepc("results", "--columns", "a,_status", "--format", "csv")
        assert r.out == "a,_status\n0,running\n1,running\n2,running\n3,running\n"
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    # the build is gone: its jobs are what it left behind, not running
    assert p.sweepc("build", "-n").out.splitlines()[0] == "run slow[a=0]: last run was interrupted"
    assert json.loads(p.sweepc("status", "--format", "json").out)[0]["running"] == 0


def test_status_of_one_job_or_output_counts_it_under_its_rule(local_project):
    # status --rule 'gen[a=2]' was accepted (it takes targets, as build does) and printed
    # only the header: the rows were those of rules named exactly so
    p = local_project.write('''
        param a = [1, 2, 3]
        rule gen over a:
            output: "out.txt"
            shell: "echo {a} > {output}"
    ''')
    assert p.sweepc("build", "gen[a=1]").code == 0
    row = "gen      1     {}      0        0        0       0        0            0          0        0            {}        0\n"
    assert p.sweepc("status", "--rule", "gen[a=2]").out == f"{STATUS_HEADER}\n" + row.format(0, 1)
    out = str(p.out("gen[a=1]").relative_to(p.root))
    assert p.sweepc("status", "--rule", out).out == f"{STATUS_HEADER}\n" + row.format(1, 0)


def test_counts_of_one_are_singular(local_project):
    p = local_project.write('''
        param a = [1]
        sweep s = a

        rule gen over s:
            output: "out.txt"
            shell: "echo {a} > {output}"
    ''')
    assert p.sweepc("build", "-n").out == "run gen[a=1]: never built\n1 of 1 job to run (gen 1), 0 up to date\n"
    assert p.sweepc("build").code == 0
    assert p.sweepc("build").out == "sweepc: nothing to do (1 job up to date)\n"
    assert p.sweepc("build", "-n").out == "sweepc: nothing to do (1 job up to date)\n"
    assert p.sweepc("clean").out.splitlines()[-1] == "sweepc: removed 1 job folder and 1 record"


def test_a_conductor_is_given_every_option_of_the_build_that_starts_it(tmp_path: Path) -> None:
    """`build --detach` starts `build --wait --conductor` with the same
    options; -D, -k, --no-time-limits and --git-commit were left out."""
    from sweepc.cli import build_parser
    from sweepc.cli.build import conductor_argv

    argv = ["-D", "a=[5, 6]", "-D", "rows.start=3", "build", "--backend", "slurm", "--detach", "-k", "-j", "3",
            "--where", "a > 5", "--psets", "0:9", "--force", "sim", "--explain", "--no-time-limits", "--git-commit", "sim", "total"]
    parser = build_parser()
    args = parser.parse_args(argv)
    child = conductor_argv(args, tmp_path / "sweepfile", "--conductor")
    assert child == ["-D", "a=[5, 6]", "-D", "rows.start=3", "-f", str(tmp_path / "sweepfile"), "build", "--backend", "slurm",
                     "--wait", "--conductor", "-j", "3", "-k", "--explain", "--no-time-limits", "--git-commit",
                     "--where", "a > 5", "--psets", "0:9", "--force", "sim", "--", "sim", "total"]
    again = parser.parse_args(child)
    same = ("define", "backend", "jobs", "keep_going", "explain", "no_time_limits", "git_commit", "where", "psets", "force", "targets")
    assert {k: getattr(again, k) for k in same} == {k: getattr(args, k) for k in same}
    assert (again.wait, again.conductor, again.detach, again.file) == (True, True, False, str(tmp_path / "sweepfile"))
    # a bare --detach: the sweepfile's own build
    child = conductor_argv(parser.parse_args(["build", "--backend", "slurm", "--detach"]), tmp_path / "sweepfile", "--conductor")
    assert child == ["-f", str(tmp_path / "sweepfile"), "build", "--backend", "slurm", "--wait", "--conductor", "--"]


def test_cancel_stops_a_local_build_running_in_another_terminal(local_project):
    """`sweepc cancel` said "nothing to cancel" while a local build ran
    jobs: it stops it now as Ctrl-C does (its running jobs are recorded
    interrupted), and leaves `clean` and SLURM builds alone."""
    p = local_project.write('''
        param a = range(0, 6)

        rule r over a:
            output: "o"
            shell: "touch started-{a}; sleep 30; echo {a} > {output}"
    ''')
    build = p.spawn("build", "-j", "2", stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while len(list(p.root.glob("calc/r/*/*/started-*"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        t0 = time.monotonic()
        r = p.sweepc("cancel")
        assert time.monotonic() - t0 < 10
        assert (r.code, r.err) == (0, "")
        assert r.out == (f"sweepc: stopped the build running in this project (pid {build.pid}); "
                         "the jobs it was running are recorded as interrupted\n")
        out, _ = build.communicate(timeout=30)
    finally:
        if build.poll() is None:
            build.kill()
            build.wait()
    assert build.returncode == 130, out
    assert out.endswith("sweepc: 0 done, 4 not started, 2 interrupted, 0 up to date in " + out.rsplit(" in ", 1)[1].split("\n")[0]
                        + "\nsweepc: interrupted; the jobs that were running are recorded as interrupted and will rerun\n"), out
    st = json.loads(p.sweepc("status", "--format", "json").out)[0]
    assert (st["interrupted"], st["never built"], st["running"], st["done"]) == (2, 4, 0, 0), st
    assert p.sweepc("cancel").out == "sweepc: nothing to cancel\n"


def test_cancel_leaves_clean_and_batch_builds_to_themselves() -> None:
    from sweepc.api import _leaves_jobs_queued

    assert _leaves_jobs_queued(["sweepc", "clean"])
    assert _leaves_jobs_queued(["sweepc", "build", "--backend", "slurm", "--wait"])
    assert _leaves_jobs_queued(["sweepc", "-f", "/p/sweepfile", "build", "--backend=slurm"])
    assert not _leaves_jobs_queued(["sweepc", "build", "-j", "2"])
    assert not _leaves_jobs_queued(["sweepc", "-D", "a=[1]", "build", "--backend", "dask"])


def test_hints_after_a_build_with_overrides_carry_them() -> None:
    """After `sweepc -D a='[7, 8]' build --backend slurm` the hints said
    `sweepc status` and `sweepc build --backend slurm --wait`: about the
    sweepfile's own psets, not the ones just submitted."""
    from sweepc.cli.build import with_overrides

    note = ("sweepc: follow them with `sweepc status`, wait with `sweepc build --backend slurm --wait`, "
            "stop them with `sweepc cancel`")
    assert with_overrides(note, ["a=[7, 8]", "rows.start=3"]) == (
        "sweepc: follow them with `sweepc -D 'a=[7, 8]' -D rows.start=3 status`, "
        "wait with `sweepc -D 'a=[7, 8]' -D rows.start=3 build --backend slurm --wait`, "
        "stop them with `sweepc -D 'a=[7, 8]' -D rows.start=3 cancel`")
    assert with_overrides(note, []) == note
    assert with_overrides("sweepc: 2 done", ["a=1"]) == "sweepc: 2 done"


def test_a_dry_run_prints_each_jobs_folder_and_command(local_project):
    """build -n -p (make -n, snakemake -np): the command each job would run,
    in its folder, with its parameter values quoted as the shell gets them."""
    p = local_project.write('''
        param a = ["x y", "it's"]

        rule gen over a:
            output: "out.txt"
            shell: """
                echo {a} > {output}
                wc -c {output}
            """

        rule f over a:
            python: "model.py:run"
    ''', **{"model.py": "def run(pset):\n    return None\n"})
    d = {j.rule: j.reldir for j in p.graph.jobs if j.params["a"] == "it's"}
    r = p.sweepc("build", "-n", "-p", "--where", "a == \"it's\"")
    assert (r.code, r.err) == (0, "")
    assert r.out == (
        "run gen[a=it's]: never built\n"
        f"    cd calc/{d['gen']}\n"
        "    echo 'it'\"'\"'s' > out.txt\n"
        "    wc -c out.txt\n"
        "run f[a=it's]: never built\n"
        f"    cd calc/{d['f']}\n"
        "    python: model.py:run(pset)\n"
        "2 of 2 jobs to run (gen 1, f 1), 0 up to date\n"
    )
    r = p.sweepc("build", "-p")
    assert (r.code, r.out, r.err) == (2, "", "sweepc: --print-commands goes with -n (a dry run)\n  hint: see the commands first: sweepc build -n -p\n")
