"""The process layer of the local backend: spawn shell jobs, learn when they
end, reap them with rusage, and kill whole process trees.

Linux only (``os.pidfd_open`` needs Linux >= 5.3). A ``ProcessPool`` belongs to
one thread; it never prints and never reaps a pid it did not spawn.

Jobs are spawned by a small helper process, the spawner (sweepc/spawner.py,
started on the pool's first ``start()``), not by sweepc itself: on Linux a
child's ru_maxrss is never below the resident size of the process that
spawned it, and sweepc is 300-500 MB at 100k parameter sets. The spawner
(``python -S -I``, Python 3.11.7, Linux 6.18) peaks at 9.0-9.3 MB (VmHWM,
also after 15000 jobs), so that is the floor of every job's max_rss_kb now
(``Exit.rss_floor_kb``). From a sweepc holding 300 MB, ``true`` reported
max_rss_kb 324220 before the spawner and 8980 with it; a job allocating 100
MB, 324220 before (hidden entirely) and 115776 with it.
The spawner forks, reaps and kills; it is the authority on what runs:
``kill_all`` asks it to stop everything and waits for the Exits, and when
sweepc dies, even by SIGKILL, the spawner sees its socket close and stops
every job's tree. Starts are pipelined (``start`` does not wait for the
spawner), so ``pids()`` may block briefly until the spawner has reported them.
One consequence for job scripts: a job's parent ($PPID) is the spawner, not
sweepc (whose pid jobs find in $SWEEPC_BUILD_PID).

Queued starts (``start(spec, Queue(...))``, when ``queueing()``): the spawner
holds the job and starts it itself the moment it fits in ``limit()`` (so a
slot never waits for a round trip to sweepc), journals its end
(``journal()``), and drops its queue when a ``stop`` job fails or on
``drop()``/``kill_all()``. ``take_started()`` and ``take_dropped()`` tell the
caller what became of queued jobs; see spawner.py for the protocol.

If the spawner cannot be started (``sys.executable`` missing, unusable or a
frozen app, or it does not say hello within 10 s), the pool spawns
in-process exactly as before it existed (``_InProcess``): jobs then report
at least sweepc's own size again.

Signals: in a single-threaded caller (the CLI main loop) signals are
deferred (blocked) from before a spawn until the job is registered and while
Exits are received, so a Ctrl-C never lands between "child exists" and "pool
knows the child", or halfway through our bookkeeping. With the spawner this
holds where signals cannot be deferred too (other threads exist): one start
is one datagram, sent whole or not at all; a start interrupted around its
send is settled by asking the spawner (SYNC); replies are applied before
they are consumed (MSG_PEEK), so none is lost; and kill_all kills whatever
the spawner runs. Stress tests like those in tests/test_procs.py (a SIGALRM
handler raising at random moments in start(), wait(), pids() and the
spawner's launch), deferring signals and not, found no lost job, lost or
doubled Exit, hang or leaked process: 1500 loops of up to 300 starts and
kill_all, 500 loops of 20 jobs with ~8500 interrupted waits, each way.
(Where signals cannot be deferred, a handler raising just as a call returns
a new fd, e.g. the job's log, still leaks that fd, as it always did.)
The in-process fallback chooses per ``start()``:

* single-threaded caller: ``os.posix_spawn`` with signals deferred while the
  child gets an empty mask. ``subprocess.Popen`` cannot give that guarantee:
  its child inherits the parent's signal mask across exec, so signals cannot
  be blocked around it. Stress test (``exec sleep 30`` started in a loop
  until SIGALRM's handler raises at a random 0.1-3 ms, then kill_all): the
  Popen path left an untracked running job after 182 of 200 loops, the
  posix_spawn path after 0 of 3000 (and left signals blocked after 0 of 3000).
  glibc leaves its two internal signals (32, 33) ignored in a posix_spawn
  child and Python cannot name them in ``setsigdef``; glibc programs install
  their own handlers for those, so this is only visible in /proc/*/status.
* any other thread exists (Jupyter, a caller's worker threads, the OpenBLAS
  thread that ``import numpy`` starts): Popen with ``cwd=``. Deferring signals
  could not work there anyway: the kernel may run the C handler on another
  thread, and the main thread then raises at its next bytecode.

Throughput, ``benchmarks/procs_throughput.py`` (1000 ``echo hi`` jobs, at most
2 running, 2-core VM, Linux 6.18, Python 3.11.7, medians of 5 interleaved
runs, on a machine shared with other test suites, so +-15%): spawner 943, 923
and 998 jobs/s; the code before the spawner 986, 941 and 931; the in-process
fallback 908/978/928 (posix_spawn) and 956/985/881 (Popen). At most 8 running:
spawner 1234, before 1112. The spawn call costs ~0.3 ms on any path, and bash
start-up dominates; per job, sweepc now spends ~140 us of CPU (235 before) and
the spawner ~175 us.
"""

