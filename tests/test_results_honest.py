"""Results a scientist can trust (issue 16, items 2-6): a results file that is
not a JSON object, or whose key is a parameter or bookkeeping name, fails its
job when it ends; failed rows carry `_error`; every run's results are kept
(`--history`); one table of every per-pset rule; a readable terminal table.
"""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path

import pytest

import sweepc
from sweepc.backends.jobdir import read_results
from sweepc.values import values_json
from sweepc.cli import main
from sweepc.plan.store import SCHEMA_VERSION
from sweepc.results.table import error_text, one_table_rules
from sweepc.values import compact_json

# sim writes its results; the pset (a=2, b=20) writes a list, (a=2, b=10) a key
# named like a parameter, (a=3, b=20) fails with exit 2. The others write NaN
# and Infinity, which are values like any other.
HONEST = '''\
param a = [1, 2, 3]
param b = [10, 20]
sweep grid = a * b

rule sim over grid:
    output: "r.json"
    results: "r.json"
    shell: """
        if [ {a} = 3 ] && [ {b} = 20 ]; then echo "starting"; echo "boom: diverged at step 7" >&2; exit 2; fi
        if [ {a} = 2 ] && [ {b} = 20 ]; then echo '[1, 2]' > {output}; exit 0; fi
        if [ {a} = 2 ] && [ {b} = 10 ]; then echo '{{"a": 5, "y": 1}}' > {output}; exit 0; fi
        echo '{{"y": NaN, "z": Infinity, "w": {{"v": 1}}}}' > {output}
    """
'''


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def rows_of(capsys: pytest.CaptureFixture[str], *args: str) -> list[dict[str, object]]:
    code, out, err = run(capsys, "results", "--format", "json", *args)
    assert code == 0, err
    rows = json.loads(out)
    assert isinstance(rows, list)
    return rows


