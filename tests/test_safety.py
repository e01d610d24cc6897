"""Safety limits (issue 10, items 1, 2, 7, 8): `clean` removes only what sweepc
made; writes never follow symbolic links; a full disk or a read-only store ends
in a message and exit 3 with the store consistent; Ctrl-C pressed twice still
ends in the orderly stop (exit 130, jobs recorded interrupted)."""

from __future__ import annotations

import dataclasses
import errno
import io
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from sweepc.lang.graph import MARKER_NAME

SIMPLE = '''
param a = [1, 2]
sweep s = a

rule gen over s:
    output: "out.txt"
    shell: "echo {a} > {output}"
'''


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def _missing(reason: str) -> None:
    """A real part (a mount namespace, chattr) is missing: a failure in CI, else a skip."""
    if _in_ci():
        pytest.fail(f"CI=true but {reason}", pytrace=False)
    pytest.skip(reason)


def _tree(p: Path) -> list[tuple[str, str]]:
    """Every path under p with its content (or 'dir' / 'link -> target'), to compare before and after."""
    out = []
    for x in sorted(p.rglob("*")):
        if x.is_symlink():
            out.append((str(x.relative_to(p)), f"link -> {os.readlink(x)}"))
        elif x.is_dir():
            out.append((str(x.relative_to(p)), "dir"))
        else:
            out.append((str(x.relative_to(p)), x.read_bytes().decode("utf-8", "replace")))
    return out


def _with_workdir(monkeypatch: pytest.MonkeyPatch, workdir: str) -> None:
    """Make every command see the sweepfile's graph with another workdir, as if
    the compiler had let it through (clean must be safe on its own)."""
    from sweepc.cli import common

    real = common.graph_of

    def graph_of(args: Any) -> Any:
        return dataclasses.replace(real(args), workdir=workdir)

    monkeypatch.setattr(common, "graph_of", graph_of)


# ---- 1. clean removes only what sweepc made ------------------------------------------


def test_job_folders_carry_a_marker(local_project: Any) -> None:
    p = local_project.write(SIMPLE)
    assert p.sweepc("build").code == 0
    d = p.dir("gen[a=1]")
    assert (d / MARKER_NAME).read_text() == f"gen/{d.name[:2]}/{d.name}\n"


