"""Provenance: every build that runs something is a run (`sweepc runs`), with
the git commit it ran from and whether the tree was dirty; `--git-commit`
commits the sweepfile and the files it names first."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

import sweepc
from sweepc.cli import main

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
RUNS_COLUMNS = [
    "_run_seq", "_run_id", "started_utc", "duration_s", "command", "overrides", "backend", "ran", "failed",
    "uptodate", "status", "git_commit", "git_dirty",
]

SWEEPFILE = """\
param a = [1, 2]
sweep grid = a
sweep rows = csv("params.csv")

rule square over grid:
    input: script = "square.sh"
    output: "out.txt"
    shell: "sh {input.script} {a} > {output}"

rule fromcsv over rows:
    output: "o.txt"
    shell: "echo {x} > {output}"
"""
SQUARE = 'echo $(($1 * $1))\n'
FAILS_FOR_2 = 'if [ "$1" = 2 ]; then echo "no twos" >&2; exit 4; fi\necho $(($1 * $1))\n'


def project(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "sweepfile").write_text(SWEEPFILE)
    (root / "square.sh").write_text(SQUARE)
    (root / "params.csv").write_text("x\n7\n8\n")
    return root


@pytest.fixture(autouse=True)
def quiet_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """git (also the git sweepc runs) sees neither the user's config nor a repository above tmp_path."""
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "no-gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))


def git(repo: Path, *args: str) -> str:
    cp = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=60)
    assert cp.returncode == 0, cp.stderr
    return cp.stdout.strip()


def git_repo(repo: Path) -> Path:
    repo.mkdir(parents=True, exist_ok=True)
    git(repo, "init", "-q")
    git(repo, "config", "user.name", "Sweep Tester")
    git(repo, "config", "user.email", "tester@example.org")
    git(repo, "config", "commit.gpgsign", "false")
    return repo


