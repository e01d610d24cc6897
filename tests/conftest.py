"""Shared pytest configuration for sweepc's tests."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

# ============================================================================
# SLURM integration: markers + the session-scoped `slurm_cluster` fixture.
# (Owned by the local-SLURM infrastructure; see tests/slurm_cluster.py,
# scripts/slurm-local.sh and docs/slurm-facts.md.  Add other shared fixtures
# outside this section.)
# ============================================================================

try:  # tests/ on sys.path (rootdir-relative "prepend" import, no tests/__init__.py)
    from slurm_cluster import ensure_cluster as _ensure_slurm_cluster
except ImportError:  # tests/ is a package
    from tests.slurm_cluster import ensure_cluster as _ensure_slurm_cluster


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "slurm: needs a real SLURM cluster (request the `slurm_cluster` fixture); "
        "skipped when none is usable, a failure when CI=true",
    )
    config.addinivalue_line("markers", "slow: takes more than a few seconds")


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[dict[str, str]]:
    """A usable SLURM cluster: yields the environment (a full ``os.environ``
    copy whose ``SLURM_CONF`` points at the cluster) to pass as ``env=`` to
    subprocesses.  For the session it is also exported as ``SLURM_CONF`` in
    ``os.environ``, so code under test that runs sbatch/squeue finds it.

    Uses a cluster that already works; else, as root, starts the local one
    with ``scripts/slurm-local.sh start`` (left running afterwards: the next
    start is then a no-op; ``scripts/slurm-local.sh stop`` stops it).
    Without a usable cluster: ``pytest.fail`` when ``CI=true``, else skip.
    """
    env, reason = _ensure_slurm_cluster()
    if env is None:
        if _in_ci():
            pytest.fail(f"CI=true but {reason}", pytrace=False)
        pytest.skip(reason)
    with pytest.MonkeyPatch.context() as mp:
        if env.get("SLURM_CONF"):
            mp.setenv("SLURM_CONF", env["SLURM_CONF"])
        yield env


# ============================================================================
# end of the SLURM section
# ============================================================================
