"""The function psweep's ps.run(func, params) would call, one pset at a time."""

import math


def func(pset):
    result = pset["a"] * pset["b"]
    print(f"a={pset['a']} b={pset['b']} -> {result}")  # goes to the job's log
    # the function runs in its job's folder: files it writes stay with the pset
    with open("note.txt", "w") as f:
        f.write(f"{result}\n")
    return {"result": result, "log_result": round(math.log(result), 6)}
