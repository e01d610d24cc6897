"""A stand-in solver for the report tests: error and iterations from n, method, seed."""
import json
import math
import random
import sys

n, method, seed = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
if (n, method, seed) == (128, "jacobi", 3):
    raise FloatingPointError(f"residual diverged at n={n}")
rng = random.Random(seed * 1000 + n)
rate = {"jacobi": 1.0, "gauss-seidel": 0.6, "multigrid": 0.15}[method]
iterations = int(rate * n * math.log(n) * (1 + 0.1 * rng.random()))
error = (1.0 / n) ** 2 * (1 + 0.3 * rng.random()) * (1 + rate)
print(json.dumps({"error": error, "iterations": iterations, "converged": True, "solver": {"rate": rate}}))
