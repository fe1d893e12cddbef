#!/usr/bin/env bash
# A single-node SLURM cluster with two fake GPUs, for `make test-slurm`.
#
#   scripts/slurm-test-cluster.sh start   # install (Debian packages) if needed, start munged, slurmctld, slurmd
#   scripts/slurm-test-cluster.sh stop    # stop every daemon this script started, by PID
#   scripts/slurm-test-cluster.sh env     # print the `export SLURM_CONF=...` line clients need
#   scripts/slurm-test-cluster.sh gres-only on|off   # refuse --gpus (accept only --gres=gpu:N), or not
#
# gres-only mode plays a site whose policy (a job_submit plugin, as real sites use) accepts GPUs
# only as `--gres=gpu:N`: a submission asking with `--gpus` is refused with a message saying so.
# The policy is a Lua job_submit script that reads a flag file, so switching needs no restart.
#
# Idempotent: `start` on a running cluster does nothing. Needs root (it installs packages and
# runs the daemons); it refuses clearly otherwise. Nothing is written outside $STATE except
# the Debian packages, munge's key and run directory, and /etc/slurm/slurm.conf: a link to
# $STATE's config while the cluster runs, because Snakemake's jobstep executor removes
# SLURM_CONF from the environment of the `srun` it starts inside a job (a real cluster's
# config lives there anyway); `stop` removes the link. Accounting is off, so `sacct` does
# not work: Snakemake's SLURM plugin must be told to use squeue for status
# (`--slurm-status-command squeue`), and MinJobAge keeps finished jobs visible to squeue.
set -euo pipefail

STATE=${INTERPSHARP_SLURM_STATE:-/tmp/interpsharp-slurm}
CONF=$STATE/slurm.conf
HOST=$(hostname -s)

die() { echo "slurm-test-cluster: $*" >&2; exit 1; }

require_root() {
    [ "$(id -u)" -eq 0 ] || die "must run as root (it installs slurm-wlm and munge and starts their daemons); on a real cluster use profiles/slurm directly"
}

install_packages() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null && command -v sbatch >/dev/null; then
        return
    fi
    command -v apt-get >/dev/null || die "slurmctld/slurmd/munged not found and no apt-get to install them (install slurm-wlm, slurm-client, munge)"
    echo "installing slurm-wlm, slurm-client, munge ..."
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm slurm-client munge >/dev/null
}

alive() { local pid; pid=$(cat "$1" 2>/dev/null) && [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; }

write_config() {
    local cpus mem_mb
    cpus=$(nproc)
    mem_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
    mkdir -p "$STATE/ctld" "$STATE/spool" "$STATE/dev"
    for i in 0 1; do
        # Fake GPU devices: character devices like /dev/null; SLURM only needs them to exist.
        [ -e "$STATE/dev/fakegpu$i" ] || mknod "$STATE/dev/fakegpu$i" c 1 3
    done
    cat > "$CONF" <<CONF
ClusterName=interpsharp-test
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
SchedulerType=sched/backfill
ReturnToService=2
MinJobAge=3600
DefMemPerCPU=1024
JobSubmitPlugins=lua
GresTypes=gpu
NodeName=$HOST CPUs=$cpus RealMemory=$mem_mb Gres=gpu:fake:2 State=UNKNOWN
# The partition names profiles/slurm uses, so the test submits with the real profile's
# partitions: CPU rules go to cpu, GPU rules to gpu (both on the one node).
PartitionName=cpu Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$HOST Default=NO MaxTime=INFINITE State=UP
CONF
    cat > "$STATE/gres.conf" <<CONF
NodeName=$HOST Name=gpu Type=fake File=$STATE/dev/fakegpu0
NodeName=$HOST Name=gpu Type=fake File=$STATE/dev/fakegpu1
CONF
    # slurmctld reads job_submit.lua beside slurm.conf. --gpus=N arrives as tres_per_job,
    # --gres=gpu:N as tres_per_node.
    cat > "$STATE/job_submit.lua" <<LUA
function slurm_job_submit(job_desc, part_list, submit_uid)
   local flag = io.open("$STATE/gres-only", "r")
   if flag == nil then return slurm.SUCCESS end
   flag:close()
   if job_desc.tres_per_job ~= nil and string.find(job_desc.tres_per_job, "gpu") then
      slurm.log_user("this cluster accepts GPUs only as --gres=gpu:N, not --gpus (tres_per_job=%s)", job_desc.tres_per_job)
      return slurm.ERROR
   end
   return slurm.SUCCESS
end

function slurm_job_modify(job_desc, job_rec, part_list, modify_uid)
   return slurm.SUCCESS
end
LUA
    rm -f "$STATE/gres-only"  # a fresh cluster accepts both
}

gres_only() {
    case "${1:-}" in
        on) touch "$STATE/gres-only"; echo "gres-only: --gpus is refused, --gres=gpu:N accepted" ;;
        off) rm -f "$STATE/gres-only"; echo "gres-only off: --gpus and --gres accepted" ;;
        *) die "usage: $0 gres-only on|off" ;;
    esac
}

