"""Commands the spawner starts without bash, as bash would have run them.

A job's command is ``bash -e -o pipefail -c COMMAND``. Starting bash costs
about 1 ms of CPU (its libraries, its locale), which is most of what a small
job costs: ``cat 'in.txt' > 'out.txt'`` takes 1.95 ms through bash, 0.65 ms
without it. GNU make runs a command without a shell when it has no shell
syntax; this does the same for a narrower kind, where what bash would do is
known exactly:

* one simple command: words, each plain characters that bash takes
  literally, 'single-quoted' text, or "double-quoted" text without ``$``,
  backquote or backslash, or such parts run together (shlex.quote's
  ``'a'"'"'b'``, which is how sweepc quotes parameter values);
* redirections ``<``, ``>``, ``>>``, optionally with fd 0, 1 or 2 in front,
  and ``2>&1`` / ``>&2`` (fds 0-2), in any order among the words;
* its first word names a program found on PATH (or a path, with a ``/``),
  not a bash builtin or keyword, nor an assignment.

Anything else (``$``, globs, pipes, ``;``, ``&&``, braces, a tilde, a
comment, a newline, a builtin like ``echo``) goes to bash, and so does
everything this module is unsure of:

* an environment in which bash would change or act on a variable it
  imports: ``BASH*`` (its functions, ``BASH_ENV``), ``SHELLOPTS``, ``IFS``,
  ``PS4``, ``LINENO`` and the others in ``_BASH_VARIABLES``, an ``SHLVL``
  that is not a small number, a ``PWD`` that already names the job's
  folder, an ``LC_ALL`` this system has no locale for (bash warns about it);
* no PATH, or a relative directory in PATH before the program;
* a program that is not an executable file, or that the kernel does not run
  (ENOEXEC: bash would run it as a shell script; a missing interpreter;
  any error of the spawn itself);
* a redirection's file that cannot be opened (bash says why, in its own
  words), or that is not a regular file or a character device (a FIFO
  would block the spawner, where it blocks only the job under bash).

What the program sees is what bash would give it: the same argv (argv[0]
as written), the same open files in the same order, and the environment
bash would export: ``SHLVL`` one higher (the same when bash would exec the
program in its own place: a command without redirections), ``PWD`` the job's folder (bash's
getcwd), ``OLDPWD`` dropped unless it names a folder, ``_`` the program's
path. One difference of timing: the spawner looks a queued job's program up
when the job reaches it, not the moment it starts (again if it waited more
than a second): a program put on PATH in between is not seen. The other
difference: the job's process is the program itself, not a bash
waiting for it. So a program killed by a signal is reported as killed by
that signal. Under bash, a command with a redirection (for which bash forks)
exited 128 + N instead, with bash's line about it in the log; one without
(which bash execs) was reported as killed already. The job's measured peak
memory and CPU are the program's own, without bash's.

Standard library only, and only builtin modules: the spawner imports this,
and every module it loads raises every job's memory floor (spawner.py).
"""

import os
import stat
import sys

_UTF8 = sys.getfilesystemencoding().lower().replace("-", "") == "utf8"

# bash 5.2: `compgen -b` and `compgen -k`. A quoted builtin is still the
# builtin ('echo' runs bash's echo), so the word is compared unquoted.
_BASH_NAMES = frozenset(
    ". : [ alias bg bind break builtin caller cd command compgen complete compopt continue declare dirs "
    "disown echo enable eval exec exit export false fc fg getopts hash help history jobs kill let local "
    "logout mapfile popd printf pushd pwd read readarray readonly return set shift shopt source suspend "
    "test times trap true type typeset ulimit umask unalias unset wait "
    "if then else elif fi case esac for select while until do done in function time { } ! [[ ]] coproc".split()
)
# Variables bash changes, or acts on, when it finds them in its environment
# (seen with bash 5.2: `env -i NAME=x bash -c 'env > f'` differs from NAME=x).
_BASH_VARIABLES = frozenset(
    "SHELLOPTS IFS PS1 PS2 PS4 LINENO OPTERR OPTIND PPID RANDOM SRANDOM SECONDS HISTCMD EPOCHREALTIME "
    "EPOCHSECONDS GROUPS FUNCNAME DIRSTACK PIPESTATUS UID EUID POSIXLY_CORRECT ENV".split()
)
# Characters bash gives a meaning to in an unquoted word (or, for ~ # and
# =, may: at a word's start, or in the first word). Control characters too.
_SPECIAL = frozenset(" \t\n\r\v\f|&;()<>'\"`$\\*?[]{}!~#^") | frozenset(map(chr, range(32))) | {"\x7f"}
_DQ_SPECIAL = frozenset("$`\\!")
_OPEN = {
    "<": os.O_RDONLY,
    ">": os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
    ">>": os.O_WRONLY | os.O_CREAT | os.O_APPEND,
}
# A redirection: (fd, op, target); op "&" duplicates fd `target` (a digit) onto fd.
Redirect = tuple[int, str, str]


