#!/usr/bin/env python3
"""Stop local builds at random moments, many times, and check that nothing
wrong ever looks up to date.

    python3 scripts/chaos.py                                  # 10k psets, 30 stops, /tmp
    python3 scripts/chaos.py --psets 20000 --stops 50 --dir /dev/shm/chaos --seed 7

Not a benchmark and not a test (tests/test_safety.py runs it small): the
brief's guarantee, tried from outside. The project: a `python:` rule that
writes a file and returns a nested dict (retries: 1), a shell rule that
reads both its files, one per pset, and a gather over the shell rule. While a file
FAIL is in the project, a `python:` pset fails now and then (`--fail-share`),
and kills its worker now and then (`--crash-share`: os._exit or a segfault).

Each round starts `sweepc build -j 2 --backend BACKEND` (sometimes with -k, sometimes with
--force f or --force g: done jobs run again, and a stop then catches them; with SLURM
sometimes --wait, and `sweepc cancel` now and then after a stop), waits a random
time (up to --max-wait s), then sends SIGKILL, or in a share of the rounds
SIGINT (--sigint-share) or SIGTERM (--sigterm-share) and waits for the
build to stop: a build that takes more than 30 s to stop, ends otherwise
than with 0, 1 or 130 (or, for SIGTERM, with the signal itself: the
default action, before sweepc has a handler) or prints a traceback is a
failure. After every round:

* every job the planner would not run (sweepc.load(dir).plan(), which takes
  in what a killed build journalled, as the next build does) has the right
  files, byte for byte: nothing that is wrong looks up to date;
* no process of the build is left (Python workers, the spawner, job shells;
  with SLURM only sweepc's own: the array tasks go on, as they should).

With SLURM the tasks run 4 psets, 2 at a time (bundle, pack), and after a
stop a running task is killed now and then (SIGKILL to every process of its
batch step, found with `scontrol listpids`, as a crash or the OOM killer
would: the runner records nothing more, and SLURM says FAILED. Not
`scancel --signal=KILL`: SLURM then says CANCELLED, which sweepc takes for
a cancel, as it should, and submits nothing more for a build that waits). A share of the
SLURM builds runs with --detach: the stop then hits its conductor.

Then FAIL is removed, one more build must end well (with SLURM: --wait,
which waits for what earlier builds queued), the one after must have
nothing to do, every job must be right, the results table must hold every
pset's right values, no pset's function ever ran twice at the same time
(it takes an flock while it runs), and with SLURM nothing of the project
is left in SLURM's queue. Exit status 0 when all of that holds; the
problems are printed otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from outside import command_env, new_project, verdict

MODEL = """\
import fcntl, os, random, time

