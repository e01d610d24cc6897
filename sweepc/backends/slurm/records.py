"""Completion records: what array tasks leave in job folders, and how sweepc
(the only writer of the state store) takes them in.

A record is one JSON line in <job folder>/sweepc-record.json, written by the
runner through a temporary file and mv. It counts only for the submission
that the job's row names: its `submission` must be the row's run id and its
array task (`ARRAY_TASK`) the row's backend job id. Anything else (a record
left by an older submission, by a retry that has since been resubmitted) is
ignored. An output counts only when its record says `done` (exit 0) and the
outputs are there.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from sweepc.backends.jobdir import check_end
from sweepc.lang.graph import RECORD_NAME, REFUSED_DIR, BuildGraph
from sweepc.plan.store import Outcome, Record, RecordMap, Store, state_dir
from sweepc.backends.slurm.scheduler import Scheduler

# Record statuses (what the runner writes).
DONE, FAILED, TIMEOUT, CANCELLED, SKIPPED, NOT_RUN = "done", "failed", "timeout", "cancelled", "skipped", "not-run"
RUNNING = "running"  # written when a pset starts; replaced by one of the above when it ends
TERM_EXIT = 143  # what a shell reports for a command stopped by SIGTERM
# the note of a done record of a job the runner did not run: its fingerprint came
# out as when it was last done (input: done(RULE), runner.sh's keep:)
KEPT_NOTE = "up to date: its inputs came out as they were"
# The note of a pset whose job folder the runner refused (a symbolic link, a
# file in the way): its record is in <submission folder>/refused/<rule>/<hash>/.
REFUSED_NOTE = "refusing to run it: "


class TaskRecord(NamedTuple):
    submission: str
    rule: str
    hash: str
    status: str
    exit_code: int | None
    start: float | None
    end: float | None
    host: str | None
    array_job_id: str
    array_task_id: str
    attempt: int
    fingerprint: str | None
    cmd_hash: str | None
    inputs_hash: str | None
    note: str
    max_rss_mb: float | None = None  # measured on the node (see runner.sh); None when it could not be
    cpu_s: float | None = None
    array: str = ""  # the array's name in the submission folder, e.g. "01-gen"

    @property
    def final(self) -> bool:
        return self.status != RUNNING

    @property
    def backend_job_id(self) -> str:
        return f"{self.array_job_id}_{self.array_task_id}"


RENDERED = "rendered:"  # backend job id of a --render-only job: "rendered:ARRAY:TASK"


def rendered_id(array: str, task: int) -> str:
    return f"{RENDERED}{array}:{task}"


def scheduler_ids(rows: Iterable[Record]) -> list[str]:
    """The SLURM array ids of queued rows (not the placeholders of --render-only ones)."""
    return array_ids(r.backend_job_id or "" for r in rows)


def array_ids(job_ids: Iterable[str]) -> list[str]:
    """The SLURM array ids of ARRAY_TASK ids, once each, in numeric order
    (not the placeholders of --render-only jobs)."""
    ids = {j.partition("_")[0] for j in job_ids}
    return sorted((i for i in ids if i.isdigit()), key=_num)


def submission_folder(g: BuildGraph, submission: str) -> Path:
    return state_dir(g.root) / "slurm" / submission


def job_dir(g: BuildGraph, rule: str, h: str) -> Path:
    return g.workdir_path / rule / h[:2] / h


def read_record(d: Path | str) -> TaskRecord | None:
    """The record in job folder d, or None when there is none (or it is not one)."""
    try:
        with open(os.path.join(d, RECORD_NAME), encoding="utf-8") as f:
            data: Any = json.loads(f.readline())
        return TaskRecord(
            submission=str(data["submission"]), rule=str(data["rule"]), hash=str(data["hash"]),
            status=str(data["status"]), exit_code=_int(data.get("exit_code")),
            start=_float(data.get("start")), end=_float(data.get("end")), host=data.get("host") or None,
            array_job_id=str(data.get("array_job_id", "")), array_task_id=str(data.get("array_task_id", "")),
            attempt=_int(data.get("attempt")) or 1, fingerprint=data.get("fingerprint") or None,
            cmd_hash=data.get("cmd_hash") or None, inputs_hash=data.get("inputs_hash") or None,
            note=str(data.get("note") or ""), max_rss_mb=_float(data.get("max_rss_mb")),
            cpu_s=_float(data.get("cpu_s")), array=str(data.get("array") or ""),
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def any_refused(submission_folder: Path) -> bool:
    """Whether the runner refused a job folder of this submission (one stat)."""
    return os.path.isdir(submission_folder / REFUSED_DIR)


def refusing_submissions(g: BuildGraph) -> set[str]:
    """The submissions some of whose job folders the runner refused (a stat per submission)."""
    try:
        names = os.listdir(state_dir(g.root) / "slurm")
    except OSError:
        return set()
    return {n for n in names if any_refused(submission_folder(g, n))}


def refused_record(submission_folder: Path, rule: str, h: str) -> TaskRecord | None:
    """The record the runner wrote in the submission folder for a pset whose
    job folder it refused: never written (nor read) through the link."""
    return read_record(submission_folder / REFUSED_DIR / rule / h)


def remove_record(d: Path) -> None:
    try:
        os.unlink(d / RECORD_NAME)
    except FileNotFoundError:
        pass


def _int(v: object) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _float(v: object) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def check_done(g: BuildGraph, rec: TaskRecord) -> tuple[str | None, str | None]:
    """For a record that says done: (problem, results), as jobdir.check_end
    judges every backend's jobs (outputs there, results files sound)."""
    if rec.rule not in g.rule_index:
        return None, None
    return check_end(g, rec.rule, job_dir(g, rec.rule, rec.hash))


