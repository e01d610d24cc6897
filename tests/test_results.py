"""The results table: `sweepc results` and `Study.results()`.

One row per job of a rule, with parameter columns, the bookkeeping columns and
the (flattened) values of the rule's `results:` JSON files; derived from the
store and the job folders each time.
"""

from __future__ import annotations

import io
import json
import re
import socket
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

import sweepc
from sweepc.cli import main
from sweepc.results.table import default_rule, flatten

BOOKKEEPING = [
    "_pset_hash", "_pset_seq", "_run_id", "_run_seq", "_time_utc", "_exec_host", "_runtime_s",
    "_status", "_exit_code", "_attempts", "_max_rss_mb", "_cpu_s", "_job_dir", "_log", "_error",
]
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")

# square writes {"sq": a*b, "nest": {"x": a, "y": {"z": b}}}; it fails (exit 3,
# with a line on stderr) when a == 3. meta.json is a results file that is NOT a
# declared output, so deleting it does not make the job stale.
SWEEPFILE = '''\
param a = {a}
param b = {b}
sweep grid = a * b

rule gen over grid:
    output: "out.txt"
    shell: "echo {{a}} {{b}} > {{output}}"

rule square over grid:
    input: gen
    output: data = "square.json"
    results: "square.json", "meta.json"
    shell: """
        if [ {{a}} = 3 ]; then echo "boom a={{a}} b={{b}}" >&2; exit 3; fi
        printf '{{{{"sq": %d, "nest": {{{{"x": %d, "y": {{{{"z": %d}}}}}}}}}}}}' $(({{a}} * {{b}})) {{a}} {{b}} > {{output.data}}
        echo '{{{{"tag": "m"}}}}' > meta.json
    """

rule mean over grid by a:
    input: square
    output: "mean.txt"
    shell: "cat {{input}} > {{output}}"
'''


def project(root: Path, a: list[int] = [1, 2], b: list[int] = [10, 20]) -> Path:  # noqa: B006
    root.mkdir(parents=True, exist_ok=True)
    (root / "sweepfile").write_text(SWEEPFILE.format(a=a, b=b), encoding="utf-8")
    return root


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def results_json(capsys: pytest.CaptureFixture[str], *args: str) -> list[dict[str, object]]:
    code, out, err = cli(capsys, "results", "--format", "json", *args)
    assert code == 0, err
    rows = json.loads(out)
    assert isinstance(rows, list)
    return rows