def parse(text: str) -> tuple[list[str], list[Redirect]] | None:
    """The words (quotes removed) and redirections of `text`, or None when
    it is not a command this module runs (see the module's docstring)."""
    words: list[str] = []
    redirects: list[Redirect] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i] in " \t":
            i += 1
        if i >= n:
            break
        c = text[i]
        fd = -1
        if c in "012" and i + 1 < n and text[i + 1] in "<>":
            fd = ord(c) - 48
            i += 1
            c = text[i]
        if c in "<>":
            op = c
            i += 1
            if c == ">" and i < n and text[i] == ">":
                op = ">>"
                i += 1
            if fd < 0:
                fd = 0 if op == "<" else 1
            if i < n and text[i] == "&":  # >&2, 2>&1
                if op != ">" or i + 2 > n or text[i + 1] not in "012" or (i + 2 < n and text[i + 2] not in " \t"):
                    return None
                redirects.append((fd, "&", text[i + 1]))
                i += 2
                continue
            while i < n and text[i] in " \t":
                i += 1
            target, i, _ = _word(text, i)
            if not target:  # None, or '' (bash: no such file): bash says so
                return None
            redirects.append((fd, op, target))
            continue
        word, i, eq = _word(text, i)
        if word is None or (eq and not words):  # (NAME=value first: an assignment)
            return None
        words.append(word)
    if not words or not words[0] or words[0] in _BASH_NAMES:
        return None
    return words, redirects


def _word(text: str, i: int) -> tuple[str | None, int, bool]:
    """The word starting at text[i] with its quotes removed (None when it
    holds anything but literal text), where it ends, and whether it has an
    unquoted '='."""
    parts: list[str] = []
    n = len(text)
    start = i
    eq = False
    while i < n:
        c = text[i]
        if c == "'":
            j = text.find("'", i + 1)
            if j < 0:
                return None, i, eq
            parts.append(text[i + 1 : j])
            i = j + 1
        elif c == '"':
            j = text.find('"', i + 1)
            if j < 0:
                return None, i, eq
            inner = text[i + 1 : j]
            if not _DQ_SPECIAL.isdisjoint(inner):
                return None, i, eq
            parts.append(inner)
            i = j + 1
        elif c in " \t":
            break
        elif c in _SPECIAL:
            return None, i, eq
        else:
            j = i + 1
            while j < n and text[j] not in _SPECIAL:
                j += 1
            run = text[i:j]
            eq = eq or "=" in run
            parts.append(run)
            i = j
    if i == start:
        return None, i, eq
    return "".join(parts), i, eq


# What prepare() found: the words, the redirections, and the program (None:
# a path with a "/", looked for in the job's folder when it starts).
Prepared = tuple[list[str], list[Redirect], "str | None"]


def prepare(text: str, path: str | None) -> Prepared | None:
    """Parse `text` and look its program up on `path` (the job's PATH): what
    launch() needs, or None when bash is to run it. Needs no folder: the
    spawner prepares a queued job when it arrives, not on the way from one
    job's end to the next one's start (a long PATH costs ~30 us to search)."""
    if "\x00" in text or not (_UTF8 or text.isascii()):
        return None  # (in a multibyte locale other than UTF-8, bash's bytes may not be these characters)
    parsed = parse(text)
    if parsed is None:
        return None
    words, redirects = parsed
    if "/" in words[0]:
        return words, redirects, None
    program = _find(words[0], path)
    if program is None:
        return None
    return words, redirects, program


def start(text: str, env: dict[str, str], actions: list[tuple[int, int, int]], **spawn: object) -> int | None:
    """Start `text` without bash, in the current directory: launch(prepare())."""
    return launch(prepare(text, env.get("PATH")), env, actions, **spawn)


