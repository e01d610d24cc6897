"""The ONE place where parameter sets are hashed.

The rule (version 1), pinned by golden values in tests/test_hashing.py:

* a pset is a mapping of parameter names to scalars; key order never matters;
* numbers are compared by value: ``1``, ``1.0`` and a CSV cell ``1`` are one
  value (an integral float is hashed as the integer); other floats are hashed
  by their shortest round-trip text (``repr``), which is the same on every
  machine and every Python 3;
* bools are not numbers: ``true`` and ``1`` are different values;
* strings are hashed in Unicode NFC; a string ``"1"`` is not the number 1;
* the hash is the first 16 hex digits of SHA-256 over a canonical JSON text
  prefixed with the version, so changing the rule means changing the version.
"""

from __future__ import annotations

import json
import math
import unicodedata
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from sweepc.values import Scalar

if TYPE_CHECKING:
    from hashlib import _Hash

# SHA-256 two ways, one digest. hashlib's (OpenSSL) is 2-5x faster on texts
# over ~100 bytes, but loading OpenSSL's libcrypto costs 5-9 ms at start-up,
# which a build with nothing to do (two short texts hashed: the graph cache's
# key) does not need: hashlib is imported at the first hash of a pset or a
# file, and short one-off texts use the interpreter's own module.


def bulk_sha256() -> Callable[..., _Hash]:
    """hashlib.sha256, imported now: for many hashes, or long texts."""
    import hashlib

    return hashlib.sha256


def _pick_short() -> Callable[..., _Hash]:
    try:
        from _sha256 import sha256  # type: ignore[import-not-found]  # Python 3.11
    except ImportError:
        try:
            from _sha2 import sha256  # type: ignore[import-not-found]  # Python 3.12+
        except ImportError:
            return bulk_sha256()
    return sha256  # type: ignore[no-any-return]


def _first_sha256(data: bytes) -> _Hash:
    global _sha256
    _sha256 = bulk_sha256()
    return _sha256(data)


# short_sha256(data=b""): a SHA-256 object of a short text (or to update a
# few times), without loading OpenSSL when the interpreter has its own module
short_sha256: Callable[..., _Hash] = _pick_short()
_sha256: Callable[[bytes], _Hash] = _first_sha256  # hashlib.sha256 from the first call on

HASH_VERSION = 1
HASH_LEN = 16
_PREFIX = f"sweepc-pset-v{HASH_VERSION}\n".encode()


def canonical_value(v: Scalar) -> list[str]:
    if v is True or v is False:
        return ["b", "true" if v else "false"]
    if isinstance(v, int):
        return ["n", str(v)]
    if isinstance(v, float):
        if math.isfinite(v) and v.is_integer():
            return ["n", str(int(v))]
        return ["n", repr(v)]
    if isinstance(v, str):
        return ["s", unicodedata.normalize("NFC", v)]
    raise TypeError(f"not a parameter value: {v!r}")


def canonical_text(pset: Mapping[str, Scalar]) -> str:
    items = sorted((unicodedata.normalize("NFC", k), canonical_value(v)) for k, v in pset.items())
    return json.dumps(items, ensure_ascii=False, separators=(",", ":"))


def pset_hash(pset: Mapping[str, Scalar]) -> str:
    # Same text as canonical_text(), built from memoised fragments: the
    # '["key",' part once per key, the value part once per value (an int's is
    # written directly: json.dumps(["n", str(v)]) is always '["n","<digits>"]').
    # Sorting fragments sorts by key because keys are identifiers and '"' sorts
    # before every identifier character (tests check both agree).
    frags = []
    for k, v in pset.items():
        kf = _key_frags.get(k)
        if kf is None:
            kf = _key_frags[k] = "[" + json.dumps(unicodedata.normalize("NFC", k), ensure_ascii=False) + ","
        if type(v) is int:
            frags.append(kf + '["n","' + str(v) + '"]]')
            continue
        key = (type(v), v)
        vf = _value_frags.get(key)
        if vf is None:
            vf = json.dumps(canonical_value(v), ensure_ascii=False, separators=(",", ":")) + "]"
            if len(_value_frags) < 1_000_000:
                _value_frags[key] = vf
        frags.append(kf + vf)
    frags.sort()
    text = "[" + ",".join(frags) + "]"
    return _sha256(_PREFIX + text.encode("utf-8")).hexdigest()[:HASH_LEN]


def pset_hash_reference(pset: Mapping[str, Scalar]) -> str:
    """The definition pset_hash() must agree with (kept for the tests)."""
    digest = _sha256(_PREFIX + canonical_text(pset).encode("utf-8")).hexdigest()
    return digest[:HASH_LEN]


_key_frags: dict[str, str] = {}
_value_frags: dict[tuple[type, Scalar], str] = {}


def text_hash(*parts: str) -> str:
    """A digest of some texts, used for fingerprints (not for pset identity)."""
    return _sha256("\0".join(parts).encode("utf-8", "surrogatepass")).hexdigest()[:32]
