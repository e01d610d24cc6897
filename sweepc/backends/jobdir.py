"""Preparing a job's folder before it runs, the same way on every backend.

sweepc writes only into folders it reached from the workdir one step at a
time without following a symbolic link (openat with O_NOFOLLOW): a rule,
shard or job folder that is a link is refused (the job fails, with the
reason), and nothing is written through it; a sweepc.log, input list or
output that is a link loses the link, never its target's contents. (The workdir itself
may be a link, e.g. to scratch space: that is the user's setting, checked by
the compiler.) Every job folder sweepc prepares gets a marker file
(MARKER_NAME, holding the folder's <rule>/<hh>/<hash>), so `sweepc clean`
can tell the folders sweepc made from anything else, even without the store.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
from pathlib import Path

from sweepc.lang.graph import INPUT_LIST_NAME, LOG_NAME, MARKER_NAME, BuildGraph, Job, RuleSpec

_USES_INPUT_LIST = re.compile(r"\{\s*input\s*\.\s*list\s*\}")
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# for files sweepc writes in a job folder: never through a link
WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC


class JobDirError(OSError):
    """A job folder sweepc must not write into (a link on the way, not a folder)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


def uses_input_list(rule: RuleSpec) -> bool:
    return bool(_USES_INPUT_LIST.search(rule.shell) or (rule.restart and _USES_INPUT_LIST.search(rule.restart)))


def input_list_text(g: BuildGraph, job: Job, d: Path) -> str:
    """One input path per line, relative to the job folder d, as {input} names them."""
    lines = [f"../../../{g.jobs[dep].reldir}/{o.path}\n" for dep in job.deps for o in g.rule(g.jobs[dep].rule).outputs]
    root_rel = os.path.relpath(g.root, d)
    lines.extend(f"{root_rel}/{p}\n" for p in job.sources)
    return "".join(lines)


def open_job_dir(wd: Path, reldir: str, create: bool = True) -> int:
    """A file descriptor on the folder wd/reldir, reached from the workdir one
    folder at a time without following a link; the folders are made on the way
    when `create`. Raises JobDirError for a link or a non-folder on the way,
    OSError for anything else (a full disk, no permission, missing)."""
    try:
        fd = os.open(wd, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        if not create:
            raise
        wd.mkdir(parents=True, exist_ok=True)
        fd = os.open(wd, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        walked = wd
        for name in reldir.split("/"):
            try:
                try:
                    below = os.open(name, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:  # (tried first: most folders exist already)
                    if not create:
                        raise
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(name, 0o777, dir_fd=fd)
                    below = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except OSError as e:
                raise _refusal(fd, name, walked / name, e) from None
            os.close(fd)
            fd, walked = below, walked / name
        return fd
    except BaseException:
        os.close(fd)
        raise


def _refusal(fd: int, name: str, path: Path, e: OSError) -> OSError:
    try:
        st = os.lstat(name, dir_fd=fd)
    except OSError:
        return e
    if stat.S_ISLNK(st.st_mode):
        try:
            target = f" (to {os.readlink(name, dir_fd=fd)})"
        except OSError:
            target = ""
        return JobDirError(f"{path} is a symbolic link{target}; sweepc writes job files only into real folders inside the workdir: remove the link")
    if not stat.S_ISDIR(st.st_mode):
        return JobDirError(f"{path} is in the way: it is not a folder; move it away")
    return e


def prepare_job_dir(g: BuildGraph, job: Job, input_list: bool, clear_outputs: bool = True) -> Path:
    """Make the job folder safely (see the module doc), mark it as sweepc's,
    remove the outputs of an earlier run, write the input list. Returns the folder."""
    d = g.job_dir(job)
    fd = open_job_dir(g.workdir_path, job.reldir)
    try:
        write_marker(fd, job.reldir)
        if clear_outputs:
            remove_outputs(g, job, d, dir_fd=fd)
            # the new log replaces a link in its place; the link's target is not touched
            with contextlib.suppress(OSError):
                if stat.S_ISLNK(os.lstat(LOG_NAME, dir_fd=fd).st_mode):
                    os.unlink(LOG_NAME, dir_fd=fd)
        if input_list:
            write_input_list(g, job, d, dir_fd=fd)
    finally:
        os.close(fd)
    return d


def write_marker(dir_fd: int, reldir: str) -> None:
    """The marker that says "sweepc made this folder" (kept once written)."""
    try:
        fd = os.open(MARKER_NAME, WRITE_FLAGS | os.O_EXCL, 0o644, dir_fd=dir_fd)
    except FileExistsError:
        return
    try:
        os.write(fd, (reldir + "\n").encode())
    finally:
        os.close(fd)


def is_marked(d: Path, reldir: str) -> bool:
    """Whether folder d holds the marker sweepc wrote for <rule>/<hh>/<hash> `reldir`."""
    try:
        fd = os.open(d / MARKER_NAME, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return os.read(fd, 4096).decode("utf-8", "replace").strip() == reldir
    except OSError:
        return False
    finally:
        os.close(fd)


def _dir_fd(d: Path, dir_fd: int | None) -> tuple[int, bool]:
    if dir_fd is not None:
        return dir_fd, False
    return os.open(d, _DIR_FLAGS), True


def write_input_list(g: BuildGraph, job: Job, d: Path, dir_fd: int | None = None) -> None:
    fd, mine = _dir_fd(d, dir_fd)
    try:
        tmp = INPUT_LIST_NAME + ".tmp"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=fd)  # whatever it was (a link, too): O_EXCL then makes a new file
        out = os.open(tmp, WRITE_FLAGS | os.O_EXCL, 0o644, dir_fd=fd)
        with os.fdopen(out, "w") as f:
            f.write(input_list_text(g, job, d))
        os.replace(tmp, INPUT_LIST_NAME, src_dir_fd=fd, dst_dir_fd=fd)  # replaces a link, never writes through it
    finally:
        if mine:
            os.close(fd)


def remove_outputs(g: BuildGraph, job: Job, d: Path, dir_fd: int | None = None) -> None:
    """Leftovers of an earlier run must not survive a run that fails to write them.

    Never through a link: an output that is a link loses the link only; an
    output below a folder that is a link (sub/out.txt with sub -> elsewhere)
    loses that link, and nothing elsewhere is touched."""
    fd, mine = _dir_fd(d, dir_fd)
    try:
        for o in g.rule(job.rule).outputs:
            _remove_below(fd, o.path.split("/"))
    finally:
        if mine:
            os.close(fd)


def _remove_below(fd: int, parts: list[str]) -> None:
    name = parts[0]
    try:
        st = os.lstat(name, dir_fd=fd)
    except FileNotFoundError:
        return
    except NotADirectoryError:
        return
    if len(parts) > 1 and stat.S_ISDIR(st.st_mode):
        below = os.open(name, _DIR_FLAGS, dir_fd=fd)
        try:
            _remove_below(below, parts[1:])
        finally:
            os.close(below)
    elif len(parts) > 1 and not stat.S_ISLNK(st.st_mode):
        return  # a file where a folder would be: the output cannot be there
    elif stat.S_ISDIR(st.st_mode):
        shutil.rmtree(name, dir_fd=fd)  # does not follow links inside it either
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=fd)

