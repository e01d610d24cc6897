"""After an edit of the sweepfile, the planner takes the fingerprints of the
jobs whose sums are made of the same texts from the graph cached before
(planner._Reuse, lang.project.earlier_jobs): adding psets hashes the new
jobs and the gathers, not every job. The values must be exactly those made
afresh, and every reason to rerun still holds. Real builds of a tmp project."""

from __future__ import annotations

import hashlib
import io
import pickle

import pytest

import sweepc.lang.project as project
from sweepc.lang.project import load_graph
from sweepc.plan import planner

SWEEPFILE = """
param a = [1, 2, 3]
param b = [10, 20]
sweep grid = a * b

rule gen over grid:
    input: "src-{b}.txt"
    output: "out.txt"
    shell: "cat {input} > {output}; echo {a} >> {output}"

rule square over grid:
    input: gen
    output: "sq.txt"
    shell: "cat {input} > {output}"

rule mean over grid by b:
    input: square
    output: "mean.txt"
    shell: "cat {input} > {output}"
"""


@pytest.fixture
def built(local_project):
    p = local_project.write(SWEEPFILE, **{"src-10.txt": "ten\n", "src-20.txt": "twenty\n"})
    assert p.sweepc("build", "-j", "2").code == 0
    assert p.sweepc("build", "-n").out == "sweepc: nothing to do (14 jobs up to date)\n"
    return p


