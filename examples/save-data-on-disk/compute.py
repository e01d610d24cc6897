"""One pset: sample y = a * x**2 on [0, 1] and save it in the job's folder.

The job runs inside its own folder, so plain file names are all it needs;
sweepc passes them in ({output.data}, {output.meta})."""

import argparse
import json

parser = argparse.ArgumentParser()
parser.add_argument("--a", type=float, required=True)
parser.add_argument("--n", type=int, required=True)
parser.add_argument("--data", required=True)
parser.add_argument("--meta", required=True)
parser.add_argument("--result", required=True)
args = parser.parse_args()

xs = [i / (args.n - 1) for i in range(args.n)]
ys = [args.a * x * x for x in xs]

# a plain-text array, as numpy.savetxt would write it (numpy.loadtxt reads it back)
with open(args.data, "w") as f:
    f.write("# x y\n")
    for x, y in zip(xs, ys):
        f.write(f"{x:.10g} {y:.10g}\n")
with open(args.meta, "w") as f:
    json.dump({"a": args.a, "n": args.n, "columns": ["x", "y"], "function": "a * x**2"}, f)
with open(args.result, "w") as f:
    json.dump({"y_mean": round(sum(ys) / len(ys), 6), "y_max": round(max(ys), 6)}, f)
