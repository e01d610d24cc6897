"""sweepc/lang/_lalr.py, the generated parser (scripts/gen-parser.py): it is
what the grammar makes, and parsing a sweepfile imports neither lark nor the
third-party `regex` module. (What it parses to is the golden tests' business:
test_parse_golden.py, test_errors_golden.py.)"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

from sweepc.lang import _lalr

ROOT = Path(__file__).resolve().parent.parent


def test_the_parser_module_names_the_grammar_it_was_made_from() -> None:
    grammar = (ROOT / "grammar" / "sweepfile.lark").read_bytes()
    assert _lalr.GRAMMAR_SHA256 == hashlib.sha256(grammar).hexdigest(), (
        "grammar/sweepfile.lark changed since sweepc/lang/_lalr.py was made: run python3 scripts/gen-parser.py"
    )


def test_the_parser_module_is_what_the_script_makes() -> None:
    """Byte for byte, with the lark of the test extra (pyproject.toml pins it)."""
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen-parser.py"), "--check"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_check_names_a_parser_module_that_is_not_the_grammars(tmp_path: Path) -> None:
    """--check compares, and says what to run: a copy of the script whose
    module is one line off fails."""
    script = (ROOT / "scripts" / "gen-parser.py").read_text(encoding="utf-8")
    module = tmp_path / "_lalr.py"
    module.write_text((ROOT / "sweepc" / "lang" / "_lalr.py").read_text(encoding="utf-8") + "# edited by hand\n", encoding="utf-8")
    copy = tmp_path / "gen-parser.py"
    copy.write_text(script.replace('OUT = ROOT / "sweepc" / "lang" / "_lalr.py"', f"OUT = Path({str(module)!r})"), encoding="utf-8")
    copy_root = f"ROOT = Path({str(ROOT)!r})"
    copy.write_text(copy.read_text(encoding="utf-8").replace("ROOT = Path(__file__).resolve().parent.parent", copy_root), encoding="utf-8")
    proc = subprocess.run([sys.executable, str(copy), "--check"], capture_output=True, text=True, check=False)
    assert proc.returncode == 1
    assert "is not what the grammar makes: run python3 scripts/gen-parser.py" in proc.stderr


def test_parsing_imports_neither_lark_nor_regex() -> None:
    code = (
        "import sys\n"
        "from sweepc.lang.parser import parse\n"
        "m = parse('param a = [1, 2]\\nrule r over a:\\n    shell: \"echo {a}\"\\n')\n"
        "assert len(m.statements) == 2, m\n"
        "print(sorted(n for n in sys.modules if n.split('.')[0] in ('lark', 'regex')))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
