"""The Python API: sweepc.load, Study.psets/plan/build/results/runs, and
SweepfileError. The CLI is a thin layer over it, so the two must agree."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import sweepc
from sweepc.api import BuildResult, Study
from sweepc.cli import main

SWEEPFILE = '''\
param a = {a}
param b = [10, 20]
sweep grid = a * b

rule gen over grid:
    output: "out.txt"
    shell: "echo {{a}} {{b}} > {{output}}"

rule square over grid:
    input: gen
    output: data = "square.json"
    results: "square.json"
    shell: """
        if [ {{a}} = 3 ]; then echo "boom" >&2; exit 3; fi
        printf '{{{{"sq": %d, "nest": {{{{"x": %d}}}}}}}}' $(({{a}} * {{b}})) {{a}} > {{output.data}}
    """

rule mean over grid by a:
    input: square
    output: "mean.txt"
    shell: "cat {{input}} > {{output}}"
'''


def project(root: Path, a: list[int] = [1, 2]) -> Path:  # noqa: B006
    root.mkdir(parents=True, exist_ok=True)
    (root / "sweepfile").write_text(SWEEPFILE.format(a=a), encoding="utf-8")
    return root


def sweepc_exe() -> list[str]:
    """The installed `sweepc` console script (next to this interpreter when it is there)."""
    here = Path(sys.executable).parent / "sweepc"
    if here.exists():
        return [str(here)]
    found = shutil.which("sweepc")
    assert found, "sweepc is not installed"
    return [found]


# ---- load ---------------------------------------------------------------------


def test_load_a_file_or_a_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = project(tmp_path / "p")
    by_dir = sweepc.load(root)
    by_file = sweepc.load(root / "sweepfile")
    assert isinstance(by_dir, Study) and isinstance(by_file, sweepc.Study)
    assert by_dir.root == by_file.root == root.resolve()
    assert [r.name for r in by_dir.graph.rules] == ["gen", "square", "mean"]
    monkeypatch.chdir(root)
    assert sweepc.load().root == root.resolve()  # default: ./sweepfile
    assert sweepc.load(".").root == root.resolve()


def test_load_without_a_sweepfile(tmp_path: Path) -> None:
    with pytest.raises(sweepc.UsageError) as e:
        sweepc.load(tmp_path)
    assert str(e.value) == (
        f"no sweepfile at {tmp_path / 'sweepfile'}\n"
        "  hint: run sweepc in the folder that holds the sweepfile, or name it with -f FILE or -C DIR"
    )
    assert isinstance(e.value, sweepc.SweepcError)


BROKEN_ONE = "param a = [1, 2]\nparam b = [3]\nsweep grid = a * bb\n"
BROKEN_TWO = "param a = [1, 2]\nsweep grid = a * bb\nsweep g2 = zz\n"


def test_sweepfile_error_is_what_the_cli_prints(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "sweepfile").write_text(BROKEN_ONE)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(sweepc.SweepfileError) as e:
        sweepc.load(tmp_path)
    (d,) = e.value.diagnostics
    assert d.span is not None
    assert (d.span.line, d.span.column, d.span.end_line, d.span.end_column) == (3, 18, 3, 20)
    assert "'bb'" in d.message and d.hint == "did you mean 'b'?"
    # (the compiler's wording is pinned by its own tests; here: file:line:col, line, caret, hint)
    assert str(e.value) == (
        f"sweepfile:3:18: {d.message}\n"
        "  sweep grid = a * bb\n"
        "                   ^^\n"
        "  hint: did you mean 'b'?"
    )
    cp = subprocess.run([*sweepc_exe(), "check"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert (cp.returncode, cp.stdout) == (2, "")
    assert cp.stderr == str(e.value) + "\n"


def test_every_mistake_in_the_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "sweepfile").write_text(BROKEN_TWO)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(sweepc.SweepfileError) as e:
        sweepc.load("sweepfile")
    diags = e.value.diagnostics
    assert len(diags) >= 2
    assert all(d.span is not None and d.span.line >= 1 and d.span.column >= 1 and d.message for d in diags)
    assert [d.span.line for d in diags if d.span] == sorted(d.span.line for d in diags if d.span)
    assert [(d.span.line, d.span.column) for d in diags if d.span] == [(2, 18), (3, 12)]
    assert str(e.value).startswith(f"sweepfile:2:18: {diags[0].message}\n")
    assert str(e.value).count("\nsweepfile:") == len(diags) - 1
    # the CLI prints the same text, then how many there were
    assert main(["check"]) == 2
    out, err = capsys.readouterr()
    assert (out, err) == ("", str(e.value) + f"\n{len(diags)} errors\n")


def test_error_in_a_folder_elsewhere_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "sweepfile").write_text(BROKEN_ONE)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(sweepc.SweepfileError) as e:
        sweepc.load("p")
    assert str(e.value).startswith(f"{tmp_path / 'p' / 'sweepfile'}:3:18: ")
    assert main(["-f", "p", "check"]) == 2
    assert capsys.readouterr().err == str(e.value) + "\n"


# ---- psets, plan ------------------------------------------------------------------


def test_psets(tmp_path: Path) -> None:
    study = sweepc.load(project(tmp_path))
    df = study.psets("grid")
    assert list(df.columns) == ["a", "b", "_pset_hash", "_pset_seq"]
    assert df[["a", "b", "_pset_seq"]].values.tolist() == [[1, 10, 0], [1, 20, 1], [2, 10, 2], [2, 20, 3]]
    assert list(df["_pset_hash"]) == list(study.graph.sweeps["grid"].hashes)
    # the job hashes of a per-pset rule are the pset hashes
    assert [study.graph.jobs[i].hash for i in study.graph.rule("square").job_ids] == list(df["_pset_hash"])
    with pytest.raises(sweepc.UsageError) as e:
        study.psets("gird")
    assert str(e.value) == "unknown sweep 'gird'\n  hint: did you mean 'grid'?"


def test_plan_says_what_would_run_and_changes_nothing(tmp_path: Path) -> None:
    root = project(tmp_path)
    study = sweepc.load(root)
    p = study.plan()
    assert len(p.run) == len(p.selected) == 10
    assert {r.text for i in p.run for r in p.reasons[i]} == {"never built"}
    assert p.counts_by_rule() == {"gen": 4, "square": 4, "mean": 2}
    assert not (root / ".sweepc").exists() and not (root / "calc").exists()
    # targets and where narrow it (with everything the targets need)
    p = study.plan(targets=["mean"], where="a == 1")
    assert p.counts_by_rule() == {"gen": 2, "square": 2, "mean": 1}


# ---- build ------------------------------------------------------------------------


def test_build_targets_then_the_rest_then_nothing(tmp_path: Path) -> None:
    study = sweepc.load(project(tmp_path))
    first = study.build(targets=["gen"], jobs=2)
    assert isinstance(first, BuildResult)
    assert first.summary is not None and first.summary.ok
    assert (first.summary.done, first.summary.uptodate, first.run_seq) == (4, 0, 0)
    assert first.run_id is not None
    assert set(study.results("gen")["_status"]) == {"done"}
    assert set(study.results("square")["_status"]) == {"never built"}

    second = study.build(jobs=2)
    assert second.summary is not None and second.summary.ok
    assert (second.summary.done, second.summary.uptodate, second.run_seq) == (6, 4, 1)
    assert second.run_id != first.run_id

    third = study.build(jobs=2)
    assert (third.summary, third.run_id, third.run_seq) == (None, None, None)
    assert len(third.plan.run) == 0 and third.plan.uptodate == 10
    runs = study.runs()
    assert list(runs["_run_id"]) == [first.run_id, second.run_id], "a build that ran nothing is not a run"
    assert list(runs["ran"]) == [4, 6] and list(runs["uptodate"]) == [0, 4]
    df = study.results("square")
    assert list(df["sq"]) == [10, 20, 20, 40]
    assert set(df["_run_id"]) == {second.run_id}


def test_build_keep_going(tmp_path: Path) -> None:
    study = sweepc.load(project(tmp_path / "k", a=[1, 3]))
    r = study.build(jobs=2, keep_going=True)
    assert r.summary is not None and not r.summary.ok
    assert sorted(f.label for f in r.summary.failed) == ["square[a=3,b=10]", "square[a=3,b=20]"]
    assert all(f.exit_code == 3 and "boom" in f.tail for f in r.summary.failed)
    # everything that does not need the failed jobs ran, including mean[a=1]
    assert r.summary.done == 7 and r.summary.skipped == 1 and r.summary.not_started == 0
    assert study.results("mean")["_status"].tolist() == ["done", "never built"]
    runs = study.runs()
    assert runs[["ran", "failed", "uptodate", "status"]].values.tolist() == [[7, 2, 0, "failed"]]


def test_build_stops_at_a_failure_without_keep_going(tmp_path: Path) -> None:
    study = sweepc.load(project(tmp_path / "s", a=[1, 3]))
    r = study.build(jobs=1, targets=["square"])
    assert r.summary is not None and not r.summary.ok
    assert len(r.summary.failed) == 1
    assert r.summary.done + len(r.summary.failed) + r.summary.not_started == 8
    assert r.summary.not_started >= 1
    assert study.runs()["status"].tolist() == ["failed"]


# ---- results: the API and the CLI agree --------------------------------------------


def _cli_json(root: Path, rule: str, capsys: pytest.CaptureFixture[str]) -> str:
    if rule == "square":  # once through the installed command, the rest in-process
        cp = subprocess.run([*sweepc_exe(), "results", "--rule", rule, "--format", "json"], cwd=root,
                            capture_output=True, text=True, timeout=60)
        assert cp.returncode == 0, cp.stderr
        return cp.stdout
    capsys.readouterr()
    assert main(["results", "--rule", rule, "--format", "json"]) == 0
    return capsys.readouterr().out


def test_api_and_cli_give_the_same_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    root = project(tmp_path / "p", a=[1, 3])
    monkeypatch.chdir(root)
    study = sweepc.load(root)
    study.build(jobs=2, keep_going=True)  # some rows done, some failed, one gather never built
    for rule in ("square", "mean", "gen"):
        api = study.results(rule)
        # precise_float: pandas' default JSON float parser is off in the last digit
        cli = pd.read_json(io.StringIO(_cli_json(root, rule, capsys)), precise_float=True)
        assert list(cli.columns) == list(api.columns)
        assert len(cli) == len(api) == {"square": 4, "mean": 2, "gen": 4}[rule]
        for c in api.columns:
            if c == "_time_utc":
                assert list(pd.to_datetime(cli[c], utc=True)) == list(api[c]), rule
            else:
                want = [None if pd.isna(v) else v for v in api[c]]
                got = [None if pd.isna(v) else v for v in cli[c]]
                assert got == want, (rule, c)
    assert set(api["_status"]) == {"done"}
    assert study.results("square")["_status"].tolist() == ["done", "done", "failed", "failed"]


def test_results_before_any_build_makes_no_store(tmp_path: Path) -> None:
    root = project(tmp_path)
    study = sweepc.load(root)
    df = study.results()
    assert len(df) == 4 and set(df["_status"]) == {"never built"}
    assert study.runs().empty and list(study.runs().columns) == [
        "_run_seq", "_run_id", "started_utc", "duration_s", "command", "overrides", "backend", "ran", "failed",
        "uptodate", "status", "git_commit", "git_dirty",
    ]
    assert not (root / ".sweepc").exists()


def test_results_unknown_rule(tmp_path: Path) -> None:
    study = sweepc.load(project(tmp_path))
    with pytest.raises(sweepc.UsageError) as e:
        study.results("squares")
    assert str(e.value) == "unknown rule 'squares'\n  hint: did you mean 'square'?"


def test_lazy_import_and_version() -> None:
    code = "import sys, sweepc; assert 'pandas' not in sys.modules; assert callable(sweepc.load); print(sweepc.__version__)"
    cp = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout.strip() == sweepc.__version__
    with pytest.raises(AttributeError):
        sweepc.nope  # type: ignore[attr-defined]  # noqa: B018
    assert json.loads(json.dumps(sorted(sweepc.__all__))) == sorted(
        ["load", "Study", "SweepcError", "SweepfileError", "UsageError", "StateError", "__version__"]
    )
