"""`sweepc graph`: the rule graph or the job graph as dot or mermaid text."""

from __future__ import annotations

import re

import networkx as nx

from sweepc.lang.graph import BuildGraph


def rule_graph(g: BuildGraph) -> nx.DiGraph[str]:
    dg: nx.DiGraph[str] = nx.DiGraph()
    for r in g.rules:
        dg.add_node(r.name, label=f"{r.name} ({r.n_jobs} job{'s' if r.n_jobs != 1 else ''})")
        for inp in r.inputs:
            if inp.rule is not None:
                dg.add_edge(inp.rule, r.name, label=join_kind(g, inp.rule, r.name))
    return dg


def join_kind(g: BuildGraph, up: str, down: str) -> str:
    u, d = g.rule(up), g.rule(down)
    shared = set(u.keys) & set(d.keys)
    if not shared:
        return "all" if u.n_jobs > 1 else "one"
    if set(u.keys) == set(d.keys):
        return "same pset"
    if set(u.keys) < set(d.keys):
        return "broadcast"
    return "gather by " + ", ".join(k for k in d.keys if k in shared)


def job_graph(g: BuildGraph) -> nx.DiGraph[str]:
    dg: nx.DiGraph[str] = nx.DiGraph()
    for j in g.jobs:
        dg.add_node(f"{j.rule}_{j.hash}", label=j.label)
        for d in j.deps:
            dep = g.jobs[d]
            dg.add_edge(f"{dep.rule}_{dep.hash}", f"{j.rule}_{j.hash}")
    return dg


def render_graph(g: BuildGraph, jobs: bool, fmt: str) -> str:
    dg = job_graph(g) if jobs else rule_graph(g)
    lines: list[str] = []
    if fmt == "dot":
        lines.append("digraph sweepc {")
        lines.append("  rankdir=LR;")
        for n, data in dg.nodes(data=True):
            lines.append(f'  "{n}" [label="{dot_text(data["label"])}"];')
        for u, v, data in dg.edges(data=True):
            label = f' [label="{dot_text(data["label"])}"]' if "label" in data else ""
            lines.append(f'  "{u}" -> "{v}"{label};')
        lines.append("}")
    else:
        lines.append("flowchart LR")
        for n, data in dg.nodes(data=True):
            lines.append(f'  {n}["{mermaid_text(data["label"])}"]')
        for u, v, data in dg.edges(data=True):
            label = f'|"{mermaid_text(data["label"])}"|' if "label" in data else ""
            lines.append(f"  {u} -->{label} {v}")
    return "\n".join(lines) + "\n"


# what str.splitlines() breaks a line at: a value with one is drawn over two lines
_LINE_BREAK = re.compile("\r\n|[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]")
# mermaid's entity codes (#quot;, #NN;): '#' starts one, so it is one itself; < > &
# would be HTML in its labels
_MERMAID = {"#": "#35;", '"': "#quot;", "<": "#60;", ">": "#62;", "&": "#38;"}
_MERMAID_CHARS = re.compile('[#"<>&]')


def dot_text(text: str) -> str:
    """text inside a quoted dot label: a backslash and a quote escaped, a line break as \\n."""
    return _LINE_BREAK.sub(r"\\n", text.replace("\\", "\\\\").replace('"', '\\"'))


def mermaid_text(text: str) -> str:
    """text inside a quoted mermaid label: entity codes for what would end or
    change the label, a line break as <br>."""
    return _LINE_BREAK.sub("<br>", _MERMAID_CHARS.sub(lambda m: _MERMAID[m.group()], text))
