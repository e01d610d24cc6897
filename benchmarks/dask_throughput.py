#!/usr/bin/env python3
"""Trivial jobs through the dask backend next to the local backend (issue 12).

    PYTHONPATH=$PWD python3 benchmarks/dask_throughput.py            # 2000 jobs, -j 2, 3 rounds
    PYTHONPATH=$PWD python3 benchmarks/dask_throughput.py --jobs-n 10000 --rounds 1

Each round builds N `echo` jobs from scratch twice, in turn (the first backend
alternates between rounds): `sweepc build -j J` (local) and `sweepc build
--backend dask` on a LocalCluster of J worker processes x 1 slot (the same
number of jobs at once). Rates are N / sweepc's own summary time ("... in
X s"), whose clock starts once the plan is made and, for dask, once the
cluster is up; "start" is the rest of the wall-clock time (Python, planning,
and for dask starting and stopping the cluster). Prints a Markdown table with
the medians. Not a test: nothing is asserted. On a shared machine, quote the
load average printed at the end.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SUMMARY = re.compile(r"^sweepc: (\d+) done, .* in ([0-9.]+)s$", re.M)


def project(base: Path, name: str, n: int, jobs: int) -> Path:
    d = base / name
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    (d / "sweepfile").write_text(
        f'param i = range(0, {n})\nrule e over i:\n    output: "o.txt"\n    shell: "echo {{i}} > {{output}}"\n'
        f'backend dask:\n    workers = {jobs}\n    cores = 1\n    dashboard = "127.0.0.1:0"\n'
    )
    return d


def build(d: Path, argv: list[str], n: int) -> tuple[float, float]:
    """(jobs/s by sweepc's summary, the rest of the wall time in s)."""
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "sweepc", "build", *argv], cwd=d, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    m = SUMMARY.search(p.stdout)
    if p.returncode != 0 or not m or int(m.group(1)) != n:
        raise SystemExit(f"sweepc build {' '.join(argv)} failed ({p.returncode}):\n{p.stdout[-800:]}{p.stderr[-800:]}")
    secs = float(m.group(2))
    return n / secs, wall - secs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs-n", type=int, default=2000, help="echo jobs per build (default 2000)")
    ap.add_argument("-j", "--jobs", type=int, default=2, help="jobs at once: -j J locally, J workers x 1 slot on dask (default 2)")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="sweepc-dask-bench-"))
    got: dict[str, list[tuple[float, float]]] = {"local": [], "dask": []}
    runs = {"local": ["-j", str(args.jobs)], "dask": ["--backend", "dask"]}
    try:
        for r in range(args.rounds):
            order = ["local", "dask"] if r % 2 == 0 else ["dask", "local"]
            for name in order:
                got[name].append(build(project(base, name, args.jobs_n, args.jobs), runs[name], args.jobs_n))
                print(f"round {r + 1}: {name} {got[name][-1][0]:.0f} jobs/s", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(f"{args.jobs_n} echo jobs, {args.jobs} at once, median of {args.rounds} rounds, {os.cpu_count()} cores\n")
    print("| backend | jobs/s | each round | start (s) |")
    print("|---|---:|---|---:|")
    for name, label in (("local", f"local, build -j {args.jobs}"), ("dask", f"dask, LocalCluster {args.jobs} workers x 1 slot")):
        rates = [x for x, _ in got[name]]
        print(f"| {label} | {statistics.median(rates):.0f} | {', '.join(f'{x:.0f}' for x in rates)} "
              f"| {statistics.median(s for _, s in got[name]):.1f} |")
    ratio = statistics.median(x for x, _ in got["dask"]) / statistics.median(x for x, _ in got["local"])
    print(f"\ndask / local: {ratio:.2f}; load average {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
