"""A trivial Python function over N psets: sweepc's `python:` rule against
psweep's `ps.run(func, params, poolsize=2)`, in the same run.

    python3 benchmarks/python_jobs.py [--psets 10000 100000] [--workers 2] [--dir /dev/shm] [--rounds 1]

sweepc: a fresh project, `sweepc build -j WORKERS` as a subprocess (wall
time of the whole command: compile, plan, run, record). psweep: `ps.run`
in a fresh folder (its defaults: save=True writes calc/database.pk), timed
around the call in a subprocess too, so both pay for their imports
(`python3 -c 'import psweep'` and `sweepc --help` start-up are printed for
reference). Needs `pip install psweep`. Prints ms/pset for both and
sweepc/psweep, and the CPU time of each command with its children (the
workers): on a shared machine wall time also counts the others' load.
With --rounds R, each size runs R times, psweep first in odd rounds and
sweepc first in even ones, each in fresh folders; the table then has the
median times and the median, lowest and highest of the rounds' ratios
(each round's sweepc time over the same round's psweep time).
Results: see docs/language.md (python:) and the notes of issue 15.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Both tools' processes may write their bytecode (as bench.py): with
# PYTHONDONTWRITEBYTECODE set, every start would compile the source of any
# module whose .pyc is missing or older than the source (sweepc's, after an edit).
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}

FUNC = '''
def run(pset):
    return {"b": pset["a"] * 2}
'''

PSWEEP = '''
import sys, time
t0 = time.perf_counter()
import psweep as ps
from model import run
params = ps.plist("a", range(int(sys.argv[1])))
df = ps.run(run, params, poolsize=int(sys.argv[2]))
assert len(df) == int(sys.argv[1]), len(df)
print(time.perf_counter() - t0)
'''


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def time_psweep(n: int, workers: int, tmp: Path, r: int = 0) -> tuple[float, float]:
    d = tmp / f"psweep-{n}-{r}"
    d.mkdir()
    (d / "model.py").write_text(FUNC)
    (d / "bench.py").write_text(PSWEEP)
    c0, t0 = _cpu(), time.perf_counter()
    subprocess.run([sys.executable, "bench.py", str(n), str(workers)], cwd=d, env=ENV, check=True, capture_output=True)
    return time.perf_counter() - t0, _cpu() - c0


def time_sweepc(n: int, workers: int, tmp: Path, r: int = 0) -> tuple[float, float]:
    d = tmp / f"sweepc-{n}-{r}"
    d.mkdir()
    (d / "model.py").write_text(FUNC)
    (d / "sweepfile").write_text(f'param a = range(0, {n})\nsweep s = a\n\nrule f over s:\n    python: "model.py:run"\n')
    env = {**ENV, "PYTHONPATH": str(ROOT)}
    c0, t0 = _cpu(), time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "sweepc", "build", "-j", str(workers)], cwd=d, env=env, capture_output=True, text=True)
    dt, cpu = time.perf_counter() - t0, _cpu() - c0
    if p.returncode != 0 or f"{n} done" not in p.stdout:
        raise SystemExit(p.stdout + p.stderr)
    return dt, cpu


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--psets", type=int, nargs="+", default=[10000, 100000])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--dir", default=None, help="make the projects in this folder (default: the system's temporary "
                    "folder); e.g. /dev/shm to see what the file system's cost of a folder and files per pset is")
    ap.add_argument("--rounds", type=int, default=1, help="runs of each tool per size, the order alternating (default 1)")
    args = ap.parse_args()
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; cpus: {os.cpu_count()}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="sweepc-pybench-", dir=args.dir) as t:
        tmp = Path(t)
        for n in args.psets:
            got: list[tuple[float, float, float, float]] = []
            for r in range(max(1, args.rounds)):
                if r % 2 == 0:
                    ps_s, ps_cpu = time_psweep(n, args.workers, tmp, r)
                    sc_s, sc_cpu = time_sweepc(n, args.workers, tmp, r)
                else:
                    sc_s, sc_cpu = time_sweepc(n, args.workers, tmp, r)
                    ps_s, ps_cpu = time_psweep(n, args.workers, tmp, r)
                got.append((ps_s, sc_s, ps_cpu, sc_cpu))
                print(f"{n} psets, round {r + 1}: psweep {ps_s:.2f} s, sweepc {sc_s:.2f} s, sweepc/psweep {sc_s / ps_s:.2f}", flush=True)
            med = [statistics.median(g[k] for g in got) for k in range(4)]
            ratios = [g[1] / g[0] for g in got]
            rows.append((n, *med, statistics.median(ratios), min(ratios), max(ratios), len(got)))
        # removed at the end, not between sizes: on ext4, creating files right
        # after many were deleted is several times slower for minutes (the
        # kernel skips recently freed inodes), which would bill the next size
        st = os.statvfs(tmp)
        print(f"projects in {tmp}: {1 - st.f_ffree / max(st.f_files, 1):.0%} of the inodes in use")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{'psets':>8} {'rounds':>6} {'psweep s':>9} {'ms/pset':>8} {'sweepc s':>9} {'ms/pset':>8} {'sweepc/psweep':>14} "
          f"{'(lowest':>8} {'highest)':>9} {'psweep cpu s':>13} {'sweepc cpu s':>13}")
    for n, ps_s, sc_s, ps_cpu, sc_cpu, ratio, lo, hi, k in rows:
        print(f"{n:>8} {k:>6} {ps_s:>9.2f} {1000 * ps_s / n:>8.3f} {sc_s:>9.2f} {1000 * sc_s / n:>8.3f} {ratio:>14.2f} "
              f"{lo:>8.2f} {hi:>9.2f} {ps_cpu:>13.2f} {sc_cpu:>13.2f}")


if __name__ == "__main__":
    main()
