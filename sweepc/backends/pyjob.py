"""Calling a `python:` rule's function for one pset: the code that runs in
the job's process, on any backend. Standard library only, and no other
sweepc module: a worker (or a node) needs Python and the user's module.

Three ways in:

* ``python3 -m sweepc.backends.pyjob FILE.py FUNC PARAMS_JSON RULE HASH``:
  one job, in the job folder, stdout/stderr already the log (the job's
  ``command``, as a shell backend runs it; one Python start-up per pset).
* a worker of the local backend's pool (backends/local/pyworker.py, which
  uses ``load``, ``check_result``, ``write_result``, ``report_failure``,
  ``_Peak`` and ``_die_with_parent`` from here): it imports each module once
  and calls the function for task after task.
* ``python3 -m sweepc.backends.pyjob --check FILE.py FUNC``: import the
  module and find the function, before a build starts; exit 1 with the
  traceback's last frames on stderr when that fails.

The function gets the job's parameters plus ``_pset_hash``, ``_job_dir``
and ``_rule`` (psweep's bookkeeping fields), and ``_inputs`` when the rule
has inputs besides its module (the input list's lines), runs with the job folder as its
working directory, and returns a dict or None. The dict is written to
sweepc-result.json, the rule's implicit results file. A traceback goes to
the log, and its last line (``ValueError: ...``) is the log's last line.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import os
import sys
import traceback
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

RESULT_NAME = "sweepc-result.json"  # = sweepc.lang.graph.PYTHON_RESULT_NAME
MAX_DEPTH = 100  # = sweepc.backends.jobdir.MAX_DEPTH: the deepest results the table reads
INPUT_LIST_NAME = "sweepc-inputs.txt"  # = sweepc.lang.graph.INPUT_LIST_NAME
BOOKKEEPING_IN = ("_pset_hash", "_job_dir", "_rule", "_inputs")
# Columns of the results table that are sweepc's (sweepc.results.table.BOOKKEEPING)
RESERVED_KEYS = frozenset({
    "_pset_hash", "_pset_seq", "_run_id", "_run_seq", "_time_utc", "_exec_host", "_runtime_s",
    "_status", "_exit_code", "_attempts", "_max_rss_mb", "_cpu_s", "_job_dir", "_log", "_index", "_rule", "_error",
})


class JobError(Exception):
    """The function ran but its job failed (a bad return value): the message says why."""


_modules: dict[str, ModuleType] = {}


class _FreshSource(importlib.machinery.SourceFileLoader):
    """Compiles the module from its text at every import, never from a
    cached .pyc. Python takes a .pyc as up to date when the source's mtime
    (in whole seconds) and size are those it was made from: an edit within
    the same second that keeps the size (K = 3 -> K = 5), or a checkout or
    copy that sets an older mtime, then runs the old code. sweepc reruns the
    jobs of an edited module (its text is in their fingerprint); they must
    run the text that made them rerun."""

    def get_code(self, fullname: str) -> Any:
        path = self.get_filename(fullname)
        return self.source_to_code(self.get_data(path), path)


_FRESH_ROOTS: list[str] = []  # folders whose .py files load through _FreshSource
_LOADERS = (
    (importlib.machinery.ExtensionFileLoader, importlib.machinery.EXTENSION_SUFFIXES),
    (_FreshSource, importlib.machinery.SOURCE_SUFFIXES),
    (importlib.machinery.SourcelessFileLoader, importlib.machinery.BYTECODE_SUFFIXES),
)


def _fresh_finder(entry: str) -> importlib.machinery.FileFinder:
    """sys.path_hooks: the finder of a folder below a module sweepc loaded
    (its siblings and their packages: the user's code, which a python: rule
    lists as source inputs), except installed packages, which keep their
    .pyc (compiling a large library at every worker start would cost seconds)."""
    path = os.path.abspath(entry or ".")
    installed = any(part in ("site-packages", "dist-packages") for part in path.split(os.sep))
    if not installed and any(path == r or path.startswith(r + os.sep) for r in _FRESH_ROOTS):
        return importlib.machinery.FileFinder(path, *_LOADERS)
    raise ImportError(f"not one of sweepc's source folders: {path}")


def _fresh_imports_below(folder: str) -> None:
    """Imports from `folder` (and below) compile each module from its text."""
    if folder in _FRESH_ROOTS:
        return
    _FRESH_ROOTS.append(folder)
    if _fresh_finder not in sys.path_hooks:
        sys.path_hooks.insert(0, _fresh_finder)
    for entry in list(sys.path_importer_cache):  # finders made before: made again through the hook
        path = os.path.abspath(entry or ".")
        if path == folder or path.startswith(folder + os.sep):
            del sys.path_importer_cache[entry]


# The folder whose modules `import` finds now (the last module loaded's), and
# the modules each folder's code imported from below it. Two python: rules in
# a/ and b/ whose modules both `import util` ran b's rule with a/util.py when
# one worker served both: a module in sys.modules is found by name.
_active: list[str] = [""]
_owned: dict[str, dict[str, ModuleType]] = {}
_SHARED = tuple({os.path.join(p, "") for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)})


def _enter(folder: str) -> None:
    """Make the modules of `folder`'s code the ones `import` finds by name:
    those another folder's code imported from below that folder leave
    sys.modules (each keeps its own, bound when it was imported), this
    folder's come back, and the folder goes first on sys.path."""
    old = _active[0]
    if old:
        owned = _owned.setdefault(old, {})
        below = os.path.join(old, "")
        for name, mod in list(sys.modules.items()):
            f = getattr(mod, "__file__", None)
            if (isinstance(f, str) and f.startswith(below) and not f.startswith(_SHARED) and not name.startswith("sweepc")
                    and "site-packages" not in f and "dist-packages" not in f):
                owned[name] = mod  # (installed packages and sweepc's own are everyone's: never imported twice)
                del sys.modules[name]
    sys.modules.update(_owned.get(folder, {}))
    if folder in sys.path:
        sys.path.remove(folder)
    sys.path.insert(0, folder)
    _active[0] = folder


