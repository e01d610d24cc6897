"""Parameter values: the scalar types, their normalisation and shell text.

A parameter value is an int, float, str or bool. Normalisation (for identity,
see hashing.py) and rendering for the shell both live here so the two never
disagree about what a value is.
"""

from __future__ import annotations

import json
import math
import shlex
import unicodedata
from collections.abc import Mapping
from typing import Union

Scalar = Union[int, float, str, bool]

# Names sweepc gives its own columns (the results table's bookkeeping, the
# fields a python: function gets besides its parameters, psets()'s _sweep):
# no parameter may have one, or its values would vanish behind sweepc's.
# (tests/test_lang_layers.py checks this against backends/jobdir.py and pyjob.py)
RESERVED_PARAMS = frozenset({
    "_pset_hash", "_pset_seq", "_run_id", "_run_seq", "_time_utc", "_exec_host", "_runtime_s", "_status",
    "_exit_code", "_attempts", "_max_rss_mb", "_cpu_s", "_job_dir", "_log", "_error", "_index", "_rule",
    "_inputs", "_sweep",
})


def breaks_lines(s: str) -> bool:
    """Whether s holds a line boundary (\\n, \\r, \\u2028, ...: what str.splitlines
    splits at): such a path would be two lines of a job's input list."""
    return len((s + "x").splitlines()) != 1


def not_expanded(path: str) -> str:
    """For the hint of a path that was not found: say that sweepc takes `~`
    and `$VAR` as written, when the path has them ("" when not)."""
    return "; '~' and '$' variables are not expanded" if path.startswith("~") or "$" in path else ""


def clean_float(x: float) -> float:
    """Round away binary noise from computed floats (linspace, logspace).

    12 significant digits keep every value a person would type while turning
    0.30000000000000004 into 0.3.
    """
    if not math.isfinite(x):
        return x
    return float(f"{x:.12g}")


def clean_str(s: str) -> str:
    """Strings are compared in Unicode NFC, so 'é' typed two ways is one value."""
    return unicodedata.normalize("NFC", s)


def type_name(v: object) -> str:
    return {bool: "bool", int: "int", float: "float", str: "str"}.get(type(v), type(v).__name__)


def shell_str(v: Scalar) -> str:
    """The text of a value as the command sees it (before quoting)."""
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, float):
        return repr(v)
    return str(v)


_quoted: dict[tuple[type, Scalar], str] = {}


def shell_quote(v: Scalar) -> str:
    """shell_str(v), quoted for bash. Memoised: sweeps repeat values a lot."""
    if type(v) is int:
        return str(v)  # digits and a '-': nothing a shell would read as special
    # (a float by its text: 0.0 == -0.0, but they are two texts)
    key = (type(v), repr(v) if type(v) is float else v)
    q = _quoted.get(key)
    if q is None:
        q = shlex.quote(shell_str(v))
        if len(_quoted) < 1_000_000:
            _quoted[key] = q
    return q


def join_key(v: Scalar) -> tuple[bool, Scalar]:
    """A key under which 1 and 1.0 match but True and 1 do not."""
    return (type(v) is bool, v)


def display(v: Scalar) -> str:
    return repr(v) if isinstance(v, str) else shell_str(v)


# json.dumps(v, ensure_ascii=False, separators=(",", ":")) without making a
# JSONEncoder each call (values_json below makes the same text faster for
# a pset's scalars: the stand-in command of a python: job, the store's
# params column, a results file's values as the store keeps them)
compact_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode

_ESCAPE = json.encoder.encode_basestring  # what compact_json does to a str (the C function when there is one)
_INF = float("inf")


def encode_scalar(v: object) -> str:
    """compact_json(v), a few times faster for the scalars of a pset."""
    c = v.__class__
    if c is str:
        return _ESCAPE(v)  # type: ignore[arg-type]
    if c is int:
        return int.__repr__(v)
    if c is float:
        f: float = v  # type: ignore[assignment]
        if f != f:
            return "NaN"
        if f == _INF:
            return "Infinity"
        if f == -_INF:
            return "-Infinity"
        return float.__repr__(f)
    return compact_json(v)


def values_json(values: Mapping[str, object]) -> str:
    """compact_json(dict(values)), made a value at a time (encode_scalar): a
    pset's parameters (a python: job's stand-in command, a task's line), the
    values of a job's results files as the store keeps them."""
    if not values:
        return "{}"
    enc = encode_scalar
    return "{" + ",".join([f"{enc(k)}:{enc(v)}" for k, v in values.items()]) + "}"
