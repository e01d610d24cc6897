"""The pset hash, pinned.

These hex strings ARE the pin: they name every job's folder and state-store
row. If one of them changes, every user's results look stale; a change to the
hashing rule needs a new HASH_VERSION and a migration, not a new golden value.
"""

from __future__ import annotations

import string
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sweepc.hashing import HASH_LEN, HASH_VERSION, canonical_text, pset_hash, pset_hash_reference

NFC_E = unicodedata.normalize("NFC", "é")
NFD_E = unicodedata.normalize("NFD", "é")


def test_version() -> None:
    assert HASH_VERSION == 1
    assert HASH_LEN == 16


@pytest.mark.parametrize(
    ("pset", "golden"),
    [
        ({}, "c1a637e7efbb2dfb"),
        ({"a": 1}, "a9e4439ea593d626"),
        ({"a": 1.0}, "a9e4439ea593d626"),
        ({"a": True}, "3096e57e6652ba34"),
        ({"a": False}, "0ed17cddde4ec161"),
        ({"a": "1"}, "7b8083dc39685a85"),
        ({"a": 0.1}, "647c14d83c817f36"),
        ({"a": 0.001}, "ab21cb6a107330d7"),
        ({"a": 0}, "b9040bfeffc23cc1"),
        ({"a": -0.0}, "b9040bfeffc23cc1"),
        ({"x": -4}, "4e8fa3896686f912"),
        ({"a": NFC_E}, "777fe237a7c40b6b"),
        ({"a": NFD_E}, "777fe237a7c40b6b"),
        ({"a": 1, "b": "x"}, "81ec33e6a5c6e552"),
        ({"b": "x", "a": 1}, "81ec33e6a5c6e552"),
    ],
)
def test_golden(pset: dict[str, object], golden: str) -> None:
    assert pset_hash(pset) == golden  # type: ignore[arg-type]
    assert pset_hash_reference(pset) == golden  # type: ignore[arg-type]


def test_rule_of_identity() -> None:
    assert pset_hash({"a": 1.0}) == pset_hash({"a": 1})
    assert pset_hash({"a": True}) != pset_hash({"a": 1})
    assert pset_hash({"a": False}) != pset_hash({"a": 0})
    assert pset_hash({"a": "1"}) != pset_hash({"a": 1})
    assert pset_hash({"a": NFD_E}) == pset_hash({"a": NFC_E})
    assert NFD_E != NFC_E
    assert pset_hash({"a": 1, "b": 2}) == pset_hash({"b": 2, "a": 1})
    assert pset_hash({"a": 1}) != pset_hash({"b": 1})
    assert pset_hash({"a": 0.1}) != pset_hash({"a": 0.10000000000000002})


def test_canonical_text() -> None:
    assert canonical_text({"b": "x", "a": 2.0, "c": True}) == '[["a",["n","2"]],["b",["s","x"]],["c",["b","true"]]]'
    assert canonical_text({"a": 1e-3}) == '[["a",["n","0.001"]]]'


def test_not_a_value() -> None:
    with pytest.raises(TypeError):
        pset_hash({"a": None})  # type: ignore[dict-item]
    with pytest.raises(TypeError):
        pset_hash({"a": [1]})  # type: ignore[dict-item]


# Parameter names are identifiers: sweepfile names, and CSV columns (checked by the compiler).
_FIRST = string.ascii_letters + "_"
names = st.builds(lambda a, b: a + b, st.sampled_from(_FIRST), st.text(alphabet=_FIRST + string.digits, max_size=8))
scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=False, allow_infinity=True),
    st.text(max_size=12),
)
psets = st.dictionaries(names, scalars, max_size=6)


@settings(max_examples=200, deadline=None, database=None)
@given(psets)
def test_fast_hash_is_the_reference(pset: dict[str, object]) -> None:
    assert pset_hash(pset) == pset_hash_reference(pset)  # type: ignore[arg-type]
    h = pset_hash(pset)  # type: ignore[arg-type]
    assert len(h) == HASH_LEN and int(h, 16) >= 0


@settings(max_examples=200, deadline=None, database=None)
@given(psets, st.randoms(use_true_random=False))
def test_key_order_is_irrelevant(pset: dict[str, object], rnd: object) -> None:
    items = list(pset.items())
    rnd.shuffle(items)  # type: ignore[attr-defined]
    assert pset_hash(dict(items)) == pset_hash(pset)  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None, database=None)
@given(st.integers(min_value=-(2**53), max_value=2**53))
def test_integral_floats_are_their_integers(n: int) -> None:
    assert pset_hash({"x": float(n)}) == pset_hash({"x": n})


@settings(max_examples=200, deadline=None, database=None)
@given(st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: not f.is_integer()))
def test_other_floats_by_shortest_text(f: float) -> None:
    assert canonical_text({"x": f}) == f'[["x",["n","{f!r}"]]]'
    assert float(repr(f)) == f


@pytest.mark.parametrize("size", [0, 1, 55, 56, 64, 1000, 1 << 20])
def test_the_short_and_bulk_sha256_give_one_digest(size: int) -> None:
    # the graph cache's key is hashed without loading OpenSSL (start-up),
    # the psets and fingerprints with it: the same SHA-256 either way
    import hashlib

    from sweepc.hashing import bulk_sha256, short_sha256

    data = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    want = hashlib.sha256(data).hexdigest()
    assert short_sha256(data).hexdigest() == want
    assert bulk_sha256()(data).hexdigest() == want
    h = short_sha256()
    h.update(data[: size // 2])
    h.update(data[size // 2 :])
    assert h.hexdigest() == want