def load(path: str, func: str) -> Callable[[dict[str, Any]], Any]:
    """The function `func` of the module at `path`, imported once per process.

    The module's folder goes first on sys.path, so it imports its siblings
    as it would when run from there; when a process runs modules of several
    folders, each finds its own siblings (_enter). The module, and the
    modules it imports from its folder, are compiled from their text, never
    from a .pyc that may be stale (_FreshSource)."""
    mod = _modules.get(path)  # (keyed by absolute paths: a worker's are, and need no abspath a call)
    if mod is None:
        path = os.path.abspath(path)
        mod = _modules.get(path)
    folder = os.path.dirname(path)
    if folder != _active[0]:
        _enter(folder)
    if mod is None:
        name = os.path.splitext(os.path.basename(path))[0]
        _fresh_imports_below(folder)
        spec = importlib.util.spec_from_file_location(name, path, loader=_FreshSource(name, path))
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot import {path}")
        mod = importlib.util.module_from_spec(spec)
        sys.modules.setdefault(name, mod)  # pickle (multiprocessing inside the function) finds it
        spec.loader.exec_module(mod)
        _modules[path] = mod
    if not hasattr(mod, func):
        raise AttributeError(f"{os.path.basename(path)} has no function '{func}'")
    fn = getattr(mod, func)
    if not callable(fn):  # run = 3: not "has no function 'run'", which it has, by name
        what = "None" if fn is None else _a(type(fn).__name__)
        raise TypeError(f"{func} in {os.path.basename(path)} is {what}, not a function")
    return fn  # type: ignore[no-any-return]


def _a(noun: str) -> str:
    return ("an " if noun[:1] in "aeiouAEIOU" else "a ") + noun


def _json_default(v: Any) -> Any:
    # numpy scalars and arrays, without importing numpy
    if hasattr(v, "item") and getattr(v, "shape", None) == ():
        return v.item()
    if hasattr(v, "tolist"):
        return v.tolist()
    raise TypeError(f"{type(v).__name__} is not JSON serialisable")


def check_result(result: Any, params: Mapping[str, Any]) -> dict[str, Any]:
    """The returned value as the results dict; JobError naming what is wrong."""
    if result is None:
        return {}
    if not isinstance(result, dict):
        raise JobError(f"the function returned a {type(result).__name__}, not a dict or None")
    for k in result:
        if not isinstance(k, str):
            raise JobError(f"the function returned a dict with key {k!r}, which is not a string")
        if k in params:
            raise JobError(f"the function returned key '{k}', which is a parameter name; rename the result")
        if k in RESERVED_KEYS:
            raise JobError(f"the function returned key '{k}', which is a column sweepc fills itself; rename the result")
    if deeper_than(result, MAX_DEPTH):
        raise JobError(f"the function returned a dict nested more than {MAX_DEPTH} levels deep")
    return result


def deeper_than(data: Any, limit: int) -> bool:
    """Whether dicts and lists in data nest more than limit levels (no recursion)."""
    level: list[Any] = [data]
    for _ in range(limit):
        level = [v for x in level for v in (x.values() if isinstance(x, dict) else x) if isinstance(v, (dict, list))]
        if not level:
            return False
    return True


# json.dumps(v, default=_json_default, allow_nan=True), without making an encoder a call
_ENCODE = json.JSONEncoder(default=_json_default, allow_nan=True).encode


def write_result(result: dict[str, Any], dir_fd: int) -> str:
    """Write the results file in the job folder, open as `dir_fd`, never in
    the current folder: the function may have changed that (os.chdir), and
    the file then went there, outside the project (to / for os.chdir("/"));
    its text (one line: JSON, ASCII only)."""
    try:
        text = _ENCODE(result)
    except RecursionError:
        raise JobError(f"the function returned a dict nested more than {MAX_DEPTH} levels deep") from None
    except (TypeError, ValueError) as ex:
        bad = []
        for k, v in result.items():
            try:
                json.dumps(v, default=_json_default)
            except (TypeError, ValueError):
                bad.append(k)
        raise JobError(f"the function returned key '{bad[0] if bad else '?'}' with a value that is not JSON: {ex}") from None
    # Not via a temporary file and a rename (150 us more a task here): a task
    # that dies halfway is not recorded done, and its outputs are removed
    # before it runs again.
    fd = os.open(RESULT_NAME, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o666, dir_fd=dir_fd)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    return text