def test_clean_all_with_the_project_as_workdir_keeps_every_user_file(local_project: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """workdir = "/abs/path/of/the/project" used to make `clean all -y` delete the
    whole project (sweepfile included) and end in a FileNotFoundError traceback."""
    p = local_project.write(SIMPLE)
    assert p.sweepc("build").code == 0
    shutil.move(p.root / "calc" / "gen", p.root / "gen")  # where a build with that workdir puts them
    (p.root / "calc").rmdir()
    (p.root / "notes.txt").write_text("mine\n")
    (p.root / "data" / "ab" / "ab12").mkdir(parents=True)  # shaped like a job folder, not one
    (p.root / "data" / "ab" / "ab12" / "raw.csv").write_text("x\n")
    _with_workdir(monkeypatch, str(p.root))
    r = p.sweepc("clean", "all", "-n")
    assert (r.code, r.err) == (0, "")
    assert r.out == (
        "would remove 2 job folders in ./\n"
        "would remove .sweepc/\n"
        "would keep what sweepc did not make in ./: data/ab/ab12, notes.txt, sweepfile\n"
    )
    r = p.sweepc("clean", "all", "-y")
    assert (r.code, r.err) == (0, "")
    assert r.out == (
        "removed 2 job folders in ./\n"
        "removed .sweepc/\n"
        "kept what sweepc did not make in ./: data/ab/ab12, notes.txt, sweepfile\n"
    )
    assert _tree(p.root) == [
        ("data", "dir"), ("data/ab", "dir"), ("data/ab/ab12", "dir"), ("data/ab/ab12/raw.csv", "x\n"),
        ("notes.txt", "mine\n"), ("sweepfile", textwrap.dedent(SIMPLE).lstrip()),
    ]


@pytest.mark.parametrize("what", ["all", "outputs", "orphans"])
@pytest.mark.parametrize("workdir", ["/", "OUTSIDE", "../elsewhere", ".sweepc"])
def test_clean_refuses_a_workdir_outside_the_project(local_project: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, what: str, workdir: str) -> None:
    """workdir = "/" made `clean all -n` say `would remove ../../../../../../`."""
    p = local_project.write(SIMPLE)
    assert p.sweepc("build").code == 0
    shared = tmp_path / "shared"
    (shared / "gen" / "ab" / "ab12").mkdir(parents=True)
    (shared / "gen" / "ab" / "ab12" / MARKER_NAME).write_text("gen/ab/ab12\n")  # even a marked folder
    before = _tree(tmp_path)
    wd = str(shared) if workdir == "OUTSIDE" else workdir
    _with_workdir(monkeypatch, wd)
    shown = os.path.normpath(p.root / wd)
    for extra in (["-n"], ["-y"]):
        r = p.sweepc("clean", what, *extra)
        assert (r.code, r.out) == (2, "")
        assert r.err == (
            f"sweepc: refusing to clean: the workdir {shown} is not a folder inside the project {p.root}\n"
            '  hint: set workdir to a folder inside the project, e.g. workdir = "calc"\n'
        )
    assert _tree(tmp_path) == before


def test_clean_all_with_a_workdir_that_is_a_link_to_scratch(local_project: Any, tmp_path: Path) -> None:
    p = local_project.write(SIMPLE)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    (p.root / "calc").symlink_to(scratch)
    assert p.sweepc("build").code == 0
    (scratch / "mine.txt").write_text("mine\n")
    r = p.sweepc("clean", "all", "-y")
    assert (r.code, r.out) == (0, "removed 2 job folders in calc/\nremoved .sweepc/\nkept what sweepc did not make in calc/: calc/mine.txt\n")
    assert (p.root / "calc").is_symlink() and _tree(scratch) == [("mine.txt", "mine\n")]


def test_clean_all_after_the_store_is_lost_removes_only_marked_folders(local_project: Any) -> None:
    p = local_project.write(SIMPLE)
    assert p.sweepc("build").code == 0
    shutil.rmtree(p.root / ".sweepc")
    mine = p.root / "calc" / "gen" / "ff" / "ff00"  # job-shaped, made by the user: no marker, no record
    mine.mkdir(parents=True)
    (mine / "keep.txt").write_text("mine\n")
    r = p.sweepc("clean", "all", "-y")
    assert (r.code, r.err) == (0, "")
    assert r.out == "removed 2 job folders in calc/\nkept what sweepc did not make in calc/: calc/gen/ff/ff00\n"
    assert _tree(p.root / "calc") == [("gen", "dir"), ("gen/ff", "dir"), ("gen/ff/ff00", "dir"), ("gen/ff/ff00/keep.txt", "mine\n")]


def test_clean_all_removes_folders_an_older_sweepc_made_when_the_store_knows_them(local_project: Any) -> None:
    p = local_project.write(SIMPLE)
    assert p.sweepc("build").code == 0
    for label in ("gen[a=1]", "gen[a=2]"):
        (p.dir(label) / MARKER_NAME).unlink()  # made before markers existed
    r = p.sweepc("clean", "all", "-y")
    assert (r.code, r.out) == (0, "removed calc/\nremoved .sweepc/\n")
    assert sorted(x.name for x in p.root.iterdir()) == ["sweepfile"]


def test_clean_outputs_keeps_a_folder_nobody_says_sweepc_made_and_never_goes_through_a_link(local_project: Any, tmp_path: Path) -> None:
    p = local_project.write(SIMPLE)
    assert p.sweepc("build").code == 0
    d1, d2 = p.dir("gen[a=1]"), p.dir("gen[a=2]")
    # a[=1]: its record is gone and so is its marker: not provably sweepc's
    (d1 / MARKER_NAME).unlink()
    con = p.db()
    with con:
        con.execute("DELETE FROM jobs WHERE hash=?", (d1.name,))
    con.close()
    # a[=2]: its shard folder is a link to a folder outside
    outside = tmp_path / "outside"
    shutil.copytree(d2.parent, outside)
    shutil.rmtree(d2.parent)
    d2.parent.symlink_to(outside)
    before = _tree(outside)
    r = p.sweepc("clean", "outputs")
    assert (r.code, r.err) == (0, "")
    rel1, rel2 = d1.relative_to(p.root), d2.relative_to(p.root)
    assert r.out == (
        f"kept {rel2}/: {rel2.parent} is a symbolic link or not a folder; sweepc removes nothing through it\n"
        f"kept {rel1}/: no marker or record says sweepc made it\n"
        "sweepc: removed 0 job folders and 1 record\n"
    )
    assert (d1 / "out.txt").read_text() == "1\n"
    assert _tree(outside) == before


def test_clean_orphans_removes_marked_orphans_only(local_project: Any) -> None:
    p = local_project.write(SIMPLE)
    assert p.sweepc("build").code == 0
    gone = p.dir("gen[a=2]")
    p.edit("[1, 2]", "[1]")
    stray = p.root / "calc" / "gen" / "ee" / "ee11"
    stray.mkdir(parents=True)
    r = p.sweepc("clean", "orphans")
    assert (r.code, r.err) == (0, "")
    assert r.out == f"removed {gone.relative_to(p.root)}/\nsweepc: removed 1 job folder and 1 record\n"
    assert not gone.exists() and stray.is_dir() and p.dir("gen[a=1]").is_dir()


# ---- 2. writes never follow symbolic links ----------------------------------------------


def test_a_log_that_is_a_link_is_replaced_not_written_through(local_project: Any, tmp_path: Path) -> None:
    p = local_project.write(SIMPLE)
    assert p.sweepc("build").code == 0
    precious = tmp_path / "precious.txt"
    precious.write_text("precious\n")
    log = p.dir("gen[a=1]") / "sweepc.log"
    log.unlink()
    log.symlink_to(precious)
    r = p.sweepc("build", "--force", "gen")
    assert r.code == 0, r
    assert precious.read_text() == "precious\n"
    assert not log.is_symlink() and log.read_text() == ""


@pytest.mark.parametrize("level", [1, 2, 3])  # the rule folder, the shard folder, the job folder
def test_a_job_whose_folder_is_a_link_fails_and_writes_nothing_there(local_project: Any, tmp_path: Path, level: int) -> None:
    p = local_project.write(SIMPLE)
    assert p.sweepc("build").code == 0
    d = p.dir("gen[a=1]")
    linked = [d.parent.parent, d.parent, d][level - 1]
    outside = tmp_path / "outside"
    shutil.copytree(linked, outside)
    shutil.rmtree(linked)
    linked.symlink_to(outside)
    before = _tree(outside)
    r = p.sweepc("build", "-k", "--force", "gen")
    assert r.code == 1
    assert f"FAILED gen[a=1]: {linked} is a symbolic link (to {outside}); sweepc writes job files only into real folders inside the workdir: remove the link\n" in r.out
    assert _tree(outside) == before
    assert p.statuses()["gen[a=1]"] == "failed"


def test_removing_old_outputs_never_goes_through_a_link(local_project: Any, tmp_path: Path) -> None:
    p = local_project.write('''
        param a = [1]
        sweep s = a

        rule gen over s:
            output: "sub/out.txt", "top.txt"
            shell: "mkdir -p sub && echo {a} > sub/out.txt && echo {a} > top.txt"
    ''')
    assert p.sweepc("build").code == 0
    d = p.dir("gen[a=1]")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "out.txt").write_text("theirs\n")
    (outside / "top.txt").write_text("theirs too\n")
    shutil.rmtree(d / "sub")
    (d / "sub").symlink_to(outside)
    (d / "top.txt").unlink()
    (d / "top.txt").symlink_to(outside / "top.txt")
    r = p.sweepc("build", "--force", "gen")
    assert r.code == 0, r
    assert _tree(outside) == [("out.txt", "theirs\n"), ("top.txt", "theirs too\n")]
    assert not (d / "sub").is_symlink() and (d / "sub" / "out.txt").read_text() == "1\n"
    assert not (d / "top.txt").is_symlink() and (d / "top.txt").read_text() == "1\n"


