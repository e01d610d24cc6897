"""CLI verbs that build and inspect state: build, status, clean, runs.

Part of the CLI layer (with cli.py): it prints; nothing below it does."""

from __future__ import annotations

import argparse
import contextlib
import errno
import io
import json
import os
import shutil
import signal
import stat
import sys
import time
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, TextIO, cast

from sweepc.errors import UsageError, plural
from sweepc.backends import names as backend_names
from sweepc.plan.store import DB_NAME, Store, state_dir

if TYPE_CHECKING:  # (a no-op build answered by its certificate imports none of these: plan/noop.py)
    from sweepc.api import Study
    from sweepc.backends.base import Backend, Summary
    from sweepc.lang.graph import BuildGraph, Job
    from sweepc.plan.planner import Plan
    from sweepc.plan.store import Outcome

from sweepc.cli.common import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_MACHINE, EXIT_OK, arrow_frees, study_of, sweepfile_of, text_tables


def register(sub: Any) -> None:
    c = sub.add_parser("build", help="run what is out of date")
    c.add_argument("targets", nargs="*", metavar="TARGET", help="RULE, RULE[a=1,b=2] or an output path (default: everything)")
    c.add_argument("-j", "--jobs", type=_positive, metavar="N", help="run at most N cpus' worth of jobs at once (default: all cores)")
    c.add_argument("-n", "--dry-run", action="store_true", help="say what would run, and why, without running it")
    c.add_argument("--explain", action="store_true", help="give every reason each job runs")
    c.add_argument("-p", "--print-commands", action="store_true",
                   help="with -n: under each job, its folder and the command it would run (make -n, snakemake -np)")
    c.add_argument("--backend", choices=backend_names(), default="local", help="where jobs run (default: local)")
    c.add_argument("-k", "--keep-going", action="store_true", help="after a failure, run everything that does not depend on it")
    c.add_argument("--no-time-limits", action="store_true", help="local, dask: let jobs run past their rule's `time` resource")
    c.add_argument("--force", action="append", default=[], metavar="RULE", help="rerun RULE and everything downstream of it")
    c.add_argument("--where", metavar="EXPR", help="only psets for which EXPR holds, e.g. 'a > 1 and b == 20'")
    c.add_argument("--psets", metavar="START:STOP", help="only this slice of each rule's psets (Python slice, STOP excluded)")
    c.add_argument("--wait", action="store_true", help="slurm: wait until the submitted jobs finish")
    c.add_argument("--render-only", action="store_true", help="slurm: write job scripts and submit.sh, submit nothing")
    c.add_argument("--detach", action="store_true",
                   help="slurm: what --wait does, in a background process (a conductor; log in .sweepc/conductor.log)")
    c.add_argument("--conductor", action="store_true", help=argparse.SUPPRESS)  # the process --detach starts
    c.add_argument("--git-commit", action="store_true", help="commit the sweepfile and the files it names first, with the run id in the message")
    c.set_defaults(func=cmd_build)

    c = sub.add_parser("results", help="one table of parameters, statuses and results")
    c.add_argument("--rule", metavar="R", help="one rule's table (default: one table of every per-pset rule)")
    c.add_argument("--history", action="store_true", help="one row per job per run that produced results")
    c.add_argument("--where", metavar="EXPR", help="only psets for which EXPR holds")
    c.add_argument("--psets", metavar="START:STOP", help="only this slice of the rule's psets")
    c.add_argument("--columns", metavar="A,B,...", help="only these columns, in this order")
    c.add_argument("--all-columns", action="store_true", help="table format: every column, bookkeeping too (csv, json, parquet always have them)")
    c.add_argument("--format", choices=("table", "csv", "json", "parquet"),
                   help="output format (default: from -o FILE's ending, .csv .json .parquet; else table; parquet needs -o)")
    c.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of the terminal")
    c.set_defaults(func=cmd_results)

    c = sub.add_parser("resources", help="what each rule's jobs used against what they asked for, and a resources: line to use")
    c.add_argument("--rule", metavar="R", help="only rule R")
    c.set_defaults(func=cmd_resources)

    c = sub.add_parser("cancel", help="stop what runs for this project: a build in another terminal, the conductor, SLURM jobs")
    c.set_defaults(func=cmd_cancel)

    c = sub.add_parser("runs", help="every build that ran something, with its git commit")
    c.add_argument("--format", choices=("table", "csv", "json"), default="table", help="output format (default: table)")
    c.set_defaults(func=cmd_runs)

    c = sub.add_parser("status", help="done / stale / failed / never built per rule")
    c.add_argument("--rule", action="append", default=[], metavar="R", help="only rule R (repeatable)")
    c.add_argument("--where", metavar="EXPR", help="only psets for which EXPR holds")
    c.add_argument("--psets", metavar="START:STOP", help="only this slice of each per-pset rule's psets")
    c.add_argument("--format", choices=("table", "json"), default="table", help="output format (default: table)")
    c.set_defaults(func=cmd_status)

    c = sub.add_parser("view", help="a tree of symlinks to the job folders, named by parameters")
    c.add_argument("dir", metavar="DIR", help="the folder to make or update, e.g. view/")
    c.add_argument("--rule", metavar="R", help="only rule R (default: every rule)")
    c.add_argument("--where", metavar="EXPR", help="only psets for which EXPR holds")
    c.set_defaults(func=cmd_view)

    c = sub.add_parser("clean", help="remove outputs, batch files or orphans")
    c.add_argument("what", nargs="?", choices=("outputs", "temp", "batch", "orphans", "all"), default="outputs",
                   help="outputs (default): job folders and records; temp: temp() outputs only (nothing becomes stale); batch: SLURM scripts and logs; orphans: psets no longer in the sweepfile; all: workdir and .sweepc/")
    c.add_argument("--rule", action="append", default=[], metavar="R", help="only rule R (repeatable)")
    c.add_argument("--where", metavar="EXPR", help="only psets for which EXPR holds")
    c.add_argument("--psets", metavar="START:STOP", help="only this slice of each per-pset rule's psets")
    c.add_argument("-n", "--dry-run", action="store_true", help="list what would be removed")
    c.add_argument("-y", "--yes", action="store_true", help="do not ask before 'clean all'")
    c.set_defaults(func=cmd_clean)


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text}") from None
    if n < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return n


