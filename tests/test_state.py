"""The state store and the build lock: one build per project, a lock left by a
dead build taken over, stores of another schema version or corrupt files
refused with a clear message (exit 2, no traceback), and the Store's own
promises (what a failed or planned row keeps).
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import time

import pytest

from sweepc.errors import StateError
from sweepc.plan.store import SCHEMA_VERSION, BuildLock, Outcome, Store

SLOW = '''
param a = [1]
sweep s = a

rule slow over s:
    output: "out.txt"
    shell: "sleep 30; echo {a} > {output}"

rule quick over s:
    output: "out.txt"
    shell: "echo {a} > {output}"
'''

QUICK = '''
param a = [1, 2]
sweep s = a

rule gen over s:
    output: "out.txt"
    shell: "echo {a} > {output}"
'''

LOCKED = "sweepc: another sweepc build is running in this project (pid "


def wait_until(predicate, timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _running_build(p) -> subprocess.Popen[str]:
    proc = p.spawn("build", "slow")
    wait_until(lambda: any(q.name() == "sleep" for q in p.job_processes()), what="the slow job")
    return proc


# ---------------------------------------------------------------- the lock


def test_a_second_build_fails_at_once_naming_the_running_one(local_project):
    p = local_project.write(SLOW)
    first = _running_build(p)
    try:
        t0 = time.monotonic()
        r = p.sweepc("build", "quick")
        assert time.monotonic() - t0 < 5, "the second build waited for the lock"
        assert (r.code, r.out) == (2, "")
        assert r.err.startswith(LOCKED + f"{first.pid} on ")
        assert ": sweepc build slow).\n  hint: wait for it to finish, or stop it with Ctrl-C / kill\n" in r.err
        assert "quick[a=1]" not in p.statuses()
        # the same from a real process
        r = p.run("build", "quick")
        assert r.code == 2
        assert r.err.startswith(LOCKED + f"{first.pid} on ")
        # reading is not building: a dry run and status still work
        assert p.sweepc("build", "-n").out.splitlines()[-1] == "2 of 2 jobs to run (slow 1, quick 1), 0 up to date"
        assert p.sweepc("status").code == 0
        # and clean refuses without claiming to have removed anything
        r = p.sweepc("clean", "outputs")
        assert (r.code, r.out) == (2, "")
        assert r.err.startswith(LOCKED)
        assert p.dir("slow[a=1]").is_dir()
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=20)
    assert first.returncode == 130
    # the lock went with the build
    r = p.sweepc("build", "quick")
    assert r.code == 0


def test_a_lock_left_by_a_killed_build_is_taken_over(local_project):
    p = local_project.write(SLOW)
    first = _running_build(p)
    lock = p.root / ".sweepc" / "build.lock"
    assert json.loads(lock.read_text())["pid"] == first.pid
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=10)
    p.kill_jobs()
    assert json.loads(lock.read_text())["pid"] == first.pid, "the file outlives the process; flock does not"
    r = p.sweepc("build", "quick")
    assert r.code == 0, r
    assert p.statuses()["quick[a=1]"] == "done"
    assert p.statuses()["slow[a=1]"] == "planned"
    # released again: empty and unlocked
    assert lock.read_text() == ""



def test_a_killed_build_is_a_killed_run_not_a_running_one(local_project):
    """A build killed by SIGKILL cannot record how it ended. `sweepc runs`
    shows it `running` only while it runs; once its process is gone the run
    is `killed`, and the next build records it so in the store."""
    p = local_project.write(SLOW)
    first = _running_build(p)

    def statuses() -> list[str]:
        return [r["status"] for r in json.loads(p.sweepc("runs", "--format", "json").out)]

    assert statuses() == ["running"]  # while it runs
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=10)
    p.kill_jobs()
    assert statuses() == ["killed"]  # no build runs it any more
    with sqlite3.connect(p.root / ".sweepc" / "state.db") as db:
        assert db.execute("SELECT status FROM runs").fetchall() == [("running",)]  # (not written by a reader)
    assert p.sweepc("build", "quick").code == 0
    assert statuses() == ["killed", "ok"]
    with sqlite3.connect(p.root / ".sweepc" / "state.db") as db:
        assert db.execute("SELECT status FROM runs ORDER BY seq").fetchall() == [("killed",), ("ok",)]

@pytest.mark.parametrize(
    "content", ['{"pid": 999999999, "host": "gone", "started": 0, "argv": ["sweepc", "build"]}', "garbage"], ids=["dead-pid", "garbage"]
)
def test_a_stale_lock_file_is_no_lock(local_project, content):
    p = local_project.write(QUICK)
    (p.root / ".sweepc").mkdir()
    (p.root / ".sweepc" / "build.lock").write_text(content)
    r = p.sweepc("build")
    assert r.code == 0, r
    assert set(p.statuses().values()) == {"done"}


def test_build_lock_unit(tmp_path):
    a, b = BuildLock(tmp_path), BuildLock(tmp_path)
    a.acquire(["sweepc", "build", "x"])
    with pytest.raises(StateError) as e:
        b.acquire(["sweepc", "build"])
    assert str(e.value).startswith(f"another sweepc build is running in this project (pid {os.getpid()} on ")
    assert ": sweepc build x)." in str(e.value)
    a.release()
    b.acquire(["sweepc", "build"])  # free again
    b.release()


# ---------------------------------------------------------------- versions and corruption


def _set_version(p, value: str) -> None:
    con = p.db()
    con.execute("UPDATE meta SET value=? WHERE key='schema_version'", (value,))
    con.commit()
    con.close()


@pytest.mark.parametrize(("version", "who", "hint"), [
    ("0", "an older", "  hint: move the store away to start over (every job will then rebuild)"),
    ("99", "a newer", "  hint: upgrade sweepc, or move the store away to start over (every job will then rebuild)"),
], ids=["schema-0", "schema-99"])
def test_a_store_of_another_schema_version_is_refused_clearly(local_project, version, who, hint):
    p = local_project.write(QUICK)
    assert p.sweepc("build").code == 0
    _set_version(p, version)
    message = (
        f"sweepc: the state store .sweepc/state.db was written by {who} sweepc "
        f"(schema {version}; this sweepc reads schema {SCHEMA_VERSION}).\n"
        f"{hint}: mv .sweepc/state.db .sweepc/state.db.v{version}\n"
    )
    for args in (["build"], ["build", "-n"], ["status"], ["clean", "outputs"], ["clean", "orphans", "-n"]):
        r = p.sweepc(*args)
        assert (r.code, r.out, r.err) == (2, "", message), args
    r = p.run("build")
    assert (r.code, r.err) == (2, message)
    assert "Traceback" not in r.err
    assert p.out("gen[a=1]").exists(), "a refused store must not cost any output"
    # following the hint starts over
    os.rename(p.root / ".sweepc/state.db", p.root / f".sweepc/state.db.v{version}")
    r = p.sweepc("build")
    assert r.code == 0 and r.out.splitlines()[-1].startswith("sweepc: 2 done, 0 up to date")


def test_a_store_with_a_garbled_schema_version_is_refused_without_a_traceback(local_project):
    p = local_project.write(QUICK)
    assert p.sweepc("build").code == 0
    _set_version(p, "one")
    r = p.run("build", "-n")
    assert r.code == 2
    assert r.err.startswith("sweepc: the state store .sweepc/state.db was written by an older sweepc (schema 0; ")
    assert "Traceback" not in r.err


def test_the_hint_is_a_path_that_works_from_where_sweepc_runs(local_project, monkeypatch, capsys):
    p = local_project.write(QUICK)
    assert p.sweepc("build").code == 0
    _set_version(p, "0")
    monkeypatch.chdir(p.root.parent)
    from sweepc.cli import main

    capsys.readouterr()
    assert main(["-C", "proj", "build", "-n"]) == 2
    err = capsys.readouterr().err
    assert "mv proj/.sweepc/state.db proj/.sweepc/state.db.v0\n" in err


@pytest.mark.parametrize(
    "garbage",
    [b"garbage\n", bytes(random.Random(0).randrange(256) for _ in range(4096)), b"SQLite format 3\x00" + b"\xff" * 200],
    ids=["text", "random-bytes", "bad-header"],
)
def test_a_corrupt_store_names_the_file_and_how_to_start_over(local_project, garbage):
    p = local_project.write(QUICK)
    (p.root / ".sweepc").mkdir()
    (p.root / ".sweepc" / "state.db").write_bytes(garbage)
    message = (
        "sweepc: the state store .sweepc/state.db is corrupt (file is not a database).\n"
        "  hint: move it away to start over (every job will then rebuild): mv .sweepc/state.db .sweepc/state.db.bad\n"
    )
    for args in (["build"], ["build", "-n"], ["status"]):
        r = p.sweepc(*args)
        assert (r.code, r.out, r.err) == (2, "", message), args
    r = p.run("build")
    assert (r.code, r.err) == (2, message)
    assert not (p.root / "calc").exists()
    os.rename(p.root / ".sweepc/state.db", p.root / ".sweepc/state.db.bad")
    assert p.sweepc("build").code == 0


def test_a_foreign_sqlite_file_is_not_taken_for_a_store(local_project):
    p = local_project.write(QUICK)
    (p.root / ".sweepc").mkdir()
    con = sqlite3.connect(p.root / ".sweepc" / "state.db")
    con.execute("CREATE TABLE other (x)")
    con.commit()
    con.close()
    r = p.sweepc("build")
    assert (r.code, r.err) == (2, "sweepc: .sweepc/state.db is not a sweepc state store.\n  hint: move it away: mv .sweepc/state.db .sweepc/state.db.bad\n")
    con = sqlite3.connect(p.root / ".sweepc" / "state.db")
    assert con.execute("SELECT name FROM sqlite_master").fetchall() == [("other",)], "the file was changed"
    con.close()


# ---------------------------------------------------------------- the Store itself


def _outcome(rule: str, h: str, status: str, fp: str | None, code: int | None) -> Outcome:
    return Outcome(rule, h, status, fp, fp and "c", fp and "i", code, 1.0, 2.0, "host", 1.5, 1, "local", None, "run")


def test_a_commit_records_its_outcomes_in_key_order_and_a_jobs_later_outcome_last(tmp_path):
    """Store.record sorts a commit's outcomes by (rule, hash) (the B-tree's
    pages in order); a job that ended twice in one commit (a failed attempt,
    then its retry) keeps the later end, whichever way round."""
    s = Store.open(tmp_path)
    try:
        keys = [("r", f"h{k}") for k in range(9, -1, -1)] + [("a", "z"), ("q", "h5")]
        s.mark_planned([(r, h, "{}") for r, h in keys], "run0")
        s.record([_outcome("r", "h3", "failed", None, 1), *(_outcome(r, h, "done", "fp", 0) for r, h in keys),
                  _outcome("r", "h7", "failed", None, 2)])
        recs = s.records()
        assert {k: (v.status, v.exit_code) for k, v in recs.items()} == {
            **{k: ("done", 0) for k in keys}, ("r", "h7"): ("failed", 2)}
    finally:
        s.close()


def test_store_rows_keep_the_last_good_fingerprint_through_planned_and_failed(tmp_path):
    s = Store.open(tmp_path)
    try:
        assert (tmp_path / ".sweepc" / "state.db").exists()
        s.mark_planned([("r", "h1", '{"a":1}')], "run0")
        [rec] = s.records().values()
        assert (rec.status, rec.fingerprint, rec.params) == ("planned", None, '{"a":1}')
        s.record([_outcome("r", "h1", "done", "fp1", 0)])
        rec = s.records()[("r", "h1")]
        assert (rec.status, rec.fingerprint, rec.cmd_hash, rec.inputs_hash, rec.exit_code) == ("done", "fp1", "c", "i", 0)
        # planned again: the old fingerprint stays (for --explain), the status does not
        s.mark_planned([("r", "h1", '{"a":1}')], "run1")
        rec = s.records()[("r", "h1")]
        assert (rec.status, rec.fingerprint) == ("planned", "fp1")
        # a failure never writes a fingerprint, nor erases the old one
        s.record([_outcome("r", "h1", "failed", "fp2", 3)])
        rec = s.records()[("r", "h1")]
        assert (rec.status, rec.fingerprint, rec.exit_code) == ("failed", "fp1", 3)
        s.delete([("r", "h1")])
        assert s.records() == {}
    finally:
        s.close()
    # reopens with the same schema version
    s = Store.open(tmp_path)
    try:
        assert s.conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == str(SCHEMA_VERSION)
        assert s.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        s.close()


def test_reading_a_project_without_a_store_creates_nothing(local_project):
    p = local_project.write(QUICK)
    for args in (["build", "-n"], ["status"], ["clean", "outputs", "-n"], ["clean", "orphans"]):
        assert p.sweepc(*args).code == 0, args
    assert not (p.root / ".sweepc").exists()
    s = Store.open(p.root, create=False)
    try:
        assert s.records() == {}
    finally:
        s.close()
    assert not (p.root / ".sweepc").exists()


def test_runs_are_recorded_one_per_build_that_ran_something(local_project):
    p = local_project.write(QUICK)
    assert p.sweepc("build").code == 0
    assert p.sweepc("build").code == 0  # nothing to do: no run
    p.out("gen[a=2]").unlink()
    assert p.sweepc("build").code == 0
    con = p.db()
    try:
        rows = con.execute("SELECT seq, status, ran, failed, uptodate, backend FROM runs ORDER BY seq").fetchall()
    finally:
        con.close()
    assert rows == [(0, "ok", 2, 0, 0, "local"), (1, "ok", 1, 0, 1, "local")]


def test_a_build_refused_before_anything_starts_records_no_run(local_project):
    p = local_project.write('''
        param a = [1]
        sweep s = a

        rule big over s:
            output: "out.txt"
            resources: cpus = 4
            shell: "echo {a} > {output}"
    ''')
    assert p.sweepc("build", "-j", "1").code == 2
    con = p.db()
    try:
        assert con.execute("SELECT status FROM runs").fetchall() == []
    finally:
        con.close()


def test_an_interrupted_build_records_what_it_ran(local_project):
    p = local_project.write('''
        param a = [1, 2]
        sweep s = a

        rule gen over s:
            output: "out.txt"
            shell: """
                if [ {a} = 2 ]; then kill -INT $SWEEPC_BUILD_PID; sleep 20; fi
                echo {a} > {output}
            """
    ''')
    r = p.run("build", "-j", "1")
    assert r.code == 130
    assert p.statuses() == {"gen[a=1]": "done", "gen[a=2]": "interrupted"}
    con = p.db()
    try:
        assert con.execute("SELECT status, ran FROM runs").fetchall() == [("interrupted", 1)]
    finally:
        con.close()


def test_a_schema_2_store_is_upgraded_in_place_and_keeps_its_rows(tmp_path):
    # schema 3 added jobs.cpu_s, 4 the store's id and generation, 5 jobs.values_json
    # and an unkeyed results history: a schema-2 store is upgraded when opened
    import sqlite3

    from sweepc.plan.store import Store

    Store.open(tmp_path).close()  # a current store, made a schema-2 one below
    con = sqlite3.connect(tmp_path / ".sweepc" / "state.db")
    con.executescript(
        "DROP TRIGGER jobs_insert; DROP TRIGGER jobs_update; DROP TRIGGER jobs_delete;"
        "DELETE FROM meta WHERE key IN ('generation', 'store_id');"
        "ALTER TABLE jobs DROP COLUMN cpu_s; ALTER TABLE jobs DROP COLUMN values_json; DROP TABLE results;"
        "CREATE TABLE results (rule TEXT NOT NULL, hash TEXT NOT NULL, run_id TEXT NOT NULL, start REAL, end REAL, "
        "host TEXT, exit_code INTEGER, max_rss_mb REAL, attempts INTEGER, backend TEXT, backend_job_id TEXT, "
        "values_json TEXT NOT NULL, PRIMARY KEY (rule, hash, run_id)) WITHOUT ROWID;"
        "UPDATE meta SET value='2' WHERE key='schema_version';"
        "INSERT INTO jobs (rule, hash, status, fingerprint, max_rss_mb, attempts, run_id) VALUES ('gen', 'ab12', 'done', 'fp', 12.5, 1, 'r2');"
        "INSERT INTO jobs (rule, hash, status, fingerprint, max_rss_mb, attempts, run_id) VALUES ('gen', 'cd34', 'failed', 'fp', 1.0, 1, 'r2');"
        "INSERT INTO results VALUES ('gen', 'ab12', 'r1', 1.0, 2.0, 'h', 0, 12.5, 1, 'local', NULL, '{\"x\": 1}');"
        "INSERT INTO results VALUES ('gen', 'ab12', 'r2', 3.0, 4.0, 'h', 0, 12.5, 1, 'local', NULL, '{\"x\": 2}');"
        "INSERT INTO results VALUES ('gen', 'cd34', 'r1', 1.0, 2.0, 'h', 0, 12.5, 1, 'local', NULL, '{\"x\": 3}');"
    )
    con.commit()
    con.close()
    s = Store.open(tmp_path)
    try:
        assert s.conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == "5"
        rec = s.records()[("gen", "ab12")]
        assert (rec.status, rec.fingerprint, rec.max_rss_mb, rec.cpu_s) == ("done", "fp", 12.5, None)
        # schema 5: the values of a job's latest run are in its row (none for a
        # job whose latest run failed), every run's in the history
        assert s.latest_results("gen") == {"ab12": ('{"x": 2}', None)}
        assert [(h.hash, h.run_id, h.values_json) for h in s.history("gen")] == [
            ("ab12", "r1", '{"x": 1}'), ("cd34", "r1", '{"x": 3}'), ("ab12", "r2", '{"x": 2}')]
        # schema 4: the store has an id and counts the changes of its job rows
        store_id, generation = s.generation()
        assert len(store_id) == 32 and generation == 1  # (the upgrade's change of the done row counted)
        s.set_status([("gen", "ab12")], "failed")
        assert s.generation() == (store_id, 2)
    finally:
        s.close()


def test_every_change_of_a_job_row_counts_whoever_makes_it(tmp_path):
    """The generation a no-op certificate names (plan/noop.py) moves on with
    each write of sweepc that inserts, changes or deletes job rows (once per
    write, however many rows), and with each row changed by hand (sqlite3),
    before and after sweepc's writes (which drop the counting triggers only
    for their own transaction); a write by another connection leaves a
    store's `seen` unknown, its own writes keep it known."""
    import sqlite3

    from sweepc.plan.store import Outcome, Store

    def triggers() -> list[str]:
        return sorted(r[0] for r in s.conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'"))

    def by_hand(sql: str) -> None:
        con = sqlite3.connect(tmp_path / ".sweepc" / "state.db")
        con.execute(sql)
        con.commit()
        con.close()

    s = Store.open(tmp_path)
    try:
        store_id, g0 = s.generation()
        s.states()
        assert s.seen == g0
        s.mark_planned([("gen", "aa", "{}"), ("gen", "bb", "{}"), ("gen", "cc", "{}")], "run1")
        assert s.generation() == (store_id, g0 + 1) and s.seen == g0 + 1
        s.begin_run(["sweepc", "build"], "local", None, None)  # no job row: no change
        assert s.generation()[1] == g0 + 1 and s.seen == g0 + 1
        s.record([Outcome("gen", h, "done", "fp", "c", "i", 0, 1.0, 2.0, "h", 1.0, 1, "local", None, "run1", "{}")
                  for h in ("aa", "bb")])
        assert s.generation()[1] == g0 + 2 and s.seen == g0 + 2
        s.mark_planned([], "run1")  # nothing written: no change
        s.record([])
        assert s.generation()[1] == g0 + 2 and s.seen == g0 + 2
        s.delete([("gen", "aa")])
        assert s.seen == g0 + 3
        assert triggers() == ["jobs_delete", "jobs_insert", "jobs_update"]  # (made again with each write)
        by_hand("UPDATE jobs SET status='done' WHERE hash IN ('bb', 'cc')")
        assert s.generation()[1] == g0 + 5  # a trigger counts each row changed by hand
        s.set_status([("gen", "bb")], "failed")
        assert s.generation()[1] == g0 + 6 and s.seen is None  # someone else wrote in between
        s.states()
        assert s.seen == g0 + 6
        by_hand("DELETE FROM jobs WHERE hash = 'cc'")
        by_hand("INSERT INTO jobs (rule, hash, status) VALUES ('gen', 'dd', 'done')")
        assert s.generation()[1] == g0 + 8
    finally:
        s.close()
    other = tmp_path / "other"
    other.mkdir()
    assert Store.open(other).generation()[0] != store_id


def test_run_ids_are_version_4_uuids_made_without_the_uuid_module():
    """new_run_id() makes what str(uuid.uuid4()) makes (uuid itself is not
    imported by a build: it imports platform)."""
    import uuid

    from sweepc.plan.store import new_run_id

    ids = [new_run_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for i in ids:
        u = uuid.UUID(i)
        assert (u.version, u.variant, str(u)) == (4, uuid.RFC_4122, i)


def test_the_results_history_keeps_the_last_end_of_a_job_in_a_run_and_the_row_the_latest_values(tmp_path):
    """Schema 5: record() appends each done end with results to the history
    (one row per job per run: a second end of the same job in the same run
    replaces the first as history() reads it) and keeps the values of the
    job's latest run in its row, none when that run failed or wrote none."""
    from sweepc.plan.store import Outcome, Store

    def end(h: str, run: str, status: str, values: str | None, start: float) -> Outcome:
        return Outcome("gen", h, status, "fp", "c", "i", 0 if status == "done" else 1, start, start + 1, "h", 1.0, 1,
                       "local", None, run, values)

    s = Store.open(tmp_path)
    try:
        s.mark_planned([("gen", "aa", "{}"), ("gen", "bb", "{}"), ("gen", "cc", "{}")], "r1")
        s.record([end("aa", "r1", "done", '{"y": 1}', 1.0), end("bb", "r1", "done", '{"y": 2}', 2.0),
                  end("cc", "r1", "done", '{"y": 3}', 3.0)])
        s.record([end("aa", "r1", "done", '{"y": 10}', 4.0)])  # the same job and run again
        s.mark_planned([("gen", "bb", "{}"), ("gen", "cc", "{}")], "r2")
        s.record([end("bb", "r2", "failed", None, 5.0), end("cc", "r2", "done", None, 6.0)])
        assert [(h.hash, h.run_id, h.values_json) for h in s.history("gen")] == [
            ("bb", "r1", '{"y": 2}'), ("cc", "r1", '{"y": 3}'), ("aa", "r1", '{"y": 10}')]
        assert s.latest_results("gen") == {"aa": ('{"y": 10}', 5.0)}
        assert {r[0]: r[-1] for r in s.job_rows("gen")} == {"aa": '{"y": 10}', "bb": None, "cc": None}
    finally:
        s.close()
