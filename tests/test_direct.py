"""Commands the spawner starts without bash (sweepc/backends/local/direct.py).

The differential tests run each command twice, in two fresh folders holding
the same files: once as sweepc ran every command before (bash -e -o
pipefail -c), once through direct.start. Every file, the exit status and
what the program saw of its environment must be the same.
"""

from __future__ import annotations

import os
import shutil
import stat
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sweepc.backends.local import direct

BASH = shutil.which("bash")
assert BASH is not None

SCRIPT = "#!/bin/sh\necho script \"$@\"\n"
NO_SHEBANG = "echo no-shebang \"$@\"\n"


def _fill(d: Path) -> None:
    (d / "in.txt").write_text("in\n")
    (d / "in x.txt").write_text("spaced\n")
    (d / "sub").mkdir()
    s = d / "script.sh"
    s.write_text(SCRIPT)
    s.chmod(0o755)
    n = d / "noshebang"
    n.write_text(NO_SHEBANG)
    n.chmod(0o755)


def _snapshot(d: Path, env_order: bool = False) -> dict[str, Any]:
    """Every file under d with its text and mode. env_order: sort the lines
    of every file (`env` prints the variables in bash's order or ours)."""
    out: dict[str, Any] = {}
    for p in sorted(d.rglob("*")):
        rel = str(p.relative_to(d))
        if p.is_dir():
            out[rel] = "<dir>"
        else:
            text = p.read_text(errors="replace")
            if p.name == "env.txt" or env_order:  # bash passes the variables in another order
                text = "".join(sorted(text.splitlines(keepends=True)))
            out[rel] = (text.replace(str(d), "<D>"), stat.S_IMODE(p.stat().st_mode))
    return out


def _run(d: Path, command: str, env: dict[str, str], how: str) -> tuple[int, dict[str, Any]]:
    """Run `command` in `d` with stdout and stderr to d/log; (wait status, files)."""
    log = os.open(d / "log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    null = os.open(os.devnull, os.O_RDONLY)
    actions = [(os.POSIX_SPAWN_DUP2, null, 0), (os.POSIX_SPAWN_DUP2, log, 1), (os.POSIX_SPAWN_DUP2, log, 2)]
    here = os.getcwd()
    os.chdir(d)
    try:
        if how == "direct":
            pid = direct.start(command, env, actions, setsid=True)
            if pid is None:
                raise AssertionError(f"direct.start did not run {command!r}")
        else:
            pid = os.posix_spawn(BASH, ["bash", "-e", "-o", "pipefail", "-c", command], env, file_actions=actions, setsid=True)
    finally:
        os.chdir(here)
        os.close(log)
        os.close(null)
    _, status = os.waitpid(pid, 0)
    return status, _snapshot(d, env_order=command.lstrip(" \t").startswith("env"))


def _both(tmp_path: Path, command: str, env: dict[str, str] | None = None) -> tuple[tuple[int, dict[str, Any]], tuple[int, dict[str, Any]]]:
    env = dict(os.environ if env is None else env)
    a, b = tmp_path / "bash", tmp_path / "direct"
    # the same path length, so that PWD and any path the program prints compare after <D>
    for d in (a, b):
        d.mkdir()
        _fill(d)
    return _run(a, command, env, "bash"), _run(b, command, env, "direct")


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not (k.startswith("BASH") or k in direct._BASH_VARIABLES)}
    env.pop("SHLVL", None)
    env.pop("OLDPWD", None)
    env.update(extra)
    return env


# -- what is parsed, and what is left to bash


