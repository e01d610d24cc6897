"""Job resources (cpus, mem, time, ...): SLURM's units and spellings.

parse_mem()/parse_time() read what a sweepfile may write, format_time()
writes SLURM's D-HH:MM:SS, and resource_value() checks one value for a
compiler pass, with the pset it came from in the message.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

from sweepc.errors import Span
from sweepc.lang import sweeps as alg
from sweepc.lang.problems import Problems
from sweepc.values import Scalar, display

RESOURCE_NAMES = ("cpus", "mem", "time", "nodes", "tasks", "gpus", "pack")


def resource_value(p: Problems, name: str, v: Scalar, span: Span, pset: Mapping[str, Scalar] | None) -> int | None:
    where = f" (pset {alg.describe(pset)})" if pset else ""
    if name == "mem":
        mb = parse_mem(v)
        if mb is None:
            p.bail(f"bad memory size {display(v)}{where}", span, 'write megabytes as a number, or a size such as "500M", "4G"')
        return mb
    if name == "time":
        secs = parse_time(v)
        if secs is None:
            p.bail(f"bad time limit {display(v)}{where}", span, 'write minutes as a number, or "HH:MM:SS", "MM:SS" or "D-HH:MM:SS"')
        return secs
    if isinstance(v, str):
        try:
            v = int(v.strip())
        except ValueError:
            pass
    if isinstance(v, bool) or not isinstance(v, int) or v < (0 if name == "gpus" else 1):
        p.bail(f"resource '{name}' needs a whole number of at least {0 if name == 'gpus' else 1}, not {display(v)}{where}", span, f"for example: {name} = 2")
    return v


_MEM = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([KMGT]?)B?\s*$", re.IGNORECASE)
# The largest values taken: beyond them a number is a mistake (or infinity),
# and SLURM would refuse it. 2**40 MB is a zettabyte; 100 years of run time.
MAX_MEM_MB = 1 << 40
MAX_TIME_S = 100 * 365 * 86400
_MAX_DIGITS = 20  # of one number in a size or time text (Python refuses int() of > 4300)


def parse_mem(v: Scalar) -> int | None:
    """Memory in MB (SLURM's unit): 500, "500M", "4G", "1.5G", "1T"."""
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        num: float = v
    else:
        m = _MEM.match(v)
        if not m or len(m.group(1)) > _MAX_DIGITS:
            return None
        num = float(m.group(1)) * {"": 1, "K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}[m.group(2).upper()]
    if not 0 < num <= MAX_MEM_MB:  # (nan and infinity too)
        return None
    return int(math.ceil(num))


def parse_time(v: Scalar) -> int | None:
    """A time limit in seconds: minutes as a number, "MM:SS", "HH:MM:SS", "D-HH:MM:SS", "D-HH"."""
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return int(v * 60) or None if 0 < v <= MAX_TIME_S / 60 else None  # (nan and infinity: None)
    text = v.strip()
    if any(len(n) > _MAX_DIGITS for n in re.split(r"[-:]", text)):
        return None
    days = 0
    if "-" in text:
        d, _, text = text.partition("-")
        if not d.isdigit():
            return None
        days = int(d)
        parts = text.split(":")
        if not all(p.isdigit() for p in parts) or not 1 <= len(parts) <= 3:
            return None
        nums = [int(p) for p in parts] + [0] * (3 - len(parts))
        secs = days * 86400 + nums[0] * 3600 + nums[1] * 60 + nums[2]
        return secs if 0 < secs <= MAX_TIME_S else None
    parts = text.split(":")
    if not all(p.isdigit() for p in parts) or not 1 <= len(parts) <= 3:
        return None
    nums = [int(p) for p in parts]
    if len(nums) == 1:
        secs = nums[0] * 60
    elif len(nums) == 2:
        secs = nums[0] * 60 + nums[1]
    else:
        secs = nums[0] * 3600 + nums[1] * 60 + nums[2]
    return secs if 0 < secs <= MAX_TIME_S else None


def format_time(secs: int) -> str:
    """SLURM's D-HH:MM:SS (or HH:MM:SS under a day)."""
    d, rest = divmod(secs, 86400)
    h, rest = divmod(rest, 3600)
    m, s_ = divmod(rest, 60)
    return f"{d}-{h:02d}:{m:02d}:{s_:02d}" if d else f"{h:02d}:{m:02d}:{s_:02d}"
