"""The journal: job ends that must survive the death of sweepc.

sweepc commits job ends to the store together, about once a second or less
often (local/backend.py, COMMIT_SECONDS, commit_gap), and with a queue in the spawner
(spawner.py) the next job starts the moment one ends, before sweepc has seen
that end. So that a job that finished is never run again because sweepc was
killed (SIGKILL, the out-of-memory killer) before its end reached the store,
its end is first appended to this file (``.sweepc/journal``). It has one
writer a build, never two at once:

* the spawner, when it queues the build's shell jobs (a plan without
  python: jobs): the end of every queued job, as it reaps it, before it
  starts the next;
* else sweepc's main process (local/backend.py, _Runner.journal_end and
  write_journal): the ends that came out done (python: jobs, and shell jobs
  started one by one), one write(2) for each wait's batch of them, before
  they wait in its memory for the next commit. An end a python: worker had
  sent and sweepc had not read yet when it died is lost: that job reruns.

The next build replays it into the store before it plans (``replay()``,
called by ``Study.build`` under the build lock, and by ``build -n``,
`status` and the like when no build is running). A normal build removes the
file once every end is in the store.

An entry is (tag, wait_status, start, end, max_rss_kb, cpu_s, interrupted),
marshal-ed behind its 4-byte little-endian length (``entry()``; the spawner
writes the same bytes itself, standard library only); tag is ``make_tag()``'s.
cpu_s is None when it was not measured.

An entry counts only for a job that exited 0 and was not interrupted, whose
store row is still the `planned` row of the run that started it (so nothing
recorded since is overwritten, and replaying twice changes nothing), and
whose folder passes the same end check as at run time (every output there,
results files sound): it is then recorded `done` with the fingerprint it was
started with. Anything else is left as it is: such a job runs again.
"""

from __future__ import annotations

import contextlib
import marshal
import os
from pathlib import Path
from typing import Any

from sweepc.lang.graph import BuildGraph
from sweepc.plan.store import Outcome, Store, state_dir

JOURNAL_NAME = "journal"


def journal_path(root: Path) -> Path:
    return state_dir(root) / JOURNAL_NAME


def make_tag(rule: str, hash_: str, reldir: str, run_id: str, attempt: int, fingerprint: str,
             cmd_hash: str, inputs_hash: str, host: str) -> tuple[Any, ...]:
    """What is journalled with a job's end (by the spawner, to which it is opaque, or by sweepc)."""
    return (rule, hash_, reldir, run_id, attempt, fingerprint, cmd_hash, inputs_hash, host)


def entry(tag: tuple[Any, ...], status: int, start: float, end: float, rss_kb: int, cpu_s: float | None,
          interrupted: bool) -> bytes:
    """One entry as it is written to the journal (see the module doc)."""
    data = marshal.dumps((tag, status, start, end, rss_kb, cpu_s, interrupted))
    return len(data).to_bytes(4, "little") + data


def read(path: Path) -> list[tuple[Any, ...]]:
    """The entries of a journal, in order; a torn last entry is ignored."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return []
    with open(fd, "rb") as f:
        data = f.read()
    out: list[tuple[Any, ...]] = []
    at = 0
    while at + 4 <= len(data):
        size = int.from_bytes(data[at : at + 4], "little")
        body = data[at + 4 : at + 4 + size]
        if len(body) < size:
            break
        try:
            entry = marshal.loads(body)
        except (EOFError, ValueError, TypeError):
            break
        if isinstance(entry, tuple) and len(entry) == 7 and isinstance(entry[0], tuple) and len(entry[0]) == 9:
            out.append(entry)
        at += 4 + size
    return out


def replay(graph: BuildGraph, store: Store) -> int:
    """Record the jobs a killed build saw end (see the module doc), then
    remove the journal. Returns how many were recorded done."""
    path = journal_path(graph.root)
    if not os.path.lexists(path):
        return 0
    from sweepc.backends.jobdir import check_end  # (templates, jinja2: only when there is a journal)

    entries = read(path)
    planned = store.records(status="planned") if entries else None
    rules = {r.name for r in graph.rules}
    outcomes: dict[tuple[str, str], Outcome] = {}
    for tag, status, start, end, rss_kb, cpu_s, interrupted in entries:
        rule, hash_, reldir, run_id, attempt, fingerprint, cmd_hash, inputs_hash, host = tag
        if interrupted or status != 0 or rule not in rules or planned is None:
            continue
        rec = planned.get((rule, hash_))
        if rec is None or rec.run_id != run_id:
            continue
        problem, results = check_end(graph, rule, graph.workdir_path / reldir)
        if problem is not None:
            continue
        outcomes[(rule, hash_)] = Outcome(
            rule=rule, hash=hash_, status="done", fingerprint=fingerprint, cmd_hash=cmd_hash, inputs_hash=inputs_hash,
            exit_code=0, start=start, end=end, host=host, max_rss_mb=round(rss_kb / 1024, 1), attempts=attempt,
            backend="local", backend_job_id=None, run_id=run_id, results=results,
            cpu_s=round(cpu_s, 3) if cpu_s is not None else None,
        )
    store.record(list(outcomes.values()))
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    return len(outcomes)
