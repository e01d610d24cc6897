"""A "long" simulation that checkpoints after every step.

It may do at most --max-steps-per-run steps per run, like a job with a time
limit: then it exits with code 75 (EX_TEMPFAIL) and leaves checkpoint.json,
from which --resume continues. The checkpoint is deliberately NOT a declared
output: sweepc removes declared outputs before every attempt, and a
checkpoint must survive until the restart reads it.
"""

import argparse
import json
import os
import sys

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, required=True)
parser.add_argument("--rate", type=float, required=True)
parser.add_argument("--max-steps-per-run", type=int, required=True)
mode = parser.add_mutually_exclusive_group(required=True)
mode.add_argument("--fresh", action="store_true", help="start at step 1")
mode.add_argument("--resume", action="store_true", help="continue from checkpoint.json")
args = parser.parse_args()

CHECKPOINT = "checkpoint.json"
attempt = int(os.environ.get("SWEEPC_ATTEMPT", "1"))  # 1, then 2 for the retry


def say(text: str) -> None:
    """Print, and keep a history across attempts: sweepc starts sweepc.log
    afresh for every attempt, history.txt is ours and is only appended to."""
    print(text)
    with open("history.txt", "a") as f:
        f.write(text + "\n")


if args.fresh:
    for old in (CHECKPOINT, "history.txt"):
        if os.path.exists(old):
            os.remove(old)
    state = {"step": 0, "value": 1.0, "runs": []}
else:
    with open(CHECKPOINT) as f:
        state = json.load(f)
    say(f"attempt {attempt}: resuming after step {state['step']}")

state["runs"].append(attempt)
first = state["step"] + 1
for step in range(first, args.steps + 1):
    if step - first >= args.max_steps_per_run:
        say(f"attempt {attempt}: out of time before step {step}; checkpoint at step {state['step']}")
        sys.exit(75)
    state["value"] = round(state["value"] * (1 + args.rate), 10)
    state["step"] = step
    with open(CHECKPOINT + ".tmp", "w") as f:  # write, then rename: never a torn checkpoint
        json.dump(state, f)
    os.replace(CHECKPOINT + ".tmp", CHECKPOINT)
    say(f"attempt {attempt}: step {step} value {state['value']}")

with open("final.json", "w") as f:
    json.dump({"steps": state["step"], "value": state["value"], "attempts": len(state["runs"])}, f)