def sweepc_exe() -> list[str]:
    here = Path(sys.executable).parent / "sweepc"
    if here.exists():
        return [str(here)]
    found = shutil.which("sweepc")
    assert found, "sweepc is not installed"
    return [found]


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def runs_json(capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    code, out, err = cli(capsys, "runs", "--format", "json")
    assert code == 0, err
    rows = json.loads(out)
    assert isinstance(rows, list)
    return rows


# ---- sweepc runs ----------------------------------------------------------------


def test_runs_lists_every_build_that_ran_something(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    root = project(tmp_path / "p")
    monkeypatch.chdir(root)
    code, out, err = cli(capsys, "runs")
    assert (code, out, err) == (0, "(no rows)\n", "")
    assert not (root / ".sweepc").exists()

    t0 = time.time()
    cp = subprocess.run([*sweepc_exe(), "build", "-j", "2"], cwd=root, capture_output=True, text=True, timeout=60)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    t1 = time.time()
    (run,) = runs_json(capsys)
    assert list(run) == RUNS_COLUMNS
    assert UUID.match(str(run["_run_id"]))
    assert {k: run[k] for k in RUNS_COLUMNS if k not in ("_run_id", "started_utc", "duration_s")} == {
        "_run_seq": 0, "command": "sweepc build -j 2", "overrides": "", "backend": "local", "ran": 4, "failed": 0,
        "uptodate": 0, "status": "ok", "git_commit": None, "git_dirty": None,  # not a git repository
    }
    started = pd.Timestamp(str(run["started_utc"]))
    assert started.tzinfo is not None and int(t0) <= started.timestamp() <= t1
    assert isinstance(run["duration_s"], float) and 0 <= run["duration_s"] <= t1 - t0 + 0.1
    # every job of the build carries the run id
    ids = {str(r["_run_id"]) for rule in ("square", "fromcsv") for r in json.loads(cli(capsys, "results", "--rule", rule, "--format", "json")[1])}
    assert ids == {run["_run_id"]}

    # a build with nothing to do is no run
    code, out, _ = cli(capsys, "build")
    assert (code, out) == (0, "sweepc: nothing to do (4 jobs up to date)\n")
    assert len(runs_json(capsys)) == 1

    # a build with a failure: counts and status
    (root / "square.sh").write_text(FAILS_FOR_2)
    code, out, _ = cli(capsys, "build", "-k", "-j", "1")
    assert code == 1, out
    runs = runs_json(capsys)
    assert [r["_run_seq"] for r in runs] == [0, 1]
    assert runs[1]["_run_id"] != runs[0]["_run_id"]
    assert {k: runs[1][k] for k in ("ran", "failed", "uptodate", "status")} == {"ran": 1, "failed": 1, "uptodate": 2, "status": "failed"}
    assert runs[1]["command"] == "sweepc build -k -j 1"  # in-process main(): the argv it was given

    # through the API, with its own command line
    r = sweepc.load(root).build(targets=["fromcsv"], force=["fromcsv"], argv=["myscript.py", "--x"])
    assert r.summary is not None and r.summary.ok and r.run_seq == 2
    df = sweepc.load(root).runs()
    assert list(df.columns) == RUNS_COLUMNS
    assert df[["_run_seq", "command", "ran", "failed", "uptodate", "status"]].values.tolist() == [
        [0, "sweepc build -j 2", 4, 0, 0, "ok"],
        [1, "sweepc build -k -j 1", 1, 1, 2, "failed"],
        [2, "myscript.py --x", 2, 0, 0, "ok"],
    ]
    assert df["_run_id"].tolist() == [x["_run_id"] for x in runs] + [r.run_id]


def test_runs_formats(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    root = project(tmp_path / "p")
    monkeypatch.chdir(root)
    assert cli(capsys, "build")[0] == 0
    (run,) = runs_json(capsys)
    code, out, _ = cli(capsys, "runs")
    lines = out.splitlines()
    assert code == 0 and len(lines) == 2
    assert lines[0].split() == RUNS_COLUMNS
    assert str(run["_run_id"]) in lines[1] and "sweepc build" in lines[1]
    code, out, _ = cli(capsys, "runs", "--format", "csv")
    assert out.splitlines()[0] == ",".join(RUNS_COLUMNS)
    assert out.splitlines()[1].startswith(f"0,{run['_run_id']},")


# ---- git --------------------------------------------------------------------------


def test_outside_git_no_commit_is_recorded_and_git_commit_refuses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    root = project(tmp_path / "p")
    monkeypatch.chdir(root)
    code, out, err = cli(capsys, "build", "--git-commit")
    assert (code, out) == (2, "")
    assert err == "sweepc: --git-commit needs the project to be in a git repository\n  hint: run: git init\n"
    assert runs_json(capsys) == [] and not (root / "calc").exists(), "nothing ran"
    r = sweepc.load(root).build()
    assert r.run_id is not None
    assert sweepc.load(root).runs()[["git_commit", "git_dirty"]].values.tolist() == [[None, None]]


def test_each_run_records_the_commit_and_whether_the_tree_was_dirty(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    repo = git_repo(tmp_path / "repo")
    root = project(repo)
    git(repo, "add", "sweepfile", "square.sh", "params.csv")
    git(repo, "commit", "-q", "-m", "project")
    head = git(repo, "rev-parse", "HEAD")
    monkeypatch.chdir(root)

    # clean: the outputs and sweepc's own .sweepc/ (untracked) do not make it dirty
    assert cli(capsys, "build")[0] == 0
    assert git(repo, "status", "--porcelain", "--untracked-files=all") != ""  # they are there, untracked
    assert (runs_json(capsys)[-1]["git_commit"], runs_json(capsys)[-1]["git_dirty"]) == (head, False)

    # a changed tracked file makes it dirty; the commit is still HEAD
    (root / "square.sh").write_text(SQUARE + "# changed\n")
    assert cli(capsys, "build")[0] == 0
    assert (runs_json(capsys)[-1]["git_commit"], runs_json(capsys)[-1]["git_dirty"]) == (head, True)

    # committed again: clean; an untracked file of the user's counts as dirty
    git(repo, "commit", "-q", "-am", "change")
    head2 = git(repo, "rev-parse", "HEAD")
    (root / "notes.txt").write_text("untracked\n")
    assert cli(capsys, "build", "--force", "square")[0] == 0
    assert (runs_json(capsys)[-1]["git_commit"], runs_json(capsys)[-1]["git_dirty"]) == (head2, True)
    (root / "notes.txt").unlink()
    assert cli(capsys, "build", "--force", "square")[0] == 0
    assert (runs_json(capsys)[-1]["git_commit"], runs_json(capsys)[-1]["git_dirty"]) == (head2, False)
    assert [r["_run_seq"] for r in runs_json(capsys)] == [0, 1, 2, 3]


def test_git_is_asked_while_the_backend_checks_and_its_failure_is_no_facts(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # git_state runs in a thread from before the backend's check (which, for a
    # python: rule, starts an interpreter to import the module) until the run
    # is recorded: the two waits overlap. The check below returns only once
    # git has been asked, so a git asked after the check would never come.
    import threading

    from sweepc import api
    from sweepc.backends.local import LocalBackend

    asked = threading.Event()
    seen: list[tuple[Path, tuple[Path, ...]]] = []

    def slow_git(root: Path, exclude: tuple[Path, ...] = ()) -> tuple[str | None, bool | None]:
        seen.append((root, tuple(exclude)))
        asked.set()
        return "c0ffee", True

    real_check = LocalBackend.check

    def check(self: LocalBackend, *a: object, **k: object) -> list[str]:
        assert asked.wait(10), "git was not asked while the backend checked"
        return real_check(self, *a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(api, "git_state", slow_git)
    monkeypatch.setattr(LocalBackend, "check", check)
    root = project(tmp_path / "p")
    study = sweepc.load(root)
    assert study.build().summary.ok
    assert sweepc.load(root).runs()[["git_commit", "git_dirty"]].values.tolist() == [["c0ffee", True]]
    assert seen == [(root, (root / ".sweepc", root / "calc"))]

    # whatever git_state raises, the run is recorded without git facts, as outside a repository
    def broken_git(root: Path, exclude: tuple[Path, ...] = ()) -> tuple[str | None, bool | None]:
        asked.set()
        raise RuntimeError("no git today")

    monkeypatch.setattr(api, "git_state", broken_git)
    assert study.build(force=["square"]).summary.ok
    rows = sweepc.load(root).runs()[["git_commit", "git_dirty"]].values.tolist()
    assert [[None if pd.isna(v) else v for v in row] for row in rows] == [["c0ffee", True], [None, None]]


def test_git_commit_commits_the_named_files_with_the_run_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    repo = git_repo(tmp_path / "repo")
    (repo / "other.txt").write_text("tracked, not named by the sweepfile\n")
    git(repo, "add", "other.txt")
    git(repo, "commit", "-q", "-m", "start")
    root = project(repo / "proj")  # the project in a sub-folder of the repository
    assert [p.relative_to(root.resolve()).as_posix() for p in sweepc.load(root).named_files()] == [
        "sweepfile", "square.sh", "params.csv",
    ]

    cp = subprocess.run([*sweepc_exe(), "build", "--git-commit", "-j", "2"], cwd=root, capture_output=True, text=True, timeout=60)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    monkeypatch.chdir(root)
    (run,) = runs_json(capsys)
    head = git(repo, "rev-parse", "HEAD")
    assert git(repo, "log", "-1", "--format=%s") == f"sweepc run {run['_run_id']}"
    assert (run["git_commit"], run["git_dirty"]) == (head, False)
    assert run["command"] == "sweepc build --git-commit -j 2"
    assert git(repo, "show", "--name-only", "--format=", "HEAD").splitlines() == [
        "proj/params.csv", "proj/square.sh", "proj/sweepfile",
    ]
    assert git(repo, "rev-list", "--count", "HEAD") == "2"

    # changed named files are committed; a changed file it does not name is not (and makes the run dirty)
    (root / "square.sh").write_text(SQUARE + "# v2\n")
    (repo / "other.txt").write_text("changed\n")
    code, out, err = cli(capsys, "build", "--git-commit")
    assert code == 0, out + err
    run2 = runs_json(capsys)[-1]
    head2 = git(repo, "rev-parse", "HEAD")
    assert head2 != head
    assert git(repo, "log", "-1", "--format=%s") == f"sweepc run {run2['_run_id']}"
    assert (run2["git_commit"], run2["git_dirty"]) == (head2, True)
    assert git(repo, "show", "--name-only", "--format=", "HEAD").splitlines() == ["proj/square.sh"]
    assert git(repo, "status", "--porcelain", "--untracked-files=no") == "M other.txt"

    # nothing named has changed: no new commit; the run records the HEAD it ran from
    git(repo, "checkout", "-q", "other.txt")
    code, out, err = cli(capsys, "build", "--git-commit", "--force", "square")
    assert code == 0, out + err
    run3 = runs_json(capsys)[-1]
    assert git(repo, "rev-parse", "HEAD") == head2
    assert (run3["_run_seq"], run3["git_commit"], run3["git_dirty"]) == (2, head2, False)

    # nothing to run: no commit and no run, even with a changed sweepfile (a comment)
    (root / "sweepfile").write_text(SWEEPFILE + "# a comment\n")
    code, out, err = cli(capsys, "build", "--git-commit")
    assert (code, out) == (0, "sweepc: nothing to do (4 jobs up to date)\n")
    assert git(repo, "rev-parse", "HEAD") == head2
    assert len(runs_json(capsys)) == 3


def test_git_commit_through_the_api(tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "repo")
    root = project(repo)
    study = sweepc.load(root)
    r = study.build(git_commit=True, jobs=2)
    assert r.run_id is not None and r.summary is not None and r.summary.ok
    assert git(repo, "log", "-1", "--format=%s") == f"sweepc run {r.run_id}"
    runs = study.runs()
    assert runs[["_run_id", "git_commit", "git_dirty"]].values.tolist() == [[r.run_id, git(repo, "rev-parse", "HEAD"), False]]
