"""sweepc/lang/_lalr.py, the generated parser (scripts/gen-parser.py): it is
what the grammar makes, and parsing a sweepfile imports neither lark nor the
third-party `regex` module. (What it parses to is the golden tests' business:
test_parse_golden.py, test_errors_golden.py.)"""

from __future__ import annotations

import hashlib
import importlib.util
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import need

from sweepc.lang import _lalr

ROOT = Path(__file__).resolve().parent.parent


def test_the_parser_module_names_the_grammar_it_was_made_from() -> None:
    grammar = (ROOT / "grammar" / "sweepfile.lark").read_bytes()
    assert _lalr.GRAMMAR_SHA256 == hashlib.sha256(grammar).hexdigest(), (
        "grammar/sweepfile.lark changed since sweepc/lang/_lalr.py was made: run python3 scripts/gen-parser.py"
    )


def test_the_parser_module_is_what_the_script_makes() -> None:
    """Byte for byte, with the lark of the test extra (pyproject.toml pins it)."""
    need("lark")
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen-parser.py"), "--check"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_check_names_a_parser_module_that_is_not_the_grammars(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """--check compares, and says what to run: the script, pointed at a copy
    of the module one line off, fails."""
    need("lark")
    spec = importlib.util.spec_from_file_location("gen_parser", ROOT / "scripts" / "gen-parser.py")
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    module = tmp_path / "_lalr.py"
    module.write_text((ROOT / "sweepc" / "lang" / "_lalr.py").read_text(encoding="utf-8") + "# edited by hand\n", encoding="utf-8")
    monkeypatch.setattr(script, "OUT", module)
    assert script.main(["--check"]) == 1
    assert "is not what the grammar makes: run python3 scripts/gen-parser.py" in capsys.readouterr().err


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


# -- the same answers as lark's own parser of the grammar -----------------------


def _shape(node: Any) -> Any:
    """A parse tree (lark's or the generated parser's classes) as plain data:
    each subtree its rule and children, each token its type, text and place."""
    if hasattr(node, "children"):
        return (str(node.data), [_shape(c) for c in node.children])
    return (node.type, str(node), node.line, node.column, node.end_line, node.end_column)


def _outcome(parser: Any, text: str) -> Any:
    """What a parser makes of `text`: its tree, or which error, where, expecting what."""
    try:
        return ("tree", _shape(parser.parse(text)))
    except Exception as e:  # noqa: BLE001 - the error is the answer
        expected = sorted(getattr(e, "expected", None) or getattr(e, "allowed", None) or ())
        token = getattr(e, "token", None)
        return ("error", type(e).__name__, getattr(e, "line", None), getattr(e, "column", None),
                None if token is None else (token.type, str(token)), expected)


def _mutants(seed: int, count: int) -> list[str]:
    """Sweepfiles of every example and parse case, each with a few characters
    inserted, removed or copied at random: mostly mistakes, some still valid."""
    sources = [p.read_text(encoding="utf-8") for p in sorted(
        [*ROOT.glob("examples/*/sweepfile"), *ROOT.glob("tests/cases/*/*.sweep")])]
    pieces = [*"[](){}:=,+-*/\"'# \n\tab1.<>!%", "rule ", "param ", "sweep ", "over ", "shell:", "    ", "\n    "]
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        s = rng.choice(sources)
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(len(s) + 1)
            op = rng.random()
            if op < 0.4:
                s = s[:i] + rng.choice(pieces) + s[i:]
            elif op < 0.8:
                s = s[:i] + s[i + rng.randint(1, 3):]
            else:
                j = rng.randrange(len(s) + 1)
                s = s[:i] + s[j:j + 5] + s[i:]
        out.append(s if s.endswith("\n") else s + "\n")
    return [*sources, *out]


def test_the_generated_parser_answers_as_lark_does() -> None:
    """Trees, errors, their places and expected tokens, for the example and
    case sweepfiles and 1500 random mutations of them: the generated parser
    and lark's runtime parser of the same grammar, with the same options
    and the same indenter (sweepc's, on lark's Indenter), agree on each."""
    need("lark")  # (the test extra has it)
    import lark
    from lark.indenter import Indenter as LarkIndenter

    from sweepc.lang import parser as sweep_parser

    # sweepc's indenter, its methods and settings as they are, on lark's base class
    body = {k: v for k, v in vars(sweep_parser._SweepIndenter).items() if not k.startswith("__")}
    runtime = lark.Lark(
        (ROOT / "grammar" / "sweepfile.lark").read_text(encoding="utf-8"), parser="lalr", lexer="contextual",
        propagate_positions=True, maybe_placeholders=False, postlex=type("Indenter", (LarkIndenter,), body)(),
    )
    generated = sweep_parser._lark()
    texts = _mutants(7, 1500)
    answers = [(_outcome(runtime, t), _outcome(generated, t)) for t in texts]
    differ = [(t, a, b) for t, (a, b) in zip(texts, answers) if a != b]
    assert not differ, differ[:2]
    kinds = {a[0] for a, _ in answers}
    assert kinds == {"tree", "error"}  # (both kinds were compared)
