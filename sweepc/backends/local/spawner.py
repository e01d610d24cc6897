"""The spawner: a small process that forks, reaps and kills sweepc's jobs.

Why it exists: on Linux a child's ``ru_maxrss`` (from wait4) is never below
the resident size of the process that spawned it. At exec the kernel folds
the old address space's high-water mark into the new program's
``signal->maxrss`` (``setmax_mm_hiwater_rss`` in ``exec_mmap``), and with
vfork (posix_spawn) the old address space *is* the parent's. sweepc itself
is 300-500 MB at 100k parameter sets, so every ``echo hi`` reported ~400 MB.
Jobs spawned from this process carry only its own high-water mark instead:
about 9 MB (``python3 -S -I``, nothing imported beyond builtin and
lib-dynload modules). That floor is reported with every job
(``Exit.rss_floor_kb``, read from VmHWM, not from getrusage: the spawner's
own ``ru_maxrss`` carries sweepc's size, folded in at *its* exec, but that
number is not what its children inherit).

Run by ``sweepc.procs.ProcessPool`` as ``python -S -I -c ...`` with its end of
the socket as fd 3 (and sweepc's stderr as its own, for tracebacks). It must stay importable and runnable with the standard
library only (no site-packages), and it imports as little as it can: every
module it loads raises the floor of every job.

Protocol, over a ``socketpair(AF_UNIX, SOCK_SEQPACKET)``: every message is one
datagram holding one ``marshal``-ed value. A datagram is sent whole or not at
all, even when a KeyboardInterrupt strikes in the sender, so no framing can
get out of step; and sweepc can pass file descriptors along (SCM_RIGHTS). Both
ends run the same interpreter, so marshal (builtin, fast, no import) is safe.

  sweepc -> spawner, one command per datagram:
    (START, serial, key, command, env)  fds: job directory (O_PATH), log file
    (START, serial, key, command, env, queue)   the same, queued (see below);
                                   queue = (cpus, mem_mb, stop, outputs, tag, append, merge)
                                   merge: env holds only what differs from BASE_ENV's
    (BASE_ENV, env)                the environment queued jobs with `merge` share
    (LIMIT, cpus, mem_mb)          the budget of queued jobs; also lifts a hold
    (JOURNAL,)                     fds: the journal file (O_APPEND)
    (DROP,)                        drop every queued job and hold: answered by
                                   DROPPED; later queued STARTs are dropped too
    (BIG,)                         fds: directory, log, memfd holding a
                                   marshal-ed START too big for a datagram
    (KILL, grace)
    (SYNC,)                        answered by SYNCED, after the records
                                   of everything received before it
  spawner -> sweepc, a list of records per datagram (batched):
    (READY, pid, floor_kb, fs_encoding, fs_errors)   once, first
    (STARTED, serial, key, pid)    pid 0: it could not be started
    (ENDED, serial, key, wait_status, max_rss_kb, start, end, floor_kb, interrupted, cpu_s)
    (KILLED, [serials still alive after SIGKILL])
    (SYNCED, [serials queued])
    (DROPPED, [serials])           queued jobs that will never start

The queue: a queued START is not spawned at once but held in a FIFO and
started the moment it fits in the budget (LIMIT: cpus and MB of memory that
the running queued jobs may use together; a job that does not fit waits, and
so does everything behind it, unless nothing runs), so a job slot never waits
for a round trip to sweepc. `stop` marks a job whose failure stops the build
(no -k, no retry left): when it ends with a non-zero status, or exits 0
without one of its declared `outputs` (paths below its folder), the spawner
drops the whole queue at once, before anything else can start, reports the
dropped serials (DROPPED) and holds: queued STARTs that arrive later are
dropped too, until a LIMIT. KILL drops the queue as well (DROPPED before
KILLED). A queued job's log was opened by sweepc without truncating it; the
spawner truncates it (unless `append`) just before the job starts, so a
dropped job leaves an earlier run's log as it was.

The journal: for every queued job that ends, the spawner appends one
record, (tag, wait_status, start, end, max_rss_kb, cpu_s, interrupted),
marshal-ed behind its 4-byte little-endian length, to the journal with one
write(2), before it reports the end or starts the next job. `tag` is
sweepc's, opaque here. sweepc records every end in its store as usual; the
journal is for when sweepc is killed (SIGKILL) after a job ended and before
that end reached the store: the next build replays it (local/journal.py,
replay; sweepc's main process writes the same records itself for the jobs
it does not queue here, never while this queue is in use). Like the store's
commits (WAL, synchronous=NORMAL) it is not fsync-ed: it survives the death
of any process, not of the machine.

A serial numbers one start of one pool; the key is the caller's, echoed.
sweepc registers a job before sending its START. If a signal handler raises
around the send (in a caller whose signals cannot be deferred), sweepc does
not know whether the START went out; a SYNC then tells: a job that has no
STARTED by the time SYNCED arrives never reached the spawner.

sweepc opens the log and the directory itself (so a missing directory or an
unwritable log still raises OSError from ProcessPool.start, synchronously)
and does not wait for STARTED: starts are pipelined. Should the spawn itself
fail here (E2BIG, EAGAIN, ...), the job ends with exit code 127 and the
reason written to its log.

Signals: the spawner runs in its own session (ProcessPool starts it with
setsid), so terminal signals (Ctrl-C, Ctrl-\\, hang-up, Ctrl-Z) never reach
it, from its first instruction on; it also ignores SIGINT, SIGTERM, SIGHUP
and SIGQUIT sent to it directly. sweepc decides what stops. When sweepc goes
away (exit, crash, SIGKILL) its end of the socket closes; the spawner then
stops every job's process tree (stop_trees: SIGTERM, ~2 s grace, SIGKILL)
and exits. A job gets back the default disposition of every signal the
spawner ignores (unless sweepc itself had it ignored, as under nohup) plus
SIGPIPE and SIGXFSZ, which Python ignores; like subprocess's
restore_signals.

A command without shell syntax (one program, literal words, plain
redirections) is started without bash, exactly as bash would start it
(direct.py): bash's start-up is about 1 ms of CPU, more than a small job.
SWEEPC_SHELL_ALWAYS=1 in sweepc's environment turns that off.

The tree-killing helpers (stop_trees and friends) are shared with
ProcessPool's in-process fallback; they read /proc directly instead of
importing psutil, which would cost the spawner ~4 MB.
"""

