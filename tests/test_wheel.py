"""The wheel works on its own: the grammar ships inside it.

Builds a wheel, installs it (without dependencies, which come from the
system site-packages, so no network) into a fresh virtual environment, and
runs that environment's `sweepc check` on a small project.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROJECT = """\
param a = [1, 2]
param b = range(10, 30, 10)
sweep grid = a * b where a * b <= 20

rule gen over grid:
    output: "out.txt"
    shell: "echo {a} {b} > {output}"

rule total:
    input: gen
    output: "total.txt"
    shell: "cat {input} > {output}"
"""


def _run(argv: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_NO_INDEX"] = "1"
    done = subprocess.run(argv, check=False, capture_output=True, text=True, env=env, timeout=300, **kw)  # type: ignore[call-overload]
    assert done.returncode == 0, f"{argv} failed:\n{done.stdout}\n{done.stderr}"
    return done  # type: ignore[no-any-return]


def test_wheel_ships_the_grammar(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist), str(ROOT)])
    (wheel,) = dist.glob("sweepc-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
    assert "sweepc/lang/grammar/sweepfile.lark" in names
    assert "sweepc/lang/parser.py" in names
    assert "sweepc/backends/slurm/templates/array.sh.j2" in names

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)])
    py = venv / "bin" / "python"
    _run([str(py), "-m", "pip", "install", "--no-deps", "--no-index", str(wheel)])

    # the venv's own copy is the one imported, grammar and all (not the checkout)
    where = _run(
        [str(py), "-c", "import sweepc, sweepc.lang.parser as p; print(sweepc.__file__); print(p.grammar_path())"],
        cwd=tmp_path,
    ).stdout.splitlines()
    site = venv.resolve()
    assert Path(where[0]).resolve().is_relative_to(site), where
    assert Path(where[1]).resolve().is_relative_to(site), where
    assert Path(where[1]).name == "sweepfile.lark"

    project = tmp_path / "project"
    project.mkdir()
    (project / "sweepfile").write_text(PROJECT, encoding="utf-8")
    done = _run([str(venv / "bin" / "sweepc"), "check"], cwd=project)
    assert done.stdout == "sweepfile: ok: 2 parameters, 1 sweep, 2 rules, 4 jobs\n"
    assert done.stderr == ""

    # and it reports errors the same way
    (project / "sweepfile").write_text("param a = [1, 2\n", encoding="utf-8")
    bad = subprocess.run([str(venv / "bin" / "sweepc"), "check"], check=False, cwd=project, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    assert bad.stderr.startswith("sweepfile:1:11: '[' was never closed\n")
