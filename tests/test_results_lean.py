"""The results table read lean (issue 11: peak RSS of any command at 100k
<= 250 MB): the store's rows read as they are asked for (LookupStore) or as
a cursor gives them (Store.job_rows), the table filled column by column in
the store's order, csv and json written in pieces. Each gives what the
whole-at-once reads gave."""

from __future__ import annotations

import datetime as dt
import importlib.util
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import sweepc
from sweepc.cli import main
from sweepc.plan.store import LookupStore, Store
from sweepc.results import table as res

# a job's results keys depend on a: the first job (a=1) has only "q", the
# others "p" then "q", so the columns are q, p in job order (whatever order
# the store's rows come in); a=4 fails
SWEEPFILE = '''\
param a = [1, 2, 3, 4, 5, 6, 7, 8]

rule sim over a:
    output: "r.json"
    results: "r.json"
    shell: """
        test {a} -ne 4 || exit 5
        if [ {a} = 1 ]; then echo '{{"q": 1}}' > {output}; else echo '{{"p": {a}, "q": 0.5}}' > {output}; fi
    """
'''


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "p"
    d.mkdir()
    (d / "sweepfile").write_text(SWEEPFILE, encoding="utf-8")
    monkeypatch.chdir(d)
    assert main(["build", "-k"]) == 1
    return d


def test_rows_on_demand_are_the_records(root: Path) -> None:
    store = Store.open(root, create=False)
    lookup = LookupStore.open(root, create=False)
    try:
        every = store.records()
        lean = lookup.records()
        assert len(every) == 8
        for key in every:
            assert lean.raw(key) == every.raw(key)
            assert key in lean and lean[key] == every[key]
        assert lean.raw(("sim", "0" * 16)) is None and ("sim", "0" * 16) not in lean
        with pytest.raises(KeyError):
            lean[("sim", "0" * 16)]
        assert lean.get(("nope", "x")) is None
        assert sorted(lean) == sorted(every) and len(lean) == 8
        # other reads are Store's
        assert set(lookup.records(rule="sim")) == set(every)
        later = lookup.records_later()
    finally:
        lookup.close()
        store.close()
    # once the store is closed, a row not read yet still comes (through a connection of its own)
    key = next(iter(every))
    assert later.raw(key) == every.raw(key)


def test_job_rows_carry_what_latest_results_holds(root: Path) -> None:
    store = Store.open(root, create=False)
    try:
        latest = store.latest_results("sim")
        records = store.records(rule="sim")
        rows = list(store.job_rows("sim"))
    finally:
        store.close()
    assert len(rows) == 8
    for h, start, end, host, exit_code, attempts, rss, cpu, run_id, values_json in rows:
        rec = records[("sim", h)]
        assert (start, end, host, exit_code, attempts, rss, cpu, run_id) == (
            rec.start, rec.end, rec.host, rec.exit_code, rec.attempts, rec.max_rss_mb, rec.cpu_s, rec.run_id)
        if rec.status == "done":
            assert (values_json, end) == latest[h]
        else:
            assert values_json is None and h not in latest


def test_the_table_is_in_job_order_with_columns_in_the_order_rows_first_have_them(root: Path) -> None:
    df = sweepc.load(root).results()
    assert df["a"].tolist() == [1, 2, 3, 4, 5, 6, 7, 8]
    assert list(df.columns)[-2:] == ["q", "p"]
    assert df["_status"].tolist() == ["done"] * 3 + ["failed"] + ["done"] * 4
    assert df["_exit_code"].tolist() == [0, 0, 0, 5, 0, 0, 0, 0] and str(df["_exit_code"].dtype) == "Int64"
    assert df["q"].tolist()[:3] == [1.0, 0.5, 0.5] and pd.isna(df["q"][3])
    assert pd.isna(df["p"][0]) and df["p"][1] == 2
    # each time is the pd.Timestamp of the recorded start, to the microsecond
    store = Store.open(root, create=False)
    try:
        starts = {h: start for h, start, *_ in store.job_rows("sim")}
    finally:
        store.close()
    for h, t in zip(df["_pset_hash"], df["_time_utc"]):
        assert t == pd.Timestamp(dt.datetime.fromtimestamp(starts[h], dt.UTC))
    # the same table as one made from the plan's records and the files alone
    g = sweepc.load(root).graph
    from sweepc.plan.planner import plan
    from sweepc.plan.selection import select

    store = Store.open(root, create=False)
    try:
        p = plan(g, store, select(g, ["sim"]))
        slow = res.table(p, g.rule("sim"), store.runs())
    finally:
        store.close()
    pd.testing.assert_frame_equal(df, slow)


