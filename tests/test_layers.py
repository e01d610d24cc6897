"""The package layout is the pipeline: no import circles, and a module
imports only from its own stage or the stages before it.

    bottom   errors, values, hashing
    lang     sweepfile -> BuildGraph
    plan     state store, selection, what is stale and why
    backends where a Plan runs
    results  the results table
    api      the front door
    cli      argv in, text out

Imports inside functions count too: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

PKG = Path(__file__).resolve().parent.parent / "sweepc"

RANK = {"errors": 0, "values": 0, "hashing": 0, "lang": 1, "plan": 2, "backends": 3, "results": 4, "api": 5, "cli": 6}


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PKG.rglob("*.py")}
    edges: dict[str, set[str]] = {m: set() for m in modules}
    for mod, path in modules.items():
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    pkg = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    pkg = pkg[: len(pkg) - (node.level - 1)]
                    base = ".".join([*pkg, base] if base else pkg)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for t in targets:
                if t.startswith("sweepc") and t in modules and t != mod:
                    edges[mod].add(t)
    return edges


def _stage(mod: str) -> str:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else "sweepc"


def test_no_import_circles() -> None:
    g = nx.DiGraph([(a, b) for a, targets in _imports().items() for b in targets])
    cycles = list(nx.simple_cycles(g))
    assert cycles == [], "import circles: " + "; ".join(" -> ".join([*c, c[0]]) for c in cycles)


def test_each_stage_imports_only_earlier_stages() -> None:
    wrong = []
    for mod, targets in _imports().items():
        stage = _stage(mod)
        if stage not in RANK:  # sweepc/__init__ and __main__ sit above everything
            continue
        for t in targets:
            other = _stage(t)
            if other in RANK and RANK[other] > RANK[stage]:
                wrong.append(f"{mod} imports {t}")
    assert wrong == []


def test_every_stage_package_says_what_it_takes_and_gives() -> None:
    for pkg in ("lang", "plan", "backends", "results", "cli"):
        init = PKG / pkg / "__init__.py"
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and len(doc.splitlines()) >= 2, f"sweepc/{pkg}/__init__.py needs a docstring: what it takes in and gives back"


def test_the_layout_is_what_the_architecture_doc_shows() -> None:
    doc = (PKG.parent / "docs" / "architecture.md").read_text()
    for p in sorted(PKG.rglob("*.py")):
        rel = p.relative_to(PKG.parent).as_posix()
        if p.name in ("__init__.py", "__main__.py"):
            continue
        assert rel.removeprefix("sweepc/") in doc or rel in doc, f"docs/architecture.md does not mention {rel}"