def _study(args: argparse.Namespace) -> Study:
    return study_of(args)


def _rel(g: BuildGraph, p: Path) -> str:
    try:
        return os.path.relpath(p)
    except (ValueError, OSError):  # (OSError: the working folder was removed meanwhile)
        return str(p)


# ---- build --------------------------------------------------------------------


def print_plan(p: Plan, explain: bool, out: TextIO, commands: bool = False) -> None:
    jobs, reasons = p.graph.jobs, p.reasons
    g = p.graph
    lines: list[str] = []
    wd = _rel(g, g.workdir_path) if commands else ""
    for i in p.run:
        shown = reasons[i] if explain else reasons[i][:1]
        lines.append(f"run {jobs[i].label}: {'; '.join([r.text for r in shown])}\n")
        if commands:
            lines.extend(_command_lines(g, jobs[i], wd))
        if len(lines) >= 4096:
            out.writelines(lines)
            lines.clear()
    out.writelines(lines)
    for i, jid in p.queued.items():
        out.write(f"skip {g.jobs[i].label}: queued as job {jid}\n")
    counts = p.counts_by_rule()
    parts = [f"{rule} {counts[rule]}" for rule in (r.name for r in g.rules) if rule in counts]
    out.write(f"{len(p.run)} of {plural(len(p.selected), 'job')} to run" + (f" ({', '.join(parts)})" if parts else "") + f", {p.uptodate} up to date\n")


def _command_lines(g: BuildGraph, job: Job, wd: str) -> list[str]:
    """build -n -p: the job's folder (its working directory) and what runs
    there, indented; as the shell gets it, parameter values quoted."""
    py = g.rule(job.rule).python
    if py is not None:
        body = [f"python: {py[0]}:{py[1]}(pset)"]
    else:
        body = job.command.splitlines() or [""]
    import shlex

    return [f"    cd {shlex.quote(f'{wd}/{job.reldir}')}\n", *(f"    {line}\n" for line in body)]


def print_unknown_outputs(p: Plan, out: TextIO) -> None:
    from sweepc.api import unknown_outputs

    n = unknown_outputs(p)
    if n:
        store = _rel(p.graph, state_dir(p.graph.root) / DB_NAME)
        out.write(f"sweepc: the state store {store} is new, but {n} of the jobs to run already have outputs in "
                  f"{_rel(p.graph, p.graph.workdir_path)}/; it cannot tell they are up to date, so they run again\n")


class Progress:
    """Counts jobs and shows them: one rewritten line on a terminal, a plain
    line every few seconds otherwise, and failures as they happen."""

    def __init__(self, total: int, out: TextIO) -> None:
        self.total, self.out = total, out
        self.tty = out.isatty()
        self.done = self.failed = self.running = 0
        self.t0 = time.monotonic()
        self.last = 0.0 if self.tty else self.t0  # off a terminal: the first line after `every` s
        self.every = 5.0

    def job_started(self, job: Job, attempt: int) -> None:
        self.running += 1
        self.show()

    def job_ended(self, job: Job, outcome: Outcome, will_retry: bool) -> None:
        self.running -= 1
        if outcome.status == "done":
            self.done += 1
        elif will_retry and outcome.status == "timeout":
            self.line(f"{job.label} reached its time limit, retrying (attempt {outcome.attempts + 1})")
        elif will_retry:
            self.line(f"{job.label} failed (exit {outcome.exit_code}), retrying (attempt {outcome.attempts + 1})")
        elif outcome.status == "timeout":
            self.failed += 1
            self.line(f"FAILED {job.label} (time limit reached)")
        elif outcome.status == "failed":
            self.failed += 1
            why = "exited 0 but its outputs or results files were missing or unsound" if outcome.exit_code == 0 else f"exit {outcome.exit_code}"
            self.line(f"FAILED {job.label} ({why})")
        self.show()

    def text(self) -> str:
        el = time.monotonic() - self.t0
        finished = self.done + self.failed
        eta = ""
        if 0 < finished < self.total:
            eta = f", ETA {_dur(el / finished * (self.total - finished))}"
        return f"[{finished}/{self.total}] {self.done} done, {self.running} running, {self.failed} failed, {_dur(el)} elapsed{eta}"

    def show(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.tty:
            if force or now - self.last > 0.1:
                self.out.write("\r\033[K" + self.text())
                self.out.flush()
                self.last = now
        elif force or now - self.last > self.every:
            self.out.write(self.text() + "\n")
            self.out.flush()
            self.last = now

    def line(self, text: str) -> None:
        if self.tty:
            self.out.write("\r\033[K")
        self.out.write(text + "\n")
        self.out.flush()

    def close(self) -> None:
        if self.tty:
            self.out.write("\r\033[K")
            self.out.flush()


def _dur(s: float) -> str:
    if s < 60:
        return f"{s:.1f}s"
    m, s = divmod(int(s), 60)
    if m < 60:
        return f"{m}m{s:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m"


def print_summary(g: BuildGraph, s: Summary, out: TextIO) -> None:
    for f in s.failed:
        out.write(f"FAILED {f.label}: {f.message}\n  log: {_rel(g, f.log)}\n")
        out.writelines(f"  | {line}\n" for line in f.tail)
    bits = [f"{s.done} done"]
    if s.failed:
        bits.append(f"{len(s.failed)} failed")
    if s.skipped:
        bits.append(f"{s.skipped} not run because an input failed")
    if s.not_started:
        # Fix: the -k hint was also given after Ctrl-C, where no job had failed
        hint = " (use -k to keep going after a failure)" if s.failed and not s.interrupted else ""
        bits.append(f"{s.not_started} not started{hint}")
    if s.interrupted:
        bits.append(f"{len(s.interrupted)} interrupted")
    bits.append(f"{s.uptodate} up to date")
    out.write(f"sweepc: {', '.join(bits)} in {_dur(s.elapsed)}\n")


# True when sweepc is the whole process (the `sweepc` command), False when
# main() is called in-process (tests, notebooks): see _TermAsInterrupt.
DEAF_AFTER_STOP = False


class _TermAsInterrupt:
    """SIGTERM stops a build the way Ctrl-C does, and only the first stop
    signal counts: Ctrl-C pressed twice (or SIGTERM after Ctrl-C) must not cut
    short the orderly stop the first one started (killing the jobs, recording
    them interrupted, closing the store), which ended in death by SIGINT
    (exit -2) when the second KeyboardInterrupt escaped that clean-up. Later
    SIGINT/SIGTERM are swallowed until the command is done, and, when sweepc
    runs as its own process (DEAF_AFTER_STOP), until it has exited: the
    interpreter's shutdown puts back SIG_DFL, and a Ctrl-C landing there killed
    sweepc by the signal after it had printed its summary. The clean-up is
    bounded (the jobs' grace period, then SIGKILL). Ctrl-\\ still kills."""

    def __enter__(self) -> None:
        self.stopped = False

        def later(signum: int, frame: FrameType | None) -> None:
            pass  # a stop is under way already

        def first(signum: int, frame: FrameType | None) -> None:
            self.stopped = True
            signal.signal(signal.SIGINT, later)
            signal.signal(signal.SIGTERM, later)
            raise KeyboardInterrupt

        self.old = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))
        if self.old[0] == signal.SIG_IGN:  # started in the background (sh: cmd &): stay deaf to Ctrl-C
            signal.signal(signal.SIGTERM, first)
        else:
            signal.signal(signal.SIGINT, first)
            signal.signal(signal.SIGTERM, first)

    def __exit__(self, *exc: object) -> None:
        if self.stopped and DEAF_AFTER_STOP:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            return
        signal.signal(signal.SIGINT, self.old[0])
        signal.signal(signal.SIGTERM, self.old[1])


