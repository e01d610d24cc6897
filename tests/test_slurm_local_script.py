"""scripts/slurm-local.sh's clock arithmetic, under a fake clock.

The helpers once computed deadlines with awk; Debian's mawk prints six
significant digits, so ``1795984672.75 + 60`` became ``1.79598e+09``, a
deadline more than an hour in the past, and the cluster start failed about
half of the time, depending on the time of day.  These tests source the script
for its functions (``SLURM_LOCAL_LIB=1``) and replace ``now`` with a clock that
starts at a given epoch and advances 0.1 s per reading.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "slurm-local.sh"

# Epochs near the edges of mawk's rounding: one rounds down (the failing
# case), one rounds up.
EPOCHS = ["1795984672.75", "1795989999.99", "1795980000", "4102444800.000001"]


def run_lib(body: str, start: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    clock = tmp_path / "clock"
    clock.write_text(start)
    script = f"""
set -euo pipefail
SLURM_LOCAL_LIB=1 source {SCRIPT}
CLOCK={clock}
# a fake clock: each reading is 0.1 s later than the one before
now() {{
  local t; t=$(cat "$CLOCK")
  echo "$t"
  local us=$(( $(to_us "$t") + 100000 ))
  printf '%d.%06d' $(( us / 1000000 )) $(( us % 1000000 )) > "$CLOCK"
}}
sleep() {{ :; }}
{body}
"""
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("start", EPOCHS)
def test_wait_for_waits_until_the_condition_holds(start: str, tmp_path: Path) -> None:
    counter = tmp_path / "n"
    counter.write_text("0")
    # true on the 20th poll, i.e. about 2 s of fake time into a 60 s wait
    body = f"""
cond() {{ n=$(( $(cat {counter}) + 1 )); echo $n > {counter}; [ $n -ge 20 ]; }}
if wait_for 60 cond; then echo ok; else echo gave-up; fi
"""
    p = run_lib(body, start, tmp_path)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "ok"
    assert counter.read_text().strip() == "20"


@pytest.mark.parametrize("start", EPOCHS)
def test_wait_for_gives_up_after_its_timeout(start: str, tmp_path: Path) -> None:
    counter = tmp_path / "n"
    counter.write_text("0")
    body = f"""
cond() {{ echo $(( $(cat {counter}) + 1 )) > {counter}; false; }}
if wait_for 3 cond; then echo ok; else echo gave-up; fi
"""
    p = run_lib(body, start, tmp_path)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "gave-up"
    # one clock reading per poll, 0.1 s each: about 30 polls in 3 s, not 1
    polls = int(counter.read_text())
    assert 28 <= polls <= 33, polls


@pytest.mark.parametrize(
    ("value", "micros"),
    [("1795984672.75", 1795984672750000), ("60", 60000000), ("0.000001", 1), ("1795989999.999999999", 1795989999999999)],
)
def test_to_us_is_exact(value: str, micros: int, tmp_path: Path) -> None:
    p = run_lib(f"to_us {value}", "0", tmp_path)
    assert p.returncode == 0, p.stderr
    assert int(p.stdout) == micros


def test_elapsed_prints_seconds_with_two_decimals(tmp_path: Path) -> None:
    p = run_lib("elapsed 1795984600.70", "1795984672.75", tmp_path)
    assert p.returncode == 0, p.stderr
    assert p.stdout == "72.05"


def test_no_awk_arithmetic_on_times_in_scripts() -> None:
    """Every awk in the project's shell scripts only picks fields, never prints a computed number."""
    root = SCRIPT.parent.parent
    offenders = []
    for path in [*root.glob("scripts/*.sh"), root / ".ci" / "run"]:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if "awk" in line and ("BEGIN" in line or "+" in line or "-v " in line):
                offenders.append(f"{path.name}:{n}: {line.strip()}")
    assert offenders == []
