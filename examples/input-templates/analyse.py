"""Reads a trajectory and the job's pset.json; writes the result as JSON."""

import json
import os
import sys

pset = json.load(open(os.environ["SWEEPC_PSET_JSON"]))["params"]
rows = [line.split() for line in open(sys.argv[1]) if not line.startswith("#")]
t, x, v = (float(s) for s in rows[-1])
energy = 0.5 * (x * x + v * v)
json.dump({"t_end": round(t, 4), "energy": round(energy, 6), "steps": len(rows) - 1, "scheme_seen": pset["scheme"]}, open(sys.argv[2], "w"))
