#!/usr/bin/env python3
"""sweepc against GNU make on the same jobs: plan, full run, no-op, +10 psets.

    python3 benchmarks/bench.py                           # N = 1000, 10000; 3 rounds
    python3 benchmarks/bench.py --sizes 100000 --rounds 1
    python3 benchmarks/bench.py --sizes 100000 --rounds 3 --no-full   # no-op and +10 only
    python3 benchmarks/bench.py --sizes 10000 --profile /tmp/noop.prof

The workload (issue 11): N psets x 2 per-pset rules + 1 gather = 2N+1 jobs.

    param i = range(0, N)
    rule gen over i:       output: "out.txt"     shell: "echo {i} > {output}"
    rule square over i:    input: gen            shell: "cat {input} > {output}"
    rule mean:             input: square         shell: "xargs cat < {input.list} | wc -l > {output}"

make gets a generated Makefile with the same 2N+1 jobs as explicit rules
(gen/<i>.txt, sq/<i>.txt, mean.txt; folders made once), run by the same
shell as sweepc's jobs (`SHELL := bash`, `.SHELLFLAGS := -e -o pipefail -c`).

Each round, for each tool in turn (the first tool alternates between rounds,
so drifting background load hits both alike), on a fresh project:

    plan      sweepc build -n          | make -n           (nothing built yet)
    full      sweepc build -j J        | make -j J         (everything)
    no-op     sweepc build             | make              (nothing to do: sweepc answers
                                                            from the no-op certificate
                                                            the full run left)
    no-op, planner                                         (the same, with sweepc's
              sweepc build             | make               certificate removed first:
                                                            it loads the graph and plans,
                                                            as after an edit that changed
                                                            no job, such as a comment;
                                                            both tools run it on inodes
                                                            the no-op step just warmed)
    no-op, again                                           (the no-op once more: sweepc
              sweepc build             | make               answers from the certificate
                                                            the planner's no-op wrote.
                                                            The no-op step runs right
                                                            after both tools' full runs,
                                                            and on this kind of VM the
                                                            first command after one is
                                                            slower, make's too: this is
                                                            the no-op of a user who
                                                            builds again later)
    +10       the study grows by 10 psets (20 new jobs + the gather reruns):
              sweepc build -j J        | make -j J
              (under the table: how long sweepc's 21 jobs ran, first start
              to last end, from its store, and the rest of the build next
              to the no-op: issue 11's target is +10 <= no-op + the jobs)

Each command runs as its own process, as a user runs it; time is wall-clock,
memory the peak RSS of that process (os.wait4; for sweepc that is the main
process, its job spawner is a separate ~9 MB process). The table gives the
median over the rounds and the ratio make/sweepc of the medians (above 1:
sweepc is faster). Not a test: nothing is asserted. The machine's load
average is printed before and after: on a shared machine, quote it.

--profile FILE writes a cProfile of sweepc's no-op build (of the largest N)
to FILE (read it with `python3 -m pstats FILE`, then `sort cumtime`, `stats 30`).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SWEEPFILE = """\
param i = range(0, {n})

rule gen over i:
    output: "out.txt"
    shell: "echo {{i}} > {{output}}"

rule square over i:
    input: gen
    output: "square.txt"
    shell: "cat {{input}} > {{output}}"

rule mean:
    input: square
    output: "mean.txt"
    shell: "xargs cat < {{input.list}} | wc -l > {{output}}"
"""

STEPS = ("plan", "full", "no-op", "no-op, planner", "no-op, again", "+10")
NOOPS = ("no-op", "no-op, planner", "no-op, again")
# Bytecode is written and used, as for an installed package (pip compiles it):
# with PYTHONDONTWRITEBYTECODE set, every start would compile sweepc's source.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
TOOLS = ("sweepc", "make")


def run(argv: list[str], cwd: Path) -> tuple[float, float, float]:
    """(wall seconds, peak RSS in MB, CPU seconds: user + system) of one
    command and the children it waited for; stops the benchmark if it fails
    (a failed command's time is not a time of the step)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV)
    assert proc.stderr is not None
    err = proc.stderr.read()  # before wait4: a full pipe would block the command
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"bench.py: {' '.join(argv)} in {cwd} exited {code}:\n{err.decode(errors='replace')[-800:]}")
    return elapsed, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


