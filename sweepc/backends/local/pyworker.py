"""A worker of the local pool of Python workers (pypool.py): the loop that
runs in the worker process. Standard library only, and loaded by its path
(``python -c <boot> pyworker.py PYJOB_PY RESULT_FD SPOOL_FD``), like backends/pyjob.py,
whose ``load``, ``check_result``, ``write_result`` and ``report_failure`` it
uses: a worker needs neither sweepc on sys.path nor its package imports.

Tasks arrive on stdin, one JSON object a line (pypool.py writes several at
a time); one reply a line goes to RESULT_FD. The first line may instead be
the build's import check, ``{"check": [[path, func], ...]}``: the worker
imports each module and finds its function, replying ``{"ok": n}`` after
each, then ``{"c": null}``; or ``{"c": n, "err": traceback}`` for the first
that fails, and then exits. A worker that passed goes on to run the
build's tasks: a module is not imported once more for the check. A task's stdout and stderr go
to the spool, a file of sweepc's emptied before each task; when the task
printed anything, that becomes its sweepc.log (a job that printed nothing
has no log), and when the worker dies sweepc copies it there itself. A task may carry ``prep``: the
worker then makes the job folder itself (one step at a time from the
workdir, never through a link, the folders above it kept open), writes the
marker and pset.json (its text made here from the beginning sweepc sent,
``jh``, the job's seq ``s``, hash and pset: work off sweepc's process, which
hands out every task), and removes the outputs of an earlier run
(jobdir.prepare_job_dir's work, for a job without templates or nested
outputs; sweepc does the rest). When anything of that fails, the worker
does not run the task: it replies ``{"k": key, "np": why}`` and sweepc
prepares the folder itself (and reports the error it finds, in its own
words), then sends the task again without ``prep``.

A reply, when the function returned: ``[k, t0, t1, rss, cpu, res]``
(``cpu``: the task's CPU seconds, its own from time.process_time() around
the call plus its children's that it waited for, from
getrusage(RUSAGE_CHILDREN) after the task against its value after the task
before; ``res``: the JSON object of sweepc-result.json, its text as written
put in the reply as it is: one line, as json.dumps makes no newline), so
sweepc neither reads the file back nor parses a string inside the reply
(and a list reads faster than an object). When it failed:
``{"k", "rc", "err", "t0", "t1", "rss", "cpu"}``. The worker exits after a
failed task (the module may be broken) and when stdin closes.
"""

from __future__ import annotations

import importlib.util
import json
import os
import resource
import shutil
import stat
import sys
import time
from types import ModuleType
from typing import Any

LOG_NAME = "sweepc.log"  # = sweepc.lang.graph.LOG_NAME
PSET_JSON_NAME = "pset.json"  # = sweepc.lang.graph.PSET_JSON_NAME
MARKER_NAME = ".sweepc-job"  # = sweepc.lang.graph.MARKER_NAME (tests/test_python_jobs.py checks the three)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
_MAX_OPEN_DIRS = 512  # folders above job folders kept open (rule and shard folders)
# A pset's scalar (or name) as JSON: the text sweepc.values.encode_scalar makes
# faster in sweepc's process (NaN and the infinities as Python's json writes them)
_enc = json.JSONEncoder(ensure_ascii=False).encode
_TYPE_NAMES = {bool: "bool", int: "int", float: "float", str: "str"}  # = sweepc.backends.jobdir._TYPE_NAMES


def pset_json(head: str, h: str, seq: int, params: dict[str, Any]) -> str:
    """The text of a job's pset.json, as sweepc.backends.jobdir.pset_json_text()
    makes it (tests/test_jobfolders.py compares the two), from its beginning
    (jobdir.pset_json_head()) and the job's hash, seq and pset as the task
    line brought it (JSON keeps each value's type: 1.0 stays a float)."""
    if params:
        p = "{\n" + ",\n".join([f"    {_enc(k)}: {_enc(v)}" for k, v in params.items()]) + "\n  }"
        t = "{\n" + ",\n".join([f"    {_enc(k)}: \"{_TYPE_NAMES.get(type(v)) or type(v).__name__}\"" for k, v in params.items()]) + "\n  }"
    else:
        p = t = "{}"
    return head + f'  "hash": {_enc(h)},\n  "seq": {int(seq)},\n  "params": {p},\n  "types": {t}\n}}\n'


def _load_pyjob(path: str) -> ModuleType:
    mod = sys.modules.get("sweepc_pyjob")
    if mod is None:
        spec = importlib.util.spec_from_file_location("sweepc_pyjob", path)
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        sys.modules["sweepc_pyjob"] = mod
        spec.loader.exec_module(mod)
    return mod


