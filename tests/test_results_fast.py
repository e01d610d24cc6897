"""The latest results from the state store (issue 16, item 7: a 100k-pset
table and report in seconds): a row takes the values the store recorded when
its job ended, unless one of its results files changed since; in every case
below the table is the same as the one read from the files alone."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import sweepc
from sweepc.cli import main
from sweepc.plan.store import Store
from sweepc.results import table as res

SIM = '''\
param a = [1, 2, 3]
param b = [10, 20]
param k = 7
sweep grid = a * b * k

rule prep over a:
    output: "p.json"
    results: "p.json"
    shell: "echo '{{\\"w\\": '$(( {a} * 3 ))'}}' > {output}"

rule sim over grid:
    input: prep
    output: "r.json"
    results: "r.json"
    shell: "echo '{{\\"y\\": '$(( {a} * {b} + {k} ))', \\"z\\": 0.1, \\"n\\": {{\\"v\\": NaN}}}}' > {output}"
'''


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "p"
    d.mkdir()
    (d / "sweepfile").write_text(SIM, encoding="utf-8")
    monkeypatch.chdir(d)
    return d


def same(root: Path, monkeypatch: pytest.MonkeyPatch, **kw: Any) -> tuple[pd.DataFrame, int]:
    """(the table as sweepc makes it, how many jobs' results files it read),
    after checking that it equals the table read from the files alone."""
    reads = [0]
    real = res.read_results

    def counting(*a: Any, **k: Any) -> Any:
        reads[0] += 1
        return real(*a, **k)

    with monkeypatch.context() as m:
        m.setattr(res, "read_results", counting)
        fast = sweepc.load(root).results(**kw)
    with monkeypatch.context() as m:
        m.setattr(res, "_stored_values", lambda *a: None)  # no stored values: every row read from its files
        slow = sweepc.load(root).results(**kw)
    pd.testing.assert_frame_equal(fast, slow)
    return fast, reads[0]


def latest(root: Path, rule: str) -> dict[str, tuple[str, float | None]]:
    store = Store.open(root, create=False)
    try:
        return store.latest_results(rule)
    finally:
        store.close()


def folder(root: Path, df: pd.DataFrame, a: int, b: int) -> Path:
    return root / str(df[(df.a == a) & (df.b == b)].iloc[0]["_job_dir"])


def test_unchanged_results_come_from_the_store_and_agree_with_the_files(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert main(["build"]) == 0
    df, reads = same(root, monkeypatch)
    assert reads == 0  # not one results file opened
    assert list(df["y"]) == [17, 27, 27, 47, 37, 67]
    assert list(df["w"]) == [3, 3, 6, 6, 9, 9]
    assert df["n.v"].isna().all() and list(df["z"]) == [0.1] * 6
    for rule in ("sim", "prep"):
        assert same(root, monkeypatch, rule=rule)[1] == 0
    # what the store holds: the flattened results, as read when the job ended
    stored = latest(root, "sim")
    h = str(df.iloc[0]["_pset_hash"])
    assert stored[h][0] == '{"y":17,"z":0.1,"n.v":NaN}'


def test_a_results_file_changed_since_its_job_ended_is_read_again(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert main(["build"]) == 0
    df, _ = same(root, monkeypatch)
    # edited by hand, deleted, broken: the table says what the files hold now
    (folder(root, df, 1, 10) / "r.json").write_text('{"y": 1000}')
    (folder(root, df, 2, 10) / "r.json").unlink()
    (folder(root, df, 3, 10) / "r.json").write_text("not json")
    df, reads = same(root, monkeypatch)
    assert reads == 3
    by = {(r["a"], r["b"]): r for r in df.to_dict(orient="records")}
    assert by[1, 10]["y"] == 1000 and pd.isna(by[1, 10]["z"])
    assert by[2, 10]["_status"] == "results missing" and pd.isna(by[2, 10]["y"])
    assert by[3, 10]["_status"] == "results malformed" and pd.isna(by[3, 10]["y"])
    assert by[1, 20]["y"] == 27 and by[1, 20]["_status"] == "done"
    # a touch alone (same content) is a change as far as the table knows: read again, same values
    (folder(root, df, 1, 20) / "r.json").touch()
    df, reads = same(root, monkeypatch)
    assert reads == 4
    assert df[(df.a == 1) & (df.b == 20)]["y"].tolist() == [27]


def test_a_job_rerun_by_hand_in_its_folder_shows_what_it_wrote(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert main(["build"]) == 0
    df, _ = same(root, monkeypatch)
    d = folder(root, df, 2, 20)
    subprocess.run(["sh", "-c", "echo '{\"y\": -1, \"z\": 0.5}' > r.json.new && mv r.json.new r.json"], cwd=d, check=True)
    df, reads = same(root, monkeypatch)
    assert reads == 1
    row = df[(df.a == 2) & (df.b == 20)].iloc[0]
    assert (row["y"], row["z"], row["_status"]) == (-1, 0.5, "done")


def test_a_rerun_a_failed_rerun_and_a_stale_job(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert main(["build"]) == 0
    first = latest(root, "sim")
    # a rerun: the row is the new run's
    assert main(["build", "--force", "sim", "sim[a=1]"]) == 0
    df, reads = same(root, monkeypatch)
    assert reads == 0
    assert df["_run_seq"].tolist() == [1, 1, 0, 0, 0, 0]
    assert latest(root, "sim") != first  # the two rerun jobs' rows now name run 1
    # a changed command, not rebuilt yet: stale, with the results of its last run
    (root / "sweepfile").write_text(SIM.replace("NaN}}}}' > {output}", "NaN}}}}' > {output} # v2"))
    df, reads = same(root, monkeypatch)
    assert reads == 0
    assert set(df["_status"]) == {"stale"} and df["y"].tolist() == [17, 27, 27, 47, 37, 67]
    # a failed rerun: no results (its old results file was removed before it ran)
    (root / "sweepfile").write_text(SIM.replace("NaN}}}}' > {output}", "NaN}}}}' > {output}; exit 4"))
    assert main(["build", "-k", "sim[a=2]"]) == 1
    df, reads = same(root, monkeypatch)
    by = {(r["a"], r["b"]): r for r in df.to_dict(orient="records")}
    assert by[2, 10]["_status"] == "failed" and pd.isna(by[2, 10]["y"]) and by[2, 10]["_error"] == "exit 4"
    assert by[1, 10]["_status"] == "stale" and by[1, 10]["y"] == 17
    assert reads == 0
    # the history keeps every run's rows, failed runs add none
    hist = sweepc.load(root).results(history=True)
    assert hist["_run_seq"].tolist() == [0] * 6 + [1, 1]


def test_a_job_whose_build_was_killed_is_read_from_its_files(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert main(["build"]) == 0
    df, _ = same(root, monkeypatch)
    h = str(df.iloc[0]["_pset_hash"])
    # a build that marked it planned and died before its end was recorded
    store = Store.open(root)
    try:
        store.mark_planned([("sim", h, json.dumps({"a": 1, "b": 10, "k": 7}))], "dead-run")
    finally:
        store.close()
    assert h not in latest(root, "sim")
    df, reads = same(root, monkeypatch)
    assert reads == 1
    assert df.iloc[0]["_status"] == "stale" and df.iloc[0]["y"] == 17


def _csv_by_rows(df: pd.DataFrame) -> str:
    """to_csv as it was: one cell at a time (the reference for the fast one)."""
    lines = [",".join(res._csv_text(str(c), False) for c in df.columns)]
    for row in df.itertuples(index=False, name=None):
        lines.append(",".join(res._csv_cell(v) for v in row))
    return "\n".join(lines) + "\n"


def test_csv_column_by_column_is_the_csv_cell_by_cell() -> None:
    t = pd.Timestamp("2026-11-30 00:16:00.293646", tz="UTC")
    df = pd.DataFrame({
        "i": [1, -2, 3, 10**15],
        "f": [0.1, float("nan"), float("inf"), -0.0],
        "n": pd.array([1, None, 3, 0], dtype="Int64"),
        "b": [True, False, True, False],
        "s": ["done", "1", None, 'say "hi", x'],
        "S": pd.array(["NA", None, "true", " x"], dtype="string"),
        "o": [None, 1, "true", [1, 2]],
        "m": [1, True, 1.0, "1"],  # equal values of different types
        "t": [t, None, t, t.floor("s")],
        "u": pd.Series([t, t.tz_convert("Europe/Paris"), None, t], dtype=object),
    })
    assert str(df["s"].dtype) == "str" and str(df["n"].dtype) == "Int64"
    assert res.to_csv(df) == _csv_by_rows(df)
    assert res.to_csv(df.iloc[:0]) == _csv_by_rows(df.iloc[:0])