def run(pset):
    a = pset["a"]
    # two runs of one job at once (a job started twice) write DUPLICATES
    lock = os.open(os.path.join(LOCKS, str(a)), os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            with open(DUPLICATES, "a") as f:
                f.write(f"a={a}\\n")
        return work(a)
    finally:
        os.close(lock)

def work(a):
    if random.random() < 0.3:
        time.sleep(SLEEP)
    if os.path.exists(FAIL) and random.random() < FAIL_SHARE:
        raise RuntimeError(f"failed on purpose for a={a}")
    if os.path.exists(FAIL) and random.random() < CRASH_SHARE:  # the worker dies: os._exit, or a segfault
        if random.random() < 0.5:
            os._exit(3)
        import ctypes
        ctypes.string_at(0)
    with open("w.txt", "w") as f:
        f.write(str(a * 3))
    return {"b": a * 2, "c": {"d": a + 1}}
"""

SWEEPFILE = """\
param a = range(0, {n})
sweep s = a

rule f over s:
    python: "model.py:run"
    output: "w.txt"
    retries: 1

rule g over s:
    input: f
    output: "g.txt"
    shell: "cat {{input}} > {{output}}; echo {{a}} >> {{output}}"

rule total:
    input: g
    output: "total.txt"
    shell: "xargs cat < {{input.list}} | wc -l > {{output}}"
"""


def result_of(a: int) -> dict[str, object]:
    return {"b": a * 2, "c": {"d": a + 1}}


def expected(rule: str, a: int | None, n: int) -> dict[str, str]:
    """The files a job of `rule` must hold when it is done."""
    if rule == "f":
        assert a is not None
        return {"w.txt": str(a * 3), "sweepc-result.json": json.dumps(result_of(a))}
    if rule == "g":
        assert a is not None
        return {"g.txt": f"{a * 3}{json.dumps(result_of(a))}{a}\n"}
    return {"total.txt": f"{n}\n"}


def wrong_files(project: Path, n: int) -> list[str]:
    """Jobs the planner takes as up to date whose files are not right."""
    import sweepc

    study = sweepc.load(project)
    plan = study.plan()
    g = plan.graph
    will_run = set(plan.run)
    problems = []
    for i, job in enumerate(g.jobs):
        if i in will_run:
            continue
        a = job.params.get("a")
        folder = g.job_dir(job)
        for name, want in expected(job.rule, a if isinstance(a, int) else None, n).items():
            try:
                got = (folder / name).read_text()
            except OSError as e:
                problems.append(f"{job.label}: up to date, but {name}: {e.strerror}")
                continue
            if got != want:
                problems.append(f"{job.label}: up to date, but {name} holds {got!r}, not {want!r}")
    return problems


def sweepc_traceback(text: str) -> bool:
    """Whether sweepc itself printed a traceback in `text`. A failed python:
    job's traceback, quoted from its log under its FAILED line ("  | "), is
    the job's, not sweepc's: only one at the start of a line counts."""
    return re.search(r"^Traceback \(most recent call last\):", text, re.MULTILINE) is not None


def descendants(pid: int) -> set[int]:
    """The processes below pid now (its children, theirs, ...)."""
    kids: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                stat = Path(f"/proc/{name}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rpartition(")")[2].split()[1])
            kids.setdefault(ppid, []).append(int(name))
    out: set[int] = set()
    todo = [pid]
    while todo:
        for k in kids.get(todo.pop(), []):
            if k not in out:
                out.add(k)
                todo.append(k)
    return out


def alive(pids: set[int], project: Path, only: bool = False) -> list[str]:
    """Which of pids still run (not zombies), and (unless `only`) any other
    process working in the project or started by a build of it (SWEEPC_ROOT)."""
    left = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            state = Path(f"/proc/{name}/stat").read_text().rpartition(")")[2].split()[0]
            cmd = Path(f"/proc/{name}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            ours = int(name) in pids
            if not ours and not only:
                ours = os.readlink(f"/proc/{name}/cwd").startswith(str(project)) or (
                    f"SWEEPC_ROOT={project}\0".encode() in Path(f"/proc/{name}/environ").read_bytes())
        except OSError:
            continue
        if ours and state != "Z":
            left.append(f"pid {name} ({cmd[:100]})")
    return left


class _Conductor:
    """A background conductor (not our child) with Popen's face: wait, send_signal, kill."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def _gone(self) -> bool:
        try:
            return Path(f"/proc/{self.pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
        except OSError:
            return True

    def wait(self, timeout: float | None = None) -> int:
        deadline = time.monotonic() + (timeout if timeout is not None else 1e9)
        while not self._gone():
            if time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"conductor {self.pid}", timeout or 0)
            time.sleep(0.05)
        return 0  # (its exit status is not ours to read: what it printed is in conductor.log)

    def send_signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--psets", type=int, default=10000)
    ap.add_argument("--stops", type=int, default=30, help="builds stopped (default 30)")
    ap.add_argument("--max-wait", type=float, default=2.0, help="longest wait before a stop, s (default 2)")
    ap.add_argument("--sigint-share", type=float, default=0.3, help="share of the stops that are SIGINT (default 0.3)")
    ap.add_argument("--sigterm-share", type=float, default=0.15, help="share of the stops that are SIGTERM (default 0.15)")
    ap.add_argument("--fail-share", type=float, default=0.01, help="chance that a python: pset fails while FAIL is there")
    ap.add_argument("--crash-share", type=float, default=0.002,
                    help="chance that it kills its worker (os._exit or a segfault) while FAIL is there")
    ap.add_argument("--backend", default="local",
                    help="the builds' --backend (default local; dask: a LocalCluster; slurm: the cluster SLURM_CONF names)")
    ap.add_argument("--force-share", type=float, default=0.25,
                    help="share of the builds run with --force f or --force g (a rerun of done jobs, stopped; default 0.25)")
    ap.add_argument("--task-kill-share", type=float, default=0.3,
                    help="slurm: chance that a running array task is killed (SIGKILL to its processes, as a "
                         "crash would) after a stop (default 0.3)")
    ap.add_argument("--detach-share", type=float, default=0.2,
                    help="slurm: share of the builds run with --detach, whose conductor is what the stop hits (default 0.2)")
    ap.add_argument("--cancel-share", type=float, default=0.15,
                    help="slurm: chance that `sweepc cancel` runs after a stop (default 0.15)")
    ap.add_argument("--leftover-wait", type=float, default=5.0,
                    help="how long the build's processes may take to end after a stop, s (default 5)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--dir", default=None, help="make the project in this folder (default: a new temporary one)")
    args = ap.parse_args()

    rng = random.Random(args.seed)
    project = new_project(args.dir, "sweepc-chaos-")
    slurm = args.backend == "slurm"
    locks, duplicates = project.parent / "locks", project.parent / "DUPLICATES"
    locks.mkdir(exist_ok=True)
    duplicates.unlink(missing_ok=True)
    model = (MODEL.replace("FAIL_SHARE", repr(args.fail_share)).replace("CRASH_SHARE", repr(args.crash_share))
             .replace("FAIL)", f"{str(project / 'FAIL')!r})").replace("LOCKS", repr(str(locks)))
             .replace("(DUPLICATES", f"({str(duplicates)!r}")
             # a SLURM task runs long enough for a second copy of it to be seen
             .replace("SLEEP", "0.05" if slurm else "0.002"))
    (project / "model.py").write_text(model)
    # with SLURM: tasks of several psets, two at a time (the runner's bundles and packs)
    (project / "sweepfile").write_text(SWEEPFILE.format(n=args.psets) + ("\nbackend slurm:\n    bundle = 4\n    pack = 2\n"
                                                                     if slurm else ""))
    (project / "FAIL").write_text("")
    env = command_env()
    problems: list[str] = []
    ended = kills = sigints = sigterms = cancels = task_kills = detached = 0

    errors = project.parent / "build.stderr"

    def build(extra: list[str]) -> subprocess.Popen[bytes]:
        with open(errors, "wb") as err:
            return subprocess.Popen([sys.executable, "-m", "sweepc", "build", "-j", "2", "--backend", args.backend, *extra],
                                    cwd=project, env=env,
                                    stdout=subprocess.DEVNULL, stderr=err)

    t0 = time.monotonic()
    for k in range(args.stops):
        # a SLURM build submits and returns, or (--wait) waits, resubmitting
        # retries, or (--detach) leaves that to a conductor in the background
        detach = slurm and rng.random() < args.detach_share
        p = build((["-k"] if rng.random() < 0.3 else []) + (["--wait"] if slurm and not detach and rng.random() < 0.7 else [])
                  + (["--detach"] if detach else []) + (["--force", rng.choice("fg")] if rng.random() < args.force_share else []))
        tree: set[int] = set()
        if detach:  # the stop is for the conductor: `build --detach` returns once it holds the lock
            detached += 1
            p.wait(60)
            from sweepc.backends.slurm import conductor

            c = conductor.running(project)
            p = _Conductor(c.pid) if c is not None else p  # (no conductor: it ended first, or did not start)
        try:
            p.wait(rng.uniform(0.05, args.max_wait))
            ended += 1
        except subprocess.TimeoutExpired:
            tree = descendants(p.pid) | {p.pid}
            pick = rng.random()
            if pick < args.sigint_share + args.sigterm_share:
                sig = signal.SIGINT if pick < args.sigint_share else signal.SIGTERM
                if sig == signal.SIGINT:
                    sigints += 1
                else:
                    sigterms += 1
                p.send_signal(sig)
                try:
                    rc = p.wait(30)
                except subprocess.TimeoutExpired:
                    problems.append(f"stop {k}: the build did not stop within 30 s of {sig.name}")
                    p.kill()
                    p.wait()
                else:
                    said = errors.read_text(errors="replace")
                    if rc not in (0, 1, 130, -signal.SIGTERM if sig == signal.SIGTERM else 130) or sweepc_traceback(said):
                        problems.append(f"stop {k}: exit status {rc} after {sig.name}; it said:\n{said[-2000:]}")
            else:
                kills += 1
                p.kill()
                p.wait()
        # the build's processes die with it (the workers by a signal, the jobs
        # when the spawner sees the build gone): give them a few seconds
        deadline = time.monotonic() + args.leftover_wait
        # (SLURM's tasks are not the build's: they run on after it, as they should)
        while (left := alive(tree, project, only=slurm)) and time.monotonic() < deadline:
            time.sleep(0.1)
        if left:
            problems.append(f"stop {k}: left running: {', '.join(left[:5])}")
            for item in left:
                with contextlib.suppress(OSError):
                    os.kill(int(item.split()[1]), signal.SIGKILL)
        if slurm and rng.random() < args.task_kill_share:
            # %A: the job id of the array task itself, which scontrol listpids takes
            tasks = [line.split()[0] for line in subprocess.run(
                ["squeue", "-h", "-t", "R", "-r", "-o", "%A %Z"], capture_output=True, text=True, check=True).stdout.splitlines()
                if str(project) in line]
            if tasks:
                pids = [int(line.split()[0]) for line in subprocess.run(
                    ["scontrol", "listpids", rng.choice(tasks)], capture_output=True, text=True, check=False).stdout.splitlines()
                    if line.split() and line.split()[0].isdigit()]
                if pids:
                    task_kills += 1
                for pid in pids:
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
        if slurm and rng.random() < args.cancel_share:
            cancels += 1
            c = subprocess.run([sys.executable, "-m", "sweepc", "cancel"], cwd=project, env=env, capture_output=True, text=True)
            if c.returncode != 0 or sweepc_traceback(c.stderr):
                problems.append(f"stop {k}: sweepc cancel: exit status {c.returncode}: {c.stderr.strip()[-500:]}")
        bad = wrong_files(project, args.psets)  # (SLURM's tasks may still be running and writing)
        problems += [f"stop {k}: {b}" for b in bad[:10]]
        print(f"stop {k + 1}/{args.stops}: {len(bad)} wrong", flush=True)

    (project / "FAIL").unlink()
    final = [sys.executable, "-m", "sweepc", "build", "-j", "2", "--backend", args.backend, *(["--wait"] if slurm else [])]
    last = subprocess.run(final, cwd=project, env=env, capture_output=True, text=True)
    if last.returncode != 0:
        problems.append(f"the final build: exit status {last.returncode}: {last.stderr.strip()[-300:]}; "
                        f"its output ended: {last.stdout.strip()[-600:]}")
    again = subprocess.run([sys.executable, "-m", "sweepc", "build", *(["--backend", "slurm"] if slurm else [])],
                           cwd=project, env=env, capture_output=True, text=True)
    if "nothing to do" not in again.stdout:
        problems.append(f"the build after the final one did something: {again.stdout.strip()[-300:]}")
    import sweepc

    problems += wrong_files(project, args.psets)[:10]
    log = project / ".sweepc" / "conductor.log"
    if log.exists() and sweepc_traceback(log.read_text(errors="replace")):
        problems.append(f"a conductor printed a traceback: see {log}")
    if duplicates.exists():
        problems.append(f"jobs ran twice at once: {' '.join(sorted(set(duplicates.read_text().split())))[:300]}")
    if slurm:  # nothing of the project's left in SLURM's queue (it would write into finished jobs)
        q = subprocess.run(["squeue", "-h", "-o", "%i %T %Z"], capture_output=True, text=True, check=True).stdout.splitlines()
        left = [line for line in q if str(project) in line]
        if left:
            problems.append(f"left in SLURM's queue after the final build: {'; '.join(left[:5])}")
    if sweepc.load(project).plan().run:
        problems.append("jobs still to run after the final build")
    table = sweepc.load(project).results("f")
    if len(table) != args.psets or "b" not in table or "c.d" not in table or not (
            (table["b"] == table["a"] * 2) & (table["c.d"] == table["a"] + 1)).all():
        problems.append(f"the results table of f is not every pset's right values ({len(table)} rows)")

    print(f"{args.psets} psets, {args.stops} builds stopped at random ({kills} SIGKILL, {sigints} SIGINT, {sigterms} SIGTERM, "
          f"{ended} ended before their stop{f'; {detached} with --detach, {cancels} sweepc cancel, {task_kills} array tasks killed' if slurm else ''}) in {time.monotonic() - t0:.0f} s; "
          f"project {project}")
    return verdict(problems)


if __name__ == "__main__":
    sys.exit(main())
