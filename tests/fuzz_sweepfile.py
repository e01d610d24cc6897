"""A seeded mutator for sweepfiles: hostile inputs for `sweepc check`.

Used by tests/test_fuzz.py, which runs it in a child process under a memory
limit. The corpus is every golden case and example sweepfile; each input is
one of them mutated (bytes flipped, inserted or cut; tokens swapped for huge
numbers, deep nesting, odd unicode or binary junk; lines spliced from another
file). Every input must give exit 0 or 2 from an in-process `sweepc check`,
never an exception, within a time bound. Run by hand:

    PYTHONPATH=$PWD python3 tests/fuzz_sweepfile.py --seed 1 --count 500
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import re
import resource
import shutil
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Tokens a hostile user (or a cat on the keyboard) might write.
NASTY = [
    "9" * 5000, "10**400", "1e999", "-1e999", "9 ** 9 ** 9", "2 ** 100000", "10**12", "range(10**12)",
    "linspace(0, 1, 10**9)", "logspace(0, 400, 3)", "range(0, 10**7)", "zip(a, range(3))",
    "[" * 300 + "1" + "]" * 300, "not " * 300 + "x", "-" * 300 + "1", "(" * 300 + "1" + ")" * 300,
    " + ".join(["a"] * 300), " * ".join(["a"] * 50), '"a\\u0000b"', '"\\ud800"', '"\\x00"', "'é'", "\"\u202e\"",
    "\ufeff", "\u0000", "\t", "\r", "\\", '"""', "'", "{", "}", "{pset.dir}", "{input}", "{output.x}", "$", ":", "=",
    "where", "over", "by", "rule", "param", "sweep", "backend", "workdir", "max_psets", "/", "..", "../..", '"/"',
    '"."', '".sweepc"', "0", "-0.0", "nan", "true", "1_000_", "0x10", "1e", ".", ",", "[]", "()", "csv(\"params.csv\")",
    "star(a=1, vary=[a])", "round(1, -10**9)", "abs", "min()", "x // 0", "x % 0",
]
TOKEN = re.compile(r"\s+|[A-Za-z_][A-Za-z0-9_]*|[0-9][0-9_.eE]*|\"[^\"\n]*\"|'[^'\n]*'|\*\*|//|[=!<>]=|.", re.S)


def corpus() -> list[tuple[str, Path | None]]:
    """(text, folder of extra files or None) for every seed sweepfile."""
    out: list[tuple[str, Path | None]] = []
    for f in sorted((ROOT / "tests" / "cases").rglob("*.sweep")):
        extra = f.with_suffix(".files")
        out.append((f.read_text(encoding="utf-8"), extra if extra.is_dir() else None))
    for f in sorted((ROOT / "examples").glob("*/sweepfile")):
        out.append((f.read_text(encoding="utf-8"), f.parent))
    return out


def mutate(rng: random.Random, text: str, others: list[str]) -> bytes:
    data = text.encode("utf-8")
    for _ in range(rng.choice((1, 1, 2, 3))):
        kind = rng.choice((0, 1, 2, 3, 3, 3, 4, 4, 5, 6))
        if kind == 0 and data:  # flip a byte
            i = rng.randrange(len(data))
            data = data[:i] + bytes([rng.randrange(256)]) + data[i + 1 :]
        elif kind == 1:  # insert junk bytes
            i = rng.randrange(len(data) + 1)
            data = data[:i] + bytes(rng.randrange(256) for _ in range(rng.randint(1, 8))) + data[i:]
        elif kind == 2 and data:  # cut a span
            i = rng.randrange(len(data))
            data = data[:i] + data[i + rng.randint(1, 40) :]
        elif kind == 3:  # swap a value-like token for a nasty one (keeps the rest parseable)
            toks = TOKEN.findall(data.decode("utf-8", "replace"))
            spots = [i for i, t in enumerate(toks) if t[:1].isdigit() or t[:1] in "\"'[(" or t.isidentifier()]
            if spots:
                toks[rng.choice(spots)] = rng.choice(NASTY)
                data = "".join(toks).encode("utf-8", "surrogatepass")
        elif kind == 4:  # swap any token
            toks = TOKEN.findall(data.decode("utf-8", "replace"))
            if toks:
                toks[rng.randrange(len(toks))] = rng.choice(NASTY)
                data = "".join(toks).encode("utf-8", "surrogatepass")
        elif kind == 5 and others:  # splice a line from another file
            lines = data.split(b"\n")
            donor = rng.choice(others).encode("utf-8").split(b"\n")
            lines.insert(rng.randrange(len(lines) + 1), rng.choice(donor))
            data = b"\n".join(lines)
        else:  # duplicate a span (long inputs)
            if data:
                i = rng.randrange(len(data))
                chunk = data[i : i + rng.randint(1, 200)]
                data = data[:i] + chunk * rng.randint(2, 50) + data[i:]
    return data


class _Timeout(BaseException):
    pass


def _alarm(signum: int, frame: object) -> None:
    raise _Timeout


def run(seed: int, count: int, seconds: float, work: Path) -> list[dict[str, object]]:
    from sweepc.cli import main

    rng = random.Random(seed)
    seeds = corpus()
    texts = [t for t, _ in seeds]
    failures: list[dict[str, object]] = []
    codes: dict[int, int] = {}
    signal.signal(signal.SIGALRM, _alarm)
    for n in range(count):
        text, extra = rng.choice(seeds)
        data = mutate(rng, text, texts)
        project = work / f"p{n}"
        if extra is not None:
            shutil.copytree(extra, project)
        else:
            project.mkdir()
        (project / "sweepfile").write_bytes(data)
        out, err = io.StringIO(), io.StringIO()
        start = time.process_time()  # CPU time: the machine may be busy with other work
        problem = ""
        signal.setitimer(signal.ITIMER_REAL, max(30.0, seconds * 3))  # a hang is cut off, and reported
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = main(["-C", str(project), "check"])
        except _Timeout:
            code, problem = -1, f"still running after {max(30.0, seconds * 3)} s"
        except BaseException:  # noqa: BLE001 - everything else is the bug we look for
            code, problem = -1, traceback.format_exc()
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        took = time.process_time() - start
        if not problem and code not in (0, 2):
            problem = f"exit {code}"
        if not problem and "Traceback" in err.getvalue():
            problem = "a traceback on stderr"
        if not problem and took > seconds:
            problem = f"took {took:.2f} s of CPU"
        if problem:
            failures.append({"seed": seed, "n": n, "problem": problem, "input": data.decode("utf-8", "backslashreplace")[:2000], "stderr": err.getvalue()[-2000:]})
        codes[code] = codes.get(code, 0) + 1
        shutil.rmtree(project, ignore_errors=True)
    print(f"exit codes: {codes}", file=sys.stderr)
    return failures


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--count", type=int, default=200)
    # a sweep at the default limit (a million psets) takes a few seconds: allowed
    ap.add_argument("--seconds", type=float, default=10.0, help="CPU time bound per input")
    ap.add_argument("--memory-mb", type=int, default=1500, help="address-space bound of this process")
    args = ap.parse_args()
    limit = args.memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    with tempfile.TemporaryDirectory(prefix="sweepc-fuzz-") as tmp:
        failures = run(args.seed, args.count, args.seconds, Path(tmp))
    json.dump(failures, sys.stdout, indent=1)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT)) if str(ROOT) not in sys.path and "PYTHONPATH" not in os.environ else None
    sys.exit(main())
