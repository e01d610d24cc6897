"""The package type-checks: `mypy sweepc` under the project's strict settings.

The settings live in pyproject.toml ([tool.mypy] strict = true); the stubs of
the dependencies (pandas-stubs, types-networkx, types-psutil) and mypy itself
come with the `test` extra: pip install -e '.[test]'.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(importlib.util.find_spec("mypy") is None, reason="mypy is not installed (it comes with: pip install -e '.[test]')")
def test_mypy_strict_passes(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable, "-m", "mypy",
            "--config-file", str(ROOT / "pyproject.toml"),
            "--cache-dir", str(tmp_path / "mypy_cache"),  # keep the checkout clean
            "sweepc",
        ],
        cwd=ROOT,
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, (
        f"mypy sweepc failed (exit {proc.returncode}); missing stubs? pip install -e '.[test]'\n"
        + proc.stdout
        + proc.stderr
    )
