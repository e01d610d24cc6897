#!/usr/bin/env python3
"""Edit a project at random, build after each edit, and check every output
against what it must be: an edit anywhere reruns what it must.

    python3 scripts/edits.py                               # 60 edits, seed 1, in /tmp
    python3 scripts/edits.py --edits 300 --seed 7 --dir /dev/shm/edits
    python3 scripts/edits.py --edits 30 --backend slurm       # builds with --backend slurm --wait

Not a benchmark and not a test (tests/test_incremental.py runs it short):
the incremental guarantee tried from outside, across sweepc's caches (the
compiled graph, the fingerprints of an earlier graph, the no-op
certificate, the second stage of a build whose sweep reads a rule's
samples). The project has a shell rule reading a source file, a rule with a
jinja2 template, a `python:` rule whose module holds a constant, a gather,
a rule over the rows of a CSV file, and a rule over samples another rule
makes. Each step makes one random edit:

    the range of `a` grows or shrinks; a value of `b` comes or goes; the
    constant `c` changes; the source file's text changes, or it is only
    touched; the module's constant changes, or it is only touched; the
    template's text changes; a comment is added to the sweepfile; the
    shell rule's command changes; a cell of the CSV file a sweep reads
    changes, or a row comes or goes; the rule that makes a sweep's samples
    makes more or fewer, or other values; one build runs with `-D c=...`
    instead of an edit; an output is deleted by hand; `sweepc clean
    orphans`, or `clean outputs --rule R`; nothing changes.

then runs `sweepc build -j 2`, which must end well, and checks every job's
files byte for byte against what the current files (and -D) say they must
hold; then `sweepc build` (without -D) must have nothing to do, except after
a -D build, whose jobs the plain build then runs back, and is checked
again. With --whole-seconds every file written gets an mtime in whole
seconds, as on Lustre or ext3, where an edit in the second of the last
build keeps the mtime. Every step is printed; exit status 0 when every
check held.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from outside import command_env, new_project, verdict

SWEEPFILE = """\
# a project edited at random by scripts/edits.py
param a = range(0, {na})
param b = {b}
param c = {c}
sweep s = a * b * c
{comments}
rule gen over s:
    input: "data.txt"
    output: "out.txt"
    shell: "echo {{a}} {{b}} {{c}} $(cat {{input}}) {genv} > {{output}}"

rule deck over s:
    templates: "deck.j2"
    input: gen
    output: "deck.out"
    shell: "cat deck {{input}} > {{output}}"

rule py over s:
    python: "model.py:run"
    input: gen

rule total:
    input: py
    output: "total.txt"
    shell: "xargs cat < {{input.list}} | md5sum > {{output}}"

rule fromcsv over csv("rows.csv"):
    output: "row.txt"
    shell: "echo {{p}} {{q}} > {{output}}"

rule make_samples:
    output: "samples.npy"
    shell: "python3 -c 'import numpy; numpy.save(\\"samples.npy\\", numpy.arange({ns}).reshape(-1, 1) * {scale})'"

sweep samp = npy(make_samples, columns=["x"])

rule usesamp over samp:
    output: "x.txt"
    shell: "echo {{x}} > {{output}}"
"""

MODEL = """\
K = {k}


def run(pset):
    with open(pset["_inputs"][0]) as f:
        g = f.read()
    return {{"v": pset["a"] * K + pset["b"], "g": g}}
"""


@dataclass
class State:
    """What the project's files say now."""

    na: int = 4
    b: list[int] = field(default_factory=lambda: [1, 2])
    c: str = "x"
    data: str = "d0"
    k: int = 3
    deck: str = "t0"
    genv: str = "v0"
    comments: int = 0
    rows: list[tuple[int, str]] = field(default_factory=lambda: [(1, "u"), (2, "v")])
    ns: int = 3
    scale: int = 2

    def write(self, project: Path) -> None:
        (project / "sweepfile").write_text(SWEEPFILE.format(
            na=self.na, b=json.dumps(self.b), c=json.dumps(self.c), genv=self.genv, ns=self.ns, scale=self.scale,
            comments="".join(f"# comment {i}\n" for i in range(self.comments))))
        _write_if_changed(project / "data.txt", self.data + "\n")
        _write_if_changed(project / "model.py", MODEL.format(k=self.k))
        _write_if_changed(project / "deck.j2", "deck a={{ a }} b={{ b }} c={{ c }} " + self.deck + "\n")
        _write_if_changed(project / "rows.csv", "p,q\n" + "".join(f"{p},{q}\n" for p, q in self.rows))