def launch(prepared: Prepared | None, env: dict[str, str], actions: list[tuple[int, int, int]], **spawn: object) -> int | None:
    """Start what prepare() found, in the current directory (the job's
    folder), with `actions` (the job's stdin, stdout and stderr) before its
    own redirections, and `spawn` (posix_spawn's keywords); its pid, or None
    when bash is to run it (nothing of the job was done, except opening its
    redirections' files, which bash opens again in the same order: the same
    end)."""
    if prepared is None:
        return None
    words, redirects, program = prepared
    if program is None:
        if _runnable(words[0]) is not True:
            return None
        program = words[0]
    opened: list[int] = []
    try:
        child = _environment(env, program, bool(redirects))
        if child is None:
            return None
        mine = list(actions)
        for fd, op, target in redirects:
            if op == "&":
                mine.append((os.POSIX_SPAWN_DUP2, int(target), fd))
                continue
            f = os.open(target, _OPEN[op] | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK, 0o666)
            opened.append(f)
            mode = os.fstat(f).st_mode
            if not (stat.S_ISREG(mode) or (stat.S_ISCHR(mode) and not os.isatty(f))):
                return None
            os.set_blocking(f, True)  # (O_NONBLOCK only so that opening a FIFO could not hang us)
            mine.append((os.POSIX_SPAWN_DUP2, f, fd))
        return os.posix_spawn(program, words, child, file_actions=mine, **spawn)  # type: ignore[arg-type]
    except OSError:  # ENOEXEC (bash runs it as a script), a missing interpreter, E2BIG, a folder gone, ...
        return None
    finally:
        for f in opened:
            os.close(f)


def _find(name: str, path: str | None) -> str | None:
    """The program bash would run for `name`, as bash names it in `_`; None
    when bash would not find one, or when this is not sure which."""
    if "/" in name:
        return name if _runnable(name) is True else None
    if not path:
        return None
    for folder in path.split(":"):
        if not folder.startswith("/"):
            return None  # "" or "." (the job's folder), or relative: bash's way
        full = folder + name if folder.endswith("/") else folder + "/" + name
        found = _runnable(full)
        if found is None:
            continue
        return full if found else None
    return None


def _runnable(path: str) -> bool | None:
    """True: an executable regular file; None: nothing bash would take
    (missing, a folder, not executable); False: something else bash would
    try to run (an executable FIFO, say)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if stat.S_ISDIR(mode) or not os.access(path, os.X_OK):
        return None
    return stat.S_ISREG(mode)


_LOCALES: dict[str, bool] = {}


def _environment(env: dict[str, str], program: str, forks: bool) -> dict[str, str] | None:
    """The environment bash would give `program` (run from the current
    directory), or None when bash would do more with `env` than this knows.
    forks: bash would fork for the program (a command with redirections),
    not exec it in its own place."""
    for name in env:
        if name[:4] == "BASH" or name in _BASH_VARIABLES:
            return None
    child = dict(env)
    level = env.get("SHLVL")
    # bash counts SHLVL up by one when it starts (absent: from 0); when it
    # execs the command in its own place it counts it down again first
    if level is None:
        child["SHLVL"] = "1" if forks else "0"
    elif level.isdigit() and level.isascii() and len(level) <= 3 and int(level) < 998:
        child["SHLVL"] = str(int(level) + 1) if forks else str(int(level))
    else:
        return None  # bash's rules for odd or high levels (it warns at 1000)
    here = os.getcwd()
    pwd = env.get("PWD")
    if pwd and pwd[0] == "/":
        try:
            if os.path.samestat(os.stat(pwd), os.stat(".")):
                return None  # bash keeps PWD's spelling (canonicalized)
        except OSError:
            pass
    child["PWD"] = here
    old = env.get("OLDPWD")
    if old is not None and not (old and os.path.isdir(old)):
        del child["OLDPWD"]  # bash keeps OLDPWD only if it names a folder
    lc_all = env.get("LC_ALL")
    if lc_all:
        known = _LOCALES.get(lc_all)
        if known is None:
            known = _LOCALES[lc_all] = _locale_exists(lc_all)
        if not known:
            return None  # bash warns that it cannot set it
    child["_"] = program
    return child


def _locale_exists(name: str) -> bool:
    import _locale

    old = _locale.setlocale(_locale.LC_ALL, None)
    try:
        _locale.setlocale(_locale.LC_ALL, name)
        return True
    except _locale.Error:  # type: ignore[attr-defined]  # (typeshed knows it as locale.Error only)
        return False
    finally:
        _locale.setlocale(_locale.LC_ALL, old)