def test_csv_and_json_in_pieces_are_the_whole_text(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    df = sweepc.load(root).results()
    whole = {fmt: res.write(df, fmt, None) for fmt in ("csv", "json", "table")}
    for n in (1, 3, 8):
        monkeypatch.setattr(res, "_ROWS_AT_ONCE", n)
        for fmt in ("csv", "json", "table"):
            assert res.write(df, fmt, None) == whole[fmt]
            out = io.StringIO()
            res.write_to(df, fmt, out)
            assert out.getvalue() == whole[fmt]
    assert len(json.loads(str(whole["json"]))) == 8
    assert res.write(df.iloc[:0], "json", None) == "[]\n"
    assert res.write(df.iloc[:0], "csv", None) == str(whole["csv"]).splitlines()[0] + "\n"
    with pytest.raises(sweepc.errors.UsageError, match="parquet is a binary format"):
        res.write_to(df, "parquet", io.StringIO())


def test_the_cli_writes_the_same_text_to_stdout_and_to_a_file(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for fmt in ("csv", "json"):
        capsys.readouterr()
        assert main(["results", "--format", fmt]) == 0
        shown = capsys.readouterr().out
        assert main(["results", "--format", fmt, "-o", f"t.{fmt}"]) == 0
        assert capsys.readouterr().err == f"sweepc: wrote 8 rows to t.{fmt}\n"
        assert (root / f"t.{fmt}").read_text(encoding="utf-8") == shown


def _sweepc_process(root: Path, *args: str) -> tuple[str, set[str]]:
    """`python -X importtime -m sweepc ARGS`, a process that runs one command
    and ends: (stdout, the top-level packages it loaded). (importtime also
    lists an import that failed at once, without its submodules: a package
    counts as loaded when one of its submodules is.)"""
    p = subprocess.run([sys.executable, "-X", "importtime", "-m", "sweepc", *args], cwd=root, capture_output=True,
                       text=True, check=True, timeout=120)
    names = [line.rsplit("|", 1)[-1].strip() for line in p.stderr.splitlines() if line.startswith("import time:")]
    return p.stdout, {n.split(".")[0] for n in names if "." in n}


def test_the_command_line_makes_its_text_tables_without_pyarrow(root: Path) -> None:
    """pandas 3 imports pyarrow whenever it is installed (~40 MB and ~0.6 s
    of every command at 100k psets); a command that writes text does without
    it (cli.common.text_tables) and writes what a process with it writes."""
    # installed (the test extra), and this process's pandas uses it
    assert importlib.util.find_spec("pyarrow") is not None and "pyarrow" in sys.modules

    study = sweepc.load(root)
    df = study.results()
    for fmt in ("csv", "json", "table"):
        shown, imported = _sweepc_process(root, "results", "--format", fmt)
        assert shown == res.write(res.display_columns(df) if fmt == "table" else df, fmt, None)
        assert "pandas" in imported and "pyarrow" not in imported
    shown, imported = _sweepc_process(root, "runs")
    assert shown == res.write(study.runs(), "table", None) and "pyarrow" not in imported
    _, imported = _sweepc_process(root, "report", "-o", "cli.html")
    assert "matplotlib" in imported and "pyarrow" not in imported
    study.report("api.html")

    def page(name: str) -> str:
        return re.sub(r"<th>written</th><td>[^<]*</td>", "", (root / name).read_text(encoding="utf-8"))
    assert page("cli.html") == page("api.html") and "sim[a=4]" in page("cli.html")
    # parquet needs it, and gets it
    _, imported = _sweepc_process(root, "results", "--format", "parquet", "-o", "r.parquet")
    assert "pyarrow" in imported
    pd.testing.assert_frame_equal(pd.read_parquet(root / "r.parquet"), df, check_dtype=False)
