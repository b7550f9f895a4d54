#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for testing `s2rm grid --slurm` for real (CI does).
#
#   scripts/slurm-localhost.sh start DIR   # install slurm-wlm + munge if missing, write DIR/slurm.conf,
#                                          # start munged, slurmctld, slurmd; prints `export SLURM_CONF=...`
#   scripts/slurm-localhost.sh stop DIR    # stops the daemons this script started (their pid files in DIR)
#
# Tested on Debian 12 as root without systemd (slurm-wlm 22.05). Non-default ports, so that it
# does not meet a real cluster's daemons; every state, spool and log file under DIR.
set -euo pipefail
cmd="${1:?usage: $0 start|stop DIR}"
dir="$(mkdir -p "${2:?usage: $0 start|stop DIR}" && cd "$2" && pwd)"
conf="$dir/slurm.conf"

stop() {
  for d in slurmd slurmctld munged; do
    if [ -f "$dir/$d.pid" ]; then
      pid="$(cat "$dir/$d.pid")"
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      rm -f "$dir/$d.pid"
    fi
  done
}

if [ "$cmd" = stop ]; then stop; exit 0; fi
# A failure half-way through start stops what it started.
trap stop ERR
[ "$cmd" = start ] || { echo "usage: $0 start|stop DIR" >&2; exit 2; }

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null && apt-get install -y -qq slurm-wlm munge >/dev/null
fi
host="$(hostname -s)"
cpus="$(nproc)"; [ "$cpus" -gt 2 ] && cpus=2
mkdir -p "$dir/state" "$dir/spool" "$dir/munge"
cat > "$conf" <<EOF
ClusterName=s2rmtest
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$dir/munge/munge.socket.2
SlurmctldPort=16817
SlurmdPort=16818
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
MpiDefault=none
SwitchType=switch/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
MinJobAge=3600
NodeName=$host CPUs=$cpus State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF

# munged: its own socket, pid and log under DIR; the key the Debian package created.
munged --force --socket="$dir/munge/munge.socket.2" --pid-file="$dir/munged.pid" --log-file="$dir/munged.log" --seed-file="$dir/munge/seed"
slurmctld -f "$conf"
slurmd -f "$conf"
export SLURM_CONF="$conf"
for _ in $(seq 100); do
  if sinfo -h -o %t 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then
    echo "export SLURM_CONF=$conf"
    exit 0
  fi
  sleep 0.2
done
echo "error: the one-node Slurm did not come up in 20 s; see $dir/slurmctld.log and $dir/slurmd.log" >&2
stop
trap - ERR
exit 1
