#!/usr/bin/env python3
"""What templates: costs: rendering N small templates, and writing them.

    python3 benchmarks/templates.py                  # 100k psets, 2000 jobs built
    python3 benchmarks/templates.py --psets 10000 --build 500

Measures, for N psets of a rule with one 4-line template:
  - compiling the sweepfile with and without the templates: field;
  - templates.check(): rendering every job's template in memory, the step
    that runs before anything is started (a build's fixed cost);
  - per job, preparing its folder (jobdir.prepare_job_dir: marker,
    pset.json, and the rendered template) with and without the template;
  - planning N psets with and without templates (the planner hashes the
    template digest into every fingerprint);
  - a real local build of `--build` trivial jobs with and without a
    template (jobs/s).
Prints a Markdown table; asserts nothing.
"""

from __future__ import annotations

import argparse
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

rule sim over grid:
{templates}    output: "out.txt"
    shell: "cat input.deck > {{output}} 2>/dev/null || echo {{a}} > {{output}}"
"""
DECK = 'title = "run {{ pset.hash }}"\na = {{ a }}\nb = {{ b }}\nsteps = {{ a * 10 + b }}\n'


def project(base: Path, n: int, with_templates: bool) -> Path:
    d = base / f"{'t' if with_templates else 'p'}-{n}"
    shutil.rmtree(d, ignore_errors=True)
    (d / "templates").mkdir(parents=True)
    (d / "templates" / "input.deck.j2").write_text(DECK)
    field = '    templates: "templates/input.deck.j2"\n' if with_templates else ""
    (d / "sweepfile").write_text(SWEEPFILE.format(na=max(1, n // 100), templates=field))
    return d


def timed(f, *args):  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    out = f(*args)
    return time.perf_counter() - t0, out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--psets", type=int, default=100_000)
    ap.add_argument("--build", type=int, default=2000, help="jobs in the real local builds")
    ap.add_argument("--sample", type=int, default=5000, help="job folders written for the per-job numbers")
    ap.add_argument("-j", "--jobs", type=int, default=2)
    args = ap.parse_args()

    import sweepc
    from sweepc.backends import templates
    from sweepc.backends.jobdir import prepare_job_dir

    base = Path(tempfile.mkdtemp(prefix="sweepc-bench-templates-"))
    rows: list[tuple[str, str, str]] = []
    try:
        n = args.psets
        t_plain, plain = timed(sweepc.load, project(base, n, False))
        d = project(base, n, True)
        t_tmpl, study = timed(sweepc.load, d)
        rows.append((f"compile, {n:,} psets", f"{t_plain:.2f} s without templates, {t_tmpl:.2f} s with", ""))
        g = study.graph
        ids = range(len(g.jobs))
        t_check, _ = timed(templates.check, g, ids)
        rows.append((f"templates.check(): render all {n:,} in memory", f"{t_check:.2f} s", f"{t_check / n * 1e6:.0f} µs a job"))
        sample = g.jobs[: args.sample]
        plain_sample = plain.graph.jobs[: args.sample]
        t_w, _ = timed(lambda: [prepare_job_dir(g, j, input_list=False) for j in sample])
        t_p, _ = timed(lambda: [prepare_job_dir(plain.graph, j, input_list=False) for j in plain_sample])
        rows.append((f"prepare a job folder with the template, {len(sample):,} folders", f"{t_w:.2f} s", f"{t_w / len(sample) * 1e6:.0f} µs a job"))
        rows.append((f"prepare a job folder without it (marker, pset.json), {len(sample):,} folders", f"{t_p:.2f} s", f"{t_p / len(sample) * 1e6:.0f} µs a job"))
        shutil.rmtree(d / "calc")
        t_pp, _ = timed(plain.plan)
        t_pt, _ = timed(study.plan)
        rows.append((f"plan (build -n), {n:,} psets", f"{t_pp:.2f} s without templates, {t_pt:.2f} s with", ""))

        exe = [sys.executable, "-m", "sweepc"]
        for with_t in (False, True):
            b = project(base, args.build, with_t)
            t0 = time.perf_counter()
            subprocess.run([*exe, "build", "-j", str(args.jobs)], cwd=b, check=True, stdout=subprocess.DEVNULL)
            t = time.perf_counter() - t0
            rows.append((f"local build, {args.build:,} jobs, {'with' if with_t else 'without'} a template", f"{t:.2f} s", f"{args.build / t:.0f} jobs/s"))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print("| step | time | per job |")
    print("|---|---:|---:|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
