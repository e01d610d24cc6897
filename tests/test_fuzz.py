"""Fuzzing `sweepc check`: mutated sweepfiles give exit 0 or 2, never a traceback.

The mutator is tests/fuzz_sweepfile.py (seeded, so a failure is replayed by
its seed and number). It runs in a child process under an address-space
limit (1.5 GB), each input in-process with a bound of 10 s of CPU (a sweep at
the default limit of a million psets takes a few) and 30 s of wall time. The default run is
short; the long one is opt-in:

    python3 -m pytest -m fuzz tests/test_fuzz.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def fuzz(seed: int, count: int) -> list[dict[str, object]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "fuzz_sweepfile.py"), "--seed", str(seed), "--count", str(count), "--seconds", "10"],
        capture_output=True, text=True, env=env, timeout=60 + count, check=False,
    )
    assert proc.stdout.strip(), f"the fuzzer died (exit {proc.returncode}): {proc.stderr[-3000:]}"
    failures: list[dict[str, object]] = json.loads(proc.stdout)
    return failures


def show(failures: list[dict[str, object]]) -> str:
    return "\n\n".join(f"seed {f['seed']} input {f['n']}: {f['problem']}\n{f['input']!r}" for f in failures[:5])


def test_mutated_sweepfiles_never_crash_or_hang() -> None:
    failures = fuzz(seed=0, count=200)
    assert failures == [], show(failures)


@pytest.mark.fuzz
@pytest.mark.parametrize("seed", range(1, 9))
def test_fuzz_long(seed: int) -> None:
    failures = fuzz(seed=seed, count=2000)
    assert failures == [], show(failures)