@pytest.fixture
def built(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Path:
    """A project with a = [1, 2], b = [10, 20], built once; cwd is the project."""
    root = project(tmp_path / "p")
    monkeypatch.chdir(root)
    code, out, err = cli(capsys, "build", "-j", "2")
    assert code == 0, out + err
    return root


# ---- the columns of a built rule -----------------------------------------------


def test_one_row_per_job_with_every_column(built: Path, capsys: pytest.CaptureFixture[str]) -> None:
    t0 = time.time()
    rows = results_json(capsys, "--rule", "square")
    assert [list(r) for r in rows] == [["a", "b", *BOOKKEEPING, "sq", "nest.x", "nest.y.z", "tag"]] * 4
    assert [(r["a"], r["b"]) for r in rows] == [(1, 10), (1, 20), (2, 10), (2, 20)]
    assert [r["_pset_seq"] for r in rows] == [0, 1, 2, 3]
    assert [r["_pset_hash"] for r in rows] == list(sweepc.load(built).psets("grid")["_pset_hash"])
    run_ids = {r["_run_id"] for r in rows}
    assert len(run_ids) == 1 and UUID.match(str(next(iter(run_ids))))
    for r in rows:
        h = r["_pset_hash"]
        assert r["_run_seq"] == 0
        assert r["_status"] == "done"
        assert r["_exit_code"] == 0
        assert r["_exec_host"] == socket.gethostname()
        assert isinstance(r["_runtime_s"], float) and 0 <= r["_runtime_s"] < 30
        assert isinstance(r["_max_rss_mb"], float) and r["_max_rss_mb"] >= 0
        when = pd.Timestamp(str(r["_time_utc"]))
        assert when.tzinfo is not None and t0 - 60 < when.timestamp() <= t0
        assert r["_job_dir"] == f"calc/square/{str(h)[:2]}/{h}"
        assert r["_log"] == f"calc/square/{str(h)[:2]}/{h}/sweepc.log"
        assert (built / str(r["_log"])).is_file()
        # the results JSON, nested keys flattened with dots
        assert (r["sq"], r["nest.x"], r["nest.y.z"], r["tag"]) == (r["a"] * r["b"], r["a"], r["b"], "m")  # type: ignore[operator]
    # the same run id as `sweepc runs` lists
    assert list(sweepc.load(built).runs()["_run_id"]) == list(run_ids)


def test_flatten_nested_keys_with_dots() -> None:
    assert flatten({"a": {"b": 1}}) == {"a.b": 1}
    assert flatten({"a": {"b": {"c": [1, 2]}, "d": None}, "e": "x"}) == {"a.b.c": [1, 2], "a.d": None, "e": "x"}
    assert flatten({"a": {}}) == {}


def test_never_built_rows_and_no_store_is_made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    root = project(tmp_path / "p")
    monkeypatch.chdir(root)
    rows = results_json(capsys)
    assert len(rows) == 4
    for r in rows:
        assert r["_status"] == "never built"
        assert r["_run_id"] is None and r["_run_seq"] is None and r["_time_utc"] is None
        assert r["_exit_code"] is None and r["_log"] is None
        assert r["_job_dir"] == f"calc/square/{str(r['_pset_hash'])[:2]}/{r['_pset_hash']}"
        assert "sq" not in r
    assert not (root / ".sweepc").exists(), "reading results must not create a state store"
    # --rule on a gather: one row per value of a, with only `a` as parameter
    rows = results_json(capsys, "--rule", "mean")
    assert [(r["a"], r["_status"]) for r in rows] == [(1, "never built"), (2, "never built")]
    assert "b" not in rows[0]
    # measurements nobody took are NaN (a float column), not None: empty in csv
    df = sweepc.load(root).results()
    assert (str(df["_max_rss_mb"].dtype), str(df["_runtime_s"].dtype)) == ("float64", "float64")
    assert df["_max_rss_mb"].isna().all()
    code, out, _ = cli(capsys, "results", "--columns", "a,b,_runtime_s,_max_rss_mb")
    assert out.splitlines()[:2] == [" a  b  _runtime_s  _max_rss_mb", " 1 10         NaN          NaN"]
    code, out, _ = cli(capsys, "results", "--columns", "a,b,_runtime_s,_max_rss_mb", "--format", "csv")
    assert out.splitlines()[:2] == ["a,b,_runtime_s,_max_rss_mb", "1,10,,"]


def test_two_runs_old_rows_keep_their_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    root = project(tmp_path / "p", b=[10, 20])
    monkeypatch.chdir(root)
    assert cli(capsys, "build", "-j", "2")[0] == 0
    first = {(r["a"], r["b"]): r for r in results_json(capsys)}
    project(root, b=[10, 20, 30])  # adds two psets
    assert cli(capsys, "build", "-j", "2")[0] == 0
    runs = sweepc.load(root).runs()
    assert list(runs["_run_seq"]) == [0, 1]
    run0, run1 = list(runs["_run_id"])
    rows = results_json(capsys)
    assert [(r["a"], r["b"]) for r in rows] == [(1, 10), (1, 20), (1, 30), (2, 10), (2, 20), (2, 30)]
    assert [r["_pset_seq"] for r in rows] == [0, 1, 2, 3, 4, 5]
    for r in rows:
        assert r["_status"] == "done"
        assert r["sq"] == r["a"] * r["b"]  # type: ignore[operator]
        if r["b"] == 30:
            assert (r["_run_id"], r["_run_seq"]) == (run1, 1)
        else:
            assert (r["_run_id"], r["_run_seq"]) == (run0, 0)
            old = first[(r["a"], r["b"])]
            # untouched by the second build: same hash, time and host
            assert (r["_pset_hash"], r["_time_utc"], r["_runtime_s"]) == (old["_pset_hash"], old["_time_utc"], old["_runtime_s"])
    # the gather reran in run 1 (its inputs changed)
    assert {r["_run_seq"] for r in results_json(capsys, "--rule", "mean")} == {1}


def test_failed_job_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    root = project(tmp_path / "p", a=[1, 3])
    monkeypatch.chdir(root)
    code, out, err = cli(capsys, "build", "-k", "-j", "2")
    assert code == 1, out + err
    rows = results_json(capsys)
    assert [(r["a"], r["b"], r["_status"]) for r in rows] == [
        (1, 10, "done"), (1, 20, "done"), (3, 10, "failed"), (3, 20, "failed"),
    ]
    for r in rows[2:]:
        h = str(r["_pset_hash"])
        assert r["_exit_code"] == 3
        assert UUID.match(str(r["_run_id"])) and r["_run_seq"] == 0
        assert r["_time_utc"] is not None and r["_runtime_s"] is not None
        assert r["_log"] == f"calc/square/{h[:2]}/{h}/sweepc.log"
        log = (root / str(r["_log"])).read_text()
        assert f"boom a=3 b={r['b']}" in log
        assert r.get("sq") is None  # no results for a failed job
    # the gather over the failed jobs never ran; the other one did
    mean = results_json(capsys, "--rule", "mean")
    assert [(r["a"], r["_status"], r["_exit_code"], r["_log"]) for r in mean[1:]] == [(3, "never built", None, None)]
    assert mean[0]["_status"] == "done" and mean[0]["_exit_code"] == 0


# ---- results files that are missing or malformed ---------------------------------


def test_missing_and_malformed_results_files(built: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = results_json(capsys)
    d = [built / str(r["_job_dir"]) for r in rows]
    (d[0] / "square.json").unlink()  # a results file that is also an output
    (d[1] / "square.json").write_text("garbage {")
    (d[2] / "square.json").write_text("[1, 2, 3]")  # valid JSON, but not an object
    (d[3] / "meta.json").unlink()  # a results file that is not an output
    rows = results_json(capsys)
    assert len(rows) == 4, "the rows stay"
    assert [(r["a"], r["b"], r["_status"]) for r in rows] == [
        (1, 10, "results missing"), (1, 20, "results malformed"), (2, 10, "results malformed"), (2, 20, "results missing"),
    ]
    # the bookkeeping of the run stays too
    assert all(r["_run_seq"] == 0 and r["_exit_code"] == 0 for r in rows)
    # the values read before the missing file still show
    assert rows[3]["sq"] == 40
    assert all(r["sq"] is None for r in rows[:3])
    assert "tag" not in rows[3], "no file holds it any more: no column"


def test_non_object_json_values(built: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = built / str(results_json(capsys)[0]["_job_dir"])
    for text in ('"a string"', "42", "null"):
        (d / "square.json").write_text(text)
        assert results_json(capsys, "--where", "a == 1 and b == 10")[0]["_status"] == "results malformed", text
    (d / "square.json").write_bytes(b"\xff\xfe{")
    assert results_json(capsys, "--where", "a == 1 and b == 10")[0]["_status"] == "results malformed"


# ---- formats ----------------------------------------------------------------------


def _same(got: pd.DataFrame, want: pd.DataFrame) -> None:
    """Equal values, column by column; _time_utc compared as instants."""
    assert list(got.columns) == list(want.columns)
    assert len(got) == len(want)
    for c in want.columns:
        if want[c].isna().all():  # an empty column (_error of a study without failures): csv reads NaN for None
            assert got[c].isna().all(), c
        elif c.endswith("_time_utc"):
            assert list(pd.to_datetime(got[c], utc=True)) == list(pd.to_datetime(want[c], utc=True))
        else:
            assert got[c].tolist() == want[c].tolist(), c


def _read_json(path: Path) -> pd.DataFrame:
    # precise_float: pandas' default JSON float parser reads 0.018 as 0.018000000000000002
    return pd.read_json(path, precise_float=True)


def test_every_format_written_with_o_reads_back_equal(built: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # floats that need all 17 digits, and tiny ones, must survive every format
    for k, d in enumerate(sorted((built / "calc" / "square").glob("*/*"))):
        (d / "square.json").write_text(json.dumps({"sq": k, "f": {"tiny": 1e-12 * (k + 1), "third": (k + 1) / 3, "s": "é"}}))
    want = sweepc.load(built).results()
    assert len(want) == 4 and set(want["_status"]) == {"done"}
    assert sorted(want["f.tiny"]) == [1e-12, 2e-12, 3e-12, 4e-12]
    for fmt, read in (("csv", pd.read_csv), ("json", _read_json), ("parquet", pd.read_parquet)):
        target = built / f"r.{fmt}"
        code, out, err = cli(capsys, "results", "--format", fmt, "-o", str(target))
        assert code == 0, err
        assert out == ""
        assert err == f"sweepc: wrote 4 rows to {target}\n"
        _same(read(target), want)
    # parquet keeps the types, not only the values
    assert pd.read_parquet(built / "r.parquet").dtypes.to_dict() == want.dtypes.to_dict()


def test_o_without_format_writes_the_format_its_ending_names(built: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # `results -o r.csv` wrote the terminal's table into r.csv
    want = sweepc.load(built).results()
    for name, read in (("r.csv", pd.read_csv), ("R.JSON", _read_json), ("r.parquet", pd.read_parquet), ("r.pq", pd.read_parquet)):
        code, out, err = cli(capsys, "results", "-o", name)
        assert (code, out, err) == (0, "", f"sweepc: wrote 4 rows to {name}\n")
        _same(read(built / name), want)
    # any other ending: the table, as on the terminal; --format always wins
    _, table, _ = cli(capsys, "results")
    assert cli(capsys, "results", "-o", "r.txt")[0] == 0
    assert (built / "r.txt").read_text() == table
    assert cli(capsys, "results", "--format", "json", "-o", "r.csv")[0] == 0
    _same(_read_json(built / "r.csv"), want)


def test_the_table_cuts_long_cells_and_csv_keeps_them(built: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # one result of a megabyte made every line of the terminal's table a megabyte wide
    first = sorted((built / "calc" / "square").glob("*/*"))[0]
    (first / "square.json").write_text(json.dumps({"sq": 10, "blob": "x" * 1_000_000}))
    params = json.loads((first / "pset.json").read_text())["params"]
    where = f"a == {params['a']} and b == {params['b']}"
    _, out, _ = cli(capsys, "results", "--where", where, "--columns", "a,blob")
    assert out.splitlines() == [
        " a" + " " * 97 + "blob",
        f" {params['a']} " + "x" * 97 + "...",
    ]
    _, out, _ = cli(capsys, "results", "--where", where, "--columns", "a,blob", "--format", "csv")
    assert out.splitlines() == ["a,blob", f"{params['a']}," + "x" * 1_000_000]


def test_a_parquet_error_quotes_no_megabyte_value(built: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # pyarrow's message quotes the value it could not convert, whole
    for k, d in enumerate(sorted((built / "calc" / "square").glob("*/*"))):
        (d / "square.json").write_text(json.dumps({"sq": 10, "v": "y" * 1_000_000 if k == 0 else 1.5}))
    code, out, err = cli(capsys, "results", "-o", "r.parquet")
    assert (code, out) == (2, "")
    assert err.startswith("sweepc: cannot write r.parquet as parquet: Could not convert '" + "y" * 60 + "...' with type str")
    assert len(err) < 400, len(err)
    assert err.endswith("\n  hint: a column holds values of different types; write --format csv or json, or leave it out with --columns\n")


def test_table_format_and_no_rows(built: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "results", "--columns", "a,b,_status,sq")
    assert code == 0
    assert out.splitlines() == [
        " a  b _status  sq",
        " 1 10    done  10",
        " 1 20    done  20",
        " 2 10    done  20",
        " 2 20    done  40",
    ]
    code, out, _ = cli(capsys, "results", "--where", "a > 5")
    assert (code, out) == (0, "(no rows)\n")
    code, out, _ = cli(capsys, "results", "--where", "a > 5", "--format", "json")
    assert json.loads(out) == []
    code, out, _ = cli(capsys, "results", "--rule", "square", "--where", "a > 5", "--format", "csv")
    assert out.splitlines()[0].split(",") == ["a", "b", *BOOKKEEPING]


def test_parquet_needs_pyarrow(built: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # `import pyarrow` raises ImportError
    code, out, err = cli(capsys, "results", "--format", "parquet", "-o", "r.parquet")
    assert code == 2
    assert out == ""
    assert err == "sweepc: parquet output needs pyarrow\n  hint: install it with: pip install 'sweepc[parquet]'\n"
    assert not (built / "r.parquet").exists()


def test_parquet_needs_a_file(built: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "results", "--format", "parquet")
    assert (code, out) == (2, "")
    assert err == "sweepc: parquet is a binary format\n  hint: write it to a file: -o results.parquet\n"


# ---- --columns, --where, --rule ---------------------------------------------------


def test_columns_in_the_order_given(built: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = results_json(capsys, "--columns", "nest.y.z, _status,a,sq")
    assert [list(r) for r in rows] == [["nest.y.z", "_status", "a", "sq"]] * 4
    assert [(r["a"], r["sq"]) for r in rows] == [(1, 10), (1, 20), (2, 20), (2, 40)]
    df = sweepc.load(built).results(columns=["_run_seq", "b"])
    assert list(df.columns) == ["_run_seq", "b"]
    _, out, _ = cli(capsys, "results", "--columns", "sq,a", "--format", "csv")
    assert out.splitlines() == ["sq,a", "10,1", "20,1", "20,2", "40,2"]


def test_unknown_column(built: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "results", "--columns", "a,sqq")
    assert (code, out) == (2, "")
    assert err == "sweepc: no column 'sqq'\n  hint: did you mean 'sq'?\n"
    code, out, err = cli(capsys, "results", "--rule", "square", "--columns", "a,zzzzz")
    assert (code, out) == (2, "")
    assert err == (
        "sweepc: no column 'zzzzz'\n"
        "  hint: columns: _attempts, _cpu_s, _error, _exec_host, _exit_code, _job_dir, _log, _max_rss_mb, ... (21 in all)\n"
    )
    with pytest.raises(sweepc.UsageError) as e:
        sweepc.load(built).results(columns="a,sqq")
    assert str(e.value) == "no column 'sqq'\n  hint: did you mean 'sq'?"
    for fmt in ("json", "parquet"):
        code, out, err = cli(capsys, "results", "--columns", "a,b,a", "--format", fmt, "-o", f"r.{fmt}")
        assert (code, out, err) == (2, "", "sweepc: column 'a' is named twice\n  hint: name each column once\n")


def test_where(built: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = results_json(capsys, "--where", "a == 2 and b > 10")
    assert [(r["a"], r["b"], r["sq"]) for r in rows] == [(2, 20, 40)]
    assert [r["_pset_seq"] for r in results_json(capsys, "--where", "b == 20")] == [1, 3]  # seq is the rule's, not the filter's
    assert [r["a"] for r in results_json(capsys, "--rule", "mean", "--where", "a != 1")] == [2]
    df = sweepc.load(built).results(where="b in [10]")
    assert df[["a", "b"]].values.tolist() == [[1, 10], [2, 10]]
    code, out, err = cli(capsys, "results", "--where", "sq > 10")
    assert (code, out) == (2, "")
    assert err == "sweepc: --where: unknown parameter 'sq'\n  hint: a condition can use the parameters of the sweep it filters: a, b\n"


def test_unknown_rule(built: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "results", "--rule", "nope")
    assert (code, out) == (2, "")
    assert err == "sweepc: unknown rule 'nope'\n  hint: rules: gen, mean, square\n"
    code, out, err = cli(capsys, "results", "--rule", "sqare")
    assert err == "sweepc: unknown rule 'sqare'\n  hint: did you mean 'square'?\n"


def test_explicit_rule_without_results(built: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = results_json(capsys, "--rule", "gen")
    assert [list(r) for r in rows] == [["a", "b", *BOOKKEEPING]] * 4
    assert {r["_status"] for r in rows} == {"done"}
    assert [r["_job_dir"] for r in rows] == [f"calc/gen/{str(r['_pset_hash'])[:2]}/{r['_pset_hash']}" for r in rows]


HEAD = "param a = [1, 2]\nparam b = [3]\nsweep grid = a * b\nsweep ab = a\n"


def _rule(name: str, over: str | None = "grid", results: bool = False, by: str = "", inputs: str = "") -> str:
    head = f"rule {name}" + (f" over {over}" if over else "") + (f" by {by}" if by else "") + ":\n"
    body = (f"    input: {inputs}\n" if inputs else "") + '    output: "o.json"\n'
    body += '    results: "o.json"\n' if results else ""
    return head + body + "    shell: \"echo '{{}}' > {output}\"\n"


@pytest.mark.parametrize(
    ("rules", "want"),
    [
        # the last per-pset rule...
        (_rule("first") + _rule("second", inputs="first"), "second"),
        # ...preferring one with results:
        (_rule("first", results=True) + _rule("second", inputs="first") + _rule("g", by="a", inputs="second"), "first"),
        (_rule("r1", results=True) + _rule("r2", results=True, inputs="r1") + _rule("r3", inputs="r2"), "r2"),
        # a rule over a smaller sweep is per-pset too; gathers and `over`-less rules are not
        (_rule("x", over="ab") + _rule("g", by="a", inputs="x") + _rule("t", over=None, inputs="g"), "x"),
        # no per-pset rule at all: the last rule
        (_rule("g", by="a", results=True) + _rule("t", over=None, inputs="g"), "t"),
    ],
)
def test_default_rule(tmp_path: Path, rules: str, want: str) -> None:
    (tmp_path / "sweepfile").write_text(HEAD + "\n" + rules)
    study = sweepc.load(tmp_path)
    assert default_rule(study.graph).name == want
    # the one table starts with the default (main) rule's own table
    one, per = study.results(), study.results(want)
    assert one[list(per.columns)].equals(per)


def test_default_rule_from_the_cli(built: Path, capsys: pytest.CaptureFixture[str]) -> None:
    per = results_json(capsys, "--rule", "square")
    one = results_json(capsys)
    assert [{k: r[k] for k in p} for r, p in zip(one, per)] == per


def test_results_follow_the_job_folders(built: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Derived each time: a changed results file shows at once, nothing is cached."""
    rows = results_json(capsys, "--rule", "square")
    (built / str(rows[0]["_job_dir"]) / "square.json").write_text(json.dumps({"sq": 99, "new": {"k": True}}))
    rows2 = results_json(capsys, "--rule", "square")
    assert (rows2[0]["sq"], rows2[0]["new.k"], rows2[0]["_status"]) == (99, True, "done")
    assert rows2[1]["new.k"] is None
    df = pd.read_json(io.StringIO(json.dumps(rows2)))
    # parameters and bookkeeping first, then every results key found in any row
    assert list(df.columns)[:17] == ["a", "b", *BOOKKEEPING]
    assert sorted(df.columns[17:]) == ["nest.x", "nest.y.z", "new.k", "sq", "tag"]


def test_stale_rows_keep_their_results(built: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # the command of square changes: every square job is stale, its last results still show
    text = (built / "sweepfile").read_text().replace("> meta.json", "> meta.json  # changed")
    (built / "sweepfile").write_text(text)
    rows = results_json(capsys)
    assert [(r["_status"], r["sq"], r["_run_seq"]) for r in rows] == [("stale", 10, 0), ("stale", 20, 0), ("stale", 20, 0), ("stale", 40, 0)]
    # ...unless its results file is gone: then that is what the row says
    (built / str(rows[0]["_job_dir"]) / "meta.json").unlink()
    assert [r["_status"] for r in results_json(capsys)] == ["results missing", "stale", "stale", "stale"]


def test_writing_fails_cleanly(built: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for fmt in ("csv", "json", "table"):
        code, out, err = cli(capsys, "results", "--format", fmt, "-o", "no/such/dir/r.txt")
        assert (code, out, err) == (2, "", "sweepc: cannot write no/such/dir/r.txt: No such file or directory\n")
    code, out, err = cli(capsys, "results", "--format", "csv", "-o", "calc")
    assert (code, out, err) == (2, "", "sweepc: cannot write calc: Is a directory\n")
    code, out, err = cli(capsys, "results", "--format", "parquet", "-o", "no/such/dir/r.parquet")
    assert (code, out) == (2, "") and err.startswith("sweepc: cannot write no/such/dir/r.parquet: ")


def test_results_of_mixed_types(built: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dirs = [built / str(r["_job_dir"]) for r in results_json(capsys)]
    values: list[object] = [1, "n/a", None, 2.5]
    for d, v in zip(dirs, values):
        (d / "square.json").write_text(json.dumps({"v": v, "ok": v == 1}))
    rows = results_json(capsys)
    assert [(r["v"], r["ok"]) for r in rows] == [(1, True), ("n/a", False), (None, False), (2.5, False)]
    code, out, _ = cli(capsys, "results", "--format", "csv", "--columns", "a,b,v,ok")
    # booleans as JSON and the sweepfile spell them; text that would read as a gap is quoted
    assert out.splitlines() == ["a,b,v,ok", "1,10,1,true", '1,20,"n/a",false', "2,10,,false", "2,20,2.5,false"]
    # parquet cannot hold a column of ints and strings: a clear message, no file
    code, out, err = cli(capsys, "results", "--format", "parquet", "-o", "r.parquet")
    assert (code, out) == (2, "")
    # (the middle is pyarrow's own words, e.g. "Could not convert 'n/a' with type str: tried to
    # convert to int64; Conversion failed for column v with type object")
    head, hint = err.splitlines()
    assert head.startswith("sweepc: cannot write r.parquet as parquet: ") and "column v" in head
    assert hint == "  hint: a column holds values of different types; write --format csv or json, or leave it out with --columns"
    assert not (built / "r.parquet").exists()
    assert cli(capsys, "results", "--format", "parquet", "-o", "r.parquet", "--columns", "a,b,ok")[0] == 0
    assert pd.read_parquet(built / "r.parquet")["ok"].tolist() == [True, False, False, False]


def test_results_keys_do_not_overwrite_parameters_or_bookkeeping(built: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = built / str(results_json(capsys)[0]["_job_dir"])
    (d / "square.json").write_text(json.dumps({"a": 999, "_status": "mine", "_pset_hash": "x", "_log": None, "sq": 5}))
    row = results_json(capsys)[0]
    assert (row["a"], row["_status"], row["sq"]) == (1, "done", 5)
    assert row["_pset_hash"] == d.name and row["_log"] == f"{row['_job_dir']}/sweepc.log"


def test_csv_index_column_is_kept_as_index_but_not_hashed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # Maestro users filter by the row id of their parameter table: csv(..., index=) keeps it
    # as the bookkeeping column _index; it is not a parameter, so the hashes stay those of the values
    from sweepc.hashing import pset_hash

    root = tmp_path / "p"
    root.mkdir()
    (root / "params.csv").write_text('param_combo,p1,p2\n10,1,a\n11,2,b\n12,2,b\n13,4,"5"\n')
    (root / "sweepfile").write_text(
        'sweep rows = csv("params.csv", index="param_combo")\nparam k = [1, 2]\n\n'
        'rule run over rows * k:\n    output: "o.txt"\n    shell: "echo {p1} {p2} {k} > {output}"\n\n'
        'rule total over rows * k by k:\n    input: run\n    output: "t.txt"\n    shell: "cat {input} > {output}"\n'
    )
    monkeypatch.chdir(root)
    code, out, _ = cli(capsys, "psets", "rows", "--format", "csv")
    assert code == 0
    # row 12 repeats row 11's parameters: one pset, with the first row's index
    assert out.splitlines() == [
        "p1,p2,_index,_pset_hash,_pset_seq",
        f"1,a,10,{pset_hash({'p1': 1, 'p2': 'a'})},0",
        f"2,b,11,{pset_hash({'p1': 2, 'p2': 'b'})},1",
        f'4,"5",13,{pset_hash({"p1": 4, "p2": "5"})},2',
    ]
    g = sweepc.load(root).graph
    assert [j.hash for j in g.jobs if j.rule == "run"] == [
        pset_hash({"p1": p1, "p2": p2, "k": k}) for p1, p2 in ((1, "a"), (2, "b"), (4, "5")) for k in (1, 2)
    ]
    assert all("_index" not in j.params and "_index" not in j.command for j in g.jobs)
    assert cli(capsys, "build")[0] == 0
    df = sweepc.load(root).results()
    assert list(df.columns[:5]) == ["p1", "p2", "k", "_index", "_pset_hash"]
    assert df[["p1", "k", "_index", "_status"]].to_dict(orient="records") == [
        {"p1": p1, "k": k, "_index": i, "_status": "done"} for p1, i in ((1, 10), (2, 11), (4, 13)) for k in (1, 2)
    ]
    # a gather over k has no row of the table: no _index column
    assert "_index" not in sweepc.load(root).results("total").columns


# ---- the terminal table: a column of mixed types -----------------------------------------

MIXED = '''\
param f = [1e-300, true, false, 0.1, -0, 1e300]
rule sim over f:
    output: "r.json"
    results: "r.json"
    shell: """case {f} in 0.1) v='"diverged"';; *) v=1e-9;; esac; printf '{{"r": %s, "s": 2.5}}' "$v" > {output}"""
'''


def test_the_table_shows_the_floats_of_a_column_of_mixed_types(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """1e-300 was shown as 0.0 and 1e300 as an integer of 300 digits (pandas
    prints the floats of an object column with fixed decimals), and a result
    that is 1e-9 in some jobs and "diverged" in others as 0.0; csv kept them."""
    (tmp_path / "sweepfile").write_text(MIXED, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert cli(capsys, "build", "-j", "2")[0] == 0
    code, out, _ = cli(capsys, "results")
    assert (code, out.splitlines()) == (0, [
        "     f _status        r   s",
        "1e-300    done    1e-09 2.5",
        "  True    done    1e-09 2.5",
        " False    done    1e-09 2.5",
        "   0.1    done diverged 2.5",
        "     0    done    1e-09 2.5",
        "1e+300    done    1e-09 2.5",
    ])
    code, out, _ = cli(capsys, "psets")
    assert (code, [line.split()[:2] for line in out.splitlines()]) == (0, [
        ["_sweep", "f"], ["f", "1e-300"], ["f", "True"], ["f", "False"], ["f", "0.1"], ["f", "0"], ["f", "1e+300"],
    ])
    code, out, _ = cli(capsys, "results", "--format", "csv", "--columns", "f,r")
    assert out.splitlines() == ["f,r", "1e-300,1e-09", "true,1e-09", "false,1e-09", "0.1,diverged", "0,1e-09", "1e+300,1e-09"]


# ---- the history on the terminal, runs while a build runs ----------------------------------


def test_the_history_on_the_terminal_shows_the_run_of_each_row(built: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without _run_seq, the rows of two runs of a job looked like one row twice."""
    assert cli(capsys, "build", "--force", "square", "--where", "a == 1")[0] == 0
    code, out, _ = cli(capsys, "results", "--history")
    assert (code, out.splitlines()) == (0, [
        " a  b  _run_seq _status  sq  nest.x  nest.y.z tag",
        " 1 10         0    done  10       1        10   m",
        " 1 20         0    done  20       1        20   m",
        " 2 10         0    done  20       2        10   m",
        " 2 20         0    done  40       2        20   m",
        " 1 10         1    done  10       1        10   m",
        " 1 20         1    done  20       1        20   m",
    ])
    assert "_run_seq" not in cli(capsys, "results")[1].splitlines()[0]  # the latest run only: not needed


def test_runs_counts_are_integers_or_empty_while_a_build_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """While a build ran, its counts were gaps and the column floats: 2.0 and 0.0 for the runs that had ended."""
    import subprocess

    (tmp_path / "sweepfile").write_text('param a = [1, 2]\nrule r over a:\n    output: "o"\n'
                                        '    shell: "if [ -e {root}/slow ]; then sleep 30; fi; echo {a} > {output}"\n'
                                        .replace("{root}", str(tmp_path)), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert cli(capsys, "build")[0] == 0
    (tmp_path / "slow").touch()
    build = subprocess.Popen([sys.executable, "-m", "sweepc", "build", "--force", "r"], cwd=tmp_path,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            out = cli(capsys, "runs", "--format", "csv")[1]
            if len(out.splitlines()) == 3:
                break
            time.sleep(0.05)
        lines = [line.split(",") for line in out.splitlines()]
        assert lines[0][7:10] == ["ran", "failed", "uptodate"]
        assert [line[7:10] for line in lines[1:]] == [["2", "0", "0"], ["", "", ""]]
        # the Python API's too
        runs = sweepc.load(tmp_path).runs()
        assert [str(t) for t in runs[["ran", "failed", "uptodate"]].dtypes] == ["Int64"] * 3
        assert runs["ran"].tolist()[0] == 2 and runs["ran"].isna().tolist() == [False, True]
    finally:
        build.terminate()
        build.wait(timeout=30)


def test_a_where_that_overflows_says_so_in_words(built: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """It said: fails for {'a': 1}: (34, 'Numerical result out of range'), Python's errno tuple."""
    assert cli(capsys, "results", "--where", "10.0 ** 400 > a") == (
        2, "", "sweepc: --where '10.0 ** 400 > a' fails for {'a': 1, 'b': 10}: number too large\n")


# ---- the one table: names of the columns -----------------------------------------------------

NAMES = '''\
param a = [1, 2]
param b = [10]
sweep grid = a * b
rule sim over a:
    output: "r.json"
    results: "r.json"
    shell: """printf '{{"slope": 1, "fit": {{"slope": 1.5, "_status": "x"}}, "b": 3}}' > {output}"""
rule fit over grid:
    input: sim
    output: "f.json"
    results: "f.json"
    shell: """printf '{{"slope": %d}}' {a} > {output}"""
'''


def test_one_table_names_no_column_twice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """sim's nested key fit.slope met rule fit's fit.slope, and pandas' merge
    made fit.slope_x and fit.slope_y of them; sim's key b met the parameter b.
    A key that starts with the name of a rule of the table (fit._status) reads
    as that rule's column: it is prefixed too."""
    (tmp_path / "sweepfile").write_text(NAMES, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert cli(capsys, "build")[0] == 0
    code, out, _ = cli(capsys, "results")
    assert (code, out.splitlines()) == (0, [
        " a  b _status  fit.slope sim._status  sim.slope  sim.fit.slope sim.fit._status  sim.b",
        " 1 10    done          1        done          1            1.5               x      3",
        " 2 10    done          2        done          1            1.5               x      3",
    ])
    df = sweepc.load(tmp_path).results()
    assert df.columns.is_unique and not [c for c in df.columns if c.endswith(("_x", "_y"))]
    assert df["sim.fit.slope"].tolist() == [1.5, 1.5] and df["fit.slope"].tolist() == [1, 2]


# ---- the one table: --where and --psets select psets of the main sweep ---------------------

FEWER = '''\
param a = [1, 2, 3]
param b = [10, 20]
sweep grid = a * b
rule prep over a:
    output: "q.json"
    results: "q.json"
    shell: """printf '{{"y": %d}}' $(( {a} + 100 )) > {output}"""
rule sim over grid:
    output: "r.json"
    results: "r.json"
    shell: """printf '{{"y": %d}}' $(( {a} * {b} )) > {output}"""
'''


@pytest.fixture
def fewer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Path:
    """sim over a * b; prep over a, not an input of sim (so not selected as one)."""
    (tmp_path / "sweepfile").write_text(FEWER, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert cli(capsys, "build", "-j", "2")[0] == 0
    return tmp_path


def _one(root: Path, where: str | None = None, psets: str | None = None) -> list[tuple[object, ...]]:
    from sweepc.plan.planner import plan as make_plan
    from sweepc.plan.store import LookupStore
    from sweepc.results.table import one_table, one_table_jobs

    g = sweepc.load(root).graph
    store = LookupStore.open(root, create=False)
    try:
        df = one_table(make_plan(g, store, one_table_jobs(g, where, psets)), store.runs(), read=store.job_rows)
    finally:
        store.close()
    return list(df[["a", "b", "sim.y", "prep._status", "prep.y"]].itertuples(index=False, name=None))


def test_the_one_table_of_a_where_keeps_the_values_of_a_rule_over_fewer_parameters(fewer: Path) -> None:
    """A where on b selected none of prep's jobs (they have no b): prep._status
    was empty on every row and prep.y gone; --psets 4:6 sliced prep's own psets."""
    every = [(a, b, a * b, "done", a + 100) for a in (1, 2, 3) for b in (10, 20)]
    assert _one(fewer) == every
    assert _one(fewer, where="b > 0") == every
    assert _one(fewer, where="b == 20") == every[1::2]
    assert _one(fewer, psets="4:6") == every[4:6]
    assert _one(fewer, psets="1:3") == every[1:3]
    assert _one(fewer, where="a == 2", psets="3:") == every[3:4]  # the slice, then the where


def test_results_where_and_psets_keep_the_values_of_a_rule_over_fewer_parameters(fewer: Path, capsys: pytest.CaptureFixture[str]) -> None:
    every = [(a, b, a * b, "done", a + 100) for a in (1, 2, 3) for b in (10, 20)]
    for args, want in ((("--where", "b > 0"), every), (("--psets", "4:6"), every[4:6]), (("--psets", "1:3"), every[1:3])):
        rows = results_json(capsys, *args)
        assert [(r["a"], r["b"], r["sim.y"], r["prep._status"], r["prep.y"]) for r in rows] == want, args
    df = sweepc.load(fewer).results(where="b > 0", psets="2:")
    assert df[["a", "prep.y"]].values.tolist() == [[2, 102], [2, 102], [3, 103], [3, 103]]
