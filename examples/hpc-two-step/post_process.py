"""Gather every sim_runs result: how many, the best sample, the mean.

The first argument is {input.list}, a file naming one input per line; the
sim.json files are the ones we want (the list also names this script)."""

import argparse
import json

parser = argparse.ArgumentParser()
parser.add_argument("inputs")
parser.add_argument("--out", required=True)
args = parser.parse_args()

with open(args.inputs) as f:
    paths = [line.strip() for line in f if line.strip().endswith("sim.json")]
values = [json.load(open(p))["f"] for p in paths]
summary = {"runs": len(values), "f_min": min(values), "f_mean": round(sum(values) / len(values), 6)}
print(summary)
with open(args.out, "w") as f:
    json.dump(summary, f)