def to_outcome(rec: TaskRecord, status: str, exit_code: int | None = None, results: str | None = None) -> Outcome:
    done = status == "done"
    return Outcome(
        rule=rec.rule, hash=rec.hash, status=status,
        fingerprint=rec.fingerprint if done else None, cmd_hash=rec.cmd_hash if done else None,
        inputs_hash=rec.inputs_hash if done else None,
        exit_code=exit_code if exit_code is not None else rec.exit_code,
        start=rec.start, end=rec.end, host=rec.host, max_rss_mb=rec.max_rss_mb, attempts=rec.attempt,
        backend="slurm", backend_job_id=rec.backend_job_id, run_id=rec.submission, results=results if done else None,
        cpu_s=rec.cpu_s,
    )


def store_status(g: BuildGraph, rec: TaskRecord) -> tuple[str, int | None, str | None] | None:
    """(store status, exit code, results) for a final record; None for a pset
    whose task stopped before it started (not-run), whose row goes back to `planned`."""
    if rec.status == DONE:
        problem, results = check_done(g, rec)
        if rec.note == KEPT_NOTE:
            results = None  # not a run: no new row in the results history
        return ("done", 0, results) if problem is None else ("failed", 0, None)
    if rec.status == CANCELLED:
        return "cancelled", rec.exit_code if rec.exit_code is not None else TERM_EXIT, None
    if rec.status == TIMEOUT:
        return "timeout", rec.exit_code if rec.exit_code is not None else TERM_EXIT, None
    if rec.status == SKIPPED:
        return "skipped", None, None
    if rec.status == NOT_RUN:
        return None
    return "failed", rec.exit_code, None


_BACKEND = Record._fields.index("backend")


def queued_rows(store: Store) -> dict[tuple[str, str], Record]:
    """Rows of jobs handed to SLURM that have not ended: `queued` or `running`."""
    return dict(queued_raw(store).items())


def queued_raw(store: Store) -> RecordMap:
    """queued_rows(), each row made a Record only when asked for (`sweepc status`
    of 200k queued jobs asks for the few that have a record)."""
    raw: dict[tuple[str, str], tuple[Any, ...]] = {}
    for status in ("queued", "running"):
        m = store.records(status=status)
        for k in m:
            r = m.raw(k)
            if r is not None and r[_BACKEND] == "slurm":
                raw[k] = r
    return RecordMap(raw)


