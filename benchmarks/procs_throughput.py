"""Throughput of sweepc.procs: N trivial jobs, at most P running at once.

    python3 benchmarks/procs_throughput.py [--jobs 1000] [--parallel 2] [--repeat 5]

Measures both spawn paths of ProcessPool: "posix_spawn" (this script is
single-threaded) and "popen" (a parked thread makes the pool fall back to
subprocess.Popen). Prints jobs/s per run and the median.
"""

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sweepc.procs import ProcessPool, Spawn


def throughput(jobs: int, parallel: int, root: Path) -> float:
    env = dict(os.environ)
    dirs = [root / f"j{i}" for i in range(jobs)]
    for d in dirs:
        d.mkdir(exist_ok=True)
    failed = 0
    with ProcessPool() as pool:
        t0 = time.perf_counter()
        started = 0
        while started < jobs or pool.running:
            while started < jobs and pool.running < parallel:
                d = dirs[started]
                pool.start(Spawn(started, "echo hi", str(d), str(d / "log"), env))
                started += 1
            failed += sum(e.exit_code != 0 for e in pool.wait(None))
        elapsed = time.perf_counter() - t0
    if failed:
        raise SystemExit(f"{failed} jobs failed")
    return jobs / elapsed


def popen_path_rate(jobs: int, parallel: int, root: Path) -> float:
    """A live second thread makes ProcessPool fall back to Popen."""
    parked = threading.Event()
    thread = threading.Thread(target=parked.wait)
    thread.start()
    try:
        return throughput(jobs, parallel, root)
    finally:
        parked.set()
        thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(f"{args.jobs} x 'echo hi', at most {args.parallel} running, {os.cpu_count()} cpus")
    rates: dict[str, list[float]] = {"posix_spawn": [], "popen": []}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        # Interleaved, so that drifting background load hits both paths alike.
        for _ in range(args.repeat):
            rates["posix_spawn"].append(throughput(args.jobs, args.parallel, root))
            rates["popen"].append(popen_path_rate(args.jobs, args.parallel, root))
    for label, runs in rates.items():
        each = " ".join(f"{r:.0f}" for r in runs)
        print(f"{label:12s} median {statistics.median(runs):6.0f} jobs/s   runs: {each}")


if __name__ == "__main__":
    main()
