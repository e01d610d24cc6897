#!/usr/bin/env python3
"""`sweepc results` and `sweepc report` on a built study of N psets (issue 16:
"100k psets must still give a report in seconds").

    python3 benchmarks/report_100k.py                       # N = 100000, in /tmp/sweepc-report-100k
    python3 benchmarks/report_100k.py --n 2000 --dir /tmp/r2k
    python3 benchmarks/report_100k.py --profile /tmp/prof   # + a cProfile of each command

The study is built for real, once, by this checkout (`sweepc build -k -j 2`:
~215 trivial jobs a second on an idle 2-core machine, 8 minutes at 100k; 25
minutes under load; the folder is kept and reused while its sweepfile is the
same, and a build that was stopped is finished the next time):

    param a = range(0, N / 1000)   param b = range(0, 100)   param c = range(0, 10)
    sweep grid = a * b * c
    rule prep over a:      results: p.json  (w)
    rule sim over grid:    results: r.json  (y, z); fails (exit 3) where a == 7 and b == 7
    rule summary:          input: done(sim)

so the report has a main sweep of N psets with two numeric results against
three varied parameters, a rule over fewer parameters in the one table, a
gather over what succeeded, and failures with their error text.

Then each command runs as its own process, as a user runs it, ROUNDS times:

    results   sweepc results                          (the terminal table, to a pipe)
    csv       sweepc results --format csv -o FILE     (the one table, every column)
    report    sweepc report -o FILE

and the script prints, per command, the median (and least) wall time and CPU
time (user + system of the process and its children, os.wait4), and the load
average before and after (on a shared machine, quote it). Not a test: nothing
is asserted.

--baseline DIR times another checkout too (`git worktree add /tmp/base
main`, or `git archive main sweepc grammar | tar -x -C /tmp/base`) right
after this one (who goes first alternates between commands): a before/after
on the same study. Each checkout's rounds come after one uncounted run: the
graph cache holds for one checkout's code at a time, so the first run after
the other checkout compiles the sweepfile again.

--profile DIR writes DIR/NAME-this.prof (and NAME-baseline.prof): one more
run of each command under cProfile; read them with `python3 -m pstats FILE`,
`sort cumtime`, `stats 30`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

SWEEPFILE = """\
param a = range(0, {na})
param b = range(0, 100)
param c = range(0, 10)
sweep grid = a * b * c

rule prep over a:
    output: "p.json"
    results: "p.json"
    shell: "printf '{{{{\\"w\\": %s}}}}\\n' $(( {{a}} * 3 )) > {{output}}"

rule sim over grid:
    input: prep
    output: "r.json"
    results: "r.json"
    shell: \"\"\"
        test {{a}} -ne 7 -o {{b}} -ne 7 || {{{{ echo "diverged at a={{a}} b={{b}}" >&2; exit 3; }}}}
        printf '{{{{"y": %s, "z": %s.5}}}}\\n' $(( {{a}} * {{b}} + {{c}} )) {{c}} > {{output}}
    \"\"\"

rule summary:
    input: done(sim)
    output: "n.txt"
    shell: "wc -l < {{input.list}} > {{output}}"
"""

# Bytecode is written and used, as for an installed package (pip compiles it).
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
SWEEPC = [sys.executable, "-m", "sweepc"]


def run(argv: list[str], cwd: Path, check: bool = True, code: Path | None = None) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds (user + system, with children), exit code);
    `code`: the sweepc checkout to run (first on PYTHONPATH)."""
    env = dict(ENV)
    if code is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(code), *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])])
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    assert proc.stderr is not None
    err = proc.stderr.read()  # before wait4: a full pipe would block the command
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    if check and code != 0:
        print(f"  ! {' '.join(argv)} exited {code}: {err.decode(errors='replace')[-800:]}", file=sys.stderr)
    return wall, usage.ru_utime + usage.ru_stime, code


def make_study(d: Path, n: int, jobs: int) -> None:
    """The study of n psets, built (failures included: the build exits 1)."""
    if n % 1000:
        raise SystemExit("--n must be a multiple of 1000")
    text = SWEEPFILE.format(na=n // 1000)
    d.mkdir(parents=True, exist_ok=True)
    sf = d / "sweepfile"
    if not sf.exists() or sf.read_text() != text:
        sf.write_text(text)
    built = d / "built.txt"  # the sweepfile a finished build built (a rebuild would rerun the failures)
    if built.exists() and built.read_text() == text:
        return
    print(f"building {d} (sweepc build -k -j {jobs}) ...", flush=True)
    wall, cpu, code = run([*SWEEPC, "build", "-k", "-j", str(jobs)], d, check=False, code=ROOT)
    print(f"  {wall:.1f} s wall, {cpu:.1f} s CPU, exit {code} (1: the planned failures)", flush=True)
    if code in (0, 1):
        built.write_text(text)


COMMANDS = {
    "results": ["results"],  # the terminal table (to a pipe here)
    "csv": ["results", "--format", "csv", "-o", "{out}/results.csv"],
    "report": ["report", "-o", "{out}/report.html"],
}
ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000, help="psets of the main sweep (a multiple of 1000)")
    ap.add_argument("--dir", type=Path, default=None, help="the study's folder (default /tmp/sweepc-report-N)")
    ap.add_argument("--jobs", type=int, default=2, help="-j of the build that makes the study")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--profile", type=Path, default=None, help="write a cProfile of each command into this folder")
    ap.add_argument("--baseline", type=Path, default=None,
                    help="another sweepc checkout (e.g. `git worktree add /tmp/base main`) timed in turn with this one")
    args = ap.parse_args()
    d = (args.dir or Path(f"/tmp/sweepc-report-{args.n // 1000}k")).resolve()
    make_study(d, args.n, args.jobs)  # with this checkout
    out = d / "bench-out"
    out.mkdir(exist_ok=True)
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    codes: dict[str, Path | None] = {"this": ROOT}
    if args.baseline is not None:
        codes["baseline"] = args.baseline.resolve()
    for n_command, (name, argv) in enumerate(COMMANDS.items()):
        full = [a.format(out=out) for a in argv]
        times: dict[str, list[tuple[float, float, int]]] = {c: [] for c in codes}
        order = list(codes) if n_command % 2 == 0 else list(codes)[::-1]  # who goes first alternates
        for c in order:
            # one run first, not counted: the graph and fingerprint caches hold
            # for one checkout's code at a time (lang/project.py), so the first
            # run after the other checkout compiles the sweepfile again
            run([*SWEEPC, *full], d, code=codes[c])
            times[c] = [run([*SWEEPC, *full], d, code=codes[c]) for _ in range(args.rounds)]
        print(f"{name}: sweepc {' '.join(full)}", flush=True)
        for c, ts in times.items():
            print(f"  {c:8} median of {args.rounds}: {statistics.median(t[0] for t in ts):6.2f} s wall, "
                  f"{statistics.median(t[1] for t in ts):6.2f} s CPU   (min {min(t[0] for t in ts):.2f} s wall, "
                  f"{min(t[1] for t in ts):.2f} s CPU)", flush=True)
        if args.profile is not None:
            args.profile.mkdir(parents=True, exist_ok=True)
            for c, where in codes.items():
                prof = args.profile / f"{name}-{c}.prof"
                run([sys.executable, "-m", "cProfile", "-o", str(prof), "-m", "sweepc", *full], d, code=where)
                print(f"  profile: {prof}")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
