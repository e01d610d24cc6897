"""Draw N samples of (x, y) and save them as a 2-D NumPy array (rows = samples).

Merlin's `samples: generate: cmd: python make_samples.py ... -outfile=samples.npy`:
here a rule of the sweepfile runs it, and `npy(make_samples, columns=...)`
turns its output into the psets of the simulation step."""

import argparse

import numpy as np

ap = argparse.ArgumentParser()
ap.add_argument("--n", type=int, required=True)
ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--out", required=True)
args = ap.parse_args()

rng = np.random.default_rng(args.seed)
# row by row, so that asking for more samples keeps the first ones
xy = rng.uniform([-2, -1], [2, 3], size=(args.n, 2))
np.save(args.out, np.round(xy, 4))
