#!/usr/bin/env bash
# A throwaway single-node Slurm cluster for the cluster tests, with four fake GPUs as GRES.
#   local_slurm.sh start DIR   install slurm-wlm and munge if missing, start munged (unless one
#                              answers), slurmctld and slurmd with their config and state in DIR;
#                              prints the SLURM_CONF to export
#   local_slurm.sh stop DIR    stop the daemons this script started (by the pids in DIR)
# NODE_CPUS (default 8) is the CPU count the node declares: more than the machine has lets several
# 2-thread jobs overlap, which the concurrency tests need; a benchmark declares the real count, so
# that Slurm, like on a real cluster, never puts more threads on the node than it has cores.
# Needs root (Debian's packages, device files, daemons). Facts behind the settings:
# ../shared/notes/slurm-local.md.
set -euo pipefail
# the daemons live in sbin, which a minimal environment's PATH (env -i, some CI runners) lacks
export PATH="$PATH:/usr/sbin:/sbin"
action=${1:?start or stop}
dir=$(realpath -m "${2:?state directory}")
host=$(hostname -s)
node_cpus=${NODE_CPUS:-8}

stop() {
  for daemon in slurmd slurmctld munged; do
    pidfile="$dir/$daemon.pid"
    [ -s "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
    rm -f "$pidfile"
  done
  for file in slurm.conf gres.conf; do  # the links link_config made, and only those
    [ "$(readlink "/etc/slurm/$file")" = "$dir/$file" ] && rm -f "/etc/slurm/$file"
  done
  return 0
}

# Jobs' own srun calls (the executor plugin's job steps) read /etc/slurm/slurm.conf: Slurm does not
# pass SLURM_CONF on to a job. Link ours there, unless the machine has a Slurm config of its own.
link_config() {
  mkdir -p /etc/slurm
  for file in slurm.conf gres.conf; do
    if [ -e "/etc/slurm/$file" ] && [ "$(readlink "/etc/slurm/$file")" != "$dir/$file" ]; then
      echo "/etc/slurm/$file exists: this machine has a Slurm of its own; not replacing it" >&2
      exit 1
    fi
    ln -sfn "$dir/$file" "/etc/slurm/$file"
  done
}

install_packages() {
  command -v slurmctld >/dev/null && command -v munged >/dev/null && return
  # keep apt from starting the packages' services: this script starts its own
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' RETURN
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
}

start_munge() {
  munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && return  # one already answers
  if [ ! -s /etc/munge/munge.key ]; then
    mungekey --create --keyfile /etc/munge/munge.key
    chown munge:munge /etc/munge/munge.key
    chmod 400 /etc/munge/munge.key
  fi
  mkdir -p /run/munge && chown munge:munge /run/munge
  su -s /bin/sh munge -c "munged --pid-file=/run/munge/cifar-repro-munged.pid"
  cp /run/munge/cifar-repro-munged.pid "$dir/munged.pid"  # ours to stop
  for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && return; sleep 0.1; done
  echo "munged does not answer" >&2
  exit 1
}

write_config() {
  mkdir -p "$dir/state" "$dir/spool" "$dir/log"
  for gpu in 0 1 2 3; do
    [ -e "/dev/fakegpu$gpu" ] || mknod "/dev/fakegpu$gpu" c 1 3
  done
  cat > "$dir/slurm.conf" <<CONF
ClusterName=cifar-repro-test
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
GresTypes=gpu
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MinJobAge=3600
EnforcePartLimits=ALL
DefMemPerCPU=1000
MailProg=/bin/true
ReturnToService=2
# the node may declare more CPUs than it has (NODE_CPUS): take the config, not the hardware
SlurmdParameters=config_overrides
NodeName=$host NodeAddr=127.0.0.1 CPUs=$node_cpus RealMemory=20000 Gres=gpu:4 State=UNKNOWN
PartitionName=gpu Nodes=$host Default=YES MaxTime=INFINITE State=UP
# a partition whose jobs end after a minute: runs longer than that span several jobs (test_cluster)
PartitionName=short Nodes=$host MaxTime=1 State=UP
CONF
  echo "NodeName=$host Name=gpu File=/dev/fakegpu[0-3]" > "$dir/gres.conf"
}

start() {
  install_packages
  mkdir -p "$dir"
  stop
  start_munge
  write_config
  link_config
  export SLURM_CONF="$dir/slurm.conf"
  slurmctld -c -f "$SLURM_CONF"
  slurmd -f "$SLURM_CONF"
  for _ in $(seq 100); do
    if sinfo -h -o %T 2>/dev/null | grep -qx idle; then
      echo "SLURM_CONF=$SLURM_CONF"
      return
    fi
    sleep 0.2
  done
  echo "the local Slurm node did not come up; see $dir/log" >&2
  exit 1
}

case "$action" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
