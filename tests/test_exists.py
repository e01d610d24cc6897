"""plan/exists.py: which of many outputs are missing, looked for in threads
(issue 11: the no-op's and the planner's one access() per output), and the
planner's optimistic loop that looks for them all at once after it. Real
files in a tmp folder; the thread split is forced on short lists by
lowering the paths a thread takes."""

from __future__ import annotations

import os
import threading

import pytest

import sweepc
from sweepc.plan import exists
from sweepc.plan.planner import plan
from sweepc.plan.store import Store


@pytest.fixture
def folder(tmp_path):
    for k in range(40):
        if k % 7 != 3:
            (tmp_path / f"f{k}").write_text("x")
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    yield fd
    os.close(fd)


EXPECTED_MISSING = [k for k in range(40) if k % 7 == 3]


@pytest.fixture(params=[1, 3], ids=["one thread", "three threads"])
def threads(request, monkeypatch):
    monkeypatch.setattr(exists, "MIN_PER_THREAD", 1 if request.param > 1 else 10**9)
    monkeypatch.setattr(exists, "_cpus", lambda: request.param)
    return request.param


def test_missing_gives_every_missing_position_in_order(folder, threads):
    before = threading.active_count()
    assert exists.missing([f"f{k}" for k in range(40)], folder) == EXPECTED_MISSING
    assert exists.missing([os.fsencode(f"f{k}") for k in range(40)], folder) == EXPECTED_MISSING
    assert threading.active_count() == before, "every thread has ended when missing() returns"


def test_missing_first_only_gives_one_missing_position(folder, threads):
    got = exists.missing([f"f{k}" for k in range(40)], folder, first_only=True)
    assert len(got) == 1 and got[0] in EXPECTED_MISSING
    assert exists.missing([f"f{k}" for k in range(40) if k % 7 != 3], folder, first_only=True) == []


def test_a_path_that_cannot_be_looked_up_is_missing(folder, threads):
    paths = ["f0", "f\0", "f1", "nope/f2", "f2"]
    assert exists.missing(paths, folder) == [1, 3]


def test_no_paths_none_missing(folder, threads):
    assert exists.missing([], folder) == []


def test_threads_take_contiguous_parts_of_the_list(folder, monkeypatch):
    """With more threads than paths can fill, each takes at least MIN_PER_THREAD."""
    monkeypatch.setattr(exists, "MIN_PER_THREAD", 15)
    monkeypatch.setattr(exists, "_cpus", lambda: 4)
    started: list[int] = []
    real = threading.Thread.start

    def counting(self):
        started.append(1)
        real(self)

    monkeypatch.setattr(threading.Thread, "start", counting)
    assert exists.missing([f"f{k}" for k in range(40)], folder) == EXPECTED_MISSING
    assert len(started) == 1  # 40 paths // 15 = 2 parts: this thread and one more


def test_a_thread_that_cannot_start_leaves_its_part_to_this_one(folder, monkeypatch):
    monkeypatch.setattr(exists, "MIN_PER_THREAD", 1)
    monkeypatch.setattr(exists, "_cpus", lambda: 4)
    real = threading.Thread.start
    tries: list[int] = []

    def start(self):
        tries.append(1)
        if len(tries) == 2:
            raise RuntimeError("can't start new thread")
        real(self)

    monkeypatch.setattr(threading.Thread, "start", start)
    before = threading.active_count()
    assert exists.missing([f"f{k}" for k in range(40)], folder) == EXPECTED_MISSING
    assert len(tries) == 3 and threading.active_count() == before


# -- the planner: outputs looked for after its loop ----------------------------

SWEEPFILE = """
param i = range(0, 30)

rule gen over i:
    output: "out.txt"
    shell: "echo {i} > {output}"

rule square over i:
    input: gen
    output: one = "sq.txt", two = "sq2.txt"
    shell: "cat {input} > {output.one}; cat {input} > {output.two}"

rule mean:
    input: square
    output: "mean.txt"
    shell: "cat {input.list} > {output}"
"""


@pytest.fixture
def built(local_project):
    p = local_project.write(SWEEPFILE)
    assert p.sweepc("build", "-j", "2").code == 0
    return p


def whole_plan(p):
    g = sweepc.load(p.root / "sweepfile").graph
    store = Store.open(p.root)
    try:
        got = plan(g, store, range(len(g.jobs)), explain=False)
        return {g.jobs[i].label: tuple(r.text for r in got.reasons[i]) for i in got.run}
    finally:
        store.close()


def test_outputs_missing_anywhere_rerun_those_jobs_and_what_needs_them(built, threads):
    g = built.graph
    gen7 = next(j for j in g.jobs if j.label == "gen[i=7]")
    sq12 = next(j for j in g.jobs if j.label == "square[i=12]")
    (g.job_dir(gen7) / "out.txt").unlink()
    (g.job_dir(sq12) / "sq2.txt").unlink()
    assert whole_plan(built) == {
        "gen[i=7]": ("output missing: out.txt",),
        "square[i=7]": ("upstream gen[i=7] will run",),
        "square[i=12]": ("output missing: sq2.txt",),
        "mean": ("upstream square[i=7] will run",),
    }


def test_nothing_missing_nothing_to_run(built, threads):
    assert whole_plan(built) == {}
    (built.root / "calc" / "mean").rename(built.root / "mean-away")
    assert whole_plan(built) == {"mean": ("output missing: mean.txt",)}