import dataclasses
import errno
import fcntl
import marshal
import os
import select
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import time
import weakref
from array import array
from collections import deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any, Self

if TYPE_CHECKING:  # no stub for _signal
    import signal as _signal
else:
    import _signal

from sweepc.backends.local import spawner as _sp

__all__ = ["Exit", "ProcessPool", "Queue", "Spawn"]

_SHELL_ARGS = _sp.SHELL_ARGS
_sigmask = _signal.pthread_sigmask
# O_NOFOLLOW: a log or job folder that is a symbolic link is refused (ELOOP /
# ENOTDIR), never written through: it could point anywhere
_LOG_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW
_DIR_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NOFOLLOW
# Python ignores these at start-up; Popen(restore_signals=True) gives the
# child the default back, and the posix_spawn path must do the same.
_RESET_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ)
# How long the first start() waits for a new spawner to say hello (Python's
# start-up: ~20 ms; much more only on a machine thrashing badly).
_SPAWNER_HELLO_TIMEOUT = 10.0
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
    command: str  # shell text, run as: bash -e -o pipefail -c COMMAND (or as bash would, without it: direct.py)
    cwd: str  # the job's directory (exists already)
    log_path: str  # stdout AND stderr of the job go here (created/truncated)
    env: Mapping[str, str]  # the FULL environment for the child
    append_log: bool = False  # a retry adds to the log instead of wiping the first attempt's


@dataclasses.dataclass(frozen=True, slots=True)
class Queue:
    """How a queued job is started by the spawner itself (see spawner.py):
    when it fits in the pool's limit(), the moment an earlier job ends."""

    cpus: float = 1.0
    mem_mb: int = 0
    stop: bool = False  # its failure (or a missing output) drops the queue and holds it
    outputs: tuple[str, ...] = ()  # declared outputs, relative to its folder
    tag: Any = None  # marshal-able; journalled with its end (ProcessPool.journal)
    merge_env: bool = False  # Spawn.env holds only what differs from base_env()'s


@dataclasses.dataclass(frozen=True, slots=True)
class Exit:
    key: int
    exit_code: int  # 0..255; for death by signal N: 128 + N (shell convention)
    signal: int | None  # the signal that killed it, if any
    start: float  # time.time() at spawn
    end: float  # time.time() when reaped
    max_rss_kb: int  # ru_maxrss from wait4: the job and its waited-for descendants
    interrupted: bool  # True when kill_all killed it
    # The peak RSS (VmHWM) of the process that spawned the job, at the time:
    # the spawner's (~9 MB), or sweepc's own in the in-process fallback. The
    # child starts as a copy of (vfork: a borrower of) that address space,
    # and the kernel folds its peak into the child's ru_maxrss at exec, so
    # max_rss_kb is not below this, give or take the kernel's approximate RSS
    # counters (seen: 8980 against a floor of 9104): max_rss_kb <=
    # rss_floor_kb means "the job peaked at most about this high".
    rss_floor_kb: int = 0
    cpu_s: float | None = None  # ru_utime + ru_stime from wait4 (None: not measured)


