#!/bin/bash
# sweepc array task runner, written by sweepc. Pure bash (+ mv): the compute
# node needs no sweepc.
#
#   bash runner.sh TASKFILE        (the jobscript runs this; SLURM sets SLURM_ARRAY_*)
#
# The task file sets SWEEPC_* variables and calls sweepc_pset once per pset,
# with the pset's command on stdin. For each pset, in order:
#   - after SIGTERM (time limit or scancel): record "not-run";
#   - if an upstream job has no record saying "done": record "skipped";
#   - else run the command in the job folder with bash -e -o pipefail, stdout
#     and stderr to @LOG@, and record "done" (exit 0 and every output there)
#     or "failed"; if SIGTERM arrives while it runs, record "timeout" (the
#     task's time limit is up) or "cancelled".
# Records go to <job folder>/@RECORD@ through a temporary file in the same
# folder and mv, so a reader never sees half a record. A failing pset never
# stops the others: the task exits 0 unless a record cannot be written.

_sweepc_stop=
_sweepc_rc=0
trap '_sweepc_stop=1' TERM

# the time as epoch seconds with a fraction, in $_sweepc_t (bash 5: no fork)
_sweepc_now() {
  _sweepc_t=${EPOCHREALTIME:-}
  [ -n "$_sweepc_t" ] || _sweepc_t=$(date +%s.%N)
  _sweepc_t=${_sweepc_t/,/.}
}
_sweepc_now
_sweepc_task_start=$_sweepc_t

# TEXT as the inside of a JSON string, in $_sweepc_j
_sweepc_json() {
  local s=${1//\\/\\\\}
  s=${s//\"/\\\"}
  s=${s//$'\n'/\\n}
  s=${s//$'\t'/\\t}
  s=${s//$'\r'/\\r}
  _sweepc_j=$s
}

# _sweepc_record DIR HASH FINGERPRINT CMD_HASH INPUTS_HASH ATTEMPT STATUS EXIT START END NOTE
_sweepc_record() {
  local dir=$1 tmp="$1/.@RECORD@.$$.tmp"
  _sweepc_json "${11}"
  if printf '{"version": 1, "submission": "%s", "rule": "%s", "hash": "%s", "status": "%s", "exit_code": %s, "start": %s, "end": %s, "host": "%s", "array_job_id": "%s", "array_task_id": "%s", "job_id": "%s", "attempt": %s, "fingerprint": "%s", "cmd_hash": "%s", "inputs_hash": "%s", "note": "%s"}\n' \
      "$SWEEPC_SUBMISSION" "$SWEEPC_RULE" "$2" "$7" "${8:-null}" "${9:-null}" "${10}" "${HOSTNAME:-}" \
      "${SLURM_ARRAY_JOB_ID:-}" "${SLURM_ARRAY_TASK_ID:-}" "${SLURM_JOB_ID:-}" "$6" "$3" "$4" "$5" "$_sweepc_j" \
      >"$tmp" 2>/dev/null && mv -f -- "$tmp" "$dir/@RECORD@"; then
    return 0
  fi
  echo "sweepc: cannot write $dir/@RECORD@" >&2
  _sweepc_rc=1
}

# sweepc_pset HASH FINGERPRINT CMD_HASH INPUTS_HASH ATTEMPT [UPSTREAM...]  (the command on stdin)
# UPSTREAM: RULE/HH/HASH of a job of this submission, or RULE/HH/HASH@SUBMISSION
sweepc_pset() {
  local hash=$1 fp=$2 ch=$3 ih=$4 attempt=$5 cmd= dir up rel sub line out start rc status missing
  shift 5
  IFS= read -r -d '' cmd
  dir=$SWEEPC_WORKDIR/$SWEEPC_RULE/${hash:0:2}/$hash
  _sweepc_now
  if [ -n "$_sweepc_stop" ]; then
    _sweepc_record "$dir" "$hash" "$fp" "$ch" "$ih" "$attempt" not-run "" "" "$_sweepc_t" "the array task was stopped before this pset started"
    return 0
  fi
  for up in "$@"; do
    rel=${up%@*}
    sub=$SWEEPC_SUBMISSION
    [ "$rel" = "$up" ] || sub=${up##*@}
    line=
    IFS= read -r line 2>/dev/null <"$SWEEPC_WORKDIR/$rel/@RECORD@"
    case $line in
      *"\"submission\": \"$sub\""*'"status": "done"'*) ;;
      *)
        _sweepc_record "$dir" "$hash" "$fp" "$ch" "$ih" "$attempt" skipped "" "" "$_sweepc_t" "input $rel is not done"
        return 0
        ;;
    esac
  done
  start=$_sweepc_t
  # never write through a link: a @LOG@ that is one loses the link, not its target
  [ ! -L "$dir/@LOG@" ] || rm -f -- "$dir/@LOG@"
  (
    cd -- "$dir" || exit 127
    export SWEEPC_JOB_DIR="$dir" SWEEPC_PSET_JSON="$dir/pset.json" SWEEPC_RULE SWEEPC_PSET_HASH="$hash" SWEEPC_ATTEMPT="$attempt" SWEEPC_ROOT SWEEPC_RUN_ID="$SWEEPC_SUBMISSION"
    exec bash -e -o pipefail -c "$cmd"
  ) </dev/null >"$dir/@LOG@" 2>&1 &
  wait "$!"
  rc=$?
  # SIGTERM reaches every process of the job at about the same time: when the
  # command died of it first, give our own trap a moment to run
  if [ "$rc" -eq 143 ] && [ -z "$_sweepc_stop" ]; then sleep 0.5; fi
  _sweepc_now
  if [ -n "$_sweepc_stop" ]; then
    status=cancelled
    if [ -n "${SWEEPC_TIME_LIMIT:-}" ] && [ $(( ${_sweepc_t%.*} - ${_sweepc_task_start%.*} + 5 )) -ge "$SWEEPC_TIME_LIMIT" ]; then
      status=timeout
    fi
    _sweepc_record "$dir" "$hash" "$fp" "$ch" "$ih" "$attempt" "$status" "" "$start" "$_sweepc_t" "stopped by SIGTERM"
    kill -TERM "$!" 2>/dev/null
    return 0
  fi
  if [ "$rc" -ne 0 ]; then
    _sweepc_record "$dir" "$hash" "$fp" "$ch" "$ih" "$attempt" failed "$rc" "$start" "$_sweepc_t" ""
    return 0
  fi
  missing=
  for out in "${SWEEPC_OUTPUTS[@]}"; do
    [ -e "$dir/$out" ] || missing="$missing $out"
  done
  if [ -n "$missing" ]; then
    _sweepc_record "$dir" "$hash" "$fp" "$ch" "$ih" "$attempt" failed 0 "$start" "$_sweepc_t" "exited 0 but did not write${missing}"
  else
    _sweepc_record "$dir" "$hash" "$fp" "$ch" "$ih" "$attempt" done 0 "$start" "$_sweepc_t" ""
  fi
}

if [ $# -ne 1 ] || [ ! -r "$1" ]; then
  echo "usage: bash runner.sh TASKFILE (got: $*)" >&2
  exit 2
fi
. "$1"
exit "$_sweepc_rc"
