"""The language verbs of the command line: check, psets, graph; -f, -C, --version, --help."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from sweepc import __version__
from sweepc.cli import build_parser, main
from sweepc.hashing import pset_hash

DESIGN = (Path(__file__).parent / "cases" / "parse" / "design_example.sweep").read_text(encoding="utf-8")
PARAMS_CSV = "param_combo,x,y\n0,1,a\n1,2,b\n2,3,c\n3,4,d\n"

DOT = """\
digraph sweepc {
  rankdir=LR;
  "gen" [label="gen (9 jobs)"];
  "square" [label="square (9 jobs)"];
  "mean" [label="mean (3 jobs)"];
  "total" [label="total (1 job)"];
  "gen" -> "square" [label="same pset"];
  "square" -> "mean" [label="gather by a"];
  "mean" -> "total" [label="all"];
}
"""

MERMAID = """\
flowchart LR
  gen["gen (9 jobs)"]
  square["square (9 jobs)"]
  mean["mean (3 jobs)"]
  total["total (1 job)"]
  gen -->|"same pset"| square
  square -->|"gather by a"| mean
  mean -->|"all"| total
"""

MISSING_HINT = "  hint: run sweepc in the folder that holds the sweepfile, or name it with -f FILE or -C DIR\n"


@pytest.fixture
def design(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The example of DESIGN.md as a project, and the current folder."""
    (tmp_path / "sweepfile").write_text(DESIGN, encoding="utf-8")
    (tmp_path / "params.csv").write_text(PARAMS_CSV, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_check_ok(design: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "check") == (0, "sweepfile: ok: 5 parameters, 6 sweeps, 4 rules, 22 jobs\n", "")


def test_check_counts_in_the_singular(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "sweepfile").write_text('param a = [1]\nsweep s = a\nrule r over s:\n    shell: "echo {a}"\n')
    monkeypatch.chdir(tmp_path)
    assert run(capsys, "check") == (0, "sweepfile: ok: 1 parameter, 1 sweep, 1 rule, 1 job\n", "")


def check_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], sweepfile: str,
                files: dict[str, str] | None = None) -> str:
    """`sweepc check` of a sweepfile (and files beside it) that must fail: its stderr."""
    for name, text in (files or {}).items():
        (tmp_path / name).write_text(text)
    (tmp_path / "sweepfile").write_text(sweepfile)
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "check")
    assert (code, out) == (2, ""), err
    return err


def test_check_error_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    assert check_error(tmp_path, monkeypatch, capsys, "param a = [1, 2]\nsweep g = a * bb\n") == (
        "sweepfile:2:15: unknown parameter or sweep 'bb'\n"
        "  sweep g = a * bb\n"
        "                ^^\n"
        "  hint: define it first: param bb = [...]\n"
    )


