"""Properties of the sweep algebra (sweepc.sweeps) and of the pset hash."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from sweepc.lang import sweeps as alg
from sweepc.hashing import pset_hash

SETTINGS = settings(max_examples=100, deadline=None, database=None)

scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-1000, max_value=1000),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.text(max_size=4),
)


NAMES = st.builds(lambda a, b: a + b, st.sampled_from("abcxyz_"), st.text(alphabet="abcxyz_0123456789", max_size=5))


def same_value(x: object, y: object) -> bool:
    """The hashing rule's notion of one value: 1 == 1.0, True != 1, NFC strings."""
    if isinstance(x, bool) or isinstance(y, bool):
        return type(x) is type(y) and x == y
    if isinstance(x, str) or isinstance(y, str):
        return isinstance(x, str) and isinstance(y, str) and unicodedata.normalize("NFC", x) == unicodedata.normalize("NFC", y)
    return x == y  # numbers by value


def values(min_size: int = 1, max_size: int = 5) -> st.SearchStrategy[list[object]]:
    return st.lists(scalars, min_size=min_size, max_size=max_size, unique_by=lambda v: pset_hash({"v": v}))


def sweep_over(names: list[str], min_size: int = 1, max_size: int = 5) -> st.SearchStrategy[alg.Psets]:
    """A sweep whose psets all have exactly these parameter names."""
    row = st.fixed_dictionaries({n: scalars for n in names})
    return st.lists(row, min_size=min_size, max_size=max_size).map(lambda rows: tuple({n: r[n] for n in names} for r in rows))


@SETTINGS
@given(sweep_over(["a", "b"]), sweep_over(["c"]))
def test_product_size_and_order(left: alg.Psets, right: alg.Psets) -> None:
    out = alg.product(left, right)
    assert len(out) == len(left) * len(right)
    for i, x in enumerate(left):
        for j, y in enumerate(right):
            assert out[i * len(right) + j] == {**x, **y}
    assert all(list(p) == ["a", "b", "c"] for p in out)


@SETTINGS
@given(sweep_over(["a"]), sweep_over(["a", "b"]))
def test_product_with_a_shared_parameter_fails(left: alg.Psets, right: alg.Psets) -> None:
    with pytest.raises(alg.SweepMathError, match="'a' appears on both sides"):
        alg.product(left, right)


@SETTINGS
@given(st.integers(min_value=1, max_value=6).flatmap(lambda n: st.tuples(sweep_over(["a"], n, n), sweep_over(["b", "c"], n, n))))
def test_zip_keeps_order(parts: tuple[alg.Psets, alg.Psets]) -> None:
    left, right = parts
    out = alg.zip_([("left", left), ("right", right)])
    assert len(out) == len(left) == len(right)
    assert list(out) == [{**x, **y} for x, y in zip(left, right)]


@SETTINGS
@given(sweep_over(["a"]), sweep_over(["b"]))
def test_zip_of_unequal_lengths_fails(left: alg.Psets, right: alg.Psets) -> None:
    assume(len(left) != len(right))
    with pytest.raises(alg.SweepMathError) as info:
        alg.zip_([("left", left), ("right", right)])
    assert f"left has {len(left)} psets, right has {len(right)}" in info.value.message


@SETTINGS
@given(
    st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), scalars, min_size=1),
    st.data(),
)
def test_star(centre: dict[str, object], data: st.DataObject) -> None:
    names = data.draw(st.lists(st.sampled_from(sorted(centre)), min_size=1, unique=True))
    vary = [(n, data.draw(values())) for n in names]
    out = alg.star(centre, vary)  # type: ignore[arg-type]
    hashes = [pset_hash(p) for p in out]
    # every pset once ...
    assert len(set(hashes)) == len(out)
    # ... and all of them: the centre with one parameter changed to each of its values
    wanted = {pset_hash({**centre, n: v}) for n, vs in vary for v in vs}
    assert set(hashes) == wanted
    for p in out:
        assert list(p) == list(centre)
        assert sum(not same_value(p[k], centre[k]) for k in centre) <= 1
    # the centre appears (once) exactly when a varied parameter has the centre's value
    has_centre = any(same_value(v, centre[n]) for n, vs in vary for v in vs)
    assert (pset_hash(centre) in hashes) == has_centre  # type: ignore[arg-type]


@SETTINGS
@given(sweep_over(["a"], 0, 6), sweep_over(["a"], 0, 6))
def test_concat_keeps_first_occurrences(left: alg.Psets, right: alg.Psets) -> None:
    out = alg.concat(left, right)
    assert len(out) <= len(left) + len(right)
    hashes = [pset_hash(p) for p in out]
    assert len(set(hashes)) == len(out)
    # the output is the input with later repeats dropped: each pset is the first of its kind
    expected: list[dict[str, object]] = []
    seen: set[str] = set()
    for p in left + right:
        h = pset_hash(p)
        if h not in seen:
            seen.add(h)
            expected.append(p)
    assert [(list(p.items()), [type(v) for v in p.values()]) for p in out] == [
        (list(p.items()), [type(v) for v in p.values()]) for p in expected
    ]
    assert set(hashes) == {pset_hash(p) for p in left + right}


@SETTINGS
@given(sweep_over(["a", "b"], 0, 8), st.integers(min_value=-1000, max_value=1000))
def test_where_keeps_order(ps: alg.Psets, limit: int) -> None:
    def test(p: alg.Pset) -> bool:
        return isinstance(p["a"], (int, float)) and not isinstance(p["a"], bool) and p["a"] < limit

    out = alg.where(ps, test)
    assert list(out) == [p for p in ps if test(p)]


@SETTINGS
@given(st.dictionaries(NAMES, scalars, min_size=1, max_size=6), st.randoms(use_true_random=False))
def test_hash_ignores_key_order(pset: dict[str, object], rnd: object) -> None:
    items = list(pset.items())
    rnd.shuffle(items)  # type: ignore[attr-defined]
    assert pset_hash(dict(items)) == pset_hash(pset)  # type: ignore[arg-type]


@SETTINGS
@given(
    st.dictionaries(NAMES, scalars, min_size=1, max_size=6),
    st.data(),
)
def test_hash_changes_when_a_value_changes(pset: dict[str, object], data: st.DataObject) -> None:
    key = data.draw(st.sampled_from(sorted(pset)))
    new = data.draw(scalars)
    changed = {**pset, key: new}
    if same_value(new, pset[key]):
        assert pset_hash(changed) == pset_hash(pset)  # type: ignore[arg-type]
    else:
        assert pset_hash(changed) != pset_hash(pset)  # type: ignore[arg-type]


@settings(max_examples=500, deadline=None, database=None)
@given(scalars, scalars)
def test_equal_hash_exactly_when_same_value(x: object, y: object) -> None:
    assert (pset_hash({"v": x}) == pset_hash({"v": y})) == same_value(x, y)  # type: ignore[dict-item]


def test_same_value_examples() -> None:
    assert pset_hash({"v": 2}) == pset_hash({"v": 2.0})
    assert pset_hash({"v": 1}) != pset_hash({"v": True})
    assert pset_hash({"v": "2"}) != pset_hash({"v": 2})