@pytest.mark.parametrize(
    "text, expected",
    [
        ("cat 'x' > 'y'", (["cat", "x"], [(1, ">", "y")])),
        ("cat < in.txt >> out", (["cat"], [(0, "<", "in.txt"), (1, ">>", "out")])),
        ("2>err ./prog --a=1 -b,c:d@e%f+g", (["./prog", "--a=1", "-b,c:d@e%f+g"], [(2, ">", "err")])),
        ("prog 'it'\"'\"'s' \"a b\" ''", (["prog", "it's", "a b", ""], [])),
        ("prog >out 2>&1", (["prog"], [(1, ">", "out"), (2, "&", "1")])),
        ("prog >&2", (["prog"], [(1, "&", "2")])),
        ("prog 'a $HOME `x` \\ * ; | &'", (["prog", "a $HOME `x` \\ * ; | &"], [])),
        ("prog \"{x}(y)'z'\"", (["prog", "{x}(y)'z'"], [])),
        ("prog\t2 > out", (["prog", "2"], [(1, ">", "out")])),
    ],
)
def test_parse_takes_literal_simple_commands(text: str, expected: object) -> None:
    assert direct.parse(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "echo hi > out",  # a builtin
        "'echo' hi",  # still the builtin, quoted
        "[ -f x ]",
        "if true; then cat x; fi",
        "A=1 prog",  # an assignment
        "prog $HOME",
        "prog \"$HOME\"",
        "prog \"a\\b\"",
        "prog `x`",
        "prog *.txt",
        "prog x?",
        "prog [ab]",
        "prog {a,b}",
        "prog ~",
        "prog ~/x",
        "prog # comment",
        "prog x; prog y",
        "prog x && prog y",
        "prog x | prog y",
        "prog &",
        "prog x>y",
        "prog >|y",
        "prog <>y",
        "prog <<EOF",
        "prog <<<x",
        "prog &>y",
        "prog >&y",
        "prog 3>y",
        "prog 2>&3",
        "prog > ''",
        "prog >",
        "prog 'unclosed",
        "prog \"unclosed",
        "prog\nprog",
        "prog !x",
        "(prog)",
        "",
        "   ",
        "'' x",
    ],
)
def test_parse_leaves_everything_else_to_bash(text: str) -> None:
    assert direct.parse(text) is None


# -- the same end as bash


CASES = [
    "env > env.txt",
    "cat 'in x.txt' > out.txt",
    "cat < in.txt > out.txt",
    "cat in.txt >> in.txt",
    "cat in.txt nothere > out.txt 2>&1",
    "cat nothere 2> err.txt > out.txt",
    "cat nothere > out.txt",
    "./script.sh a 'b c' > out.txt",
    "sub/../script.sh x > out.txt",
    "ls sub > out.txt",
    f"{sys.executable} -c 'import sys, os; print(sys.argv[1:], os.getcwd())' a 'it'\"'\"'s' \"c d\" '' > out.txt",
    "/bin/true",
    "/bin/false x",
    "sh -c 'exit 3'",
    "sh -c 'echo err >&2; echo out' > o.txt 2> e.txt",
    "sh -c 'echo both' >&2",
]


@pytest.mark.parametrize("command", CASES)
def test_direct_ends_as_bash_ends(tmp_path: Path, command: str) -> None:
    (sa, fa), (sb, fb) = _both(tmp_path, command)
    assert os.waitstatus_to_exitcode(sb) == os.waitstatus_to_exitcode(sa)
    assert fb == fa


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"SHLVL": "4", "OLDPWD": "/"},
        {"SHLVL": "0", "OLDPWD": "/no/such/folder"},
        {"OLDPWD": "", "PWD": "/"},
        {"OLDPWD": "sub", "PWD": "relative"},
        {"A-B": "odd name", "EMPTY": ""},
        {"LC_ALL": "C"},
    ],
)
def test_program_sees_the_environment_bash_gives_it(tmp_path: Path, extra: dict[str, str]) -> None:
    (sa, fa), (sb, fb) = _both(tmp_path, "env > env.txt", _clean_env(**extra))
    assert sa == sb == 0
    assert fb["env.txt"] == fa["env.txt"]
    assert "SHLVL=" in fb["env.txt"][0]


# -- what direct.start leaves to bash, having done nothing


def _start(d: Path, command: str, env: dict[str, str]) -> int | None:
    here = os.getcwd()
    os.chdir(d)
    try:
        pid = direct.start(command, env, [])
    finally:
        os.chdir(here)
    if pid is not None:
        os.waitpid(pid, 0)
    return pid