def test_the_process_pool_refuses_a_log_or_folder_that_is_a_link(tmp_path: Path) -> None:
    from sweepc.backends.local.procs import ProcessPool, Spawn

    real = tmp_path / "real"
    real.mkdir()
    target = tmp_path / "target.txt"
    target.write_text("keep\n")
    (real / "log").symlink_to(target)
    (tmp_path / "linked").symlink_to(real)
    with ProcessPool() as pool:
        with pytest.raises(OSError) as e:
            pool.start(Spawn(key=1, command="echo x", cwd=str(real), log_path=str(real / "log"), env=dict(os.environ)))
        assert e.value.errno == 40  # ELOOP
        with pytest.raises(NotADirectoryError):
            pool.start(Spawn(key=2, command="echo x", cwd=str(tmp_path / "linked"), log_path=str(tmp_path / "log2"), env=dict(os.environ)))
    assert target.read_text() == "keep\n"


def test_the_slurm_runner_replaces_a_log_that_is_a_link(tmp_path: Path) -> None:
    from sweepc.backends.slurm.render import RUNNER_NAME, runner_text

    d = tmp_path / "calc" / "r" / "aa" / "aa01"
    d.mkdir(parents=True)
    precious = tmp_path / "precious.txt"
    precious.write_text("precious\n")
    (d / "sweepc.log").symlink_to(precious)
    runner = tmp_path / RUNNER_NAME
    runner.write_text(runner_text())
    task = tmp_path / "task-0.sh"
    task.write_text(
        f"SWEEPC_SUBMISSION=sub1\nSWEEPC_RULE=r\nSWEEPC_ROOT={tmp_path}\nSWEEPC_WORKDIR={tmp_path}/calc\n"
        "SWEEPC_OUTPUTS=(out.txt)\nSWEEPC_TIME_LIMIT=\n"
        "sweepc_pset aa01 fp ch ih 1 <<'END'\necho hello; echo 1 > out.txt\nEND\n"
    )
    subprocess.run(["bash", str(runner), str(task)], check=True, timeout=30)
    assert precious.read_text() == "precious\n"
    assert not (d / "sweepc.log").is_symlink() and (d / "sweepc.log").read_text() == "hello\n"


