"""The compiled-graph cache (.sweepc/graph.cache, sweepc/lang/project.py):
a hit gives the graph compiling would; anything the compiler read that
changed, or a cache that cannot be trusted, means compiling again."""

from __future__ import annotations

import pickle

import pytest

import sweepc.lang.project as project
from sweepc.lang.project import load_graph

SWEEPFILE = '''
param a = [1, 2]
sweep rows = csv("table.csv")
sweep grid = a * rows

rule gen over grid:
    output: "out.txt"
    shell: "echo {a} {b} > {output}"

rule total:
    input: gen
    output: "total.txt"
    shell: "cat {input} > {output}"
'''


@pytest.fixture
def built(local_project):
    p = local_project.write(SWEEPFILE, **{"table.csv": "b\n10\n20\n"})
    r = p.sweepc("build", "-j", "2")
    assert r.code == 0, r
    return p


def _compiles(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the compiler's runs from now on."""
    import sweepc.lang.compiler as compiler

    calls: list[int] = []
    real = compiler.compile

    def counting(*args, **kw):  # type: ignore[no-untyped-def]
        calls.append(1)
        return real(*args, **kw)

    monkeypatch.setattr(compiler, "compile", counting)
    return calls


def test_a_build_writes_the_cache_and_the_next_command_uses_it(built, monkeypatch):
    cache = built.root / ".sweepc" / "graph.cache"
    assert cache.is_file()
    calls = _compiles(monkeypatch)
    monkeypatch.chdir(built.root)
    g = load_graph(built.root / "sweepfile")
    assert calls == []
    fresh = load_graph(built.root / "sweepfile", cache=False)
    assert calls == [1]
    assert g == fresh  # every field: psets, rules, jobs with their commands
    assert built.sweepc("build", "-n").out == "sweepc: nothing to do (5 jobs up to date)\n"


def test_an_edit_to_the_sweepfile_or_a_csv_it_reads_recompiles(built, monkeypatch):
    calls = _compiles(monkeypatch)
    (built.root / "table.csv").write_text("b\n10\n20\n30\n")
    out = built.sweepc("build", "-n").out
    assert out.splitlines()[-1] == "3 of 7 jobs to run (gen 2, total 1), 4 up to date"
    assert calls == [1]
    built.edit("param a = [1, 2]", "param a = [1, 2, 3]")
    assert built.sweepc("build", "-n").out.splitlines()[-1] == "6 of 10 jobs to run (gen 5, total 1), 4 up to date"
    assert calls == [1, 1]
    # same content again: the cache written for it is used (the build -n
    # before wrote it, .sweepc/ exists)
    assert built.sweepc("build", "-n").out.splitlines()[-1] == "6 of 10 jobs to run (gen 5, total 1), 4 up to date"
    assert calls == [1, 1]


@pytest.mark.parametrize("damage", ["truncate", "garbage", "other-format", "empty"])
def test_a_damaged_cache_is_ignored_and_rewritten(built, monkeypatch, damage):
    cache = built.root / ".sweepc" / "graph.cache"
    data = cache.read_bytes()
    cache.write_bytes(
        {"truncate": data[: len(data) // 2], "garbage": b"\x00junk" * 100,
         "other-format": b"sweepc-graph-cache 0\n" + data.split(b"\n", 1)[1], "empty": b""}[damage]
    )
    calls = _compiles(monkeypatch)
    assert built.sweepc("build", "-n").out == "sweepc: nothing to do (5 jobs up to date)\n"
    assert calls == [1]
    assert cache.read_bytes() == data  # written again, whole
    assert built.sweepc("build", "-n").out == "sweepc: nothing to do (5 jobs up to date)\n"
    assert calls == [1]


def test_a_cache_for_another_project_folder_is_not_used(built, tmp_path, monkeypatch):
    moved = built.moved_to(tmp_path / "elsewhere")
    calls = _compiles(monkeypatch)
    assert moved.sweepc("build", "-n").out == "sweepc: nothing to do (5 jobs up to date)\n"
    assert calls == [1]
    assert load_graph(moved.root / "sweepfile").root == moved.root


def test_commands_before_the_first_build_leave_no_state_folder(local_project):
    p = local_project.write(SWEEPFILE, **{"table.csv": "b\n10\n"})
    assert p.sweepc("check").code == 0
    assert p.sweepc("build", "-n").code == 0
    assert not (p.root / ".sweepc").exists()


def test_the_cache_holds_a_key_and_the_csv_digests(built):
    with open(built.root / ".sweepc" / "graph.cache", "rb") as f:
        assert f.readline() == project.CACHE_FORMAT
        key, files = pickle.load(f)
    assert len(key) == 64
    assert [p for p, _ in files] == [str(built.root / "table.csv")]


# -- the planner's cache of fingerprints (.sweepc/fingerprints.cache) ----------

WITH_SOURCE = '''
param a = [1, 2, 3]

rule gen over a:
    input: "src.txt"
    output: "out.txt"
    shell: "cat {input} > {output}; echo {a} >> {output}"
'''


@pytest.fixture
def with_source(local_project):
    p = local_project.write(WITH_SOURCE, **{"src.txt": "one\n"})
    assert p.sweepc("build", "-j", "2").code == 0
    assert (p.root / ".sweepc" / "fingerprints.cache").is_file()
    return p


def test_a_changed_source_reruns_its_jobs_whatever_the_cache_says(with_source):
    p = with_source
    (p.root / "src.txt").write_text("two\n")  # same size: the digest tells
    out = p.sweepc("build", "-n").out
    assert out.splitlines()[0] == "run gen[a=1]: input changed: src.txt"
    assert out.splitlines()[-1] == "3 of 3 jobs to run (gen 3), 0 up to date"
    assert p.sweepc("build").code == 0
    assert p.out("gen[a=2]").read_text() == "two\n2\n"
    (p.root / "src.txt").write_text("one\n")  # back to what the cache was first made for
    assert p.sweepc("build", "-n").out.splitlines()[-1] == "3 of 3 jobs to run (gen 3), 0 up to date"


@pytest.mark.parametrize("damage", [b"", b"junk", b"\x80\x05N."])
def test_a_damaged_fingerprint_cache_is_not_trusted(with_source, damage):
    p = with_source
    cache = p.root / ".sweepc" / "fingerprints.cache"
    cache.write_bytes(damage)
    assert p.sweepc("build", "-n").out == "sweepc: nothing to do (3 jobs up to date)\n"
    assert p.sweepc("build", "-n").out == "sweepc: nothing to do (3 jobs up to date)\n"
    (p.root / "src.txt").write_text("changed\n")
    assert p.sweepc("build", "-n").out.splitlines()[-1] == "3 of 3 jobs to run (gen 3), 0 up to date"


# -- samples a rule makes: the graph depends on a file a build writes ----------

SAMPLER = """\
import sys, numpy as np
np.save(sys.argv[2], np.array([[float(sys.argv[1]), 1.0], [2.0, 3.0]]))
"""

TWO_STAGE = """\
rule make_samples:
    input: script = "make_samples.py"
    output: "samples.npy"
    shell: "python3 {input.script} 0.5 {output}"

sweep s = npy(make_samples, columns=["x", "y"])

rule sim over s:
    output: "out.txt"
    shell: "echo {x} {y} > {output}"
"""


def test_samples_made_later_or_made_again_recompile(local_project, monkeypatch):
    p = local_project.write(TWO_STAGE, **{"make_samples.py": SAMPLER})
    assert p.sweepc("build", "-j", "2").code == 0
    calls = _compiles(monkeypatch)
    assert p.sweepc("build", "-n").out == "sweepc: nothing to do (3 jobs up to date)\n"
    assert calls == []  # the graph over the samples came from the cache
    assert sorted(j.label for j in p.graph.jobs if j.rule == "sim") == ["sim[x=0.5,y=1.0]", "sim[x=2.0,y=3.0]"]
    # the samples file is rewritten (as a rerun of its rule would): new psets at once
    import numpy as np

    samples = p.dir("make_samples") / "samples.npy"
    np.save(samples, np.array([[0.25, 1.0]]))
    assert sorted(j.label for j in p.graph.jobs if j.rule == "sim") == ["sim[x=0.25,y=1.0]"]
    # and gone again: the sweep is pending, as without the cache
    samples.unlink()
    r = p.sweepc("build", "-n")
    assert [j.label for j in p.graph.jobs if j.rule == "sim"] == []
    assert r.code == 0


def test_the_planner_hashes_are_the_documented_sums(tmp_path):
    """_hashes() writes text_hash() out for speed: it must give the sums that
    _Derived, dynamic_fingerprint() and every store written so far use:
    cmd = H(version, command, restart); inputs = H(upstream fps..., source
    digests...); fp = H(cmd, pset hash, inputs)."""
    from sweepc.hashing import text_hash
    from sweepc.plan import planner

    (tmp_path / "prep.py").write_text("print('x')\n")
    (tmp_path / "in-é.txt").write_text("data\n")
    (tmp_path / "sweepfile").write_text(
        'param a = [1, 2, "x y", "é"]\n'
        "rule gen over a:\n"
        '    input: s = "prep.py", t = "in-é.txt"\n'
        '    output: "o.txt"\n'
        '    shell: "python3 {input.s} {a} > {output}"\n'
        '    restart: "echo again {a} > {output}"\n'
        "rule square over a:\n"
        "    input: gen\n"
        '    output: "q.txt"\n'
        '    shell: "cat {input} > {output}"\n'
        "rule mean:\n"
        "    input: square\n"
        '    output: "m.txt"\n'
        '    shell: "cat {input.list} > {output}"\n'
    )
    g = load_graph(tmp_path / "sweepfile", cache=False)
    digests = {p: text_hash("digest of", p) for j in g.jobs for p in j.sources}
    fps, cmds, ins = planner._hashes(g, range(len(g.jobs)), digests)
    want: list[str] = []
    for i, job in enumerate(g.jobs):
        cmd = text_hash(planner.FINGERPRINT_VERSION, job.command, job.restart or "")
        inputs = text_hash(*[want[d] for d in job.deps], *[digests[p] for p in job.sources])
        want.append(text_hash(cmd, job.hash, inputs))
        assert (cmds[i], ins[i]) == (cmd, inputs), job.label
        derived = (planner._Derived(g, fps, digests, cmd=True)[i], planner._Derived(g, fps, digests, cmd=False)[i])
        assert derived == (cmd, inputs), job.label
    assert list(fps) == want
    assert any(job.restart for job in g.jobs) and any(job.sources for job in g.jobs) and len(g.jobs) == 9


def test_a_child_process_writes_the_cache_while_the_command_goes_on(built, monkeypatch):
    """Half a second at 100k psets that a build need not wait for: the cache
    of a big graph is written by a forked child, waited for before a cache
    is read and at the end of a command. What it writes reads back as the graph."""
    import os
    import threading

    monkeypatch.setattr(project, "FORK_WRITE_MIN_JOBS", 1)
    assert threading.active_count() == 1  # (else it is written in-process: the next test)
    built.edit("param a = [1, 2]", "param a = [1, 2, 3]")
    g = load_graph(built.root / "sweepfile")
    (pid,) = project._writers
    assert pid != os.getpid()
    project.wait_writes()
    assert project._writers == []
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reaped
    assert load_graph(built.root / "sweepfile") == g == load_graph(built.root / "sweepfile", cache=False)
    assert not list((built.root / ".sweepc").glob("*.tmp"))
    # a command waits for its writer before it returns
    built.edit("param a = [1, 2, 3]", "param a = [1, 2, 3, 4]")
    assert built.sweepc("build", "-n").out.splitlines()[-1] == "5 of 9 jobs to run (gen 4, total 1), 4 up to date"
    assert project._writers == []


def test_a_build_forks_the_cache_writer_once_it_has_planned(built, monkeypatch):
    """`sweepc build` holds the write of a big graph's cache while it plans
    (the child would take the planner's CPU and copy every page the planner
    touches) and starts it before its jobs run; `build -n`, and a build
    after an edit that changed no job, start it at once. Either way the
    next command loads the cache."""
    import sweepc.api as api

    monkeypatch.setattr(project, "FORK_WRITE_MIN_JOBS", 1)
    seen: list[tuple[int, int]] = []  # (writes held, writers forked) while planning
    real = api.make_plan

    def planning(*args, **kw):  # type: ignore[no-untyped-def]
        seen.append((len(project._held), len(project._writers)))
        return real(*args, **kw)

    monkeypatch.setattr(api, "make_plan", planning)
    built.edit("param a = [1, 2]", "param a = [1, 2, 3]")
    r = built.sweepc("build")
    assert (r.code, r.out.splitlines()[-1][:29]) == (0, "sweepc: 3 done, 4 up to date ")
    assert seen == [(1, 0)]
    assert project._held == project._writers == [] and project._holding == [False]
    compiles = _compiles(monkeypatch)
    assert built.sweepc("build", "-n").out == "sweepc: nothing to do (7 jobs up to date)\n"
    assert compiles == []
    seen.clear()
    built.edit("param a = [1, 2, 3]", "param a = [1, 2, 4]")
    assert built.sweepc("build", "-n").out.splitlines()[-1] == "3 of 7 jobs to run (gen 2, total 1), 4 up to date"
    assert seen == [(0, 1)]
    assert built.sweepc("build", "-n").out.splitlines()[-1] == "3 of 7 jobs to run (gen 2, total 1), 4 up to date"
    assert compiles == [1]
    # an edit that changes no job (a comment): nothing for the write to wait
    # for, most likely nothing to run; not held
    assert built.sweepc("build").code == 0
    seen.clear()
    built.edit("param a = [1, 2, 4]", "param a = [1, 2, 4]  # a comment")
    assert built.sweepc("build").out == "sweepc: nothing to do (7 jobs up to date)\n"
    assert seen == [(0, 1)]
    assert project._held == project._writers == [] and project._holding == [False]
    assert built.sweepc("build", "-n").out == "sweepc: nothing to do (7 jobs up to date)\n"
    assert compiles == [1, 1]


def test_with_another_thread_alive_or_a_small_graph_the_cache_is_written_in_process(built, monkeypatch):
    import threading

    built.edit("param a = [1, 2]", "param a = [1, 2, 5]")
    load_graph(built.root / "sweepfile")
    assert project._writers == []  # 7 jobs: < FORK_WRITE_MIN_JOBS
    monkeypatch.setattr(project, "FORK_WRITE_MIN_JOBS", 1)
    stop = threading.Event()
    t = threading.Thread(target=stop.wait)
    t.start()
    try:
        built.edit("param a = [1, 2, 5]", "param a = [1, 2, 3]")
        g = load_graph(built.root / "sweepfile")
        assert project._writers == []
    finally:
        stop.set()
        t.join()
    got = load_graph(built.root / "sweepfile")
    assert got is not g and got.jobs == g.jobs and project.graph_key(got) == project.graph_key(g)


def test_a_csv_changed_and_changed_back_reruns_the_gather_over_it(local_project):
    """Fingerprints are cached under the graph's key with the digests of the
    files the compiler read: under the cache key alone (the sweepfile's text),
    the fingerprints made for one CSV were taken for another with as many
    rows, and the gather counted as up to date over the wrong inputs."""
    p = local_project.write(
        'sweep rows = csv("table.csv")\n'
        "rule gen over rows:\n"
        '    output: "out.txt"\n'
        '    shell: "echo {b} > {output}"\n'
        "rule total:\n"
        "    input: gen\n"
        '    output: "total.txt"\n'
        '    shell: "cat {input} > {output}"\n',
        **{"table.csv": "b\n10\n20\n"},
    )
    assert p.sweepc("build").code == 0
    (p.root / "table.csv").write_text("b\n10\n30\n")
    assert p.sweepc("build").code == 0
    assert p.out("total").read_text() == "10\n30\n"
    (p.root / "table.csv").write_text("b\n10\n20\n")
    assert p.sweepc("build", "-n").out == "run total: command changed\n1 of 3 jobs to run (total 1), 2 up to date\n"
    assert p.sweepc("build").code == 0
    assert p.out("total").read_text() == "10\n20\n"


def test_a_command_line_process_ends_once_its_cache_writer_has_written(built):
    """`sweepc ...` ends with os._exit (cli.app.exit_now: no teardown of every
    object, ~0.2 s at 100k psets): the forked writer of a build's held cache
    write is waited for, the atexit functions still run, and what the
    command printed is all there."""
    import subprocess
    import sys

    built.edit("param a = [1, 2]", "param a = [1, 2, 3]")
    code = ("import atexit, sys, sweepc.lang.project as p; p.FORK_WRITE_MIN_JOBS = 1; sys.argv = ['sweepc', 'build', '-j', '2']; "
            "atexit.register(lambda: open('atexit-ran', 'w').close()); "
            "from sweepc.cli.app import main; main(); raise SystemExit('main() returned')")
    r = subprocess.run([sys.executable, "-c", code], cwd=built.root, capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stderr) == (0, "")
    assert (built.root / "atexit-ran").exists()
    assert r.stdout.splitlines()[-1].startswith("sweepc: 3 done, 4 up to date in ")
    assert not list((built.root / ".sweepc").glob("*.tmp"))
    cached = project._read_cache(built.root / ".sweepc" / project.CACHE_NAME,
                                 project._key((built.root / "sweepfile").read_text(), built.root / "sweepfile"))
    assert cached is not None, "the cache was not written before the process ended"
    assert cached[0] == load_graph(built.root / "sweepfile", cache=False)


def test_under_a_profiler_the_command_line_process_exits_as_usual(built, tmp_path):
    # exit_now's os._exit would end `python -m cProfile -m sweepc` before it
    # writes its figures (benchmarks/bench.py --profile does just that)
    import pstats
    import subprocess
    import sys

    out = tmp_path / "noop.prof"
    r = subprocess.run([sys.executable, "-m", "cProfile", "-o", str(out), "-m", "sweepc", "build"],
                       cwd=built.root, capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stdout, r.stderr) == (0, "sweepc: nothing to do (5 jobs up to date)\n", "")
    # (the no-op certificate's check: plan/noop.py)
    assert any(fn[2] == "check" and fn[0].endswith("noop.py") for fn in pstats.Stats(str(out)).stats)  # type: ignore[attr-defined]


@pytest.mark.parametrize("certified", [True, False], ids=["certificate", "planner"])
def test_a_build_with_nothing_to_do_loads_neither_openssl_nor_the_heavy_libraries(local_project, certified):
    """Start-up (issue 11): a no-op imports only what it uses. hashlib's
    OpenSSL (libcrypto: 5-9 ms to load) is not needed to hash the graph
    cache's key; pandas, jinja2 and the template machinery are not needed at
    all. Answered by the no-op certificate (plan/noop.py), it imports neither
    the planner nor the API nor a backend either."""
    import subprocess
    import sys

    p = local_project.write('param a = range(0, 3)\n\nrule gen over a:\n    output: "out.txt"\n    shell: "echo {a} > {output}"\n')
    assert p.sweepc("build").code == 0
    if not certified:
        (p.root / ".sweepc" / "uptodate").unlink()
    code = ("import atexit, sys; sys.argv = ['sweepc', 'build']; "
            "atexit.register(lambda: open('modules', 'w').write('\\n'.join(sorted(sys.modules)))); "
            "from sweepc.cli.app import main; main()")
    r = subprocess.run([sys.executable, "-c", code], cwd=p.root, capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stdout, r.stderr) == (0, "sweepc: nothing to do (3 jobs up to date)\n", "")
    loaded = set((p.root / "modules").read_text().split("\n"))
    planned = {"sweepc.plan.planner", "sweepc.api", "sweepc.backends.local"}
    if certified:
        assert loaded.isdisjoint(planned), sorted(loaded & planned)
    else:
        assert planned <= loaded  # (it did plan)
    assert loaded.isdisjoint({"_hashlib", "hashlib", "pandas", "jinja2", "networkx", "sweepc.lang.templates",
                              "sweepc.lang.parser", "sweepc.lang.compiler"}), sorted(loaded & {"_hashlib", "hashlib", "pandas", "jinja2"})


def test_a_build_that_runs_jobs_loads_neither_psutil_nor_uuid(local_project):
    """Start-up (issue 11): psutil is needed only when a job's time limit
    passes (backends/local/limits.py), and a run id is made without the uuid
    module (which imports platform): ~15 ms of every build that runs something."""
    import subprocess
    import sys

    p = local_project.write('param a = range(0, 3)\n\nrule gen over a:\n    output: "out.txt"\n    resources: time = "00:10:00"\n'
                            '    shell: "echo {a} > {output}"\n')
    code = ("import atexit, sys; sys.argv = ['sweepc', 'build']; "
            "atexit.register(lambda: open('modules', 'w').write('\\n'.join(sorted(sys.modules)))); "
            "from sweepc.cli.app import main; main()")
    r = subprocess.run([sys.executable, "-c", code], cwd=p.root, capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stderr) == (0, ""), r.stdout
    assert r.stdout.endswith("sweepc: 3 done, 0 up to date in " + r.stdout.rsplit(" in ", 1)[1]), r.stdout
    loaded = set((p.root / "modules").read_text().split("\n"))
    assert "sweepc.backends.local.limits" in loaded  # (the jobs had a time limit)
    assert loaded.isdisjoint({"psutil", "uuid", "platform"}), sorted(loaded & {"psutil", "uuid", "platform"})