def _write_if_changed(path: Path, text: str) -> None:
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def wrong(project: Path, st: State, overrides: list[str]) -> list[str]:
    """Jobs whose files are not what the project (and -D) say they must be."""
    import sweepc

    c = st.c
    for o in overrides:
        c = json.loads(o.split("=", 1)[1])
    study = sweepc.load(project, overrides)
    g = study.graph
    problems: list[str] = []
    if study.plan().run:
        problems.append(f"{len(study.plan().run)} jobs still to run right after a build")

    def check(job_label: str, path: Path, want: str) -> None:
        try:
            got = path.read_text()
        except OSError as e:
            problems.append(f"{job_label}: {path.name}: {e.strerror}")
            return
        if got != want:
            problems.append(f"{job_label}: {path.name} holds {got!r}, not {want!r}")

    results: dict[str, str] = {}
    for job in g.jobs:
        d = g.job_dir(job)
        a, b = job.params.get("a"), job.params.get("b")
        gen_text = f"{a} {b} {c} {st.data} {st.genv}\n"
        if job.rule == "gen":
            check(job.label, d / "out.txt", gen_text)
        elif job.rule == "deck":
            deck = f"deck a={a} b={b} c={c} {st.deck}"
            check(job.label, d / "deck", deck + "\n")
            check(job.label, d / "deck.out", deck + "\n" + gen_text)
        elif job.rule == "py":
            assert isinstance(a, int) and isinstance(b, int)
            want = json.dumps({"v": a * st.k + b, "g": gen_text})
            check(job.label, d / "sweepc-result.json", want)
            results[str(d / "sweepc-result.json")] = want
        elif job.rule == "fromcsv":
            check(job.label, d / "row.txt", f"{job.params['p']} {job.params['q']}\n")
        elif job.rule == "make_samples":
            got_x = sorted(j.params["x"] for j in g.jobs if j.rule == "usesamp")
            if got_x != [i * st.scale for i in range(st.ns)]:
                problems.append(f"usesamp's psets are x = {got_x}, not {[i * st.scale for i in range(st.ns)]}")
        elif job.rule == "usesamp":
            check(job.label, d / "x.txt", f"{job.params['x']}\n")
        elif job.rule == "total":
            try:
                names = (d / "sweepc-inputs.txt").read_text().splitlines()
            except OSError as e:
                problems.append(f"{job.label}: sweepc-inputs.txt: {e.strerror}")
                continue
            paths = [str((d / n).resolve()) for n in names]
            if sorted(paths) != sorted(str(Path(p).resolve()) for p in results):
                problems.append(f"{job.label}: its input list names {len(paths)} files, not the {len(results)} of py")
                continue
            digest = hashlib.md5("".join(Path(p).read_text() for p in paths).encode()).hexdigest()
            check(job.label, d / "total.txt", f"{digest}  -\n")
    table = study.results("py")
    rows = sorted((j.params["p"], j.params["q"]) for j in g.jobs if j.rule == "fromcsv")
    if rows != sorted(set(st.rows)):
        problems.append(f"fromcsv's psets are {rows}, not {sorted(set(st.rows))}")
    if len(table) != sum(1 for j in g.jobs if j.rule == "py") or not (table["v"] == table["a"] * st.k + table["b"]).all():
        problems.append("the results table of py does not hold every pset's right value")
    return problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--edits", type=int, default=60)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--dir", default=None, help="make the project in this folder (default: a new temporary one)")
    ap.add_argument("--backend", default="local",
                    help="the builds' --backend (default local; dask: a LocalCluster; slurm: the cluster SLURM_CONF "
                         "names, with --wait)")
    ap.add_argument("--whole-seconds", action="store_true",
                    help="give every file written its mtime in whole seconds, as Lustre or ext3 do")
    args = ap.parse_args()

    rng = random.Random(args.seed)
    project = new_project(args.dir, "sweepc-edits-")
    st = State()
    st.write(project)
    env = command_env()
    problems: list[str] = []
    t0 = time.monotonic()

    def sweepc(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "sweepc", *argv], cwd=project, env=env, capture_output=True, text=True)

    on = ["--backend", args.backend, *(["--wait"] if args.backend == "slurm" else [])]

    def build_and_check(step: int, what: str, overrides: list[str]) -> None:
        defines = [x for o in overrides for x in ("-D", o)]
        r = sweepc(*defines, "build", "-j", "2", *on)
        line = (r.stdout.strip().splitlines() or [""])[-1]
        print(f"{step:4d} {what:<28} {line}", flush=True)
        if r.returncode != 0:
            problems.append(f"step {step} ({what}): build ended {r.returncode}: {r.stdout[-500:]}{r.stderr[-500:]}")
            return
        problems.extend(f"step {step} ({what}): {p}" for p in wrong(project, st, overrides)[:10])

    build_and_check(0, "first build", [])
    for step in range(1, args.edits + 1):
        overrides: list[str] = []
        what = rng.choice([
            "range of a", "values of b", "constant c", "source text", "touch source", "module constant",
            "touch module", "template text", "comment", "command text", "-D c", "delete an output", "nothing",
            "csv cell", "csv rows", "samples count", "samples scale", "clean orphans", "clean a rule",
        ])
        if what == "range of a":
            st.na = rng.choice([n for n in range(2, 11) if n != st.na])
        elif what == "values of b":
            if len(st.b) > 3 or (len(st.b) > 1 and rng.random() < 0.5):
                st.b.remove(rng.choice(st.b))
            else:
                st.b.append(max(st.b) + rng.randint(1, 3))
        elif what == "constant c":
            st.c = rng.choice([v for v in ["x", "y", "z", "w w", "q'q"] if v != st.c])
        elif what == "source text":
            st.data = rng.choice([f"d{i}" for i in range(6) if f"d{i}" != st.data])
        elif what == "touch source":
            os.utime(project / "data.txt")
        elif what == "module constant":
            st.k = rng.choice([k for k in range(1, 7) if k != st.k])
        elif what == "touch module":
            os.utime(project / "model.py")
        elif what == "template text":
            st.deck = rng.choice([f"t{i}" for i in range(6) if f"t{i}" != st.deck])
        elif what == "comment":
            st.comments += 1
        elif what == "command text":
            st.genv = rng.choice([f"v{i}" for i in range(6) if f"v{i}" != st.genv])
        elif what == "-D c":
            overrides = [f"c={json.dumps(rng.choice([v for v in ['x', 'y', 'o v'] if v != st.c]))}"]
        elif what == "csv cell":
            i = rng.randrange(len(st.rows))
            st.rows[i] = (st.rows[i][0], rng.choice([q for q in "uvwxyz" if q != st.rows[i][1]]))
        elif what == "csv rows":
            if len(st.rows) > 3 or (len(st.rows) > 1 and rng.random() < 0.5):
                del st.rows[rng.randrange(len(st.rows))]
            else:
                st.rows.append((max(p for p, _ in st.rows) + 1, rng.choice("uvwxyz")))
        elif what == "samples count":
            st.ns = rng.choice([n for n in range(1, 6) if n != st.ns])
        elif what == "samples scale":
            st.scale = rng.choice([k for k in range(1, 5) if k != st.scale])
        elif what == "clean orphans":
            r = sweepc("clean", "orphans", "-y")
            if r.returncode != 0:
                problems.append(f"step {step}: clean orphans ended {r.returncode}: {r.stderr[-300:]}")
        elif what == "clean a rule":
            rule = rng.choice(["gen", "deck", "py", "fromcsv", "usesamp"])
            what = f"clean --rule {rule}"
            r = sweepc("clean", "outputs", "--rule", rule, "-y")
            if r.returncode != 0:
                problems.append(f"step {step}: {what} ended {r.returncode}: {r.stderr[-300:]}")
        elif what == "delete an output":  # of a job of the graph as it is
            import sweepc as api

            g = api.load(project).graph
            job = rng.choice([j for j in g.jobs if j.rule in ("gen", "py", "deck")])
            name = {"gen": "out.txt", "py": "sweepc-result.json", "deck": "deck.out"}[job.rule]
            (g.job_dir(job) / name).unlink()
            what = f"delete {job.rule}'s {name}"
        st.write(project)
        if args.whole_seconds:
            for f in [project / "sweepfile", project / "data.txt", project / "model.py", project / "deck.j2", project / "rows.csv"]:
                second = int(f.stat().st_mtime)
                os.utime(f, (second, second))
        build_and_check(step, what, overrides)
        again = sweepc("build", "-j", "2", *on)
        if overrides:  # the plain build builds what the file says again
            build_and_check(step, "(back from -D)", [])
            again = sweepc("build", *on)
        if "nothing to do" not in again.stdout:
            problems.append(f"step {step} ({what}): the next build did something: {again.stdout.strip()[-300:]}{again.stderr[-300:]}")
    print(f"{args.edits} random edits in {time.monotonic() - t0:.0f} s; project {project}")
    return verdict(problems)


if __name__ == "__main__":
    sys.exit(main())
