"""`sweepc graph`: the rule graph or the job graph as dot or mermaid text."""

from __future__ import annotations

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
            lines.append(f'  "{n}" [label="{_esc(data["label"])}"];')
        for u, v, data in dg.edges(data=True):
            label = f' [label="{_esc(data["label"])}"]' if "label" in data else ""
            lines.append(f'  "{u}" -> "{v}"{label};')
        lines.append("}")
    else:
        lines.append("flowchart LR")
        for n, data in dg.nodes(data=True):
            lines.append(f'  {n}["{_esc(data["label"])}"]')
        for u, v, data in dg.edges(data=True):
            label = f'|"{_esc(data["label"])}"|' if "label" in data else ""
            lines.append(f"  {u} -->{label} {v}")
    return "\n".join(lines) + "\n"


def _esc(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', "'")