# ---- 7. failures of the machine -------------------------------------------------------

FULL_HINT = "then build again; jobs whose end was not recorded run again"


class _FailingConn:
    """A sqlite3 connection whose COMMIT of a job outcome fails the way a full disk does."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._outcome = False

    def execute(self, sql: str, *args: Any) -> Any:
        if sql == "COMMIT" and self._outcome:
            self._outcome = False
            raise sqlite3.OperationalError("database or disk is full")
        return self._conn.execute(sql, *args)

    def executemany(self, sql: str, rows: Any) -> Any:
        # (sticky until the COMMIT: the same transaction also writes the results history)
        self._outcome = self._outcome or sql.startswith("UPDATE jobs SET status=?, fingerprint=")
        return self._conn.executemany(sql, rows)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def test_a_full_disk_at_the_store_boundary_is_a_message_and_exit_3(local_project: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """(A fake at the sqlite boundary; the real full disk is the next test.)"""
    from sweepc.plan.store import Store

    p = local_project.write(SIMPLE)
    real_open = Store.open.__func__  # type: ignore[attr-defined]

    def open_(cls: type[Store], root: Path, create: bool = True) -> Store:
        s = real_open(cls, root, create)
        s.conn = _FailingConn(s.conn)  # type: ignore[assignment]
        return s

    monkeypatch.setattr(Store, "open", classmethod(open_))
    r = p.sweepc("build")
    assert (r.code, r.out) == (3, "")
    assert r.err == (
        "sweepc: cannot write .sweepc/state.db: the disk is full (database or disk is full).\n"
        f"  hint: free space on the disk that holds .sweepc/ (df -h .sweepc/), {FULL_HINT}\n"
    )
    monkeypatch.undo()
    # nothing is recorded done: both jobs run again
    assert p.statuses() == {"gen[a=1]": "planned", "gen[a=2]": "planned"}
    con = p.db()
    assert con.execute("SELECT status FROM runs").fetchall() == [("failed",)]
    con.close()
    # but what ended done before the build stopped is in the job spawner's
    # journal: the next build records it (its output is there) and runs the rest
    r = p.sweepc("build")
    m = re.fullmatch(r"sweepc: the last build stopped before it recorded (\d) jobs? that ended done; recorded now "
                     r"\(from \.sweepc/journal\)\n(.*)\n", r.out)
    assert r.code == 0 and m, r.out
    n = int(m.group(1))
    assert m.group(2) == ("sweepc: nothing to do (2 jobs up to date)" if n == 2 else
                          "sweepc: 1 done, 1 up to date in " + m.group(2).rsplit(" ", 1)[-1]), r.out
    assert p.statuses() == {"gen[a=1]": "done", "gen[a=2]": "done"}


def _in_a_mount_namespace(script: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run `script` (bash) in a private mount namespace, where it may mount a
    small tmpfs or remount a folder read-only without touching the machine."""
    unshare = shutil.which("unshare")
    if unshare is None:
        _missing("no unshare(1) here")
    argv = [unshare, "--mount"] if os.geteuid() == 0 else [unshare, "--map-root-user", "--mount"]
    probe = subprocess.run([*argv, "mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(cwd)], capture_output=True, text=True)
    if probe.returncode != 0:
        _missing(f"cannot mount a tmpfs in a mount namespace here: {probe.stderr.strip()}")
    env = {**os.environ, "SWEEPC": f"{sys.executable} -m sweepc"}
    return subprocess.run([*argv, "bash", "-c", "set -u\n" + script], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_a_real_full_disk_ends_in_a_message_exit_3_and_a_consistent_store(tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    proj.mkdir()
    r = _in_a_mount_namespace(textwrap.dedent('''
        mount -t tmpfs -o size=1m tmpfs "$PWD" && cd "$PWD" || exit 7
        cat > sweepfile <<'EOF'
        param a = range(0, 30)
        sweep s = a

        rule gen over s:
            output: "out.txt"
            shell: "head -c 100000 /dev/zero > {output}"
        EOF
        $SWEEPC build -j 2 >build.out 2>build.err; echo "rc=$?"
        echo "--err"; cat build.err; echo "--end"
        python3 - <<'EOF'
        import os, sqlite3
        con = sqlite3.connect(".sweepc/state.db")
        for rule, h, status in con.execute("SELECT rule, hash, status FROM jobs"):
            out = f"calc/{rule}/{h[:2]}/{h}/out.txt"
            size = os.path.getsize(out) if os.path.exists(out) else -1
            print("job", status, size)
        EOF
        mount -o remount,size=8m "$PWD" || exit 6
        $SWEEPC build -j 2 >/dev/null 2>build2.err; echo "rc2=$?"
        python3 -c "import sqlite3; print('after', sorted(set(r[0] for r in sqlite3.connect('.sweepc/state.db').execute('SELECT status FROM jobs'))))"
    ''').replace("\n        ", "\n"), proj)
    out = r.stdout
    assert "rc=3\n" in out, (out, r.stderr)
    err = out.split("--err\n")[1].split("--end\n")[0]
    assert "Traceback" not in err
    assert re.fullmatch(
        r"sweepc: cannot write \S+: the disk is full \([^\n]*\)\.\n"
        rf"  hint: free space on the disk that holds \S+ \(df -h \S+\), {FULL_HINT}\n"
        # or, when only the build's own output (build.out, on the full disk too) could not be written:
        r"|sweepc: cannot write the build's output to build.out \(No space left on device\); the build went on without it.\n"
        r"  hint: see what it did with: sweepc status\n",
        err,
    ), err
    jobs = [line.split() for line in out.splitlines() if line.startswith("job ")]
    assert len(jobs) == 30
    # nothing wrongly marked done: every job recorded done has its whole output
    assert all(size == "100000" for _, status, size in jobs if status == "done"), jobs
    assert {status for _, status, _ in jobs} <= {"done", "planned", "failed", "interrupted"}
    # with space again, the next build finishes what is left
    assert "rc2=0\n" in out and "after ['done']\n" in out, out


def test_a_read_only_state_folder_is_a_message_and_exit_3(tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "sweepfile").write_text(textwrap.dedent(SIMPLE).lstrip())
    r = _in_a_mount_namespace(textwrap.dedent('''
        $SWEEPC build >/dev/null || exit 9
        mount --bind .sweepc .sweepc && mount -o remount,ro,bind .sweepc || exit 8
        $SWEEPC build --force gen; echo "rc=$?"
        $SWEEPC status >/dev/null; echo "status=$?"
    ''').replace("\n        ", "\n"), proj)
    assert r.stdout == "rc=3\nstatus=0\n", (r.stdout, r.stderr)
    assert r.stderr == (
        "sweepc: cannot write .sweepc/build.lock: it is read-only (Read-only file system).\n"
        "  hint: make .sweepc/ and the files in it writable (check: ls -la .sweepc/, lsattr, mount), then try again\n"
    )


def test_a_read_only_project_folder_names_the_folder_to_make_writable(tmp_path: Path) -> None:
    # a project in a folder the user cannot write (another user's, or a read-only
    # mount): .sweepc/ cannot be made, and the hint names the project's folder,
    # not the .sweepc/ that is not there
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "sweepfile").write_text(textwrap.dedent(SIMPLE).lstrip())
    r = _in_a_mount_namespace(textwrap.dedent('''
        mount --bind . . && mount -o remount,ro,bind . || exit 8
        cd "$PWD"
        $SWEEPC build; echo "rc=$?"
        $SWEEPC build -n >/dev/null; echo "dry=$?"
        test -e .sweepc || echo "no .sweepc"
    ''').replace("\n        ", "\n"), proj)
    assert r.stdout == "rc=3\ndry=0\nno .sweepc\n", (r.stdout, r.stderr)
    assert r.stderr == (
        "sweepc: cannot write .sweepc/: it is read-only (Read-only file system).\n"
        "  hint: make ./ and the files in it writable (check: ls -la ./, lsattr, mount), then try again\n"
    )


def test_a_read_only_store_is_a_message_and_exit_3(local_project: Any) -> None:
    p = local_project.write(SIMPLE)
    assert p.sweepc("build").code == 0
    db = p.root / ".sweepc" / "state.db"
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(db)], capture_output=True).returncode != 0:
        _missing("cannot make a file immutable (chattr +i) here")
    try:
        before = p.rows()
        r = p.sweepc("build", "--force", "gen")
        assert (r.code, r.out) == (3, "")
        assert r.err == (
            "sweepc: cannot write .sweepc/state.db: it is read-only (attempt to write a readonly database).\n"
            "  hint: make .sweepc/ and the files in it writable (check: ls -la .sweepc/, lsattr, mount), then try again\n"
        )
        assert p.rows() == before
    finally:
        subprocess.run(["chattr", "-i", str(db)], check=True)


class _FullStdout(io.TextIOBase):
    """A standard output on a full disk."""

    def write(self, s: str) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    def flush(self) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")


def test_a_build_whose_output_cannot_be_written_goes_on_and_exits_3(local_project: Any, monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """`sweepc build > log` on a full disk: the first progress line used to raise
    through the runner, kill the running jobs and lose their outcomes, with a traceback."""
    from sweepc.cli import main

    p = local_project.write(SIMPLE)
    monkeypatch.chdir(p.root)
    monkeypatch.setattr(sys, "stdout", _FullStdout())
    code = main(["build", "--explain"])  # --explain: it writes before anything runs
    monkeypatch.undo()
    assert code == 3
    assert capsys.readouterr().err == (
        "sweepc: cannot write the build's output to the standard output (No space left on device); "
        "the build went on without it.\n  hint: see what it did with: sweepc status\n"
    )
    assert p.statuses() == {"gen[a=1]": "done", "gen[a=2]": "done"}


def test_psets_on_a_full_disk_is_a_message_not_a_traceback(local_project: Any, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    from sweepc.cli import main

    p = local_project.write(SIMPLE)
    monkeypatch.chdir(p.root)
    monkeypatch.setattr(sys, "stdout", _FullStdout())
    code = main(["psets"])
    monkeypatch.undo()
    assert code == 3
    assert capsys.readouterr().err == (
        "sweepc: cannot write the output: the disk is full (No space left on device).\n"
        "  hint: free space on the disk that holds . (df -h .), then try again\n"
    )


NEW_STORE = ("sweepc: the state store .sweepc/state.db is new, but 2 of the jobs to run already have outputs in calc/; "
             "it cannot tell they are up to date, so they run again\n")


@pytest.mark.parametrize("how", ["missing", "empty file"])
def test_a_lost_store_says_so_when_outputs_exist(local_project: Any, how: str) -> None:
    p = local_project.write(SIMPLE)
    r = p.sweepc("build")
    assert r.code == 0 and "is new" not in r.out  # a first build has no outputs to speak of
    for f in (p.root / ".sweepc").glob("state.db*"):
        f.unlink()
    if how == "empty file":
        (p.root / ".sweepc" / "state.db").write_bytes(b"")
    r = p.sweepc("build", "-n")
    assert r.out.startswith(NEW_STORE) and r.out.count("is new") == 1
    r = p.sweepc("build")
    assert (r.code, r.out.count("is new")) == (0, 1) and r.out.startswith(NEW_STORE)
    assert "is new" not in p.sweepc("build", "--force", "gen").out  # the store knows them now


# ---- 8. Ctrl-C pressed twice ------------------------------------------------------------

SLEEPERS = '''
param a = [1, 2, 3]
sweep s = a

rule w over s:
    output: "out.txt"
    shell: "sleep 30; echo {a} > {output}"
'''


def _wait_for_sleepers(p: Any, n: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sum(1 for proc in p.job_processes() if proc.name() == "sleep") >= n:
            return
        time.sleep(0.05)
    raise AssertionError(f"{n} jobs did not start")


@pytest.mark.parametrize("second", [(signal.SIGINT, 0.02), (signal.SIGINT, 0.035), (signal.SIGINT, 0.05), (signal.SIGTERM, 0.03)])
def test_two_stop_signals_in_quick_succession_end_in_the_orderly_stop(local_project: Any, second: tuple[int, float]) -> None:
    sig, gap = second
    p = local_project.write(SLEEPERS)
    proc = p.spawn("build", "-j", "3")
    try:
        _wait_for_sleepers(p, 3)
        proc.send_signal(signal.SIGINT)
        time.sleep(gap)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert (proc.returncode, err) == (130, ""), (out, err)
    assert out.splitlines()[-1] == "sweepc: interrupted; the jobs that were running are recorded as interrupted and will rerun"
    assert p.statuses() == {"w[a=1]": "interrupted", "w[a=2]": "interrupted", "w[a=3]": "interrupted"}
    con = p.db()
    assert con.execute("SELECT status FROM runs").fetchall() == [("interrupted",)]
    con.close()
    assert not p.job_processes()


# -- a spawner that dies never hangs the build (issue 10, item 3) -------------------


def test_a_dead_spawner_stops_the_build_with_a_message_and_exit_3(local_project: Any) -> None:
    import json
    import time

    import psutil

    p = local_project.write(
        'param a = range(0, 6)\nrule r over a:\n    output: "o"\n    shell: "sleep 30; echo {a} > {output}"\n'
    )
    proc = p.spawn("build", "-j", "2")
    deadline = time.monotonic() + 30
    spawner = None
    while spawner is None and time.monotonic() < deadline:
        for c in psutil.Process(proc.pid).children():
            try:
                if "-S" in c.cmdline() and len(psutil.Process(c.pid).children()) == 2:  # the spawner, with both jobs
                    spawner = c
            except psutil.Error:  # a short-lived child (git, the import check) that has just ended
                continue
        time.sleep(0.05)
    assert spawner is not None, "no spawner with two running jobs"
    spawner.kill()
    out, err = proc.communicate(timeout=30)  # never a hang
    assert proc.returncode == 3, (out, err)
    assert re.fullmatch(
        r"sweepc: sweepc's job spawner \(pid \d+\) died unexpectedly; its jobs were killed\.\n"
        r"  hint: the 2 jobs that were running are recorded as interrupted; build again to run them "
        r"\(if it happens again, look for the out-of-memory killer: dmesg\)\n",
        err,
    ), err
    assert "Traceback" not in out + err
    rows = {r["rule"]: r for r in json.loads(p.sweepc("status", "--format", "json").out)}
    assert rows["r"]["interrupted"] == 2


def test_builds_stopped_at_random_leave_nothing_wrong_that_looks_up_to_date(tmp_path: Path) -> None:
    """scripts/chaos.py, small: a python: rule (failing now and then), a
    shell rule reading its files and a gather; builds stopped by SIGKILL or
    SIGINT at random moments (seeded). After each stop, every job the
    planner would not run has exactly the right files and no process of the
    build is left; at the end one build finishes the rest, the next has
    nothing to do, and the results table holds every pset's right values."""
    script = Path(__file__).resolve().parent.parent / "scripts" / "chaos.py"
    r = subprocess.run(
        [sys.executable, str(script), "--psets", "400", "--stops", "6", "--max-wait", "1.0", "--fail-share", "0.05",
         "--seed", "5", "--dir", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert r.stdout.splitlines()[-1] == "no problem", r.stdout[-3000:]
    assert re.search(r"^400 psets, 6 builds stopped at random \((\d+) SIGKILL, (\d+) SIGINT, (\d+) SIGTERM, (\d+) ended before their stop\)",
                     r.stdout, re.M), r.stdout



@pytest.mark.slurm
def test_slurm_builds_stopped_at_random_leave_nothing_wrong_nor_anything_queued(slurm_cluster: dict[str, str], tmp_path: Path) -> None:
    """scripts/chaos.py on the real SLURM cluster, small: builds that submit
    and return, wait (--wait) or leave it to a conductor (--detach), some
    of them forced, stopped by SIGKILL,
    SIGINT or SIGTERM at random moments, `sweepc cancel` now and then. After
    each stop (the array tasks still running), every job the planner would
    not run has the right files; at the end one `build --wait` finishes
    everything, the next has nothing to do, no pset ran twice at once, and
    nothing of the project is left in SLURM's queue."""
    script = Path(__file__).resolve().parent.parent / "scripts" / "chaos.py"
    r = subprocess.run(
        [sys.executable, str(script), "--backend", "slurm", "--psets", "60", "--stops", "6", "--max-wait", "4",
         "--force-share", "0.6", "--fail-share", "0.05", "--seed", "5", "--dir", str(tmp_path)],
        capture_output=True, text=True, timeout=900, env=slurm_cluster,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert r.stdout.splitlines()[-1] == "no problem", r.stdout[-3000:]
    assert re.search(r"^60 psets, 6 builds stopped at random \((\d+) SIGKILL, (\d+) SIGINT, (\d+) SIGTERM, "
                     r"(\d+) ended before their stop; (\d+) with --detach, (\d+) sweepc cancel, (\d+) array tasks killed\)", r.stdout, re.M), r.stdout


_STARTUP_CTRL_C = '''
import os, runpy, signal, sys
class _CtrlCAt:
    """Ctrl-C (a real SIGINT) just as {target} is being imported."""
    def find_spec(self, name, path=None, target=None):
        if name == {target!r}:
            sys.meta_path.remove(self)
            os.kill(os.getpid(), signal.SIGINT)
        return None
sys.meta_path.insert(0, _CtrlCAt())
sys.argv = ["sweepc", "check"]
if {as_module}:
    runpy.run_module("sweepc", run_name="__main__", alter_sys=True)  # python -m sweepc
else:
    from sweepc.cli import main  # what the `sweepc` script pip makes does
    sys.exit(main())
'''


@pytest.mark.parametrize("as_module", [False, True], ids=["sweepc", "python -m sweepc"])
@pytest.mark.parametrize("target", ["sweepc.errors", "argparse", "sweepc.cli.app", "sweepc.cli.build", "sweepc.lang.project"])
def test_ctrl_c_while_sweepc_starts_is_interrupted_not_a_traceback(local_project: Any, target: str, as_module: bool) -> None:
    """A Ctrl-C while sweepc loads its own modules (before and while the
    command line is parsed, and as the sweepfile is loaded) ends the command
    as one at any later moment does."""
    p = local_project.write(SIMPLE)
    r = subprocess.run([sys.executable, "-c", _STARTUP_CTRL_C.format(target=target, as_module=as_module)],
                       cwd=p.root, capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stdout, r.stderr) == (130, "", "sweepc: interrupted\n")


def test_ctrl_c_while_the_graph_cache_is_written_after_the_command_is_interrupted(
        local_project: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The command's own work is done, but sweepc still waits for the
    compiled graph's cache to be written (lang/project.wait_writes) when
    Ctrl-C comes: the same message and exit 130, no traceback."""
    from sweepc.cli import main
    from sweepc.lang import project

    p = local_project.write(SIMPLE)

    def interrupted() -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(project, "wait_writes", interrupted)
    monkeypatch.chdir(p.root)
    assert main(["check"]) == 130
    out, err = capsys.readouterr()
    assert out.startswith("sweepfile: ok: 1 parameter")
    assert err == "sweepc: interrupted\n"


def test_ctrl_c_while_sweepc_exits_changes_nothing() -> None:
    """The command is done when exit_now() runs the atexit functions: a Ctrl-C
    there is let go (it was a KeyboardInterrupt traceback and death by SIGINT)."""
    code = textwrap.dedent('''
        import atexit, os, signal, sys, time
        from sweepc.cli import app
        def late_ctrl_c():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.2)
            print("after the Ctrl-C")
        atexit.register(late_ctrl_c)
        print("done", flush=True)
        app.exit_now(0)
    ''')
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stdout, r.stderr) == (0, "done\nafter the Ctrl-C\n", "")
