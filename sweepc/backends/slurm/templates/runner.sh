#!/bin/bash
# sweepc array task runner, written by sweepc. Bash (+ mv): the compute node
# needs no sweepc. Each command's peak memory and CPU time are measured with
# python3 (os.wait4) when the node has it, else with /usr/bin/time (+ awk),
# else not at all (the record then says null).
#
#   bash runner.sh TASKFILE        (the jobscript runs this; SLURM sets SLURM_ARRAY_*)
#
# The task file sets SWEEPC_* variables and calls sweepc_pset once per pset,
# with the pset's command on stdin (and, for a rule whose job folders sweepc
# left to the runner, SWEEPC_MAKE_DIRS=1 and the pset's pset.json text in
# _sweepc_pj just before). For each pset, in order:
#   - enter its job folder <workdir>/<rule>/<hh>/<hash> one folder at a time
#     from the workdir, making what is missing, never through a symbolic
#     link: a link (or a file) on the way is refused, and the pset gets a
#     "failed" record in <submission folder>/@REFUSED@/<rule>/<hash>/ instead
#     (nothing is written through the link); from then on everything is
#     written relative to the folder entered. A folder without sweepc's
#     marker gets one. With SWEEPC_MAKE_DIRS=1, write pset.json, and remove
#     the outputs of an earlier run just before the command runs (as sweepc
#     does before submitting the jobs it prepares itself);
#   - after SIGTERM (time limit or scancel): record "not-run";
#   - if an upstream job has no record saying "done": record "skipped"
#     (an input taken through done(RULE) is left out instead: see below);
#   - else record "running", run the command in the job folder with
#     bash -e -o pipefail, stdout and stderr to @LOG@, and record "done"
#     (exit 0 and every output there)
#     or "failed"; if SIGTERM arrives while it runs, record "timeout" (the
#     task's time limit is up) or "cancelled".
# Records go to <job folder>/@RECORD@ through a temporary file in the same
# folder and mv, so a reader never sees half a record. A failing pset never
# stops the others: the task exits 0 unless a record cannot be written.

_sweepc_stop=
_sweepc_rc=0
# this file is <project>/.sweepc/slurm/<submission>/runner.sh: the project is three folders up
_sweepc_sub_dir=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd) || exit 2
SWEEPC_ROOT=$(cd -- "$_sweepc_sub_dir/../../.." && pwd) || exit 2
export SWEEPC_ROOT
_sweepc_wd=  # the workdir's physical path, found at the first pset
_sweepc_pj=  # the next pset's pset.json (SWEEPC_MAKE_DIRS=1)
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

# _sweepc_record DIR HASH FINGERPRINT CMD_HASH INPUTS_HASH ATTEMPT STATUS EXIT START END NOTE [MAX_RSS_MB CPU_S]
_sweepc_record() {
  local dir=$1 tmp="$1/.@RECORD@.$BASHPID.tmp"
  _sweepc_json "${11}"
  if printf '{"version": 1, "submission": "%s", "rule": "%s", "hash": "%s", "status": "%s", "exit_code": %s, "start": %s, "end": %s, "host": "%s", "array": "%s", "array_job_id": "%s", "array_task_id": "%s", "job_id": "%s", "attempt": %s, "fingerprint": "%s", "cmd_hash": "%s", "inputs_hash": "%s", "max_rss_mb": %s, "cpu_s": %s, "note": "%s"}\n' \
      "$SWEEPC_SUBMISSION" "$SWEEPC_RULE" "$2" "$7" "${8:-null}" "${9:-null}" "${10:-null}" "${HOSTNAME:-}" "${SWEEPC_ARRAY:-}" \
      "${SLURM_ARRAY_JOB_ID:-}" "${SLURM_ARRAY_TASK_ID:-}" "${SLURM_JOB_ID:-}" "$6" "$3" "$4" "$5" "${12:-null}" "${13:-null}" "$_sweepc_j" \
      >"$tmp" 2>/dev/null && mv -f -- "$tmp" "$dir/@RECORD@"; then
    return 0
  fi
  [ "$dir" != . ] || dir=$PWD
  echo "sweepc: cannot write $dir/@RECORD@" >&2
  _sweepc_rc=1
}