class ProcessPool:
    """Runs shell jobs, each in its own session, stdin from /dev/null."""

    def __init__(self, bash: str | None = None) -> None:
        # Resolved once, from our PATH: the child then needs no PATH search,
        # whatever PATH the job's environment has.
        path = bash if bash is not None else shutil.which("bash")
        if path is None:
            raise FileNotFoundError(errno.ENOENT, "bash not found on PATH", "bash")
        self._bash = path
        self._impl: _ViaSpawner | _InProcess | None = None  # chosen at the first start
        self._closed = False

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def running(self) -> int:
        """Jobs started and not yet returned by wait() or kill_all()."""
        return 0 if self._impl is None else self._impl.running

    def pids(self) -> dict[int, int]:
        """Job key -> pid (= its process group and session id), running jobs.
        A job that has ended but was not returned by wait() yet is listed,
        though its pid may be gone already."""
        return {} if self._impl is None else self._impl.pids()

    def queueing(self) -> bool:
        """Whether start(spec, queue) really queues (jobs go through the
        spawner); False in the in-process fallback, where it starts at once."""
        if self._impl is None and not self._closed:
            self._impl = _launch_spawner(self._bash) or _InProcess(self._bash)
        return isinstance(self._impl, _ViaSpawner)

    def limit(self, cpus: float, mem_mb: int) -> None:
        """The budget of queued jobs (and the end of a hold, see drop())."""
        if isinstance(self._impl, _ViaSpawner):
            self._impl.command((_sp.LIMIT, cpus, mem_mb), [])

    def journal(self, path: str) -> None:
        """Have the spawner append the end of every queued job to `path`
        (created or truncated; never through a link)."""
        if isinstance(self._impl, _ViaSpawner):
            fd = os.open(path, _LOG_FLAGS | os.O_APPEND, 0o666)
            try:
                self._impl.command((_sp.JOURNAL,), [fd])
            finally:
                os.close(fd)

    def base_env(self, env: Mapping[str, str]) -> None:
        """The environment that queued jobs with Queue.merge_env start from
        (sent once, not with every job)."""
        impl = self._impl
        if isinstance(impl, _ViaSpawner):
            impl.command((_sp.BASE_ENV, impl.env_of(env)), [])

    def drop(self) -> None:
        """Drop every queued job and every one queued after (until limit()).
        Their keys come back from take_dropped() once the spawner confirms."""
        if isinstance(self._impl, _ViaSpawner):
            self._impl.command((_sp.DROP,), [])

    def take_started(self) -> list[int]:
        """Keys of queued jobs the spawner has started since the last call."""
        impl = self._impl
        if not isinstance(impl, _ViaSpawner) or not impl.started:
            return []
        started, impl.started = impl.started, []
        return started

    def take_dropped(self) -> list[int]:
        """Keys of queued jobs that will never start (drop(), kill_all(), or
        the failure of a `stop` job), since the last call."""
        impl = self._impl
        if not isinstance(impl, _ViaSpawner) or not impl.dropped:
            return []
        dropped, impl.dropped = impl.dropped, []
        return dropped

    def start(self, spec: Spawn, queue: Queue | None = None) -> None:
        """Start the job; or, with `queue` (when queueing()), hand it to the
        spawner's queue, which starts it when it fits (take_started()). Raises OSError (missing cwd, unwritable log, ...)
        with no process or fd left behind; the log file may already exist.
        Through the spawner the spawn itself happens after we return; should
        it fail there (E2BIG, EAGAIN, ...) the job ends with exit code 127
        and the reason in its log, where in-process start() raises OSError."""
        if self._closed:
            raise ValueError("start() on a closed ProcessPool")
        if _single_threaded():
            with _signals_deferred():
                self._start(spec, True, queue)
        else:
            self._start(spec, False, queue)

    def wait(self, timeout: float | None) -> list[Exit]:
        """Block until at least one job ended or `timeout` s passed; return
        every job that ended. Returns [] at once when nothing is running."""
        impl = self._impl
        if impl is None:
            return []
        impl.wait(timeout)
        # Handed over here, with no call between taking and returning: a
        # signal handler can then raise only before (the Exits stay for the
        # next call) or in the caller, after we returned.
        finished, impl.finished = impl.finished, []
        return finished

    def wait_into(self, into: deque[Exit], timeout: float | None) -> None:
        """wait(), putting the Exits at the end of `into`. Never lost: a
        signal handler raising in here leaves them here (for the next call or
        kill_all), or, right after `into` got them, in both; whoever handles
        kill_all's list then skips those already in `into`."""
        impl = self._impl
        if impl is None:
            return
        impl.wait(timeout)
        into.extend(impl.finished)
        impl.finished.clear()

    def kill_all(self, grace: float = 2.0) -> list[Exit]:
        """SIGTERM every job's process tree, give it `grace` s, SIGKILL what is
        left, and return the Exits (interrupted=True). Jobs that had already
        ended on their own are returned too, with interrupted=False.

        In a single-threaded program signals stay deferred throughout, so a
        second Ctrl-C cannot cut the clean-up short; it is raised as kill_all
        returns (and its Exits are then kept for the next wait/kill_all)."""
        impl = self._impl
        if impl is None:
            return []
        impl.kill_all(grace)
        finished, impl.finished = impl.finished, []  # as in wait()
        return finished

    def close(self) -> None:
        """Kill whatever still runs (dropping its Exits), stop the spawner
        and release our fds."""
        if self._closed:
            return
        self._closed = True
        if self._impl is not None:
            self._impl.close()

    def _start(self, spec: Spawn, single_threaded: bool, queue: Queue | None) -> None:
        # Opened before the spawner is started: a first start() that fails
        # leaves no spawner behind either. A queued job's log is truncated by
        # the spawner when the job starts: a job dropped before leaves it as it was.
        flags = (_LOG_FLAGS & ~os.O_TRUNC) | os.O_APPEND if spec.append_log else _LOG_FLAGS
        if queue is not None:
            flags &= ~os.O_TRUNC
        log_fd = _above_stdio(os.open(spec.log_path, flags, 0o666))
        try:
            dir_fd = os.open(spec.cwd, _DIR_FLAGS)  # the missing-cwd OSError
            try:
                if self._impl is None:
                    self._impl = _launch_spawner(self._bash) or _InProcess(self._bash)
                if queue is not None and isinstance(self._impl, _ViaSpawner):
                    self._impl.start(spec, log_fd, dir_fd, single_threaded, queue)
                else:
                    if queue is not None and queue.merge_env:
                        raise ValueError("Queue.merge_env needs the spawner (see queueing())")
                    if queue is not None and not spec.append_log:
                        os.ftruncate(log_fd, 0)
                    self._impl.start(spec, log_fd, dir_fd, single_threaded)
            finally:
                os.close(dir_fd)
        finally:
            os.close(log_fd)


