#!/bin/bash
# aedist on PBS Pro / Torque: 2 nodes x 4 ranks x 4 threads, resumes automatically, and resubmits
# itself after a checkpoint when PBS signals the end of the walltime.
#   qsub -v CONFIG=configs/mnist-vae.yaml,EXTRA="--set data.path=/scratch/$USER/mnist.h5" cluster/pbs.sh
#PBS -N aedist
#PBS -l select=2:ncpus=16:mpiprocs=4:ompthreads=4
#PBS -l walltime=02:00:00
#PBS -r y
#PBS -j oe

set -uo pipefail
cd "${PBS_O_WORKDIR:-.}"
CONFIG=${CONFIG:?pass -v CONFIG=configs/FILE.yaml}
EXTRA=${EXTRA:-}
THREADS=${THREADS:-4}
# Site set-up, e.g.: module load openmpi/4.1 hdf5/1.10
# Where libhdf5 finds filter plugins (lzf, from Debian's hdf5-plugin-lzf); a path set by the site stays.
if [ -z "${HDF5_PLUGIN_PATH:-}" ]; then
  for d in /usr/lib/*-linux-gnu/hdf5/serial/plugins; do if [ -d "$d" ]; then export HDF5_PLUGIN_PATH="$d"; fi; done
fi
AEDIST=${AEDIST:-$PWD/.build/release/aedist}
np=$(wc -l < "$PBS_NODEFILE")
# PBS_NODEFILE names each host once per MPI rank (mpiprocs). Open MPI gives a host listed without
# `slots=` as many slots as it has cores, which would put every rank on the first host: count them.
hosts="${TMPDIR:-/tmp}/aedist-hosts-${PBS_JOBID:-$$}"
awk '{ if (!($1 in n)) order[++k] = $1; n[$1]++ } END { for (i = 1; i <= k; i++) print order[i], "slots=" n[order[i]] }' \
  "$PBS_NODEFILE" > "$hosts"

# PBS sends SIGTERM before it kills the job at the walltime (kill_delay later, SIGKILL). mpirun
# forwards SIGUSR1 to the ranks, which checkpoint and exit 75. The trap only sets a flag; the loop
# forwards it (handlers that run commands misbehave when two signals arrive back to back).
stop=0; forwarded=0
trap 'stop=1' TERM USR1
# The out-of-band keepalive bounds how long mpirun waits for a daemon behind a dead link (about
# 11 s instead of 8 minutes); aedist's own stall watchdog (train.stall_timeout) ends the ranks.
# shellcheck disable=SC2086
mpirun -np "$np" ${HDF5_PLUGIN_PATH:+-x HDF5_PLUGIN_PATH} \
  --mca oob_tcp_keepalive_time 5 --mca oob_tcp_keepalive_intvl 2 --mca oob_tcp_keepalive_probes 3 \
  --hostfile "$hosts" --map-by "slot:PE=$THREADS" --bind-to core \
  "$AEDIST" train --config "$CONFIG" --threads "$THREADS" $EXTRA &
launcher=$!
while :; do
  wait "$launcher"; status=$?
  if [ "$stop" = 1 ] && [ "$forwarded" = 0 ]; then kill -USR1 "$launcher" 2>/dev/null; forwarded=1; fi
  kill -0 "$launcher" 2>/dev/null || break
done

if [ "$status" -eq 75 ]; then
  echo "aedist: stopped with a checkpoint; resubmitting"
  qsub -v "CONFIG=$CONFIG,EXTRA=$EXTRA,THREADS=$THREADS" "$PBS_O_WORKDIR/cluster/pbs.sh"
fi
exit "$status"
