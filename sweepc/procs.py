"""The process layer of the local backend: spawn shell jobs, learn when they
end, reap them with rusage, and kill whole process trees.

Linux only (``os.pidfd_open`` needs Linux >= 5.3). A ``ProcessPool`` belongs to
one thread; it never prints and never reaps a pid it did not spawn.

Two ways to spawn, chosen per ``start()``:

* single-threaded caller (the CLI main loop): ``os.posix_spawn`` with signals
  deferred (blocked) from before the spawn until the job is registered, while
  the child gets an empty mask. A Ctrl-C therefore never lands between "child
  exists" and "pool knows the child", and ``kill_all`` sees every job.
  ``subprocess.Popen`` cannot give that guarantee: its child inherits the
  parent's signal mask across exec, so signals cannot be blocked around it.
  Stress test (``exec sleep 30`` started in a loop until SIGALRM's handler
  raises at a random 0.1-3 ms, then kill_all): the Popen path left an
  untracked running job after 182 of 200 loops, the posix_spawn path after 0
  of 3000 (and left signals blocked after 0 of 3000).
  posix_spawn has no cwd in Python 3.11, so we chdir around the call, which
  is only safe because no other thread can see our cwd meanwhile.
  glibc leaves its two internal signals (32, 33) ignored in a posix_spawn
  child and Python cannot name them in ``setsigdef``; glibc programs install
  their own handlers for those, so this is only visible in /proc/*/status.
* any other thread exists (Jupyter, a caller's worker threads, the OpenBLAS
  thread that ``import numpy`` starts): Popen with ``cwd=``. Deferring signals
  could not work there anyway: the kernel may run the C handler on another
  thread, and the main thread then raises at its next bytecode.

Throughput, ``benchmarks/procs_throughput.py`` (1000 ``echo hi`` jobs, at most
2 running, 2-core VM, Linux 6.18, Python 3.11.7, medians of 5 runs): on a
quiet machine posix_spawn 1007 and 1050 jobs/s, Popen 1032 and 1018 (two
runs each, before the last one-syscall change); final code, paths interleaved,
while other test suites kept both cores busy (load average ~3): posix_spawn
508 / 777 / 385, Popen 514 / 808 / 402. The paths are equal within noise:
the spawn call costs ~0.3 ms on either, and bash start-up dominates.
"""

import dataclasses
import errno
import fcntl
import os
import resource
import select
import selectors
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Self

import psutil  # type: ignore[import-untyped, unused-ignore]

__all__ = ["Exit", "ProcessPool", "Spawn"]

_SHELL_ARGS = ("bash", "-e", "-o", "pipefail", "-c")
_LOG_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
# How long kill_all waits for SIGKILLed processes. Only a process stuck in
# uninterruptible sleep (a hung NFS mount) outlives SIGKILL for long; such a
# job stays in the pool (still counted in `running`) rather than hanging us.
_KILL_TIMEOUT = 5.0
# Python ignores these at start-up; Popen(restore_signals=True) gives the
# child the default back, and the posix_spawn path must do the same.
_RESET_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ)
# Signals whose Python handlers (KeyboardInterrupt, a caller's SIGTERM
# handler) could raise in the middle of our bookkeeping. Synchronous fault
# signals stay unblocked so faulthandler still works; real-time signals are
# left out because they make pthread_sigmask five times slower (~50 us).
_DEFERRED_SIGNALS = frozenset(
    s
    for s in signal.valid_signals()
    if s < signal.SIGRTMIN
    and s
    not in {
        signal.SIGKILL,
        signal.SIGSTOP,
        signal.SIGSEGV,
        signal.SIGBUS,
        signal.SIGFPE,
        signal.SIGILL,
        signal.SIGTRAP,
        signal.SIGSYS,
    }
)


@dataclasses.dataclass(frozen=True, slots=True)
class Spawn:
    key: int  # the caller's job id, echoed back in Exit
    command: str  # shell text, run as: bash -e -o pipefail -c COMMAND
    cwd: str  # the job's directory (exists already)
    log_path: str  # stdout AND stderr of the job go here (created/truncated)
    env: Mapping[str, str]  # the FULL environment for the child


@dataclasses.dataclass(frozen=True, slots=True)
class Exit:
    key: int
    exit_code: int  # 0..255; for death by signal N: 128 + N (shell convention)
    signal: int | None  # the signal that killed it, if any
    start: float  # time.time() at spawn
    end: float  # time.time() when reaped
    max_rss_kb: int  # ru_maxrss from wait4: the job and its waited-for descendants
    interrupted: bool  # True when kill_all killed it
    # Our own peak RSS when we spawned the job. The child starts as a copy of
    # (vfork: a borrower of) our address space, and the kernel folds that
    # into the child's ru_maxrss at exec, so max_rss_kb is never below this:
    # max_rss_kb <= rss_floor_kb means "the job peaked at most this high".
    rss_floor_kb: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class _Job:
    key: int
    pid: int
    pidfd: int
    start: float
    rss_floor_kb: int