def project(tmp_path: Path, text: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "p"
    root.mkdir()
    (root / "sweepfile").write_text(text, encoding="utf-8")
    monkeypatch.chdir(root)
    return root


# ---- 2. honest results ---------------------------------------------------------------


def test_unsound_results_fail_the_job_when_it_ends(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    root = project(tmp_path, HONEST, monkeypatch)
    code, out, err = run(capsys, "build", "-k", "-j", "2")
    assert code == 1
    text = out + err
    assert "FAILED sim[a=2,b=10]: results file r.json: key 'a' is the name of a parameter\n" in text
    assert "FAILED sim[a=2,b=20]: results file r.json holds a list, not a JSON object\n" in text
    assert "FAILED sim[a=3,b=20]: exit 2\n" in text
    assert "sweepc: 3 done, 3 failed, 0 up to date" in text
    # status, the exit code and results agree
    code, out, _ = run(capsys, "status", "--format", "json")
    st = json.loads(out)[0]
    assert (st["rule"], st["done"], st["failed"]) == ("sim", 3, 3)
    rows = {(r["a"], r["b"]): r for r in rows_of(capsys)}
    assert [rows[k]["_status"] for k in sorted(rows)] == ["done", "done", "failed", "failed", "done", "failed"]
    # the next build reruns exactly the three failed jobs, and says why
    code, out, _ = run(capsys, "build", "-n")
    assert out.splitlines()[0] == "run sim[a=2,b=10]: last run failed (exited 0 but its outputs or results files were missing or unsound)"
    # NaN and Infinity are allowed values (json output writes them as null; the API keeps them)
    df = sweepc.load(root).results("sim")
    ok = df[df["_status"] == "done"]
    assert len(ok) == 3 and all(math.isnan(v) for v in ok["y"]) and all(v == math.inf for v in ok["z"])
    assert list(ok["w.v"]) == [1, 1, 1]


def test_read_results_messages(tmp_path: Path) -> None:
    d = tmp_path
    (d / "o.json").write_text('{"x": 1, "n": {"a": 2}}')
    assert read_results(d, ["o.json"], ["a"]).values == {"x": 1, "n.a": 2}  # n.a is not a
    assert read_results(d, ["o.json"], ["a"]).problem is None
    cases = {
        "[1]": "results file r.json holds a list, not a JSON object",
        '"s"': "results file r.json holds a string, not a JSON object",
        "3.5": "results file r.json holds a number, not a JSON object",
        "null": "results file r.json holds null, not a JSON object",
        "true": "results file r.json holds a boolean, not a JSON object",
        "{oops": "results file r.json is not valid JSON (Expecting property name enclosed in double quotes: line 1 column 2 (char 1))",
        '{"a": 1}': "results file r.json: key 'a' is the name of a parameter",
        '{"_status": "mine"}': "results file r.json: key '_status' is the name of a bookkeeping column",
        '{"_error": "x"}': "results file r.json: key '_error' is the name of a bookkeeping column",
        '{"x": 2}': "results file r.json: key 'x' is in o.json too",
        # one column, two values: the nested one hid the other, with no word
        '{"c.d": 1, "c": {"d": 2}}': "results file r.json: key 'c.d' comes twice (a key with a dot and a nested key make the same column)",
        '{"y": NaN, "z": -Infinity}': None,
    }
    for text, want in cases.items():
        (d / "r.json").write_text(text)
        assert read_results(d, ["o.json", "r.json"], ["a"]).problem == want, text
    (d / "r.json").write_bytes(b"\xff{")
    assert read_results(d, ["r.json"], []).problem == "results file r.json is not valid JSON (not UTF-8 text)"
    assert read_results(d, ["gone.json"], []).problem == "results file gone.json is missing"


def test_results_nested_too_deeply_are_malformed_not_a_crash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # json's decoder raised RecursionError: a traceback at the job's end, and then
    # every command that replayed the journal (status, results, build) crashed too
    def nested(n: int) -> str:
        return '{"a":' * n + "1" + "}" * n

    d = tmp_path
    (d / "r.json").write_text(nested(100))
    assert read_results(d, ["r.json"], []).problem is None
    for n in (101, 900, 100_000):
        (d / "r.json").write_text(nested(n))
        assert read_results(d, ["r.json"], []).problem == "results file r.json is nested more than 100 levels deep", n
    (d / "r.json").write_text('{"x": ' + "[" * 101 + "]" * 101 + "}")
    assert read_results(d, ["r.json"], []).problem == "results file r.json is nested more than 100 levels deep"
    (d / "sweepc-result.json").write_text(nested(500))  # what a python: rule's function returned
    assert read_results(d, ["sweepc-result.json"], []).problem == "the function returned a dict nested more than 100 levels deep"

    project(tmp_path, (
        'param k = [1, 2]\n'
        'rule sim over k:\n'
        '    output: "r.json"\n'
        '    results: "r.json"\n'
        '    shell: """python3 -c "n = 1 if {k} == 1 else 100000; open(\'r.json\', \'w\').write(\'{{\\\\"a\\\\":\' * n + \'1\' + \'}}\' * n)" """\n'
    ), monkeypatch)
    code, out, err = run(capsys, "build", "-k")
    assert code == 1, out + err
    assert "FAILED sim[k=2]: results file r.json is nested more than 100 levels deep\n" in out + err
    assert "Traceback" not in out + err
    code, out, err = run(capsys, "status", "--format", "json")
    assert code == 0 and [(r["done"], r["failed"]) for r in json.loads(out)] == [(1, 1)]
    code, out, err = run(capsys, "results", "--format", "json")
    assert code == 0 and [r["_status"] for r in json.loads(out)] == ["done", "failed"]


def test_results_given_as_text_or_parsed_read_the_same_and_store_as_compact_json(tmp_path: Path) -> None:
    # a python: job's results come from the worker's reply already parsed (pyworker.py): same values, same problems
    obj = {"x": 1, "n": {"a": 2, "b": [1, 2.5]}, "s": "é\n\"", "t": True, "f": False, "z": None, "y": math.nan, "i": -math.inf}
    text = json.dumps(obj)
    from_text = read_results(tmp_path, ["r.json"], ["a"], {"r.json": text})
    parsed = read_results(tmp_path, ["r.json"], ["a"], {"r.json": json.loads(text)})
    assert json.dumps(from_text.values) == json.dumps(parsed.values) and parsed.problem is None
    clash = read_results(tmp_path, ["r.json"], ["n.a"], {"r.json": obj}).problem
    assert clash == "results file r.json: key 'n.a' is the name of a parameter"
    # the store's text: compact_json, made a value at a time for scalars
    for values in (parsed.values, {}, {"a": 1, "b": 0.1, "c": "x"}, {"a": [1, {"b": 2}]}, {"a": 10**30, "b": -0.0}):
        assert values_json(values) == compact_json(values), values


def test_a_results_file_that_is_not_written_fails_the_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    project(tmp_path, 'param a = [1]\nsweep g = a\nrule r over g:\n    output: "o.txt"\n    results: "m.json"\n    shell: "touch o.txt"\n', monkeypatch)
    code, out, err = run(capsys, "build")
    assert code == 1
    assert "FAILED r[a=1]: exited 0 but did not write m.json\n" in out + err


# ---- 4. _error ------------------------------------------------------------------------


def test_error_column_of_failed_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    project(tmp_path, HONEST, monkeypatch)
    run(capsys, "build", "-k")
    errors = {(r["a"], r["b"]): r["_error"] for r in rows_of(capsys)}
    assert errors == {
        (1, 10): None, (1, 20): None, (3, 10): None,
        (2, 10): "results file r.json: key 'a' is the name of a parameter",
        (2, 20): "results file r.json holds a list, not a JSON object",
        (3, 20): "starting\nboom: diverged at step 7",
    }


def test_error_text_from_logs(tmp_path: Path) -> None:
    g = sweepc.load(_tiny(tmp_path)).graph
    rule = g.rule("r")
    d = tmp_path / "job"
    d.mkdir()
    log = d / "sweepc.log"
    # the last three lines, of the last attempt only
    log.write_text("first try\nold failure\n\n=== sweepc: attempt 2 ===\nl1\nl2\n\nl3\nl4\n")
    assert error_text(g, rule, d, 1) == "l2\nl3\nl4"
    # a Python traceback: its exception line
    log.write_text("computing\nTraceback (most recent call last):\n  File \"sim.py\", line 3, in <module>\n    x = 1 / 0\nZeroDivisionError: division by zero\ncleanup done\n")
    assert error_text(g, rule, d, 1) == "ZeroDivisionError: division by zero"
    # trimmed: long lines and long texts
    log.write_text("x" * 1000 + "\n")
    got = error_text(g, rule, d, 1)
    assert len(got) == 300 and got.endswith("…")
    # an empty log: the exit code
    log.write_text("")
    assert error_text(g, rule, d, 7) == "exit 7"


def _tiny(tmp_path: Path) -> Path:
    root = tmp_path / "t"
    root.mkdir()
    (root / "sweepfile").write_text('param a = [1]\nsweep g = a\nrule r over g:\n    output: "o.json"\n    results: "o.json"\n    shell: "echo {{}} > {output}"\n')
    return root


# ---- 3. history -------------------------------------------------------------------------

HISTORY = '''\
param a = [1, 2]
sweep grid = a

rule sim over grid:
    output: "r.json"
    results: "r.json"
    shell: "echo '{{\\"run\\": \\"'$SWEEPC_RUN_ID'\\", \\"y\\": '$(( {a} * 10 ))'}}' > {output}"
'''


def test_history_keeps_every_runs_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    root = project(tmp_path, HISTORY, monkeypatch)
    assert run(capsys, "build")[0] == 0
    assert run(capsys, "build", "--force", "sim")[0] == 0
    assert run(capsys, "build", "--force", "sim", "sim[a=2]")[0] == 0
    hist = rows_of(capsys, "--history")
    assert [(r["a"], r["_run_seq"]) for r in hist] == [(1, 0), (2, 0), (1, 1), (2, 1), (2, 2)]
    # each row holds the results of its own run (the old outputs are gone, their results are not)
    assert all(r["run"] == r["_run_id"] and r["_status"] == "done" for r in hist)
    assert len({r["_run_id"] for r in hist}) == 3
    # the default stays the latest row per job
    latest = rows_of(capsys)
    assert [(r["a"], r["_run_seq"], r["run"]) for r in latest] == [(1, 1, hist[2]["run"]), (2, 2, hist[4]["run"])]
    # the API gives the same table; --rule, --where and --columns apply
    df = sweepc.load(root).results(history=True)
    assert list(df["_run_seq"]) == [0, 0, 1, 1, 2] and list(df["run"]) == [r["run"] for r in hist]
    assert [r["_run_seq"] for r in rows_of(capsys, "--history", "--rule", "sim", "--where", "a == 2", "--columns", "a,_run_seq")] == [0, 1, 2]
    # a failed run adds no row
    (root / "sweepfile").write_text(HISTORY.replace("> {output}\"", "> {output}; exit 1\""))
    assert run(capsys, "build")[0] == 1
    assert len(rows_of(capsys, "--history")) == 5


def test_a_store_of_schema_1_is_refused_with_the_older_sweepc_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    root = project(tmp_path, HISTORY, monkeypatch)
    assert run(capsys, "build")[0] == 0
    assert SCHEMA_VERSION == 5
    con = sqlite3.connect(root / ".sweepc" / "state.db")
    con.execute("UPDATE meta SET value='1' WHERE key='schema_version'")
    con.commit()
    con.close()
    code, out, err = run(capsys, "results")
    assert (code, out) == (2, "")
    assert err == (
        "sweepc: the state store .sweepc/state.db was written by an older sweepc (schema 1; this sweepc reads schema 5).\n"
        "  hint: move the store away to start over (every job will then rebuild): mv .sweepc/state.db .sweepc/state.db.v1\n"
    )


# ---- 5. one table -----------------------------------------------------------------------

ONE = '''\
param a = [1, 2]
param b = [10, 20]
param c = [7]
sweep grid = a * b
sweep small = grid where a == 1
sweep wide = a * b * c

rule prep over a:
    output: "p.json"
    results: "p.json"
    shell: "echo '{{\\"scale\\": '$(( {a} * 100 ))'}}' > {output}"

rule sim over grid:
    input: prep
    output: "r.json"
    results: "r.json"
    shell: "echo '{{\\"y\\": '$(( {a} * {b} ))', \\"note\\": \\"sim\\"}}' > {output}"

rule check over small:
    input: sim
    output: "c.json"
    results: "c.json"
    shell: "echo '{{\\"note\\": \\"checked\\"}}' > {output}"

rule mean over grid by a:
    input: sim
    output: "m.txt"
    shell: "cat {input} > {output}"

rule other over wide:
    output: "o.txt"
    shell: "echo > {output}"

rule post over grid:
    input: sim
    output: "post.json"
    results: "post.json"
    shell: "echo '{{\\"z\\": 1}}' > {output}"
'''


def test_one_table_of_every_per_pset_rule(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    root = project(tmp_path, ONE, monkeypatch)
    g = sweepc.load(root).graph
    main_rule, rules = one_table_rules(g)
    # the main rule is the default one (the last per-pset rule with results); `mean`
    # (a gather) and `other` (a parameter the main sweep lacks) are left out
    assert (main_rule.name, [r.name for r in rules]) == ("post", ["prep", "sim", "check", "post"])
    assert run(capsys, "build", "-j", "2")[0] == 0
    rows = rows_of(capsys)
    assert [(r["a"], r["b"]) for r in rows] == [(1, 10), (1, 20), (2, 10), (2, 20)]
    first = rows[0]
    # the main rule's own table first (its bookkeeping unprefixed), then each
    # other rule's bookkeeping as RULE._col and its results; `note` is in two rules
    assert list(first)[:20] == ["a", "b", "_pset_hash", "_pset_seq", "_run_id", "_run_seq", "_time_utc", "_exec_host",
                                "_runtime_s", "_status", "_exit_code", "_attempts", "_max_rss_mb", "_cpu_s", "_job_dir", "_log", "_error", "z",
                                "prep._pset_hash", "prep._run_id"]
    assert {"prep._status", "scale", "sim._status", "y", "sim.note", "check._status", "check.note"} <= set(first)
    assert "note" not in first and "mean._status" not in first and "other._status" not in first
    assert [(r["scale"], r["y"], r["sim.note"], r["check.note"], r["check._status"]) for r in rows] == [
        (100, 10, "sim", "checked", "done"), (100, 20, "sim", "checked", "done"),
        (200, 20, "sim", None, None), (200, 40, "sim", None, None),  # `small` has a == 1 only
    ]
    assert all(r["prep._status"] == r["sim._status"] == r["_status"] == "done" for r in rows)
    # --rule keeps the per-rule table
    assert [list(r)[-2:] for r in rows_of(capsys, "--rule", "sim")] == [["y", "note"]] * 4
    # a stale upstream rule shows in its status column
    (root / "sweepfile").write_text(ONE.replace("* 100 ))", "* 101 ))"))
    assert {r["prep._status"] for r in rows_of(capsys)} == {"stale"}
    # --where selects psets of the main sweep
    assert [(r["a"], r["b"]) for r in rows_of(capsys, "--where", "b == 20")] == [(1, 20), (2, 20)]


# ---- 6. the terminal table ------------------------------------------------------------


def test_terminal_table_shows_parameters_status_and_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """And why jobs failed, when some did: the failed rows said nothing of it
    (`_error` only with --all-columns, among twenty other columns)."""
    project(tmp_path, HONEST, monkeypatch)
    run(capsys, "build", "-k")
    code, out, _ = run(capsys, "results")
    assert code == 0
    assert out.splitlines() == [
        " a  b _status                                                  _error   y   z  w.v",
        " 1 10    done                                                         NaN inf  1.0",
        " 1 20    done                                                         NaN inf  1.0",
        " 2 10  failed results file r.json: key 'a' is the name of a parameter NaN NaN  NaN",
        " 2 20  failed     results file r.json holds a list, not a JSON object NaN NaN  NaN",
        " 3 10    done                                                         NaN inf  1.0",
        " 3 20  failed                      starting\\nboom: diverged at step 7 NaN NaN  NaN",
    ]
    # once nothing failed, no _error column
    code, out, _ = run(capsys, "results", "--where", "a == 1")
    assert out.splitlines() == [
        " a  b _status   y   z  w.v",
        " 1 10    done NaN inf    1",
        " 1 20    done NaN inf    1",
    ]
    code, out, _ = run(capsys, "results", "--all-columns")
    head = out.splitlines()[0].split()
    assert head[:3] == ["a", "b", "_pset_hash"] and "_error" in head and "_run_id" in head
    # csv and json keep every column without being asked
    _, out, _ = run(capsys, "results", "--format", "csv")
    assert out.splitlines()[0].split(",") == head
    # --columns still picks exactly
    _, out, _ = run(capsys, "results", "--columns", "a,_run_seq")
    assert out.splitlines()[0].split() == ["a", "_run_seq"]


def test_results_report_and_plot_will_not_write_over_the_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """`sweepc results -o .sweepc/state.db --format csv` made the state store
    a CSV file (every later command: "the state store is corrupt"); `-o
    sweepfile` or `-o` a CSV file the sweepfile reads wrote over them."""
    root = project(tmp_path, 'sweep rows = csv("p.csv")\nrule r over rows:\n    input: s = "calc.py"\n    output: "o.json"\n'
                   '    results: "o.json"\n    shell: "python3 {input.s} {a} {output}"\n', monkeypatch)
    (root / "p.csv").write_text("a\n1\n2\n")
    (root / "calc.py").write_text("import json, sys\njson.dump({'y': 2 * int(sys.argv[1])}, open(sys.argv[2], 'w'))\n")
    assert run(capsys, "build")[0] == 0
    before = {p: p.read_bytes() for p in (root / "sweepfile", root / "p.csv", root / "calc.py", root / ".sweepc" / "state.db")}
    for target, what in ((".sweepc/state.db", "in sweepc's state folder .sweepc/"), ("sweepfile", "the sweepfile"),
                         ("p.csv", "a file the sweepfile reads"), ("./calc.py", "a file the sweepfile reads")):
        for argv in (("results", "--format", "csv", "-o", target), ("report", "-o", target), ("plot", "y", "--x", "a", "-o", target)):
            code, out, err = run(capsys, *argv)
            assert (code, out, err) == (2, "", f"sweepc: will not write to {target}: it is {what}\n  hint: name another file with -o FILE\n"), argv
    # the Python API's report() and plot() too
    study = sweepc.load(root)
    for call in (lambda: study.report("sweepfile"), lambda: study.plot("y", "a", output="p.csv")):
        with pytest.raises(sweepc.UsageError, match=r"^will not write to (sweepfile|p\.csv): it is (the sweepfile|a file the sweepfile reads)"):
            call()
    # nor into a job folder (results -o calc/r/hh/hash/o.json made that job's results a table)
    job = next((root / "calc" / "r").glob("*/*"))
    before.update({p: p.read_bytes() for p in job.iterdir()})
    for target in (str((job / "o.json").relative_to(root)), "calc/r", "calc/r/t.png"):
        for argv in (("results", "-o", target), ("report", "-o", target), ("plot", "y", "--x", "a", "-o", target)):
            code, out, err = run(capsys, *argv)
            assert (code, out, err) == (2, "", f"sweepc: will not write to {target}: it is in the job folders of rule 'r' (where its outputs "
                                               "and results files are)\n  hint: name another file with -o FILE\n"), argv
    # a plot's name must say its format: matplotlib added ".png" itself, so `-o mask`
    # wrote over an input mask.png, past the check above, and sweepc said "wrote mask"
    for target, hint in (("calc", "calc.png"), ("", "plot.png"), ("p", "p.png")):
        code, out, err = run(capsys, "plot", "y", "--x", "a", "-o", target)
        assert (code, out, err) == (2, "", f"sweepc: plot -o {target}: the file must end in .png or .svg (its format)\n"
                                           f"  hint: for example: -o {hint}\n")
    assert {p: p.read_bytes() for p in before} == before
    assert not (root / "calc.png").exists() and not (root / "p.png").exists()
    code, _, err = run(capsys, "results", "--format", "csv", "-o", "table.csv")
    assert (code, err) == (0, "sweepc: wrote 2 rows to table.csv\n")
    assert (root / "table.csv").read_text().splitlines()[0].startswith("a,")