def sweepc_argv() -> list[str]:
    return [sys.executable, "-m", "sweepc"]


# -- the two projects ---------------------------------------------------------


def write_sweepc(d: Path, n: int) -> None:
    d.mkdir(parents=True, exist_ok=True)
    (d / "sweepfile").write_text(SWEEPFILE.format(n=n))


def write_make(d: Path, n: int) -> None:
    d.mkdir(parents=True, exist_ok=True)
    lines = [
        "SHELL := bash",
        ".SHELLFLAGS := -e -o pipefail -c",
        ".DEFAULT_GOAL := mean.txt",
        "",
    ]
    for i in range(n):
        lines.append(f"gen/{i}.txt: | gen\n\techo {i} > gen/{i}.txt")
        lines.append(f"sq/{i}.txt: gen/{i}.txt | sq\n\tcat gen/{i}.txt > sq/{i}.txt")
    squares = " ".join(f"sq/{i}.txt" for i in range(n))
    lines.append(f"mean.txt: {squares}\n\txargs cat < sq.list | wc -l > mean.txt")
    lines.append("gen sq:\n\tmkdir -p $@")
    (d / "Makefile").write_text("\n".join(lines) + "\n")
    (d / "sq.list").write_text("".join(f"sq/{i}.txt\n" for i in range(n)))


def fresh(base: Path, tool: str, n: int, round_: int = 0) -> Path:
    """A new project folder for this round. The earlier rounds' folders are
    removed only after the last round of a size (remove_rounds): on ext4,
    creating files right after many were deleted is several times slower for
    minutes (the kernel skips recently freed inodes, `recently_deleted`), and
    would bill the tool that creates more files per job for the clean-up."""
    d = base / f"{tool}-{n}" / f"r{round_}"
    if d.exists():
        shutil.rmtree(d)
    (write_sweepc if tool == "sweepc" else write_make)(d, n)
    return d


def remove_rounds(base: Path, n: int, keep_last: int) -> None:
    """The rounds' folders of size n but the last one (kept for --profile and --dir)."""
    for tool in TOOLS:
        for r in range(keep_last):
            shutil.rmtree(base / f"{tool}-{n}" / f"r{r}", ignore_errors=True)


def command(tool: str, step: str, jobs: int) -> list[str]:
    if tool == "sweepc":
        return sweepc_argv() + (["build"] if step in NOOPS else ["build", "-n"] if step == "plan" else ["build", "-j", str(jobs)])
    return ["make", "-s"] + ([] if step in NOOPS else ["-n"] if step == "plan" else ["-j", str(jobs)])


# -- one size ---------------------------------------------------------------------


