"""sweepc.procs against real processes (Linux). No mocks.

Most tests run once per way ProcessPool can spawn: "spawner" (the helper
process of sweepc/backends/local/spawner.py, the normal case), and the in-process fallback
used when the spawner cannot start, with its two paths: "spawn"
(posix_spawn, taken by single-threaded callers) and "popen" (taken when other
threads exist). The fallback is forced by patching procs._launch_spawner, the
path by patching procs._single_threaded, because a full test run may carry
native threads (numpy's OpenBLAS starts one at import)."""

import gc
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

import psutil  # type: ignore[import-untyped, unused-ignore]
import pytest

from sweepc.backends.local import procs
from sweepc.backends.local.procs import Exit, ProcessPool, Spawn

really_single_threaded = procs._single_threaded
ROOT = Path(__file__).resolve().parent.parent


def _force(monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    if mode in ("spawn", "popen"):
        monkeypatch.setattr(procs, "_launch_spawner", lambda bash: None)
        single = mode == "spawn"
        monkeypatch.setattr(procs, "_single_threaded", lambda: single)
    elif mode == "spawner-threads":  # as if other threads existed: no deferring
        monkeypatch.setattr(procs, "_single_threaded", lambda: False)
    else:
        assert mode == "spawner"


@pytest.fixture(params=["spawner", "spawn", "popen"])
def pool(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[ProcessPool]:
    _force(monkeypatch, request.param)
    with ProcessPool() as p:
        yield p


def via_spawner(pool: ProcessPool) -> bool:
    return isinstance(pool._impl, procs._ViaSpawner)


def spawner_pid(pool: ProcessPool) -> int:
    assert isinstance(pool._impl, procs._ViaSpawner)
    return pool._impl._pid


def hwm_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


# Processes below the test run that earlier tests started on purpose and that
# outlive them (a dask worker thread's pool, multiprocessing's resource
# tracker): not this test's to account for.
_BEFORE: set[int] = set()


@pytest.fixture(autouse=True)
def _children_before_this_test() -> Iterator[None]:
    _BEFORE.clear()
    _BEFORE.update(p.pid for p in psutil.Process().children(recursive=True))
    yield


def leftovers(pool: ProcessPool) -> list[psutil.Process]:
    """Every live process below us but the pool's spawner: the jobs and their
    children wherever they run (under us or under the spawner), and any
    spawner that should not be there. Only those started by this test."""
    keep = spawner_pid(pool) if via_spawner(pool) else None
    return [
        p for p in psutil.Process().children(recursive=True)
        if p.pid != keep and p.pid not in _BEFORE and not gone(p.pid)
    ]


def spec(tmp_path: Path, command: str, key: int = 1) -> Spawn:
    return Spawn(key, command, str(tmp_path), str(tmp_path / f"{key}.log"), dict(os.environ))


def run(pool: ProcessPool, tmp_path: Path, command: str) -> tuple[Exit, str]:
    pool.start(spec(tmp_path, command))
    [exit_] = pool.wait(timeout=30)
    return exit_, (tmp_path / "1.log").read_text()


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def gone(pid: int) -> bool:
    """Dead or a zombie: nothing reaps orphans on some VMs (pid 1 here does not)."""
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


def sleeps_below(pid: int) -> list[int]:
    return [
        p.pid
        for p in psutil.Process(pid).children(recursive=True)
        if p.name() == "sleep" and not gone(p.pid)
    ]


# -- exit status, log, env, cwd, shell options ------------------------------


@pytest.mark.parametrize(
    ("command", "code", "sig"),
    [("true", 0, None), ("exit 3", 3, None), ("kill -9 $$", 137, 9)],
)
def test_exit_codes(
    pool: ProcessPool, tmp_path: Path, command: str, code: int, sig: int | None
) -> None:
    before = time.time()
    exit_, _ = run(pool, tmp_path, command)
    assert (exit_.key, exit_.exit_code, exit_.signal) == (1, code, sig)
    assert not exit_.interrupted
    assert before <= exit_.start <= exit_.end <= time.time()


def test_stdout_and_stderr_land_in_the_log(pool: ProcessPool, tmp_path: Path) -> None:
    (tmp_path / "1.log").write_text("stale content that must be truncated\n")
    _, log = run(pool, tmp_path, "echo out; echo err >&2; echo out2")
    assert log == "out\nerr\nout2\n"


def test_env_is_exactly_the_given_mapping(pool: ProcessPool, tmp_path: Path) -> None:
    os.environ["SWEEPC_TEST_PARENT_ONLY"] = "leak"
    try:
        pool.start(
            Spawn(
                1,
                'echo "$FOO|${SWEEPC_TEST_PARENT_ONLY-unset}"',
                str(tmp_path),
                str(tmp_path / "1.log"),
                {"FOO": "bar baz", "PATH": os.environ["PATH"]},
            )
        )
        [exit_] = pool.wait(30)
    finally:
        del os.environ["SWEEPC_TEST_PARENT_ONLY"]
    assert exit_.exit_code == 0
    assert (tmp_path / "1.log").read_text() == "bar baz|unset\n"


def test_cwd_is_honoured(pool: ProcessPool, tmp_path: Path) -> None:
    here = os.getcwd()
    _, log = run(pool, tmp_path, "pwd -P")
    assert log == f"{tmp_path.resolve()}\n"
    assert os.getcwd() == here  # the spawn path's chdir is undone


def test_stdin_is_dev_null(pool: ProcessPool, tmp_path: Path) -> None:
    _, log = run(pool, tmp_path, "readlink /proc/self/fd/0; cat; echo done")
    assert log == "/dev/null\ndone\n"


def test_signals_start_unblocked_and_not_ignored(pool: ProcessPool, tmp_path: Path) -> None:
    # Python itself ignores SIGPIPE and SIGXFSZ; jobs must not inherit that.
    _, log = run(pool, tmp_path, "grep -E '^Sig(Blk|Ign)' /proc/$$/status")
    masks = {name: int(value, 16) for name, value in (line.split(":") for line in log.splitlines())}
    assert masks["SigBlk"] == 0
    assert masks["SigIgn"] & 0x7FFF_FFFF == 0  # signals 1-31; see the module docstring for 32, 33


def test_set_e_stops_at_the_first_failing_line(pool: ProcessPool, tmp_path: Path) -> None:
    exit_, log = run(pool, tmp_path, "echo before\nfalse\necho after")
    assert exit_.exit_code == 1
    assert log == "before\n"


def test_pipefail(pool: ProcessPool, tmp_path: Path) -> None:
    exit_, log = run(pool, tmp_path, "(exit 4) | cat\necho after")
    assert exit_.exit_code == 4
    assert log == ""


def test_inheritable_fds_do_not_reach_jobs(pool: ProcessPool, tmp_path: Path) -> None:
    read_end, write_end = os.pipe()
    os.set_inheritable(write_end, True)
    try:
        _, log = run(
            pool, tmp_path, f"[ -e /proc/$$/fd/{write_end} ] && echo leaked || echo closed"
        )
    finally:
        os.close(read_end)
        os.close(write_end)
    assert log == "closed\n"


def test_max_rss_covers_the_job(pool: ProcessPool, tmp_path: Path) -> None:
    exit_, _ = run(pool, tmp_path, 'python3 -c "b = bytearray(100*1024*1024)"')
    assert exit_.exit_code == 0
    assert exit_.max_rss_kb >= 90_000


@pytest.mark.parametrize("pool", ["spawn", "popen"], indirect=True)
def test_max_rss_is_floored_by_our_own_rss_in_process(pool: ProcessPool, tmp_path: Path) -> None:
    # Spawning in-process, the kernel folds our own peak RSS into the child's
    # ru_maxrss, so a job must outgrow our peak (a full test run: well over
    # 100 MB) to show. This is what the spawner is for.
    ours = hwm_kb(os.getpid())
    tiny, _ = run(pool, tmp_path, "true")
    assert tiny.rss_floor_kb >= ours - 2048  # RSS counters are approximate
    assert tiny.max_rss_kb >= ours - 2048
    big_kb = max(ours, tiny.rss_floor_kb) + 100 * 1024
    big, _ = run(pool, tmp_path, f'python3 -c "b = bytearray({big_kb} * 1024)"')
    assert big.exit_code == 0
    assert big.max_rss_kb > big_kb > big.rss_floor_kb


@pytest.mark.parametrize("pool", ["spawner"], indirect=True)
def test_max_rss_is_floored_by_the_spawner_only(pool: ProcessPool, tmp_path: Path) -> None:
    tiny, _ = run(pool, tmp_path, "true")
    assert via_spawner(pool)
    spawner_kb = hwm_kb(spawner_pid(pool))
    assert spawner_kb < 12 * 1024  # python3 -S -I with a few builtin modules
    assert tiny.rss_floor_kb < 12 * 1024
    assert abs(tiny.rss_floor_kb - spawner_kb) < 1024
    assert tiny.max_rss_kb < 12 * 1024  # bash itself is smaller than that


_OWNER = """
import json, os, sys
from sweepc.backends.local import procs
from sweepc.backends.local.procs import ProcessPool, Spawn
if sys.argv[1] == "in-process":
    procs._launch_spawner = lambda bash: None
ballast = b"x" * (300 * 1024 * 1024)  # written, so resident: sweepc at 100k psets
with ProcessPool() as pool:
    pool.start(Spawn(1, "true", sys.argv[2], os.path.join(sys.argv[2], "1.log"), dict(os.environ)))
    [exit_] = pool.wait(30)
    hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
    print(json.dumps({"max_rss_kb": exit_.max_rss_kb, "rss_floor_kb": exit_.rss_floor_kb,
                      "owner_kb": int(hwm), "exit_code": exit_.exit_code}))
"""


@pytest.mark.parametrize("mode", ["spawner", "in-process"])
def test_a_trivial_job_of_a_big_sweepc_reports_its_own_size(mode: str, tmp_path: Path) -> None:
    """The point of the spawner: sweepc at 300 MB, a job running `true`."""
    proc = subprocess.run(
        [sys.executable, "-c", _OWNER, mode, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=ROOT,
    )
    got = json.loads(proc.stdout)
    assert got["exit_code"] == 0
    assert got["owner_kb"] > 300 * 1024
    if mode == "spawner":
        assert got["max_rss_kb"] < 20 * 1024
        assert got["rss_floor_kb"] < 20 * 1024
    else:  # the wrong number the spawner exists to avoid
        assert got["max_rss_kb"] > 300 * 1024
        assert got["rss_floor_kb"] > 300 * 1024


# -- the pool's bookkeeping ----------------------------------------------------


def test_running_counts_and_wait_returns_everything(pool: ProcessPool, tmp_path: Path) -> None:
    assert pool.running == 0
    for key in (1, 2, 3):
        pool.start(spec(tmp_path, "true", key=key))
    assert pool.running == 3
    assert sorted(pool.pids()) == [1, 2, 3]  # ended or not: wait() did not return them yet
    ended: list[Exit] = []
    while pool.running:
        ended += pool.wait(30)
    assert sorted(e.key for e in ended) == [1, 2, 3]
    assert pool.running == 0
    assert pool.pids() == {}


def test_jobs_lead_their_own_session(pool: ProcessPool, tmp_path: Path) -> None:
    for key in (1, 2, 3):
        pool.start(spec(tmp_path, "sleep 30", key=key))
    pids = pool.pids()
    assert sorted(pids) == [1, 2, 3]
    assert all(os.getsid(pid) == pid == os.getpgid(pid) for pid in pids.values())
    assert len(pool.kill_all()) == 3


def test_wait_timeout_returns_empty(pool: ProcessPool, tmp_path: Path) -> None:
    pool.start(spec(tmp_path, "sleep 30"))
    t0 = time.monotonic()
    assert pool.wait(timeout=0.1) == []
    assert time.monotonic() - t0 >= 0.09
    assert pool.running == 1


def test_wait_with_nothing_running_returns_at_once(pool: ProcessPool) -> None:
    t0 = time.monotonic()
    assert pool.wait(timeout=None) == []
    assert time.monotonic() - t0 < 0.5


def test_missing_cwd_raises_and_leaves_nothing(pool: ProcessPool, tmp_path: Path) -> None:
    bad = Spawn(1, "true", str(tmp_path / "missing"), str(tmp_path / "1.log"), dict(os.environ))

    def check() -> None:
        children = {p.pid for p in psutil.Process().children()}
        fds = len(os.listdir("/proc/self/fd"))
        with pytest.raises(OSError):
            pool.start(bad)
        assert pool.running == 0
        assert {p.pid for p in psutil.Process().children()} == children
        assert len(os.listdir("/proc/self/fd")) == fds

    check()  # the first start: no spawner is left behind either
    run(pool, tmp_path, "true")
    check()  # with a spawner running


def test_unwritable_log_raises(pool: ProcessPool, tmp_path: Path) -> None:
    bad = Spawn(1, "true", str(tmp_path), str(tmp_path / "no" / "such.log"), dict(os.environ))
    with pytest.raises(OSError):
        pool.start(bad)
    assert pool.running == 0


def test_a_second_thread_is_detected() -> None:
    parked = threading.Event()
    thread = threading.Thread(target=parked.wait)
    thread.start()
    try:
        assert not really_single_threaded()
    finally:
        parked.set()
        thread.join()


def test_foreign_reaping_is_an_error_not_a_hang(pool: ProcessPool, tmp_path: Path) -> None:
    run(pool, tmp_path, "true")  # the pool has chosen how it spawns
    previous = signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps for us
    try:
        if via_spawner(pool):  # the spawner reaps its own children: our SIGCHLD is no matter
            exit_, _ = run(pool, tmp_path, "exit 7")
            assert exit_.exit_code == 7
        else:
            # from start() when the kernel was faster than pidfd_open, else wait()
            with pytest.raises(ChildProcessError, match="reaped outside ProcessPool"):
                pool.start(spec(tmp_path, "true"))
                while pool.running:
                    pool.wait(30)
    finally:
        signal.signal(signal.SIGCHLD, previous)
    assert pool.running == 0


@pytest.mark.parametrize("mode", ["spawner", "spawn"])
def test_close_kills_what_still_runs(
    mode: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _force(monkeypatch, mode)
    with ProcessPool() as pool:
        pool.start(spec(tmp_path, "sleep 300"))
        job = pool.pids()[1]
        helper = spawner_pid(pool) if mode == "spawner" else None
    with pytest.raises(psutil.NoSuchProcess):  # dead and reaped, not a zombie
        psutil.Process(job).status()
    if helper is not None:  # the spawner exited and was reaped too
        with pytest.raises(psutil.NoSuchProcess):
            psutil.Process(helper).status()


def test_a_dropped_pool_stops_its_spawner(tmp_path: Path) -> None:
    """local.py never closes its pool: garbage collection must not leak the
    spawner (nor, should one be left, a job)."""
    pool = ProcessPool()
    run(pool, tmp_path, "true")
    helper = spawner_pid(pool)
    pool.start(spec(tmp_path, "sleep 300", key=2))
    job = pool.pids()[2]
    del pool
    gc.collect()
    wait_for(lambda: gone(job))
    wait_for(lambda: not psutil.pid_exists(helper))  # exited and reaped


# -- the spawner -----------------------------------------------------------------


def test_a_job_sees_only_its_stdio(pool: ProcessPool, tmp_path: Path) -> None:
    # The spawner's socket, epoll and pidfds must not leak into jobs. (This
    # VM's harness leaves fds in our own process; spawner or not, they are
    # closed for the job.)
    _, log = run(pool, tmp_path, "ls /proc/$$/fd; true")  # bash forks ls, no pipe
    assert log.split() == ["0", "1", "2"]


@pytest.mark.parametrize("pool", ["spawner"], indirect=True)
def test_the_spawner_ignores_stop_signals(pool: ProcessPool, tmp_path: Path) -> None:
    pool.start(spec(tmp_path, "sleep 300"))
    helper = spawner_pid(pool)
    assert os.getsid(helper) == helper  # no terminal signals reach it
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        os.kill(helper, sig)
    time.sleep(0.2)
    assert not gone(helper)
    assert pool.running == 1 and pool.wait(0.1) == []
    [exit_] = pool.kill_all()
    assert exit_.interrupted and exit_.signal == signal.SIGTERM


@pytest.mark.parametrize("pool", ["spawner", "spawn", "popen"], indirect=True)
def test_a_huge_environment_and_a_command_too_long_to_exec(
    pool: ProcessPool, tmp_path: Path
) -> None:
    # 200 KB of environment: more than one datagram takes (the memfd path).
    env = dict(os.environ)
    env.update({f"BIG{i}": str(i) * 20_000 for i in range(10)})
    pool.start(Spawn(1, 'echo "${#BIG3}"', str(tmp_path), str(tmp_path / "1.log"), env))
    [exit_] = pool.wait(30)
    assert exit_.exit_code == 0
    assert (tmp_path / "1.log").read_text() == "20000\n"
    # One argument over 128 KB: exec fails with E2BIG.
    huge = Spawn(2, "#" + "x" * 200_000, str(tmp_path), str(tmp_path / "2.log"), env)
    if via_spawner(pool):  # found by the spawner, after start() returned
        pool.start(huge)
        [exit_] = pool.wait(30)
        assert (exit_.key, exit_.exit_code, exit_.signal) == (2, 127, None)
        assert "Argument list too long" in (tmp_path / "2.log").read_text()
    else:
        with pytest.raises(OSError, match="Argument list too long"):
            pool.start(huge)
    assert pool.running == 0


@pytest.mark.parametrize("executable", ["", "/nonexistent/python3", "/bin/false", "/bin/true"])
def test_no_spawner_falls_back_to_spawning_in_process(
    executable: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "executable", executable)
    children = {p.pid for p in psutil.Process().children()}
    with ProcessPool() as pool:
        exit_, log = run(pool, tmp_path, "echo fine")
        assert not via_spawner(pool)
    assert (exit_.exit_code, log) == (0, "fine\n")
    assert {p.pid for p in psutil.Process().children()} == children


@pytest.mark.parametrize("pool", ["spawner"], indirect=True)
def test_a_dead_spawner_is_an_error_and_takes_its_jobs_along(
    pool: ProcessPool, tmp_path: Path
) -> None:
    pool.start(spec(tmp_path, "sleep 300"))
    job = pool.pids()[1]
    os.kill(spawner_pid(pool), signal.SIGKILL)
    with pytest.raises(ChildProcessError, match="spawner .* died"):
        pool.wait(30)
    wait_for(lambda: gone(job))
    assert pool.running == 0
    assert pool.kill_all() == []


_OWNER_KILLED = """
import json, os, sys, time
from sweepc.backends.local.procs import ProcessPool, Spawn
pool = ProcessPool()
d = sys.argv[1]
for key, command in enumerate(["sleep 60", "sleep 60", "sleep 60 & setsid sleep 60 & wait"]):
    pool.start(Spawn(key, command, d, os.path.join(d, f"{key}.log"), dict(os.environ)))
print(json.dumps({"jobs": list(pool.pids().values()), "spawner": pool._impl._pid}), flush=True)
time.sleep(300)
"""


def test_jobs_die_with_a_sigkilled_owner(tmp_path: Path) -> None:
    """sweepc killed by SIGKILL cannot clean up; its spawner must."""
    owner = subprocess.Popen(
        [sys.executable, "-c", _OWNER_KILLED, str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert owner.stdout is not None
        started = json.loads(owner.stdout.readline())
        jobs = started["jobs"]
        assert len(jobs) == 3
        wait_for(lambda: len(sleeps_below(jobs[2])) == 2)
        victims = [*jobs, *sleeps_below(jobs[2])]  # one of them left the session
        owner.kill()
        owner.wait()
        t0 = time.monotonic()
        wait_for(lambda: all(gone(pid) for pid in victims), timeout=5.0)
        assert time.monotonic() - t0 < 3.0  # SIGTERM sufficed: no grace wasted
        wait_for(lambda: gone(started["spawner"]))
    finally:
        owner.kill()
        owner.wait()


# -- kill_all -------------------------------------------------------------------


def test_kill_all_kills_the_whole_tree(pool: ProcessPool, tmp_path: Path) -> None:
    pool.start(spec(tmp_path, "sleep 300 & sleep 300 & setsid sleep 300 & wait"))
    job = pool.pids()[1]
    wait_for(lambda: len(sleeps_below(job)) == 3)
    sleeps = sleeps_below(job)
    setsid_one = [pid for pid in sleeps if os.getsid(pid) == pid]
    assert len(setsid_one) == 1  # really left the job's session
    t0 = time.monotonic()
    [exit_] = pool.kill_all(grace=2.0)
    assert time.monotonic() - t0 < 1.5  # SIGTERM sufficed, no grace wasted
    assert exit_.interrupted and exit_.signal == signal.SIGTERM
    assert exit_.exit_code == 128 + signal.SIGTERM
    assert pool.running == 0
    assert all(gone(pid) for pid in sleeps)


def test_kill_all_sigkills_after_the_grace(pool: ProcessPool, tmp_path: Path) -> None:
    # trap '' also makes bash's children ignore TERM
    pool.start(spec(tmp_path, "trap '' TERM; echo ready; sleep 300 & wait"))
    log = tmp_path / "1.log"
    wait_for(lambda: log.read_text() == "ready\n")
    job = pool.pids()[1]
    wait_for(lambda: len(sleeps_below(job)) == 1)
    sleeps = sleeps_below(job)
    t0 = time.monotonic()
    [exit_] = pool.kill_all(grace=0.3)
    assert time.monotonic() - t0 >= 0.3
    assert exit_.interrupted and (exit_.exit_code, exit_.signal) == (137, 9)
    assert all(gone(pid) for pid in sleeps)


def test_kill_all_wakes_stopped_jobs(pool: ProcessPool, tmp_path: Path) -> None:
    pool.start(spec(tmp_path, "kill -STOP $$"))
    job = pool.pids()[1]
    wait_for(lambda: psutil.Process(job).status() == psutil.STATUS_STOPPED)
    [exit_] = pool.kill_all(grace=5.0)
    assert exit_.signal == signal.SIGTERM  # not the SIGKILL 5 s later


def test_kill_all_reports_jobs_that_ended_on_their_own(pool: ProcessPool, tmp_path: Path) -> None:
    pool.start(spec(tmp_path, "exit 5", key=1))
    done = pool.pids()[1]
    wait_for(lambda: gone(done))
    pool.start(spec(tmp_path, "sleep 300", key=2))
    exits = {e.key: e for e in pool.kill_all(grace=2.0)}
    assert (exits[1].exit_code, exits[1].interrupted) == (5, False)
    assert exits[2].interrupted
    assert pool.running == 0


def test_kill_all_with_nothing_running(pool: ProcessPool) -> None:
    assert pool.kill_all() == []


# -- signals arriving at the worst moment ---------------------------------------


class Interrupt(Exception):
    pass


def _raise_interrupt(signum: int, frame: object) -> None:
    raise Interrupt


def via_spawner_or_single_threaded(pool: ProcessPool, tmp_path: Path) -> bool:
    """Whether the guarantees under test hold here: with the spawner always
    (deferring signals or not), in-process only without other threads."""
    run(pool, tmp_path, "true")  # the pool has chosen how it spawns
    return via_spawner(pool) or really_single_threaded()


def passes_in_a_fresh_process(request: pytest.FixtureRequest) -> None:
    """Run this test case again in a pytest process of its own, which has
    no other threads: in the whole suite, numpy's OpenBLAS (and dask's
    tests) leave threads in this one, and the in-process guarantees hold
    for a single-threaded process only. Fails unless it passed there."""
    if os.environ.get("SWEEPC_TEST_FRESH_PROCESS"):
        pytest.fail("other threads exist even in a pytest process of this test alone")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", request.node.nodeid],
        cwd=request.config.rootpath, env={**os.environ, "SWEEPC_TEST_FRESH_PROCESS": "1"},
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600, check=False,
    )
    assert proc.returncode == 0 and "1 passed" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]


@pytest.mark.parametrize("pool", ["spawner", "spawner-threads", "spawn"], indirect=True)
def test_interrupted_start_never_loses_a_job(pool: ProcessPool, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """A signal handler that raises (as SIGINT's does) at a random moment
    while jobs are being started must never leave a job kill_all cannot see.
    In-process that holds for a single-threaded process only (see the
    module docstring); with the spawner it holds without deferring signals
    too ("spawner-threads")."""
    # (This starts the spawner: an interrupted launch is tested below.)
    if not via_spawner_or_single_threaded(pool, tmp_path):
        passes_in_a_fresh_process(request)  # (other threads here: numpy's OpenBLAS, dask's)
        return
    previous = signal.signal(signal.SIGALRM, _raise_interrupt)
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, ())
    interrupted_starts = 0
    try:
        for trial in range(40):
            started = 0
            try:
                try:
                    signal.setitimer(signal.ITIMER_REAL, random.uniform(0.0001, 0.003))
                    for key in range(300):  # 300 starts take far longer than 3 ms
                        pool.start(spec(tmp_path, "exec sleep 30", key=key))
                        started += 1
                finally:
                    signal.setitimer(signal.ITIMER_REAL, 0)
            except Interrupt:  # wherever it struck, even in the finally
                interrupted_starts += 1
            assert started < 300, f"trial {trial}: the signal never got through"
            assert signal.pthread_sigmask(signal.SIG_BLOCK, ()) == mask
            exits = pool.kill_all(grace=2.0)
            assert pool.running == 0
            # the interrupted start may have reached the spawner, or not
            assert started <= len(exits) <= started + 1
            leaked = leftovers(pool)
            assert leaked == [], f"trial {trial}: untracked jobs {leaked}"
    finally:
        signal.signal(signal.SIGALRM, previous)
    assert interrupted_starts > 0


@pytest.mark.parametrize("mode", ["spawner", "spawner-threads"])
def test_an_interrupted_spawner_launch_leaves_nothing(
    mode: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first start() launches the spawner (~15 ms). A signal handler
    raising anywhere in there must leave no spawner or zombie behind, even
    where signals cannot be deferred, and no fd where they can."""
    _force(monkeypatch, mode)
    previous = signal.signal(signal.SIGALRM, _raise_interrupt)
    fds = len(os.listdir("/proc/self/fd"))
    try:
        for trial in range(30):
            pool = ProcessPool()
            try:
                try:
                    signal.setitimer(signal.ITIMER_REAL, random.uniform(0.0001, 0.03))
                    pool.start(spec(tmp_path, "exec sleep 30"))
                    pool.wait(1)  # the job runs 30 s: the signal lands by now
                finally:
                    signal.setitimer(signal.ITIMER_REAL, 0)
            except Interrupt:
                pass
            pool.close()
            assert pool.running == 0
            left = [p for p in psutil.Process().children(recursive=True) if p.pid not in _BEFORE]
            assert left == [], f"trial {trial}: {left}"
            # Only where signals really are deferred: with other threads in the
            # process (a full test run imports numpy), the kernel may hand
            # SIGALRM to one of them, and a handler raising just as os.open
            # returns leaks that fd (documented in procs.py).
            if mode == "spawner" and really_single_threaded():
                assert len(os.listdir("/proc/self/fd")) == fds, f"trial {trial}: fds leaked"
    finally:
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("pool", ["spawner", "spawner-threads", "spawn"], indirect=True)
def test_interrupted_wait_never_loses_an_exit(pool: ProcessPool, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """A signal handler raising at a random moment inside wait() or pids()
    loses no Exit, returns none twice, and never leaves wait() waiting for a
    job that has ended. (An Exit lost between wait() returning and the
    caller storing it is the caller's business: the handler raises only
    while the pool's own code runs.)"""
    if not via_spawner_or_single_threaded(pool, tmp_path):
        passes_in_a_fresh_process(request)  # (other threads here: numpy's OpenBLAS, dask's)
        return

    armed = [False]  # a SIGALRM another thread took may run its handler later, outside wait(): then it does nothing

    def raise_inside_the_pool(signum: int, frame: FrameType | None) -> None:
        if not armed[0]:
            return
        while frame is not None and frame.f_code.co_filename != __file__:
            if f"{os.sep}sweepc{os.sep}" in frame.f_code.co_filename:
                raise Interrupt
            frame = frame.f_back

    previous = signal.signal(signal.SIGALRM, raise_inside_the_pool)
    interrupted = 0
    try:
        for trial in range(30):
            for key in range(20):
                pool.start(spec(tmp_path, "true", key=key))
            got: list[Exit] = []
            deadline = time.monotonic() + 30
            while pool.running:
                assert time.monotonic() < deadline, f"trial {trial}: wait() hangs"
                try:
                    try:
                        armed[0] = True
                        signal.setitimer(signal.ITIMER_REAL, random.uniform(0.00002, 0.001))
                        if random.random() < 0.3:
                            pool.pids()
                        got += pool.wait(1)
                    finally:
                        armed[0] = False
                        signal.setitimer(signal.ITIMER_REAL, 0)
                except Interrupt:
                    interrupted += 1
            assert sorted(e.key for e in got) == list(range(20)), f"trial {trial}"
    finally:
        signal.signal(signal.SIGALRM, previous)
    assert interrupted > 0


# -- the spawner's queue (local/backend.py's full runs) ------------------------


def _collect_until(pool: ProcessPool, keys: set[int], timeout: float = 20.0) -> dict[int, Exit]:
    """Wait until each of `keys` ended or was dropped; Exits by key."""
    exits: dict[int, Exit] = {}
    dropped: set[int] = set()
    deadline = time.monotonic() + timeout
    while set(exits) | dropped != keys:
        assert time.monotonic() < deadline, (exits, dropped)
        exits.update((ex.key, ex) for ex in pool.wait(0.2))
        dropped |= set(pool.take_dropped())
    return exits


def test_queued_jobs_start_as_slots_free_within_the_limit(tmp_path: Path) -> None:
    with ProcessPool() as pool:
        assert pool.queueing()
        pool.limit(2, 0)
        # each job records how many of the jobs were running when it started
        for k in range(1, 7):
            pool.start(spec(tmp_path, f"find {tmp_path} -maxdepth 1 -name 'run*' | wc -l > {tmp_path}/seen{k}; "
                            f"touch {tmp_path}/run{k}; sleep 0.2; rm {tmp_path}/run{k}".replace("$k", str(k)), k),
                       procs.Queue(cpus=1))
        exits = _collect_until(pool, set(range(1, 7)))
        assert sorted(exits) == list(range(1, 7)) and all(ex.exit_code == 0 for ex in exits.values())
        assert max(int((tmp_path / f"seen{k}").read_text()) for k in range(1, 7)) <= 1  # never 3 at once
        assert pool.take_started() == list(range(1, 7))  # first come, first served


def test_a_failing_stop_job_drops_the_queue_before_anything_else_starts(tmp_path: Path) -> None:
    with ProcessPool() as pool:
        pool.queueing()
        pool.limit(1, 0)
        (tmp_path / "2.log").write_text("an earlier run's log\n")
        pool.start(spec(tmp_path, "sleep 0.2; exit 3", 1), procs.Queue(stop=True))
        for k in (2, 3):
            pool.start(spec(tmp_path, f"touch {tmp_path}/ran{k}", k), procs.Queue())
        exits = _collect_until(pool, {1, 2, 3})
        assert list(exits) == [1] and exits[1].exit_code == 3
        assert not (tmp_path / "ran2").exists() and not (tmp_path / "ran3").exists()
        assert (tmp_path / "2.log").read_text() == "an earlier run's log\n"  # a dropped job's log is left as it was
        assert pool.take_started() == [1]
        # held: what is queued after the failure is dropped too (sweepc may have sent it before it saw the failure)
        pool.start(spec(tmp_path, f"touch {tmp_path}/ran4", 4), procs.Queue())
        assert _collect_until(pool, {4}) == {}
        # until a new limit
        pool.limit(1, 0)
        pool.start(spec(tmp_path, f"touch {tmp_path}/ran5", 5), procs.Queue())
        assert _collect_until(pool, {5})[5].exit_code == 0 and (tmp_path / "ran5").exists()


def test_a_stop_job_that_exits_0_without_its_output_drops_the_queue_and_a_plain_failure_does_not(tmp_path: Path) -> None:
    with ProcessPool() as pool:
        pool.queueing()
        pool.limit(1, 0)
        pool.start(spec(tmp_path, "sleep 0.2; exit 5", 1), procs.Queue(stop=False))  # -k, or a retry left
        pool.start(spec(tmp_path, "sleep 0.2; touch here.txt", 2), procs.Queue(stop=True, outputs=("here.txt",)))
        pool.start(spec(tmp_path, "sleep 0.2", 3), procs.Queue(stop=True, outputs=("missing.txt",)))
        pool.start(spec(tmp_path, f"touch {tmp_path}/ran4", 4), procs.Queue())
        exits = _collect_until(pool, {1, 2, 3, 4})
        assert {k: ex.exit_code for k, ex in exits.items()} == {1: 5, 2: 0, 3: 0}
        assert not (tmp_path / "ran4").exists()


def test_kill_all_drops_the_queue_and_journals_every_end(tmp_path: Path) -> None:
    import marshal

    journal = tmp_path / "journal"
    with ProcessPool() as pool:
        pool.queueing()
        pool.limit(1, 0)
        pool.journal(str(journal))
        pool.start(spec(tmp_path, "true", 1), procs.Queue(tag=("tag", 1)))
        pool.start(spec(tmp_path, "exec sleep 30", 2), procs.Queue(tag=("tag", 2)))
        pool.start(spec(tmp_path, f"touch {tmp_path}/ran3", 3), procs.Queue(tag=("tag", 3)))
        wait_for(lambda: 2 in pool.pids())
        ended = {ex.key: ex for ex in pool.kill_all(grace=0.5)}
        ended.update((ex.key, ex) for ex in pool.wait(0))
        assert pool.take_dropped() == [3] and not (tmp_path / "ran3").exists()
        assert ended[2].interrupted and not ended[1].interrupted
        assert pool.running == 0
    data = journal.read_bytes()
    entries = []
    while data:
        size = int.from_bytes(data[:4], "little")
        entries.append(marshal.loads(data[4 : 4 + size]))
        data = data[4 + size :]
    assert [(e[0], e[1], e[6]) for e in entries] == [(("tag", 1), 0, False), (("tag", 2), 15, True)]