# How commands are measured: a python3 parent that waits for the command with
# os.wait4 and writes "MAX_RSS_MB CPU_S" (user + system, the command and the
# descendants it waited for) to the file named first; it passes SIGTERM on
# and exits as the command did (128+N for signal N).
_sweepc_measure=
if command -v python3 >/dev/null 2>&1; then
  _sweepc_measure=python3
elif [ -x /usr/bin/time ] && command -v awk >/dev/null 2>&1; then
  _sweepc_measure=time
fi
_sweepc_wait4='import os, signal, sys
pid = os.fork()
if pid == 0:
    try:
        os.execvp(sys.argv[2], sys.argv[2:])
    finally:
        os._exit(127)
signal.signal(signal.SIGTERM, lambda s, f: os.kill(pid, signal.SIGTERM))
_, status, ru = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    f.write("%.1f %.3f\n" % (ru.ru_maxrss / 1024.0, ru.ru_utime + ru.ru_stime))
code = os.waitstatus_to_exitcode(status)
sys.exit(128 - code if code < 0 else code)'

# _sweepc_exec USAGE_FILE COMMAND: exec the command, measured as the node allows
_sweepc_exec() {
  case $_sweepc_measure in
    python3) exec python3 -S -c "$_sweepc_wait4" "$1" bash -e -o pipefail -c "$2" ;;
    time) exec /usr/bin/time -o "$1" -f '%M %U %S' bash -e -o pipefail -c "$2" ;;
    *) exec bash -e -o pipefail -c "$2" ;;
  esac
}

# _sweepc_enter HASH: cd into the job folder, from the workdir one folder at a
# time, making what is missing and never following a symbolic link (each step
# checks that the folder entered is the one named). $_sweepc_new says whether
# the job folder was made here. On refusal: status 1, the reason in $_sweepc_why.
_sweepc_enter() {
  local part shown=$SWEEPC_WORKDIR want target
  _sweepc_new=
  cd -P -- "$_sweepc_wd" 2>/dev/null || { _sweepc_why="cannot enter the workdir $SWEEPC_WORKDIR"; return 1; }
  for part in "$SWEEPC_RULE" "${1:0:2}" "$1"; do
    shown=$shown/$part
    want=$PWD/$part
    if [ ! -e "$part" ] && [ ! -L "$part" ] && mkdir -- "$part" 2>/dev/null && [ "$part" = "$1" ]; then
      _sweepc_new=1
    fi
    if [ -L "$part" ]; then
      target=$(readlink -- "$part" 2>/dev/null) && target=" (to $target)" || target=
      _sweepc_why="$shown is a symbolic link$target; sweepc writes job files only into real folders inside the workdir: remove the link"
      return 1
    fi
    if [ ! -d "$part" ]; then
      _sweepc_why="$shown is in the way: it is not a folder; move it away"
      return 1
    fi
    if ! cd -P -- "$part" 2>/dev/null || [ "$PWD" != "$want" ]; then
      _sweepc_why="$shown changed while the runner entered it (a symbolic link?); nothing was written there"
      return 1
    fi
  done
}

# _sweepc_put NAME TEXT: write a file of the folder entered, never through a
# link: straight into a folder made just now (O_EXCL), else through a
# temporary file and mv (which replaces a link, never writes through it)
_sweepc_put() {
  local tmp=$1.sweepc-tmp
  if [ -n "$_sweepc_new" ]; then
    tmp=$1
  elif [ -e "$tmp" ] || [ -L "$tmp" ]; then
    rm -f -- "$tmp"
  fi
  set -C  # noclobber: the file is opened with O_EXCL
  printf '%s' "$2" 2>/dev/null >"$tmp"
  local rc=$?
  set +C
  [ "$rc" -eq 0 ] && { [ "$tmp" = "$1" ] || mv -f -- "$tmp" "$1"; } && return 0
  echo "sweepc: cannot write $PWD/$1" >&2
  return 1
}