def pending_notes(study: Study) -> list[str]:
    """Sweeps whose samples a rule makes that is not built yet (or whose
    output, there, cannot be read as samples: what a failed run left)."""
    g = study.graph
    notes = []
    for name, rules in g.pending.items():
        unread = [g.unread[r] for r in sorted(rules) if r in g.unread]
        if unread:
            notes.append(f"sweepc: sweep '{name}' cannot read its samples: {unread[0].message}; `sweepc build` first runs "
                         f"rule '{sorted(r for r in rules if r in g.unread)[0]}' again if its last run failed or it is out of date\n")
        else:
            notes.append(f"sweepc: sweep '{name}' reads the output of {', '.join(f'rule {r!r}' for r in sorted(rules))}, which is not built yet: "
                         f"its psets, and the jobs over them, are known once `sweepc build` has made it\n")
    return notes


def nothing_to_do(p: Plan) -> str:
    queued = ""
    if p.queued:
        ids = sorted({jid.partition("_")[0] for jid in p.queued.values()}, key=lambda s: (len(s), s))
        queued = f", {len(p.queued)} still queued in SLURM as job{'s' if len(ids) > 1 else ''} {', '.join(ids)}"
    return f"sweepc: nothing to do ({plural(p.uptodate, 'job')} up to date{queued})\n"


def with_overrides(note: str, defines: Sequence[str]) -> str:
    """A note's `sweepc ...` commands with this command's -D overrides in
    them: `sweepc status` or `sweepc build --wait` without them would be
    about the sweepfile's own psets, not those this build submitted."""
    if not defines or "`sweepc " not in note:
        return note
    import shlex

    return note.replace("`sweepc ", "`sweepc " + " ".join(f"-D {shlex.quote(d)}" for d in defines) + " ")


class _Reporter:
    """The backend's notes as lines; jobs to the progress display, if any."""

    def __init__(self, out: TextIO, defines: Sequence[str] = ()) -> None:
        self.out = out
        self.defines = defines
        self.progress: Progress | None = None

    def job_started(self, job: Job, attempt: int) -> None:
        if self.progress is not None:
            self.progress.job_started(job, attempt)

    def job_ended(self, job: Job, outcome: Outcome, will_retry: bool) -> None:
        if self.progress is not None:
            self.progress.job_ended(job, outcome, will_retry)

    def note(self, text: str) -> None:
        text = with_overrides(text, self.defines)
        if self.progress is not None:
            self.progress.line(text)
        else:
            self.out.write(text + "\n")
            self.out.flush()


def conductor_argv(args: argparse.Namespace, sweepfile: Path, flag: str) -> list[str]:
    """The command line of the conductor of `sweepc ... build --detach`: the
    same build, with --wait (and `flag`) for --detach. Every option that
    decides what is built, or how, goes along: -D overrides, -j, -k, --where,
    --psets, --force, --explain, --no-time-limits, --git-commit, the targets
    (-D and -k were left behind: the conductor built the sweepfile's own
    psets, and stopped at the first failure)."""
    child = [arg for d in args.define for arg in ("-D", d)]
    child += ["-f", str(sweepfile), "build", "--backend", args.backend, "--wait", flag]
    if args.jobs:
        child += ["-j", str(args.jobs)]
    for option, on in (("-k", args.keep_going), ("--explain", args.explain), ("--no-time-limits", args.no_time_limits),
                       ("--git-commit", args.git_commit)):
        if on:
            child.append(option)
    for option, value in (("--where", args.where), ("--psets", args.psets)):
        if value is not None:
            child += [option, value]
    for r in args.force:
        child += ["--force", r]
    return child + ["--", *args.targets]