def ingest(g: BuildGraph, store: Store, rows: Mapping[tuple[str, str], Record] | None = None,
           remaining_rows: bool = True) -> dict[tuple[str, str], Record]:
    """Take in the records of queued jobs. Returns the queued rows that have no
    final record yet (those whose record says they started become `running`);
    nothing without `remaining_rows`."""
    if rows is None:
        rows = queued_rows(store)
    outcomes: list[Outcome] = []
    replan: list[tuple[str, str]] = []
    started: list[tuple[str, str]] = []
    remaining: dict[tuple[str, str], Record] = {}
    refused = refusing_submissions(g)  # usually none: then no row is looked at without a record
    wd = str(g.workdir_path)
    # the runner makes job folders as it reaches them: a shard folder (<rule>/<hh>) that
    # is not there yet holds no record (one stat per shard, not one open per job)
    shards: dict[str, bool] = {}
    for key in rows:
        rule, h = key
        shard = f"{wd}/{rule}/{h[:2]}"
        there = shards.get(shard)
        if there is None:
            there = shards[shard] = os.path.isdir(shard)
        rec = read_record(f"{shard}/{h}") if there else None
        if rec is None and not refused:
            if remaining_rows:
                remaining[key] = rows[key]
            continue
        row = rows[key]
        if (rec is None or not belongs(rec, row)) and row.run_id in refused:
            rec = refused_record(submission_folder(g, row.run_id), rule, h) or rec
        if rec is None or not belongs(rec, row) or not rec.final:
            if remaining_rows:
                remaining[key] = row
            if rec is not None and not rec.final and row.status == "queued" and belongs(rec, row):
                started.append(key)
            continue
        st = store_status(g, rec)
        if st is None:
            replan.append(key)
        elif st[0] == "done" and rec.note == KEPT_NOTE and row.fingerprint == rec.fingerprint and row.start is not None:
            # not run: the times and measurements of the run it was kept from (still in the row)
            outcomes.append(to_outcome(rec, *st)._replace(
                start=row.start, end=row.end, host=row.host, max_rss_mb=row.max_rss_mb, cpu_s=row.cpu_s))
        else:
            outcomes.append(to_outcome(rec, *st))
    store.record(outcomes)
    if replan:
        store.set_status(replan, "planned")
    if started:
        store.set_status(started, "running")
    return remaining


def belongs(rec: TaskRecord, row: Record) -> bool:
    if (rec.rule, rec.hash) != (row.rule, row.hash) or rec.submission != row.run_id:
        return False
    if (row.backend_job_id or "").startswith(RENDERED):  # submitted by submit.sh, which sweepc did not see
        return row.backend_job_id == rendered_id(rec.array, int(rec.array_task_id)) if rec.array_task_id.isdigit() else False
    return rec.backend_job_id == row.backend_job_id


def adopt(g: BuildGraph, store: Store, rows: dict[tuple[str, str], Record]) -> None:
    """Rendered rows whose array submit.sh submitted here (it wrote NAME.jobid
    next to the jobscript) get the real id, so squeue can be asked about them."""
    found: list[tuple[str, str, str]] = []
    ids: dict[tuple[str, str], str | None] = {}
    for key, row in rows.items():
        bid = row.backend_job_id or ""
        if not bid.startswith(RENDERED) or row.run_id is None:
            continue
        array, _, task = bid[len(RENDERED):].rpartition(":")
        where = (row.run_id, array)
        if where not in ids:
            try:
                text = (state_dir(g.root) / "slurm" / row.run_id / f"{array}.jobid").read_text().strip()
            except OSError:
                text = ""
            ids[where] = text if text.isdigit() else None
        jid = ids[where]
        if jid is not None:
            found.append((row.rule, row.hash, f"{jid}_{task}"))
            rows[key] = row._replace(backend_job_id=f"{jid}_{task}")
    if found:
        with store.transaction(jobs=True) as c:
            c.executemany("UPDATE jobs SET backend_job_id=? WHERE rule=? AND hash=?", ((j, r, h) for r, h, j in found))


def sync(g: BuildGraph, store: Store, scheduler: Scheduler) -> dict[tuple[str, str], str]:
    """Before planning a build: ingest what finished, and say which queued jobs
    the scheduler still has (key -> "ARRAY_TASK"), so they are not submitted twice.

    squeue is asked first (ONE call), records read second: a task that ends in
    between has its record read, so nothing is lost in the gap."""
    rows = queued_rows(store)
    if not rows:
        return {}
    adopt(g, store, rows)
    arrays = scheduler_ids(rows.values())
    states = scheduler.queue_state(arrays, finished=False) if arrays else {}
    remaining = ingest(g, store, rows)
    return {
        key: row.backend_job_id for key, row in remaining.items()
        if row.backend_job_id is not None and row.backend_job_id in states and states[row.backend_job_id].live
    }


def refresh(g: BuildGraph) -> None:
    """For `sweepc status` and `sweepc results`: ingest the records of queued
    SLURM jobs, if there are any. No scheduler call."""
    if not (state_dir(g.root) / "state.db").exists():
        return
    store = Store.open(g.root, create=False)
    try:
        rows = queued_raw(store)
        if rows:
            ingest(g, store, rows, remaining_rows=False)
    finally:
        store.close()


def _num(s: str) -> tuple[int, str]:
    return (int(s), "") if s.isdigit() else (1 << 62, s)