# "MAX_RSS_MB CPU_S" from a usage file, in $_sweepc_usage ("" when there is none)
_sweepc_read_usage() {
  _sweepc_usage=
  [ -s "$1" ] || return 0
  case $_sweepc_measure in
    python3) IFS= read -r _sweepc_usage <"$1" ;;
    time) _sweepc_usage=$(awk 'END { if (NF == 3) printf "%.1f %.3f", $1 / 1024, $2 + $3 }' "$1" 2>/dev/null) ;;
  esac
  rm -f -- "$1"
}

# TEXTS joined by NUL bytes, SHA-256, first 32 hex digits, in $_sweepc_h ("" when
# the node has no way to hash): sweepc's text_hash() (sweepc/hashing.py)
_sweepc_hash() {
  local p first=1
  _sweepc_h=$(
    for p in "$@"; do
      if [ -n "$first" ]; then first=; printf '%s' "$p"; else printf '\0%s' "$p"; fi
    done | {
      if command -v sha256sum >/dev/null 2>&1; then sha256sum
      elif command -v python3 >/dev/null 2>&1; then python3 -S -c 'import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())'
      else cat >/dev/null; fi
    } 2>/dev/null
  )
  _sweepc_h=${_sweepc_h:0:32}
  [[ $_sweepc_h =~ ^[0-9a-f]{32}$ ]] || _sweepc_h=
}

