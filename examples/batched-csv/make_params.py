"""Write params.csv: 20 rows of three random whole numbers in 0..100.

Run once; params.csv is kept with the example, so every run of the study
sees the same rows (the seed makes this script reproduce it exactly)."""

import random

rng = random.Random(1234)
with open("params.csv", "w") as f:
    f.write("param_combo,param1,param2,param3\n")
    for i in range(20):
        f.write(f"{i},{rng.randint(0, 100)},{rng.randint(0, 100)},{rng.randint(0, 100)}\n")
