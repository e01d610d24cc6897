"""One pset's work: read the parameters, write a JSON object of results."""

import argparse
import json
import math

parser = argparse.ArgumentParser()
parser.add_argument("--a", type=float, required=True)
parser.add_argument("--b", type=float, required=True)
parser.add_argument("--out", required=True)
args = parser.parse_args()

result = {"result": args.a * args.b, "stats": {"log_result": round(math.log(args.a * args.b), 6)}}
with open(args.out, "w") as f:
    json.dump(result, f)