def pretend_built(tool: str, d: Path, n: int) -> None:
    """--no-full: make the project look fully built without running its 2N+1
    jobs. make: every target file, written in rule order (older inputs).
    sweepc: the state store rows, job folders, markers, outputs and logs a
    build leaves, and its no-op certificate (through sweepc's own store API
    and plan/noop.py). Only for the no-op and +10
    steps at sizes where a full run takes too long; the table says so."""
    if tool == "make":
        (d / "gen").mkdir(exist_ok=True)
        (d / "sq").mkdir(exist_ok=True)
        for i in range(n):
            (d / f"gen/{i}.txt").write_text(f"{i}\n")
        time.sleep(0.02)
        for i in range(n):
            (d / f"sq/{i}.txt").write_text(f"{i}\n")
        time.sleep(0.02)
        (d / "mean.txt").write_text(f"{n}\n")
        return
    code = f"""
import sys, time
from pathlib import Path
from sweepc.backends.base import params_json
from sweepc.lang.project import load_graph
from sweepc.plan.planner import plan
from sweepc.plan.store import Outcome, Store
d = Path({str(d)!r})
store = Store.open(d)
g = load_graph(d / "sweepfile")
p = plan(g, store, range(len(g.jobs)))
store.mark_planned(((g.jobs[i].rule, g.jobs[i].hash, params_json(g.jobs[i])) for i in p.run), "pretend")
now, outs = time.time(), []
for i in p.run:
    j = g.jobs[i]
    jd = g.job_dir(j)
    jd.mkdir(parents=True, exist_ok=True)
    (jd / ".sweepc-job").write_text("")
    for o in g.output_paths(j):
        o.write_text("x\\n")
    (jd / "sweepc.log").write_text("")
    outs.append(Outcome(j.rule, j.hash, "done", p.fingerprints[i], p.cmd_hashes[i], p.inputs_hashes[i], 0, now, now,
                        "bench", 1.0, 1, "local", None, "pretend"))
store.record(outs)
# and the no-op certificate a build that ends with every job done writes (plan/noop.py)
from sweepc.plan.noop import certify
assert certify(g, plan(g, store, range(len(g.jobs))), store)
store.close()
"""
    subprocess.run([sys.executable, "-c", code], cwd=d, env=ENV, check=True)


def bench_size(n: int, base: Path, rounds: int, jobs: int, full: bool = True) -> dict[tuple[str, str], list[tuple[float, float, float]]]:
    got: dict[tuple[str, str], list[tuple[float, float, float]]] = {(t, s): [] for t in TOOLS for s in STEPS}
    got[("sweepc", "+10 jobs")] = []  # how long the +10 build's jobs took, first start to last end (jobs_span)
    for r in range(rounds):
        order = TOOLS if r % 2 == 0 else TOOLS[::-1]
        dirs = {t: fresh(base, t, n, r) for t in order}
        for step in STEPS:
            for tool in order:
                if step == "+10":
                    (write_sweepc if tool == "sweepc" else write_make)(dirs[tool], n + 10)
                if step == "full" and not full:
                    pretend_built(tool, dirs[tool], n)
                    continue
                if step == "no-op, planner" and tool == "sweepc":
                    (dirs[tool] / ".sweepc" / "uptodate").unlink()  # (the no-op before wrote it: a build must have)
                got[(tool, step)].append(run(command(tool, step, jobs), dirs[tool]))
                if step == "+10" and tool == "sweepc":
                    got[("sweepc", "+10 jobs")].append((jobs_span(dirs[tool]), 0.0, 0.0))
        print(f"  N={n:,} round {r + 1}/{rounds} done, load {load()}", file=sys.stderr, flush=True)
    remove_rounds(base, n, rounds - 1)
    return got


def jobs_span(d: Path) -> float:
    """Seconds from the first start to the last end of the jobs the project's
    last run ran, as its state store recorded them (issue 11's +10 target: the
    build may cost at most the no-op plus running those jobs)."""
    import sqlite3

    con = sqlite3.connect(f"file:{d / '.sweepc' / 'state.db'}?mode=ro", uri=True)
    try:
        first, last = con.execute(
            "SELECT min(start), max(end) FROM jobs WHERE run_id = (SELECT run_id FROM runs ORDER BY seq DESC LIMIT 1)").fetchone()
    finally:
        con.close()
    return float(last - first) if first is not None and last is not None else 0.0


