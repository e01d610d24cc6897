"""What the planner reads of the state store (issue 11, +N psets at 100k):
the rows of the jobs that are not up to date, one by one, never the whole
table for a build that runs a few jobs; the plan's rows of the jobs it runs
stay as they were before the build changed them; a gather over many inputs
names the one rebuilt with one query. Real builds of a tmp project."""

from __future__ import annotations

import sqlite3
import threading

import pytest

import sweepc
from sweepc.plan import store as store_mod
from sweepc.plan import planner
from sweepc.plan.planner import plan
from sweepc.plan.store import Store

# 20 psets: a gather over more inputs than _which_input reads one by one
SWEEPFILE = """
param i = range(0, 20)

rule gen over i:
    output: "out.txt"
    shell: "echo {i} > {output}"

rule square over i:
    input: gen
    output: "sq.txt"
    shell: "cat {input} > {output}"

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


def traced_plan(p, explain: bool = False):
    """The plan of the whole project, and every statement the planner sent to the store."""
    g = sweepc.load(p.root / "sweepfile").graph
    store = Store.open(p.root)
    sent: list[str] = []
    store.conn.set_trace_callback(sent.append)
    try:
        return plan(g, store, range(len(g.jobs)), explain=explain), sent
    finally:
        store.close()


def row_reads(sent: list[str]) -> list[str]:
    """The jobs whose whole row the planner read, as rule/hash."""
    q = ("SELECT rule, hash, status, fingerprint, cmd_hash, inputs_hash, exit_code, start, end, host, max_rss_mb, "
         "attempts, backend, backend_job_id, run_id, params, cpu_s FROM jobs WHERE rule='")
    return [s[len(q):].replace("' AND hash='", "/").rstrip("'") for s in sent if s.startswith(q)]


STATES_READ = "SELECT DISTINCT rule FROM jobs"  # Store.states(): every row's state


def test_adding_psets_reads_only_the_rows_of_jobs_that_run(built):
    (built.root / ".sweepc" / "uptodate").unlink()  # (no certificate: see the next test)
    built.edit("range(0, 20)", "range(0, 22)")
    p, sent = traced_plan(built)
    assert [built.graph.jobs[i].label for i in p.run] == ["gen[i=20]", "gen[i=21]", "square[i=20]", "square[i=21]", "mean"]
    # the new jobs have no row (Store.states() said so); the gather's is read alone
    assert STATES_READ in sent
    assert row_reads(sent) == [f"mean/{built.job('mean').hash}"]
    assert p.reasons[p.run[-1]][0].text == "upstream square[i=20] will run"


def test_with_the_certificate_of_the_graph_before_no_state_is_read(built):
    """The build that made `built` left a no-op certificate of its graph at the
    store's generation of now: the planner of the grown graph knows the rows
    of the 41 jobs it had without reading them, and reads the rows of the new
    ones alone (they have none), and the gather's."""
    built.edit("range(0, 20)", "range(0, 22)")
    p, sent = traced_plan(built)
    assert [built.graph.jobs[i].label for i in p.run] == ["gen[i=20]", "gen[i=21]", "square[i=20]", "square[i=21]", "mean"]
    assert STATES_READ not in sent
    new = [built.job(label) for label in ("gen[i=20]", "gen[i=21]", "square[i=20]", "square[i=21]")]
    assert row_reads(sent) == [f"{j.rule}/{j.hash}" for j in new] + [f"mean/{built.job('mean').hash}"]
    assert [p.reasons[i][0].text for i in p.run] == ["never built"] * 4 + ["upstream square[i=20] will run"]


def test_the_plans_rows_are_as_they_were_before_the_build(built):
    built.edit("range(0, 20)", "range(0, 21)")
    mean = built.job("mean")
    before = built.rows()["mean"]
    got = []
    res = sweepc.load(built.root / "sweepfile").build(on_plan=got.append)
    assert res.summary.done == 3
    (p,) = got
    new = built.job("gen[i=20]")
    # the store now says done with other fingerprints; the plan says what was there before it ran
    after = built.rows()
    assert after["mean"]["fingerprint"] != before["fingerprint"] and after["gen[i=20]"]["status"] == "done"
    assert (p.records[(mean.rule, mean.hash)].status, p.records[(mean.rule, mean.hash)].fingerprint) == ("done", before["fingerprint"])
    assert (new.rule, new.hash) not in p.records and p.records.get((new.rule, new.hash)) is None
    # and every other row, read once the store is closed, from another thread too
    sq = built.job("square[i=3]")
    seen = []
    t = threading.Thread(target=lambda: seen.append(p.records[(sq.rule, sq.hash)].fingerprint))
    t.start()
    t.join()
    assert seen == [after["square[i=3]"]["fingerprint"]]
    assert len(p.records) == 41  # the rows from before: not gen[i=20] and square[i=20], which had none


