"""sweepc graph --jobs: labels escaped for dot and for mermaid."""

from __future__ import annotations

from pathlib import Path

import pytest

from sweepc.cli import main
from sweepc.lang.render_graph import dot_text, mermaid_text

SWEEPFILE = r'''
param s = ['q"uote', "two\nlines", "a\\b#1 <i>&"]
rule r over s:
    output: "o"
    shell: "echo {s} > {output}"
'''


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    p = tmp_path / "proj"
    p.mkdir()
    (p / "sweepfile").write_text(SWEEPFILE)
    monkeypatch.chdir(p)
    return p


def test_dot_job_labels_keep_quotes_and_line_breaks_escaped(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["graph", "--jobs"]) == 0
    out = capsys.readouterr().out
    assert out == (
        "digraph sweepc {\n"
        "  rankdir=LR;\n"
        '  "r_107fa8da304fb5f9" [label="r[s=q\\"uote]"];\n'
        '  "r_9263576564273864" [label="r[s=two\\nlines]"];\n'
        '  "r_e67a6eedeff65c40" [label="r[s=a\\\\b#1 <i>&]"];\n'
        "}\n"
    )


def test_mermaid_job_labels_use_entity_codes_and_br(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["graph", "--jobs", "--format", "mermaid"]) == 0
    out = capsys.readouterr().out
    assert out == (
        "flowchart LR\n"
        '  r_107fa8da304fb5f9["r[s=q#quot;uote]"]\n'
        '  r_9263576564273864["r[s=two<br>lines]"]\n'
        '  r_e67a6eedeff65c40["r[s=a\\b#35;1 #60;i#62;#38;]"]\n'
    )


def test_every_line_break_python_knows_is_one_in_a_label() -> None:
    for brk in ("\n", "\r\n", "\r", "\u2028", "\x85"):
        assert dot_text(f"a{brk}b") == "a\\nb"
        assert mermaid_text(f"a{brk}b") == "a<br>b"
