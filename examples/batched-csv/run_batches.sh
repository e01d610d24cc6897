#!/usr/bin/env bash
# Build params.csv three rows at a time. After each batch: save its rows of
# the results table, pack its job folders into archive/, and remove them, so
# the disk holds one batch at a time. A batch already in archive/ is skipped,
# so after a failure (or Ctrl-C) running the script again carries on.
#
#   bash run_batches.sh            # BATCH=5 bash run_batches.sh for 5 rows at a time
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
BATCH=${BATCH:-3}
ROWS=$(( $(grep -c . params.csv) - 1 ))        # data rows: every non-empty line but the header
mkdir -p archive

for (( start = 0; start < ROWS; start += BATCH )); do
    stop=$(( start + BATCH < ROWS ? start + BATCH : ROWS ))
    name=$(printf 'batch-%02d-%02d' "$start" "$((stop - 1))")
    if [[ -e archive/$name.tar.gz ]]; then
        echo "$name: already archived"
        continue
    fi
    echo "$name: rows $start to $((stop - 1))"
    # the rows start..stop-1 of the sweep (Maestro's START and NROWS); a failed job stops the script
    sweepc build --psets "$start:$stop"
    # the same rows, named by parameter: the batch's results, then its job folders
    where="param_combo >= $start and param_combo < $stop"
    sweepc results --where "$where" --format csv -o "archive/$name.csv"
    # check that --where found the rows --psets built, all done; list their job folders
    python3 - "archive/$name.csv" "$((stop - start))" > "archive/$name.dirs" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
bad = [r["param_combo"] for r in rows if r["_status"] != "done"]
if len(rows) != int(sys.argv[2]) or bad:
    sys.exit(f"{sys.argv[1]}: expected {sys.argv[2]} done rows, got {len(rows)} (not done: {bad})")
print("\n".join(r["_job_dir"] for r in rows))
PY
    tar -czf "archive/$name.tar.gz.tmp" -T "archive/$name.dirs" "archive/$name.csv"
    rm "archive/$name.dirs"
    sweepc clean outputs --where "$where" | tail -n 1          # the folders it removed, counted
    # the batch counts as done only now: stopped before this line, a rerun redoes it
    mv "archive/$name.tar.gz.tmp" "archive/$name.tar.gz"
done
echo "all $ROWS rows archived in archive/"