def test_a_command_made_too_long_by_its_values_says_so_briefly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Two 70,000-character CSV cells make a 136 KiB command (over Linux's
    128 KiB for one argument). The error quoted the whole pset (136 KiB of
    it) and told to use {input.list} in a rule without inputs."""
    err = check_error(tmp_path, monkeypatch, capsys,
                      'sweep rows = csv("p.csv")\n\nrule r over rows:\n    output: "o.txt"\n    shell: "echo {s} {t} | wc -c > {output}"\n',
                      {"p.csv": "s,t\n" + "x" * 70_000 + "," + "y" * 70_000 + "\nshort,b\n"})
    assert err == (
        "sweepfile:5:12: the command of rule 'r' is 136 KiB long for pset s='" + "x" * 197 + "...; the limit is 127 KiB\n"
        '      shell: "echo {s} {t} | wc -c > {output}"\n'
        "             ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n"
        "  hint: read long values from the job's pset.json ($SWEEPC_PSET_JSON) or write them with a template, "
        "not into the command\n"
    )


def test_a_csv_cell_over_the_csv_modules_limit_is_named_as_such(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """It was "cannot read p.csv: field larger than field limit (131072)"
    with the hint "is it a UTF-8 CSV file?"."""
    err = check_error(tmp_path, monkeypatch, capsys,
                      'sweep rows = csv("p.csv")\n\nrule r over rows:\n    output: "o.txt"\n    shell: "echo {s} > {output}"\n',
                      {"p.csv": "s\n" + "x" * 140_000 + "\n"})
    assert err == (
        "sweepfile:1:18: a cell of p.csv has more than 131,072 characters\n"
        '  sweep rows = csv("p.csv")\n'
        "                   ^^^^^^^\n"
        "  hint: keep long texts in files of their own, and their paths in the CSV file\n"
    )


def test_a_sweepfile_that_is_not_utf8_is_an_error_at_the_byte(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A Latin-1 'é' was `sweepc: cannot read .../sweepfile: 'utf-8' codec
    can't decode byte 0xe9 in position 64: invalid continuation byte`: no
    line, no column."""
    (tmp_path / "sweepfile").write_bytes(b'param a = [1, 2]\nrule r over a:\n    output: "o"\n    shell: "echo {a} caf\xe9 > {output}"\n')
    monkeypatch.chdir(tmp_path)
    assert main(["check"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        "sweepfile:4:25: not UTF-8 text (byte 0xe9)\n"
        '      shell: "echo {a} caf\ufffd > {output}"\n'
        "                          ^\n"
        "  hint: save the file as UTF-8\n"
    )


def test_a_byte_order_mark_and_crlf_line_ends_are_read_as_python_reads_its_source(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A Windows editor's sweepfile: UTF-8 with a byte order mark, CRLF line
    ends. The mark was `sweepfile:1:1: unexpected character '\\ufeff'`."""
    (tmp_path / "sweepfile").write_bytes(
        b'\xef\xbb\xbfparam a = [1, 2]\r\nrule r over a:\r\n    output: "o"\r\n    shell: "echo {a} > {output}"\r\n')
    monkeypatch.chdir(tmp_path)
    assert main(["build"]) == 0
    assert capsys.readouterr().out.startswith("sweepc: 2 done, 0 up to date")
    assert main(["build"]) == 0
    assert capsys.readouterr().out == "sweepc: nothing to do (2 jobs up to date)\n"
    assert sorted(p.read_text() for p in tmp_path.glob("calc/r/*/*/o")) == ["1\n", "2\n"]


def test_missing_sweepfile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    for verb in ("check", "psets", "graph"):
        assert run(capsys, verb) == (2, "", f"sweepc: no sweepfile at {tmp_path / 'sweepfile'}\n" + MISSING_HINT)
    assert run(capsys, "-f", "other.sweep", "check") == (2, "", f"sweepc: no sweepfile at {tmp_path / 'other.sweep'}\n" + MISSING_HINT)
    assert run(capsys, "-C", str(tmp_path / "nowhere"), "check") == (2, "", f"sweepc: no such folder: {tmp_path / 'nowhere'}\n")


def test_file_and_directory_options(design: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    monkeypatch.chdir(elsewhere)
    ok = "sweepfile: ok: 5 parameters, 6 sweeps, 4 rules, 22 jobs\n"
    assert run(capsys, "-C", str(design), "check") == (0, ok, "")
    assert run(capsys, "-f", str(design / "sweepfile"), "check") == (0, ok, "")
    assert run(capsys, "-f", str(design), "check") == (0, ok, "")  # a folder holding a sweepfile
    # -f relative to -C
    (design / "small.sweep").write_text("param a = [1, 2]\n")
    assert run(capsys, "-C", str(design), "-f", "small.sweep", "check") == (0, "small.sweep: ok: 1 parameter, 0 sweeps, 0 rules, 0 jobs\n", "")
    # a sweepfile elsewhere is named by its path in errors
    (elsewhere / "sub").mkdir()
    bad = elsewhere / "sub" / "bad.sweep"
    bad.write_text("param a = [1,\n")
    code, out, err = run(capsys, "-f", str(bad), "check")
    assert code == 2 and out == ""
    assert err.startswith(f"{bad}:1:11: '[' was never closed\n")
    # in the current folder it is named by its name
    monkeypatch.chdir(elsewhere / "sub")
    code, out, err = run(capsys, "-f", "bad.sweep", "check")
    assert code == 2 and err.startswith("bad.sweep:1:11: '[' was never closed\n")
    # and -C takes the psets of the other project
    code, out, _ = run(capsys, "-C", str(design), "psets", "grid", "--format", "csv")
    assert code == 0 and out.splitlines()[0] == "a,b,_pset_hash,_pset_seq"


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out == f"sweepc {__version__}\n"


def _verbs() -> list[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return sorted(sub.choices)  # type: ignore[attr-defined]


def test_help_of_every_verb(capsys: pytest.CaptureFixture[str]) -> None:
    verbs = _verbs()
    assert {"check", "psets", "graph"} <= set(verbs)
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    top = capsys.readouterr().out
    assert top.startswith("usage: sweepc")
    for verb in verbs:
        assert verb in top
        with pytest.raises(SystemExit) as info:
            main([verb, "--help"])
        assert info.value.code == 0, verb
        assert capsys.readouterr().out.startswith(f"usage: sweepc {verb}"), verb


def test_usage_errors_exit_2(design: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["no-such-verb"])
    assert info.value.code == 2
    assert "invalid choice: 'no-such-verb'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["psets", "--format", "xml"])
    assert info.value.code == 2
    assert "invalid choice: 'xml'" in capsys.readouterr().err
    assert run(capsys, "psets", "gird") == (2, "", "sweepc: unknown sweep 'gird'\n  hint: did you mean 'grid'?\n")
    # `--psets -10:` (the last ten): argparse takes "-10:" for an option; the hint shows the '=' form
    with pytest.raises(SystemExit) as info:
        main(["build", "-n", "--psets", "-10:"])
    assert info.value.code == 2
    assert capsys.readouterr().err.endswith("sweepc: error: argument --psets: expected one argument\n"
                                            "  hint: a value that starts with '-' goes after '=': --psets=-10:\n")
    with pytest.raises(SystemExit) as info:
        main(["build", "-n", "--psets"])  # no value at all: no such hint
    assert capsys.readouterr().err.endswith("sweepc: error: argument --psets: expected one argument\n")
    assert main(["build", "-n", "--psets=-2:"]) == 0
    assert capsys.readouterr().out.endswith(" up to date\n")


# ---- psets ----------------------------------------------------------------------


def test_psets_csv(design: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "psets", "grid", "--format", "csv")
    assert (code, err) == (0, "")
    df = pd.read_csv(io.StringIO(out))
    assert list(df.columns) == ["a", "b", "_pset_hash", "_pset_seq"]
    expected = [{"a": a, "b": b} for a in (1, 2, 3) for b in (10, 20, 30)]
    assert df[["a", "b"]].to_dict(orient="records") == expected
    assert list(df["_pset_hash"]) == [pset_hash(p) for p in expected]
    assert list(df["_pset_seq"]) == list(range(9))


def test_psets_json(design: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "psets", "rows", "--format", "json")
    assert (code, err) == (0, "")
    rows = json.loads(out)
    # the csv index (param_combo) is the bookkeeping column _index, not a parameter: not hashed
    assert rows == [
        {"x": 1, "y": "a", "_index": 0, "_pset_hash": pset_hash({"x": 1, "y": "a"}), "_pset_seq": 0},
        {"x": 2, "y": "b", "_index": 1, "_pset_hash": pset_hash({"x": 2, "y": "b"}), "_pset_seq": 1},
        {"x": 3, "y": "c", "_index": 2, "_pset_hash": pset_hash({"x": 3, "y": "c"}), "_pset_seq": 2},
    ]


def test_psets_json_values_are_exact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Values read back from JSON hash to the printed hash (no rounding)."""
    (tmp_path / "sweepfile").write_text(
        'param lr = logspace(-12, -1, 3)\nparam t = linspace(0, 1, 4)\nparam w = [0.30000000000000004, 1e-300]\nparam s = ["é", "it\'s"]\n'
        "sweep g = lr * t * w * s\n"
    )
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys, "psets", "g", "--format", "json")
    assert code == 0
    rows = json.loads(out)
    assert len(rows) == 3 * 4 * 2 * 2
    assert rows[0]["lr"] == 1e-12 and rows[0]["w"] == 0.30000000000000004
    for row in rows:
        pset = {k: v for k, v in row.items() if not k.startswith("_")}
        assert pset_hash(pset) == row["_pset_hash"]
    # csv too
    code, out, _ = run(capsys, "psets", "g", "--format", "csv")
    df = pd.read_csv(io.StringIO(out))
    for rec in df.to_dict(orient="records"):
        pset = {k: v for k, v in rec.items() if not k.startswith("_")}
        assert pset_hash(pset) == rec["_pset_hash"]


def test_psets_csv_values_read_back_as_their_type(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Booleans as the sweepfile spells them, text that would read as a number
    or a boolean quoted; pandas gives every type back (a column of number-like
    text with dtype=str, as docs/cli.md says), so each row hashes to its hash."""
    (tmp_path / "sweepfile").write_text(
        'param n = [1, 2]\nparam x = [0.1, 1e-300]\nparam flag = [true, false]\n'
        'param code = ["1", "007"]\nparam name = ["a,b", "true"]\n'
        "sweep g = n * x * flag * code * name\n"
    )
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys, "psets", "g", "--format", "csv")
    assert code == 0
    first = {"n": 1, "x": 0.1, "flag": True, "code": "1", "name": "a,b"}
    assert out.splitlines()[:3] == [
        "n,x,flag,code,name,_pset_hash,_pset_seq",
        f'1,0.1,true,"1","a,b",{pset_hash(first)},0',
        f'1,0.1,true,"1","true",{pset_hash({**first, "name": "true"})},1',
    ]
    df = pd.read_csv(io.StringIO(out), dtype={"code": str})
    assert len(df) == 32
    assert {c: str(t) for c, t in df.dtypes.items() if c in ("n", "x", "flag")} == {"n": "int64", "x": "float64", "flag": "bool"}
    for rec in df.to_dict(orient="records"):
        pset = {k: v for k, v in rec.items() if not k.startswith("_")}
        assert pset_hash(pset) == rec["_pset_hash"], rec


def test_psets_table(design: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "psets", "scan")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["a", "b", "_pset_hash", "_pset_seq"]
    assert [ln.split() for ln in lines[1:]] == [
        [str(a), str(b), pset_hash({"a": a, "b": b}), str(i)]
        for i, (a, b) in enumerate([(1, 20), (2, 20), (3, 20), (2, 10), (2, 30)])
    ]


def test_psets_of_every_sweep(design: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "psets", "--format", "json")
    assert code == 0
    rows = json.loads(out)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["_sweep"]] = counts.get(r["_sweep"], 0) + 1
    assert counts == {"grid": 9, "pairs": 3, "scan": 5, "rows": 3, "both": 9, "small": 6}
    pairs = [r for r in rows if r["_sweep"] == "pairs"]
    assert [(r["a"], r["c"], r["_pset_seq"]) for r in pairs] == [(1, "x", 0), (2, "y", 1), (3, "z", 2)]
    assert all(r["x"] is None for r in pairs)


def test_psets_without_a_sweep_statement_are_those_of_the_parameters_rules_run_over(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """`param a` and `rule r over a` (the quickstart's shape, psweep's
    plist): `sweepc psets` said "(no rows)"."""
    (tmp_path / "sweepfile").write_text(
        'param a = [1, 2]\nparam b = ["x"]\nsweep g = a * b\n\n'
        'rule r over a:\n    shell: "echo {a}"\n\nrule s over g:\n    shell: "echo {a} {b}"\n\nrule t over b:\n    shell: "echo {b}"\n')
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys, "psets", "--format", "json")
    assert code == 0
    rows = json.loads(out)
    assert [(r["_sweep"], r["a"], r["b"]) for r in rows] == [("g", 1, "x"), ("g", 2, "x"), ("a", 1, None), ("a", 2, None), ("b", None, "x")]
    assert [r["_pset_hash"] for r in rows if r["_sweep"] == "a"] == [pset_hash({"a": 1}), pset_hash({"a": 2})]


def test_psets_of_a_parameter(design: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "psets", "lr", "--format", "json")
    assert code == 0
    assert json.loads(out) == [
        {"lr": v, "_pset_hash": pset_hash({"lr": v}), "_pset_seq": i} for i, v in enumerate([0.0001, 0.001, 0.01, 0.1])
    ]


# ---- graph ----------------------------------------------------------------------


def test_graph_dot(design: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "graph") == (0, DOT, "")
    assert run(capsys, "graph", "--format", "dot") == (0, DOT, "")


def test_graph_mermaid(design: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "graph", "--format", "mermaid") == (0, MERMAID, "")


def test_graph_broadcast_edge(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "sweepfile").write_text(
        'param a = [1, 2]\nparam b = [3, 4]\nsweep g = a * b\n'
        'rule per_b over b:\n    output: "o"\n    shell: "echo {b} > {output}"\n'
        'rule all over g:\n    input: per_b\n    shell: "cat {input}"\n'
    )
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys, "graph")
    assert code == 0
    assert '  "per_b" -> "all" [label="broadcast"];' in out.splitlines()


def test_graph_jobs(design: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "graph", "--jobs")
    assert code == 0
    lines = out.splitlines()
    nodes = [ln for ln in lines if "[label=" in ln and "->" not in ln]
    edges = [ln for ln in lines if "->" in ln]
    assert len(nodes) == 22
    assert len(edges) == 9 + 9 + 3  # gen->square, square->mean (3 each), mean->total
    total = pset_hash({})
    assert f'  "total_{total}" [label="total"];' in lines
    h = pset_hash({"a": 1, "b": 10})
    assert f'  "gen_{h}" [label="gen[a=1,b=10]"];' in lines
    assert f'  "gen_{h}" -> "square_{h}";' in lines


def test_module_entry_point(design: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "sweepc", "check"], check=False, capture_output=True, text=True, cwd=design)
    assert (done.returncode, done.stdout, done.stderr) == (0, "sweepfile: ok: 5 parameters, 6 sweeps, 4 rules, 22 jobs\n", "")


def test_an_output_that_cannot_hold_a_character_gets_an_escape_not_a_traceback(tmp_path: Path) -> None:
    """With PYTHONIOENCODING=ascii (or an old locale) `sweepc psets` and
    `sweepc results` of a parameter 'ünï' ended in a UnicodeEncodeError
    traceback half-way through the table."""
    (tmp_path / "sweepfile").write_text('param name = ["ünï", "x"]\nrule r over name:\n    output: "o"\n    shell: "echo {name} > {output}"\n',
                                        encoding="utf-8")
    env = {**os.environ, "PYTHONIOENCODING": "ascii"}
    done = subprocess.run([sys.executable, "-m", "sweepc", "psets", "--format", "csv"], check=False, capture_output=True,
                          cwd=tmp_path, env=env)
    assert (done.returncode, done.stderr) == (0, b"")
    assert done.stdout.decode("ascii").splitlines()[1].startswith("name,\\xfcn\\xef,")
