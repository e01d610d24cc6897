"""The scheduler behind a small interface: submit, queue_state, cancel,
max_array_size. SubprocessScheduler runs the real sbatch/squeue/scancel/
scontrol; tests of rendering may pass a fake.

Facts it relies on (measured, docs/slurm-facts.md): `sbatch --parsable` prints
`ID` or `ID;cluster`; `squeue -h -r` prints one line per array task as
`ARRAY_TASK`; squeue exits 1 with "Invalid job id specified" when none of the
ids is known any more (purged after MinJobAge), which means "all finished long
ago", not a broken cluster.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple, Protocol

from sweepc.errors import SweepcError

# States in which a job may still run; anything else is final.
FINAL_STATES = frozenset({
    "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL",
    "DEADLINE", "PREEMPTED", "REVOKED", "SPECIAL_EXIT",
})
DEFAULT_MAX_ARRAY_SIZE = 1001  # SLURM's own default
TIMEOUT_S = 120.0  # one scheduler call; a controller that is down makes clients retry for ~10-20 s


class SchedulerError(SweepcError):
    """sbatch/squeue/scancel failed."""


class TaskState(NamedTuple):
    state: str  # squeue %T, e.g. PENDING, RUNNING, COMPLETED, TIMEOUT
    reason: str  # squeue %r, e.g. None, Dependency, DependencyNeverSatisfied

    @property
    def live(self) -> bool:
        return self.state not in FINAL_STATES


class Scheduler(Protocol):
    def submit(self, script: Path, options: Sequence[str], cwd: Path) -> str:
        """sbatch OPTIONS SCRIPT; the job id of the (array) job."""
        ...

    def queue_state(self, job_ids: Sequence[str], finished: bool = True) -> dict[str, TaskState]:
        """One squeue call: {"ARRAY_TASK": state} for every task of the given
        arrays the scheduler still knows (finished ones too when `finished`)."""
        ...

    def cancel(self, job_ids: Sequence[str]) -> None: ...

    def max_array_size(self) -> int: ...


class SubprocessScheduler:
    """The real thing. Finds the commands on PATH (so a PATH wrapper that
    counts calls sees them), reads MaxArraySize once."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self.env = dict(env) if env is not None else None
        self._max_array: int | None = None

    def _run(self, args: Sequence[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        exe = shutil.which(args[0], path=(self.env or os.environ).get("PATH"))
        if exe is None:
            raise SchedulerError(f"{args[0]} is not installed here (not on PATH); the SLURM backend needs the SLURM client commands")
        try:
            return subprocess.run(
                [exe, *args[1:]], cwd=cwd, env=self.env, stdin=subprocess.DEVNULL,
                capture_output=True, text=True, timeout=TIMEOUT_S, check=False,
            )
        except subprocess.TimeoutExpired as e:
            # what it said meanwhile names the cause: sbatch retries while the
            # controller refuses new jobs (MaxJobCount, a full queue), printing
            # "Slurm temporarily unable to accept job, sleeping and retrying"
            said = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
            last = said.strip().splitlines()[-1:] if said.strip() else []
            why = f"; it said: {last[0].strip()}" if last else "; is slurmctld running?"
            raise SchedulerError(f"{args[0]} did not answer within {TIMEOUT_S:.0f} s{why}") from None

    def submit(self, script: Path, options: Sequence[str], cwd: Path) -> str:
        done = self._run(["sbatch", "--parsable", *options, str(script)], cwd=cwd)
        job_id = done.stdout.strip().split(";")[0].strip()
        if done.returncode != 0 or not job_id.isdigit():
            msg = done.stderr.strip() or done.stdout.strip() or f"exit code {done.returncode}"
            raise SchedulerError(f"sbatch {script.name} failed: {msg}")
        return job_id

    def queue_state(self, job_ids: Sequence[str], finished: bool = True) -> dict[str, TaskState]:
        if not job_ids:
            return {}
        args = ["squeue", "-h", "-r", "-o", "%i %T %r", "-j", ",".join(job_ids)]
        if finished:
            args[1:1] = ["-t", "all"]
        done = self._run(args)
        if done.returncode != 0:
            if "Invalid job id" in done.stderr:
                return {}
            raise SchedulerError(f"squeue failed: {done.stderr.strip() or f'exit code {done.returncode}'}")
        out: dict[str, TaskState] = {}
        for line in done.stdout.splitlines():
            parts = line.split(None, 2)
            if len(parts) >= 2:
                out[parts[0]] = TaskState(parts[1], parts[2] if len(parts) > 2 else "")
        return out

    def cancel(self, job_ids: Sequence[str]) -> None:
        if not job_ids:
            return
        done = self._run(["scancel", *job_ids])
        if done.returncode != 0:
            raise SchedulerError(f"scancel failed: {done.stderr.strip() or f'exit code {done.returncode}'}")

    def max_array_size(self) -> int:
        if self._max_array is None:
            self._max_array = DEFAULT_MAX_ARRAY_SIZE
            if shutil.which("scontrol", path=(self.env or os.environ).get("PATH")) is not None:
                done = self._run(["scontrol", "show", "config"])
                for line in done.stdout.splitlines():
                    key, sep, value = line.partition("=")
                    if sep and key.strip() == "MaxArraySize" and value.strip().isdigit():
                        self._max_array = int(value.strip())
                        break
        return self._max_array