# -- jobs through the spawner ---------------------------------------------------


class _Remote:
    __slots__ = ("key", "pid", "queued")

    def __init__(self, key: int, queued: bool = False) -> None:
        self.key = key
        self.pid: int | None = None  # until the spawner reports it; 0: failed to start
        self.queued = queued  # in the spawner's queue: not started yet


class _NoHello(Exception):
    pass


class _Handle:
    """The spawner process and our end of its socket. Released once (by
    close(), the garbage collector or a failed launch, whichever comes
    first), so no path can close or reap twice."""

    __slots__ = ("owner", "pid", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.pid = -1
        self.owner = os.getpid()

    def release(self, timeout: float, kill: bool = False) -> None:
        # Taken in one step, with no call in between: a second release(),
        # even one running because a signal handler raised in the first,
        # finds nothing left to do.
        pid, self.pid = self.pid, -1
        if pid <= 0 or os.getpid() != self.owner:  # none, or in a fork() of ours
            self.sock.close()
            return
        if kill:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)  # our unreaped child: not recycled
            gone = True
        else:
            # End of input is the stop signal: the spawner stops whatever
            # still runs (nothing, after close()'s kill_all) and exits,
            # closing its end. No pidfd is needed to see that.
            gone = _await_hangup(self.sock, timeout)
        self.sock.close()
        with suppress(ChildProcessError):  # SIGCHLD ignored: the kernel reaped it
            os.waitpid(pid, 0 if gone else os.WNOHANG)


def _await_hangup(sock: socket.socket, timeout: float) -> bool:
    with suppress(OSError):
        sock.shutdown(socket.SHUT_WR)
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    deadline = time.monotonic() + timeout
    while (remaining := deadline - time.monotonic()) > 0:
        for _, events in poller.poll(remaining * 1000):
            if events & (select.POLLHUP | select.POLLERR | select.POLLNVAL):
                return True
            try:
                sock.recv(1, socket.MSG_DONTWAIT)  # records nobody wants now
            except BlockingIOError:
                pass
            except OSError:
                return True
    return False


