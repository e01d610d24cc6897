#!/usr/bin/env bash
# slurm-local.sh -- a throw-away single-node SLURM cluster on localhost for
# sweepc's integration tests and CI: munged + slurmctld + slurmd, started by
# hand (no systemd, no cgroups, no slurmdbd).  Must run as root.
#
# Usage:
#   scripts/slurm-local.sh start     install missing packages (apt), write the
#                                    config, start the daemons, wait until node
#                                    "localhost" is idle; prints the `env` line.
#                                    Quick no-op when the cluster already runs.
#   scripts/slurm-local.sh stop      cancel all jobs, then stop ONLY the daemons
#                                    this script started (by their recorded pids)
#   scripts/slurm-local.sh restart   stop + start
#   scripts/slurm-local.sh status    pids, sinfo, squeue; exit 0 iff the node is usable
#   scripts/slurm-local.sh env       print "export SLURM_CONF=..." (use with eval)
#   scripts/slurm-local.sh missing-packages
#                                    print the apt packages `start` would install
#
# Clients (sbatch, squeue, scontrol, scancel) find the cluster via SLURM_CONF:
#   eval "$(scripts/slurm-local.sh env)"
#
# Knobs (environment, defaults in brackets):
#   SLURM_LOCAL_DIR         [/tmp/sweepc-slurm] everything lives here: etc/slurm.conf,
#                           state/, log/ (daemon logs), run/ (pid files)
#   SLURM_LOCAL_CPUS        [max(hardware, 8)] CPUs the node advertises.  More than
#                           the hardware has is allowed (SlurmdParameters=
#                           config_overrides), so more trivial jobs run at once.
#   SLURM_LOCAL_FRESH       [1] 1 = wipe state/ and log/ when starting a stopped
#                           cluster (job ids restart at 1); 0 = keep them
#   SLURM_LOCAL_INSTALL     [1] apt-get install missing packages
#   SLURM_LOCAL_APT_UPDATE  [1] run `apt-get update` before installing (0 when the
#                           caller has just done it)
#   SLURM_LOCAL_LINK_ETC    [1] symlink /etc/slurm/slurm.conf to our slurm.conf when
#                           no real file is there, so clients work without SLURM_CONF
#   SLURM_LOCAL_PORT_BASE   [6817] slurmctld port; slurmd uses base+1
#   SLURM_LOCAL_TIMEOUT     [60] seconds to wait for daemons / an idle node
#
# Based on a recipe verified on Debian 12 (Slurm 22.05.8, munge 0.5.15) with
# PID 1 not being systemd.  What we measured with it is in docs/slurm-facts.md.
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"

DIR=${SLURM_LOCAL_DIR:-/tmp/sweepc-slurm}
FRESH=${SLURM_LOCAL_FRESH:-1}
INSTALL=${SLURM_LOCAL_INSTALL:-1}
APT_UPDATE=${SLURM_LOCAL_APT_UPDATE:-1}
LINK_ETC=${SLURM_LOCAL_LINK_ETC:-1}
PORT_BASE=${SLURM_LOCAL_PORT_BASE:-6817}
TIMEOUT=${SLURM_LOCAL_TIMEOUT:-60}
MIN_CPUS=8

case "$DIR" in /?*) ;; *) echo "[slurm-local] ERROR: SLURM_LOCAL_DIR must be an absolute path, not '$DIR'" >&2; exit 1;; esac
DIR=${DIR%/}
ETC=$DIR/etc; STATE=$DIR/state; LOG=$DIR/log; RUN=$DIR/run
CONF=$ETC/slurm.conf
export SLURM_CONF=$CONF

PACKAGES=(slurmctld slurmd slurm-client munge)

