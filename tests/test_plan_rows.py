"""What the planner reads of the state store (issue 11, +N psets at 100k):
the rows of the jobs that are not up to date, one by one, never the whole
table for a build that runs a few jobs; the plan's rows of the jobs it runs
stay as they were before the build changed them; a gather over many inputs
names the one rebuilt with one query. Real builds of a tmp project."""

from __future__ import annotations

import threading

import pytest

import sweepc
from sweepc.plan import store as store_mod
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


def test_adding_psets_reads_only_the_rows_of_jobs_that_run(built):
    built.edit("range(0, 20)", "range(0, 22)")
    p, sent = traced_plan(built)
    assert [built.graph.jobs[i].label for i in p.run] == ["gen[i=20]", "gen[i=21]", "square[i=20]", "square[i=21]", "mean"]
    rows = [q for q in sent if "FROM jobs" in q and "fingerprint, cmd_hash" in q]
    # the new jobs have no row (Store.states() said so); the gather's is read alone
    assert rows == ["SELECT rule, hash, status, fingerprint, cmd_hash, inputs_hash, exit_code, start, end, host, max_rss_mb, "
                    "attempts, backend, backend_job_id, run_id, params, cpu_s FROM jobs WHERE rule='mean' AND hash='"
                    + built.job("mean").hash + "'"]
    assert p.reasons[p.run[-1]][0].text == "upstream square[i=20] will run"


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
