"""One pset's work. It has a bug: odd n fails (exit code 3).

Fix it by setting FAIL_ON_ODD = False (the README does it with sed)."""

import argparse
import json
import sys

FAIL_ON_ODD = True

parser = argparse.ArgumentParser()
parser.add_argument("--n", type=int, required=True)
parser.add_argument("--out", required=True)
args = parser.parse_args()

print(f"working on n={args.n}")
if FAIL_ON_ODD and args.n % 2 == 1:
    print(f"error: cannot handle odd n={args.n}", file=sys.stderr)
    sys.exit(3)
with open(args.out, "w") as f:
    json.dump({"square": args.n * args.n}, f)