say() { printf '[slurm-local] %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }
# Times are kept as integer microseconds in bash arithmetic (64-bit).  Never
# compute them with awk: Debian's awk is mawk, whose `print` keeps six
# significant digits, so an epoch such as 1795984672.75 + 60 prints as
# 1.79598e+09 -- a deadline 4,672 s in the past (and printf "%d" clamps at
# 2^31-1).  `now` prints seconds with a fraction; tests replace it with a fake
# clock (SLURM_LOCAL_LIB=1 sources this file for its functions only).
now() { date +%s.%N; }
# to_us S[.F] : seconds (with an optional fraction) as integer microseconds
to_us() {
  local s=${1%%.*} f=0
  case "$1" in *.*) f=${1#*.};; esac
  f="${f}000000"; f=${f:0:6}
  echo $(( 10#${s:-0} * 1000000 + 10#$f ))
}
# elapsed T0 : seconds since T0 (a `now` value), two decimals
elapsed() {
  local d=$(( $(to_us "$(now)") - $(to_us "$1") ))
  printf '%d.%02d' $(( d / 1000000 )) $(( d % 1000000 / 10000 ))
}

# Process $1 exists and is not a zombie.  PID 1 here may reap orphans late, and
# `kill -0` succeeds on zombies, so look at the state field of /proc/PID/stat.
proc_running() {
  local st
  st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

# The pid recorded in file $1 is running and its command name is $2.
pid_alive() {
  local f=$1 name=$2 pid
  [ -s "$f" ] || return 1
  pid=$(tr -dc 0-9 <"$f"); [ -n "$pid" ] || return 1
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ] || return 1
  proc_running "$pid"
}

# wait_for SECONDS CMD... : poll CMD every 0.1 s until it succeeds.
wait_for() {
  local t=$1; shift
  local end; end=$(( $(to_us "$(now)") + $(to_us "$t") ))
  until "$@" >/dev/null 2>&1; do
    (( $(to_us "$(now)") > end )) && return 1
    sleep 0.1
  done
}

missing_packages() {
  local b
  for b in slurmctld slurmd sbatch squeue scontrol scancel sinfo munged munge; do
    command -v "$b" >/dev/null 2>&1 || { echo "${PACKAGES[*]}"; return 0; }
  done
}

install_pkgs() {
  local pkgs=()
  read -r -a pkgs <<<"$(missing_packages)"
  [ ${#pkgs[@]} -eq 0 ] && return 0
  [ "$INSTALL" = 1 ] || die "missing packages: ${pkgs[*]} (SLURM_LOCAL_INSTALL=0)"
  command -v apt-get >/dev/null || die "missing packages: ${pkgs[*]}, and no apt-get to install them"
  say "installing ${pkgs[*]} ..."
  local t0; t0=$(now)
  local aptlog=${TMPDIR:-/tmp}/slurm-local-apt.log
  # Keep the packages' maintainer scripts from starting the daemons with the
  # distribution's config (they would hold our ports).
  local policy_added=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; policy_added=1
  fi
  local rc=0 apt=(apt-get -q -o DPkg::Lock::Timeout=300)
  : >"$aptlog"
  if [ "$APT_UPDATE" = 1 ]; then
    DEBIAN_FRONTEND=noninteractive "${apt[@]}" update </dev/null >>"$aptlog" 2>&1 || rc=$?
  fi
  if [ $rc = 0 ]; then
    DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y --no-install-recommends "${pkgs[@]}" \
      </dev/null >>"$aptlog" 2>&1 || rc=$?
  fi
  [ $policy_added = 1 ] && rm -f /usr/sbin/policy-rc.d
  if [ $rc != 0 ]; then tail -20 "$aptlog" >&2; die "apt-get failed (rc=$rc, log: $aptlog)"; fi
  [ -z "$(missing_packages)" ] || die "still missing after apt-get install: $(missing_packages)"
  say "installed in $(elapsed "$t0") s"
}

start_munge() {
  if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    pid_alive "$RUN/munged.pid" munged || say "munged already running (not started by us; stop will leave it)"
    return 0
  fi
  if [ ! -s /etc/munge/munge.key ]; then   # normally created by the Debian postinst
    mkdir -p /etc/munge
    mungekey --create --keyfile=/etc/munge/munge.key 2>/dev/null \
      || dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
  fi
  chown munge:munge /etc/munge /etc/munge/munge.key
  chmod 700 /etc/munge; chmod 600 /etc/munge/munge.key
  install -d -o munge -g munge -m 755 /run/munge        # tmpfs: gone after a reboot
  install -d -o munge -g munge -m 700 /var/log/munge
  install -d -o munge -g munge -m 711 /var/lib/munge
  rm -f /run/munge/munged.pid
  runuser -u munge -- /usr/sbin/munged </dev/null >>"$LOG/munged.stdout" 2>&1 \
    || die "munged failed to start (see /var/log/munge/munged.log)"
  wait_for 10 test -s /run/munge/munged.pid || die "munged wrote no pid file"
  cp /run/munge/munged.pid "$RUN/munged.pid"   # our record: we started it, we stop it
  wait_for 10 sh -c 'munge -n | unmunge' || die "munge round trip fails"
}

# Print the slurm.conf for this machine and these knobs on stdout.
render_slurm_conf() {
  local c hw_cpus cpus mem defmem nodedef override=""
  c=$(slurmd -C | head -1)
  field() { sed -n "s/.* $1=\([0-9]*\).*/\1/p" <<<"$c"; }
  hw_cpus=$(field CPUs)
  mem=$(( $(field RealMemory) * 9 / 10 ))   # configured RealMemory must not exceed what slurmd sees
  nodedef="CPUs=$hw_cpus Boards=$(field Boards) SocketsPerBoard=$(field SocketsPerBoard) CoresPerSocket=$(field CoresPerSocket) ThreadsPerCore=$(field ThreadsPerCore)"
  cpus=${SLURM_LOCAL_CPUS:-$(( hw_cpus > MIN_CPUS ? hw_cpus : MIN_CPUS ))}
  case "$cpus" in ''|*[!0-9]*|0) die "SLURM_LOCAL_CPUS must be a positive integer, not '$cpus'";; esac
  if [ "$cpus" != "$hw_cpus" ]; then
    nodedef="CPUs=$cpus Boards=1 SocketsPerBoard=1 CoresPerSocket=$cpus ThreadsPerCore=1"
    override="SlurmdParameters=config_overrides"
  fi
  # Without DefMemPerCPU a job gets the node's whole memory and only one runs at a time.
  defmem=$(( mem / cpus )); [ $defmem -gt 1024 ] && defmem=1024
  cat <<EOF
# generated by sweepc scripts/slurm-local.sh -- do not edit, rerun "start"
ClusterName=sweepclocal
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$PORT_BASE
SlurmdPort=$((PORT_BASE+1))
AuthType=auth/munge
StateSaveLocation=$STATE/slurmctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# no cgroups: works in containers and VMs without a delegated cgroup tree
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
# the default batch_sched_delay=3 makes batch jobs wait up to ~3 s; 0 gives <= 1 s
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0,bf_interval=1
$override
# the default, set explicitly so tests can read it from "scontrol show config"
MaxArraySize=1001
ReturnToService=2
MailProg=/bin/true
InactiveLimit=0
# SIGTERM -> SIGKILL grace on scancel / time limit (default 30 s)
KillWait=2
# finished jobs stay visible to "squeue -t all" / "scontrol show job" for 1 h
MinJobAge=3600
# no slurmdbd: sweepc reads job states from squeue/scontrol.  Completion records
# still go to a text file, which "sacct -c" can read.
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$LOG/jobcomp.txt
NodeName=localhost NodeAddr=127.0.0.1 $nodedef RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP DefMemPerCPU=$defmem
EOF
}

node_state() { SLURM_CONF=$CONF timeout 5 sinfo -h -n localhost -o %T 2>/dev/null; }
node_ready() { case "$(node_state)" in idle|mixed|allocated|completing) return 0;; *) return 1;; esac; }
daemons_alive() { pid_alive "$RUN/slurmctld.pid" slurmctld && pid_alive "$RUN/slurmd.pid" slurmd; }

# slurmstepd processes left over from a crash of an earlier run (we only warn:
# they are not ours to identify reliably).
orphan_stepds() {
  local p
  for p in /proc/[0-9]*; do
    [ "$(cat "$p/comm" 2>/dev/null)" = slurmstepd ] && printf '%s ' "${p#/proc/}"
  done
  return 0
}

cmd_start() {
  [ "$(id -u)" = 0 ] || die "run as root"
  local t0; t0=$(now)
  install_pkgs
  if daemons_alive && wait_for 10 node_ready; then
    if [ -f "$CONF" ] && [ "$(render_slurm_conf)" != "$(cat "$CONF")" ]; then
      say "WARNING: running with an older config (knobs changed?); use '$0 restart' to apply"
    fi
    say "already running ($(node_state), $DIR)"
    cmd_env; return 0
  fi
  if [ "$FRESH" = 1 ] && ! pid_alive "$RUN/slurmctld.pid" slurmctld && ! pid_alive "$RUN/slurmd.pid" slurmd; then
    rm -rf "$STATE" "$LOG"
  fi
  local orphans; orphans=$(orphan_stepds)
  [ -n "$orphans" ] && say "WARNING: slurmstepd processes from an earlier run still alive: $orphans"
  mkdir -p "$ETC" "$STATE/slurmctld" "$STATE/slurmd" "$LOG" "$RUN"
  chmod 755 "$DIR" "$ETC" "$LOG"
  # world-writable: "sacct -c" opens JobCompLoc O_WRONLY|O_CREAT even to read it
  touch "$LOG/jobcomp.txt"; chmod 666 "$LOG/jobcomp.txt"
  start_munge
  render_slurm_conf >"$CONF.tmp"; chmod 644 "$CONF.tmp"; mv -f "$CONF.tmp" "$CONF"
  if [ "$LINK_ETC" = 1 ]; then
    mkdir -p /etc/slurm
    if [ ! -e /etc/slurm/slurm.conf ] || [ -L /etc/slurm/slurm.conf ]; then ln -sfn "$CONF" /etc/slurm/slurm.conf
    else say "/etc/slurm/slurm.conf exists and is not ours: clients need SLURM_CONF=$CONF"; fi
  fi
  if ! pid_alive "$RUN/slurmctld.pid" slurmctld; then
    slurmctld -f "$CONF" </dev/null >>"$LOG/slurmctld.stdout" 2>&1 \
      || die "slurmctld failed: $(tail -5 "$LOG/slurmctld.log" 2>/dev/null)"
  fi
  # -N: the node is called "localhost" whatever `hostname` says
  if ! pid_alive "$RUN/slurmd.pid" slurmd; then
    slurmd -f "$CONF" -N localhost </dev/null >>"$LOG/slurmd.stdout" 2>&1 \
      || die "slurmd failed: $(tail -5 "$LOG/slurmd.log" 2>/dev/null)"
  fi
  if ! wait_for "$TIMEOUT" node_ready; then
    tail -20 "$LOG/slurmctld.log" "$LOG/slurmd.log" >&2 || true
    die "node not idle after ${TIMEOUT}s: $(node_state)"
  fi
  say "cluster up in $(elapsed "$t0") s: $(sinfo -h -o '%P %a %D %T %N %c CPUs')"
  cmd_env
  say "logs in $LOG; stop with: $0 stop"
}

# SIGTERM the pid recorded in $1 if it still is a $2, wait, then SIGKILL.
stop_pid() {
  local f=$1 name=$2 pid
  pid_alive "$f" "$name" || { rm -f "$f"; return 0; }
  pid=$(tr -dc 0-9 <"$f")
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 150); do proc_running "$pid" || break; sleep 0.1; done
  if proc_running "$pid"; then say "$name ($pid) ignored SIGTERM, sending SIGKILL"; kill -KILL "$pid" 2>/dev/null || true; fi
  rm -f "$f"; say "stopped $name ($pid)"
}

no_jobs_active() { [ -z "$(timeout 5 squeue -h -t R,CG,S 2>/dev/null)" ]; }

cmd_stop() {
  [ "$(id -u)" = 0 ] || die "run as root"
  if pid_alive "$RUN/slurmctld.pid" slurmctld; then
    # cancel every job first, otherwise slurmstepd and the job processes outlive slurmd
    local jobs; jobs=$(timeout 5 squeue -h -o %A 2>/dev/null | sort -u || true)
    if [ -n "$jobs" ]; then
      # shellcheck disable=SC2086
      timeout 10 scancel $jobs 2>/dev/null || true
      wait_for 30 no_jobs_active || say "jobs still running/completing"
    fi
  fi
  stop_pid "$RUN/slurmd.pid" slurmd
  stop_pid "$RUN/slurmctld.pid" slurmctld
  stop_pid "$RUN/munged.pid" munged       # only recorded if this script started munged
  if [ -L /etc/slurm/slurm.conf ] && [ "$(readlink /etc/slurm/slurm.conf)" = "$CONF" ]; then rm -f /etc/slurm/slurm.conf; fi
  return 0
}

cmd_status() {
  local f ok=0
  for f in slurmctld slurmd munged; do
    if pid_alive "$RUN/$f.pid" "$f"; then echo "$f: running, pid $(tr -dc 0-9 <"$RUN/$f.pid")"
    else echo "$f: not running (as started by this script)"; fi
  done
  echo "SLURM_CONF=$CONF"
  if node_ready; then
    timeout 5 sinfo 2>/dev/null || true
    timeout 5 squeue 2>/dev/null || true
  else
    echo "node localhost: not usable (state: '$(node_state || true)')"; ok=1
  fi
  return $ok
}

cmd_env() { echo "export SLURM_CONF=$CONF"; }

# SLURM_LOCAL_LIB=1: define the functions only (tests source this file)
if [ "${SLURM_LOCAL_LIB:-0}" = 1 ]; then return 0 2>/dev/null || exit 0; fi

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  restart) cmd_stop; cmd_start ;;
  status) cmd_status ;;
  env) cmd_env ;;
  missing-packages) missing_packages ;;
  *) echo "usage: $0 {start|stop|restart|status|env|missing-packages}" >&2; exit 2 ;;
esac
