"""The local SLURM cluster itself behaves as the SLURM backend relies on
(docs/slurm-facts.md).  Real sbatch/squeue against real slurmctld/slurmd."""

from __future__ import annotations

from pathlib import Path

import pytest

try:
    from slurm_cluster import scontrol_config, submit, wait_until_final
except ImportError:
    from tests.slurm_cluster import scontrol_config, submit, wait_until_final

pytestmark = pytest.mark.slurm


def test_throttled_array_runs_every_task_at_most_two_at_a_time(
    slurm_cluster: dict[str, str], tmp_path: Path
) -> None:
    array = submit(
        slurm_cluster,
        "--array=0-5%2",
        f"--output={tmp_path}/%A_%a.out",
        "--wrap",
        'echo "$SLURM_ARRAY_TASK_ID" > "done_$SLURM_ARRAY_TASK_ID"; sleep 1',
        cwd=tmp_path,
    )
    assert array.isdigit()
    most_running = 0
    reasons: set[str] = set()

    def watch(states: dict[str, tuple[str, str]]) -> None:
        nonlocal most_running
        most_running = max(most_running, sum(s == "RUNNING" for s, _ in states.values()))
        reasons.update(r for s, r in states.values() if s == "PENDING")

    states = wait_until_final(slurm_cluster, [array], expected_tasks=6, timeout=25, on_poll=watch)

    assert states == {f"{array}_{i}": ("COMPLETED", "None") for i in range(6)}
    assert most_running <= 2
    assert "JobArrayTaskLimit" in reasons
    assert sorted(p.name for p in tmp_path.glob("done_*")) == [f"done_{i}" for i in range(6)]


def test_afterok_dependent_of_failed_job_is_cancelled_with_kill_on_invalid_dep(
    slurm_cluster: dict[str, str], tmp_path: Path
) -> None:
    failing = submit(slurm_cluster, "--output=/dev/null", "--wrap", "exit 3", cwd=tmp_path)
    dependent = submit(
        slurm_cluster,
        f"--dependency=afterok:{failing}",
        "--kill-on-invalid-dep=yes",
        "--output=/dev/null",
        "--wrap",
        "touch ran",
        cwd=tmp_path,
    )

    states = wait_until_final(slurm_cluster, [failing, dependent], expected_tasks=2, timeout=15)

    assert states[failing] == ("FAILED", "NonZeroExitCode")
    assert states[dependent] == ("CANCELLED", "DependencyNeverSatisfied")
    assert not (tmp_path / "ran").exists()


def test_max_array_size_is_readable_from_scontrol(slurm_cluster: dict[str, str]) -> None:
    max_array_size = scontrol_config(slurm_cluster)["MaxArraySize"]
    assert int(max_array_size) >= 1
