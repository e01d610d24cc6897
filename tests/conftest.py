"""Shared pytest configuration for sweepc's tests."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

# The tests press Ctrl-C (SIGINT) on real sweepc processes. A test run started
# in the background by a script, or under nohup, inherits SIGINT/SIGQUIT/SIGHUP
# as *ignored*; Python then installs no KeyboardInterrupt handler and every
# process spawned by the tests would shrug Ctrl-C off. Give the session (and so
# everything it spawns) the default dispositions a terminal would.
for _sig in (signal.SIGHUP, signal.SIGQUIT):
    if signal.getsignal(_sig) == signal.SIG_IGN:
        signal.signal(_sig, signal.SIG_DFL)
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# ============================================================================
# SLURM integration: markers + the session-scoped `slurm_cluster` fixture.
# (Owned by the local-SLURM infrastructure; see tests/slurm_cluster.py,
# scripts/slurm-local.sh and docs/slurm-facts.md.  Add other shared fixtures
# outside this section.)
# ============================================================================

try:  # tests/ on sys.path (rootdir-relative "prepend" import, no tests/__init__.py)
    from slurm_cluster import ensure_cluster as _ensure_slurm_cluster
except ImportError:  # tests/ is a package
    from tests.slurm_cluster import ensure_cluster as _ensure_slurm_cluster


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "slurm: needs a real SLURM cluster (request the `slurm_cluster` fixture); "
        "skipped when none is usable, a failure when CI=true",
    )
    config.addinivalue_line("markers", "slow: takes more than a few seconds")
    config.addinivalue_line("markers", "fuzz: the long fuzz run; only with -m fuzz (tests/test_fuzz.py)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # the long fuzz run is opt-in: `pytest -m fuzz`
    if "fuzz" in (config.getoption("markexpr", "") or ""):
        return
    # deselected, not skipped: the default run has nothing missing, it just
    # does not ask for the long run
    long_run = [item for item in items if item.get_closest_marker("fuzz") is not None]
    if long_run:
        config.hook.pytest_deselected(items=long_run)
        items[:] = [item for item in items if item.get_closest_marker("fuzz") is None]


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def need(module: str) -> None:
    """An optional dependency a test needs: skipped without it, a failure when CI=true."""
    try:
        __import__(module)
    except ImportError as e:
        if _in_ci():
            pytest.fail(f"CI=true but {module} cannot be imported: {e}", pytrace=False)
        pytest.skip(f"{module} is not installed")


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[dict[str, str]]:
    """A usable SLURM cluster: yields the environment (a full ``os.environ``
    copy whose ``SLURM_CONF`` points at the cluster) to pass as ``env=`` to
    subprocesses.  For the session it is also exported as ``SLURM_CONF`` in
    ``os.environ``, so code under test that runs sbatch/squeue finds it.

    Uses a cluster that already works; else, as root, starts the local one
    with ``scripts/slurm-local.sh start`` (left running afterwards: the next
    start is then a no-op; ``scripts/slurm-local.sh stop`` stops it).
    Without a usable cluster: ``pytest.fail`` when ``CI=true``, else skip.
    """
    env, reason = _ensure_slurm_cluster()
    if env is None:
        if _in_ci():
            pytest.fail(f"CI=true but {reason}", pytrace=False)
        pytest.skip(reason)
    with pytest.MonkeyPatch.context() as mp:
        if env.get("SLURM_CONF"):
            mp.setenv("SLURM_CONF", env["SLURM_CONF"])
        yield env


# ============================================================================
# end of the SLURM section
# ============================================================================


# ============================================================================
# Local builds: the `local_project` fixture.
# (Owned by the local-build tests: test_incremental.py, test_local_backend.py,
# test_state.py, test_cli_build.py.)  A project in a tmp folder, driven through
# the real CLI -- in-process (`.sweepc(...)`, fast) or as a real `sweepc`
# process (`.run(...)` / `.spawn(...)`, for signals, locks and kills).
# ============================================================================

import signal as _signal
import sqlite3 as _sqlite3
import subprocess as _subprocess
import textwrap as _textwrap
from pathlib import Path as _Path
from typing import Any as _Any
from typing import NamedTuple as _NamedTuple


class Ran(_NamedTuple):
    code: int
    out: str
    err: str


class LocalProject:
    """A sweepc project under tmp_path; `root` holds the sweepfile."""

    def __init__(self, root: _Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
        self.root = root
        self._capsys = capsys
        self._monkeypatch = monkeypatch
        root.mkdir(parents=True, exist_ok=True)

    # -- files
    def write(self, sweepfile: str, **files: str) -> LocalProject:
        (self.root / "sweepfile").write_text(_textwrap.dedent(sweepfile).lstrip())
        for name, text in files.items():
            (self.root / name).write_text(text)
        return self

    def edit(self, old: str, new: str) -> None:
        """Replace `old` (which must occur exactly once) in the sweepfile."""
        f = self.root / "sweepfile"
        text = f.read_text()
        assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times in the sweepfile"
        f.write_text(text.replace(old, new))

    def moved_to(self, new_root: _Path) -> LocalProject:
        self.root.rename(new_root)
        return LocalProject(new_root, self._capsys, self._monkeypatch)

    # -- running sweepc
    def sweepc(self, *args: str) -> Ran:
        """`sweepc ARGS` in-process (sweepc.cli.main) with the project as cwd."""
        from sweepc.cli import main

        self._monkeypatch.chdir(self.root)
        self._capsys.readouterr()
        try:
            code = main(list(args))
        except SystemExit as e:  # argparse
            code = int(e.code or 0)
        cap = self._capsys.readouterr()
        return Ran(code, cap.out, cap.err)

    def spawn(self, *args: str, **kw: _Any) -> _subprocess.Popen[str]:
        """A real `sweepc ARGS` process in its own session (so its group can be signalled)."""
        kw.setdefault("stdout", _subprocess.PIPE)
        kw.setdefault("stderr", _subprocess.PIPE)
        return _subprocess.Popen(["sweepc", *args], cwd=self.root, text=True, start_new_session=True, **kw)

    def run(self, *args: str, timeout: float = 60) -> Ran:
        p = _subprocess.run(["sweepc", *args], cwd=self.root, capture_output=True, text=True, timeout=timeout, check=False)
        return Ran(p.returncode, p.stdout, p.stderr)

    # -- the compiled project
    @property
    def graph(self) -> _Any:
        import sweepc

        return sweepc.load(self.root / "sweepfile").graph

    def job(self, label: str) -> _Any:
        for j in self.graph.jobs:
            if j.label == label:
                return j
        raise KeyError(f"no job {label}; jobs: {[j.label for j in self.graph.jobs]}")

    def dir(self, label: str) -> _Path:
        g = self.graph
        return g.job_dir(self.job(label))

    def out(self, label: str, index: int = 0) -> _Path:
        g = self.graph
        return g.output_paths(self.job(label))[index]

    # -- the state store
    def db(self) -> _sqlite3.Connection:
        return _sqlite3.connect(self.root / ".sweepc" / "state.db")

    def rows(self) -> dict[str, dict[str, _Any]]:
        """Job rows of the store by job label (rows of jobs no longer in the
        sweepfile are keyed 'rule/hash')."""
        labels = {(j.rule, j.hash): j.label for j in self.graph.jobs}
        con = self.db()
        con.row_factory = _sqlite3.Row
        try:
            out = {}
            for r in con.execute("SELECT * FROM jobs"):
                key = labels.get((r["rule"], r["hash"]), f"{r['rule']}/{r['hash']}")
                out[key] = dict(r)
            return out
        finally:
            con.close()

    def statuses(self) -> dict[str, str]:
        return {k: v["status"] for k, v in self.rows().items()}

    def last_run_id(self) -> str:
        con = self.db()
        try:
            return str(con.execute("SELECT run_id FROM runs ORDER BY seq DESC LIMIT 1").fetchone()[0])
        finally:
            con.close()

    def ran_in_last_build(self) -> set[str]:
        """Labels of the jobs whose record the last build wrote."""
        rid = self.last_run_id()
        return {k for k, v in self.rows().items() if v["run_id"] == rid and v["status"] != "planned"}

    # -- processes
    def job_processes(self) -> list[_Any]:
        """Live processes started by a build of this project (jobs inherit SWEEPC_ROOT)."""
        import psutil

        found = []
        for proc in psutil.process_iter(["environ"]):
            try:
                env = proc.info["environ"] or {}
                if env.get("SWEEPC_ROOT") == str(self.root) and proc.status() != psutil.STATUS_ZOMBIE:
                    found.append(proc)
            except (psutil.Error, OSError):
                pass
        return found

    def kill_jobs(self) -> None:
        """SIGKILL every job process of this project (what a power cut does)."""
        import psutil

        for proc in self.job_processes():
            try:
                proc.send_signal(_signal.SIGKILL)
            except psutil.Error:
                pass


@pytest.fixture
def local_project(tmp_path: _Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalProject]:
    p = LocalProject(tmp_path / "proj", capsys, monkeypatch)
    yield p
    # no test may leave job processes behind
    p.kill_jobs()


@pytest.fixture
def store_commits(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The statuses of each Store.record call (one commit each), in order, from now on."""
    from sweepc.plan.store import Store

    commits: list[list[str]] = []
    record = Store.record

    def counted(self: Store, outcomes):  # type: ignore[no-untyped-def]
        commits.append([o.status for o in outcomes])
        record(self, outcomes)

    monkeypatch.setattr(Store, "record", counted)
    return commits


# ============================================================================
# end of the local-build section
# ============================================================================
