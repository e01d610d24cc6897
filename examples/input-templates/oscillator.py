"""A tiny simulation code: reads an input deck, writes a trajectory.

Integrates x'' = -x - gamma x' (a damped oscillator) with the scheme the
deck names (semi-implicit "euler" or "leapfrog") and prints one line
"t x v" per step, as codes driven by input files do.
"""

import sys


def read_deck(path: str) -> dict[str, str]:
    deck = {}
    for line in open(path):
        line = line.split("#", 1)[0].strip()
        if line:
            key, value = (s.strip() for s in line.split("=", 1))
            deck[key] = value
    return deck


deck = read_deck(sys.argv[1])
dt, gamma, steps = float(deck["dt"]), float(deck["gamma"]), int(deck["steps"])
x, v = float(deck["x0"]), 0.0
print(f"# {deck['title']}")
for n in range(steps + 1):
    print(f"{n * dt:.4f} {x:.6f} {v:.6f}")
    if deck["scheme"] == "leapfrog":
        v_half = v + 0.5 * dt * (-x - gamma * v)
        x += dt * v_half
        v = v_half + 0.5 * dt * (-x - gamma * v_half)
    else:
        v += dt * (-x - gamma * v)
        x += dt * v