def test_a_gather_names_the_input_rebuilt_after_it(built):
    built.edit('shell: "cat {input} > {output}"', 'shell: "cat {input} >{output}"')
    assert built.sweepc("build", "square[i=7]").code == 0
    lines = built.sweepc("build", "-n").out.splitlines()
    assert lines[-2:] == ["run mean: input changed: square[i=7] was rebuilt", "20 of 41 jobs to run (square 19, mean 1), 21 up to date"]


def test_past_the_fetch_limit_every_row_is_read_at_once_with_the_same_answers(built, monkeypatch):
    built.edit('shell: "cat {input} > {output}"', 'shell: "cat {input} >{output}"')
    one_by_one, sent = traced_plan(built, explain=True)
    whole = "SELECT rule, hash, status, fingerprint, cmd_hash, inputs_hash, exit_code, start, end, host, max_rss_mb, attempts, " \
            "backend, backend_job_id, run_id, params, cpu_s FROM jobs"
    assert whole not in sent
    monkeypatch.setattr(store_mod, "FETCH_LIMIT", 3)
    at_once, sent = traced_plan(built, explain=True)
    assert sent.count(whole) == 1
    assert at_once.run == one_by_one.run and len(at_once.run) == 21
    assert at_once.reasons == one_by_one.reasons
    assert dict(at_once.records) == dict(one_by_one.records) and len(at_once.records) == 41


def plan_of(p) -> tuple[dict[str, tuple[str, ...]], list[str]]:
    """The whole project's plan (job -> its reasons, every one) and the statements it sent."""
    got, sent = traced_plan(p)
    g = got.graph
    return {g.jobs[i].label: tuple(r.text for r in got.reasons[i]) for i in got.run}, sent


def by_hand(p, sql: str) -> None:
    conn = sqlite3.connect(p.root / ".sweepc" / "state.db")
    with conn:
        conn.execute(sql)
    conn.close()


@pytest.mark.parametrize("change", [
    "grow", "shrink", "shrink then grow", "command", "output gone", "failed by hand", "row gone by hand", "many new",
])
def test_rows_known_from_the_certificate_plan_as_rows_read(built, change, monkeypatch):
    """Whatever changed since the certificate was written, the plan made
    with the rows it vouches for is the plan made from the rows themselves
    (the certificate removed), reason for reason."""
    trusted = True
    if change == "grow":
        built.edit("range(0, 20)", "range(0, 23)")
    elif change == "shrink":
        built.edit("range(0, 20)", "range(0, 15)")
    elif change == "shrink then grow":
        # i = 15..19 leave the graph (their rows and folders stay), come back
        built.edit("range(0, 20)", "range(0, 15)")
        assert built.sweepc("build").code == 0
        built.edit("range(0, 15)", "range(0, 22)")
    elif change == "command":
        built.edit('shell: "cat {input} > {output}"', 'shell: "cat {input} >{output}"')
        built.edit("range(0, 20)", "range(0, 21)")
    elif change == "output gone":
        (built.graph.job_dir(built.job("square[i=4]")) / "sq.txt").unlink()
        built.edit("range(0, 20)", "range(0, 21)")
    elif change in ("failed by hand", "row gone by hand"):
        h = built.job("gen[i=6]").hash
        built.edit("range(0, 20)", "range(0, 21)")
        by_hand(built, f"UPDATE jobs SET status='failed', exit_code=3 WHERE hash='{h}' AND rule='gen'" if change == "failed by hand"
                else f"DELETE FROM jobs WHERE hash='{h}' AND rule='gen'")
        trusted = False  # (a write to the store voids the certificate)
    elif change == "many new":
        monkeypatch.setattr(planner, "TRUSTED_LOOKUPS", 3)
        built.edit("range(0, 20)", "range(0, 25)")
        trusted = False  # (past 3 rows to read one by one, they are read at once)
    got, sent = plan_of(built)
    assert (STATES_READ not in sent) == trusted
    (built.root / ".sweepc" / "uptodate").unlink()
    want, sent = plan_of(built)
    assert STATES_READ in sent
    assert got == want
    assert got  # (every change makes something run)