def inputs_here() -> list[str]:
    """The job's inputs, from the input list sweepc (or the SLURM runner, for
    a done() gather) wrote in the current folder: one path a line, relative
    to the job folder, as a shell rule's {input} names them."""
    with open(INPUT_LIST_NAME, encoding="utf-8", newline="") as f:
        return f.read().splitlines()


def call(fn: Callable[[dict[str, Any]], Any], params: Mapping[str, Any], rule: str, pset_hash: str, job_dir: str,
         inputs: bool = False) -> None:
    """Call fn for one pset in the current folder (the job's) and write its
    result there, wherever fn may have gone since; with `inputs`, the pset
    has `_inputs` (inputs_here)."""
    pset = dict(params)
    pset["_pset_hash"] = pset_hash
    pset["_job_dir"] = job_dir
    pset["_rule"] = rule
    if inputs:
        pset["_inputs"] = inputs_here()
    here = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        write_result(check_result(fn(pset), params), here)
    finally:
        os.close(here)


def error_line(ex: BaseException) -> str:
    """psweep's _exc_txt, shortened: the exception's last line."""
    lines = traceback.format_exception_only(type(ex), ex)
    text = (lines[-1] if lines else type(ex).__name__).strip()
    return text.splitlines()[-1] if text else type(ex).__name__


def report_failure(ex: BaseException) -> str:
    """Print the traceback (or, for a JobError, its message) to stderr, so
    that the log's last line is the short error, and return that line."""
    if isinstance(ex, JobError):
        line = str(ex)
        print(line, file=sys.stderr)
    else:
        line = error_line(ex)
        tb = traceback.TracebackException.from_exception(ex)
        tb.stack = traceback.StackSummary.from_list([f for f in tb.stack if not f.filename.endswith(("pyjob.py", "pyrunner.py"))])
        sys.stderr.write("".join(tb.format()))
    sys.stderr.flush()
    return line


def short_traceback(ex: BaseException, frames: int = 4) -> str:
    """The traceback's last frames, for an import that failed before a build."""
    tb = traceback.TracebackException.from_exception(ex)
    stack = tb.stack
    # drop importlib's own frames
    keep = [f for f in stack if "importlib" not in f.filename and not f.filename.endswith(("pyjob.py", "pyworker.py"))]
    tb.stack = traceback.StackSummary.from_list(keep[-frames:])
    return "".join(tb.format()).rstrip()


# -- one job, as a shell command -------------------------------------------------


def _one(argv: list[str]) -> int:
    path, func, params_json, rule, pset_hash = argv
    try:
        params = json.loads(params_json)
        fn = load(path, func)
        call(fn, params, rule, pset_hash, os.getcwd(), inputs=os.path.isfile(INPUT_LIST_NAME))
    except BaseException as ex:  # noqa: BLE001 - every failure is the job's
        report_failure(ex)
        return 130 if isinstance(ex, KeyboardInterrupt) else 1
    return 0


def _check(argv: list[str]) -> int:
    path, func = argv
    try:
        load(path, func)
    except BaseException as ex:  # noqa: BLE001
        sys.stderr.write(short_traceback(ex) + "\n")
        return 1
    return 0


# -- the worker of the local pool ------------------------------------------------


def _die_with_parent() -> None:
    """The worker dies with the build, even when sweepc is SIGKILLed (Linux)."""
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != int(os.environ.get("SWEEPC_POOL_PID", os.getppid())):
        os._exit(1)  # the parent is already gone


class _Peak:
    """Per-task peak RSS of this process: writing "5" to /proc/self/clear_refs
    resets VmHWM to the current RSS (Linux >= 4.0); VmHWM after the task is
    then its peak. Both files stay open (re-opening them cost ~30 us a task).
    Elsewhere: ru_maxrss, the peak since the worker started."""

    def __init__(self) -> None:
        try:
            self.clear: int | None = os.open("/proc/self/clear_refs", os.O_WRONLY)
            self.status: int | None = os.open("/proc/self/status", os.O_RDONLY)
        except OSError:
            self.clear = self.status = None

    def reset(self) -> bool:
        if self.clear is None:
            return False
        try:
            os.write(self.clear, b"5")
            return True
        except OSError:
            return False

    def kb(self, was_reset: bool) -> int:
        if was_reset and self.status is not None:
            try:
                b = os.pread(self.status, 8192, 0)
                i = b.index(b"VmHWM:")
                return int(b[i + 6 : b.index(b"kB", i)])
            except (OSError, ValueError):
                pass
        import resource

        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] == "--check":
        return _check(args[1:])
    return _one(args)


if __name__ == "__main__":
    sys.exit(main())