def _detach(study: Study, args: argparse.Namespace, out: TextIO) -> int:
    """Start a conductor: this build with --wait, in the background."""
    from sweepc.backends.slurm.conductor import CONDUCTOR_FLAG, log_path

    c, code, text = study.detach(conductor_argv(args, study.graph.sweepfile.resolve(), CONDUCTOR_FLAG))
    if c is None:  # it ended before taking the lock: nothing to do, or a mistake
        out.write(text)
        return code if code is not None else EXIT_FAILED
    log = _rel(study.graph, log_path(study.root))
    out.write(f"sweepc: conductor started (pid {c.pid}); it submits, resubmits and waits in the background, log in {log}\n")
    out.write("sweepc: follow it with `sweepc status`, stop it and its jobs with `sweepc cancel`\n")
    return EXIT_OK


def cmd_build(args: argparse.Namespace) -> int:
    if _plain(args):
        from sweepc.plan import noop

        n = noop.check(sweepfile_of(args), getattr(args, "command_line", None) or ["sweepc", "build"])
        if n is not None:  # every job up to date, by the certificate of the last build (plan/noop.py)
            sys.stdout.write(f"sweepc: nothing to do ({plural(n, 'job')} up to date)\n")
            return EXIT_OK
    from sweepc import backends
    from sweepc.backends.base import BuildOptions

    backend = backends.get(args.backend)
    if args.print_commands and not args.dry_run:
        raise UsageError("--print-commands goes with -n (a dry run)", "see the commands first: sweepc build -n -p")
    if args.detach and not backend.batch:
        raise UsageError(f"--detach is for batch backends; the {args.backend} backend runs jobs while sweepc runs",
                         "use --backend slurm --detach")
    backend.validate(BuildOptions(jobs=args.jobs, keep_going=args.keep_going, wait=args.wait, render_only=args.render_only,
                                  detach=args.detach and not args.dry_run))
    if not args.dry_run:
        # a changed sweepfile's graph cache is written once the build has
        # planned, while its jobs run (not next to the planner)
        from sweepc.lang.project import hold_writes

        hold_writes()
    study = _study(args)
    out = sys.stdout
    if args.detach and not args.dry_run:
        return _detach(study, args, out)
    if args.dry_run:
        p = study.plan(args.targets, where=args.where, psets=args.psets, force=args.force, explain=args.explain,
                       backend=args.backend)
        pending = pending_notes(study)
        if not p.run:
            out.write(nothing_to_do(p))
            out.writelines(pending)
            return EXIT_OK
        # a dry run shows what the real build would refuse, and the plan all the same
        for w in study.check(p, args.backend, BuildOptions(jobs=args.jobs, dry_run=True)):
            out.write(f"sweepc: warning: {w}\n")
        print_unknown_outputs(p, out)
        print_plan(p, args.explain, out, args.print_commands)
        out.writelines(pending)
        return EXIT_OK
    guarded = _GuardedOut(out)
    code = _build(args, study, backend, cast(TextIO, guarded))
    lost = guarded.lost
    if lost is not None and lost.errno != errno.EPIPE:  # a closed pipe (| head) is the reader's choice
        sys.stderr.write(f"sweepc: cannot write the build's output to {_stream_name(out)} ({lost.strerror or lost}); "
                         "the build went on without it.\n  hint: see what it did with: sweepc status\n")
        return EXIT_MACHINE
    return code


def _plain(args: argparse.Namespace) -> bool:
    """A build of every job on this machine, as a no-op certificate vouches for (-j, -k and
    --no-time-limits change nothing when nothing runs)."""
    return (args.backend == "local" and not (args.targets or args.where or args.psets or args.force or args.define)
            and not (args.dry_run or args.explain or args.detach or args.conductor or args.git_commit
                     or args.wait or args.render_only))


class _GuardedOut(io.TextIOBase):
    """The build's output. A full disk (or a closed pipe) under it must not
    stop the build half-way: that killed the running jobs and left outcomes
    unrecorded, with a traceback. The first failed write sends the rest, and
    what the stream still buffers, to /dev/null; cmd_build reports it at the end."""

    def __init__(self, f: TextIO) -> None:
        super().__init__()
        self.f = f
        self.lost: OSError | None = None

    def write(self, s: str) -> int:
        if self.lost is None:
            try:
                self.f.write(s)
            except OSError as e:
                self._lose(e)
        return len(s)

    def flush(self) -> None:
        if self.lost is None:
            try:
                self.f.flush()
            except OSError as e:
                self._lose(e)

    def isatty(self) -> bool:
        return self.f.isatty()

    def _lose(self, e: OSError) -> None:
        self.lost = e
        with contextlib.suppress(OSError, ValueError, io.UnsupportedOperation):
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, self.f.fileno())
            os.close(null)


def _stream_name(f: TextIO) -> str:
    try:
        return os.path.relpath(os.readlink(f"/proc/self/fd/{f.fileno()}"))
    except (OSError, ValueError, io.UnsupportedOperation):
        return "the standard output"


def _build(args: argparse.Namespace, study: Study, backend: Backend, out: TextIO) -> int:
    from sweepc.backends.base import Interrupted

    reporter = _Reporter(out, args.define)
    # a batch backend that does not wait returns once its jobs are handed out
    shows_progress = not backend.batch or args.wait

    said_new = False

    def on_plan(p: Plan) -> None:  # once per stage: samples made by a rule come first
        nonlocal said_new
        if reporter.progress:
            reporter.progress.close()
            reporter.progress = None
        if not said_new:
            print_unknown_outputs(p, out)
            said_new = True
        if args.explain and p.run:
            print_plan(p, True, out)
        if p.run and shows_progress and not args.render_only:
            reporter.progress = Progress(len(p.run), out)
            if args.conductor:  # its log: failures and retries as they happen, counts once a minute
                reporter.progress.every = 60.0

    argv = getattr(args, "command_line", None) or ["sweepc", "build", *args.targets]
    # the summary is printed inside too: a second Ctrl-C must not cut it short either
    with _TermAsInterrupt():
        try:
            result = study.build(
                args.targets, jobs=args.jobs, keep_going=args.keep_going, force=args.force, where=args.where,
                psets=args.psets, reporter=reporter, argv=argv, on_plan=on_plan, git_commit=args.git_commit,
                time_limits=not args.no_time_limits,
                explain=args.explain,  # fix: without it `build --explain` printed only each job's first reason
                backend=args.backend, wait=args.wait, render_only=args.render_only,
            )
        except Interrupted as e:
            if reporter.progress:
                reporter.progress.close()
            print_summary(study.graph, e.summary, out)
            out.write("sweepc: interrupted; the jobs that were running are recorded as interrupted and will rerun\n")
            return EXIT_INTERRUPTED
    if reporter.progress:
        reporter.progress.close()
    if result.run_id is None and result.summary is None and not result.notes:
        out.write(nothing_to_do(result.plan))
        return EXIT_OK
    if result.summary is not None:
        print_summary(study.graph, result.summary, out)
    out.writelines(with_overrides(n, args.define) + "\n" for n in result.notes)
    s = result.summary
    if result.status == "interrupted":
        return EXIT_INTERRUPTED
    if s is None:  # nothing ran here (a batch backend's build that submitted nothing more)
        return EXIT_FAILED if result.status == "failed" else EXIT_OK
    if result.status == "submitted":  # only the local: true jobs that ran have an outcome yet
        return EXIT_FAILED if s.failed else EXIT_OK
    return EXIT_OK if s.ok else EXIT_FAILED