def table(n: int, got: dict[tuple[str, str], list[tuple[float, float, float]]]) -> str:
    out = [
        f"N = {n:,} psets ({2 * n + 1:,} jobs), medians of {len(got[('sweepc', 'plan')])} rounds; wall time, then CPU (user + sys)",
        "",
        "| step | sweepc | make | make/sweepc | sweepc CPU | make CPU | make/sweepc CPU | sweepc peak RSS | make peak RSS |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for step in STEPS:
        if not got[("sweepc", step)]:
            out.append(f"| {step} | not run (--no-full: both projects made to look built) | | | | | | | |")
            continue
        s, m = (statistics.median(t for t, _, _ in got[(tool, step)]) for tool in TOOLS)
        sc, mc = (statistics.median(c for _, _, c in got[(tool, step)]) for tool in TOOLS)
        sm, mm = (max(x for _, x, _ in got[(tool, step)]) for tool in TOOLS)
        out.append(f"| {step} | {s:.3f} s | {m:.3f} s | {m / s:.2f} | {sc:.3f} s | {mc:.3f} s | {mc / max(sc, 1e-9):.2f} | {sm:.0f} MB | {mm:.0f} MB |")
    spans = [t for t, _, _ in got[("sweepc", "+10 jobs")]]
    if spans and got[("sweepc", "no-op")]:
        whole = statistics.median(t for t, _, _ in got[("sweepc", "+10")])
        jobs = statistics.median(spans)
        noop = statistics.median(t for t, _, _ in got[("sweepc", "no-op")])
        out.append("")
        out.append(f"sweepc +10: {whole:.3f} s, of which its {2 * 10 + 1} jobs ran {jobs:.3f} s (first start to last end, "
                   f"from its store); the rest {whole - jobs:.3f} s against a no-op of {noop:.3f} s "
                   f"(issue 11's target: +10 <= no-op + its jobs, i.e. the rest <= the no-op)")
    return "\n".join(out)


def profile_noop(n: int, base: Path, out: Path, rounds: int) -> None:
    d = base / f"sweepc-{n}" / f"r{rounds - 1}"
    if not (d / ".sweepc").exists():
        d = fresh(base, "sweepc", n, rounds - 1)
        run(command("sweepc", "full", 2), d)
    run(command("sweepc", "no-op", 2), d)  # warm
    subprocess.run([sys.executable, "-m", "cProfile", "-o", str(out.resolve()), "-m", "sweepc", "build"],
                   cwd=d, stdout=subprocess.DEVNULL, check=False, env=ENV)
    print(f"cProfile of sweepc's no-op build at N={n:,}: {out} (python3 -m pstats {out})", file=sys.stderr)


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def disk(path: Path) -> str:
    """The file system's state, which the times depend on (a nearly full inode
    table, or many files just deleted, makes creating files several times slower)."""
    st = os.statvfs(path)
    used = 1 - st.f_ffree / st.f_files if st.f_files else 0.0
    return f"{used:.0%} of its inodes and {1 - st.f_bfree / st.f_blocks:.0%} of its blocks in use"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000,10000", help="comma-separated pset counts (default 1000,10000)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds per size (default 3)")
    ap.add_argument("-j", "--jobs", type=int, default=2, help="parallel jobs for full runs (default 2)")
    ap.add_argument("--dir", help="where to make the projects (default: a temp folder, removed after)")
    ap.add_argument("--no-full", action="store_true",
                    help="skip the full run: make both projects look built instead (for the no-op and +10 steps at 100k)")
    ap.add_argument("--profile", metavar="FILE", help="write a cProfile of sweepc's no-op build at the largest size to FILE")
    args = ap.parse_args()
    if shutil.which("make") is None:
        print("bench.py: GNU make is not installed (apt-get install make)", file=sys.stderr)
        return 2
    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="sweepc-bench-"))
    base.mkdir(parents=True, exist_ok=True)
    sizes = [int(x) for x in args.sizes.split(",")]
    make_version = subprocess.run(["make", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    print(f"sweepc vs {make_version}: {os.cpu_count()} cores, python {sys.version.split()[0]}, -j {args.jobs}, load before {load()}")
    print(f"projects in {base}: {disk(base)}\n")
    subprocess.run(sweepc_argv() + ["--version"], env=ENV, check=True, stdout=subprocess.DEVNULL)  # writes the .pyc files
    try:
        for n in sizes:
            got = bench_size(n, base, args.rounds, args.jobs, full=not args.no_full)
            print(table(n, got) + "\n", flush=True)
        if args.profile:
            profile_noop(max(sizes), base, Path(args.profile), args.rounds)
    finally:
        print(f"load after {load()}")
        if not args.dir:
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