def hashed(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the SHA-256 sums the planner makes of fingerprints from now on."""
    made: list[int] = []
    real = hashlib.sha256

    def counting(*args):  # type: ignore[no-untyped-def]
        made.append(1)
        return real(*args)

    monkeypatch.setattr(planner, "bulk_sha256", lambda: counting)
    return made


def fingerprints(p, cache: bool = True) -> list[str]:
    """Every job's fingerprint as a plan of the project makes it (cache=False:
    from a graph compiled afresh, with no earlier graph to take any from)."""
    from sweepc.plan.store import Store

    g = load_graph(p.root / "sweepfile", cache=cache)
    if not cache:
        project._keys.clear()
    store = Store.open(p.root, create=False)
    try:
        digests, _, _, _ = planner._source_digests(g, store, range(len(g.jobs)))
    finally:
        store.close()
    return list(planner._hashes(g, range(len(g.jobs)), digests)[0])


@pytest.mark.parametrize("edit", [
    ("param a = [1, 2, 3]", "param a = [1, 2, 3, 4]"),  # psets added: new jobs, gathers change
    ("param a = [1, 2, 3]", "param a = [0, 1, 2, 3]"),  # added first: every pset moves
    ("param b = [10, 20]", "param b = [20]"),  # psets removed
    ('shell: "cat {input} > {output}"\n\nrule mean', 'shell: "cat {input} >{output}"\n\nrule mean'),  # a command, and downstream
])
def test_the_fingerprints_taken_are_those_made_afresh(built, edit):
    built.edit(*edit)
    if "[20]" in edit[1]:
        (built.root / "src-10.txt").unlink()
    reused = fingerprints(built)
    assert reused == fingerprints(built, cache=False)


def test_adding_psets_hashes_only_the_new_jobs_and_the_gathers(built, monkeypatch):
    built.edit("param a = [1, 2, 3]", "param a = [1, 2, 3, 4]")
    made = hashed(monkeypatch)
    out = built.sweepc("build", "-n").out
    assert out.splitlines()[-1] == "6 of 18 jobs to run (gen 2, square 2, mean 2), 12 up to date"
    # 3 sums a job: gen[a=4,b=*], square[a=4,b=*] and the two means; no other job is hashed
    assert len(made) == 3 * 6


def test_adding_psets_with_a_source_changed_too_reruns_its_jobs(built):
    built.edit("param a = [1, 2, 3]", "param a = [1, 2, 3, 4]")
    (built.root / "src-20.txt").write_text("twenty, edited\n")
    out = built.sweepc("build", "-n").out
    assert out == (
        "run gen[a=1,b=20]: input changed: src-20.txt\n"
        "run gen[a=2,b=20]: input changed: src-20.txt\n"
        "run gen[a=3,b=20]: input changed: src-20.txt\n"
        "run gen[a=4,b=10]: never built\n"
        "run gen[a=4,b=20]: never built\n"
        "run square[a=1,b=20]: upstream gen[a=1,b=20] will run\n"
        "run square[a=2,b=20]: upstream gen[a=2,b=20] will run\n"
        "run square[a=3,b=20]: upstream gen[a=3,b=20] will run\n"
        "run square[a=4,b=10]: never built\n"
        "run square[a=4,b=20]: never built\n"
        "run mean[b=10]: command changed\n"
        "run mean[b=20]: command changed\n"
        "12 of 18 jobs to run (gen 5, square 5, mean 2), 6 up to date\n"
    )
    assert built.sweepc("build").code == 0
    assert built.out("gen[a=3,b=20]").read_text() == "twenty, edited\n3\n"
    assert built.sweepc("build", "-n").out == "sweepc: nothing to do (18 jobs up to date)\n"


def test_adding_psets_with_a_command_changed_too_reruns_its_rule(built):
    built.edit("param a = [1, 2, 3]", "param a = [1, 2, 3, 4]")
    built.edit("echo {a} >> {output}", "echo a={a} >> {output}")
    lines = built.sweepc("build", "-n").out.splitlines()
    assert lines[:3] == ["run gen[a=1,b=10]: command changed", "run gen[a=1,b=20]: command changed", "run gen[a=2,b=10]: command changed"]
    assert lines[-1] == "18 of 18 jobs to run (gen 8, square 8, mean 2), 0 up to date"
    assert built.sweepc("build").code == 0
    assert built.out("square[a=2,b=10]").read_text() == "ten\na=2\n"
    assert built.sweepc("build", "-n").out == "sweepc: nothing to do (18 jobs up to date)\n"


def test_a_damaged_earlier_cache_means_hashing_everything_with_the_same_answer(built, monkeypatch):
    cache = built.root / ".sweepc" / "graph.cache"
    data = cache.read_bytes()
    # the part read after an edit (the columns for reuse, after the format
    # line, the pickled header and the offsets) damaged, length kept
    f = io.BytesIO(data)
    f.readline()
    pickle.load(f)
    at = f.tell() + project._OFFSETS.size
    cache.write_bytes(data[:at + 20] + b"\x00" * 40 + data[at + 60:])
    built.edit("param a = [1, 2, 3]", "param a = [1, 2, 3, 4]")
    made = hashed(monkeypatch)
    assert built.sweepc("build", "-n").out.splitlines()[-1] == "6 of 18 jobs to run (gen 2, square 2, mean 2), 12 up to date"
    assert len(made) == 3 * 18


MANY = SWEEPFILE.replace("param a = [1, 2, 3]", "param a = range(0, 100)")


@pytest.mark.parametrize("edit", [
    None,  # psets added only
    ("src-20.txt", "twenty, edited\n"),  # half of gen's jobs (b=20), and the square jobs over them
    ("sweepfile", "param b = [10, 20, 30]"),  # psets added amid the others (a * b: every third)
])
def test_many_jobs_take_the_fingerprints_made_afresh(local_project, monkeypatch, edit):
    """Hundreds of jobs (psets found where they were, then by their hash
    after 64 misses): the values taken are those made afresh, and only the
    jobs that changed, or whose input job's fingerprint did, are hashed."""
    p = local_project.write(MANY, **{"src-10.txt": "ten\n", "src-20.txt": "twenty\n", "src-30.txt": "thirty\n"})
    assert p.sweepc("build", "-j", "2").code == 0
    p.edit("param a = range(0, 100)", "param a = range(0, 110)")
    if edit is not None and edit[0] == "sweepfile":
        p.edit("param b = [10, 20]", edit[1])
    elif edit is not None:
        (p.root / edit[0]).write_text(edit[1])
    made = hashed(monkeypatch)
    reused = fingerprints(p)
    monkeypatch.undo()
    assert reused == fingerprints(p, cache=False)
    # 3 sums a job: gen and square over the new psets (and those over src-20.txt), every mean (its inputs grew);
    # and the digest of the edited source file (src-20.txt) or the new one (src-30.txt)
    hashed_jobs = {None: 2 * 10 * 2 + 2, "src-20.txt": 2 * 110 + 2 * 10 + 2, "sweepfile": 2 * (110 * 3 - 200) + 3}[edit and edit[0]]
    assert len(made) == 3 * hashed_jobs + (edit is not None)