# ---- status ---------------------------------------------------------------------

STATES = ("done", "stale", "pending", "running", "failed", "timeout", "interrupted", "cancelled", "skipped", "never built")


def status_rows(study: Study, rules: Sequence[str], where: str | None, psets: str | None = None) -> list[dict[str, Any]]:
    g = study.graph
    study.refresh()  # take in the completion records of SLURM jobs first
    p, states, retried = study.status(where=where, targets=rules, psets=psets)
    rows: dict[str, dict[str, Any]] = {}
    # (status --rule 'sim[a=1]' printed an empty table: the rows of the rules its targets name)
    from sweepc.plan.selection import target_rules

    wanted = target_rules(g, rules) if rules else set()
    for r in g.rules:
        if not wanted or r.name in wanted:
            rows[r.name] = {"rule": r.name, "jobs": 0, **{s: 0 for s in STATES}, "retried": 0}
    temps = {r.name: [o.path for o in r.outputs if o.temp] for r in g.rules if any(o.temp for o in r.outputs)}
    for name in temps:
        if name in rows:
            rows[name]["temp_removed"] = 0
    for i in p.selected:
        job = g.jobs[i]
        row = rows.get(job.rule)
        if row is not None:
            row["jobs"] += 1
            state = states[i]
            row[state] += 1
            # done, with its temp() outputs removed since (rebuilt when a reader must run)
            if state == "done" and job.rule in temps:
                d = g.job_dir(job)
                if any(not os.path.lexists(d / n) for n in temps[job.rule]):
                    row["temp_removed"] += 1
            if i in retried:
                row["retried"] += 1  # its last run is on (or ended after) its second attempt or later
    return list(rows.values())


def cmd_status(args: argparse.Namespace) -> int:
    study = _study(args)
    rows = status_rows(study, args.rule, args.where, args.psets)
    c = study.conductor()
    conductor_line = ""
    if c is not None:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(c.started))
        from sweepc.backends.slurm.conductor import log_path

        log = _rel(study.graph, log_path(study.root))
        conductor_line = f"sweepc: a conductor is running since {since} (pid {c.pid}); log: {log}\n"
        # json: the same, on every row (the conductor builds every rule); absent when none runs
        for r in rows:
            r["conductor"] = {"pid": c.pid, "host": c.host, "since": since, "started": c.started, "log": log}
    if args.format == "json":
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return EXIT_OK
    headers = ["rule", "jobs", *STATES, "retried"]
    widths = [max(len(h), *(len(str(r[h])) for r in rows)) if rows else len(h) for h in headers]
    sys.stdout.write("  ".join(h.ljust(w) if k == 0 else h.rjust(w) for k, (h, w) in enumerate(zip(headers, widths))) + "\n")
    for r in rows:
        sys.stdout.write("  ".join(str(r[h]).ljust(w) if k == 0 else str(r[h]).rjust(w) for k, (h, w) in enumerate(zip(headers, widths))) + "\n")
    for r in rows:
        if r.get("temp_removed"):
            sys.stdout.write(f"{r['rule']}: {r['temp_removed']} of its done jobs have their temp() outputs removed (rebuilt when a job that reads them must run)\n")
    sys.stdout.write(conductor_line)
    return EXIT_OK


# ---- view -----------------------------------------------------------------------


def cmd_view(args: argparse.Namespace) -> int:
    study = _study(args)
    v = study.view(args.dir, rule=args.rule, where=args.where)
    sys.stdout.write(f"sweepc: view {args.dir}: {v.links} links ({v.made} new or changed, {v.removed} removed)\n")
    return EXIT_OK


# ---- clean ----------------------------------------------------------------------
#
# clean removes only what sweepc made, whatever the settings say: job folders
# that hold sweepc's marker (jobdir.MARKER_NAME) or that the store has a record
# for, .sweepc/, and folders that became empty on the way up to the workdir.
# Never the workdir itself when anything else is in it, never anything outside
# the project, never through a symbolic link (below the workdir).


def _clean_workdir(g: BuildGraph) -> Path:
    """The workdir, refused unless it is a folder inside the project (the
    compiler checks this too; clean does not rely on it)."""
    root = Path(os.path.normpath(g.root))
    wd = Path(os.path.normpath(g.root / g.workdir))
    sd = state_dir(root)
    if wd != root and root not in wd.parents or wd == sd or sd in wd.parents:
        raise UsageError(
            f"refusing to clean: the workdir {wd} is not a folder inside the project {root}",
            'set workdir to a folder inside the project, e.g. workdir = "calc"',
        )
    return wd


def _real_dir(p: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(p).st_mode)
    except OSError:
        return False


def _linked_on_the_way(wd: Path, reldir: str) -> Path | None:
    """The first folder from the workdir down to wd/reldir that is a link (or not a folder)."""
    p = wd
    for name in reldir.split("/"):
        p = p / name
        if not _real_dir(p):
            return p
    return None


