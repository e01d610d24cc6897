"""`sweepc resources`: what each rule's jobs used against what they asked for
(sweepc/results/resources.py)."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

import sweepc
from sweepc.cli import main
from sweepc.results.resources import usage

SWEEPFILE = '''\
param a = [1, 2, 3]
rule r over a:
    output: "o"
    resources: time = "00:10:00"
    shell: "if [ {a} = 3 ] && [ -e {root}/slow ]; then touch {root}/started; sleep 60; fi; echo {a} > {output}"
'''


def project(root: Path) -> Path:
    (root / "sweepfile").write_text(SWEEPFILE.replace("{root}", str(root)), encoding="utf-8")
    return root


def test_interrupted_and_cancelled_jobs_are_left_out(tmp_path: Path) -> None:
    """A job stopped by Ctrl-C or `sweepc cancel` ran only until it was
    stopped: its runtime counted as a whole run's made the suggested time
    shorter than a run (here 1500 s and 20 min against 6000 s done)."""
    g = sweepc.load(project(tmp_path)).graph
    h1, h2, h3 = (j.hash for j in g.jobs)
    rows = [(h1, "done", 0.0, 6000.0, 100.0, 6000.0), (h2, "interrupted", 0.0, 1500.0, 900.0, 1500.0),
            (h3, "cancelled", 0.0, 1200.0, 800.0, 1200.0)]
    (u,) = usage(g, lambda rule: iter(rows))
    assert (u.jobs, u.left_out) == (1, 2)
    assert (u.runtime_s and u.runtime_s.max, u.max_rss_mb and u.max_rss_mb.max) == (6000.0, 100.0)
    assert u.suggestion == 'resources: cpus = 1, mem = "128M", time = "02:30:00"'
    # a timeout is still counted, as a lower bound: at least twice its limit
    rows[1] = (h2, "timeout", 0.0, 600.0, 900.0, 600.0)
    (u,) = usage(g, lambda rule: iter(rows))
    assert (u.jobs, u.left_out, u.hit_time) == (2, 1, 1)


def test_resources_says_what_it_left_out(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    root = project(tmp_path)
    monkeypatch.chdir(root)
    assert main(["build", "-j", "1", "--where", "a < 3"]) == 0
    (root / "slow").touch()
    build = subprocess.Popen([sys.executable, "-m", "sweepc", "build"], cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(400):
            if (root / "started").exists():
                break
            time.sleep(0.05)
        assert (root / "started").exists()
    finally:
        build.terminate()  # as Ctrl-C: the running job is recorded interrupted
        build.wait(timeout=30)
    capsys.readouterr()
    assert main(["resources"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].split()[:2] == ["r", "2"]  # the two jobs that ended
    # (cpus: a job of a few ms may show more CPU time than runtime)
    assert re.fullmatch(r'r: suggested resources: cpus = \d, mem = "64M", time = "00:01:00"', out[2]), out
    assert out[3:] == ["r: 1 job interrupted or cancelled, left out (stopped before the end)"]
