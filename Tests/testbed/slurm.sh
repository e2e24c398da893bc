#!/usr/bin/env bash
# A real Slurm on the emulated hosts of hosts.sh: munge, slurmctld on host 1, one slurmd per
# compute node on hosts 2..N (nodes n2..nN), everything (keys, state, spool, logs, sockets) in DIR.
# Installs Debian's slurmctld, slurmd, munge and slurm-client when they are missing. Needs root.
#
#   slurm.sh up DIR N     hosts.sh up DIR N, then the daemons; waits until every node is idle
#   slurm.sh run DIR CMD… a Slurm client command on host 1, with SLURM_CONF set
#   slurm.sh down DIR     stops the daemons and removes the hosts
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cmd=${1:?usage: slurm.sh up|run|down DIR ...}
dir=${2:?DIR}
hosts="$here/hosts.sh"

case "$cmd" in
up)
  n=${3:?N}
  missing=""
  for p in slurmctld slurmd munge slurm-client; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
  if [ -n "$missing" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null 2>&1 \
      || { apt-get update -qq >/dev/null 2>&1; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null; }
  fi
  bash "$hosts" up "$dir" "$n"
  s="$dir/slurm"
  mkdir -p "$s/state" "$s/log" "$s/munge"
  for i in $(seq 2 "$n"); do mkdir -p "$s/spool/n$i" "$s/tmp/n$i"; done
  # munge: its own key and socket; every daemon and client reaches it through the socket.
  dd if=/dev/urandom of="$s/munge/key" bs=1024 count=1 status=none
  chmod 400 "$s/munge/key"
  # Daemons get no inherited descriptors: a caller reading this script's output would wait on them.
  munged --force --key-file="$s/munge/key" --socket="$s/munge/socket" --pid-file="$s/munge/pid" \
         --log-file="$s/munge/log" --seed-file="$s/munge/seed" </dev/null >/dev/null 2>&1
  address() { awk -v i="$1" 'NR == i { print $1 }' "$dir/hostfile"; }
  controller=$(bash "$hosts" run "$dir" 1 hostname)
  {
    echo "ClusterName=aedisttest"
    echo "SlurmctldHost=$controller($(address 1))"
    echo "SlurmUser=root"
    echo "AuthType=auth/munge"
    echo "CredType=cred/munge"
    echo "AuthInfo=socket=$s/munge/socket,cred_expire=10"
    echo "ProctrackType=proctrack/linuxproc"
    echo "TaskPlugin=task/none"
    echo "AccountingStorageType=accounting_storage/none"
    echo "JobAcctGatherType=jobacct_gather/none"
    echo "SelectType=select/cons_tres"
    echo "SelectTypeParameters=CR_Core"
    echo "MpiDefault=none"
    echo "StateSaveLocation=$s/state"
    echo "SlurmdSpoolDir=$s/spool/%n"
    echo "TmpFS=$s/tmp/%n"
    echo "SlurmctldPidFile=$s/slurmctld.pid"
    echo "SlurmdPidFile=$s/slurmd-%n.pid"
    echo "SlurmctldLogFile=$s/log/slurmctld.log"
    echo "SlurmdLogFile=$s/log/slurmd-%n.log"
    echo "MailProg=/bin/true"
    echo "SchedulerParameters=sched_interval=2"
    echo "JobRequeue=1"
    echo "MinJobAge=600"
    echo "ReturnToService=2"
    for i in $(seq 2 "$n"); do
      echo "NodeName=n$i NodeAddr=$(address "$i") CPUs=2 RealMemory=2000 State=UNKNOWN"
    done
    # Preemption: a job of the higher-tier partition "urgent" requeues jobs of "main" in its way,
    # after sending the batch shell its --signal warning (preempt_send_user_signal) and GraceTime.
    echo "PreemptType=preempt/partition_prio"
    echo "PreemptMode=REQUEUE"
    echo "SlurmctldParameters=preempt_send_user_signal"
    nodes=$(seq -s, -f 'n%g' 2 "$n")
    echo "PartitionName=main Nodes=$nodes Default=YES MaxTime=INFINITE State=UP PriorityTier=1 GraceTime=60"
    echo "PartitionName=urgent Nodes=$nodes MaxTime=INFINITE State=UP PriorityTier=10 PreemptMode=OFF"
  } > "$s/slurm.conf"
  export SLURM_CONF="$s/slurm.conf"
  bash "$hosts" run "$dir" 1 slurmctld -f "$SLURM_CONF" </dev/null >/dev/null 2>&1
  ns_prefix=$(ip netns list | awk '{ print $1 }' | grep -- '-h1$' | head -1 | sed 's/-h1$//')
  for i in $(seq 2 "$n"); do
    # nsenter, not `ip netns exec`: the latter remounts /sys, and slurmd 22.05 then dies.
    nsenter --net="/run/netns/$ns_prefix-h$i" unshare --uts bash -c "hostname n$i; exec slurmd -f '$SLURM_CONF' -N n$i" \
      </dev/null >/dev/null 2>&1
  done
  for _ in $(seq 150); do
    idle=$(bash "$hosts" run "$dir" 1 sinfo -h -N -o '%T' 2>/dev/null | grep -c '^idle' || true)
    [ "$idle" -ge $((n - 1)) ] && break
    sleep 0.2
  done
  [ "$idle" -ge $((n - 1)) ] || { echo "slurm.sh: nodes not idle:"; bash "$hosts" run "$dir" 1 sinfo -N; tail -5 "$s"/log/*.log; exit 1; } >&2
  ;;
run)
  shift 2
  export SLURM_CONF="$dir/slurm/slurm.conf"
  exec bash "$hosts" run "$dir" 1 "$@"
  ;;
down)
  s="$dir/slurm"
  for f in "$s"/slurmd-*.pid "$s/slurmctld.pid" "$s/munge/pid"; do
    [ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null || true
  done
  bash "$hosts" down "$dir"
  ;;
*)
  echo "slurm.sh: unknown command $cmd" >&2; exit 2 ;;
esac