@dataclasses.dataclass(frozen=True, slots=True)
class _Victim:
    """A descendant of a job, found before it is signalled."""

    proc: Any  # psutil.Process; it checks for pid reuse before signalling
    pidfd: int | None  # None when pidfd_open failed (e.g. EMFILE): not waited for


class ProcessPool:
    """Runs shell jobs, each in its own session, stdin from /dev/null."""

    def __init__(self, bash: str | None = None) -> None:
        # Resolved once, from our PATH: the child then needs no PATH search,
        # whatever PATH the job's environment has.
        path = bash if bash is not None else shutil.which("bash")
        if path is None:
            raise FileNotFoundError(errno.ENOENT, "bash not found on PATH", "bash")
        self._bash = path
        self._devnull = _above_stdio(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC))
        self._selector = selectors.DefaultSelector()
        self._jobs: dict[int, _Job] = {}  # by pidfd
        # Reaped but not yet returned; kept on the pool so that an interrupt
        # between reaping and returning loses no Exit.
        self._finished: list[Exit] = []
        self._closed = False

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def running(self) -> int:
        return len(self._jobs)

    def pids(self) -> dict[int, int]:
        """Job key -> pid (= its process group and session id), running jobs."""
        return {job.key: job.pid for job in self._jobs.values()}

    def start(self, spec: Spawn) -> None:
        """Spawn the job now. Raises OSError (missing cwd, unwritable log, ...)
        with no process or fd left behind; the log file may already exist."""
        if _single_threaded():
            with _signals_deferred():
                self._start(spec, self._posix_spawn)
        else:
            self._start(spec, self._popen)

    def wait(self, timeout: float | None) -> list[Exit]:
        """Block until at least one job ended or `timeout` s passed; return
        every job that ended. Returns [] at once when nothing is running."""
        if not self._finished and self._jobs:
            ready = self._selector.select(timeout)
            with _signals_deferred():
                lost = [
                    job.key
                    for job in [self._jobs[key.fd] for key, _ in ready]
                    if not self._reap(job, interrupted=False)
                ]
            if lost:
                raise _reaped_elsewhere(lost)
        return self._take_finished()

    def kill_all(self, grace: float = 2.0) -> list[Exit]:
        """SIGTERM every job's process tree, give it `grace` s, SIGKILL what is
        left, and return the Exits (interrupted=True). Jobs that had already
        ended on their own are returned too, with interrupted=False.

        In a single-threaded program signals stay deferred throughout, so a
        second Ctrl-C cannot cut the clean-up short; it is raised as kill_all
        returns (and its Exits are then kept for the next wait/kill_all).
        Jobs reaped by someone else are dropped silently here."""
        with _signals_deferred():
            for key, _ in self._selector.select(0):
                self._reap(self._jobs[key.fd], interrupted=False)
            if self._jobs:
                self._terminate(list(self._jobs.values()), grace)
        return self._take_finished()

    def close(self) -> None:
        """Kill whatever still runs (dropping its Exits) and release our fds."""
        if self._closed:
            return
        self._closed = True
        if self._jobs:
            self.kill_all()
        for pidfd in self._jobs:  # only jobs that outlived SIGKILL
            os.close(pidfd)
        self._jobs.clear()
        self._selector.close()
        os.close(self._devnull)

    # -- spawning ---------------------------------------------------------

    def _start(self, spec: Spawn, spawn: Callable[[Spawn, int], int]) -> None:
        log_fd = _above_stdio(os.open(spec.log_path, _LOG_FLAGS, 0o666))
        try:
            rss_floor_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            start = time.time()
            pid = spawn(spec, log_fd)
        finally:
            os.close(log_fd)
        self._track(_Job(spec.key, pid, -1, start, rss_floor_kb))

    def _posix_spawn(self, spec: Spawn, log_fd: int) -> int:
        actions: list[tuple[Any, ...]] = [
            (os.POSIX_SPAWN_DUP2, self._devnull, 0),
            (os.POSIX_SPAWN_DUP2, log_fd, 1),
            (os.POSIX_SPAWN_DUP2, log_fd, 2),
        ]
        # Popen's close_fds=True, by hand: fds we inherited without
        # close-on-exec (this VM's harness left two in ours) must not reach jobs.
        actions += [(os.POSIX_SPAWN_CLOSE, fd) for fd in _inheritable_fds()]
        home = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.chdir(spec.cwd)  # the missing-cwd OSError comes from here
            try:
                return os.posix_spawn(
                    self._bash,
                    [*_SHELL_ARGS, spec.command],
                    spec.env,
                    file_actions=actions,
                    setsid=True,
                    setsigmask=(),
                    setsigdef=_RESET_SIGNALS,
                )
            finally:
                os.fchdir(home)
        finally:
            os.close(home)

    def _popen(self, spec: Spawn, log_fd: int) -> int:
        proc = subprocess.Popen(
            [*_SHELL_ARGS, spec.command],
            executable=self._bash,
            cwd=spec.cwd,
            env=spec.env,
            stdin=self._devnull,
            stdout=log_fd,
            stderr=subprocess.STDOUT,
            close_fds=True,
            start_new_session=True,
        )
        # We reap with os.wait4. A Popen dropped with returncode None goes on
        # subprocess's _active list, and the next Popen() would waitpid() our
        # job behind our back, losing its status and rusage.
        proc.returncode = 0
        return proc.pid

    def _track(self, job: _Job) -> None:
        try:
            pidfd = os.pidfd_open(job.pid)
        except ProcessLookupError as err:
            # Our unreaped child exists, if only as a zombie, until we reap it.
            raise _reaped_elsewhere([job.key]) from err
        except BaseException:
            _kill_and_reap(job.pid)  # untracked, it would escape kill_all
            raise
        try:
            self._selector.register(pidfd, selectors.EVENT_READ)
            self._jobs[pidfd] = dataclasses.replace(job, pidfd=pidfd)
        except BaseException:
            self._jobs.pop(pidfd, None)
            _unregister(self._selector, pidfd)
            os.close(pidfd)
            _kill_and_reap(job.pid)
            raise

    # -- reaping ----------------------------------------------------------

    def _reap(self, job: _Job, interrupted: bool) -> bool:
        """Reap a job whose pidfd is readable (so wait4 does not block).
        Returns False, recording no Exit, if someone else reaped it first."""
        try:
            _, status, usage = os.wait4(job.pid, 0)
        except ChildProcessError:
            return False
        finally:
            del self._jobs[job.pidfd]
            self._selector.unregister(job.pidfd)
            os.close(job.pidfd)
        end = time.time()
        self._finished.append(_exit_record(job, status, usage, end, interrupted))
        return True

    def _take_finished(self) -> list[Exit]:
        finished, self._finished = self._finished, []
        return finished

    # -- killing ----------------------------------------------------------

    def _terminate(self, jobs: list[_Job], grace: float) -> None:
        roots = [job.pid for job in jobs]
        # Collected before any signal: once a parent dies its children are
        # re-parented and can no longer be found from the job.
        victims = _collect(roots, known=())
        try:
            _signal_tree(jobs, victims, signal.SIGTERM)
            # A stopped process would sit on its SIGTERM until the SIGKILL.
            _signal_tree(jobs, victims, signal.SIGCONT)
            alive = _wait_exited(_pidfds(jobs, victims), grace)
            # Whatever the survivors forked during the grace dies too.
            survivors = [v.proc.pid for v in victims if _alive(v, alive)]
            victims += _collect(roots + survivors, known=victims)
            _signal_tree(jobs, victims, signal.SIGKILL)
            _wait_exited(_pidfds(jobs, victims), _KILL_TIMEOUT)
        finally:
            for victim in victims:
                if victim.pidfd is not None:
                    os.close(victim.pidfd)
        for key, _ in self._selector.select(0):
            self._reap(self._jobs[key.fd], interrupted=True)


