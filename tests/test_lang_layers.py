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


def test_reserved_parameter_names_are_every_column_and_field_sweepc_fills() -> None:
    """values.RESERVED_PARAMS (no parameter may have one) is exactly the
    results table's bookkeeping, _index, the fields a python: function gets
    besides its parameters, and psets()'s _sweep: a parameter named like
    one of them vanished from the table behind sweepc's own column."""
    from sweepc.backends import pyjob
    from sweepc.backends.jobdir import BOOKKEEPING, RESERVED_KEYS
    from sweepc.values import RESERVED_PARAMS

    assert RESERVED_PARAMS == {*BOOKKEEPING, *RESERVED_KEYS, *pyjob.RESERVED_KEYS, *pyjob.BOOKKEEPING_IN, "_sweep"}


def test_a_reserved_name_as_an_npy_column_is_refused(tmp_path: Path) -> None:
    import numpy as np
    import pytest

    from sweepc.lang.sweeps import SweepMathError, read_npy

    np.save(tmp_path / "s.npy", np.arange(4.0).reshape(2, 2))
    with pytest.raises(SweepMathError) as e:
        read_npy(tmp_path / "s.npy", "s.npy", 0, None, ["x", "_rule"])
    assert e.value.message == "column name '_rule' is a column sweepc fills itself, not a parameter name"
    assert e.value.hint == "name it otherwise (sweepc's own columns start with '_')"
