"""A job's folder, the same way on every backend: preparing it before the
job runs, and checking its outputs and results files when it has ended.

sweepc writes only into folders it reached from the workdir one step at a
time without following a symbolic link (openat with O_NOFOLLOW): a rule,
shard or job folder that is a link is refused (the job fails, with the
reason), and nothing is written through it; a sweepc.log, input list or
output that is a link loses the link, never its target's contents. (The workdir itself
may be a link, e.g. to scratch space: that is the user's setting, checked by
the compiler.) Every job folder sweepc prepares gets a marker file
(MARKER_NAME, holding the folder's <rule>/<hh>/<hash>), so `sweepc clean`
can tell the folders sweepc made from anything else, even without the store.

prepare_job_dir() is the one call a backend makes before a job's command
starts: it marks the folder, removes the job's declared outputs (leftovers
of an earlier run must not survive a run that fails to write them), writes
the input list, renders the rule's templates into the folder and writes
pset.json, each file to a temporary name and renamed, never through a link.
(Every template was rendered once already, before anything ran, to report
errors: backends/templates.py.)
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import stat
from collections.abc import Container, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sweepc.backends import templates
from sweepc.backends.pyjob import deeper_than
from sweepc.lang.graph import INPUT_LIST_NAME, LOG_NAME, MARKER_NAME, PSET_JSON_NAME, PYTHON_RESULT_NAME, RENDERED_LIST_NAME, BuildGraph, Job, RuleSpec
from sweepc.values import encode_scalar as _encode, values_json

PSET_JSON_VERSION = 1
PSET_JSON_ENV = "SWEEPC_PSET_JSON"  # the environment variable naming it, set for every command

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
    """The job folder gets the input list: the command names {input.list},
    or a `python:` rule has inputs besides its module (its function gets
    them as `_inputs`, read from the list)."""
    if rule.python is not None:
        return any(i.rule is not None or i.path != rule.python[0] for i in rule.inputs)
    return bool(_USES_INPUT_LIST.search(rule.shell) or (rule.restart and _USES_INPUT_LIST.search(rule.restart)))


def input_list_text(g: BuildGraph, job: Job, d: Path, only: Container[int] | None = None) -> str:
    """One input path per line, relative to the job folder d, as {input} names
    them; with `only`, of those upstream jobs only (input: done(RULE))."""
    return "".join(input_list_pieces(g, job, d, only))


def input_list_pieces(g: BuildGraph, job: Job, d: Path, only: Container[int] | None = None, lines: int = 4096) -> Iterator[str]:
    """input_list_text() a few thousand lines at a time (a gather over 100k
    jobs: ~15 MB less at once than the list of its lines and their text)."""
    deps = job.deps if only is None else [dep for dep in job.deps if dep in only]
    jobs = g.jobs
    for k in range(0, len(deps), lines):
        yield "".join([f"../../../{jobs[dep].reldir}/{o.path}\n" for dep in deps[k:k + lines] for o in g.rule(jobs[dep].rule).outputs])
    root_rel = os.path.relpath(g.root, d)
    module = g.rule(job.rule).python
    yield "".join(f"{root_rel}/{p}\n" for p in job.sources if module is None or p != module[0])  # (not the function's own file)


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


def prepare_job_dir(g: BuildGraph, job: Job, input_list: bool, clear_outputs: bool = True,
                    only: Container[int] | None = None) -> Path:
    """Make the job folder safely (see the module doc), mark it as sweepc's,
    remove the outputs of an earlier run, write the input list. Returns the folder."""
    prepare_job_folder(g, job, input_list, clear_outputs, only)
    return g.job_dir(job)


def prepare_job_folder(g: BuildGraph, job: Job, input_list: bool, clear_outputs: bool = True,
                       only: Container[int] | None = None, above: JobDirs | None = None) -> bool:
    """prepare_job_dir(); True when the job folder was made now. A folder
    made now is empty: nothing of an earlier run to remove, and its files are
    written at once (O_EXCL, no temporary name and rename; a file that
    appeared meanwhile takes the careful way). `above`: the folders above
    job folders, kept open across calls (one walk per rule and shard, not
    per job)."""
    # (the folder's path only where it is needed: pathlib interns each part of
    # a path it parses, which kept every job's hash for good, ~20 MB at 100k psets)
    if above is not None:
        fd, made = above.job(job.reldir)
    else:
        fd, made = open_job_dir_made(g.workdir_path, job.reldir)
    try:
        write_marker(fd, job.reldir)
        if clear_outputs and not made:
            remove_outputs(g, job, g.job_dir(job), dir_fd=fd)
            # the new log replaces a link in its place; the link's target is not touched
            with contextlib.suppress(OSError):
                if stat.S_ISLNK(os.lstat(LOG_NAME, dir_fd=fd).st_mode):
                    os.unlink(LOG_NAME, dir_fd=fd)
        _make_output_folders(fd, g.rule(job.rule).outputs)
        if input_list:
            d = g.job_dir(job)
            if not (made and _write_new(fd, INPUT_LIST_NAME, (t.encode() for t in input_list_pieces(g, job, d, only)))):
                write_input_list(g, job, d, dir_fd=fd, only=only)
        files = templates.rendered(g, job)
        _track_rendered(fd, templates.sources(g, job) if files else {}, made)
        for dest, data, mode in files:
            _write_below(fd, dest.split("/"), data, mode)
        pset_json = pset_json_text(g, job).encode("utf-8")
        if not (made and _write_new(fd, PSET_JSON_NAME, pset_json)):
            _write_below(fd, [PSET_JSON_NAME], pset_json, 0o644)
    finally:
        os.close(fd)
    return made


def _make_output_folders(fd: int, outputs: Iterable[Any]) -> None:
    """Make the folders of the outputs in subfolders ("plots/a.png": plots/),
    as Snakemake does, reached one step at a time without following a link.
    Where a link or a file is in the way, that output's folders are left as
    they are: its command then fails to write it, and the job fails, as it
    would have without this."""
    for o in outputs:
        parts = o.path.split("/")[:-1]
        if not parts:
            continue
        at = fd
        try:
            for name in parts:
                try:
                    below = os.open(name, _DIR_FLAGS, dir_fd=at)
                except FileNotFoundError:
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(name, 0o777, dir_fd=at)
                    below = os.open(name, _DIR_FLAGS, dir_fd=at)
                if at != fd:
                    os.close(at)
                at = below
        except OSError:
            pass  # (a link: ELOOP/ENOTDIR; a file: ENOTDIR)
        finally:
            if at != fd:
                os.close(at)


def _track_rendered(fd: int, now: Mapping[str, str], made: bool) -> None:
    """Before the templates are written: remove the files rendered by an
    earlier run from templates that are gone now (RENDERED_LIST_NAME
    names them), then list the ones about to be written. Only a file sweepc
    rendered is removed, never through a link."""
    name = RENDERED_LIST_NAME
    before = {} if made else _rendered_before(fd)
    for dest in before:
        if dest not in now:
            _remove_rendered(fd, dest.split("/"))
    if now:
        data = json.dumps(now, ensure_ascii=False, indent=0).encode("utf-8")
        if not (made and _write_new(fd, name, data)):
            _write_below(fd, [name], data, 0o644)
    elif before:
        with contextlib.suppress(OSError):
            os.unlink(name, dir_fd=fd)


def _rendered_before(fd: int) -> dict[str, str]:
    """What the job folder's list of rendered templates holds ({} when there
    is none, or it is not what sweepc writes)."""
    try:
        f = os.open(RENDERED_LIST_NAME, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
    except OSError:
        return {}
    try:
        with os.fdopen(f, "rb") as r:
            data = json.loads(r.read(1 << 24))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str) and _safe_rel(k)}


def _safe_rel(path: str) -> bool:
    parts = path.split("/")
    return bool(path) and not path.startswith("/") and all(p not in ("", ".", "..") for p in parts)


def _remove_rendered(fd: int, parts: list[str]) -> None:
    """Remove the file parts[-1] below folder fd, reached without following a
    link; a folder in its place stays. The folders on the way that it leaves
    empty go too (sweepc made them for it)."""
    name = parts[0]
    if len(parts) == 1:
        try:
            if not stat.S_ISDIR(os.lstat(name, dir_fd=fd).st_mode):
                os.unlink(name, dir_fd=fd)  # a link loses the link only
        except OSError:
            pass
        return
    try:
        below = os.open(name, _DIR_FLAGS, dir_fd=fd)
    except OSError:
        return  # gone, a link or a file: nothing of sweepc's below it
    try:
        _remove_rendered(below, parts[1:])
    finally:
        os.close(below)
    with contextlib.suppress(OSError):
        os.rmdir(name, dir_fd=fd)  # only when empty


def _write_new(dir_fd: int, name: str, data: bytes | Iterable[bytes]) -> bool:
    """Write a file that is not there yet, at once (data: its bytes, or its
    pieces in order); False when something is in its place already (the
    caller then replaces it the careful way)."""
    try:
        out = os.open(name, WRITE_FLAGS | os.O_EXCL, 0o644, dir_fd=dir_fd)
    except FileExistsError:
        return False
    try:
        for piece in (data,) if isinstance(data, bytes) else data:
            view = memoryview(piece)
            while view:  # (a regular file takes a write whole; a short one is finished)
                view = view[os.write(out, view):]
    finally:
        os.close(out)
    return True


def open_job_dir_made(wd: Path, reldir: str) -> tuple[int, bool]:
    """open_job_dir(wd, reldir) and whether the job folder (the last one) was made now."""
    head, _, name = reldir.rpartition("/")
    parent = open_job_dir(wd, head) if head else os.open(wd, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return _open_below(parent, name, wd / reldir)
    finally:
        os.close(parent)


def _open_below(parent: int, name: str, path: Path | str) -> tuple[int, bool]:
    """(fd, made now) of folder `name` below `parent`, made when missing, never through a link."""
    made = False
    try:
        try:
            return os.open(name, _DIR_FLAGS, dir_fd=parent), False
        except FileNotFoundError:
            try:
                os.mkdir(name, 0o777, dir_fd=parent)
                made = True
            except FileExistsError:
                pass
            return os.open(name, _DIR_FLAGS, dir_fd=parent), made
    except OSError as e:
        raise _refusal(parent, name, Path(path), e) from None


class JobDirs:
    """The folders above job folders (<workdir>/<rule>/<hh>), opened once
    (each reached as open_job_dir does, never through a link) and kept open
    for the build: a job folder then costs one mkdir and one open, not a
    walk from the workdir. At most MAX_OPEN kept (and a quarter of the
    process's open-files limit); close() when done."""

    MAX_OPEN = 512

    def __init__(self, wd: Path) -> None:
        import resource

        self.wd = wd
        self.fds: dict[str, int] = {}
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        self.max_open = self.MAX_OPEN if soft == resource.RLIM_INFINITY else max(1, min(self.MAX_OPEN, soft // 4))

    def job(self, reldir: str) -> tuple[int, bool]:
        head, _, name = reldir.rpartition("/")
        parent = self.fds.get(head)
        if parent is None:
            if len(self.fds) >= self.max_open:
                self.close()
            parent = self.fds[head] = open_job_dir(self.wd, head)
        try:
            return _open_below(parent, name, f"{self.wd}/{reldir}")
        except FileNotFoundError:  # the folder above went away meanwhile (removed by hand): walk again
            self.fds.pop(head, None)
            os.close(parent)
            parent = self.fds[head] = open_job_dir(self.wd, head)
            return _open_below(parent, name, f"{self.wd}/{reldir}")

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()


def write_marker(dir_fd: int, reldir: str) -> None:
    """The marker that says "sweepc made this folder" (kept once written)."""
    _write_new(dir_fd, MARKER_NAME, (reldir + "\n").encode())


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


def write_input_list(g: BuildGraph, job: Job, d: Path, dir_fd: int | None = None, only: Container[int] | None = None) -> None:
    fd, mine = _dir_fd(d, dir_fd)
    try:
        tmp = INPUT_LIST_NAME + ".tmp"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=fd)  # whatever it was (a link, too): O_EXCL then makes a new file
        out = os.open(tmp, WRITE_FLAGS | os.O_EXCL, 0o644, dir_fd=fd)
        with os.fdopen(out, "w") as f:
            f.writelines(input_list_pieces(g, job, d, only))
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


# -- the end of a job: outputs and results files, the same check on every backend

# The bookkeeping columns of the results table (psweep's names, then sweepc's).
# A results key may not take one of these names, nor a parameter's.
BOOKKEEPING = (
    "_pset_hash", "_pset_seq", "_run_id", "_run_seq", "_time_utc", "_exec_host", "_runtime_s",
    "_status", "_exit_code", "_attempts", "_max_rss_mb", "_cpu_s", "_job_dir", "_log", "_error",
)
# and `_index`, the row id of a csv(..., index=) sweep
RESERVED_KEYS = frozenset((*BOOKKEEPING, "_index"))


@dataclass(frozen=True, slots=True)
class ResultsRead:
    """What a job's `results:` files hold: the flattened values read so far,
    and the first problem met (None when every file is a JSON object whose
    keys are its own). `kind` sorts the problem for the results table."""

    values: dict[str, Any]
    problem: str | None = None
    kind: str | None = None  # "missing" | "malformed" | "clash"


def flatten(obj: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested keys joined with dots: {"a": {"b": 1}} -> {"a.b": 1}."""
    return dict(flat_items(obj, prefix))


def flat_items(obj: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """flatten()'s pairs, each key as often as it comes: {"a.b": 1, "a":
    {"b": 2}} gives "a.b" twice (flatten() keeps the last)."""
    for k, v in obj.items():
        key = k if not prefix and k.__class__ is str else f"{prefix}{k}"
        c = v.__class__
        if c is not int and c is not float and c is not str and isinstance(v, Mapping):  # (an ABC check: not for scalars)
            yield from flat_items(v, f"{key}.")
        else:
            yield key, v


# the deepest nesting of objects and lists a results file may have: flattening,
# the table's formats and pandas recurse, and Python's stack is ~1000 frames
MAX_DEPTH = 100


def _too_deep(name: str) -> str:
    if name == PYTHON_RESULT_NAME:  # (what a python: rule's function returned)
        return f"the function returned a dict nested more than {MAX_DEPTH} levels deep"
    return f"results file {name} is nested more than {MAX_DEPTH} levels deep"


_JSON_KIND = {list: "a list", str: "a string", int: "a number", float: "a number", bool: "a boolean", type(None): "null"}


def read_results(d: Path | str, names: Sequence[str], params: Sequence[str],
                 known: Mapping[str, str | dict[str, Any]] | None = None) -> ResultsRead:
    """Read and check the results files `names` of the job in folder d
    (`known`: some of them as the job wrote them, not read again: their
    text, or the JSON object it holds, parsed).

    A file must hold a JSON object; after flattening, no key may be a
    parameter name (`params`), a bookkeeping column or a key of an earlier
    file. NaN and ±Infinity are values like any other (Python's json reads
    them). Called at the end of every job (local and SLURM) and by the
    results table, so a job is `done` only when its results are readable."""
    values: dict[str, Any] = {}
    owner: dict[str, str] = {}
    taken = frozenset(params)
    clash: str | None = None  # the first; the other keys are still read (the results table shows them)
    for name in names:
        try:
            text = known.get(name) if known is not None else None
            if isinstance(text, str):
                data = json.loads(text)
            elif text is not None:
                data = text
            else:
                with open(os.path.join(d, name), encoding="utf-8") as f:
                    data = json.load(f)
        except FileNotFoundError:
            return ResultsRead(values, f"results file {name} is missing", "missing")
        except (OSError, ValueError, UnicodeDecodeError) as e:
            return ResultsRead(values, f"results file {name} is not valid JSON ({_why(e)})", "malformed")
        except RecursionError:  # (json's decoder: a traceback, then every command replaying the journal crashed too)
            return ResultsRead(values, _too_deep(name), "malformed")
        if not isinstance(data, dict):
            return ResultsRead(values, f"results file {name} holds {_JSON_KIND.get(type(data), 'a JSON value')}, not a JSON object", "malformed")
        if data is not text and deeper_than(data, MAX_DEPTH):  # (parsed: a worker's reply, checked there: pyjob.check_result)
            return ResultsRead(values, _too_deep(name), "malformed")
        for key, v in flat_items(data):
            why = (
                "is the name of a parameter" if key in taken
                else "is the name of a bookkeeping column" if key in RESERVED_KEYS
                # {"c.d": 1, "c": {"d": 2}}: one column, two values (the second hid the first)
                else "comes twice (a key with a dot and a nested key make the same column)" if owner.get(key) == name
                else f"is in {owner[key]} too" if key in owner
                else None
            )
            if why is None:
                owner[key] = name
                values[key] = v
            elif clash is None:
                clash = f"results file {name}: key '{key}' {why}"
    return ResultsRead(values, clash, None if clash is None else "clash")


def _why(e: BaseException) -> str:
    if isinstance(e, OSError):
        return e.strerror or str(e)
    if isinstance(e, UnicodeDecodeError):
        return "not UTF-8 text"
    return str(e)


def check_end(g: BuildGraph, rule: str, d: Path | str,
              known: Mapping[str, str | dict[str, Any]] | None = None) -> tuple[str | None, str | None]:
    """After a job exited 0: (problem, results). problem is None when every
    output is there and the results files are sound; results is then the
    flattened values as JSON text (None for a rule without `results:`), for
    the store's history. `known`: files the job says it wrote, with their
    text or the JSON object it holds (a `python:` job's results file),
    neither looked for nor read."""
    spec = g.rule(rule)
    missing = [o.path for o in spec.outputs if (known is None or o.path not in known) and not os.path.exists(os.path.join(d, o.path))]
    if missing:
        return "exited 0 but did not write " + ", ".join(missing), None
    if not spec.results:
        return None, None
    read = read_results(d, spec.results, spec.keys, known)
    if read.problem is not None:
        return read.problem, None
    return None, values_json(read.values)


def _write_below(fd: int, parts: list[str], data: bytes | Path, mode: int) -> None:
    """Write parts[-1] below folder fd (making the folders on the way, never
    through a link): to a temporary name, then renamed. data: the bytes, or
    a file to copy."""
    if len(parts) > 1:
        try:
            below = os.open(parts[0], _DIR_FLAGS, dir_fd=fd)
        except FileNotFoundError:
            with contextlib.suppress(FileExistsError):
                os.mkdir(parts[0], 0o777, dir_fd=fd)
            below = os.open(parts[0], _DIR_FLAGS, dir_fd=fd)
        try:
            _write_below(below, parts[1:], data, mode)
        finally:
            os.close(below)
        return
    name = parts[0]
    tmp = name + ".sweepc-tmp"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp, dir_fd=fd)
    out = os.open(tmp, WRITE_FLAGS | os.O_EXCL, mode, dir_fd=fd)
    with os.fdopen(out, "wb") as f:
        if isinstance(data, Path):
            with open(data, "rb") as src:
                shutil.copyfileobj(src, f, 1 << 20)
        else:
            f.write(data)
        if mode & 0o111:  # a script stays runnable (the umask may have dropped the x bits)
            os.fchmod(f.fileno(), mode)
    os.replace(tmp, name, src_dir_fd=fd, dst_dir_fd=fd)  # replaces a link, never writes through it


_NAMED = re.compile(r"(?:sweep|parameter) '(\w+)'")


def sweep_name(rule: RuleSpec) -> str | None:
    """The sweep (or parameter) a rule is over, when it is named; None for an
    expression or a rule without `over`."""
    over = rule.over or ""
    try:
        return _SWEEP_NAMES[over]
    except KeyError:
        m = _NAMED.fullmatch(over)
        name = _SWEEP_NAMES[over] = m.group(1) if m else None
        return name


_SWEEP_NAMES: dict[str, str | None] = {}  # a rule's `over` -> sweep_name (pset_json_text asks for each job)


def _type_name(v: object) -> str:
    return _TYPE_NAMES.get(type(v)) or type(v).__name__


_TYPE_NAMES: dict[type, str] = {bool: "bool", int: "int", float: "float", str: "str"}


def pset_json_head(rule: str, sweep: str | None) -> str:
    """What begins the pset.json of each job of a rule (pset_json_text()):
    the format's version, the rule and its sweep (sweep_name()). A pool
    worker makes the rest of a python: job's (pyworker.pset_json, the same text)."""
    return f'{{\n  "sweepc": {PSET_JSON_VERSION},\n  "rule": {_encode(rule)},\n  "sweep": {_encode(sweep)},\n'


def pset_json_text(g: BuildGraph, job: Job) -> str:
    """The job's parameters with their types, its pset hash, rule and sweep, as JSON."""
    rule = g.rule(job.rule)
    # The text json.dumps(doc, indent=2, ensure_ascii=False) gives, made a
    # value at a time by the C encoder (the indenting one is pure Python: 60 us
    # a pset). allow_nan: a float parameter may be nan or inf (Python's json
    # reads them back).
    enc = _encode
    params = job.params
    if params:
        p = "{\n" + ",\n".join(f"    {enc(k)}: {enc(v)}" for k, v in params.items()) + "\n  }"
        t = "{\n" + ",\n".join(f"    {enc(k)}: \"{_type_name(v)}\"" for k, v in params.items()) + "\n  }"
    else:
        p = t = "{}"
    return pset_json_head(job.rule, sweep_name(rule)) + f'  "hash": {enc(job.hash)},\n  "seq": {enc(job.seq)},\n  "params": {p},\n  "types": {t}\n}}\n'


def remove_temp_outputs(g: BuildGraph, job: Job, names: tuple[str, ...], dry_run: bool = False) -> list[Path]:
    """Remove the given (temp) outputs of a job, never through a link; the
    paths that were there. A job folder that is not there (or not a real
    folder) has nothing to remove."""
    d = g.job_dir(job)
    if not any(os.path.lexists(d / n) for n in names):
        return []  # the common case on a no-op build: gone already, one stat each
    try:
        fd = open_job_dir(g.workdir_path, job.reldir, create=False)
    except OSError:
        return []
    gone: list[Path] = []
    try:
        for name in names:
            try:
                os.lstat(name, dir_fd=fd)
            except OSError:
                continue
            if not dry_run:
                _remove_below(fd, name.split("/"))
            gone.append(d / name)
    finally:
        os.close(fd)
    return gone
