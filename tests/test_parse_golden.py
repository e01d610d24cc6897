"""Golden parser tests: ``tests/cases/parse/NAME.sweep`` parses to the AST in ``NAME.json``.

The AST is dumped with its node types and spans (``line:col-end_line:end_col``).
Maintainers: ``SWEEPC_UPDATE_GOLDEN=1`` rewrites the .json files; read the
diff before committing it.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import pytest

from sweepc.lang import syntax as s
from sweepc.errors import Span
from sweepc.lang.parser import parse

CASES = Path(__file__).parent / "cases" / "parse"
UPDATE = os.environ.get("SWEEPC_UPDATE_GOLDEN", "") not in ("", "0")
CASE_FILES = sorted(CASES.glob("*.sweep"))


def dump_ast(node: Any) -> Any:
    """An AST as plain JSON data: dataclasses.asdict per node, plus the node's type.

    asdict alone loses the class (a Setting and a ParamDef have the same fields),
    so every node carries "_type"; spans are written compactly."""
    if isinstance(node, Span):
        return f"{node.line}:{node.column}-{node.end_line}:{node.end_column}"
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        out: dict[str, Any] = {"_type": type(node).__name__}
        shallow = {f.name: getattr(node, f.name) for f in dataclasses.fields(node)}
        for key, value in shallow.items():
            if isinstance(node, s.Module) and key == "source":
                continue  # the input itself
            out[key] = dump_ast(value)
        return out
    if isinstance(node, (tuple, list)):
        return [dump_ast(x) for x in node]
    return node


def test_dump_ast_agrees_with_asdict() -> None:
    """dump_ast only adds types and squeezes spans: the rest is asdict's."""
    m = parse("param a = [1, 2]\n", "sweepfile")
    plain = dataclasses.asdict(m.statements[0])
    dumped = dump_ast(m.statements[0])
    assert plain["name"] == dumped["name"] == "a"
    assert [i["value"] for i in plain["value"]["items"]] == [i["value"] for i in dumped["value"]["items"]] == [1, 2]
    assert plain["span"] == {"line": 1, "column": 1, "end_line": 1, "end_column": 17}
    assert dumped["span"] == "1:1-1:17"


def test_there_are_cases() -> None:
    assert len(CASE_FILES) >= 10


@pytest.mark.parametrize("case", CASE_FILES, ids=[c.stem for c in CASE_FILES])
def test_parse_case(case: Path) -> None:
    tree = dump_ast(parse(case.read_text(encoding="utf-8"), "sweepfile"))
    text = json.dumps(tree, indent=1, ensure_ascii=False) + "\n"
    golden = case.with_suffix(".json")
    if UPDATE:
        golden.write_text(text, encoding="utf-8")
    assert golden.exists(), f"{golden.name} is missing; run with SWEEPC_UPDATE_GOLDEN=1 and read it"
    assert tree == json.loads(golden.read_text(encoding="utf-8"))


# ---- a few facts stated outright, so a wrong golden file cannot hide them ----


def _stmt(text: str, i: int = 0) -> Any:
    return parse(text, "sweepfile").statements[i]


def _shape(e: s.Expr) -> str:
    """An expression as a fully parenthesised string."""
    if isinstance(e, s.BinOp):
        return f"({_shape(e.left)} {e.op} {_shape(e.right)})"
    if isinstance(e, s.UnaryOp):
        return f"({e.op} {_shape(e.operand)})"
    if isinstance(e, s.Name):
        return e.id
    if isinstance(e, (s.Num, s.Str, s.Bool)):
        return repr(e.value)
    if isinstance(e, s.ListExpr):
        return "[" + ", ".join(_shape(i) for i in e.items) + "]"
    assert isinstance(e, s.Call)
    return e.func + "(" + ", ".join((f"{a.name}=" if a.name else "") + _shape(a.value) for a in e.args) + ")"


def test_precedence() -> None:
    st = _stmt("sweep s = a + b * c where x > 1 and not y == 2\n")
    assert _shape(st.value) == "((a + (b * c)) where ((x > 1) and (not (y == 2))))"
    st = _stmt("sweep t = a * b ** -c // 2 % 3 - x where -x ** 2 < 0 or x != 1 and y <= 2\n")
    assert _shape(st.value) == "(((((a * (b ** (- c))) // 2) % 3) - x) where (((- (x ** 2)) < 0) or ((x != 1) and (y <= 2))))"


def test_not_in() -> None:
    st = _stmt("sweep s = a where a not in [1, 2] or a in [3]\n")
    assert _shape(st.value) == "(a where ((a notin [1, 2]) or (a in [3])))"


def test_numbers() -> None:
    values = [_stmt(f"param p = {t}\n").value for t in ("1e-3", "1_000", ".5", "2.", "3E2")]
    assert [(type(v.value), v.value) for v in values] == [(float, 0.001), (int, 1000), (float, 0.5), (float, 2.0), (float, 300.0)]
    neg = _stmt("param p = -4\n").value
    assert isinstance(neg, s.UnaryOp) and neg.op == "-" and isinstance(neg.operand, s.Num) and neg.operand.value == 4


def test_strings() -> None:
    assert _stmt('param p = r"\\d+"\n').value.value == "\\d+"
    assert _stmt('param p = "tab\\there"\n').value.value == "tab\there"
    rule = _stmt('rule r:\n    shell: """\n        echo a\n          indented\n    """\n')
    assert rule.fields[0].items[0].value.value == "echo a\n  indented"


def test_field_items_on_lines_below() -> None:
    rule = _stmt('rule r:\n    output:\n        data = "x.json"\n        log = "x.log"\n    shell: "true"\n')
    out = rule.fields[0]
    assert out.name == "output"
    assert [(i.name, i.value.value) for i in out.items] == [("data", "x.json"), ("log", "x.log")]


def test_spans_count_from_one() -> None:
    st = _stmt("\nparam abc = [1]\n")
    assert st.name_span == Span(2, 7, 2, 10)
    assert st.value.span == Span(2, 13, 2, 16)