@pytest.mark.parametrize(
    "extra",
    [
        {"BASH_FUNC_cat%%": "() { echo not cat; }"},
        {"BASH_ENV": "/etc/profile"},
        {"SHELLOPTS": "xtrace"},
        {"IFS": ":"},
        {"PS4": "+ "},
        {"SHLVL": "999"},
        {"SHLVL": "two"},
        {"SHLVL": "-1"},
        {"LC_ALL": "xx_NO.SUCH-LOCALE"},
        {"PATH": ""},
        {"PATH": ".:/usr/bin:/bin"},
    ],
)
def test_environments_bash_acts_on_go_to_bash(tmp_path: Path, extra: dict[str, str]) -> None:
    env = _clean_env(**extra)
    if "PATH" not in extra:
        assert _start(tmp_path, "cat /dev/null", _clean_env()) is not None  # the same without `extra`
    assert _start(tmp_path, "cat /dev/null", env) is None


def test_a_nul_character_goes_to_bash(tmp_path: Path) -> None:
    assert _start(tmp_path, "cat 'a\x00b'", _clean_env()) is None  # (posix_spawn would raise ValueError)


def test_path_unset_goes_to_bash(tmp_path: Path) -> None:
    env = _clean_env()
    del env["PATH"]
    assert _start(tmp_path, "cat /dev/null", env) is None


def test_pwd_naming_the_folder_goes_to_bash(tmp_path: Path) -> None:
    assert _start(tmp_path, "cat /dev/null", _clean_env(PWD=str(tmp_path) + "/.")) is None


def test_programs_bash_would_not_exec_go_to_bash(tmp_path: Path) -> None:
    _fill(tmp_path)
    env = _clean_env()
    plain = tmp_path / "plain"
    plain.write_text("x")
    assert _start(tmp_path, "no-such-program-here x", env) is None
    assert _start(tmp_path, "./plain", env) is None  # not executable
    assert _start(tmp_path, "./sub", env) is None  # a folder
    assert _start(tmp_path, "./noshebang a", env) is None  # ENOEXEC: bash runs it as a script
    bad = tmp_path / "badinterp"
    bad.write_text("#!/no/such/interpreter\n")
    bad.chmod(0o755)
    assert _start(tmp_path, "./badinterp", env) is None