def _scan(wd: Path, skip: Path) -> tuple[list[tuple[str, str, Path]], list[Path]]:
    """Every folder shaped like a job folder (<rule>/<hh>/<hh...>, real
    folders all the way below the workdir, which may itself be a link), and
    what else is there (links, files, other folders), looking no deeper than
    job folders; `skip` (.sweepc) is neither."""
    found: list[tuple[str, str, Path]] = []
    other: list[Path] = []
    if not wd.is_dir():
        return found, other

    def entries(d: Path) -> list[os.DirEntry[str]]:
        with os.scandir(d) as it:
            return sorted(it, key=lambda e: e.name)

    for rule in entries(wd):
        if Path(rule.path) == skip:
            continue
        if not rule.is_dir(follow_symlinks=False):
            other.append(Path(rule.path))
            continue
        shards = entries(Path(rule.path))
        if not shards:  # an empty folder sweepc did not empty: not ours to remove
            other.append(Path(rule.path))
        for shard in shards:
            if not shard.is_dir(follow_symlinks=False) or len(shard.name) != 2:
                other.append(Path(shard.path))
                continue
            jobs = entries(Path(shard.path))
            if not jobs:
                other.append(Path(shard.path))
            for d in jobs:
                if d.is_dir(follow_symlinks=False) and d.name.startswith(shard.name) and len(d.name) > 2:
                    found.append((rule.name, d.name, Path(d.path)))
                else:
                    other.append(Path(d.path))
    return found, other


def _made_by_sweepc(rule: str, h: str, d: Path, records: Collection[tuple[str, str]]) -> bool:
    from sweepc.backends.jobdir import is_marked

    return (rule, h) in records or is_marked(d, f"{rule}/{h[:2]}/{h}")


# what `clean all|batch|orphans` remove: all of it, whatever --rule, --where or --psets say
_CLEANS_WHOLE = {
    "all": "it removes the whole workdir and .sweepc/",
    "batch": "it removes every SLURM script and log",
    "orphans": "it removes every pset no longer in the sweepfile",
}


def cmd_clean(args: argparse.Namespace) -> int:
    narrowed = [(o, v) for o, vs in (("--rule", args.rule or ()), ("--where", (args.where,) if args.where else ()),
                                     ("--psets", (args.psets,) if args.psets else ())) for v in vs]
    if narrowed and args.what in _CLEANS_WHOLE:
        # (clean all --where 'a == 1' -y removed every job folder and the history)
        import shlex

        option = narrowed[0][0]
        raise UsageError(f"clean {args.what} does not go with {option}: {_CLEANS_WHOLE[args.what]}",
                         "to remove some jobs' outputs: sweepc clean outputs " + " ".join(f"{o} {shlex.quote(v)}" for o, v in narrowed))
    if args.what == "orphans" and args.define:
        # the psets of the overridden study are not the sweepfile's: its own would be the orphans
        raise UsageError("clean orphans does not go with -D: it would take the sweepfile's own psets for orphans and remove them",
                         "run it without -D: sweepc clean orphans -n shows what it removes")
    study = _study(args)
    g = study.graph
    root, sd = g.root, state_dir(g.root)
    out = sys.stdout
    verb = "would remove" if args.dry_run else "removed"
    if args.what == "all":
        return _clean_all(args, g, out)
    if args.what == "temp":
        with _holding_lock(root) if not args.dry_run and sd.exists() else contextlib.nullcontext():
            return _clean_temp(args, g, out, verb)
    if args.what == "batch":
        batch = sd / "slurm"
        if not os.path.lexists(batch):
            out.write("sweepc: nothing to clean\n")
            return EXIT_OK
        if not _real_dir(batch):
            raise UsageError(f"refusing to remove {_rel(g, batch)}: it is not a folder (a symbolic link?)", "remove it yourself if it is not needed")
        n = sum(1 for _ in batch.rglob("*") if _.is_file())
        if not args.dry_run:
            _refuse_while_queued(g)  # queued tasks still read their scripts from there
            shutil.rmtree(batch)
        out.write(f"{verb} {_rel(g, batch)}/ ({plural(n, 'file')}: job scripts, submit scripts, scheduler logs)\n")
        return EXIT_OK
    wd = _clean_workdir(g)
    # Fix: take the build lock BEFORE listing. It used to be checked after every folder
    # had been printed as "removed", so a clean refused because a build was running
    # still claimed to have removed them; it is now also held until the removal is done.
    # (no .sweepc/ yet: no build has ever held the lock, and taking it would create one)
    with _holding_lock(root) if not args.dry_run and sd.exists() else contextlib.nullcontext():
        return _clean_jobs(args, g, wd, out, verb)


