"""Sum the squares of every work job (their paths are listed one per line)."""

import json
import sys

with open(sys.argv[1]) as listing:
    paths = [line.strip() for line in listing if line.strip()]
squares = [json.load(open(p))["square"] for p in paths]
print(f"{len(squares)} squares, total {sum(squares)}")
