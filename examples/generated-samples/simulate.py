"""The "simulation": the Rosenbrock function at (x, y), written as JSON."""

import argparse
import json

ap = argparse.ArgumentParser()
ap.add_argument("--x", type=float, required=True)
ap.add_argument("--y", type=float, required=True)
ap.add_argument("--out", required=True)
a = ap.parse_args()
f = (1 - a.x) ** 2 + 100 * (a.y - a.x**2) ** 2
with open(a.out, "w") as fh:
    json.dump({"f": round(f, 6)}, fh)
