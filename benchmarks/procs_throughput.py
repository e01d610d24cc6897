"""Throughput of sweepc.procs: N trivial jobs, at most P running at once.

    python3 benchmarks/procs_throughput.py [--jobs 1000] [--parallel 2] [--repeat 5]
                                           [--baseline OLD_PROCS_PY]

Measures every way ProcessPool can spawn: "spawner" (the normal case: jobs
are spawned by the helper process of sweepc/backends/local/spawner.py), and the in-process
fallback with its two paths, "posix_spawn" (this script is single-threaded)
and "popen" (a parked thread makes the pool fall back to subprocess.Popen).
With --baseline, a copy of an older sweepc/backends/local/procs.py (e.g. from
`git show HEAD:sweepc/backends/local/procs.py`) is measured too, as "baseline". Runs are
interleaved, so that drifting background load hits all alike. Prints jobs/s
per run and the median, and the spawner's peak RSS after its runs.

Results: see the docstring of sweepc/backends/local/procs.py. On a shared machine single
runs scatter a lot; compare medians of interleaved runs only.
"""

import argparse
import importlib.util
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sweepc.backends.local import procs

spawner_hwm_kb: list[int] = []


def throughput(mod: ModuleType, jobs: int, parallel: int, root: Path) -> float:
    env = dict(os.environ)
    dirs = [root / f"j{i}" for i in range(jobs)]
    for d in dirs:
        d.mkdir(exist_ok=True)
    failed = 0
    with mod.ProcessPool() as pool:
        t0 = time.perf_counter()
        started = 0
        while started < jobs or pool.running:
            while started < jobs and pool.running < parallel:
                d = dirs[started]
                pool.start(mod.Spawn(started, "echo hi", str(d), str(d / "log"), env))
                started += 1
            failed += sum(e.exit_code != 0 for e in pool.wait(None))
        elapsed = time.perf_counter() - t0
        impl = getattr(pool, "_impl", None)
        if isinstance(impl, procs._ViaSpawner):
            spawner_hwm_kb.append(_hwm_kb(impl._pid))
    if failed:
        raise SystemExit(f"{failed} jobs failed")
    return jobs / elapsed


def _hwm_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


@contextmanager
def parked_thread() -> Iterator[None]:
    """A live second thread makes the in-process pool fall back to Popen."""
    parked = threading.Event()
    thread = threading.Thread(target=parked.wait)
    thread.start()
    try:
        yield
    finally:
        parked.set()
        thread.join()


@contextmanager
def no_spawner() -> Iterator[None]:
    launch = procs._launch_spawner
    procs._launch_spawner = lambda bash: None  # type: ignore[assignment]
    try:
        yield
    finally:
        procs._launch_spawner = launch  # type: ignore[assignment]


def load_baseline(path: str) -> ModuleType:
    # Imported as a module of the sweepc package, so that its relative
    # imports (if any) resolve.
    spec = importlib.util.spec_from_file_location("sweepc._procs_baseline", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--baseline", help="an older procs.py to measure as well")
    args = parser.parse_args()
    print(f"{args.jobs} x 'echo hi', at most {args.parallel} running, {os.cpu_count()} cpus")

    def run(mod: ModuleType, *contexts: Callable[[], Any]) -> Callable[[Path], float]:
        def go(root: Path) -> float:
            with ExitStack() as stack:
                for context in contexts:
                    stack.enter_context(context())
                return throughput(mod, args.jobs, args.parallel, root)

        return go

    ways: dict[str, Callable[[Path], float]] = {
        "spawner": run(procs),
        "posix_spawn": run(procs, no_spawner),
        "popen": run(procs, no_spawner, parked_thread),
    }
    if args.baseline:
        ways["baseline"] = run(load_baseline(args.baseline))
    rates: dict[str, list[float]] = {label: [] for label in ways}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for _ in range(args.repeat):
            for label, way in ways.items():
                rates[label].append(way(root))
    for label, runs in rates.items():
        each = " ".join(f"{r:.0f}" for r in runs)
        print(f"{label:12s} median {statistics.median(runs):6.0f} jobs/s   runs: {each}")
    print(f"spawner peak RSS (VmHWM) after its runs: {max(spawner_hwm_kb)} kB")


if __name__ == "__main__":
    main()