def _launch_spawner(bash: str) -> "_ViaSpawner | None":
    """Start the spawner and wait for its hello; None if that fails (the
    caller then spawns in-process, as sweepc did before the spawner)."""
    exe = sys.executable
    if not exe or getattr(sys, "frozen", False) or not os.access(exe, os.X_OK):
        return None  # no Python we could run (embedded, PyInstaller, ...)
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    handle = _Handle(ours)
    try:
        if theirs.fileno() <= _sp.SOCKET_FD:  # our stdio is closed: move it clear
            moved = fcntl.fcntl(theirs.fileno(), fcntl.F_DUPFD_CLOEXEC, 10)
            theirs.close()
            theirs = socket.socket(fileno=moved)
        handle.pid = _spawn_spawner(exe, bash, theirs.fileno())
        theirs.close()
        hello = _hello(ours)
        if hello is None:
            raise _NoHello
        return _ViaSpawner(handle, hello)
    except BaseException as err:
        if handle.pid < 0:
            # posix_spawn failed, or (a signal handler raising right after
            # it, where signals cannot be deferred) its pid was lost.
            handle.pid = _child_holding(theirs)
        theirs.close()
        handle.release(_sp.KILL_TIMEOUT, kill=True)
        if isinstance(err, (OSError, _NoHello)):  # ENOENT, EACCES, EAGAIN, ...
            return None
        raise


def _spawn_spawner(exe: str, bash: str, sock_fd: int) -> int:
    # Closes first: an inherited fd 3 must not take the socket's place. The
    # spawner puts /dev/null on its stdin and stdout itself; its stderr stays
    # ours, for tracebacks.
    actions: list[tuple[Any, ...]] = [(os.POSIX_SPAWN_CLOSE, fd) for fd in _inheritable_fds()]
    actions.append((os.POSIX_SPAWN_DUP2, sock_fd, _sp.SOCKET_FD))
    # -S -I: no site-packages, no PYTHON* variables, no cwd on the path. The
    # module is imported (from its .pyc), not run as a script: compiling it
    # would raise the spawner's peak RSS (by 1.4 MB), which is every job's
    # floor. Appended to the path, it cannot shadow the standard library.
    boot = "import sys; sys.path.append(sys.argv[2]); import spawner; spawner.main()"
    directory = os.path.dirname(os.path.abspath(_sp.__file__))
    return os.posix_spawn(
        exe,
        [exe, "-S", "-I", "-c", boot, bash, directory],
        os.environ,
        file_actions=actions,
        # Its own session: no Ctrl-C/Ctrl-Z/hang-up from the terminal, from
        # its very first instruction; nor a kill of our process group.
        setsid=True,
        setsigmask=(),
        setsigdef=(*_RESET_SIGNALS, signal.SIGCHLD),
    )


def _child_holding(sock: socket.socket) -> int:
    """The pid of our child that has the other copy of `sock` as its fd 3
    (a spawner whose pid we lost), or -1."""
    try:
        target = f"socket:[{os.fstat(sock.fileno()).st_ino}]"
        tasks = os.listdir("/proc/self/task")
    except OSError:  # closed already: then we knew the pid
        return -1
    for task in tasks:
        try:
            with open(f"/proc/self/task/{task}/children") as f:
                children = f.read().split()
        except OSError:  # no CONFIG_PROC_CHILDREN: it exits on EOF anyway
            continue
        for child in children:
            try:
                if os.readlink(f"/proc/{child}/fd/{_sp.SOCKET_FD}") == target:
                    return int(child)
            except OSError:
                pass
    return -1


