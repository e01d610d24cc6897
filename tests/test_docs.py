"""Every command shown in the docs is run here, so the docs cannot rot.

docs/tutorial.md and docs/index.md are shell sessions written in Markdown;
tests/docrun.py runs them in an empty folder and compares what each command
prints with what the page shows (the convention is at the end of
docs/tutorial.md). The SLURM part of the tutorial runs only with a cluster
(the `slurm_cluster` fixture: always in CI, skipped elsewhere).
"""

from __future__ import annotations

import re
import subprocess
import textwrap
from pathlib import Path

import pytest

try:
    import docrun
except ImportError:  # tests/ is a package
    from tests import docrun

DOCS = Path(__file__).resolve().parent.parent / "docs"


def blocks(name: str) -> list[docrun.Block]:
    return docrun.parse((DOCS / name).read_text())


def test_tutorial_runs_as_shown(tmp_path: Path) -> None:
    session = docrun.Session(tmp_path)
    ran = session.run_blocks(blocks("tutorial.md"), "docs/tutorial.md", slurm=False)
    assert ran >= 20
    # the tutorial really ended up with the study it describes
    project = tmp_path / "throws"
    assert (project / "sweepfile").read_text().startswith("param angle = [15, 30, 45, 60, 75]")
    assert len(list((project / "calc" / "fly").glob("*/*/flight.json"))) == 10


@pytest.mark.slurm
def test_tutorial_runs_as_shown_on_slurm(tmp_path: Path, slurm_cluster: dict[str, str]) -> None:
    session = docrun.Session(tmp_path, env=slurm_cluster, timeout=300)
    session.run_blocks(blocks("tutorial.md"), "docs/tutorial.md", slurm=True)
    assert any("--backend slurm --force fly --wait" in t for t in session.transcript)


def test_index_example_runs_as_shown(tmp_path: Path) -> None:
    session = docrun.Session(tmp_path)
    assert session.run_blocks(blocks("index.md"), "docs/index.md") >= 2


def test_coming_from_runs_as_shown_and_sweepc_runs_commands_that_way(tmp_path: Path) -> None:
    session = docrun.Session(tmp_path)
    assert session.run_blocks(blocks("coming-from.md"), "docs/coming-from.md") >= 2
    # what the page tells Maestro users about `shell:` is what a build does
    (tmp_path / "sweepfile").write_text(
        'param a = [1]\nsweep s = a\n\n'
        'rule strict over s:\n    output: "out.txt"\n    shell: "false; echo ok > {output}"\n\n'
        'rule lenient over s:\n    output: "out.txt"\n    shell: "false || true; echo ok > {output}"\n'
    )
    p = subprocess.run(["sweepc", "build", "-k"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert p.returncode == 1
    assert "FAILED strict[a=1]: exit 1\n" in p.stdout
    assert p.stdout.splitlines()[-1].startswith("sweepc: 1 done, 1 failed, 0 up to date in ")


def test_tutorial_has_a_slurm_part_and_its_convention() -> None:
    """The SLURM blocks are there (so the CI run exercises them) and the page
    explains how it is tested."""
    tut = blocks("tutorial.md")
    slurm = [b for b in tut if b.kind == "console" and "slurm" in b.tags]
    assert slurm and any("--backend slurm" in c.text for b in slurm for c in b.commands)
    text = (DOCS / "tutorial.md").read_text()
    assert "## How this page is tested" in text


# -- the runner itself ---------------------------------------------------------


def test_docrun_parses_sessions_files_and_exit_codes() -> None:
    md = textwrap.dedent("""\
        text
        ```python file=a.py
        print('hi')
        ```
        ```console
        $ python3 a.py
        hi
        $ false          # exits with 1
        $ echo one \\
        two
        one two
        ```
        ```sh
        $ not run
        ```
        ```console slurm
        $ sbatch x
        ```
    """)
    bs = docrun.parse(md)
    assert [b.kind for b in bs] == ["file", "console", "console"]
    assert bs[0].path == "a.py" and bs[0].text == "print('hi')\n"
    cmds = bs[1].commands
    assert [c.text for c in cmds] == ["python3 a.py", "false          # exits with 1", "echo one \\\ntwo"]
    assert [c.exit_code for c in cmds] == [0, 1, 0]
    assert cmds[2].expected == ("one two",)
    assert bs[2].tags == {"slurm"}


def test_docrun_normalises_what_varies_and_nothing_else() -> None:
    shown = ["sweepc: 7 done, 0 up to date in 0.3s", "x  1", "run 5ec8ddc7-c7c3-4549-adb2-78e211a607b6"]
    printed = [
        "[0/7] 0 done, 1 running, 0 failed, 0.0s elapsed",
        "sweepc: 7 done, 0 up to date in 12.8s   ",
        "x 1",
        "run 0b7f7c8e-0000-4549-adb2-78e211a607b6",
        "",
    ]
    assert docrun.normalise(shown) == docrun.normalise(printed)
    assert docrun.normalise(["hash 88b070993762ab7f"]) != docrun.normalise(["hash 88b070993762ab7e"])
    assert docrun.normalise(["submitted fly: job 170, 10 psets", "as jobs 76, 77"]) == [
        "submitted fly: job <JOB>, 10 psets", "as jobs <JOBS>",
    ]


def test_docrun_ellipsis_and_mismatch(tmp_path: Path) -> None:
    assert docrun.matches(["a", "...", "d"], ["a", "b", "c", "d"])
    assert docrun.matches(["a", "...", "d"], ["a", "d"])
    assert not docrun.matches(["a", "...", "d"], ["a", "b"])
    session = docrun.Session(tmp_path)
    (cmd,) = docrun.parse("```console\n$ echo hello\nbye\n```\n")[0].commands
    with pytest.raises(AssertionError, match=re.escape("output differs")):
        session.run(cmd, "x.md")
    (cmd,) = docrun.parse("```console\n$ exit 3\n```\n")[0].commands
    with pytest.raises(AssertionError, match="exit code 3, the doc says 0"):
        session.run(cmd, "x.md")


def test_docrun_keeps_the_folder_a_command_changes_to(tmp_path: Path) -> None:
    session = docrun.Session(tmp_path)
    bs = docrun.parse("```console\n$ mkdir p && cd p\n$ pwd\n" + str(tmp_path / "p") + "\n```\n")
    session.run_blocks(bs, "x.md")
    assert session.cwd == tmp_path / "p"


# -- links -----------------------------------------------------------------------

ROOT = DOCS.parent
LINKED_PAGES = [
    "README.md", "docs/index.md", "docs/tutorial.md", "docs/cli.md", "docs/coming-from.md",
    "examples/README.md", *(f"examples/{p.name}/README.md" for p in sorted((ROOT / "examples").iterdir()) if p.is_dir()),
]


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


@pytest.mark.parametrize("page", LINKED_PAGES)
def test_relative_links_resolve(page: str) -> None:
    path = ROOT / page
    text = path.read_text()
    text = re.sub(r"```.*?```", "", text, flags=re.DOTALL)  # links inside code blocks are not links
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"^[a-z]+://", target) or target.startswith("mailto:"):
            continue
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            broken.append(f"{target}: no such file")
            continue
        if anchor and dest.suffix == ".md":
            headings = re.findall(r"^#+ (.*)$", re.sub(r"```.*?```", "", dest.read_text(), flags=re.DOTALL), flags=re.MULTILINE)
            if anchor not in {_slug(h) for h in headings}:
                broken.append(f"{target}: no heading with anchor #{anchor} in {dest.name}")
    assert not broken, f"{page}: " + "; ".join(broken)
