"""Every example runs end to end, as its README says.

Each example folder is copied to a tmp folder; the console blocks of its
README.md are run there in order and their output compared with what the
README shows (tests/docrun.py; the convention is at the end of
docs/tutorial.md); then the numbers the study produced are checked for real,
and a second build must have nothing to do.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

import sweepc

try:
    import docrun
except ImportError:  # tests/ is a package
    from tests import docrun

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
ALL = ["quickstart", "batched-csv", "hpc-two-step", "save-data-on-disk", "failing-workloads", "restart", "generated-samples",
       "python-function", "dask-local", "input-templates"]


def run_readme(name: str, tmp_path: Path, env: dict[str, str] | None = None, slurm: bool = False) -> Path:
    """Copy the example to tmp_path and run its README there; returns the copy."""
    src = EXAMPLES / name
    dst = tmp_path / name
    def ignore(folder: str, names: list[str]) -> set[str]:
        # a project's own calc/ (not templates/calc/, psweep's layout)
        top = {"calc", ".sweepc", "archive", "view"} if Path(folder) == src else set()
        return {n for n in names if n in top or n == "__pycache__"}

    shutil.copytree(src, dst, ignore=ignore)
    session = docrun.Session(dst, env=env, timeout=300 if slurm else 120)
    ran = session.run_blocks(docrun.parse((src / "README.md").read_text()), f"examples/{name}/README.md", slurm=slurm)
    assert ran > 0, f"examples/{name}/README.md shows no commands"
    return dst


def run_shown(name: str, project: Path, skip: tuple[str, ...] = ()) -> None:
    """After the README's sessions, the commands it shows elsewhere (in its
    prose, in `sh` and `python` blocks) must run too, in the same copy."""
    text = (EXAMPLES / name / "README.md").read_text()
    docrun.Session(project, timeout=120).run_shown(text, f"examples/{name}/README.md", skip=("…", *skip))


def sweepc_cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sweepc", *args], check=False, cwd=cwd, capture_output=True, text=True, timeout=120)


def nothing_to_do(cwd: Path) -> None:
    p = sweepc_cli(cwd, "build")
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.startswith("sweepc: nothing to do ("), p.stdout


def results(project: Path, monkeypatch: pytest.MonkeyPatch, rule: str | None = None):  # type: ignore[no-untyped-def]
    monkeypatch.chdir(project)  # _job_dir is relative to the current folder
    return sweepc.load(project).results(rule)


def test_every_example_is_tested() -> None:
    found = sorted(p.name for p in EXAMPLES.iterdir() if (p / "sweepfile").is_file())
    assert found == sorted(ALL)
    for name in ALL:
        for f in ("sweepfile", "README.md"):
            assert (EXAMPLES / name / f).is_file(), f"examples/{name}/{f} is missing"


def test_the_examples_index_runs_as_shown(tmp_path: Path) -> None:
    shutil.copytree(EXAMPLES, tmp_path / "examples", ignore=shutil.ignore_patterns("calc", ".sweepc", "archive", "__pycache__"))
    ran = docrun.Session(tmp_path).run_shown((EXAMPLES / "README.md").read_text(), "examples/README.md")
    assert ran == 2
    assert len(list((tmp_path / "examples" / "quickstart" / "calc" / "compute").glob("*/*/result.json"))) == 6


def test_shown_commands_are_found_in_prose_sh_and_python_blocks() -> None:
    md = "Run `sweepc build\n--psets 0:3` then `ls` and `a b`.\n\n```sh\nsweepc status   # per rule\n```\n```python\nprint(1)\n```\n"
    assert docrun.shown_commands(md) == [
        (1, "sh", "sweepc build --psets 0:3"), (5, "sh", "sweepc status"), (8, "python", "print(1)\n"),
    ]


def test_quickstart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = run_readme("quickstart", tmp_path)
    df = results(p, monkeypatch)
    assert len(df) == 6 and set(df["_status"]) == {"done"}
    for row in df.to_dict("records"):
        assert row["result"] == row["a"] * row["b"]
        assert row["stats.log_result"] == round(math.log(row["a"] * row["b"]), 6)
    (summary,) = p.glob("calc/summary/*/*/summary.txt")
    assert summary.read_text() == "6 psets, total 1122, max 297\n"
    nothing_to_do(p)
    run_shown("quickstart", p)


def test_python_function(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = run_readme("python-function", tmp_path)  # ends with model.py edited: everything to rerun
    df = results(p, monkeypatch)
    assert len(df) == 6 and set(df["_status"]) == {"stale"}
    for row in df.to_dict("records"):
        assert row["result"] == row["a"] * row["b"]
        assert row["log_result"] == round(math.log(row["a"] * row["b"]), 6)
        assert (p / row["_job_dir"] / "note.txt").read_text() == f"{row['result']}\n"
    p2 = sweepc_cli(p, "build")
    assert p2.returncode == 0 and p2.stdout.startswith("sweepc: 6 done, 0 up to date in "), p2.stdout + p2.stderr
    nothing_to_do(p)
    run_shown("python-function", p)


def test_batched_csv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = EXAMPLES / "batched-csv"
    # params.csv is what make_params.py writes: 20 rows, values 0..100
    regenerated = tmp_path / "regen"
    regenerated.mkdir()
    subprocess.run(["python3", str(src / "make_params.py")], cwd=regenerated, check=True)
    assert (regenerated / "params.csv").read_text() == (src / "params.csv").read_text()
    rows = list(csv.DictReader(io.StringIO((src / "params.csv").read_text())))
    assert len(rows) == 20 and list(rows[0]) == ["param_combo", "param1", "param2", "param3"]
    assert all(0 <= int(r[k]) <= 100 for r in rows for k in ("param1", "param2", "param3"))

    p = run_readme("batched-csv", tmp_path)  # runs run_batches.sh twice

    # every batch archived: its results rows and its job folders
    archives = sorted((p / "archive").glob("*.tar.gz"))
    assert [a.name for a in archives] == [f"batch-{s:02d}-{min(s + 2, 19):02d}.tar.gz" for s in range(0, 20, 3)]
    seen: list[dict[str, str]] = []
    for a in archives:
        with tarfile.open(a) as tar:
            names = tar.getnames()
            table = list(csv.DictReader(io.StringIO(member(tar, f"archive/{a.name[:-7]}.csv"))))
            for r in table:
                assert r["_status"] == "done"
                echo = member(tar, f"{r['_job_dir']}/echo.txt")
                assert echo == f"PARAM1: {r['param1']};  PARAM2: {r['param2']};  PARAM3: {r['param3']}\n"
            assert len([n for n in names if n.endswith("/echo.txt")]) == len(table)
        seen += table
    assert [{k: r[k] for k in rows[0]} for r in seen] == rows
    # disk use stays bounded: nothing is left in the workdir or the state store
    assert not any(p.glob("calc/*/*/*/*"))
    df = results(p, monkeypatch)
    assert set(df["_status"]) == {"never built"}
    run_shown("batched-csv", p)
    # the README's --psets 3:6 for results and clean: the rows build --psets 3:6 makes
    assert list(sweepc.load(p).results(psets="3:6")["param_combo"]) == [3, 4, 5]
    assert (p / "all.csv").read_text().count("\n") == 21


def member(tar: tarfile.TarFile, name: str) -> str:
    f = tar.extractfile(name)
    assert f is not None, f"{name} is not a file in the archive"
    return f.read().decode()


def test_hpc_two_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = EXAMPLES / "hpc-two-step"
    subprocess.run(["python3", str(src / "make_samples.py")], cwd=tmp_path, check=True)
    assert (tmp_path / "samples.csv").read_text() == (src / "samples.csv").read_text()
    p = run_readme("hpc-two-step", tmp_path)
    df = results(p, monkeypatch)
    assert len(df) == 8 and set(df["_status"]) == {"done"} and set(df["tasks"]) == {2}
    for row in df.itertuples(index=False):
        assert math.isclose(row.f, (1 - row.x) ** 2 + 100 * (row.y - row.x**2) ** 2, abs_tol=1e-6)
    (summary,) = results(p, monkeypatch, "post_process").to_dict("records")
    assert summary["runs"] == 8
    assert math.isclose(summary["f_min"], df["f"].min())
    assert math.isclose(summary["f_mean"], df["f"].mean(), abs_tol=1e-6)
    # the resources each SLURM array task will ask for
    g = sweepc.load(p).graph
    res = g.jobs[g.rule("sim_runs").first_job].resources
    assert (res.nodes, res.tasks, res.time_s) == (1, 2, 600)
    assert dict(g.backends["slurm"]) == {"partition": "debug", "account": "testbank", "bundle": 4, "throttle": 2}
    nothing_to_do(p)
    run_shown("hpc-two-step", p, skip=("--backend slurm", "sweepc cancel"))  # those need a cluster


def test_generated_samples(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np

    p = run_readme("generated-samples", tmp_path)
    (samples,) = p.glob("calc/make_samples/*/*/samples.npy")
    xy = np.load(samples)
    assert xy.shape == (8, 2)  # the README asked for 8 at the end
    df = results(p, monkeypatch)
    assert len(df) == 8 and set(df["_status"]) == {"done"}
    assert sorted(zip(df["x"], df["y"])) == sorted(map(tuple, xy.tolist()))
    for row in df.itertuples(index=False):
        assert math.isclose(row.f, (1 - row.x) ** 2 + 100 * (row.y - row.x**2) ** 2, abs_tol=1e-5)
    (summary,) = results(p, monkeypatch, "collect").to_dict("records")
    assert (summary["runs"], summary["f_min"]) == (8, df["f"].min())
    nothing_to_do(p)


@pytest.mark.slurm
def test_hpc_two_step_on_slurm(tmp_path: Path, slurm_cluster: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    p = run_readme("hpc-two-step", tmp_path, env=slurm_cluster, slurm=True)
    df = results(p, monkeypatch)
    assert set(df["_status"]) == {"done"} and len(df) == 8
    (summary,) = results(p, monkeypatch, "post_process").to_dict("records")
    assert summary["runs"] == 8 and summary["_status"] == "done"


def test_save_data_on_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = run_readme("save-data-on-disk", tmp_path)
    df = results(p, monkeypatch)
    assert len(df) == 6 and set(df["_status"]) == {"done"}
    integrals = {}
    for row in df.itertuples(index=False):
        d = p / df.loc[(df.a == row.a) & (df.n == row.n), "_job_dir"].item()  # (itertuples renames _job_dir)
        lines = [ln.split() for ln in (d / "data.txt").read_text().splitlines() if not ln.startswith("#")]
        xs, ys = [float(x) for x, _ in lines], [float(y) for _, y in lines]
        assert len(xs) == row.n and xs[0] == 0 and xs[-1] == 1
        assert all(math.isclose(y, row.a * x * x, rel_tol=1e-9, abs_tol=1e-12) for x, y in zip(xs, ys))
        assert json.loads((d / "meta.json").read_text())["n"] == row.n
        assert math.isclose(row.y_mean, sum(ys) / len(ys), abs_tol=1e-6)
        h = 1 / (row.n - 1)
        integrals[(row.a, row.n)] = round(h * (sum(ys) - (ys[0] + ys[-1]) / 2), 6)
    (table,) = p.glob("calc/collect/*/*/summary.tsv")
    got = {(float(a), int(n)): float(v) for a, n, v in (ln.split("\t") for ln in table.read_text().splitlines()[1:])}
    assert got == pytest.approx({(float(a), n): v for (a, n), v in integrals.items()})
    (summary,) = results(p, monkeypatch, "collect").to_dict("records")
    assert summary["jobs"] == 6 and math.isclose(summary["integral_max"], max(integrals.values()))
    nothing_to_do(p)
    run_shown("save-data-on-disk", p)


def test_failing_workloads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = run_readme("failing-workloads", tmp_path)  # fails, shows the failures, fixes work.py, rebuilds
    assert "FAIL_ON_ODD = False" in (p / "work.py").read_text()
    df = results(p, monkeypatch)
    assert list(df["n"]) == list(range(6)) and set(df["_status"]) == {"done"}
    assert list(df["square"]) == [n * n for n in range(6)]
    # the fix reran only what had failed: the even psets are still from the first build
    assert list(df["_run_seq"]) == [0, 1, 0, 1, 0, 1]
    (total,) = p.glob("calc/total/*/*/total.txt")
    assert total.read_text() == "6 squares, total 55\n"
    nothing_to_do(p)
    run_shown("failing-workloads", p)


def test_restart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = run_readme("restart", tmp_path)
    df = results(p, monkeypatch)
    assert len(df) == 2 and set(df["_status"]) == {"done"}
    for row in df.to_dict("records"):
        assert row["steps"] == 8 and row["attempts"] == 2
        assert math.isclose(row["value"], (1 + row["rate"]) ** 8, rel_tol=1e-9)
        history = (p / row["_job_dir"] / "history.txt").read_text().splitlines()
        assert history[5] == "attempt 1: out of time before step 6; checkpoint at step 5"
        assert history[6] == "attempt 2: resuming after step 5"
        assert [h.split(":")[0] for h in history].count("attempt 2") == 4
    nothing_to_do(p)
    run_shown("restart", p)


def test_dask_local(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = run_readme("dask-local", tmp_path)  # a real LocalCluster of two worker processes
    df = results(p, monkeypatch)
    assert len(df) == 36 and set(df["_status"]) == {"done"}
    for row in df.to_dict("records"):
        assert math.isclose(row["y"], math.sin(row["k"] * math.pi * row["x"]), abs_tol=1e-6)
        assert row["_runtime_s"] >= 0 and row["_max_rss_mb"] > 0
    peaks = results(p, monkeypatch, "peak")
    for row in peaks.to_dict("records"):
        ys = df.loc[df.k == row["k"], "y"]
        assert row["n"] == 9 and math.isclose(row["y_max"], ys.max())
    runs = sweepc.load(p).runs()
    assert list(runs["backend"]) == ["dask"] and list(runs["status"]) == ["ok"]
    nothing_to_do(p)
    run_shown("dask-local", p)


def test_input_templates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = run_readme("input-templates", tmp_path)
    df = results(p, monkeypatch)
    assert len(df) == 8 and set(df["_status"]) == {"done"}
    g = sweepc.load(p).graph
    by_hash = {j.hash: j for j in g.jobs if j.rule == "simulate"}
    assert len(by_hash) == 8
    for row in df.to_dict("records"):
        h = row["_pset_hash"]
        folder = p / "calc" / "simulate" / h[:2] / h
        # the rendered deck: raw values, the .j2 dropped, the README's edit (x0 = 2.0) in
        deck = (folder / "input.deck").read_text()
        assert f"scheme = {row['scheme']}\ndt = {row['dt']}\ngamma = {row['gamma']}\nsteps = {round(10 / row['dt'])}\nx0 = 2.0\n" in deck
        assert os.access(folder / "run.sh", os.X_OK)  # a template keeps its executable bit
        assert json.loads((folder / "pset.json").read_text())["params"] == {"scheme": row["scheme"], "dt": row["dt"], "gamma": row["gamma"]}
        assert not (folder / "trajectory.dat").exists()  # temp(): gone once analyse read it
        # the code run by hand on the rendered deck gives the energy in the table
        out = subprocess.run(["python3", str(p / "oscillator.py"), "input.deck"], cwd=folder, capture_output=True, text=True, check=True)
        t, x, v = (float(s) for s in out.stdout.splitlines()[-1].split())
        assert math.isclose(row["energy"], round(0.5 * (x * x + v * v), 6)) and row["steps"] == round(10 / row["dt"])
        assert row["scheme_seen"] == row["scheme"]  # analyse.py read it from $SWEEPC_PSET_JSON
        link = p / "view" / "simulate" / f"scheme={row['scheme']}" / f"dt={row['dt']}" / f"gamma={row['gamma']}"
        assert not os.path.isabs(os.readlink(link)) and link.resolve() == folder.resolve()
    # a leapfrog step loses less energy than a semi-implicit Euler step
    e = {(r["scheme"], r["dt"], r["gamma"]): r["energy"] for r in df.to_dict("records")}
    assert e[("leapfrog", 0.05, 0.1)] > e[("euler", 0.05, 0.1)]
    nothing_to_do(p)
    run_shown("input-templates", p)