import _socket
import marshal
import os
import select
import sys
import time

try:
    from . import direct
except ImportError:  # run by ProcessPool as the top-level module `spawner`, its folder on sys.path
    import direct  # type: ignore[no-redef,import-not-found]

TYPE_CHECKING = False
if TYPE_CHECKING:  # no stub for _signal; `signal` would import enum (0.7 MB)
    import signal as _signal
else:
    import _signal

SOCKET_FD = 3
SHELL_ARGS = ("bash", "-e", "-o", "pipefail", "-c")
# Message kinds, sweepc -> spawner
START, KILL, BIG, SYNC, LIMIT, JOURNAL, DROP, BASE_ENV = 0, 1, 2, 3, 4, 5, 6, 7
# Record kinds, spawner -> sweepc
READY, STARTED, ENDED, KILLED, SYNCED, DROPPED = 0, 1, 2, 3, 4, 5
# Largest datagram either side sends; larger START commands go by memfd.
MAX_MESSAGE = 60 * 1024
# A queued job's command is parsed and its program found when it arrives
# (direct.prepare); if it waited longer than this to start, again then.
PREPARED_FOR = 1.0
_ASK = object()  # spawn(): prepare the command now
# When sweepc goes away, jobs get this long between SIGTERM and SIGKILL.
ORPHAN_GRACE = 2.0
# How long stop_trees waits for SIGKILLed processes. Only a process stuck in
# uninterruptible sleep (a hung NFS mount) outlives SIGKILL for long; such a
# job stays running (and is reported later) rather than hanging us.
KILL_TIMEOUT = 5.0
# Ignored by the spawner (on top of what its parent had ignored).
IGNORED = (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP, _signal.SIGQUIT)
# Python ignores these at start-up; jobs must get the default back.
PYTHON_IGNORED = (_signal.SIGPIPE, _signal.SIGXFSZ)
_EXIT_START_FAILED = 127 << 8  # a wait status: exited with 127


def hwm_kb() -> int:
    """Our peak resident size (VmHWM), in kB: what a child spawned now
    inherits as the floor of its ru_maxrss."""
    fd = os.open("/proc/self/status", os.O_RDONLY | os.O_CLOEXEC)
    try:
        data = os.read(fd, 4096)
    finally:
        os.close(fd)
    at = data.find(b"VmHWM:")
    if at < 0:
        return 0
    return int(data[at + 6 : data.index(b"kB", at)])