# remove output PATH of job folder DIR as sweepc does (jobdir.remove_outputs):
# never through a link; a link on the way loses the link, nothing else
_sweepc_rm_output() {
  local cur=$1 rest=$2 part
  while [[ $rest == */* ]]; do
    part=${rest%%/*}
    rest=${rest#*/}
    cur=$cur/$part
    if [ -L "$cur" ]; then rm -f -- "$cur"; return 0; fi
    [ -d "$cur" ] || return 0
  done
  rm -rf -- "${cur:?}/$rest"
}

# sweepc_pset HASH FINGERPRINT CMD_HASH INPUTS_HASH ATTEMPT [UPSTREAM...]  (the command on stdin)
# UPSTREAM: RULE/HH/HASH of a job of this submission, or RULE/HH/HASH@SUBMISSION
# A job whose fingerprint depends on which jobs ended done (input: done(RULE),
# or downstream of such a job) has FINGERPRINT "dynamic" or "dynamic-soft" (it
# has done() inputs itself); its fingerprint is made here, as sweepc's
# planner.dynamic_fingerprint() makes it, from these UPSTREAM entries, in order:
#   fp:DIGEST      a part of its inputs hash (an input's fingerprint, a source's digest)
#   rf:REL[@SUB]   the fingerprint in the (done) record of that input
#   softfp:DIGEST  a done() input known to have ended done
#   soft:REL[@SUB] a done() input: taken when its record says done, else left
#                  out (its lines are removed from the input list)
#   keep:DIGEST    its fingerprint when it was last done: if it comes out the
#                  same and the outputs are there, it is recorded done unrun
# With SWEEPC_PACK=N > 1 a pset runs in the background as soon as fewer than N
# run (each with its own TERM trap and record); the task waits for them all.
sweepc_pset() {
  local cmd= pj=$_sweepc_pj
  _sweepc_pj=
  IFS= read -r -d '' cmd
  case $SWEEPC_WORKDIR in /*) ;; *) SWEEPC_WORKDIR=$SWEEPC_ROOT/$SWEEPC_WORKDIR ;; esac
  if [ -z "$_sweepc_wd" ]; then
    # the workdir itself may be a link (to scratch space): the user's setting
    [ -d "$SWEEPC_WORKDIR" ] || mkdir -p -- "$SWEEPC_WORKDIR" 2>/dev/null
    _sweepc_wd=$(cd -P -- "$SWEEPC_WORKDIR" 2>/dev/null && pwd -P) || _sweepc_wd=$SWEEPC_WORKDIR
  fi
  if [ "${SWEEPC_PACK:-1}" -le 1 ] || [ -n "$_sweepc_stop" ]; then
    _sweepc_one "$cmd" "$pj" "$@"
    return 0
  fi
  local -a live
  while :; do
    mapfile -t live < <(jobs -pr)
    [ "${#live[@]}" -ge "$SWEEPC_PACK" ] || break
    wait -n 2>/dev/null
    [ -z "$_sweepc_stop" ] || break
  done
  if [ -n "$_sweepc_stop" ]; then
    _sweepc_one "$cmd" "$pj" "$@"
    return 0
  fi
  ( trap '_sweepc_stop=1' TERM; _sweepc_one "$cmd" "$pj" "$@"; exit "$_sweepc_rc" ) &
}

# wait for the packed psets still running (a trap interrupts wait: look again)
_sweepc_wait_all() {
  local -a live
  local rc
  while :; do
    mapfile -t live < <(jobs -pr)
    [ "${#live[@]}" -gt 0 ] || return 0
    wait -n 2>/dev/null
    rc=$?
    [ "$rc" -ne 1 ] || _sweepc_rc=1  # a pset whose record could not be written
  done
}

# _sweepc_filter_inputs DIR: the input list of DIR without the lines of the jobs
# that are keys of the caller's associative array `left` ("../../../RULE/HH/HASH/..."
# lines; bash functions see their caller's locals)
_sweepc_filter_inputs() {
  local dir=$1 l r a b c tmp="$1/.@INPUTS@.$BASHPID.tmp"
  {
    while IFS= read -r l || [ -n "$l" ]; do
      r=${l#../../../}
      if [ "$r" != "$l" ]; then
        a=${r%%/*}; r=${r#*/}; b=${r%%/*}; r=${r#*/}; c=${r%%/*}
        [ -z "${left[$a/$b/$c]+x}" ] || continue
      fi
      printf '%s\n' "$l"
    done <"$dir/@INPUTS@"
  } >"$tmp" && mv -f -- "$tmp" "$dir/@INPUTS@"
}

# _sweepc_one COMMAND PSET_JSON HASH FINGERPRINT CMD_HASH INPUTS_HASH ATTEMPT [UPSTREAM...]: one pset, start to record
_sweepc_one() {
  local cmd=$1 pj=$2 hash=$3 fp=$4 ch=$5 ih=$6 attempt=$7 dir=. jobdir up rel sub line out start rc status missing usage rss= cpu=
  shift 7
  jobdir=$SWEEPC_WORKDIR/$SWEEPC_RULE/${hash:0:2}/$hash
  if ! _sweepc_enter "$hash"; then
    # its record goes where sweepc looks when the job folder is refused
    _sweepc_now
    dir=$_sweepc_sub_dir/@REFUSED@/$SWEEPC_RULE/$hash
    if ! mkdir -p -- "$dir" 2>/dev/null; then
      echo "sweepc: cannot write $dir/@RECORD@" >&2
      _sweepc_rc=1
      return 0
    fi
    _sweepc_record "$dir" "$hash" "$fp" "$ch" "$ih" "$attempt" failed "" "" "$_sweepc_t" "refusing to run it: $_sweepc_why"
    return 0
  fi
  # sweepc's marker (kept once written), on every folder the runner enters
  if [ ! -e @MARKER@ ] && [ ! -L @MARKER@ ]; then
    _sweepc_put @MARKER@ "$SWEEPC_RULE/${hash:0:2}/$hash"$'\n' || _sweepc_rc=1
  fi
  local made_here=$_sweepc_new
  if [ "${SWEEPC_MAKE_DIRS:-}" = 1 ]; then
    [ -z "$pj" ] || _sweepc_put @PSET_JSON@ "$pj" || _sweepc_rc=1
  fi
  _sweepc_now
  if [ -n "$_sweepc_stop" ]; then
    _sweepc_record "$dir" "$hash" "$fp" "$ch" "$ih" "$attempt" not-run "" "" "$_sweepc_t" "the array task was stopped before this pset started"
    return 0
  fi
  local kind keep= note= re='"fingerprint": "([0-9a-f]+)"' n_soft=0 rebuilt=
  local -a parts=() softs=()
  local -A left=()
  for up in "$@"; do
    case $up in
      fp:*) parts+=("${up#fp:}"); continue ;;
      softfp:*) softs+=("${up#softfp:}"); continue ;;
      keep:*) keep=${up#keep:}; continue ;;
      soft:*) kind=soft; up=${up#soft:}; n_soft=$((n_soft + 1)) ;;
      rf:*) kind=rf; up=${up#rf:} ;;
      *) kind= ;;
    esac
    rel=${up%@*}
    sub=$SWEEPC_SUBMISSION
    [ "$rel" = "$up" ] || sub=${up##*@}
    line=
    IFS= read -r line 2>/dev/null <"$SWEEPC_WORKDIR/$rel/@RECORD@"
    case $line in
      *"\"submission\": \"$sub\""*'"status": "done"'*) ;;
      *) line= ;;
    esac
    case $line in
      # an input of this submission that ran and ended done: what it wrote may differ
      # with the same fingerprint, so this job is not kept as it was (see keep: below)
      '') ;;
      *'"note": "up to date: its inputs came out as they were"'*) ;;
      *) [ "$sub" != "$SWEEPC_SUBMISSION" ] || rebuilt=1 ;;
    esac
    if [ -n "$line" ] && [ -n "$kind" ]; then
      if [[ $line =~ $re ]]; then
        if [ "$kind" = soft ]; then softs+=("${BASH_REMATCH[1]}"); else parts+=("${BASH_REMATCH[1]}"); fi
      else
        line=
      fi
    fi
    if [ -z "$line" ]; then
      if [ "$kind" = soft ]; then left[$rel]=1; continue; fi
      _sweepc_record "$dir" "$hash" "$fp" "$ch" "$ih" "$attempt" skipped "" "" "$_sweepc_t" "input $rel is not done"
      return 0
    fi
  done
  if [ "$fp" = dynamic ] || [ "$fp" = dynamic-soft ]; then
    _sweepc_hash "${parts[@]}"
    ih=$_sweepc_h
    if [ -n "$ih" ] && [ "$fp" = dynamic-soft ]; then
      _sweepc_hash "done()" "$ih" "${softs[@]}"
      ih=$_sweepc_h
    fi
    if [ -n "$ih" ]; then _sweepc_hash "$ch" "$hash" "$ih"; fi
    if [ -z "$_sweepc_h" ]; then
      _sweepc_record "$dir" "$hash" "" "$ch" "" "$attempt" failed 2 "" "$_sweepc_t" "cannot make its fingerprint here: the node has neither sha256sum nor python3"
      return 0
    fi
    fp=$_sweepc_h
    if [ "${#left[@]}" -gt 0 ]; then
      note="ran without ${#left[@]} of the $n_soft done() inputs that were not done when it started"
      [ ! -f "$dir/@INPUTS@" ] || _sweepc_filter_inputs "$dir" || _sweepc_rc=1
    fi
    if [ -n "$keep" ] && [ -z "$rebuilt" ] && [ "$fp" = "$keep" ]; then
      missing=
      for out in "${SWEEPC_OUTPUTS[@]}"; do
        [ -e "$dir/$out" ] || missing=1
      done
      if [ -z "$missing" ]; then
        _sweepc_record "$dir" "$hash" "$fp" "$ch" "$ih" "$attempt" done 0 "" "$_sweepc_t" "up to date: its inputs came out as they were"
        return 0
      fi
    fi
    if [ -n "$keep" ]; then  # sweepc kept the outputs for this check: gone before it runs
      for out in "${SWEEPC_OUTPUTS[@]}"; do _sweepc_rm_output "$dir" "$out"; done
    fi
  fi
  if [ "${SWEEPC_MAKE_DIRS:-}" = 1 ] && [ -z "$made_here" ] && [ -z "$keep" ]; then
    # an earlier run's outputs go before it runs (never through a link), as sweepc
    # removes them before submitting the jobs it prepares (keep: removed above)
    for out in "${SWEEPC_OUTPUTS[@]}"; do _sweepc_rm_output . "$out"; done
  fi
  start=$_sweepc_t
  # never write through a link: a @LOG@ that is one loses the link, not its target
  [ ! -L @LOG@ ] || rm -f -- @LOG@
  usage=.sweepc-usage
  rm -f -- "$usage"
  _sweepc_record "$dir" "$hash" "$fp" "$ch" "$ih" "$attempt" running "" "$start" "" ""
  (
    export SWEEPC_JOB_DIR="$jobdir" SWEEPC_PSET_JSON="$jobdir/@PSET_JSON@" SWEEPC_RULE SWEEPC_PSET_HASH="$hash" SWEEPC_ATTEMPT="$attempt" SWEEPC_ROOT SWEEPC_RUN_ID="$SWEEPC_SUBMISSION"
    _sweepc_exec "$usage" "$cmd"
  ) </dev/null >@LOG@ 2>&1 &
  wait "$!"
  rc=$?
  # SIGTERM reaches every process of the job at about the same time: when the
  # command died of it first, give our own trap a moment to run
  if [ "$rc" -eq 143 ] && [ -z "$_sweepc_stop" ]; then sleep 0.5; fi
  if [ -n "$_sweepc_stop" ]; then
    # the trap interrupted wait: pass SIGTERM on, give the measurement up to a second
    kill -TERM "$!" 2>/dev/null
    for _ in 1 2 3 4 5 6 7 8 9 10; do [ -s "$usage" ] && break; sleep 0.1; done
  fi
  _sweepc_read_usage "$usage"
  if [ -n "$_sweepc_usage" ]; then
    rss=${_sweepc_usage% *}
    cpu=${_sweepc_usage#* }
  fi
  _sweepc_now
  if [ -n "$_sweepc_stop" ]; then
    status=cancelled
    if [ -n "${SWEEPC_TIME_LIMIT:-}" ] && [ $(( ${_sweepc_t%.*} - ${_sweepc_task_start%.*} + 5 )) -ge "$SWEEPC_TIME_LIMIT" ]; then
      status=timeout
    fi
    _sweepc_record "$dir" "$hash" "$fp" "$ch" "$ih" "$attempt" "$status" "" "$start" "$_sweepc_t" "stopped by SIGTERM" "$rss" "$cpu"
    return 0
  fi
  if [ "$rc" -ne 0 ]; then
    _sweepc_record "$dir" "$hash" "$fp" "$ch" "$ih" "$attempt" failed "$rc" "$start" "$_sweepc_t" "" "$rss" "$cpu"
    return 0
  fi
  missing=
  for out in "${SWEEPC_OUTPUTS[@]}"; do
    [ -e "$out" ] || missing="$missing $out"
  done
  if [ -n "$missing" ]; then
    _sweepc_record "$dir" "$hash" "$fp" "$ch" "$ih" "$attempt" failed 0 "$start" "$_sweepc_t" "exited 0 but did not write${missing}" "$rss" "$cpu"
  else
    _sweepc_record "$dir" "$hash" "$fp" "$ch" "$ih" "$attempt" done 0 "$start" "$_sweepc_t" "$note" "$rss" "$cpu"
  fi
}

# sweepc_python: the task file of a `python:` rule calls this with its JSON on
# stdin; pyrunner.py (next to this file, with sweepc_pyjob.py) imports the
# module once and does for each pset what _sweepc_one does for a command.
# SWEEPC_PYTHON names another interpreter (default: python3 on the PATH).
sweepc_python() {
  exec "${SWEEPC_PYTHON:-python3}" "$(dirname -- "${BASH_SOURCE[0]}")/pyrunner.py"
}

if [ $# -ne 1 ] || [ ! -r "$1" ]; then
  echo "usage: bash runner.sh TASKFILE (got: $*)" >&2
  exit 2
fi
. "$1"
_sweepc_wait_all
exit "$_sweepc_rc"
