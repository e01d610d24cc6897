"""Read every compute job's result.json (paths listed one per line) and summarise."""

import json
import sys

with open(sys.argv[1]) as listing:
    paths = [line.strip() for line in listing if line.strip()]
values = [json.load(open(p))["result"] for p in paths]
print(f"{len(values)} psets, total {sum(values):g}, max {max(values):g}")