# -- process trees (shared with procs.py) -------------------------------------


def _stat(pid: int) -> tuple[int, int] | None:
    """(ppid, start time in clock ticks) of `pid`, None when it is gone."""
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        data = os.read(fd, 2048)
    except OSError:
        return None
    finally:
        os.close(fd)
    # The command name (field 2) may hold spaces and parentheses.
    fields = data[data.rfind(b")") + 2 :].split()
    if len(fields) < 20:
        return None
    return int(fields[1]), int(fields[19])


class Victim:
    """A descendant of a job, found (and pinned) before it is signalled."""

    __slots__ = ("pid", "pidfd", "started")

    def __init__(self, pid: int, started: int, pidfd: int | None) -> None:
        self.pid = pid
        self.started = started  # /proc start time: tells a recycled pid apart
        self.pidfd = pidfd  # None when pidfd_open failed (EMFILE): not waited for

    def same_process(self) -> bool:
        stat = _stat(self.pid)
        return stat is not None and stat[1] == self.started


def _descendants(roots: list[int]) -> list[tuple[int, int]]:
    """(pid, start time) of every descendant of `roots`, from one /proc scan."""
    by_parent: dict[int, list[tuple[int, int]]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            stat = _stat(int(name))
            if stat is not None:
                by_parent.setdefault(stat[0], []).append((int(name), stat[1]))
    found: list[tuple[int, int]] = []
    stack = list(roots)
    while stack:
        for child in by_parent.get(stack.pop(), ()):
            found.append(child)
            stack.append(child[0])
    return found


def _collect(roots: list[int], known: list[Victim]) -> list[Victim]:
    seen = {victim.pid for victim in known}
    victims = []
    for pid, started in _descendants(roots):
        if pid not in seen:
            victim = _pin(pid, started)
            if victim is not None:
                victims.append(victim)
    return victims


def _pin(pid: int, started: int) -> Victim | None:
    """Open a pidfd on `pid`, so that neither signalling nor waiting can hit a
    recycled pid. (psutil's wait_procs would be no substitute: it waitpid()s
    our own children, stealing their rusage, and takes zombies for alive.)"""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return None
    except OSError:  # out of fds: still signal it, checking its start time
        return Victim(pid, started, None)
    victim = Victim(pid, started, pidfd)
    if not victim.same_process():  # recycled between the scan and the open
        os.close(pidfd)
        return None
    return victim


def _signal_group(pgid: int, sig: int) -> None:
    # Called for jobs only: the group leader is our unreaped child, so its
    # pid (the pgid) cannot have been recycled for somebody else's group.
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):  # empty group / setuid member
        pass


