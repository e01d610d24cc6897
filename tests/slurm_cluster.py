"""Find, or start, the real single-node SLURM cluster the integration tests use.

The cluster is the project's own ``scripts/slurm-local.sh`` (slurmctld + slurmd
on localhost, everything under ``$SLURM_LOCAL_DIR``, default
``/tmp/sweepc-slurm``).  Clients find it through ``SLURM_CONF``.

``ensure_cluster()`` is what the ``slurm_cluster`` fixture in ``conftest.py``
calls: it returns an environment in which ``sbatch`` reaches a usable cluster,
starting the local one first when that is possible (only as root), or the
reason why there is none.  The small query helpers below (``submit``,
``task_states``, ``wait_until_final``) are for tests; sweepc's SLURM backend
has its own.  What the cluster does, measured, is in ``docs/slurm-facts.md``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SCRIPT = REPO_ROOT / "scripts" / "slurm-local.sh"
DEFAULT_DIR = "/tmp/sweepc-slurm"

# A client call blocks for ~9 s of retries when slurmctld is down; never wait longer.
PROBE_TIMEOUT_S = 15
# First start on a fresh machine includes `apt-get update` + install.
START_TIMEOUT_S = 900

READY_NODE_STATES = frozenset({"idle", "mixed", "allocated", "completing"})
FINAL_STATES = frozenset(
    {
        "COMPLETED",
        "FAILED",
        "CANCELLED",
        "TIMEOUT",
        "OUT_OF_MEMORY",
        "NODE_FAIL",
        "BOOT_FAIL",
        "DEADLINE",
        "PREEMPTED",
    }
)


def local_conf() -> Path:
    """Where ``scripts/slurm-local.sh`` writes its slurm.conf."""
    return Path(os.environ.get("SLURM_LOCAL_DIR", DEFAULT_DIR)) / "etc" / "slurm.conf"


def _local_cluster_down(conf: str | None) -> bool:
    """True if ``conf`` is our local cluster's config and its slurmctld is not
    running: then every client call would block for seconds of retries."""
    if conf is None or Path(conf) != local_conf():
        return False
    pid_file = local_conf().parent.parent / "run" / "slurmctld.pid"
    try:
        pid = pid_file.read_text().strip()
        return Path(f"/proc/{pid}/comm").read_text().strip() != "slurmctld"
    except OSError:
        return True


def _candidate_envs() -> list[dict[str, str]]:
    """Environments to try, best first: the caller's SLURM_CONF, then our
    local cluster's config, then the system default (/etc/slurm/slurm.conf)."""
    base = dict(os.environ)
    envs: list[dict[str, str]] = []
    if base.get("SLURM_CONF"):
        envs.append(base)
    conf = local_conf()
    if conf.is_file() and base.get("SLURM_CONF") != str(conf):
        envs.append({**base, "SLURM_CONF": str(conf)})
    if not base.get("SLURM_CONF"):
        envs.append(base)
    return envs