def _clean_jobs(args: argparse.Namespace, g: BuildGraph, wd: Path, out: TextIO, verb: str) -> int:
    root = g.root
    store = Store.open(root, create=False)
    kept: list[str] = []
    try:
        recs = store.records()
        if args.what == "orphans":
            if g.pending:  # the jobs over samples not built yet are unknown, not orphans
                name, rules = next(iter(g.pending.items()))
                raise UsageError(
                    f"cannot tell orphans while sweep '{name}' waits for the output of rule '{sorted(rules)[0]}'",
                    "build it first: sweepc build " + sorted(rules)[0],
                )
            known = {(j.rule, j.hash) for j in g.jobs}
            found, _ = _scan(wd, state_dir(root))
            dirs = [(r, h, d) for r, h, d in found if (r, h) not in known]
            stale_records = [k for k in recs if k not in known]
        else:
            from sweepc.plan.selection import select

            if not args.rule and not args.where and not args.psets:
                ids = list(range(len(g.jobs)))
            else:
                ids = select(g, args.rule, where=args.where, psets=args.psets, with_ancestors=False)
            dirs = []
            for i in ids:
                job = g.jobs[i]
                d = wd / job.reldir
                if not os.path.lexists(d):
                    continue
                link = _linked_on_the_way(wd, job.reldir)
                if link is not None:
                    kept.append(f"kept {_rel(g, d)}/: {_rel(g, link)} is a symbolic link or not a folder; sweepc removes nothing through it")
                    continue
                dirs.append((job.rule, job.hash, d))
            stale_records = [(g.jobs[i].rule, g.jobs[i].hash) for i in ids if (g.jobs[i].rule, g.jobs[i].hash) in recs]
        mine = []
        for r, h, d in dirs:
            if _made_by_sweepc(r, h, d, recs):
                mine.append(d)
            elif args.what != "orphans":  # an orphan scan meets every folder: say nothing of those not ours
                kept.append(f"kept {_rel(g, d)}/: no marker or record says sweepc made it")
        for line in kept:
            out.write(line + "\n")
        if not mine and not stale_records:
            out.write("sweepc: nothing to clean\n")
            return EXIT_OK
        failed = 0
        removed = 0
        for d in mine:
            if not args.dry_run:
                try:
                    shutil.rmtree(d)
                except OSError as e:
                    failed += 1
                    out.write(f"sweepc: cannot remove {_rel(g, d)}/: {e.strerror or e}\n")
                    continue
                _prune_empty(d.parent, wd)
            removed += 1
            out.write(f"{verb} {_rel(g, d)}/\n")
        if not args.dry_run:
            store.delete(stale_records)
        out.write(f"sweepc: {verb} {plural(removed, 'job folder')} and {plural(len(stale_records), 'record')}\n")
    finally:
        store.close()
    return EXIT_FAILED if failed else EXIT_OK