def _signal_tree(roots: list[int], victims: list[Victim], sig: int) -> None:
    for pid in roots:
        _signal_group(pid, sig)
    for victim in victims:  # including those that left the group (setsid)
        try:
            if victim.pidfd is not None:
                _signal.pidfd_send_signal(victim.pidfd, sig)
            elif victim.same_process():
                os.kill(victim.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def wait_exited(pidfds: list[int], timeout: float) -> set[int]:
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


def stop_trees(jobs: list[tuple[int, int]], grace: float) -> None:
    """SIGTERM the process tree of every job (pid, pidfd), give it `grace` s,
    SIGKILL what is left, and wait (up to KILL_TIMEOUT) for the jobs and
    their descendants to exit. The jobs must be our unreaped children, each
    leading its own process group; reaping them is the caller's business."""
    roots = [pid for pid, _ in jobs]
    job_fds = [pidfd for _, pidfd in jobs]
    # Collected before any signal: once a parent dies its children are
    # re-parented and can no longer be found from the job.
    victims = _collect(roots, known=[])
    try:
        _signal_tree(roots, victims, _signal.SIGTERM)
        # A stopped process would sit on its SIGTERM until the SIGKILL.
        _signal_tree(roots, victims, _signal.SIGCONT)
        alive = wait_exited(job_fds + _pidfds(victims), grace)
        # Whatever the survivors forked during the grace dies too.
        survivors = [v.pid for v in victims if _alive(v, alive)]
        victims += _collect(roots + survivors, known=victims)
        _signal_tree(roots, victims, _signal.SIGKILL)
        wait_exited(job_fds + _pidfds(victims), KILL_TIMEOUT)
    finally:
        for victim in victims:
            if victim.pidfd is not None:
                os.close(victim.pidfd)


def _pidfds(victims: list[Victim]) -> list[int]:
    return [victim.pidfd for victim in victims if victim.pidfd is not None]


def _alive(victim: Victim, alive_pidfds: set[int]) -> bool:
    if victim.pidfd is None:
        return victim.same_process()
    return victim.pidfd in alive_pidfds


# -- the spawner process ----------------------------------------------------


class _Job:
    __slots__ = ("cpus", "dirfd", "floor_kb", "key", "mem", "outputs", "pid", "pidfd", "serial", "start", "stop", "tag")

    def __init__(
        self, serial: int, key: int, pid: int, pidfd: int, start: float, floor_kb: int
    ) -> None:
        self.serial = serial
        self.key = key
        self.pid = pid
        self.pidfd = pidfd
        self.start = start
        self.floor_kb = floor_kb
        # queued jobs only: what they take of the budget, and what their end needs
        self.cpus = 0.0
        self.mem = 0
        self.stop = False
        self.outputs: tuple[str, ...] = ()
        self.tag: object = None
        self.dirfd = -1  # kept open while it runs: its outputs are checked below it


class _Queued:
    __slots__ = ("append", "command", "cpus", "dirfd", "env", "key", "log_fd", "mem", "merge", "outputs", "serial", "stop", "tag",
                 "direct", "arrived")

    def __init__(self, serial: int, key: int, command: "str | bytes", env: dict[str, str],
                 dirfd: int, log_fd: int, queue: tuple[object, ...]) -> None:
        self.serial, self.key, self.command, self.env = serial, key, command, env
        self.dirfd, self.log_fd = dirfd, log_fd
        cpus, mem, stop, outputs, tag, append, merge = queue
        assert isinstance(cpus, (int, float)) and isinstance(mem, int) and isinstance(outputs, tuple)
        self.cpus, self.mem, self.stop, self.outputs, self.tag = float(cpus), mem, bool(stop), outputs, tag
        self.append = bool(append)
        self.merge = bool(merge)
        self.direct: object = None  # direct.prepare()'s answer, made when it arrived (_Spawner.handle)
        self.arrived = 0.0


class _Spawner:
    def __init__(self, sock: _socket.socket, bash: str) -> None:
        self.sock = sock
        self.sock_fd = sock.fileno()
        self.bash = bash
        # commands bash need not start (direct.py); SWEEPC_SHELL_ALWAYS=1 in
        # sweepc's environment turns that off
        self.direct = os.environ.get("SWEEPC_SHELL_ALWAYS", "") in ("", "0")
        self.devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        self.jobs: dict[int, _Job] = {}  # by pidfd
        self.out: list[tuple[object, ...]] = []  # records not sent yet
        self.want_out = False  # EPOLLOUT registered: sweepc is not reading
        self.gone = False  # sweepc closed its end
        self.buf = bytearray(MAX_MESSAGE)
        self.ancsize = _socket.CMSG_SPACE(3 * 4)
        self.epoll = select.epoll()
        self.epoll.register(self.sock_fd, select.EPOLLIN)
        self.sigdef = _default_in_jobs()
        self.queue: list[_Queued] = []  # FIFO of queued STARTs (short: sweepc keeps a few ahead)
        self.budget = (float("inf"), 1 << 62)  # LIMIT: (cpus, mem_mb) of queued jobs
        self.used_cpus = 0.0
        self.used_mem = 0
        self.queued_running = 0  # running jobs that came through the queue
        self.held = False  # a stop job failed, or DROP: queued STARTs are dropped
        self.journal = -1
        self.base_env: dict[str, str] = {}

    def run(self) -> None:
        encoding = (sys.getfilesystemencoding(), sys.getfilesystemencodeerrors())
        self.out.append((READY, os.getpid(), hwm_kb(), *encoding))
        self.flush()
        try:
            self.loop()
        finally:
            # sweepc is gone (or we crashed): nobody is left to decide, so
            # nothing keeps running.
            self.stop_all()

    def loop(self) -> None:
        while not self.gone:
            for fd, events in self.epoll.poll():
                if fd == self.sock_fd:
                    if events & select.EPOLLOUT:
                        self.flush()
                    if events & (select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR):
                        self.read_commands()
                else:
                    job = self.jobs.get(fd)
                    if job is not None:
                        self.reap(job, interrupted=False)
            if self.queue:
                self.pump()
            self.flush()

    def stop_all(self) -> None:
        self.drop(hold=True)
        jobs = list(self.jobs.values())
        if jobs:
            stop_trees([(job.pid, job.pidfd) for job in jobs], ORPHAN_GRACE)
            for job in jobs:
                try:
                    os.wait4(job.pid, os.WNOHANG)
                except ChildProcessError:
                    pass

    # -- talking to sweepc

    def read_commands(self) -> None:
        while not self.gone:
            try:
                size, ancdata, _, _ = self.sock.recvmsg_into(
                    [self.buf], self.ancsize, _socket.MSG_CMSG_CLOEXEC | _socket.MSG_DONTWAIT
                )
            except BlockingIOError:
                return
            except OSError:  # ECONNRESET: sweepc died with data unread
                self.gone = True
                return
            fds = _received_fds(ancdata)
            if size == 0 and not fds:
                self.gone = True  # EOF: sweepc exited or was killed
                return
            try:
                self.handle(marshal.loads(memoryview(self.buf)[:size]), fds)
            finally:
                for fd in fds:
                    os.close(fd)

    def handle(self, command: tuple[object, ...], fds: list[int]) -> None:
        kind = command[0]
        if kind == BIG:
            size = os.fstat(fds[2]).st_size
            command = marshal.loads(os.pread(fds[2], size, 0))
            kind = command[0]
        if kind == START:
            serial, key, text, env = command[1:5]
            assert isinstance(serial, int) and isinstance(key, int)
            assert isinstance(text, (str, bytes)) and isinstance(env, dict)
            queue = command[5] if len(command) > 5 else None
            if queue is None:
                self.spawn(serial, key, text, env, fds[0], fds[1])
            elif self.held:
                self.out.append((DROPPED, [serial]))
            else:
                assert isinstance(queue, tuple)
                # the fds stay open (taken off the list the caller closes) until it starts
                q = _Queued(serial, key, text, env, fds[0], fds[1], queue)
                self.prepare(q)
                self.queue.append(q)
                del fds[:2]
        elif kind == KILL:
            grace = command[1]
            assert isinstance(grace, (int, float))
            self.drop(hold=False)
            self.kill(float(grace))
        elif kind == SYNC:
            self.out.append((SYNCED, [q.serial for q in self.queue]))
        elif kind == LIMIT:
            cpus, mem = command[1:3]
            assert isinstance(cpus, (int, float)) and isinstance(mem, int)
            self.budget = (float(cpus), mem)
            self.held = False
        elif kind == JOURNAL:
            if self.journal >= 0:
                os.close(self.journal)
            self.journal = fds.pop(0)
        elif kind == DROP:
            self.drop(hold=True)
        elif kind == BASE_ENV:
            env = command[1]
            assert isinstance(env, dict)
            self.base_env = env
        else:
            raise ValueError(f"unknown command {kind!r}")

    def prepare(self, q: _Queued) -> None:
        """Parse a queued job's command and find its program now, while jobs
        run, not between one job's end and the next one's start (direct.py)."""
        if self.direct and type(q.command) is str:
            env = q.env
            path = env.get("PATH") if "PATH" in env or not q.merge else self.base_env.get("PATH")
            q.direct = direct.prepare(q.command, path)
            q.arrived = time.monotonic()

    def flush(self) -> None:
        while self.out and not self.gone:
            count = min(len(self.out), 500)
            data = marshal.dumps(self.out[:count])
            while len(data) > MAX_MESSAGE and count > 1:
                count //= 2
                data = marshal.dumps(self.out[:count])
            try:
                self.sock.send(data, _socket.MSG_DONTWAIT)
            except BlockingIOError:
                # sweepc is not reading just now. Never block on it: it may
                # be blocked sending us a command.
                if not self.want_out:
                    self.epoll.modify(self.sock_fd, select.EPOLLIN | select.EPOLLOUT)
                    self.want_out = True
                return
            except OSError:  # EPIPE / ECONNRESET: sweepc is gone
                self.gone = True
                return
            del self.out[:count]
        if self.want_out:
            self.epoll.modify(self.sock_fd, select.EPOLLIN)
            self.want_out = False

    # -- jobs

    def spawn(
        self,
        serial: int,
        key: int,
        command: str | bytes,
        env: dict[str, str],
        dirfd: int,
        log_fd: int,
        prepared: object = _ASK,
    ) -> _Job | None:
        floor_kb = hwm_kb()
        start = time.time()
        try:
            os.fchdir(dirfd)
            try:
                actions = [
                    (os.POSIX_SPAWN_DUP2, self.devnull, 0),
                    (os.POSIX_SPAWN_DUP2, log_fd, 1),
                    (os.POSIX_SPAWN_DUP2, log_fd, 2),
                ]
                pid = None
                if self.direct and type(command) is str:
                    if prepared is _ASK:
                        prepared = direct.prepare(command, env.get("PATH"))
                    pid = direct.launch(prepared, env, actions, setsid=True, setsigmask=(), setsigdef=self.sigdef)  # type: ignore[arg-type]
                if pid is None:
                    pid = os.posix_spawn(
                        self.bash,
                        [*SHELL_ARGS, command],
                        env,
                        file_actions=actions,
                        setsid=True,
                        setsigmask=(),
                        setsigdef=self.sigdef,
                    )
            finally:
                os.chdir("/")
        except OSError as err:
            self.failed(serial, key, log_fd, start, floor_kb, f"cannot start the job: {err}")
            return None
        try:
            pidfd = os.pidfd_open(pid)  # our unreaped child: only EMFILE & co.
            self.epoll.register(pidfd, select.EPOLLIN)
        except OSError as err:
            _signal_group(pid, _signal.SIGKILL)
            os.wait4(pid, 0)
            self.failed(serial, key, log_fd, start, floor_kb, f"cannot watch the job: {err}")
            return None
        job = self.jobs[pidfd] = _Job(serial, key, pid, pidfd, start, floor_kb)
        self.out.append((STARTED, serial, key, pid))
        return job

    def pump(self) -> None:
        """Start queued jobs, first come first served, while they fit."""
        queue = self.queue
        cpus, mem = self.budget
        while queue and not self.held:
            q = queue[0]
            if self.queued_running and (self.used_cpus + q.cpus > cpus or self.used_mem + q.mem > mem):
                return
            del queue[0]
            try:
                if not q.append:
                    try:
                        os.ftruncate(q.log_fd, 0)
                    except OSError:
                        pass
                env = {**self.base_env, **q.env} if q.merge else q.env
                if q.arrived and time.monotonic() - q.arrived > PREPARED_FOR:
                    self.prepare(q)  # (it waited: PATH may hold another program by now)
                job = self.spawn(q.serial, q.key, q.command, env, q.dirfd, q.log_fd, q.direct if q.arrived else _ASK)
            finally:
                os.close(q.log_fd)
            if job is None:  # could not start: ended with 127 (failed() wrote why)
                os.close(q.dirfd)
                self.journal_end(q.tag, _EXIT_START_FAILED, time.time(), time.time(), 0, 0.0, False)
                if q.stop:
                    self.drop(hold=True)
                continue
            job.cpus, job.mem, job.stop, job.outputs, job.tag, job.dirfd = q.cpus, q.mem, q.stop, q.outputs, q.tag, q.dirfd
            self.used_cpus += q.cpus
            self.used_mem += q.mem
            self.queued_running += 1

    def drop(self, hold: bool) -> None:
        """Forget every queued job (reported DROPPED); hold: and those to come."""
        self.held = self.held or hold
        if self.queue:
            dropped, self.queue = self.queue, []
            for q in dropped:
                os.close(q.dirfd)
                os.close(q.log_fd)
            self.out.append((DROPPED, [q.serial for q in dropped]))

    def journal_end(self, tag: object, status: int, start: float, end: float, rss: int, cpu: float, interrupted: bool) -> None:
        if self.journal < 0 or tag is None:
            return
        data = marshal.dumps((tag, status, start, end, rss, cpu, interrupted))  # type: ignore[arg-type]  # tag: sweepc's, marshal-ed by it before
        try:
            os.write(self.journal, len(data).to_bytes(4, "little") + data)
        except OSError:  # a full disk: sweepc's own record is the one that counts
            pass

    def failed(
        self, serial: int, key: int, log_fd: int, start: float, floor_kb: int, why: str
    ) -> None:
        try:
            os.write(log_fd, f"sweepc: {why}\n".encode(errors="replace"))
        except OSError:
            pass
        self.out.append((STARTED, serial, key, 0))
        end = time.time()
        self.out.append((ENDED, serial, key, _EXIT_START_FAILED, 0, start, end, floor_kb, False, 0.0))

    def reap(self, job: _Job, interrupted: bool) -> None:
        """Reap `job` if it has exited (its pidfd was readable)."""
        try:
            # WNOHANG: a stale epoll event may name a pidfd number that was
            # closed and reused for a newer job within the same poll round.
            pid, status, usage = os.wait4(job.pid, os.WNOHANG)
            if pid == 0:
                return
            max_rss_kb = usage.ru_maxrss
            cpu_s = usage.ru_utime + usage.ru_stime
        except ChildProcessError:  # cannot happen: SIGCHLD is SIG_DFL here
            status, max_rss_kb, cpu_s = 255 << 8, 0, 0.0
        end = time.time()
        del self.jobs[job.pidfd]
        self.epoll.unregister(job.pidfd)
        os.close(job.pidfd)
        if job.dirfd >= 0:
            self.used_cpus -= job.cpus
            self.used_mem -= job.mem
            self.queued_running -= 1
            self.journal_end(job.tag, status, job.start, end, max_rss_kb, cpu_s, interrupted)
            if job.stop and not interrupted and (status != 0 or not _all_there(job.dirfd, job.outputs)):
                self.drop(hold=True)  # before anything else can start
            os.close(job.dirfd)
        self.out.append(
            (
                ENDED,
                job.serial,
                job.key,
                status,
                max_rss_kb,
                job.start,
                end,
                job.floor_kb,
                interrupted,
                cpu_s,
            )
        )

    def kill(self, grace: float) -> None:
        """KILL: stop every job's tree; report jobs that had already ended
        with interrupted=False, then the killed ones, then KILLED."""
        alive = wait_exited(list(self.jobs), 0)
        for pidfd in [fd for fd in self.jobs if fd not in alive]:
            self.reap(self.jobs[pidfd], interrupted=False)
        jobs = list(self.jobs.values())
        if jobs:
            stop_trees([(job.pid, job.pidfd) for job in jobs], grace)
            alive = wait_exited([job.pidfd for job in jobs], 0)
            for job in jobs:
                if job.pidfd not in alive:
                    self.reap(job, interrupted=True)
        self.out.append((KILLED, [job.serial for job in self.jobs.values()]))


def _all_there(dirfd: int, paths: tuple[str, ...]) -> bool:
    for path in paths:
        try:
            os.stat(path, dir_fd=dirfd)
        except OSError:
            return False
    return True


def _received_fds(ancdata: list[tuple[int, int, bytes]]) -> list[int]:
    fds: list[int] = []
    for level, kind, data in ancdata:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            usable = len(data) - len(data) % 4
            fds += [int.from_bytes(data[i : i + 4], sys.byteorder) for i in range(0, usable, 4)]
    return fds


def _default_in_jobs() -> tuple[int, ...]:
    """Make the spawner deaf to stop signals; return the signals whose
    default a job gets back: ours, minus those our parent had ignored (a job
    under `nohup sweepc` keeps ignoring SIGHUP, as before the spawner)."""
    reset = list(PYTHON_IGNORED)
    for sig in IGNORED:
        if _signal.getsignal(sig) != _signal.SIG_IGN:
            reset.append(sig)
        _signal.signal(sig, _signal.SIG_IGN)
    # Our parent may have had SIGCHLD ignored; we wait4 our children.
    _signal.signal(_signal.SIGCHLD, _signal.SIG_DFL)
    _signal.pthread_sigmask(_signal.SIG_SETMASK, [])
    return tuple(reset)


def main() -> None:
    bash = sys.argv[1]
    os.set_inheritable(SOCKET_FD, False)  # never into a job
    null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    os.dup2(null, 0)  # not sweepc's terminal or pipe: we never read or print
    os.dup2(null, 1)
    os.close(null)
    # Whatever else we inherited must not reach jobs either (ProcessPool
    # closes its inheritable fds for us already; this is belt and braces).
    for name in os.listdir("/proc/self/fd"):
        if int(name) > SOCKET_FD:
            try:
                os.close(int(name))
            except OSError:  # the fd listdir itself used
                pass
    os.chdir("/")  # do not pin sweepc's directory (or its mount)
    sock = _socket.socket(fileno=SOCKET_FD)
    _Spawner(sock, bash).run()


if __name__ == "__main__":
    main()
