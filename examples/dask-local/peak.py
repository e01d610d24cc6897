"""Print {"y_max": ...} over the y.json files named on the command line."""
import json
import sys

ys = [json.load(open(path))["y"] for path in sys.argv[1:]]
print(json.dumps({"y_max": max(ys), "n": len(ys)}))
