"""CLI verbs of the SLURM backend: `build --backend slurm` and `cancel`.

Part of the CLI layer (with cli.py and cli_build.py): it prints; the backend
below it tells a reporter."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, TextIO

from sweepc.cli.build import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    Progress,
    _study,
    _TermAsInterrupt,
    print_plan,
    print_summary,
)
from sweepc.errors import UsageError
from sweepc.lang.graph import Job
from sweepc.plan.planner import Plan
from sweepc.plan.store import BuildLock, Outcome, Store, new_run_id, state_dir


def register(sub: Any) -> None:
    c = sub.add_parser("cancel", help="cancel what this project has queued or running in SLURM")
    c.set_defaults(func=cmd_cancel)


def _argv(args: argparse.Namespace) -> list[str]:
    if sys.argv and sys.argv[0].endswith("sweepc"):
        return ["sweepc", *sys.argv[1:]]
    return ["sweepc", "build", "--backend", "slurm", *args.targets]


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _rel(p: os.PathLike[str] | str) -> str:
    try:
        return os.path.relpath(p)
    except ValueError:
        return str(p)


class _Reporter:
    """Array lines as they go out; the same progress display as local builds."""

    def __init__(self, out: TextIO, progress: Progress | None) -> None:
        self.out, self.progress = out, progress

    def array_submitted(self, a: Any) -> None:
        after = f" after {a.dependency}" if a.dependency else ""
        text = f"submitted {a.rule}: job {a.job_id}, {plural(a.psets, 'pset')} in {plural(a.tasks, 'task')}{after}"
        if self.progress is not None:
            self.progress.line(text)
        else:
            self.out.write(text + "\n")

    def job_started(self, job: Job, attempt: int) -> None:
        if self.progress is not None:
            self.progress.job_started(job, attempt)

    def job_ended(self, job: Job, outcome: Outcome, will_retry: bool) -> None:
        if self.progress is not None:
            self.progress.job_ended(job, outcome, will_retry)


def _nothing_to_do(p: Plan) -> str:
    queued = ""
    if p.queued:
        ids = sorted({jid.partition("_")[0] for jid in p.queued.values()}, key=lambda s: (len(s), s))
        queued = f", {len(p.queued)} still queued in SLURM as job{'s' if len(ids) > 1 else ''} {', '.join(ids)}"
    return f"sweepc: nothing to do ({p.uptodate} jobs up to date{queued})\n"


def cmd_build_slurm(args: argparse.Namespace) -> int:
    from sweepc.backends.slurm.backend import batch_dir, execute
    from sweepc.backends.slurm.records import sync
    from sweepc.backends.slurm.scheduler import SubprocessScheduler

    if args.render_only and args.wait:
        raise UsageError("--render-only submits nothing, so there is nothing to --wait for")
    study = _study(args)
    g = study.graph
    out = sys.stdout
    sched = SubprocessScheduler()
    if args.dry_run:
        store = Store.open(g.root, create=False)
        try:
            live = sync(g, store, sched)
            p = study._plan(store, args.targets, args.where, args.psets, args.force, args.explain, live=live)
        finally:
            store.close()
        if not p.run:
            out.write(_nothing_to_do(p))
        else:
            print_plan(p, args.explain, out)
        return EXIT_OK
    argv = _argv(args)
    with BuildLock(g.root) as lock:
        lock.acquire(argv)
        store = Store.open(g.root)
        try:
            live = sync(g, store, sched)
            p = study._plan(store, args.targets, args.where, args.psets, args.force, args.explain, live=live)
            store.put_sources(p.source_updates)
            if args.explain and p.run:
                print_plan(p, True, out)
            if not p.run:
                out.write(_nothing_to_do(p))
                return EXIT_OK
            if args.render_only:
                result = execute(p, store, new_run_id(), sched, _Reporter(out, None), render_only=True)
                for a in result.arrays:
                    after = f" after {a.dependency}" if a.dependency else ""
                    out.write(f"rendered {a.rule}: {_rel(a.script)}, {plural(a.psets, 'pset')} in {plural(a.tasks, 'task')}{after}\n")
                if result.submit_sh is not None:
                    out.write(f"sweepc: wrote {_rel(result.submit_sh)}; nothing was submitted (run it to submit)\n")
                if result.left:
                    out.write(f"sweepc: {result.left} jobs are not rendered: local: true jobs (a build runs them on this machine) and what needs them\n")
                return EXIT_OK
            return _submit(args, study, store, p, sched, out, argv, batch_dir(g.root))
        finally:
            store.close()


def _submit(args: argparse.Namespace, study: Any, store: Store, p: Plan, sched: Any, out: TextIO, argv: list[str], batch: Any) -> int:
    from sweepc.api import commit_project_files, git_state
    from sweepc.backends.slurm.backend import execute

    g = study.graph
    run_id = new_run_id()
    if getattr(args, "git_commit", False):
        commit_project_files(g.root, study.named_files(), run_id)
    commit, dirty = git_state(g.root, exclude=(state_dir(g.root), g.workdir_path))
    run_id, _seq = store.begin_run(argv, "slurm", commit, dirty, run_id=run_id)
    progress = Progress(len(p.run), out) if args.wait else None
    result = None
    try:
        with _TermAsInterrupt():
            result = execute(p, store, run_id, sched, _Reporter(out, progress), wait=args.wait, jobs=args.jobs)
    finally:
        s = result.summary if result is not None else None
        if result is None or result.interrupted:
            status = "interrupted"
        elif not args.wait:
            status = "submitted"
        else:
            status = "ok" if s is not None and s.ok and not result.left else "failed"
        store.end_run(run_id, s.done if s else 0, len(s.failed) if s else 0, p.uptodate, status)
    if progress is not None:
        progress.close()
    folder = _rel(result.folder)
    if result.summary is not None:
        print_summary(g, result.summary, out)
    if result.interrupted:
        out.write("sweepc: stopped waiting; what was submitted stays queued in SLURM "
                  "(see it with `sweepc status`, stop it with `sweepc cancel`)\n")
        return EXIT_INTERRUPTED
    if result.left:
        out.write(f"sweepc: {result.left} job{'s' if result.left != 1 else ''} wait for jobs that are not finished (local: true jobs run on this machine "
                  f"once their inputs are done): run `sweepc build --backend slurm` again later, or use --wait\n")
    if not args.wait:
        n = sum(a.psets for a in result.arrays)
        k = len(result.arrays)
        out.write(f"sweepc: submitted {n} job{'s' if n != 1 else ''} in {k} array{'s' if k != 1 else ''}; job scripts and logs in {folder}/\n")
        out.write("sweepc: follow them with `sweepc status`, wait with `sweepc build --backend slurm --wait`, stop them with `sweepc cancel`\n")
        s = result.summary
        return EXIT_OK if s is None or not s.failed else EXIT_FAILED
    s = result.summary
    return EXIT_OK if s is not None and s.ok else EXIT_FAILED


def cmd_cancel(args: argparse.Namespace) -> int:
    from sweepc.backends.slurm.backend import cancel
    from sweepc.backends.slurm.scheduler import SubprocessScheduler

    study = _study(args)
    g = study.graph
    if not (state_dir(g.root) / "state.db").exists():
        sys.stdout.write("sweepc: nothing to cancel\n")
        return EXIT_OK
    store = Store.open(g.root)
    try:
        c = cancel(g, store, SubprocessScheduler())
    finally:
        store.close()
    if not c.arrays and not c.jobs:
        sys.stdout.write("sweepc: nothing to cancel\n")
        return EXIT_OK
    ids = ", ".join(c.arrays)
    sys.stdout.write(
        f"sweepc: cancelled {len(c.arrays)} job array{'s' if len(c.arrays) != 1 else ''} ({ids}); "
        f"{c.jobs} jobs recorded as cancelled"
        + (f", {c.finished} had finished and were recorded as such" if c.finished else "")
        + "\n"
    )
    return EXIT_OK
