"""The compiler passes import only from earlier passes and the helpers below them."""

from __future__ import annotations

import ast
from pathlib import Path

LANG = Path(__file__).resolve().parent.parent / "sweepc" / "lang"
# each module, and the sweepc modules it may import (besides the bottom: errors, values, hashing)
ALLOWED = {
    "problems": {"syntax"},
    "resources": {"sweeps", "problems"},
    "names": {"syntax", "problems", "expr"},
    "evaluate": {"syntax", "problems", "sweeps", "expr", "names"},
    "join": {"syntax", "problems", "sweeps", "graph", "placeholders", "resources", "names", "evaluate"},
    "commands": {"syntax", "problems", "sweeps", "graph", "placeholders", "resources", "names", "evaluate", "join"},
    "templates": {"syntax", "problems", "graph", "names", "join", "sweeps"},
    "compiler": {"syntax", "problems", "graph", "names", "evaluate", "join", "commands", "templates"},
}
BOTTOM = {"sweepc.errors", "sweepc.values", "sweepc.hashing"}


def imported(module: str) -> set[str]:
    tree = ast.parse((LANG / f"{module}.py").read_text())
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("sweepc"):
            if node.module == "sweepc.lang":
                out.update(a.name for a in node.names)
            elif node.module.startswith("sweepc.lang."):
                out.add(node.module.removeprefix("sweepc.lang."))
            elif node.module not in BOTTOM:
                out.add(node.module)
    return out


def test_each_pass_imports_only_earlier_passes() -> None:
    wrong = {m: sorted(imported(m) - allowed) for m, allowed in ALLOWED.items() if imported(m) - allowed}
    assert wrong == {}


def test_compile_is_a_handful_of_lines() -> None:
    tree = ast.parse((LANG / "compiler.py").read_text())
    (fn,) = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
    assert fn.name == "compile"
    assert fn.end_lineno is not None and fn.end_lineno - fn.lineno <= 12
