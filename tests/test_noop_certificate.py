"""The no-op certificate (plan/noop.py, issue 11): a plain `sweepc build`
after a build that left everything up to date says so without loading the
graph or planning, and never when the planner would run something.

The main test is differential: after each kind of change, `sweepc build -n`
(which never takes the certificate) says what the planner would run, and
`sweepc build` must run exactly that; with nothing to run, it must say
"nothing to do" whichever way it gets there."""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from sweepc.plan import noop

SWEEPFILE = '''\
sweep rows = csv("rows.csv")

rule gen over rows:
    input: script = "gen.sh"
    output: "out.txt"
    shell: "bash {input.script} {a} {b} > {output}"

rule square over rows:
    input: gen
    output: "square.txt"
    shell: "cat {input} {input} > {output}"

rule mean:
    input: square
    output: "mean.txt"
    shell: "cat {input.list} | wc -l > {output}"
'''
FILES = {"rows.csv": "a,b\n1,10\n2,20\n3,30\n", "gen.sh": 'echo "$1 $2"\n'}
JOBS = 7


def _db(root: Path) -> sqlite3.Connection:
    return sqlite3.connect(root / ".sweepc" / "state.db")


class Spy:
    """What noop.check answered at each build (None: the usual path)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.answers: list[int | None] = []
        real = noop.check

        def check(sweepfile: Path, argv: list[str]) -> int | None:
            got = real(sweepfile, argv)
            self.answers.append(got)
            return got

        monkeypatch.setattr(noop, "check", check)

    def last(self) -> int | None:
        return self.answers[-1]


@pytest.fixture
def built(local_project, monkeypatch):  # type: ignore[no-untyped-def]
    p = local_project.write(SWEEPFILE, **FILES)
    r = p.sweepc("build", "-j", "2")
    assert (r.code, r.err) == (0, ""), r.out
    assert (p.root / ".sweepc" / noop.CERT_NAME).is_file()
    return p, Spy(monkeypatch)


def _ran(out: str) -> int:
    """How many jobs a build says it ran ("sweepc: N done, ...")."""
    last = [line for line in out.splitlines() if line.startswith("sweepc: ") and " done" in line]
    return int(last[-1].split()[1]) if last else 0


def test_after_a_build_that_ran_everything_the_next_build_neither_loads_nor_plans(built, monkeypatch):
    p, spy = built
    from sweepc.lang import project
    from sweepc.plan import planner

    def refuse(*a: object, **k: object) -> None:
        raise AssertionError("the certificate should have answered")

    monkeypatch.setattr(planner, "_plan", refuse)
    monkeypatch.setattr(project, "_load_graph", refuse)
    r = p.sweepc("build")
    assert (r.code, r.out, r.err) == (0, f"sweepc: nothing to do ({JOBS} jobs up to date)\n", "")
    assert spy.answers == [JOBS]


def _edit_command(p) -> None:  # type: ignore[no-untyped-def]
    p.edit("cat {input} {input}", "cat {input}")


def _edit_source(p) -> None:  # type: ignore[no-untyped-def]
    (p.root / "gen.sh").write_text('echo "$1 and $2"\n')


def _touch_source(p) -> None:  # type: ignore[no-untyped-def]
    f = p.root / "gen.sh"
    t = time.time() + 5
    os.utime(f, (t, t))


def _edit_csv(p) -> None:  # type: ignore[no-untyped-def]
    (p.root / "rows.csv").write_text("a,b\n1,10\n2,20\n3,31\n")


def _comment_only(p) -> None:  # type: ignore[no-untyped-def]
    p.edit("rule mean:", "# the mean\nrule mean:")


def _remove_output(p) -> None:  # type: ignore[no-untyped-def]
    job = p.job(next(j.label for j in p.graph.jobs if j.rule == "square"))
    (p.graph.job_dir(job) / "square.txt").unlink()


def _by_hand(p, statement: str) -> None:  # type: ignore[no-untyped-def]
    """A change of the store made with sqlite3, not by sweepc."""
    con = _db(p.root)
    con.execute(statement)
    con.commit()
    con.close()


def _fail_a_row_by_hand(p) -> None:  # type: ignore[no-untyped-def]
    _by_hand(p, "UPDATE jobs SET status='failed' WHERE rule='gen' AND hash=(SELECT MIN(hash) FROM jobs WHERE rule='gen')")


def _forget_a_row_by_hand(p) -> None:  # type: ignore[no-untyped-def]
    _by_hand(p, "DELETE FROM jobs WHERE rule='mean'")


def _change_a_fingerprint_by_hand(p) -> None:  # type: ignore[no-untyped-def]
    _by_hand(p, "UPDATE jobs SET fingerprint='0000' WHERE rule='square' AND hash=(SELECT MAX(hash) FROM jobs WHERE rule='square')")


def _clean_outputs(p) -> None:  # type: ignore[no-untyped-def]
    assert p.sweepc("clean", "outputs").code == 0


def _move_the_workdir_away(p) -> None:  # type: ignore[no-untyped-def]
    wd = p.graph.workdir_path
    wd.rename(wd.with_name(wd.name + ".old"))


def _add_a_row(p) -> None:  # type: ignore[no-untyped-def]
    (p.root / "rows.csv").write_text(FILES["rows.csv"] + "4,40\n")


def _newer_store(p) -> None:  # type: ignore[no-untyped-def]
    # a store another sweepc made from scratch: same rows, but not the store certified
    _by_hand(p, "UPDATE meta SET value='0123456789abcdef0123456789abcdef' WHERE key='store_id'")


CHANGES: dict[str, Callable[..., None]] = {
    "command-edited": _edit_command,
    "source-edited": _edit_source,
    "source-touched": _touch_source,
    "csv-edited": _edit_csv,
    "csv-grown": _add_a_row,
    "comment-added": _comment_only,
    "output-removed": _remove_output,
    "row-failed-by-hand": _fail_a_row_by_hand,
    "row-deleted-by-hand": _forget_a_row_by_hand,
    "fingerprint-changed-by-hand": _change_a_fingerprint_by_hand,
    "clean-outputs": _clean_outputs,
    "workdir-moved": _move_the_workdir_away,
    "store-id-changed": _newer_store,
}


@pytest.mark.parametrize("change", list(CHANGES), ids=list(CHANGES))
def test_after_any_change_the_build_runs_what_the_planner_says(built, change):
    p, spy = built
    CHANGES[change](p)
    dry = p.sweepc("build", "-n")
    assert dry.code == 0, dry.err
    expected = sum(1 for line in dry.out.splitlines() if line.startswith("run "))
    r = p.sweepc("build", "-j", "2")
    assert (r.code, r.err) == (0, ""), r.out
    if expected == 0:
        assert r.out == f"sweepc: nothing to do ({len(p.graph.jobs)} jobs up to date)\n"
    else:
        assert spy.last() is None
        assert _ran(r.out) == expected, (dry.out, r.out)
    # and then the build after it has nothing to do, by the certificate
    r = p.sweepc("build")
    assert (r.code, r.out) == (0, f"sweepc: nothing to do ({len(p.graph.jobs)} jobs up to date)\n")
    assert spy.last() == len(p.graph.jobs)


def test_the_changes_above_include_ones_that_rerun_and_ones_that_do_not(built):
    # (so the test above is not passing by never running anything, nor by always running everything)
    p, _ = built
    def planned() -> list[str]:
        return [line for line in p.sweepc("build", "-n").out.splitlines() if line.startswith("run ")]

    _touch_source(p)
    assert planned() == []
    _edit_source(p)
    assert len(planned()) == JOBS


def test_a_failed_build_leaves_no_certificate_that_hides_the_failure(built):
    p, spy = built
    p.edit("cat {input} {input} > {output}", "test {a} != 2 && cat {input} {input} > {output}")
    r = p.sweepc("build", "-j", "2")
    assert r.code == 1
    r = p.sweepc("build", "-j", "2")
    assert r.code == 1 and spy.last() is None
    assert "nothing to do" not in r.out


def test_a_journal_to_replay_is_replayed_by_the_usual_path(built):
    p, spy = built
    (p.root / ".sweepc" / "journal").write_bytes(b"torn")
    r = p.sweepc("build")
    assert (r.code, r.out) == (0, f"sweepc: nothing to do ({JOBS} jobs up to date)\n")
    assert spy.answers == [None]


def test_while_another_build_holds_the_project_the_build_says_so(built):
    p, spy = built
    fd = os.open(p.root / ".sweepc" / "build.lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": "elsewhere", "started": 0, "argv": ["sweepc", "build"]}).encode(), 0)
        r = p.sweepc("build")
    finally:
        os.close(fd)
    assert r.code == 2 and r.out == ""
    assert r.err.startswith("sweepc: another sweepc build is running in this project (pid ")
    assert spy.answers == [None]


def test_a_lock_left_by_a_dead_build_takes_the_usual_path(built):
    p, spy = built
    dead = {"pid": 2 ** 22 + 7, "host": os.uname().nodename, "started": 0, "argv": ["sweepc", "build"]}
    (p.root / ".sweepc" / "build.lock").write_text(json.dumps(dead))
    r = p.sweepc("build")
    assert (r.code, r.out) == (0, f"sweepc: nothing to do ({JOBS} jobs up to date)\n")
    assert spy.answers == [None]
    assert p.sweepc("build").out == f"sweepc: nothing to do ({JOBS} jobs up to date)\n" and spy.last() == JOBS


@pytest.mark.parametrize("damage", ["empty", "truncated", "cut-at-a-line", "garbage", "other-format"])
def test_a_damaged_certificate_is_ignored(built, damage):
    p, spy = built
    f = p.root / ".sweepc" / noop.CERT_NAME
    data = f.read_bytes()
    # (cut-at-a-line: the last output path gone; every path left is there)
    f.write_bytes({"empty": b"", "truncated": data[: len(data) // 2], "cut-at-a-line": data[: data.rindex(b"\n")],
                   "garbage": b"\x00\xff" * 50, "other-format": data.replace(b"sweepc-uptodate 2", b"sweepc-uptodate 9")}[damage])
    r = p.sweepc("build")
    assert (r.code, r.out) == (0, f"sweepc: nothing to do ({JOBS} jobs up to date)\n")
    assert spy.answers == [None]


@pytest.mark.parametrize("args", [["-n"], ["gen"], ["--where", "a > 1"], ["--psets", "0:2"], ["--force", "gen"],
                                  ["-D", "x=1"], ["--explain"]], ids=lambda a: " ".join(a))
def test_only_a_plain_build_asks_the_certificate(built, args):
    p, spy = built
    p.sweepc("build", *args)
    assert spy.answers == []


def test_a_build_of_a_selection_certifies_nothing(local_project):
    p = local_project.write(SWEEPFILE, **FILES)
    assert p.sweepc("build", "gen").code == 0
    assert not (p.root / ".sweepc" / noop.CERT_NAME).exists()
    assert p.sweepc("build", "-j", "2").code == 0
    assert (p.root / ".sweepc" / noop.CERT_NAME).exists()


@pytest.mark.parametrize("sweepfile", [
    'param a = [1, 2]\n\nrule gen over a:\n    output: temp("x.txt")\n    shell: "echo {a} > {output}"\n\n'
    'rule use over a:\n    input: gen\n    output: "y.txt"\n    shell: "cat {input} > {output}"\n',
    'param a = [1, 2]\n\nrule gen over a:\n    output: "x.txt"\n    shell: "echo {a} > {output}"\n\n'
    'rule all:\n    input: done(gen)\n    output: "y.txt"\n    shell: "cat {input.list} > {output}"\n',
], ids=["temp-outputs", "done-inputs"])
def test_graphs_whose_plan_needs_more_are_not_certified(local_project, sweepfile):
    p = local_project.write(sweepfile)
    assert p.sweepc("build").code == 0
    assert p.sweepc("build").out.startswith("sweepc: nothing to do")
    assert not (p.root / ".sweepc" / noop.CERT_NAME).exists()


def test_a_no_op_by_the_planner_certifies_too(local_project, monkeypatch):
    # a store that ran its jobs with an older certificate voided: the no-op plan writes a new one
    p = local_project.write(SWEEPFILE, **FILES)
    assert p.sweepc("build", "-j", "2").code == 0
    cert = p.root / ".sweepc" / noop.CERT_NAME
    cert.unlink()
    spy = Spy(monkeypatch)
    assert p.sweepc("build").out == f"sweepc: nothing to do ({JOBS} jobs up to date)\n"
    assert cert.exists() and spy.answers == [None]
    assert p.sweepc("build").out == f"sweepc: nothing to do ({JOBS} jobs up to date)\n"
    assert spy.answers == [None, JOBS]


def _certified_paths(root: Path) -> list[str]:
    with open(root / ".sweepc" / noop.CERT_NAME, "rb") as f:
        f.readline()
        f.readline()
        return f.read().decode().split("\n")


@pytest.mark.parametrize("how", ["grown", "an output gone", "a command changed"])
def test_the_certificate_lists_every_output_once_whichever_way_it_got_them(built, how, monkeypatch):
    """The paths come from the planner (the up-to-date jobs' outputs it
    looked for) and from the jobs that ran, or, when the planner did not
    keep them (its second loop, after an output was found gone), from the
    graph: the same list either way."""
    p, spy = built
    calls: list[int | None] = []
    real = noop._output_paths

    def spying(g, plan, outputs):  # type: ignore[no-untyped-def]
        calls.append(None if plan.uptodate_outputs is None else len(plan.uptodate_outputs))
        return real(g, plan, outputs)

    monkeypatch.setattr(noop, "_output_paths", spying)
    if how == "grown":
        (p.root / "rows.csv").write_text(FILES["rows.csv"] + "4,40\n")
    elif how == "an output gone":
        (p.graph.job_dir(p.job("gen[a=2,b=20]")) / "out.txt").unlink()
    else:
        _edit_command(p)
    r = p.sweepc("build", "-j", "2")
    assert r.code == 0, r.err
    # the planner's: gen and square of the 3 rows before (grown), gen's (a command changed)
    assert calls == [{"grown": 6, "an output gone": None, "a command changed": 3}[how]]
    g = p.graph
    want = sorted(f"{j.rule}/{j.hash[:2]}/{j.hash}/{o.path}" for j in g.jobs for o in g.rule(j.rule).outputs)
    got = _certified_paths(p.root)
    assert sorted(got) == want and len(set(got)) == len(got)
    assert p.sweepc("build").out == f"sweepc: nothing to do ({len(g.jobs)} jobs up to date)\n"
    assert spy.last() == len(g.jobs)