def _hello(sock: socket.socket) -> tuple[Any, ...] | None:
    """The spawner's READY record; None if it dies (its end closes) or stays
    silent for _SPAWNER_HELLO_TIMEOUT s."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    deadline = time.monotonic() + _SPAWNER_HELLO_TIMEOUT
    while (remaining := deadline - time.monotonic()) > 0:
        if poller.poll(remaining * 1000):
            try:
                data = sock.recv(_sp.MAX_MESSAGE, socket.MSG_DONTWAIT)
            except BlockingIOError:
                continue
            except OSError:
                return None
            records = marshal.loads(data) if data else None
            if records and records[0][0] == _sp.READY:
                return tuple(records[0])
            return None
    return None


class _ViaSpawner:
    """The pool's side of the spawner protocol (see sweepc/spawner.py)."""

    def __init__(self, handle: _Handle, hello: tuple[Any, ...]) -> None:
        self._sock = sock = handle.sock
        self._pid = handle.pid
        # Send bytes only when the spawner would encode str differently.
        self._encode = tuple(hello[3:5]) != (
            sys.getfilesystemencoding(),
            sys.getfilesystemencodeerrors(),
        )
        self._poller = select.poll()
        self._poller.register(sock, select.POLLIN)
        self._buf = bytearray(_sp.MAX_MESSAGE)
        self._serial = 0
        self._jobs: dict[int, _Remote] = {}  # by serial
        # ENDED records that pids() read; applied by the next wait/kill_all.
        self._inbox: list[tuple[Any, ...]] = []
        # Received but not yet returned; kept here so that an interrupt
        # between receiving and returning loses no Exit.
        self.finished: list[Exit] = []
        self.started: list[int] = []  # keys of queued jobs reported STARTED, not yet taken
        self.dropped: list[int] = []  # keys of queued jobs reported DROPPED, not yet taken
        self._killed: list[int] | None = None  # set by a KILLED record
        self._synced = False  # set by a SYNCED record
        self._queued_at_sync: set[int] = set()  # serials the spawner held queued at SYNCED
        self._unsure = False  # a start() was interrupted around its send
        self._dead = False
        # A pool that is dropped without close() (local.py's) still stops
        # its spawner, and with it any job that might be left.
        self._handle = handle
        weakref.finalize(self, handle.release, 1.0)

    @property
    def running(self) -> int:
        return len(self._jobs) + len(self.finished)

    def pids(self) -> dict[int, int]:
        with _signals_deferred():
            self._sync()
            self._drain(keep_ended=True)  # queued jobs started meanwhile
        while any(job.pid is None and not job.queued for job in self._jobs.values()):
            self._poller.poll()
            with _signals_deferred():
                self._drain(keep_ended=True)
        return {job.key: job.pid for job in self._jobs.values() if job.pid}

    def command(self, message: tuple[Any, ...], fds: list[int]) -> None:
        if self._dead:
            raise self._died()
        self._send(marshal.dumps(message), fds)

    def env_of(self, env: Mapping[str, str]) -> dict[str, str] | dict[bytes, bytes]:
        """`env` as the spawner takes it: a dict; of bytes when it would encode str differently."""
        if self._encode:
            return {os.fsencode(k): os.fsencode(v) for k, v in env.items()}
        return env if isinstance(env, dict) and type(env) is dict else dict(env)

    def start(self, spec: Spawn, log_fd: int, dir_fd: int, single_threaded: bool, queue: Queue | None = None) -> None:
        if self._dead:
            raise self._died()
        command: str | bytes = os.fsencode(spec.command) if self._encode else spec.command
        env = self.env_of(spec.env)
        self._serial += 1
        serial = self._serial
        if queue is None:
            payload = marshal.dumps((_sp.START, serial, spec.key, command, env))
        else:
            q = (queue.cpus, queue.mem_mb, queue.stop, queue.outputs, queue.tag, spec.append_log, queue.merge_env)
            payload = marshal.dumps((_sp.START, serial, spec.key, command, env, q))
        try:
            # Registered before it is sent: the spawner never runs a job we
            # do not know of.
            self._jobs[serial] = _Remote(spec.key, queued=queue is not None)
            self._send(payload, [dir_fd, log_fd])
        except OSError:  # refused by the kernel: not sent
            self._jobs.pop(serial, None)
            raise
        except BaseException:
            # A signal handler raised (in a caller whose signals cannot be
            # deferred): sent or not? The next call asks the spawner.
            self._unsure = True
            raise

    def wait(self, timeout: float | None) -> None:
        with _signals_deferred():
            self._sync()
            self._apply_inbox()
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        while not self.finished and self._jobs:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if self._poller.poll(None if remaining is None else remaining * 1000):
                with _signals_deferred():
                    self._drain()
            elif remaining == 0.0:
                break

    def kill_all(self, grace: float) -> None:
        with _signals_deferred():
            self._sync()
            self._apply_inbox()
            if self._jobs:
                self._killed = None
                self._send(marshal.dumps((_sp.KILL, grace)), [])
                while self._killed is None:
                    self._poller.poll()
                    self._drain()
                alive = set(self._killed)
                # Every job we know of was sent, so this is a safety net:
                # what the spawner does not run is not running.
                for serial in [s for s in self._jobs if s not in alive]:
                    del self._jobs[serial]

    def close(self) -> None:
        try:
            if (self._jobs or self._unsure) and not self._dead:
                self.kill_all(grace=2.0)
        finally:
            self.finished.clear()
            self._jobs.clear()
            self._handle.release(_sp.KILL_TIMEOUT)

    def _sync(self) -> None:
        """After an interrupted start(): forget the jobs the spawner never
        got. Everything it received before SYNC is reported before SYNCED."""
        if not self._unsure or self._dead:
            return
        self._synced = False
        self._send(marshal.dumps((_sp.SYNC,)), [])
        while not self._synced:
            self._poller.poll()
            self._drain(keep_ended=True)
        held = self._queued_at_sync
        for serial in [s for s, job in self._jobs.items() if job.pid is None and not (job.queued and s in held)]:
            del self._jobs[serial]
        self._unsure = False

    # -- the wire

    def _send(self, payload: bytes, fds: list[int]) -> None:
        memfd = -1
        try:
            if len(payload) > _sp.MAX_MESSAGE:  # a huge environment
                memfd = os.memfd_create("sweepc-start", os.MFD_CLOEXEC)
                view = memoryview(payload)
                while view:
                    view = view[os.write(memfd, view) :]
                payload = marshal.dumps((_sp.BIG,))
                fds = [*fds, memfd]
            ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array("i", fds))] if fds else []
            # One datagram: sent whole or not at all, even if interrupted.
            self._sock.sendmsg([payload], ancillary)
        except (BrokenPipeError, ConnectionResetError):
            raise self._died() from None
        finally:
            if memfd >= 0:
                os.close(memfd)

    def _drain(self, keep_ended: bool = False) -> None:
        """Apply every record the spawner has sent so far (without blocking).

        A datagram is read with MSG_PEEK, applied, and only then consumed:
        where signals cannot be deferred, a handler raising in between makes
        the next drain apply it again, which is harmless (every record is
        idempotent), instead of losing an Exit (and waiting for it forever)."""
        while True:
            try:
                size = self._sock.recv_into(self._buf, 0, socket.MSG_DONTWAIT | socket.MSG_PEEK)
            except BlockingIOError:
                return
            except ConnectionResetError:
                size = 0
            if size == 0:
                raise self._died()
            for record in marshal.loads(memoryview(self._buf)[:size]):
                kind = record[0]
                if kind == _sp.STARTED:
                    job = self._jobs.get(record[1])
                    if job is not None:
                        job.pid = record[3]
                        if job.queued:
                            job.queued = False
                            self.started.append(job.key)
                elif kind == _sp.DROPPED:
                    for serial in record[1]:
                        job = self._jobs.pop(serial, None)
                        if job is not None:
                            self.dropped.append(job.key)
                elif kind == _sp.ENDED:
                    if keep_ended:
                        self._inbox.append(record)
                    else:
                        self._ended(record)
                elif kind == _sp.KILLED:
                    self._killed = record[1]
                elif kind == _sp.SYNCED:
                    self._synced = True
                    self._queued_at_sync = set(record[1]) if len(record) > 1 else set()
            self._sock.recv(1, socket.MSG_DONTWAIT)  # consumed: the rest is dropped

    def _apply_inbox(self) -> None:
        for record in self._inbox:  # emptied last: applying twice is harmless
            self._ended(record)
        self._inbox.clear()

    def _ended(self, record: tuple[Any, ...]) -> None:
        _, serial, key, status, max_rss_kb, start, end, floor_kb, interrupted = record[:9]
        cpu_s = record[9] if len(record) > 9 else None
        if self._jobs.pop(serial, None) is not None:  # not seen before
            code, sig = _decode_status(status)
            self.finished.append(
                Exit(key, code, sig, start, end, max_rss_kb, interrupted, floor_kb, cpu_s)
            )

    def _died(self) -> ChildProcessError:
        """The spawner is gone (killed, or a bug): kill what it ran, as far
        as we know it, and refuse to go on."""
        if not self._dead:
            self._dead = True
            for job in self._jobs.values():
                if job.pid:
                    try:
                        os.killpg(job.pid, signal.SIGKILL)
                    except OSError:
                        pass
            self._jobs.clear()
            self._inbox.clear()
        return ChildProcessError(
            errno.ECHILD,
            f"sweepc's job spawner (pid {self._pid}) died unexpectedly; its jobs were killed",
        )


