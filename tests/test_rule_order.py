"""join's rule order and cycle finding, against networkx on random graphs.

The compiler orders rules without networkx (importing it cost ~0.3 s of
every compile); these tests hold the hand-written walk to what networkx's
lexicographical_topological_sort and find_cycle gave before."""

from __future__ import annotations

import random

import networkx as nx

from sweepc.lang.join import _find_cycle, _topological


def _random_graph(rng: random.Random, acyclic: bool) -> dict[str, list[str]]:
    names = [f"r{i}" for i in range(rng.randint(1, 9))]
    succ: dict[str, list[str]] = {n: [] for n in names}
    for _ in range(rng.randint(0, 14)):
        a, b = rng.sample(names, 2) if len(names) > 1 else (names[0], names[0])
        if acyclic and names.index(a) >= names.index(b):
            a, b = b, a
        if a == b and acyclic:
            continue
        if b not in succ[a]:
            succ[a].append(b)
    return succ


def _nx(succ: dict[str, list[str]]) -> nx.DiGraph[str]:
    g: nx.DiGraph[str] = nx.DiGraph()
    g.add_nodes_from(succ)
    for a, outs in succ.items():
        for b in outs:
            g.add_edge(a, b)
    return g


def test_topological_order_is_networkx_lexicographical_order() -> None:
    for seed in range(300):
        _check_order(seed)


def test_find_cycle_finds_the_cycle_networkx_finds() -> None:
    cycles = sum(_check_cycle(seed) for seed in range(300))
    assert 50 < cycles < 300  # both kinds of graph were tried


def _check_order(seed: int) -> None:
    rng = random.Random(seed)
    succ = _random_graph(rng, acyclic=True)
    order = list(succ)
    rng.shuffle(order)  # rules defined in another order than added
    index = {n: i for i, n in enumerate(order)}
    assert _find_cycle(succ) is None
    assert _topological(succ, index) == list(nx.lexicographical_topological_sort(_nx(succ), key=lambda n: index[n]))


def _check_cycle(seed: int) -> bool:
    succ = _random_graph(random.Random(seed), acyclic=False)
    try:
        want = [u for u, _ in nx.find_cycle(_nx(succ))]
    except nx.NetworkXNoCycle:
        assert _find_cycle(succ) is None
        return False
    got = _find_cycle(succ)
    assert got is not None
    # the same cycle (the compiler turns it to start at the rule defined first)
    k = got.index(want[0])
    assert got[k:] + got[:k] == want, seed
    return True
