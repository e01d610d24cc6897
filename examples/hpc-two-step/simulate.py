"""A stand-in for a simulation code: evaluate the Rosenbrock function at (x, y).

On a cluster this would be `srun -n {resources.tasks} ./my_solver ...`; here
the work is split over --tasks worker processes so that it runs anywhere."""

import argparse
import json
import multiprocessing
import os


def rosenbrock_part(args: tuple[float, float, int, int]) -> float:
    x, y, part, parts = args
    # the function has two terms; worker `part` adds up the ones it owns
    terms = [(1 - x) ** 2, 100 * (y - x * x) ** 2]
    return sum(t for i, t in enumerate(terms) if i % parts == part)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--x", type=float, required=True)
    parser.add_argument("--y", type=float, required=True)
    parser.add_argument("--tasks", type=int, default=1)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    with multiprocessing.Pool(args.tasks) as pool:
        value = sum(pool.map(rosenbrock_part, [(args.x, args.y, p, args.tasks) for p in range(args.tasks)]))
    where = os.environ.get("SLURM_JOB_ID", "local")
    print(f"f({args.x}, {args.y}) = {value} with {args.tasks} tasks (job {where})")
    with open(args.out, "w") as f:
        json.dump({"f": round(value, 6), "tasks": args.tasks}, f)