# -- jobs spawned in-process (the fallback) -----------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class _Job:
    key: int
    pid: int
    pidfd: int
    start: float
    rss_floor_kb: int


class _InProcess:
    """Spawns from sweepc itself: how sweepc worked before the spawner, and
    still does when the spawner cannot be started."""

    def __init__(self, bash: str) -> None:
        self._bash = bash
        self._devnull = _above_stdio(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC))
        self._selector = selectors.DefaultSelector()
        self._jobs: dict[int, _Job] = {}  # by pidfd
        # Reaped but not yet returned; kept on the pool so that an interrupt
        # between reaping and returning loses no Exit.
        self.finished: list[Exit] = []

    @property
    def running(self) -> int:
        return len(self._jobs) + len(self.finished)

    def pids(self) -> dict[int, int]:
        return {job.key: job.pid for job in self._jobs.values()}

    def start(self, spec: Spawn, log_fd: int, dir_fd: int, single_threaded: bool) -> None:
        spawn = self._posix_spawn if single_threaded else self._popen
        rss_floor_kb = _sp.hwm_kb()
        start = time.time()
        pid = spawn(spec, log_fd, dir_fd)
        self._track(_Job(spec.key, pid, -1, start, rss_floor_kb))

    def wait(self, timeout: float | None) -> None:
        if not self.finished and self._jobs:
            ready = self._selector.select(timeout)
            with _signals_deferred():
                lost = [
                    job.key
                    for job in [self._jobs[key.fd] for key, _ in ready]
                    if not self._reap(job, interrupted=False)
                ]
            if lost:
                raise _reaped_elsewhere(lost)

    def kill_all(self, grace: float) -> None:
        # Jobs reaped by someone else are dropped silently here.
        with _signals_deferred():
            for key, _ in self._selector.select(0):
                self._reap(self._jobs[key.fd], interrupted=False)
            if self._jobs:
                _sp.stop_trees([(job.pid, job.pidfd) for job in self._jobs.values()], grace)
                for key, _ in self._selector.select(0):
                    self._reap(self._jobs[key.fd], interrupted=True)

    def close(self) -> None:
        if self._jobs:
            self.kill_all(grace=2.0)
        for pidfd in self._jobs:  # only jobs that outlived SIGKILL
            os.close(pidfd)
        self._jobs.clear()
        self.finished.clear()
        self._selector.close()
        os.close(self._devnull)

    # -- spawning

    def _posix_spawn(self, spec: Spawn, log_fd: int, dir_fd: int) -> int:
        actions: list[tuple[Any, ...]] = [
            (os.POSIX_SPAWN_DUP2, self._devnull, 0),
            (os.POSIX_SPAWN_DUP2, log_fd, 1),
            (os.POSIX_SPAWN_DUP2, log_fd, 2),
        ]
        # Popen's close_fds=True, by hand: fds we inherited without
        # close-on-exec (this VM's harness left two in ours) must not reach jobs.
        actions += [(os.POSIX_SPAWN_CLOSE, fd) for fd in _inheritable_fds()]
        # posix_spawn has no cwd in Python 3.11, so we change ours around the
        # call, which is only safe because no other thread can see it meanwhile.
        home = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fchdir(dir_fd)
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

    def _popen(self, spec: Spawn, log_fd: int, dir_fd: int) -> int:
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

    # -- reaping

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
        code, sig = _decode_status(status)
        self.finished.append(
            Exit(job.key, code, sig, job.start, end, usage.ru_maxrss, interrupted, job.rss_floor_kb,
                 usage.ru_utime + usage.ru_stime)
        )
        return True


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
    # _signal's own pthread_sigmask: signal's wraps every signal number of the
    # returned mask in an enum, ~20 us per call, several calls per job.
    old = _sigmask(signal.SIG_BLOCK, ())
    try:
        _sigmask(signal.SIG_BLOCK, _DEFERRED_SIGNALS)
        yield
    finally:
        _sigmask(signal.SIG_SETMASK, old)


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


def _decode_status(status: int) -> tuple[int, int | None]:
    """(exit code, signal) from a wait status; death by signal N is 128 + N."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status), os.WTERMSIG(status)
    return os.WEXITSTATUS(status), None


def _reaped_elsewhere(keys: list[int]) -> ChildProcessError:
    return ChildProcessError(
        errno.ECHILD,
        f"jobs {keys} were reaped outside ProcessPool; "
        "is SIGCHLD ignored, or waitpid(-1) called elsewhere?",
    )


def _kill_and_reap(pid: int) -> None:
    """For a child we just spawned and could not track."""
    try:
        os.killpg(pid, signal.SIGKILL)  # our unreaped child leads the group
    except (ProcessLookupError, PermissionError):
        pass
    try:
        os.wait4(pid, 0)
    except ChildProcessError:  # reaped by someone else already
        pass


def _unregister(selector: selectors.BaseSelector, fd: int) -> None:
    try:
        selector.unregister(fd)
    except KeyError:
        pass
