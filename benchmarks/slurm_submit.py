#!/usr/bin/env python3
"""Submission at scale (issue 13 item 7): sweepc's time before the first sbatch.

    SLURM_CONF=/tmp/sweepc-slurm/etc/slurm.conf PYTHONPATH=$PWD \\
        python3 benchmarks/slurm_submit.py [--psets 100000] [--dir /tmp/slurm-submit] [--render-only]

Writes a project of N psets x 2 rules (`gen` writes a line, `square` reads
it; default bundle: N/1000 psets per task, so 2 arrays of <= 1000 tasks)
and runs `sweepc build --backend slurm` in it with an `sbatch` wrapper first
on PATH. The wrapper logs, when it starts, the wall clock and its parent's
(sweepc's) CPU time from /proc/$PPID/stat, then runs the real sbatch with
`--hold` added, so the 2 x 1000 tasks are queued but never start. Afterwards
the script scancels exactly the job ids the wrapper logged.

Reports: sweepc's CPU time (user + sys) and wall time until the first sbatch
starts and until it returns, the whole command's CPU and wall time, and the
machine's load average. With --profile FILE the build runs under cProfile
(the numbers then include the profiler's overhead). Asserts nothing.

Mind the cluster: SLURM counts every task of an array against MaxJobCount
(10 000 on the local cluster), and keeps a cancelled array's record for
MinJobAge (an hour there). Each run holds 2 x 1000 tasks for that hour, so
more than about four runs an hour fill the table, and then every sbatch on
the cluster (other people's tests too) waits with "Slurm temporarily unable
to accept job". Use --no-submit (sweepc's time is the same: nothing it
does before the first sbatch depends on the cluster), --render-only or
fewer --psets to try things out.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SWEEPFILE = """\
param a = range(0, {na})
param b = range(0, 100)
sweep grid = a * b

rule gen over grid:
    output: "out.txt"
    shell: "echo {{a}} {{b}} > {{output}}"

rule square over grid:
    input: gen
    output: "sq.txt"
    shell: "read x y < {{input}}; echo $((x * y)) > {{output}}"
"""

# --no-submit: the same log, and a made-up job id instead of a submission
FAKE = """\
#!/bin/bash
read -r -a st < /proc/$PPID/stat
echo "start $(date +%s.%N) $(( ${{st[13]}} + ${{st[14]}} )) $(getconf CLK_TCK)" >> {log}
n=$(wc -l < {log})
echo "end $(date +%s.%N) fake"  >> {log}
echo "$((900000 + n))"
"""

WRAPPER = """\
#!/bin/bash
read -r -a st < /proc/$PPID/stat
echo "start $(date +%s.%N) $(( ${{st[13]}} + ${{st[14]}} )) $(getconf CLK_TCK)" >> {log}
out=$({sbatch} --hold "$@" 2>>{log}.err); rc=$?
echo "end $(date +%s.%N) ${{out%%;*}}" >> {log}
printf '%s\\n' "$out"
exit $rc
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--psets", type=int, default=100_000, help="psets per rule (a multiple of 100)")
    ap.add_argument("--dir", type=Path, default=Path("/tmp/slurm-submit"), help="scratch folder (emptied)")
    ap.add_argument("--render-only", action="store_true", help="time `--render-only` instead (no sbatch)")
    ap.add_argument("--no-submit", action="store_true",
                    help="the wrapper does not call sbatch (prints a made-up id): sweepc's side only, no load on the cluster")
    ap.add_argument("--cold", action="store_true", help="no graph cache: the timed build compiles the sweepfile")
    ap.add_argument("--profile", type=Path, help="run the build under cProfile, stats to this file")
    args = ap.parse_args()

    real = shutil.which("sbatch")
    if real is None and not (args.render_only or args.no_submit):
        print("sbatch is not on PATH (set SLURM_CONF and start the local cluster)", file=sys.stderr)
        return 2
    base = args.dir
    shutil.rmtree(base, ignore_errors=True)
    proj, bindir, log = base / "project", base / "bin", base / "sbatch.log"
    proj.mkdir(parents=True)
    bindir.mkdir()
    (proj / "sweepfile").write_text(SWEEPFILE.format(na=max(1, args.psets // 100)))
    (bindir / "sbatch").write_text((FAKE if args.no_submit else WRAPPER).format(log=log, sbatch=real))
    (bindir / "sbatch").chmod(0o755)

    env = dict(os.environ, PATH=f"{bindir}:{os.environ['PATH']}")
    # compile once first (`sweepc check` writes .sweepc/graph.cache when .sweepc exists), so the
    # timed build is a user's second command; with --cold the build compiles the sweepfile itself
    if not args.cold:
        (proj / ".sweepc").mkdir()
    subprocess.run([sys.executable, "-m", "sweepc", "check"], cwd=proj, env=env, check=True, stdout=subprocess.DEVNULL)
    cmd = [sys.executable, "-m", "sweepc", "build", "--backend", "slurm"] + (["--render-only"] if args.render_only else [])
    if args.profile:
        cmd[1:1] = ["-m", "cProfile", "-o", str(args.profile)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.time()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, cwd=proj, env=env, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)  # (reaped here: the command's own peak memory)
        out.seek(0)
        err.seek(0)
        done = subprocess.CompletedProcess(cmd, os.waitstatus_to_exitcode(status), out.read(), err.read())
    wall = time.time() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(" ".join(cmd[1:]) + f"  (in {proj})")
    print(done.stdout.strip())
    if done.returncode != 0:
        print(done.stderr, file=sys.stderr)

    starts, ends, ids = [], [], []
    if log.exists():
        for line in log.read_text().splitlines():
            f = line.split()
            if f[0] == "start":
                starts.append((float(f[1]), int(f[2]) / int(f[3])))
            elif f[0] == "end":
                ends.append(float(f[1]))
                if len(f) > 2 and f[2].isdigit():
                    ids.append(f[2])
    if ids:
        subprocess.run(["scancel", *ids], check=False)
    print(f"\npsets: {args.psets} x 2 rules; load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if starts:
        print(f"until the first sbatch starts:  sweepc CPU {starts[0][1]:.2f} s, wall {starts[0][0] - t0:.2f} s")
    if ends:
        print(f"until the first sbatch returns: wall {ends[0] - t0:.2f} s")
    if len(ends) < len(starts) or done.returncode != 0:
        err = Path(f"{log}.err")
        print(f"an sbatch failed or did not return: {err.read_text().strip() if err.exists() else ''}")
    print(f"the whole command:              CPU {cpu:.2f} s, wall {wall:.2f} s, peak RSS {usage.ru_maxrss / 1024:.0f} MB (exit {done.returncode})")
    if ids:
        print(f"submitted (held) and cancelled: {' '.join(ids)}")
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