def _run(
    args: list[str], env: Mapping[str, str], timeout: float, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args,
        env=dict(env),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def probe(env: Mapping[str, str]) -> str | None:
    """None if a batch job could be submitted and run in ``env``, else why not."""
    if shutil.which("sbatch", path=env.get("PATH")) is None:
        return "sbatch is not installed (not on PATH)"
    # without a config file sbatch hunts for a configless controller for a long time
    conf = Path(env.get("SLURM_CONF") or "/etc/slurm/slurm.conf")
    if not conf.is_file():
        return f"{conf} does not exist"
    if _local_cluster_down(env.get("SLURM_CONF")):
        return "the local cluster (scripts/slurm-local.sh) is not running"
    try:
        # --test-only asks slurmctld to validate and place the job without queueing it
        test = _run(["sbatch", "--test-only", "--wrap", "true"], env, PROBE_TIMEOUT_S)
        if test.returncode != 0:
            return f"sbatch --test-only failed (rc={test.returncode}): {test.stderr.strip()[-300:]}"
        nodes = _run(["sinfo", "-h", "-o", "%T"], env, PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        return f"{' '.join(map(str, exc.cmd))} did not answer within {exc.timeout:.0f} s"
    states = {s.strip().rstrip("*~#$@^-!%") for s in nodes.stdout.split()}
    if nodes.returncode != 0 or not states & READY_NODE_STATES:
        return f"no usable node (sinfo rc={nodes.returncode}, states={sorted(states)})"
    return None


def start_local_cluster() -> str | None:
    """Run ``scripts/slurm-local.sh start``; None on success, else why it failed."""
    if os.geteuid() != 0:
        return "not root, so scripts/slurm-local.sh cannot start a local cluster"
    try:
        done = _run(["bash", str(SCRIPT), "start"], os.environ, START_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return f"scripts/slurm-local.sh start took more than {START_TIMEOUT_S} s"
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-15:])
        return f"scripts/slurm-local.sh start failed (rc={done.returncode}):\n{tail}"
    return None


def ensure_cluster() -> tuple[dict[str, str] | None, str]:
    """An environment whose SLURM_CONF reaches a usable cluster, or (None, reason)."""
    reasons = []
    for env in _candidate_envs():
        why = probe(env)
        if why is None:
            return env, ""
        reasons.append(f"SLURM_CONF={env.get('SLURM_CONF', '(unset)')}: {why}")
    why_not_started = start_local_cluster()
    if why_not_started is None:
        env = {**os.environ, "SLURM_CONF": str(local_conf())}
        why = probe(env)
        if why is None:
            return env, ""
        reasons.append(f"after scripts/slurm-local.sh start: {why}")
    else:
        reasons.append(why_not_started)
    return None, "no usable SLURM cluster: " + "; ".join(reasons)


# --- helpers for tests -------------------------------------------------------


def submit(env: Mapping[str, str], *args: str, cwd: Path | None = None) -> str:
    """``sbatch --parsable ARGS``; the job id (for an array: the array's job id)."""
    done = _run(["sbatch", "--parsable", *args], env, PROBE_TIMEOUT_S, cwd=cwd)
    if done.returncode != 0:
        raise RuntimeError(f"sbatch {' '.join(args)} failed: {done.stderr.strip()}")
    # --parsable prints "jobid" or "jobid;cluster"
    return done.stdout.strip().split(";")[0]


def task_states(env: Mapping[str, str], job_ids: Iterable[str]) -> dict[str, tuple[str, str]]:
    """{"<id>" or "<arrayid>_<task>": (state, reason)} for the given jobs, one
    line per array task (``squeue -r``), finished jobs included (``-t all``)."""
    ids = ",".join(job_ids)
    done = _run(["squeue", "-h", "-r", "-t", "all", "-j", ids, "-o", "%i %T %r"], env, PROBE_TIMEOUT_S)
    if done.returncode != 0:
        raise RuntimeError(f"squeue failed: {done.stderr.strip()}")
    states: dict[str, tuple[str, str]] = {}
    for line in done.stdout.splitlines():
        job, state, reason = line.split(maxsplit=2)
        states[job] = (state, reason)
    return states


def wait_until_final(
    env: Mapping[str, str],
    job_ids: Iterable[str],
    expected_tasks: int,
    timeout: float = 20.0,
    on_poll: Callable[[dict[str, tuple[str, str]]], None] | None = None,
) -> dict[str, tuple[str, str]]:
    """Poll until ``expected_tasks`` jobs/tasks are all in a final state."""
    ids = list(job_ids)
    deadline = time.monotonic() + timeout
    while True:
        states = task_states(env, ids)
        if on_poll is not None:
            on_poll(states)
        if len(states) >= expected_tasks and all(s in FINAL_STATES for s, _ in states.values()):
            return states
        if time.monotonic() > deadline:
            raise TimeoutError(f"jobs {ids} not finished after {timeout} s: {states}")
        time.sleep(0.1)


def scontrol_config(env: Mapping[str, str]) -> dict[str, str]:
    """``scontrol show config`` as a {key: value} dict."""
    done = _run(["scontrol", "show", "config"], env, PROBE_TIMEOUT_S)
    config: dict[str, str] = {}
    for line in done.stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            config[key.strip()] = value.strip()
    return config