def test_the_certificate_vouches_only_for_its_graph_fingerprints_store_and_planner(built, monkeypatch):
    from sweepc.lang.project import graph_key
    from sweepc.plan import noop

    g = sweepc.load(built.root / "sweepfile").graph
    store = Store.open(built.root)
    try:
        p = plan(g, store, range(len(g.jobs)))
        key, fps = graph_key(g), noop.fingerprints_digest(p.fingerprints)
        assert key is not None and fps is not None
        generation = store.generation()[1]
        assert noop.vouched(built.root, store, key, fps) == generation
        assert noop.vouched(built.root, store, "another graph", fps) is None
        assert noop.vouched(built.root, store, key, noop.fingerprints_digest(["0" * 32] * len(g.jobs))) is None
        with monkeypatch.context() as m:
            m.setattr(noop, "_code_id", lambda: "another planner")
            assert noop.vouched(built.root, store, key, fps) is None
        by_hand(built, "UPDATE jobs SET attempts = attempts WHERE rule = 'mean'")  # (a write that changes nothing still counts)
        assert store.generation()[1] == generation + 1
        assert noop.vouched(built.root, store, key, fps) is None
    finally:
        store.close()
    assert noop.fingerprints_digest(["not hex"]) is None


def test_a_certificate_that_names_no_fingerprints_vouches_for_nothing(built):
    """As one an earlier sweepc wrote: the planner then reads the rows."""
    import json

    path = built.root / ".sweepc" / "uptodate"
    fmt, head, rest = path.read_bytes().split(b"\n", 2)
    old = json.loads(head)
    del old["fps"], old["graph"]
    path.write_bytes(fmt + b"\n" + json.dumps(old).encode() + b"\n" + rest)
    built.edit("range(0, 20)", "range(0, 21)")
    got, sent = plan_of(built)
    assert STATES_READ in sent
    assert list(got) == ["gen[i=20]", "square[i=20]", "mean"]


SOURCED = """
param i = range(0, 6)

rule gen over i:
    input: "data.txt"
    output: "out.txt"
    shell: "cat {input} > {output}; echo {i} >> {output}"

rule square over i:
    input: gen
    output: "sq.txt"
    shell: "cat {input} > {output}"

rule mean:
    input: square, "data.txt"
    output: "mean.txt"
    shell: "cat {input.list} > {output}"
"""


def test_hashes_kept_from_a_first_plan_are_the_sums(local_project):
    """Nothing built yet: every job runs and is asked for its command and
    inputs hashes, which the planner keeps from making the fingerprints
    (_Packed) instead of making them again; they are the sums made anew."""
    p = local_project.write(SOURCED)
    (p.root / "data.txt").write_text("data\n")
    g = sweepc.load(p.root / "sweepfile").graph
    store = Store.open(p.root)
    try:
        got = plan(g, store, range(len(g.jobs)))
        assert len(got.run) == len(g.jobs) == 13
        assert isinstance(got.cmd_hashes[0], str)
        assert any(isinstance(part, planner._LaterPart) for part in (got.cmd_hashes, got.inputs_hashes))
        kept = [(got.cmd_hashes[i], got.inputs_hashes[i], got.fingerprints[i]) for i in range(len(g.jobs))]
        digests = {"data.txt": planner._file_digest(p.root / "data.txt")}
        anew = planner._Derived(g, got.fingerprints, digests, cmd=True), planner._Derived(g, got.fingerprints, digests, cmd=False)
        assert kept == [(anew[0].at(i), anew[1].at(i), got.fingerprints[i]) for i in range(len(g.jobs))]
    finally:
        store.close()
    # and a build records them
    assert p.sweepc("build").code == 0
    rows = p.rows()
    assert sorted((r["cmd_hash"], r["inputs_hash"], r["fingerprint"]) for r in rows.values()) == sorted(kept)
