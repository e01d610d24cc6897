"""Write samples.csv: 8 samples of (x, y), x in [-2, 2], y in [-1, 3].

Run once (Merlin's `samples: generate: cmd:`); samples.csv is kept with the
study, so the samples never change under it. The seed reproduces it."""

import random

rng = random.Random(7)
with open("samples.csv", "w") as f:
    f.write("sample,x,y\n")
    for i in range(8):
        f.write(f"{i},{rng.uniform(-2, 2):.4f},{rng.uniform(-1, 3):.4f}\n")