def _clean_all(args: argparse.Namespace, g: BuildGraph, out: TextIO) -> int:
    root, sd = g.root, state_dir(g.root)
    wd = _clean_workdir(g)
    found, other = _scan(wd, sd)
    store = Store.open(root, create=False)
    try:
        recs = set(store.records())
    finally:
        store.close()
    mine = [d for r, h, d in found if _made_by_sweepc(r, h, d, recs)]
    foreign = sorted(other + [d for r, h, d in found if d not in set(mine)])
    # the workdir itself goes only when nothing but sweepc's job folders is in it,
    # and never when it is a link (to scratch space, say): the link and its folder stay
    try:
        link = f" (a link to {os.readlink(wd)}; the link and its folder are kept)" if wd.is_symlink() else ""
    except OSError:
        link = " (a link; the link and its folder are kept)"
    whole_wd = bool(mine) and not foreign and wd != Path(os.path.normpath(root)) and not link
    link = link if not foreign else ""  # (what is kept in it is said below: the workdir stays for that)
    has_sd = os.path.lexists(sd)
    if not mine and not has_sd:
        out.write("sweepc: nothing to clean\n")
        return EXIT_OK
    if has_sd and not _real_dir(sd):
        raise UsageError(f"refusing to remove {_rel(g, sd)}: it is a symbolic link or not a folder", "remove it yourself")
    folders = f"{plural(len(mine), 'job folder')} in {_rel(g, wd)}/{link}"
    what = [f"{_rel(g, wd)}/" if whole_wd else folders] if mine else []
    what += [f"{_rel(g, sd)}/"] if has_sd else []
    keep = ""
    if foreign and mine:
        shown = ", ".join(_rel(g, p) for p in foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        keep = f"what sweepc did not make in {_rel(g, wd)}/: {shown}"
    if args.dry_run:
        for w in what:
            out.write(f"would remove {w}\n")
        if keep:
            out.write(f"would keep {keep}\n")
        return EXIT_OK
    if not args.yes:
        if not sys.stdin.isatty():
            raise UsageError("'clean all' removes every output and the state store", "add -y to confirm")
        answer = input(f"remove {', '.join(what)} with every output and record? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            out.write("sweepc: nothing removed\n")
            return EXIT_OK
    failed = 0
    # Fix: hold the build lock while removing (it was taken and released at once,
    # leaving a window for a build to start on a store about to vanish)
    with _holding_lock(root) if has_sd else contextlib.nullcontext():
        for d in mine:
            try:
                shutil.rmtree(d)
            except OSError as e:
                failed += 1
                out.write(f"sweepc: cannot remove {_rel(g, d)}/: {e.strerror or e}\n")
                continue
            _prune_empty(d.parent, wd)
        if whole_wd and not failed:
            with contextlib.suppress(OSError):
                wd.rmdir()
        if mine:
            # (the workdir may still be there: something appeared in it meanwhile)
            out.write(f"removed {what[0] if not os.path.lexists(wd) else folders}\n")
        if has_sd:
            try:
                shutil.rmtree(sd)
                out.write(f"removed {_rel(g, sd)}/\n")
            except OSError as e:
                failed += 1
                out.write(f"sweepc: cannot remove {_rel(g, sd)}/: {e.strerror or e}\n")
    if keep:
        out.write(f"kept {keep}\n")
    return EXIT_FAILED if failed else EXIT_OK


def _clean_temp(args: argparse.Namespace, g: BuildGraph, out: TextIO, verb: str) -> int:
    """Remove temp() outputs: a missing one never makes a job stale, so this
    only frees space; a job that reads one and must rerun rebuilds it."""
    from sweepc.backends.jobdir import remove_temp_outputs
    from sweepc.plan.selection import select

    _refuse_while_queued(g)  # a queued reader may still need them
    ids = select(g, args.rule, where=args.where, psets=args.psets, with_ancestors=False)
    temps = {r.name: [o.path for o in r.outputs if o.temp] for r in g.rules if any(o.temp for o in r.outputs)}
    n = 0
    for i in ids:
        job = g.jobs[i]
        for p in remove_temp_outputs(g, job, tuple(temps.get(job.rule, ())), dry_run=args.dry_run):
            out.write(f"{verb} {_rel(g, p)}\n")
            n += 1
    out.write(f"sweepc: {verb} {n} temp outputs\n" if n else "sweepc: nothing to clean\n")
    return EXIT_OK


def _refuse_while_queued(g: BuildGraph) -> None:
    from sweepc import backends

    store = Store.open(g.root, create=False)
    try:
        live = {k: v for name in backends.names() for k, v in backends.get(name).live(g, store).items()}
    finally:
        store.close()
    if live:
        raise UsageError(
            f"{plural(len(live), 'job')} of this project {'is' if len(live) == 1 else 'are'} queued or running in SLURM; their scripts are in .sweepc/slurm/",
            "wait for them, or stop them with: sweepc cancel",
        )


@contextlib.contextmanager
def _holding_lock(root: Path) -> Iterator[None]:
    from sweepc.plan.store import BuildLock

    with BuildLock(root) as lock:
        lock.acquire(["sweepc", "clean"])
        yield


def _prune_empty(d: Path, stop: Path) -> None:
    """Remove d and its parents while they are empty, up to (not including) stop."""
    while d != stop and stop in d.parents:
        try:
            d.rmdir()
        except OSError:
            return
        d = d.parent


# ---- results and runs -------------------------------------------------------------


# the format `results -o FILE` writes when --format is not given, by FILE's ending
_FORMAT_OF_ENDING = {".csv": "csv", ".json": "json", ".parquet": "parquet", ".pq": "parquet"}


def cmd_results(args: argparse.Namespace) -> int:
    if args.format is None:  # (-o results.csv wrote the terminal's table into a .csv file)
        ending = os.path.splitext(args.output or "")[1].lower()
        args.format = _FORMAT_OF_ENDING.get(ending, "table")
    if args.format == "parquet":
        arrow_frees()
    else:
        text_tables()  # before anything imports pandas
    from sweepc.lang.project import forget
    from sweepc.results.table import display_columns, write, write_to

    study = _study(args)
    if args.output is not None:
        study.refuse_output(args.output)
    study.refresh()  # take in the completion records of SLURM jobs first
    df = study.results(args.rule, where=args.where, psets=args.psets, columns=args.columns, history=args.history)
    if args.format == "table" and not args.columns and not args.all_columns:
        df = display_columns(df, history=args.history)
    # the graph is not needed to write the table: freed first (at 100k psets ~100 MB)
    forget(study.graph)
    del study
    if args.output is None:
        write_to(df, args.format, sys.stdout)
    else:
        write(df, args.format, args.output)
        sys.stderr.write(f"sweepc: wrote {plural(len(df), 'row')} to {args.output}\n")
    return EXIT_OK


def cmd_runs(args: argparse.Namespace) -> int:
    text_tables()  # before anything imports pandas
    from sweepc.results.table import write

    df = _study(args).runs()  # (its counts are integers, or gaps while a build runs)
    text = write(df, args.format, None)
    sys.stdout.write(text or "")
    return EXIT_OK


def cmd_resources(args: argparse.Namespace) -> int:
    from sweepc.lang.resources import format_time
    from sweepc.results.resources import Stats, format_mem

    usages = _study(args).resources(args.rule)

    def trio(st: Stats | None, fmt: str) -> str:
        return "-" if st is None else " / ".join(fmt.format(v) for v in (st.median, st.p95, st.max))

    def pct(x: float | None) -> str:
        return "-" if x is None else f"{x * 100:.0f}%"

    rows = []
    for u in usages:
        asked = [f"{u.cpus} cpu{'s' if u.cpus != 1 else ''}"]
        asked.append(format_mem(u.mem_mb) if u.mem_mb is not None else "mem -")
        asked.append(format_time(u.time_s) if u.time_s is not None else "time -")
        rows.append({
            "rule": u.rule, "jobs": str(u.jobs),
            "runtime s (median/p95/max)": trio(u.runtime_s, "{:.1f}"),
            "peak MB (median/p95/max)": trio(u.max_rss_mb, "{:.0f}"),
            "requested": ", ".join(asked),
            "time used": pct(u.time_eff), "mem used": pct(u.mem_eff), "cpu used": pct(u.cpu_eff),
            "hit time": str(u.hit_time), "hit mem": str(u.hit_mem),
        })
    out = sys.stdout
    if not rows:
        out.write("sweepc: no rules\n")
        return EXIT_OK
    headers = list(rows[0])
    widths = [max(len(h), *(len(r[h]) for r in rows)) for h in headers]
    out.write("  ".join(h.ljust(w) if k in (0, 4) else h.rjust(w) for k, (h, w) in enumerate(zip(headers, widths))).rstrip() + "\n")
    for r in rows:
        out.write("  ".join(r[h].ljust(w) if k in (0, 4) else r[h].rjust(w) for k, (h, w) in enumerate(zip(headers, widths))).rstrip() + "\n")
    for u in usages:
        if u.suggestion:
            out.write(f"{u.rule}: suggested {u.suggestion}\n")
        elif u.left_out:
            out.write(f"{u.rule}: no job has run to its end yet\n")
        else:
            out.write(f"{u.rule}: no job has run yet\n")
        if u.left_out:  # (their runtimes made the suggested time shorter than a whole run)
            out.write(f"{u.rule}: {plural(u.left_out, 'job')} interrupted or cancelled, left out (stopped before the end)\n")
    return EXIT_OK


def cmd_cancel(args: argparse.Namespace) -> int:
    c = _study(args).cancel()
    if c.build is not None:
        sys.stdout.write(f"sweepc: stopped the build running in this project (pid {c.build}); "
                         "the jobs it was running are recorded as interrupted\n")
    if c.conductor is not None:
        sys.stdout.write(f"sweepc: stopped the conductor (pid {c.conductor})\n")
    if not c.arrays and not c.jobs:
        if c.conductor is None and c.build is None:
            sys.stdout.write("sweepc: nothing to cancel\n")
        return EXIT_OK
    ids = ", ".join(c.arrays)
    sys.stdout.write(
        f"sweepc: cancelled {len(c.arrays)} job array{'s' if len(c.arrays) != 1 else ''} ({ids}); "
        f"{plural(c.jobs, 'job')} recorded as cancelled"
        + (f", {c.finished} had finished and were recorded as such" if c.finished else "")
        + "\n"
    )
    return EXIT_OK
