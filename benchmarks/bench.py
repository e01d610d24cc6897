#!/usr/bin/env python3
"""Measure sweepc where users feel it: planning, no-op rebuilds, local throughput.

    python3 benchmarks/bench.py                      # 1k and 10k, full builds
    python3 benchmarks/bench.py --sizes 1000,10000,100000 --build-max 100000

For each size N the study is N psets x (2 per-pset rules + 1 gather by a),
i.e. about 2N+sqrt(N) jobs. Every command runs as a separate process, the way
a user runs it; time is wall-clock, memory is the peak RSS of that process
(os.wait4), which on Linux cannot be lower than the size of this script's
own interpreter (~30 MB). Prints a Markdown table. Not a test: nothing is
asserted.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SWEEPFILE = """\
param a = range(0, {na})
param b = range(0, {nb})
sweep grid = a * b

rule gen over grid:
    output: "out.txt"
    shell: "echo {{a}} {{b}} > {{output}}"

rule square over grid:
    input: gen
    output: "square.txt"
    shell: "cat {{input}} > {{output}}"

rule mean over grid by a:
    input: square
    output: "mean.txt"
    shell: "cat {{input.list}} | wc -l > {{output}}"
"""


def run(argv: list[str], cwd: Path, quiet: bool = True) -> tuple[float, float, int]:
    """(seconds, peak RSS in MB, exit code) of one command."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL if quiet else None, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        err = proc.stderr.read().decode() if proc.stderr else ""
        print(f"  ! {' '.join(argv)} exited {proc.returncode}: {err[-500:]}", file=sys.stderr)
    return elapsed, usage.ru_maxrss / 1024, proc.returncode


def make_project(n: int, base: Path) -> Path:
    na = max(1, int(round(math.sqrt(n) / 3)))
    nb = max(1, n // na)
    d = base / f"study-{n}"
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    (d / "sweepfile").write_text(SWEEPFILE.format(na=na, nb=nb))
    return d


def sweepc() -> list[str]:
    exe = shutil.which("sweepc")
    return [exe] if exe else [sys.executable, "-m", "sweepc"]


def bench_size(n: int, base: Path, full_build: bool, jobs: int) -> list[tuple[str, str, str, str]]:
    d = make_project(n, base)
    sc = sweepc()
    rows = []
    t, m, _ = run(sc + ["check"], d)
    rows.append(("check (parse + compile)", f"{t:.2f} s", f"{m:.0f} MB", ""))
    t, m, _ = run(sc + ["psets", "--format", "csv"], d)
    rows.append(("psets --format csv", f"{t:.2f} s", f"{m:.0f} MB", ""))
    t, m, _ = run(sc + ["build", "-n"], d)
    rows.append(("build -n (plan, empty store)", f"{t:.2f} s", f"{m:.0f} MB", ""))
    if full_build:
        t, m, rc = run(sc + ["build", "-j", str(jobs)], d)
        njobs = _count_jobs(d)
        rate = f"{njobs / t:.0f} jobs/s" if rc == 0 else f"exit {rc}"
        rows.append((f"build -j {jobs} (everything)", f"{t:.2f} s", f"{m:.0f} MB", rate))
        t, m, _ = run(sc + ["build"], d)
        rows.append(("build (no-op)", f"{t:.2f} s", f"{m:.0f} MB", ""))
        t, m, _ = run(sc + ["build", "-n"], d)
        rows.append(("build -n (no-op plan)", f"{t:.2f} s", f"{m:.0f} MB", ""))
        t, m, _ = run(sc + ["status"], d)
        rows.append(("status", f"{t:.2f} s", f"{m:.0f} MB", ""))
    return rows


def _count_jobs(d: Path) -> int:
    out = subprocess.run(sweepc() + ["check"], cwd=d, capture_output=True, text=True).stdout
    # "sweepfile: ok: 2 parameters, 1 sweep, 3 rules, N jobs"
    return int(out.rsplit(",", 1)[1].split()[0])


def throughput(n: int, base: Path, jobs: int) -> tuple[float, float]:
    d = base / f"echo-{n}"
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    (d / "sweepfile").write_text(f'param i = range(0, {n})\nrule e over i:\n    output: "o.txt"\n    shell: "echo {{i}} > {{output}}"\n')
    t, _, _ = run(sweepc() + ["build", "-j", str(jobs)], d)
    return t, n / t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000,10000", help="comma-separated pset counts (default 1000,10000)")
    ap.add_argument("--build-max", type=int, default=10000, help="run full builds (and no-op rebuilds) up to this size")
    ap.add_argument("-j", "--jobs", type=int, default=2)
    ap.add_argument("--echo-jobs", type=int, default=2000, help="trivial echo jobs for the throughput line")
    ap.add_argument("--dir", help="where to make the studies (default: a temp dir, removed after)")
    args = ap.parse_args()
    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="sweepc-bench-"))
    base.mkdir(parents=True, exist_ok=True)
    print(f"sweepc benchmark: {os.cpu_count()} cores, python {sys.version.split()[0]}, in {base}\n")
    print("| psets | jobs | step | time | peak RSS | rate |")
    print("|---:|---:|---|---:|---:|---:|")
    try:
        for n in (int(x) for x in args.sizes.split(",")):
            d = make_project(n, base)
            njobs = _count_jobs(d)
            for step, t, m, rate in bench_size(n, base, n <= args.build_max, args.jobs):
                print(f"| {n:,} | {njobs:,} | {step} | {t} | {m} | {rate} |", flush=True)
        if args.echo_jobs:
            t, rate = throughput(args.echo_jobs, base, args.jobs)
            print(f"| - | {args.echo_jobs:,} | echo jobs, build -j {args.jobs} | {t:.2f} s | | {rate:.0f} jobs/s |")
    finally:
        if not args.dir:
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
