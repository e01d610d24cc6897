"""sweepc psets --format csv/json: every value as the sweepfile has it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sweepc.cli import main

SWEEPFILE = '''
param a = [1, 2.5, true, "s"]
param b = [1, 2.5]
sweep s = csv("s.csv")
rule r over a:
    shell: "true"
rule q over b:
    shell: "true"
rule t over s:
    shell: "true"
'''


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    p = tmp_path / "proj"
    p.mkdir()
    (p / "sweepfile").write_text(SWEEPFILE)
    (p / "s.csv").write_text("x\n0.5\ninf\nnan\n")
    monkeypatch.chdir(p)
    return p


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_psets_json_keeps_an_int_next_to_floats_an_int(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "psets", "b", "--format", "json")
    assert (code, err) == (0, "")
    assert out == '[{"b":1,"_pset_hash":"c33b2ec1aeeec148","_pset_seq":0},{"b":2.5,"_pset_hash":"f8425ea8ce00ee30","_pset_seq":1}]\n'
    assert [type(r["b"]) for r in json.loads(out)] == [int, float]


def test_psets_csv_keeps_an_int_next_to_floats_an_int(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "psets", "b", "--format", "csv")
    assert (code, err) == (0, "")
    assert out == "b,_pset_hash,_pset_seq\n1,c33b2ec1aeeec148,0\n2.5,f8425ea8ce00ee30,1\n"


def test_psets_json_writes_inf_and_nan_as_pythons_json_does(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "psets", "s", "--format", "json")
    assert (code, err) == (0, "")
    assert out == (
        '[{"x":0.5,"_pset_hash":"6915087ab2f1531f","_pset_seq":0},'
        '{"x":Infinity,"_pset_hash":"fc8b9860c1ca1724","_pset_seq":1},'
        '{"x":NaN,"_pset_hash":"7210c2777daaef9f","_pset_seq":2}]\n'
    )


def test_psets_of_every_sweep_keep_each_value_and_their_gaps(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "psets", "--format", "json")
    assert (code, err) == (0, "")
    rows = json.loads(out)
    assert [(r["_sweep"], r["a"]) for r in rows if r["_sweep"] == "a"] == [("a", 1), ("a", 2.5), ("a", True), ("a", "s")]
    assert [type(r["a"]) for r in rows if r["_sweep"] == "a"] == [int, float, bool, str]
    assert [r["b"] for r in rows if r["_sweep"] == "b"] == [1, 2.5] and all(r["b"] is None for r in rows if r["_sweep"] != "b")
    code, out, err = cli(capsys, "psets", "--format", "csv")
    assert out.splitlines()[0] == "_sweep,x,_pset_hash,_pset_seq,a,b"
    assert [ln.split(",")[4] for ln in out.splitlines()[1:] if ln.startswith("a,")] == ["1", "2.5", "true", "s"]
    assert [ln.split(",")[5] for ln in out.splitlines()[1:] if ln.startswith("b,")] == ["1", "2.5"]