class _Dirs:
    """Open folders below the workdir, by their path relative to it: each
    reached from its parent without following a link (as
    jobdir.open_job_dir), made when missing."""

    def __init__(self) -> None:
        self.fds: dict[tuple[str, str], int] = {}

    def below(self, workdir: str, rel: str) -> int:
        key = (workdir, rel)
        fd = self.fds.get(key)
        if fd is not None:
            return fd
        if len(self.fds) >= _MAX_OPEN_DIRS:
            self.close()
        head, _, name = rel.rpartition("/")
        if name == "":
            parent = None
            fd = os.open(workdir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        else:
            parent = self.below(workdir, head)
            fd = _open_or_make(parent, name)[0]
        self.fds[key] = fd
        return fd

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()


def _open_or_make(parent: int, name: str) -> tuple[int, bool]:
    """(fd, made): folder `name` below `parent`, made when missing."""
    try:
        os.mkdir(name, 0o777, dir_fd=parent)
        made = True
    except FileExistsError:
        made = False
    return os.open(name, _DIR_FLAGS, dir_fd=parent), made


def _write_new(fd: int, name: str, data: bytes) -> None:
    out = os.open(name, _WRITE_FLAGS | os.O_EXCL, 0o644, dir_fd=fd)
    try:
        os.write(out, data)
    finally:
        os.close(out)


def _replace(fd: int, name: str, data: bytes) -> None:
    """As jobdir._write_below: to a temporary name, then renamed over a link or file."""
    tmp = name + ".sweepc-tmp"
    try:
        os.unlink(tmp, dir_fd=fd)
    except FileNotFoundError:
        pass
    _write_new(fd, tmp, data)
    os.replace(tmp, name, src_dir_fd=fd, dst_dir_fd=fd)


def _remove(fd: int, name: str) -> None:
    """An output of an earlier run (a single name): never through a link."""
    try:
        st = os.lstat(name, dir_fd=fd)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(name, dir_fd=fd)
    else:
        os.unlink(name, dir_fd=fd)


def prepare(dirs: _Dirs, prep: dict[str, Any], text: bytes) -> tuple[int, bool]:
    """Make and fill the job folder (`text`: its pset.json): its fd, and
    whether it was made now. OSError when anything fails."""
    rel: str = prep["r"]  # <rule>/<hh>/<hash>
    head, _, name = rel.rpartition("/")
    parent = dirs.below(prep["w"], head)
    fd, made = _open_or_make(parent, name)
    try:
        if made:  # a new, empty folder: nothing to remove, no link to step around
            _write_new(fd, MARKER_NAME, (rel + "\n").encode())
            _write_new(fd, PSET_JSON_NAME, text)
            return fd, True
        try:
            _write_new(fd, MARKER_NAME, (rel + "\n").encode())
        except FileExistsError:
            pass
        for out in prep["o"]:
            _remove(fd, out)
        try:
            if stat.S_ISLNK(os.lstat(LOG_NAME, dir_fd=fd).st_mode):
                os.unlink(LOG_NAME, dir_fd=fd)  # the new log replaces a link; its target is not touched
        except FileNotFoundError:
            pass
        _replace(fd, PSET_JSON_NAME, text)
        return fd, False
    except BaseException:
        os.close(fd)
        raise


def _keep_output(spool: int, dfd: int, append: bool, fresh: bool) -> bool:
    """What the task printed (the spool, fds 1 and 2) becomes the job's log;
    a task that printed nothing leaves no log (and none of an earlier run).
    Whether it printed anything (the spool is emptied before the next task
    only then: two system calls a task saved)."""
    size = os.fstat(spool).st_size
    if size == 0:
        if not append and not fresh:
            try:
                os.unlink(LOG_NAME, dir_fd=dfd)
            except FileNotFoundError:
                pass
        return False
    # O_NOFOLLOW: never write through a link a job left in its folder (as sweepc's own writes)
    log = os.open(LOG_NAME, _WRITE_FLAGS | (os.O_APPEND if append else os.O_TRUNC), 0o666, dir_fd=dfd)
    try:
        off = 0
        while off < size:
            data = os.pread(spool, min(size - off, 1 << 20), off)
            if not data:
                break
            os.write(log, data)
            off += len(data)
    finally:
        os.close(log)
    return True


def _kids_cpu() -> float:
    """CPU seconds (user + system) of the children this worker waited for."""
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return kids.ru_utime + kids.ru_stime


def main(argv: list[str]) -> int:
    """argv: the path of pyjob.py, the fd for replies, the spool's fd (a file
    sweepc made: fds 1 and 2 of every task; sweepc reads it when a worker dies)."""
    pyjob = _load_pyjob(argv[0])
    result_fd = int(argv[1])
    spool = int(argv[2])
    pyjob._die_with_parent()
    os.dup2(spool, 1)
    os.dup2(spool, 2)
    os.close(spool)
    spool = 1
    home = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    peak = pyjob._Peak()
    dirs = _Dirs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(line_buffering=True)  # type: ignore[union-attr]
        except (AttributeError, ValueError):
            pass
    dumps = json.dumps
    environ = os.environ
    process_time = time.process_time
    kids = _kids_cpu()  # the children's CPU so far: a task's children are those waited for during it
    printed = True  # the spool may hold something: emptied before the next task

    def reply(msg: dict[str, Any]) -> None:
        data = (dumps(msg) + "\n").encode()
        while data:
            data = data[os.write(result_fd, data):]

    for raw in sys.stdin.buffer:
        task = json.loads(raw)
        mods = task.get("check")
        if mods is not None:
            # the build's import check, before any task: import each module and
            # find its function; at the first that fails, say which and why, and
            # exit (its half-imported state stays in this process)
            for n, (path, func) in enumerate(mods):
                try:
                    pyjob.load(path, func)
                except BaseException as ex:  # noqa: BLE001 - the import's failure is the answer
                    reply({"c": n, "err": pyjob.short_traceback(ex)})
                    return 0
                reply({"ok": n})  # (should the next import end this process, sweepc knows which did)
            reply({"c": None})
            continue
        key = task["k"]
        job_dir: str = task["d"]
        t0 = time.time()
        prep = task.get("prep")
        fresh = False
        if prep is not None:
            try:
                text = pset_json(prep["jh"], task["h"], prep["s"], task["p"]).encode("utf-8")
                dfd, fresh = prepare(dirs, prep, text)
            except (OSError, ValueError) as ex:  # (a str sweepc cannot write either: it says so, in its words)
                reply({"k": key, "np": str(ex)})
                continue
        else:
            try:
                dfd = os.open(job_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            except OSError as ex:
                reply({"k": key, "rc": 127, "err": f"cannot open the job folder: {ex}", "t0": t0, "t1": time.time(), "rss": 0})
                continue
        ok = True
        err = ""
        res = None
        can_reset = False
        c0: float | None = None
        if printed:
            os.ftruncate(spool, 0)
            os.lseek(spool, 0, os.SEEK_SET)
        try:
            os.fchdir(dfd)
            environ["SWEEPC_JOB_DIR"] = job_dir
            environ["SWEEPC_PSET_JSON"] = job_dir + "/" + PSET_JSON_NAME
            environ["SWEEPC_PSET_HASH"] = task["h"]
            for k, v in (("SWEEPC_RULE", task["r"]), ("SWEEPC_ATTEMPT", str(task.get("n", 1))), *(task.get("e") or {}).items()):
                if environ.get(k) != v:  # (mostly the same as the task before's: a putenv saved)
                    environ[k] = v
            can_reset = peak.reset()
            c0 = process_time()
            t0 = time.time()
            fn = pyjob.load(task["m"], task["f"])
            params = task["p"]
            pset = dict(params)
            pset["_pset_hash"] = task["h"]
            pset["_job_dir"] = job_dir
            pset["_rule"] = task["r"]
            if task.get("i"):
                pset["_inputs"] = pyjob.inputs_here()
            res = pyjob.write_result(pyjob.check_result(fn(pset), params), dfd)
        except BaseException as ex:  # noqa: BLE001 - every failure is the job's
            ok = False
            err = pyjob.report_failure(ex)
        t1 = time.time()
        cpu: float | None = None
        if c0 is not None:
            k = _kids_cpu()
            cpu = process_time() - c0 + (k - kids)
            kids = k
        rss = peak.kb(can_reset)
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        try:
            printed = _keep_output(spool, dfd, bool(task.get("a")), fresh)
        except OSError as ex:
            printed = True
            if ok:
                ok, err = False, f"cannot write the log: {ex}"
        os.close(dfd)
        try:
            os.fchdir(home)
        except OSError:
            pass
        if ok:
            # the results as they are in the file (a JSON object on one line), not a string holding it
            data = f"[{key},{t0!r},{t1!r},{rss},{round(cpu or 0.0, 4)!r},{res}]\n".encode()
            while data:
                data = data[os.write(result_fd, data):]
            continue
        msg: dict[str, Any] = {"k": key, "rc": 1, "err": err, "t0": t0, "t1": t1, "rss": rss}
        if cpu is not None:
            msg["cpu"] = round(cpu, 4)
        reply(msg)
        return 0  # may have left the process broken: the pool starts a fresh worker
    return 0
