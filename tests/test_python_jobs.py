"""`python:` rules (issue 15): the field and its checks, the local pool of
Python workers (one import per worker, recycling, segfaults, os._exit,
Ctrl-C, kill -9), results, incrementality.

Real `sweepc build` runs (in-process and as subprocesses) in a tmp project
(the `local_project` fixture in conftest.py); real worker processes.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import psutil
import pytest

import sweepc
from sweepc.backends.local import pypool
from sweepc.errors import SweepfileError

SUMMARY_PREFIX = "sweepc: "

GRID = '''
param a = [1, 2, 3, 4]
sweep s = a

rule work over s:
    python: "model.py:run"
'''


def write_module(p, text: str, name: str = "model.py") -> Path:
    f = p.root / name
    f.write_text(textwrap.dedent(text).lstrip())
    return f


def summary(out: str) -> str:
    lines = [ln for ln in out.splitlines() if ln.startswith(SUMMARY_PREFIX) and " done, " in ln]
    assert len(lines) == 1, out
    return lines[0].split(" in ")[0].removeprefix(SUMMARY_PREFIX)


def wait_until(predicate, timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


# ---------------------------------------------------------------- the language


def test_a_python_rule_compiles_to_jobs_whose_module_is_a_source_input(local_project):
    p = local_project.write(GRID)
    write_module(p, "def run(pset):\n    return {'y': pset['a']}\n")
    g = sweepc.load(p.root / "sweepfile").graph
    rule = g.rule("work")
    assert rule.python == ("model.py", "run")
    assert rule.results == ("sweepc-result.json",)
    assert [o.path for o in rule.outputs] == ["sweepc-result.json"]
    job = g.jobs[0]
    assert job.sources == ("model.py",)
    # the stand-in command a shell backend runs: one interpreter per pset
    assert job.command == (
        f"python3 -m sweepc.backends.pyjob ../../../../model.py run '{{\"a\":1}}' work {job.hash}"
    )


def test_the_stand_in_command_quotes_every_pset_as_shlex_does(local_project):
    # the command is the job's command hash: made a value at a time, it must
    # be the very text of shlex.quote(compact_json(pset)) for every value
    import shlex

    from sweepc.values import compact_json

    p = local_project.write('''
param s = ["it's", "a \\"b\\"", "é ü", "$HOME `x` ;|&", ""]
param f = [-0.5, 1e300, 2.0, -0.0]
param b = [true, false]
param n = [0, -7, 12345678901234567890]
sweep all = s * f * b * n

rule work over all:
    python: "model.py:run"
''')
    write_module(p, "def run(pset):\n    return None\n")
    g = sweepc.load(p.root / "sweepfile").graph
    assert len(g.jobs) == 5 * 4 * 2 * 3
    for job in g.jobs:
        want = (f"python3 -m sweepc.backends.pyjob ../../../../model.py run {shlex.quote(compact_json(dict(job.params)))} "
                f"work {shlex.quote(job.hash)}")
        assert job.command == want, (job.params, job.command)


def compile_error(p, sweepfile: str, module: str | None = "def run(pset):\n    return None\n") -> str:
    p.write(sweepfile)
    if module is not None:
        write_module(p, module)
    with pytest.raises(SweepfileError) as info:
        sweepc.load(p.root / "sweepfile")
    return str(info.value)


def test_python_and_shell_together_is_an_error(local_project):
    err = compile_error(local_project, GRID + '    shell: "echo hi"\n')
    assert err.endswith(
        "sweepfile:5:5: rule 'work' has both shell: and python:\n"
        '      python: "model.py:run"\n'
        "      ^^^^^^\n"
        "  hint: a rule runs either a command (shell:) or a Python function (python:); keep one"
    ), err


def test_a_module_without_a_function_is_an_error(local_project):
    err = compile_error(local_project, GRID.replace("model.py:run", "model.py"))
    assert err.endswith(
        "sweepfile:5:13: python: \"model.py\" names no function\n"
        '      python: "model.py"\n'
        "              ^^^^^^^^^^\n"
        '  hint: add the function to call: python: "model.py:run"'
    ), err


def test_a_missing_module_is_an_error(local_project):
    err = compile_error(local_project, GRID.replace("model.py", "modle.py"))
    assert err.endswith(
        "sweepfile:5:13: python: module 'modle.py' does not exist\n"
        '      python: "modle.py:run"\n'
        "              ^^^^^^^^^^^^^^\n"
        "  hint: paths are relative to the project folder (where the sweepfile is)"
    ), err


def test_a_missing_function_is_an_error_with_a_suggestion(local_project):
    err = compile_error(local_project, GRID.replace("model.py:run", "model.py:rnu"))
    assert err.endswith(
        "sweepfile:5:13: python: module 'model.py' has no function 'rnu'\n"
        '      python: "model.py:rnu"\n'
        "              ^^^^^^^^^^^^^^\n"
        "  hint: did you mean 'run'?"
    ), err


def test_restart_goes_with_shell_only(local_project):
    err = compile_error(local_project, GRID + '    restart: "echo again"\n')
    assert "sweepfile:6:5: restart: goes with shell:, not python:\n" in err, err


def test_a_module_that_fails_to_import_stops_the_build_before_any_job(local_project):
    p = local_project.write(GRID)
    write_module(p, "import helper\n\ndef run(pset):\n    return None\n")
    write_module(p, "raise RuntimeError('no config here')\n", "helper.py")
    r = p.sweepc("build")
    assert r.code == 2, r
    lines = r.err.splitlines()
    assert lines[0] == "sweepc: python: \"model.py:run\" of rule 'work' cannot be imported:"
    assert lines[1] == "    Traceback (most recent call last):"
    assert lines[-3:] == [
        "        raise RuntimeError('no config here')",
        "    RuntimeError: no config here",
        "  hint: fix the module; sweepc imports it from the project folder, as its workers do",
    ]
    assert f'File "{p.root / "helper.py"}", line 1, in <module>' in r.err
    assert not (p.root / "calc").exists()  # no job started


def test_the_import_check_names_every_module_that_fails_and_runs_nothing(local_project):
    # the first worker checks the modules in turn; one that fails ends it, and a
    # fresh worker checks the rest: every failing module is named, then the build stops
    p = local_project.write(GRID + '''
rule other over s:
    python: "other.py:go"

rule third over s:
    python: "third.py:go"
''')
    write_module(p, "def run(pset):\n    return None\n")
    write_module(p, "import os\nos._exit(3)\n\ndef go(pset):\n    return None\n", "other.py")
    write_module(p, "def go(pset):\n    return None\nraise ValueError('bad third')\n", "third.py")
    r = p.sweepc("build")
    assert r.code == 2, r
    err = r.err
    assert "sweepc: python: \"other.py:go\" of rule 'other' cannot be imported:\n" \
           "    the interpreter exited with code 3 while importing it\n" in err, err
    assert "python: \"third.py:go\" of rule 'third' cannot be imported:\n    Traceback (most recent call last):" in err, err
    assert "    ValueError: bad third\n  hint: fix the module; sweepc imports it from the project folder, as its workers do" in err, err
    assert "model.py" not in err  # it imports
    assert not (p.root / "calc").exists()  # no job started
    assert sweepc.load(p.root / "sweepfile").runs().empty  # and no run was recorded


def test_every_worker_has_imported_the_module_before_the_first_job_starts(local_project):
    # a module that takes a while to import (a large library): the workers of
    # -j 2 import it at once, during the import check, so no job waits for a
    # second worker to import it after the check
    p = local_project.write(GRID.replace("[1, 2, 3, 4]", "range(1, 9)"))
    write_module(p, '''
        import os, time
        time.sleep(0.3)
        with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "imports.txt"), "a") as f:
            f.write(f"{os.getpid()} {time.time()!r}\\n")

        def run(pset):
            return {"t": time.time(), "pid": os.getpid()}
    ''')
    r = p.sweepc("build", "-j", "2")
    assert r.code == 0, r
    imports = [line.split() for line in (p.root / "imports.txt").read_text().splitlines()]
    assert len(imports) == 2
    df = sweepc.load(p.root / "sweepfile").results()
    assert max(float(t) for _, t in imports) < df["t"].min()
    assert {int(pid) for pid, _ in imports} >= set(df["pid"])


def test_the_checking_workers_go_when_the_build_stops_before_it_runs(local_project):
    # the import check passed, then a template fails for a pset: the build
    # stops before any job, and the worker that did the check goes with it
    p = local_project.write(GRID + '    templates: "tpl/"\n')
    (p.root / "tpl").mkdir()
    (p.root / "tpl" / "in.txt").write_text("{{ a }} {{ nope }}\n")
    write_module(p, WORKER_MODULE)
    study = sweepc.load(p.root / "sweepfile")
    with pytest.raises(SweepfileError, match="nope") as info:
        study.build()
    # (info holds the traceback, and with it the build's frames and its backend:
    # the worker is stopped by the build itself, not when those are collected)
    assert info.value is not None
    imports = [int(x) for x in (p.root / "imports.txt").read_text().split()]
    assert len(imports) == min(4, os.cpu_count() or 1)  # the check, by the workers started for the run
    for pid in imports:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert not (p.root / "calc").exists()
    assert study.runs().empty


# ---------------------------------------------------------------- local pool

WORKER_MODULE = '''
import os, sys
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "imports.txt"), "a") as f:
    f.write(f"{os.getpid()}\\n")

def run(pset):
    print("to stdout", pset["a"])
    print("to stderr", pset["a"], file=sys.stderr)
    return {"y": pset["a"] * 10, "pid": os.getpid(), "cwd_ok": os.getcwd() == pset["_job_dir"],
            "hash_ok": os.path.basename(pset["_job_dir"]) == pset["_pset_hash"], "rule": pset["_rule"] + "!",
            "env_ok": os.environ["SWEEPC_JOB_DIR"] == pset["_job_dir"]}
'''


def test_results_logs_and_one_import_per_worker(local_project):
    p = local_project.write(GRID.replace("[1, 2, 3, 4]", "range(1, 21)"))
    write_module(p, WORKER_MODULE)
    r = p.sweepc("build", "-j", "2")
    assert r.code == 0, r
    assert summary(r.out) == "20 done, 0 up to date"
    df = sweepc.load(p.root / "sweepfile").results()
    assert list(df["y"]) == [a * 10 for a in range(1, 21)]
    assert df["cwd_ok"].all() and df["hash_ok"].all() and df["env_ok"].all()
    assert set(df["rule"]) == {"work!"}
    assert (df["_status"] == "done").all()
    assert (df["_max_rss_mb"] > 5).all() and (df["_runtime_s"] >= 0).all()
    imports = [int(x) for x in (p.root / "imports.txt").read_text().split()]
    # once per worker, not per pset; the import check before the build is the
    # workers' own imports (both of -j 2 import at once), not one more
    assert len(imports) == 2
    assert set(imports) == set(df["pid"]), (imports, set(df["pid"]))
    log = (p.dir("work[a=3]") / "sweepc.log").read_text()
    assert log == "to stdout 3\nto stderr 3\n"
    # nothing to do the second time; the workers ended with the build
    assert p.sweepc("build").out.startswith("sweepc: nothing to do (")
    assert not any(psutil.pid_exists(int(pid)) for pid in imports)


def test_workers_are_recycled_after_n_jobs(local_project, monkeypatch):
    p = local_project.write(GRID.replace("[1, 2, 3, 4]", "range(1, 11)"))
    write_module(p, WORKER_MODULE)
    monkeypatch.setenv("SWEEPC_PY_MAX_JOBS", "3")
    assert p.sweepc("build", "-j", "1").code == 0
    imports = (p.root / "imports.txt").read_text().split()
    # workers for 3 + 3 + 3 + 1 jobs; the first did the import check before the build
    assert len(imports) == 4
    df = sweepc.load(p.root / "sweepfile").results()
    assert sorted(df["pid"].value_counts().tolist()) == [1, 3, 3, 3]
    assert set(df["pid"]) == {int(x) for x in imports}


FAILING_MODULE = '''
import ctypes, os

def run(pset):
    a = pset["a"]
    if a == 2:
        raise ValueError(f"a={a} is bad")
    if a == 3:
        ctypes.string_at(0)  # segfault
    if a == 4:
        os._exit(7)
    if a == 5:
        return [1, 2]
    if a == 6:
        return {"a": 1}
    if a == 7:
        return {"_status": 1}
    if a == 8:
        return {"x": object()}
    if a in (9, 10):  # nested too deeply for the results table: 500 levels, and more than json can write
        deep = top = {}
        for _ in range(500 if a == 9 else 100_000):
            deep["d"] = deep = {}
        return {"x": top}
    return {"y": a, "pid": os.getpid()}
'''


def test_failures_fail_only_their_job_and_say_why(local_project):
    p = local_project.write(GRID.replace("[1, 2, 3, 4]", "range(1, 14)"))
    write_module(p, FAILING_MODULE)
    r = p.sweepc("build", "-j", "2", "-k")
    assert r.code == 1, r
    assert summary(r.out) == "4 done, 9 failed, 0 up to date"
    whys = {ln.split(": ", 1)[0].removeprefix("FAILED "): ln.split(": ", 1)[1] for ln in r.out.splitlines()
            if ln.startswith("FAILED ") and ": " in ln}
    assert whys == {
        "work[a=2]": "ValueError: a=2 is bad",
        "work[a=3]": "the Python worker was killed by signal 11 (SIGSEGV)",
        "work[a=4]": "the Python worker exited with code 7 (os._exit or sys.exit outside the function's control)",
        "work[a=5]": "the function returned a list, not a dict or None",
        "work[a=6]": "the function returned key 'a', which is a parameter name; rename the result",
        "work[a=7]": "the function returned key '_status', which is a column sweepc fills itself; rename the result",
        "work[a=8]": "the function returned key 'x' with a value that is not JSON: object is not JSON serialisable",
        "work[a=9]": "the function returned a dict nested more than 100 levels deep",
        "work[a=10]": "the function returned a dict nested more than 100 levels deep",
    }
    # the log's last line is the short error (what the results' _error shows)
    for label, why in whys.items():
        log = (p.dir(label) / "sweepc.log").read_text()
        assert log.splitlines()[-1] == why, (label, log)
    tb = (p.dir("work[a=2]") / "sweepc.log").read_text()
    assert tb.startswith("Traceback (most recent call last):\n")
    assert 'model.py", line 6, in run' in tb and "pyjob.py" not in tb
    df = sweepc.load(p.root / "sweepfile").results()
    done = df[df["_status"] == "done"]
    assert sorted(done["a"]) == [1, 11, 12, 13]
    # the results' _error: the exception line, or what sweepc says (after what the log had before)
    errors = dict(zip(df["a"], df["_error"]))
    assert errors[2] == "ValueError: a=2 is bad"
    for a in range(3, 11):
        assert errors[a].splitlines()[-1] == whys[f"work[a={a}]"], errors[a]
    assert not (p.dir("work[a=5]") / "sweepc-result.json").exists()
    # the failed jobs rerun next time, the others not
    assert p.sweepc("build", "-n").out.splitlines()[-1] == "9 of 13 jobs to run (work 9), 4 up to date"


def test_retries_call_the_function_again(local_project):
    p = local_project.write(GRID + "    retries: 1\n")
    write_module(p, '''
        import os
        def run(pset):
            if not os.path.exists("tried"):
                open("tried", "w").close()
                raise RuntimeError("first try")
            return {"ok": 1}
    ''')
    r = p.sweepc("build", "-j", "2")
    assert r.code == 0, r
    assert summary(r.out) == "4 done, 0 up to date"
    assert {v["attempts"] for v in p.rows().values()} == {2}
    log = (p.dir("work[a=1]") / "sweepc.log").read_text()
    assert "RuntimeError: first try\n\n=== sweepc: attempt 2 ===\n" in log


def test_peak_memory_is_per_job_in_a_shared_worker(local_project):
    p = local_project.write(GRID.replace("[1, 2, 3, 4]", "[1, 2, 3]"))
    write_module(p, '''
        def run(pset):
            if pset["a"] == 2:
                block = bytearray(200 * 1024 * 1024)
                block[::4096] = b"x" * len(block[::4096])
                del block
            return None
    ''')
    assert p.sweepc("build", "-j", "1").code == 0
    rss = dict(zip(*[list(c) for c in sweepc.load(p.root / "sweepfile").results()[["a", "_max_rss_mb"]].T.values]))
    assert rss[2] > 200
    assert rss[3] < 100, rss  # reset after the big job: one worker ran all three


def test_cpu_time_is_per_job_in_a_shared_worker_and_counts_the_children_it_waited_for(local_project):
    p = local_project.write(GRID)
    write_module(p, '''
        import subprocess, sys, time

        def busy(seconds):
            end = time.process_time() + seconds
            while time.process_time() < end:
                pass

        def run(pset):
            a = pset["a"]
            if a == 1:
                busy(0.4)
            elif a == 2:
                time.sleep(0.4)
            elif a == 3:
                subprocess.run([sys.executable, "-c", "import time\\nend = time.process_time() + 0.4\\nwhile time.process_time() < end: pass"], check=True)
            return None
    ''')
    assert p.sweepc("build", "-j", "1").code == 0
    df = sweepc.load(p.root / "sweepfile").results()
    cpu = dict(zip(df["a"], df["_cpu_s"]))
    assert 0.35 <= cpu[1] < 1.0, cpu  # its own work
    assert cpu[2] < 0.1, cpu  # sleeping is no CPU time
    assert 0.35 <= cpu[3] < 1.5, cpu  # a child it waited for counts (with its start-up)
    assert 0 <= cpu[4] < 0.1, cpu  # and nothing of the jobs before it in the same worker
    assert (df["_runtime_s"] >= 0.35).sum() == 3


INPUTS_STUDY = '''
param a = [1, 2, 3]
sweep s = a

rule prep over s:
    output: "x.txt"
    shell: "echo {a} > {output}"

rule square over s:
    input: prep, "data.csv"
    python: "model.py:square"

rule total:
    input: done(square)
    python: "model.py:total"

rule plain over s:
    python: "model.py:plain"
'''

INPUTS_MODEL = '''
import json, os

def square(pset):
    a = pset["a"]
    if a == 2 and not os.path.exists(os.path.join(os.path.dirname(pset["_job_dir"]), "..", "..", "..", "fixed")):
        raise ValueError("not yet")
    x_txt, data = pset["_inputs"]
    return {"y": int(open(x_txt).read()) ** 2, "data": open(data).read().strip(), "inputs": "|".join(pset["_inputs"])}

def total(pset):
    ys = [json.load(open(p))["y"] for p in pset["_inputs"]]
    return {"total": sum(ys), "n": len(ys)}

def plain(pset):
    return {"has_inputs": "_inputs" in pset}
'''


def test_a_python_rule_with_inputs_gets_them_as_inputs_and_a_done_gather_only_those_done(local_project):
    p = local_project.write(INPUTS_STUDY)
    write_module(p, INPUTS_MODEL)
    (p.root / "data.csv").write_text("d\n")
    r = p.sweepc("build", "-k", "-j", "2")
    assert r.code == 1, r
    rows = {row["a"]: row for row in json.loads(p.sweepc("results", "--rule", "square", "--format", "json").out)}
    sq1 = rows[1]
    # relative to the job folder (its working directory), as a shell rule's {input}; not the module itself
    prep1 = os.path.relpath(p.dir("prep[a=1]"), p.dir("square[a=1]"))
    assert sq1["inputs"] == f"{prep1}/x.txt|{os.path.relpath(p.root, p.dir('square[a=1]'))}/data.csv", sq1
    assert (sq1["y"], sq1["data"]) == (1, "d")
    (t,) = json.loads(p.sweepc("results", "--rule", "total", "--format", "json").out)
    assert (t["total"], t["n"]) == (1 + 9, 2), t  # square[a=2] failed: not in total's _inputs
    plain = json.loads(p.sweepc("results", "--rule", "plain", "--format", "json").out)
    assert [row["has_inputs"] for row in plain] == [False] * 3  # no inputs besides its module: no _inputs
    (p.root / "fixed").touch()
    assert p.sweepc("build", "-j", "2").code == 0
    (t,) = json.loads(p.sweepc("results", "--rule", "total", "--format", "json").out)
    assert (t["total"], t["n"]) == (1 + 4 + 9, 3), t


def test_editing_the_module_reruns_and_touching_it_does_not(local_project):
    p = local_project.write(GRID)
    f = write_module(p, "def run(pset):\n    return {'y': 1}\n")
    assert p.sweepc("build").code == 0
    os.utime(f, (time.time() + 5, time.time() + 5))
    assert p.sweepc("build").out.startswith("sweepc: nothing to do (")
    f.write_text("def run(pset):\n    return {'y': 2}\n")
    lines = p.sweepc("build", "-n").out.splitlines()
    assert lines[0] == "run work[a=1]: input changed: model.py"
    assert p.sweepc("build").code == 0
    assert set(sweepc.load(p.root / "sweepfile").results()["y"]) == {2}


def test_other_sources_it_imports_can_be_inputs(local_project):
    p = local_project.write(GRID + '    input: "helper.py"\n')
    write_module(p, "from helper import K\n\ndef run(pset):\n    return {'y': K}\n")
    h = write_module(p, "K = 1\n", "helper.py")
    assert p.sweepc("build").code == 0
    h.write_text("K = 2\n")
    assert p.sweepc("build", "-n").out.splitlines()[0] == "run work[a=1]: input changed: helper.py"
    assert p.sweepc("build").code == 0
    assert set(sweepc.load(p.root / "sweepfile").results()["y"]) == {2}



def test_an_edit_that_a_stale_pyc_would_hide_still_runs_the_new_code(local_project):
    """Python takes a .pyc as up to date when the source's mtime (in whole
    seconds) and size are the ones it was made from. An edit within the same
    second that keeps the size, or a checkout or copy that sets such an
    mtime, leaves a .pyc of the old text that a plain import runs. sweepc
    reruns the jobs (the text changed) and they must run the new text: the
    module, a sibling it imports and a module of a package next to it."""
    import importlib.util
    import py_compile

    p = local_project.write(GRID + '    input: "helper.py", "pkg/sub.py"\n')
    write_module(p, "from helper import K\nfrom pkg.sub import M\nN = 1\n\ndef run(pset):\n    return {'y': K + M + N}\n")
    (p.root / "pkg").mkdir()
    (p.root / "pkg" / "__init__.py").write_text("")
    files = [p.root / "model.py", write_module(p, "K = 10\n", "helper.py"), write_module(p, "M = 100\n", "pkg/sub.py")]
    then = int(time.time()) - 100
    for f in files:  # as they were at the first build, compiled by an import then (PYTHONDONTWRITEBYTECODE or not)
        os.utime(f, (then + 0.1, then + 0.1))
        py_compile.compile(str(f), cfile=importlib.util.cache_from_source(str(f)), doraise=True)
    assert p.sweepc("build").code == 0
    assert set(sweepc.load(p.root / "sweepfile").results()["y"]) == {111}
    for f, (old, new) in zip(files, [("N = 1", "N = 2"), ("K = 10", "K = 20"), ("M = 100", "M = 200")]):
        f.write_text(f.read_text().replace(old, new))  # the same size, the same second
        os.utime(f, (then + 0.7, then + 0.7))
    assert p.sweepc("build").code == 0
    assert set(sweepc.load(p.root / "sweepfile").results()["y"]) == {222}

SLOW_MODULE = '''
import os, subprocess, time
def run(pset):
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), f"started-{pset['a']}"), "w") as f:
        f.write(str(os.getpid()))
    subprocess.run(["sleep", "30"])
    return None
'''


def start_two(p):
    p.write(GRID.replace("[1, 2, 3, 4]", "range(0, 6)"))
    write_module(p, SLOW_MODULE)
    proc = p.spawn("build", "-j", "2")
    sleeps: list[psutil.Process] = []

    def two_sleeping() -> bool:
        sleeps[:] = [q for q in p.job_processes() if q.name() == "sleep"]
        return len(sleeps) == 2

    wait_until(two_sleeping, what="two running jobs")
    workers = [psutil.Process(s.ppid()) for s in sleeps]
    return proc, sleeps, workers


def test_ctrl_c_stops_every_worker_and_its_children(local_project):
    p = local_project
    proc, sleeps, workers = start_two(p)
    t0 = time.monotonic()
    os.kill(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, (out, err)
    assert time.monotonic() - t0 < 10
    # two ran and are interrupted; the four queued to the workers behind them never began
    assert summary(out) == "0 done, 4 not started, 2 interrupted, 0 up to date"
    for q in [*sleeps, *workers]:
        assert not q.is_running() or q.status() == psutil.STATUS_ZOMBIE
    assert p.job_processes() == []
    statuses = p.statuses()
    began = {f"work[a={f.name.removeprefix('started-')}]" for f in p.root.glob("started-*")}
    assert len(began) == 2
    assert {k for k, v in statuses.items() if v == "interrupted"} == began
    # as a shell job that had not started: planned in this build, not run
    assert sorted(v for k, v in statuses.items() if k not in began) == ["planned"] * 4


def test_ctrl_c_in_the_terminal_reaches_sweepc_not_the_workers(local_project):
    # the terminal sends SIGINT to its foreground process group: sweepc's, not the workers'
    p = local_project
    proc, sleeps, workers = start_two(p)
    assert all(os.getsid(w.pid) == w.pid for w in workers)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, (out, err)
    assert summary(out) == "0 done, 4 not started, 2 interrupted, 0 up to date"
    assert p.job_processes() == []


def test_kill_9_of_sweepc_stops_its_workers(local_project):
    p = local_project
    proc, sleeps, workers = start_two(p)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    wait_until(lambda: not any(w.is_running() and w.status() != psutil.STATUS_ZOMBIE for w in workers),
               what="the workers of the killed build to stop")
    # (the `sleep` children the function started are orphans now; the next
    # build stops them, as for shell jobs: reap_orphans)
    r = p.sweepc("build", "-n")
    assert r.out.splitlines()[-1] == "6 of 6 jobs to run (work 6), 0 up to date"


def test_the_stand_in_command_runs_a_job_like_the_pool(local_project):
    # what a shell backend runs for a python: job: one interpreter per pset
    import subprocess

    p = local_project.write(GRID)
    write_module(p, WORKER_MODULE)
    g = sweepc.load(p.root / "sweepfile").graph
    job = g.jobs[1]
    d = g.job_dir(job)
    d.mkdir(parents=True)
    r = subprocess.run(["bash", "-c", job.command], cwd=d, capture_output=True, text=True, env={**os.environ, "SWEEPC_JOB_DIR": str(d)})
    assert r.returncode == 0, r.stderr
    assert r.stdout == "to stdout 2\n" and r.stderr == "to stderr 2\n"
    got = json.loads((d / "sweepc-result.json").read_text())
    assert got["y"] == 20 and got["cwd_ok"] and got["hash_ok"]


def test_a_time_limit_stops_the_worker_and_fails_only_that_job(local_project):
    p = local_project.write('''
        param a = [1, 2, 3]
        sweep s = a

        rule work over s:
            python: "model.py:run"
            resources: time = "00:00:01"
    ''')
    write_module(p, '''
        import time
        def run(pset):
            if pset["a"] == 2:
                time.sleep(30)
            return {"y": pset["a"]}
    ''')
    t0 = time.monotonic()
    r = p.sweepc("build", "-j", "1", "-k")
    assert time.monotonic() - t0 < 15
    assert r.code == 1, r
    assert "FAILED work[a=2]: time limit reached (00:00:01)" in r.out
    assert summary(r.out) == "2 done, 1 failed, 0 up to date"
    assert p.statuses()["work[a=2]"] == "timeout"


# ------------------------------------------- the SLURM bundle runner, without SLURM
# (the rendered array task run as SLURM would run it; on the real cluster:
# tests/test_slurm_campaign.py)


def render_slurm(p, sweepfile: str, module: str) -> Path:  # type: ignore[no-untyped-def]
    p.write(textwrap.dedent(sweepfile) + "\nbackend slurm:\n    bundle = 4\n    pack = 2\n")
    write_module(p, module)
    r = p.sweepc("build", "--backend", "slurm", "--render-only")
    assert r.code == 0, r
    (folder,) = (p.root / ".sweepc" / "slurm").glob("*/")
    return folder


def start_task(folder: Path, task: int = 0):  # type: ignore[no-untyped-def]
    import subprocess

    env = {**os.environ, "SLURM_ARRAY_TASK_ID": str(task), "SLURM_ARRAY_JOB_ID": "77", "SLURM_JOB_ID": "78"}
    return subprocess.Popen(["bash", "01-work.sh"], cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def records(p) -> dict[int, dict[str, object]]:  # type: ignore[no-untyped-def]
    g = sweepc.load(p.root / "sweepfile").graph
    out = {}
    for job in g.jobs:
        f = g.job_dir(job) / "sweepc-record.json"
        if f.exists():
            out[int(job.params["a"])] = json.loads(f.read_text())
    return out


def test_the_slurm_runner_enforces_a_psets_time_and_fails_bad_results_per_pset(local_project):
    p = local_project
    folder = render_slurm(p, '''
        param a = [1, 2, 3, 4]

        rule work over a:
            python: "model.py:run"
            resources: time = "00:00:01"
    ''', '''
        import time
        def run(pset):
            if pset["a"] == 2:
                time.sleep(60)
            if pset["a"] == 3:
                return {"a": 1}
            return {"y": pset["a"]}
    ''')
    t0 = time.monotonic()
    proc = start_task(folder)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert time.monotonic() - t0 < 15
    recs = records(p)
    assert {a: r["status"] for a, r in recs.items()} == {1: "done", 2: "timeout", 3: "failed", 4: "done"}
    assert recs[2]["note"] == "time limit reached (00:00:01)" and recs[2]["array_task_id"] == "0"
    log2 = (p.dir("work[a=2]") / "sweepc.log").read_text()
    assert log2.endswith("\n=== sweepc: time limit reached (00:00:01), pset stopped ===\n"), log2
    assert (p.dir("work[a=3]") / "sweepc.log").read_text() == (
        "the function returned key 'a', which is a parameter name; rename the result\n")
    assert json.loads((p.dir("work[a=4]") / "sweepc-result.json").read_text()) == {"y": 4}
    # sweepc takes the records in as after a SLURM build (here: at `status`)
    assert p.sweepc("status").code == 0
    st = p.statuses()
    assert st["work[a=1]"] == "done" and st["work[a=2]"] == "timeout" and st["work[a=3]"] == "failed", st


def test_sigterm_to_the_slurm_runner_records_the_running_psets_cancelled_and_the_rest_not_run(local_project):
    p = local_project
    folder = render_slurm(p, '''
        param a = [1, 2, 3, 4]

        rule work over a:
            python: "model.py:run"
    ''', '''
        import subprocess
        def run(pset):
            subprocess.run(["sleep", "60"])
    ''')
    proc = start_task(folder)
    wait_until(lambda: sum(1 for r in records(p).values() if r["status"] == "running") == 2, what="two psets to run")
    runner = psutil.Process(proc.pid)
    wait_until(lambda: sum(1 for c in runner.children(recursive=True) if c.name() == "sleep") == 2, what="two sleeps")
    tree = runner.children(recursive=True)
    proc.send_signal(signal.SIGTERM)  # as SLURM does at scancel: the runner is the exec'd python3
    out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, out
    recs = records(p)
    assert {a: r["status"] for a, r in recs.items()} == {1: "cancelled", 2: "cancelled", 3: "not-run", 4: "not-run"}, recs
    assert not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in tree)


def test_a_module_that_fails_to_import_on_the_node_fails_each_pset_with_the_traceback(local_project):
    p = local_project
    folder = render_slurm(p, '''
        param a = [1, 2]

        rule work over a:
            python: "model.py:run"
    ''', '''
        def run(pset):
            return None
    ''')
    write_module(p, "import no_such_module_here\n")
    proc = start_task(folder)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert {a: r["status"] for a, r in records(p).items()} == {1: "failed", 2: "failed"}
    log = (p.dir("work[a=1]") / "sweepc.log").read_text()
    assert log.startswith('sweepc: python: "model.py:run" cannot be imported on '), log
    assert log.endswith("ModuleNotFoundError: No module named 'no_such_module_here'\n"), log


def test_a_module_that_fails_to_import_here_is_an_error_before_a_slurm_build_submits(local_project):
    p = local_project.write(GRID + "\nbackend slurm:\n    bundle = 2\n")
    write_module(p, "raise RuntimeError('no config here')\ndef run(pset):\n    return None\n")
    r = p.sweepc("build", "--backend", "slurm")
    assert r.code == 2, r
    lines = r.err.splitlines()
    assert lines[0] == "sweepc: python: \"model.py:run\" of rule 'work' cannot be imported:"
    assert lines[-2:] == [
        "    RuntimeError: no config here",
        "  hint: fix the module; sweepc imports it from the project folder, as the array tasks do",
    ]
    assert not (p.root / ".sweepc" / "slurm").exists() and not (p.root / "calc").exists()
    # --render-only writes the folder anyway: it may run on a cluster with other software
    assert p.sweepc("build", "--backend", "slurm", "--render-only").code == 0


KILL_MODULE = '''
import os, time
ROOT = os.path.dirname(os.path.abspath(__file__))

def run(pset):
    a = pset["a"]
    if a >= 30:
        open(os.path.join(ROOT, f"started-{a}"), "w").close()
        time.sleep(60)
    with open(os.path.join(ROOT, "ran.txt"), "a") as f:
        f.write(f"{a}\\n")
    return {"y": a}
'''


def test_kill_9_mid_build_reruns_no_job_that_had_ended(local_project):
    # 30 quick jobs end, then two slow ones run: sweepc has recorded every end
    # it took in (within its 50 ms gathering), so after a SIGKILL only the 10
    # slow ones (2 running, 8 queued or pending) are left to run
    p = local_project.write(GRID.replace("[1, 2, 3, 4]", "range(0, 40)"))
    write_module(p, KILL_MODULE)
    proc = p.spawn("build", "-j", "2")
    wait_until(lambda: len(list(p.root.glob("started-*"))) == 2, what="two slow jobs running")
    ran = (p.root / "ran.txt").read_text().split()
    assert sorted(map(int, ran)) == list(range(30))
    time.sleep(0.5)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    wait_until(lambda: p.job_processes() == [], what="the workers of the killed build to stop")
    r = p.sweepc("build", "-n")
    assert r.out.splitlines()[-1] == "10 of 40 jobs to run (work 10), 30 up to date", r.out
    statuses = p.statuses()
    assert sorted(k for k, v in statuses.items() if v == "done") == sorted(f"work[a={a}]" for a in range(30))
    assert {v for k, v in statuses.items() if v != "done"} == {"planned"}


COUNTED_MODULE = '''
import os, time
ROOT = os.path.dirname(os.path.abspath(__file__))

def run(pset):
    a = pset["a"]
    if a == int(os.environ.get("FAIL_AT", "-1")):
        raise ValueError("stop here")
    time.sleep(0.01)
    with open(os.path.join(ROOT, "ran.txt"), "a") as f:
        f.write(f"{a}\\n")
    return {"y": a}
'''


def test_python_ends_are_journalled_and_committed_together(local_project, monkeypatch, store_commits):
    # A commit per wait was nearly a commit per job; sweepc journals the ends
    # of python: jobs itself now (no spawner queue to do it) and commits them
    # together, like queued shell jobs: here, with COMMIT_SECONDS an hour, once.
    from sweepc.backends.local import backend

    p = local_project.write(GRID.replace("[1, 2, 3, 4]", "range(0, 60)"))
    write_module(p, COUNTED_MODULE)
    commits = store_commits
    monkeypatch.setattr(backend, "COMMIT_SECONDS", 3600.0)
    r = p.sweepc("build", "-j", "2")
    assert r.code == 0, r
    assert commits == [["done"] * 60], "one commit, at the end of the build"
    assert set(p.statuses().values()) == {"done"}
    assert not (p.root / ".sweepc" / "journal").exists()
    assert sweepc.load(p.root / "sweepfile").results()["y"].tolist() == list(range(60))


def test_the_time_between_commits_grows_with_what_a_commit_costs(local_project, monkeypatch):
    # A commit of a 100k-pset build's ends writes about a page a row (random
    # pages): the next commit waits long enough that committing takes at most
    # COMMIT_SHARE of the time (commit_gap), never less than COMMIT_SECONDS.
    from sweepc.backends.local import backend
    from sweepc.plan.store import Store

    assert [backend.commit_gap(t) for t in (0.0, 0.05, 0.2, 0.45, 9.0)] == [1.0, 1.0, 2.0, 4.5, 5.0]
    p = local_project.write(GRID.replace("[1, 2, 3, 4]", "range(0, 120)"))
    write_module(p, "import time\n\ndef run(pset):\n    time.sleep(0.05)\n    return {'y': pset['a']}\n")  # ~3 s at -j 2
    monkeypatch.setattr(backend, "COMMIT_SECONDS", 0.2)
    monkeypatch.setattr(backend, "COMMIT_MAX_SECONDS", 60.0)
    calls: list[tuple[float, int]] = []  # (when a commit began, its rows)
    record = Store.record

    def slow(self: Store, outcomes):  # type: ignore[no-untyped-def]
        calls.append((time.monotonic(), len(outcomes)))
        time.sleep(0.3)  # a commit of 0.3 s: the next one 3 s later at the soonest
        record(self, outcomes)

    monkeypatch.setattr(Store, "record", slow)
    t0 = time.monotonic()
    r = p.sweepc("build", "-j", "2")
    took = time.monotonic() - t0
    assert r.code == 0, r
    assert sum(n for _, n in calls) == 120 and set(p.statuses().values()) == {"done"}
    # (the last commit is the build's end: at once)
    gaps = [b - (a + 0.3) for (a, _), (b, _) in zip(calls[:-1], calls[1:-1])]
    assert all(g >= 2.9 for g in gaps), (gaps, calls)
    assert len(calls) >= 2 or took < 0.5, calls  # a commit before the end: 0.2 s after the run began
    assert len(calls) <= 2 + took / 3.0, (took, calls)


def test_a_python_failure_that_stops_the_build_is_committed_with_what_ended_before_it(local_project, monkeypatch, store_commits):
    from sweepc.backends.local import backend

    p = local_project.write(GRID.replace("[1, 2, 3, 4]", "range(0, 60)"))
    write_module(p, COUNTED_MODULE)
    commits = store_commits
    monkeypatch.setattr(backend, "COMMIT_SECONDS", 3600.0)
    monkeypatch.setenv("FAIL_AT", "40")
    r = p.sweepc("build", "-j", "1")
    assert r.code == 1, r
    ran = len((p.root / "ran.txt").read_text().split())
    assert ran >= 40
    # (one worker, in order: the 40 before it; what its queue held after it may still run, and is committed after)
    assert sorted(commits[0]) == ["done"] * 40 + ["failed"], commits
    assert all(set(c) == {"done"} for c in commits[1:]) and sum(map(len, commits)) == ran + 1, commits
    statuses = p.statuses()
    assert statuses["work[a=40]"] == "failed"
    assert list(statuses.values()).count("done") == ran
    assert not (p.root / ".sweepc" / "journal").exists()


MIXED_HELD = '''
param a = range(0, 40)
sweep s = a

rule work over s:
    python: "model.py:run"

rule echo over s:
    output: "out.txt"
    shell: "echo {a} >> {root}/echo-runs; echo {a} > {output}"
'''


def test_a_sigkill_between_commits_loses_no_python_job_that_ended(local_project):
    # COMMIT_SECONDS made an hour: nothing reaches the store before the kill.
    # sweepc journalled every end it took in (python: jobs, and the shell jobs
    # it started one by one beside them); the next build records them all
    # done, results and all, and runs only the 10 slow jobs that had not ended.
    import shutil
    import subprocess
    import sys

    from sweepc.backends.local.journal import read

    procs: list[subprocess.Popen[str]] = []  # (stopped if the test fails midway: a build left running spins)
    try:
        p = local_project.write(MIXED_HELD)
        write_module(p, KILL_MODULE)
        code = ("import sweepc.backends.local.backend as b; b.COMMIT_SECONDS = 3600.0; "
                "from sweepc.cli import main; raise SystemExit(main(['build', '-j', '2']))")
        proc = subprocess.Popen([sys.executable, "-c", code], cwd=p.root, text=True, start_new_session=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        procs.append(proc)
        journal = p.root / ".sweepc" / "journal"
        # (one slow job or two: a worker may hold the second queued behind the first)
        wait_until(lambda: len(list(p.root.glob("started-*"))) >= 1, what="a slow job running")
        wait_until(lambda: len(read(journal)) == 70, what="the ends of 30 python and 40 shell jobs in the journal")
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=10)
        wait_until(lambda: p.job_processes() == [], what="the workers of the killed build to stop")
        assert set(p.statuses().values()) == {"planned"}, "nothing was committed before the kill"
        assert sorted(map(int, (p.root / "ran.txt").read_text().split())) == list(range(30))
        shutil.copy(journal, p.root / "journal.copy")

        for f in p.root.glob("started-*"):
            f.unlink()
        proc = p.spawn("build", "-j", "2")
        procs.append(proc)
        wait_until(lambda: len(list(p.root.glob("started-*"))) >= 1, what="a slow job running again")
        statuses = p.statuses()
        assert sorted(k for k, v in statuses.items() if v == "done") == sorted(
            [f"work[a={a}]" for a in range(30)] + [f"echo[a={a}]" for a in range(40)])
        os.killpg(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
        assert out.splitlines()[0] == (
            "sweepc: the last build stopped before it recorded 70 jobs that ended done; recorded now (from .sweepc/journal)")
        assert sorted(map(int, (p.root / "ran.txt").read_text().split())) == list(range(30)), "a job that had ended ran again"
        assert sorted(map(int, (p.root / "echo-runs").read_text().split())) == list(range(40)), "a shell job ran again"
        assert not journal.exists()
        # the replayed jobs' results, as a normal run records them
        df = sweepc.load(p.root / "sweepfile").results("work")
        done = df[df["_status"] == "done"]
        assert done["a"].tolist() == list(range(30)) and done["y"].tolist() == list(range(30))
        assert (done["_cpu_s"] >= 0).all() and (done["_max_rss_mb"] > 5).all() and (done["_attempts"] == 1).all()
        assert (done["_runtime_s"] >= 0).all()
        r = p.sweepc("build", "-n")
        assert r.out.splitlines()[-1] == "10 of 80 jobs to run (work 10), 70 up to date", r.out

        # replaying the same journal again changes nothing
        before = p.rows()
        shutil.copy(p.root / "journal.copy", journal)
        r = p.sweepc("build", "-n")
        assert r.out.splitlines()[-1] == "10 of 80 jobs to run (work 10), 70 up to date", r.out
        assert p.rows() == before and not journal.exists()
    finally:
        for q in procs:
            if q.poll() is None:
                os.killpg(q.pid, signal.SIGKILL)
                q.communicate(timeout=10)


def test_a_journal_entry_without_cpu_time_is_replayed_with_the_results_from_the_folder(local_project):
    # the journal's format, extended: cpu_s may be None (not measured); the
    # results of a python: job come from its folder's sweepc-result.json
    import sqlite3

    from sweepc.backends.local.journal import entry, journal_path, make_tag

    p = local_project.write(GRID)
    write_module(p, "def run(pset):\n    return {'y': pset['a'] * 3, 'name': f\"n{pset['a']}\"}\n")
    assert p.sweepc("build", "-j", "2").code == 0
    want = sweepc.load(p.root / "sweepfile").results("work")
    rows = p.rows()
    # as a build killed after the job ended leaves it: its row `planned`, its end in the journal
    row = rows["work[a=2]"]
    con = sqlite3.connect(p.root / ".sweepc" / "state.db")
    with con:
        con.execute("UPDATE jobs SET status='planned', cpu_s=NULL WHERE rule=? AND hash=?", (row["rule"], row["hash"]))
    con.close()
    job = p.job("work[a=2]")
    tag = make_tag("work", row["hash"], job.reldir, row["run_id"], 1, row["fingerprint"], row["cmd_hash"],
                   row["inputs_hash"], "elsewhere")
    journal_path(p.root).write_bytes(entry(tag, 0, 100.0, 101.5, 20480, None, False))
    r = p.sweepc("build")
    assert r.out.splitlines() == [
        "sweepc: the last build stopped before it recorded 1 job that ended done; recorded now (from .sweepc/journal)",
        "sweepc: nothing to do (4 jobs up to date)"]
    got = sweepc.load(p.root / "sweepfile").results("work")
    assert got["y"].tolist() == want["y"].tolist() == [3, 6, 9, 12]
    assert got["name"].tolist() == want["name"].tolist()
    two = got[got["a"] == 2].iloc[0]
    assert (two["_exec_host"], two["_runtime_s"], two["_max_rss_mb"]) == ("elsewhere", 1.5, 20.0)
    assert two["_cpu_s"] is None or two["_cpu_s"] != two["_cpu_s"]  # (None or NaN: not measured)


def test_a_journal_that_cannot_be_written_commits_each_wait_at_once(local_project, monkeypatch, store_commits):
    # a full disk under the journal: sweepc stops journalling and commits the
    # ends it takes in at once, as it did before it had a journal
    import errno

    from sweepc.backends.local import backend

    p = local_project.write(GRID.replace("[1, 2, 3, 4]", "range(0, 60)"))
    write_module(p, COUNTED_MODULE)
    commits = store_commits
    monkeypatch.setattr(backend, "COMMIT_SECONDS", 3600.0)
    write = os.write
    failed: list[int] = []

    def full(fd: int, data) -> int:  # type: ignore[no-untyped-def]
        if os.readlink(f"/proc/self/fd/{fd}").endswith("/.sweepc/journal"):
            failed.append(fd)
            raise OSError(errno.ENOSPC, "No space left on device")
        return write(fd, data)

    monkeypatch.setattr(os, "write", full)
    r = p.sweepc("build", "-j", "1")
    monkeypatch.setattr(os, "write", write)
    assert r.code == 0, r
    assert len(failed) == 1, "no write after the one that failed"
    assert len(commits) > 2 and all(set(c) == {"done"} for c in commits), commits
    assert sum(map(len, commits)) == 60
    assert set(p.statuses().values()) == {"done"}
    assert not (p.root / ".sweepc" / "journal").exists()


def test_a_job_that_printed_nothing_has_no_log(local_project):
    # the output goes to the worker's spool and becomes sweepc.log only when
    # there is some; a log of an earlier run does not outlive the job's new run
    p = local_project.write(GRID)
    write_module(p, '''
        import os
        def run(pset):
            if pset["a"] % 2 or os.environ.get("LOUD"):
                print("hello", pset["a"])
            return {"y": pset["a"]}
    ''')
    assert p.sweepc("build", "-j", "2").code == 0
    assert (p.dir("work[a=1]") / "sweepc.log").read_text() == "hello 1\n"
    assert not (p.dir("work[a=2]") / "sweepc.log").exists()
    assert not (p.dir("work[a=4]") / "sweepc.log").exists()
    assert (p.dir("work[a=2]") / "pset.json").exists() and (p.dir("work[a=2]") / ".sweepc-job").exists()
    (p.root / "model.py").write_text((p.root / "model.py").read_text().replace("% 2", "% 2 == 0 and not 1"))
    assert p.sweepc("build", "-j", "2").code == 0
    assert not (p.dir("work[a=1]") / "sweepc.log").exists()  # the old one is gone with the old run
    assert sweepc.load(p.root / "sweepfile").results()["y"].tolist() == [1, 2, 3, 4]


def test_a_failure_stops_the_build_before_the_pending_jobs(local_project):
    # without -k: what no worker had begun is not run (the worker's queue, about
    # 50 ms of work, may still run)
    p = local_project.write(GRID.replace("[1, 2, 3, 4]", "range(0, 2000)"))
    write_module(p, '''
        import time
        def run(pset):
            if pset["a"] == 0:
                raise ValueError("first")
            time.sleep(0.002)
            return {"y": pset["a"]}
    ''')
    r = p.sweepc("build", "-j", "1")
    assert r.code == 1, r
    s = summary(r.out)
    done, failed, not_started = (int(x.split()[0]) for x in s.split(", ")[:3])
    assert failed == 1 and done + failed + not_started == 2000
    assert done < 100, s  # (a queue of about 50 ms at 2 ms a task, and replies taken in before the stop)
    assert s.split(", ")[2].endswith("not started (use -k to keep going after a failure)")


def test_a_failure_amid_many_trivial_jobs_runs_only_what_the_workers_held(local_project):
    # trivial jobs: 2048 in flight, the workers fed while sweepc records ends;
    # after the failure only what the two workers had queued (~50 ms, at most
    # MAX_QUEUE each) still runs, never the jobs waiting in the pool
    p = local_project.write(GRID.replace("[1, 2, 3, 4]", "range(0, 6000)"))
    write_module(p, '''
        def run(pset):
            if pset["a"] == 3000:
                raise ValueError("midway")
            return {"y": pset["a"]}
    ''')
    r = p.sweepc("build", "-j", "2")
    assert r.code == 1, r
    s = summary(r.out)
    done, failed, not_started = (int(x.split()[0]) for x in s.split(", ")[:3])
    assert failed == 1 and done + failed + not_started == 6000, s
    assert 2900 <= done <= 3000 + 3 * pypool.MAX_QUEUE, s  # (+MAX_QUEUE: replies taken in with the failure's)


def test_rules_in_two_folders_each_import_their_own_siblings_in_one_worker(local_project):
    # a/model.py and b/model.py both `import util`: with one worker serving both
    # rules, rb's jobs got a/util.py (the module found by name in sys.modules),
    # silently. And a resource.py or json.py in the project folder broke every
    # python: rule (the worker found it before the standard library's).
    p = local_project.write(
        'param x = [1, 2, 3]\nrule ra over x:\n    python: "a/model.py:run"\nrule rb over x:\n    python: "b/model.py:run"\n'
    )
    for d in ("a", "b"):
        (p.root / d).mkdir()
        write_module(p, f"""
            import util

            def run(pset):
                import late  # imported at call time: its folder's too
                return {{"who": "{d}", "u": util.U, "l": late.L}}
        """, f"{d}/model.py")
        (p.root / d / "util.py").write_text(f"U = 'util of {d}'\n")
        (p.root / d / "late.py").write_text(f"L = 'late of {d}'\n")
    (p.root / "resource.py").write_text("X = 1\n")
    (p.root / "json.py").write_text("X = 1\n")
    for argv in (("build", "-j", "1"), ("build", "-j", "2", "--force", "ra", "--force", "rb")):
        r = p.sweepc(*argv)
        assert r.code == 0, r
        for rule, d in (("ra", "a"), ("rb", "b")):
            df = sweepc.load(p.root / "sweepfile").results(rule)
            assert set(zip(df["who"], df["u"], df["l"])) == {(d, f"util of {d}", f"late of {d}")}, (argv, rule, df)


def test_a_module_in_a_package_of_the_project_imports_the_package(local_project):
    # pkg/model.py doing `from pkg import util` imported through the project folder, first
    # on sys.path; it is last now (after the standard library, which a json.py of the
    # project's hid from the worker), and the package still imports
    p = local_project.write('param x = [1, 2]\nrule r over x:\n    python: "pkg/model.py:run"\n')
    (p.root / "pkg").mkdir()
    (p.root / "pkg" / "__init__.py").write_text("")
    (p.root / "pkg" / "util.py").write_text("K = 10\n")
    write_module(p, """
        import json

        from pkg import util

        def run(pset):
            return {"y": pset["x"] * util.K, "dumps": json.dumps([1])}
    """, "pkg/model.py")
    (p.root / "json.py").write_text("X = 1\n")
    r = p.sweepc("build", "-j", "2")
    assert r.code == 0, r
    df = sweepc.load(p.root / "sweepfile").results("r")
    assert sorted(zip(df["x"], df["y"], df["dumps"])) == [(1, 10, "[1]"), (2, 20, "[1]")]


def test_the_worker_knows_sweepcs_file_names():
    # pyworker.py is standard library only: its copies of the names must agree
    from sweepc.backends.local import pyworker
    from sweepc.lang import graph

    assert (pyworker.LOG_NAME, pyworker.PSET_JSON_NAME, pyworker.MARKER_NAME) == (graph.LOG_NAME, graph.PSET_JSON_NAME, graph.MARKER_NAME)
    from sweepc.backends import pyjob

    assert (pyjob.RESULT_NAME, pyjob.INPUT_LIST_NAME) == (graph.PYTHON_RESULT_NAME, graph.INPUT_LIST_NAME)
    from sweepc.backends import jobdir

    assert pyjob.MAX_DEPTH == jobdir.MAX_DEPTH


def test_the_function_may_not_return_any_column_sweepc_fills():
    # pyjob.py runs on nodes without sweepc: its copy of the reserved keys must
    # cover every bookkeeping column of the results table
    from sweepc.backends import jobdir, pyjob

    assert jobdir.RESERVED_KEYS <= pyjob.RESERVED_KEYS
    for key in ("_attempts", "_cpu_s", "_rule"):
        with pytest.raises(pyjob.JobError) as e:
            pyjob.check_result({key: 1}, {"a": 1})
        assert str(e.value) == f"the function returned key '{key}', which is a column sweepc fills itself; rename the result"


def test_a_build_whose_project_folder_is_removed_ends_without_a_traceback(local_project):
    # The workers that fail after it is gone cannot be replaced (a new
    # worker's working folder is the project): the tasks left end as failed
    # to start, and the build ends. It used to wait for them for ever at
    # 50% CPU (their ends were never handed on), and its summary then failed
    # on os.getcwd().
    p = local_project.write('param a = range(0, 40)\n\nrule f over a:\n    python: "model.py:run"\n')
    write_module(p, "import time\n\ndef run(pset):\n    time.sleep(0.3)\n    return {'b': pset['a']}\n")
    proc = p.spawn("build", "-j", "2", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: len(list((p.root / "calc" / "f").glob("*/*/sweepc-result.json"))) >= 2, what="two jobs to end")
        # (the workers go on making job folders while it is removed: again until it is gone)
        wait_until(lambda: shutil.rmtree(p.root, ignore_errors=True) or not p.root.exists(), what="the project to be removed")
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert (proc.returncode, err) == (1, "")
    last = out.splitlines()[-1]
    assert " failed" in last and last.startswith("sweepc: ") and "Traceback" not in out, out


def test_a_python_function_gets_each_value_of_its_pset_as_it_is(local_project):
    p = local_project.write(
        'param s = ["é \\"q\\" \\\\ x", "☃"]\nparam x = [0.1, -2.5e300]\nparam b = [true]\nparam n = [1180591620717411303424]\n'
        'sweep g = s * x * b * n\n\nrule work over g:\n    python: "model.py:run"\n')
    write_module(p, """
    import json
    def run(pset):
        return {"seen": json.dumps({k: pset[k] for k in ("s", "x", "b", "n")}, sort_keys=True)}
    """)
    r = p.sweepc("build", "-j", "2")
    assert r.code == 0, r
    t = sweepc.load(p.root / "sweepfile").results()
    seen = sorted(t["seen"].tolist())
    want = sorted(json.dumps({"s": s, "x": x, "b": True, "n": 2**70}, sort_keys=True)
                  for s in ('é "q" \\ x', "☃") for x in (0.1, -2.5e300))
    assert seen == want


CHDIR_MODULE = '''
import os
def run(pset):
    os.makedirs(ELSEWHERE, exist_ok=True)
    os.chdir(ELSEWHERE)  # a function that moves: its results still go to its job folder
    return {"y": pset["a"] * 10}
'''


def test_a_function_that_changes_folder_still_has_its_results_in_its_job_folder(local_project):
    """os.chdir inside the function sent sweepc-result.json to the folder it
    moved to (to / for os.chdir("/"), over any file of that name there), and
    left the job's results missing, so every build ran it again. On every
    path: the pool's workers (local, dask), the stand-in command (one
    interpreter per pset), the SLURM runner."""
    import subprocess

    p = local_project.write(GRID)
    elsewhere = p.root.parent / "elsewhere"
    write_module(p, CHDIR_MODULE.replace("ELSEWHERE", repr(str(elsewhere))))
    r = p.sweepc("build", "-j", "2")
    assert r.code == 0, r
    assert summary(r.out) == "4 done, 0 up to date"
    assert not (elsewhere / "sweepc-result.json").exists()
    assert list(sweepc.load(p.root / "sweepfile").results()["y"]) == [10, 20, 30, 40]
    assert p.sweepc("build").out.startswith("sweepc: nothing to do (4 jobs up to date)")

    # the stand-in command
    g = sweepc.load(p.root / "sweepfile").graph
    d = g.job_dir(g.jobs[1])
    (d / "sweepc-result.json").unlink()
    run = subprocess.run(["bash", "-c", g.jobs[1].command], cwd=d, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert json.loads((d / "sweepc-result.json").read_text()) == {"y": 20}
    assert not (elsewhere / "sweepc-result.json").exists()


def test_a_function_that_changes_folder_on_the_slurm_runner_still_has_its_results_in_its_job_folder(local_project):
    p = local_project
    elsewhere = p.root.parent / "elsewhere"
    folder = render_slurm(p, '''
        param a = [1, 2]

        rule work over a:
            python: "model.py:run"
    ''', CHDIR_MODULE.replace("ELSEWHERE", repr(str(elsewhere))))
    proc = start_task(folder)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert {a: r["status"] for a, r in records(p).items()} == {1: "done", 2: "done"}
    assert json.loads((p.dir("work[a=2]") / "sweepc-result.json").read_text()) == {"y": 20}
    assert not (elsewhere / "sweepc-result.json").exists()


def test_the_progress_never_counts_more_python_jobs_running_than_workers(local_project):
    """A worker begins its next task as it ends one, and sweepc hears of both
    at once; reporting the start first made the progress say "3 running"
    under -j 2 whenever a line was printed at that moment."""
    p = local_project.write('''
        param a = range(0, 400)
        sweep s = a

        rule f over s:
            python: "model.py:run"
    ''')
    write_module(p, "def run(pset):\n    return {'b': pset['a'] * 2}\n")

    class Counting:
        def __init__(self) -> None:
            self.running = self.most = self.started = self.ended = 0
            self.unstarted_ends = 0
            self.live: set[int] = set()

        def job_started(self, job, attempt):
            self.live.add(job.id)
            self.running += 1
            self.started += 1
            self.most = max(self.most, self.running)

        def job_ended(self, job, outcome, will_retry):
            if job.id not in self.live:
                self.unstarted_ends += 1
            self.live.discard(job.id)
            self.running -= 1
            self.ended += 1

        def note(self, text):
            pass

    r = Counting()
    sweepc.load(p.root / "sweepfile").build(jobs=2, reporter=r)
    assert (r.started, r.ended, r.running, r.most, r.unstarted_ends) == (400, 400, 0, 2, 0)
    assert list(sweepc.load(p.root / "sweepfile").results()["b"]) == [a * 2 for a in range(400)]
