"""Collect every simulation's result: how many, and the best one."""

import json
import sys

# {input.list} names every input: the sim results, and this script itself
paths = [line.strip() for line in open(sys.argv[1]) if line.strip().endswith("result.json")]
fs = [json.load(open(p))["f"] for p in paths]
with open(sys.argv[2], "w") as fh:
    json.dump({"runs": len(fs), "f_min": min(fs)}, fh)