def test_redirections_bash_must_report_go_to_bash(tmp_path: Path) -> None:
    env = _clean_env()
    assert _start(tmp_path, "cat /dev/null > no/such/folder/out", env) is None
    assert _start(tmp_path, "cat < missing.txt", env) is None
    os.mkfifo(tmp_path / "fifo")
    t = time.monotonic()
    assert _start(tmp_path, "cat /dev/null > fifo", env) is None  # no reader: would block
    assert _start(tmp_path, "cat < fifo", env) is None
    assert time.monotonic() - t < 5
    # what bash then says, in its own words, is what the job's log gets
    r = subprocess.run([BASH, "-e", "-o", "pipefail", "-c", "cat /dev/null > no/such/folder/out"], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 1 and "no/such/folder/out: No such file or directory" in r.stderr


def test_first_executable_on_path_wins_as_in_bash(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "tool").write_text("#!/bin/sh\necho a\n")  # not executable: bash skips it
    (b / "tool").write_text("#!/bin/sh\necho b\n")
    (b / "tool").chmod(0o755)
    (a / "tool2").mkdir()  # a folder: skipped
    assert direct._find("tool", f"{a}:{b}") == f"{b}/tool"
    assert direct._find("tool", f"{a}/:{b}/") == f"{b}/tool"
    assert direct._find("tool2", f"{a}") is None
    env = _clean_env(PATH=f"{a}:{b}:{os.environ['PATH']}")
    (sa, fa), (sb, fb) = _both(tmp_path / "x" if (tmp_path / "x").mkdir() is None else tmp_path, "tool > out.txt", env)
    assert sa == sb == 0 and fb["out.txt"][0] == fa["out.txt"][0] == "b\n"


# -- through a build


WHO = "import os, sys\nprint(open(f'/proc/{os.getppid()}/comm').read().strip(), sys.argv[1])\n"


def test_build_runs_simple_commands_without_bash(local_project: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    p = local_project
    who = f"{sys.executable} {p.root}/who.py"
    p.write(f"""
        param a = [1, 2]
        rule who over a:
            output: "who.txt"
            shell: "{who} {{a}} > {{output}}"
        rule shell over a:
            output: "shell.txt"
            shell: "{who} {{a}} > x.txt && mv x.txt {{output}}"
    """, **{"who.py": WHO})
    r = p.sweepc("build", "-j", "2")
    assert r.code == 0, r.out + r.err
    assert p.out("who[a=1]").read_text() == "python3 1\n"  # its parent: the spawner (python3 -S -I)
    assert p.out("shell[a=2]").read_text() == "bash 2\n"  # shell syntax: bash, as always
    monkeypatch.setenv("SWEEPC_SHELL_ALWAYS", "1")
    r = p.sweepc("build", "--force", "who", "-j", "2")
    assert r.code == 0, r.out + r.err
    assert p.out("who[a=1]").read_text() == "bash 1\n"


def test_a_program_killed_by_a_signal_is_reported_so(local_project: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    p = local_project.write(f"""
        param a = [1]
        rule die over a:
            output: "out.txt"
            shell: "{sys.executable} -c 'import os; os.kill(os.getpid(), 9)' > {{output}}"
    """)
    r = p.sweepc("build")
    assert r.code == 1 and "FAILED die[a=1]: killed by signal 9\n" in r.out
    assert p.rows()["die[a=1]"]["exit_code"] == 137
    # bash forks for a command with a redirection, exits 128 + 9, and says why in the log
    # (without one, bash execs the program itself, and the build says "killed by signal 9" too)
    monkeypatch.setenv("SWEEPC_SHELL_ALWAYS", "1")
    r = p.sweepc("build")
    assert r.code == 1 and "FAILED die[a=1]: exit 137\n" in r.out
    assert "Killed" in (p.dir("die[a=1]") / "sweepc.log").read_text()
    assert p.rows()["die[a=1]"]["exit_code"] == 137


def test_builds_of_direct_jobs_killed_at_random_leave_nothing_wrong_that_looks_up_to_date(tmp_path: Path) -> None:
    """Shell rules only (so the spawner queues them), both started without
    bash; SIGKILL at random moments; every job the planner would not run
    must hold the right bytes, and the last build must finish and leave
    nothing to do."""
    import random

    import sweepc

    rng = random.Random(20261201)
    root = tmp_path / "p"
    root.mkdir()
    blob = "".join(f"line {k} {'x' * 100}\n" for k in range(1000))  # ~100 kB
    (root / "src.txt").write_text(blob)
    (root / "sweepfile").write_text(textwrap.dedent("""\
        param a = range(0, 1000)
        rule copy over a:
            input: "src.txt"
            output: "c.txt"
            shell: "cp {input} {output}"
        rule again over a:
            input: copy
            output: "d.txt"
            shell: "cat {input} {input} > {output}"
    """))
    want = {"copy": blob, "again": blob + blob}
    stopped = 0
    for _ in range(6):
        proc = subprocess.Popen(["sweepc", "build", "-j", "2", *(["--force", "copy"] if rng.random() < 0.3 else [])],
                                cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
        time.sleep(rng.uniform(0.2, 2.0))
        if proc.poll() is None:
            stopped += 1
            os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate(timeout=30)
        assert "Traceback" not in err
        s = sweepc.load(root / "sweepfile")
        plan = s.plan()
        planned = set(plan.run)
        g = s.graph
        for i, job in enumerate(g.jobs):
            if i in planned:
                continue
            out = g.output_paths(job)[0]
            assert out.read_text() == want[job.rule], f"{job.label} looks up to date with wrong content"
    assert stopped >= 3  # (most rounds caught a build running)
    r = subprocess.run(["sweepc", "build", "-j", "2"], cwd=root, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run(["sweepc", "build"], cwd=root, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "nothing to do" in r.stdout, r.stdout + r.stderr
    g = sweepc.load(root / "sweepfile").graph
    for job in g.jobs:
        assert g.output_paths(job)[0].read_text() == want[job.rule]


# -- random commands, both ways

_PROGRAMS = ["cat", "env", "wc", "ls", "/usr/bin/printf", "./script.sh", "sub/../script.sh", "./noshebang",
             "printf", "echo", "nosuchprog", "'cat'", "c'a't", "A=1"]
_PLAIN = ["in.txt", "'in x.txt'", "out.txt", "sub", "-l", "--a=1", "a=b", "x", "''", '""', "'it'\"'\"'s'",
          "'$HOME'", "'*'", '"a b"', '"{x}(y)"', "'[%s]\\n'", "%s", "é", "-", "--", "@x", "%y", "+z", ":w", ",v"]
_SPECIAL_PIECES = ['"$HOME"', "*", "~", "{a,b}", "#c", "!", ";", "&&", "|", "&", "\\x", "`x`", "$x", "(x)", "[x]",
                   "?", "x]", "^x", '"a\\"b"']
_REDIRECTS = ["> out.txt", ">out.txt", ">> in.txt", "< in.txt", "2> err.txt", "2>&1", ">&2", "1>o2.txt",
              "0<in.txt", "> sub", "< sub", "> nodir/x", "3> x", "<> x", "> ''", ">|x", "&> x", "<<x", "2>>err.txt"]


@settings(max_examples=int(os.environ.get("SWEEPC_DIRECT_EXAMPLES", "150")), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(words=st.tuples(st.sampled_from(_PROGRAMS), st.lists(st.sampled_from(_PLAIN * 6 + _SPECIAL_PIECES), max_size=4)).map(
           lambda t: [t[0], *t[1]]),
       redirects=st.lists(st.sampled_from(_REDIRECTS), max_size=3),
       glue=st.lists(st.sampled_from([" ", "  ", "\t", ""]), min_size=8, max_size=8),
       extra=st.sampled_from([{}, {"SHLVL": "3"}, {"OLDPWD": "/", "SHLVL": "0"}, {"OLDPWD": "nope", "PWD": "/"}]))
def test_random_commands_end_the_same_both_ways(tmp_path_factory: pytest.TempPathFactory, words: list[str],
                                                redirects: list[str], glue: list[str], extra: dict[str, str]) -> None:
    parts = words + [r for r in redirects if r]
    text = "".join(p + glue[k % len(glue)] for k, p in enumerate(parts)).strip(" \t") or "x"
    env = _clean_env(**extra)
    base = tmp_path_factory.mktemp("cmd")
    probe = base / "probe"
    probe.mkdir()
    _fill(probe)
    if _start(probe, text, env) is None:
        return  # bash runs it, as always (what direct.start left behind is in probe/, not compared)
    (sa, fa), (sb, fb) = _both(base, text, env)
    assert os.waitstatus_to_exitcode(sb) == os.waitstatus_to_exitcode(sa), text
    assert fb == fa, text


def test_prepare_needs_no_folder_and_a_path_with_a_slash_is_looked_for_at_launch(tmp_path: Path) -> None:
    """The spawner prepares a queued job when it arrives (its cwd is /), and
    launches it later in the job's folder."""
    env = _clean_env()
    cat = shutil.which("cat", path=env["PATH"])
    assert direct.prepare("cat x > y", env["PATH"]) == (["cat", "x"], [(1, ">", "y")], cat)
    assert direct.prepare("./script.sh a", env["PATH"]) == (["./script.sh", "a"], [], None)
    assert direct.prepare("nosuchprog-here a", env["PATH"]) is None
    assert direct.launch(None, env, []) is None
    _fill(tmp_path)
    prepared = direct.prepare("./script.sh a > out.txt", env["PATH"])
    assert _start(tmp_path / "sub", "./script.sh a", env) is None  # not in that folder: bash says so
    here = os.getcwd()
    os.chdir(tmp_path)
    try:
        pid = direct.launch(prepared, env, [])
    finally:
        os.chdir(here)
    assert pid is not None and os.waitpid(pid, 0)[1] == 0
    assert (tmp_path / "out.txt").read_text() == "script a\n"
