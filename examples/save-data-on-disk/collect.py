"""Read every compute job's files and write one summary.

The first argument is {input.list}: a file naming one input per line (every
output of every compute job, then the source inputs), so this works the same
for 6 jobs or 100k. Paths are relative to this job's folder, where it runs."""

import argparse
import json
import os

parser = argparse.ArgumentParser()
parser.add_argument("inputs")
parser.add_argument("--table", required=True)
parser.add_argument("--result", required=True)
args = parser.parse_args()

with open(args.inputs) as f:
    paths = [line.strip() for line in f if line.strip()]

rows = []
for meta_path in sorted(p for p in paths if os.path.basename(p) == "meta.json"):
    folder = os.path.dirname(meta_path)
    with open(meta_path) as f:
        meta = json.load(f)
    with open(os.path.join(folder, "data.txt")) as f:
        ys = [float(line.split()[1]) for line in f if not line.startswith("#")]
    # the integral of y over [0, 1] by the trapezoidal rule
    h = 1 / (len(ys) - 1)
    integral = h * (sum(ys) - (ys[0] + ys[-1]) / 2)
    rows.append((meta["a"], meta["n"], round(integral, 6)))

rows.sort()
with open(args.table, "w") as f:
    f.write("a\tn\tintegral\n")
    for a, n, integral in rows:
        f.write(f"{a:g}\t{n}\t{integral}\n")
with open(args.result, "w") as f:
    json.dump({"jobs": len(rows), "integral_max": max(r[2] for r in rows)}, f)