# -- helpers -------------------------------------------------------------


@contextmanager
def _signals_deferred() -> Iterator[None]:
    """Block signals for the calling thread; pending ones fire on exit.

    Python raises KeyboardInterrupt between any two bytecodes; deferring it
    keeps "child spawned / reaped" and our tables in step."""
    # Read the mask first and block inside `try`: a signal that arrived just
    # before the block still runs its handler at the next bytecode boundary,
    # and if that raised between blocking and `try`, the signals would stay
    # blocked for good (Ctrl-C dead). The stress test caught exactly that.
    old = signal.pthread_sigmask(signal.SIG_BLOCK, ())
    try:
        signal.pthread_sigmask(signal.SIG_BLOCK, _DEFERRED_SIGNALS)
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _single_threaded() -> bool:
    # /proc/<pid>/task has 2 + <number of threads> links (proc_task_getattr);
    # unlike threading.active_count() this also counts threads started by C
    # libraries (numpy's OpenBLAS starts one at import). One stat, ~2 us.
    try:
        return os.stat("/proc/self/task").st_nlink == 3
    except OSError:  # no /proc: assume threads, take the path that is safe
        return False


def _above_stdio(fd: int) -> int:
    """Move `fd` above 0-2 (only happens when our own stdio is closed), so
    that the dup2 onto the child's 0-2 cannot alias it."""
    if fd > 2:
        return fd
    try:
        return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
    finally:
        os.close(fd)


