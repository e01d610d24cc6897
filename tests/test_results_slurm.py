"""Honest results on the REAL local SLURM cluster (issue 16, item 2): the same
end-of-job check as the local backend (backends/jobdir.check_end), both when
`build --wait` reads the completion records and when a later command takes
them in (records.ingest); done jobs' results go into the history.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from sweepc.cli import main
from sweepc.lang.graph import RECORD_NAME

pytestmark = pytest.mark.slurm

SWEEPFILE = '''\
param a = [1, 2, 3]
sweep grid = a

rule sim over grid:
    output: "r.json"
    results: "r.json"
    shell: """
        if [ {a} = 2 ]; then echo '[1, 2]' > {output}; exit 0; fi
        if [ {a} = 3 ]; then echo '{{"_status": "mine"}}' > {output}; exit 0; fi
        echo '{{"y": NaN, "run": "'$SWEEPC_RUN_ID'"}}' > {output}
    """

backend slurm:
    bundle = 3
'''


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out + err


@pytest.fixture
def project(slurm_cluster: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "p"
    root.mkdir()
    (root / "sweepfile").write_text(SWEEPFILE)
    monkeypatch.chdir(root)
    return root


def _rows(capsys: pytest.CaptureFixture[str], *args: str) -> list[dict[str, object]]:
    code, out = run(capsys, "results", "--format", "json", *args)
    assert code == 0, out
    rows = json.loads(out)
    assert isinstance(rows, list)
    return rows


def test_build_wait_checks_results_files(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "build", "--backend", "slurm", "--wait", "-k")
    assert code == 1, out
    assert "FAILED sim[a=2]: results file r.json holds a list, not a JSON object\n" in out
    assert "FAILED sim[a=3]: results file r.json: key '_status' is the name of a bookkeeping column\n" in out
    rows = _rows(capsys)
    assert [(r["a"], r["_status"], r["_error"]) for r in rows] == [
        (1, "done", None),
        (2, "failed", "results file r.json holds a list, not a JSON object"),
        (3, "failed", "results file r.json: key '_status' is the name of a bookkeeping column"),
    ]
    hist = _rows(capsys, "--history")
    assert [(r["a"], r["run"] == r["_run_id"]) for r in hist] == [(1, True)]


def test_records_taken_in_later_are_checked_too(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "build", "--backend", "slurm")
    assert code == 0, out
    # wait for the three completion records without sweepc reading them
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        dirs = list((project / "calc" / "sim").glob("*/*"))
        # final records: a pset writes a `running` one first (the runner makes the folders as it goes)
        if len(dirs) == 3 and all((d / RECORD_NAME).is_file() and '"status": "running"' not in (d / RECORD_NAME).read_text() for d in dirs):
            break
        time.sleep(0.5)
    else:
        pytest.fail("the array task did not write its records in 120 s")
    # `status` takes the records in (records.ingest), with the same check
    code, out = run(capsys, "status", "--format", "json")
    st = json.loads(out)[0]
    assert (st["done"], st["failed"]) == (1, 2), out
    rows = _rows(capsys, "--columns", "a,_status,_error")
    assert rows[1] == {"a": 2, "_status": "failed", "_error": "results file r.json holds a list, not a JSON object"}
    assert len(_rows(capsys, "--history")) == 1