SYSTEM_CONF=/etc/slurm/slurm.conf

link_system_conf() {
    if [ -L "$SYSTEM_CONF" ] && [ "$(readlink "$SYSTEM_CONF")" = "$CONF" ]; then return; fi
    [ -e "$SYSTEM_CONF" ] && die "$SYSTEM_CONF exists and is not this test cluster's; refusing to shadow a real SLURM configuration"
    mkdir -p "$(dirname "$SYSTEM_CONF")"
    ln -s "$CONF" "$SYSTEM_CONF"
}

unlink_system_conf() {
    if [ -L "$SYSTEM_CONF" ] && [ "$(readlink "$SYSTEM_CONF")" = "$CONF" ]; then rm -f "$SYSTEM_CONF"; fi
}

start_munge() {
    if alive "$STATE/munged.pid"; then return; fi
    mkdir -p /run/munge /var/log/munge /var/lib/munge /etc/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    if [ ! -s /etc/munge/munge.key ]; then
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    fi
    chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
    rm -f /run/munge/munged.pid
    runuser -u munge -- /usr/sbin/munged --force
    # munged writes its pid file as the munge user under /run/munge; keep our own copy.
    for _ in $(seq 50); do [ -s /run/munge/munged.pid ] && break; sleep 0.1; done
    [ -s /run/munge/munged.pid ] || die "munged did not start; see /var/log/munge/munged.log"
    cp /run/munge/munged.pid "$STATE/munged.pid"
}

start() {
    require_root
    install_packages
    if alive "$STATE/slurmctld.pid" && alive "$STATE/slurmd.pid"; then
        echo "cluster already running (state in $STATE)"
        return
    fi
    mkdir -p "$STATE"
    write_config
    link_system_conf
    start_munge
    alive "$STATE/slurmctld.pid" || slurmctld -f "$CONF" -c
    alive "$STATE/slurmd.pid" || slurmd -f "$CONF"
    export SLURM_CONF=$CONF
    for _ in $(seq 60); do
        if sinfo -h -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
            echo "cluster up: $(sinfo -h -o '%P %D %T %G')"
            return
        fi
        sleep 0.5
    done
    stop >/dev/null
    die "the node did not become idle within 30 s (daemons stopped again); see $STATE/slurmctld.log and $STATE/slurmd.log"
}

stop() {
    local name pidfile pid
    if alive "$STATE/slurmctld.pid"; then
        # Cancel what is still queued or running so no job step outlives its slurmd.
        SLURM_CONF=$CONF scancel --full --quiet --user="$(id -un)" 2>/dev/null || true
        for _ in $(seq 50); do
            [ -z "$(SLURM_CONF=$CONF squeue -h -t RUNNING,COMPLETING 2>/dev/null)" ] && break
            sleep 0.2
        done
    fi
    for name in slurmd slurmctld munged; do
        pidfile=$STATE/$name.pid
        if alive "$pidfile"; then
            # Wait on the process, not its pid file: daemons remove the file before they exit,
            # and a slurmd retrying to register can ignore SIGTERM.
            pid=$(cat "$pidfile")
            kill "$pid"
            for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid"; fi
            echo "stopped $name"
        fi
        rm -f "$pidfile"
    done
    rm -f "$STATE/gres-only"
    unlink_system_conf
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    env) echo "export SLURM_CONF=$CONF" ;;
    gres-only) gres_only "${2:-}" ;;
    *) echo "usage: $0 start|stop|env|gres-only on|off" >&2; exit 2 ;;
esac