def _inheritable_fds() -> list[int]:
    fds = []
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            if fd > 2 and os.get_inheritable(fd):
                fds.append(fd)
        except OSError:  # the fd listdir itself used, closed by now
            pass
    return fds


def _exit_record(
    job: _Job, status: int, usage: resource.struct_rusage, end: float, interrupted: bool
) -> Exit:
    if os.WIFSIGNALED(status):
        sig: int | None = os.WTERMSIG(status)
        code = 128 + os.WTERMSIG(status)
    else:
        sig, code = None, os.WEXITSTATUS(status)
    return Exit(job.key, code, sig, job.start, end, usage.ru_maxrss, interrupted, job.rss_floor_kb)


def _reaped_elsewhere(keys: list[int]) -> ChildProcessError:
    return ChildProcessError(
        errno.ECHILD,
        f"jobs {keys} were reaped outside ProcessPool; "
        "is SIGCHLD ignored, or waitpid(-1) called elsewhere?",
    )


def _kill_and_reap(pid: int) -> None:
    """For a child we just spawned and could not track."""
    _signal_group(pid, signal.SIGKILL)
    try:
        os.wait4(pid, 0)
    except ChildProcessError:  # reaped by someone else already
        pass


def _unregister(selector: selectors.BaseSelector, fd: int) -> None:
    try:
        selector.unregister(fd)
    except KeyError:
        pass


def _signal_group(pgid: int, sig: int) -> None:
    # The group leader is our unreaped child, so its pid (the pgid) cannot
    # have been recycled for somebody else's group.
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):  # empty group / setuid member
        pass


def _signal_tree(jobs: Iterable[_Job], victims: Iterable[_Victim], sig: int) -> None:
    for job in jobs:
        _signal_group(job.pid, sig)
    for victim in victims:  # including those that left the group (setsid)
        try:
            if victim.pidfd is not None:
                signal.pidfd_send_signal(victim.pidfd, sig)
            else:
                victim.proc.send_signal(sig)
        except (ProcessLookupError, PermissionError, psutil.Error):
            pass


def _descendants(roots: Iterable[int]) -> list[Any]:
    """Every descendant of `roots` as psutil.Process, from one /proc scan
    (Process.children(recursive=True) would rescan /proc once per job)."""
    by_parent: dict[int, list[Any]] = {}
    for proc in psutil.process_iter(["ppid"]):
        by_parent.setdefault(proc.info["ppid"], []).append(proc)
    found: list[Any] = []
    stack = list(roots)
    while stack:
        for child in by_parent.get(stack.pop(), ()):
            found.append(child)
            stack.append(child.pid)
    return found


def _collect(roots: list[int], known: Iterable[_Victim]) -> list[_Victim]:
    seen = {victim.proc.pid for victim in known}
    victims = []
    for proc in _descendants(roots):
        if proc.pid not in seen:
            victim = _as_victim(proc)
            if victim is not None:
                victims.append(victim)
    return victims


def _as_victim(proc: Any) -> _Victim | None:
    """Pin `proc` with a pidfd, so that neither signalling nor waiting can hit
    a recycled pid. psutil wait_procs is no substitute: it waitpid()s our own
    children (stealing their rusage from wait4) and takes zombies for alive,
    and orphaned zombies linger where init does not reap (as on this VM)."""
    try:
        pidfd = os.pidfd_open(proc.pid)
    except ProcessLookupError:
        return None
    except OSError:  # out of fds: still signal it, through psutil
        return _Victim(proc, None)
    if not proc.is_running():  # the pid was recycled between scan and open
        os.close(pidfd)
        return None
    return _Victim(proc, pidfd)


def _alive(victim: _Victim, alive_pidfds: set[int]) -> bool:
    if victim.pidfd is None:
        return bool(victim.proc.is_running())
    return victim.pidfd in alive_pidfds


def _pidfds(jobs: Iterable[_Job], victims: Iterable[_Victim]) -> list[int]:
    fds = [job.pidfd for job in jobs]
    fds += [victim.pidfd for victim in victims if victim.pidfd is not None]
    return fds


def _wait_exited(pidfds: Iterable[int], timeout: float) -> set[int]:
    """Wait until every pidfd reports its process exited (zombies count as
    exited), or `timeout` s passed. Returns the pidfds still alive."""
    alive = set(pidfds)
    poller = select.poll()
    for fd in alive:
        poller.register(fd, select.POLLIN)
    deadline = time.monotonic() + timeout
    while alive:
        remaining = max(0.0, deadline - time.monotonic())
        for fd, _ in poller.poll(remaining * 1000):
            alive.discard(fd)
            poller.unregister(fd)
        if remaining == 0.0:
            break
    return alive
