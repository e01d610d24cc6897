"""The backend interface: one registry, one build path for every backend.

A fake backend registered under a new name is driven by `sweepc build
--backend NAME` with no other change anywhere: the core never knows which
backend it runs."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import ClassVar

import pytest

from sweepc import backends
from sweepc.backends.base import Backend, BuildOptions, Cancelled, Execution, LiveJobs, Reporter, Summary, params_json
from sweepc.cli import main
from sweepc.lang.graph import BuildGraph
from sweepc.plan.planner import Plan
from sweepc.plan.store import Outcome, Store

SWEEPFILE = """\
param a = [1, 2, 3]
rule r over a:
    output: "o.txt"
    shell: "echo {a} > {output}"
"""


class FakeBackend:
    """Records every job done without running anything (a unit-test fake)."""

    name: ClassVar[str] = "fake"
    batch: ClassVar[bool] = False
    calls: ClassVar[list[str]] = []

    def validate(self, options: BuildOptions) -> None:
        self.calls.append("validate")

    def live(self, graph: BuildGraph, store: Store) -> LiveJobs:
        self.calls.append("live")
        return {}

    def refresh(self, graph: BuildGraph, store: Store) -> None:
        self.calls.append("refresh")

    def check(self, graph: BuildGraph, plan: Plan, options: BuildOptions) -> list[str]:
        self.calls.append("check")
        return []

    def execute(self, plan: Plan, store: Store, run_id: str, reporter: Reporter, options: BuildOptions) -> Execution:
        self.calls.append(f"execute {len(plan.run)}")
        g = plan.graph
        # the contract: the plan's jobs are marked planned before anything runs
        store.mark_planned(((g.jobs[i].rule, g.jobs[i].hash, params_json(g.jobs[i])) for i in plan.run), run_id)
        outcomes = []
        for i in plan.run:
            job = g.jobs[i]
            d = g.job_dir(job)
            d.mkdir(parents=True, exist_ok=True)
            (d / "o.txt").write_text(f"{job.params['a']}\n")
            reporter.job_started(job, 1)
            o = Outcome(rule=job.rule, hash=job.hash, status="done", fingerprint=plan.fingerprints[i],
                        cmd_hash=plan.cmd_hashes[i], inputs_hash=plan.inputs_hashes[i], exit_code=0, start=0.0,
                        end=0.0, host="fake", max_rss_mb=None, attempts=1, backend=self.name, backend_job_id=None,
                        run_id=run_id)
            outcomes.append(o)
            reporter.job_ended(job, o, False)
        store.record(outcomes)
        reporter.note("fake: all done")
        s = Summary(total=len(plan.run), done=len(plan.run), failed=(), skipped=0, not_started=0, interrupted=(),
                    uptodate=plan.uptodate, elapsed=0.0)
        return Execution(s, "ok", ("fake: a note after the summary",))

    def release(self) -> None:
        self.calls.append("release")

    def cancel(self, graph: BuildGraph, store: Store) -> Cancelled:
        self.calls.append("cancel")
        return Cancelled((), 0, 0)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> type[FakeBackend]:
    mod = types.ModuleType("fake_backend_for_tests")
    mod.FakeBackend = FakeBackend  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fake_backend_for_tests", mod)
    monkeypatch.setitem(backends._REGISTRY, "fake", "fake_backend_for_tests:FakeBackend")
    FakeBackend.calls = []
    return FakeBackend


def test_every_registered_backend_implements_the_interface() -> None:
    assert backends.names() == ("local", "slurm", "dask")
    for name in backends.names():
        b = backends.get(name)
        assert b.name == name
        for method in ("validate", "live", "refresh", "check", "release", "execute", "cancel"):
            assert callable(getattr(b, method)), f"{name} lacks {method}"
        assert isinstance(b.batch, bool)
    _typed: Backend = backends.get("local")  # mypy checks the protocol
    assert _typed.name == "local"


def test_a_new_backend_is_one_registry_line(tmp_path: Path, fake: type[FakeBackend], monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "sweepfile").write_text(SWEEPFILE)
    monkeypatch.chdir(tmp_path)
    assert main(["build", "--backend", "fake"]) == 0
    out = capsys.readouterr().out
    assert out.endswith("fake: all done\nsweepc: 3 done, 0 up to date in 0.0s\nfake: a note after the summary\n"), out
    assert fake.calls[0] == "validate" and "execute 3" in fake.calls
    assert fake.calls.index("live") < fake.calls.index("check") < fake.calls.index("execute 3")
    # what the fake recorded is up to date for every backend
    fake.calls.clear()
    assert main(["build", "-n", "--explain"]) == 0
    assert capsys.readouterr().out == "sweepc: nothing to do (3 jobs up to date)\n"
    assert main(["runs", "--format", "csv"]) == 0
    assert ",fake," in capsys.readouterr().out  # the run is recorded with the backend's name
    assert main(["status", "--format", "json"]) == 0
    assert '"done": 3' in capsys.readouterr().out
    assert "refresh" in fake.calls
    assert main(["cancel"]) == 0
    assert capsys.readouterr().out == "sweepc: nothing to cancel\n"
    assert "cancel" in fake.calls


def test_unknown_backend_is_a_usage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "sweepfile").write_text(SWEEPFILE)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        main(["build", "--backend", "nope"])
    assert e.value.code == 2
    assert "argument --backend: invalid choice: 'nope' (choose from 'local', 'slurm', 'dask')" in capsys.readouterr().err


def test_local_refuses_batch_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "sweepfile").write_text(SWEEPFILE)
    monkeypatch.chdir(tmp_path)
    assert main(["build", "--wait"]) == 2
    assert capsys.readouterr().err == "sweepc: --wait and --render-only go with --backend slurm\n"
    assert main(["build", "--backend", "slurm", "--wait", "--render-only"]) == 2
    assert capsys.readouterr().err == "sweepc: --render-only submits nothing, so there is nothing to --wait for\n"
