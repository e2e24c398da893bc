#!/usr/bin/env bash
# Local launcher: runs `aedist train` on NP ranks of this machine and resumes automatically from
# the run directory. Handles what Open MPI needs here: root flags, oversubscription, binding that
# lets each rank's threads use its share of the cores.
#   cluster/local.sh [-n NP] [-t THREADS] -- TRAIN-ARGS...
#   cluster/local.sh -n 2 -- --config configs/digits-vae.yaml
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
np=2; threads=""
while [ $# -gt 0 ]; do
  case "$1" in
    -n) np=$2; shift 2 ;;
    -t) threads=$2; shift 2 ;;
    --) shift; break ;;
    *) break ;;
  esac
done
bin="${AEDIST:-$here/../.build/release/aedist}"
[ -x "$bin" ] || bin="$(bash "$here/setup.sh" release)"
# Where libhdf5 finds filter plugins (lzf, from Debian's hdf5-plugin-lzf); a path set by the site stays.
if [ -z "${HDF5_PLUGIN_PATH:-}" ]; then
  for d in /usr/lib/*-linux-gnu/hdf5/serial/plugins; do if [ -d "$d" ]; then export HDF5_PLUGIN_PATH="$d"; fi; done
fi
# Open MPI refuses to run as root without these; harmless otherwise.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
cores=$(nproc)
[ -n "$threads" ] || threads=$(( cores / np > 0 ? cores / np : 1 ))
flags=(--bind-to none)
[ "$np" -gt "$cores" ] && flags+=(--oversubscribe)
# Ctrl-C or SIGTERM sent to mpirun makes it exit 1 and SIGKILL the ranks a second after its
# SIGTERM, possibly inside a checkpoint write. So mpirun runs in a session of its own (Ctrl-C does
# not reach it) and this script passes SIGINT and SIGTERM on as SIGUSR1, which mpirun forwards:
# every rank finishes its step, writes a checkpoint, and the job exits 75.
# The trap only sets a flag (handlers that run commands misbehave when two signals arrive back to
# back); `wait` returns early on a trapped signal, and the loop forwards it and waits again.
stop=0; forwarded=0
trap 'stop=1' INT TERM USR1
setsid mpirun "${flags[@]}" -np "$np" "$bin" train --threads "$threads" "$@" &
launcher=$!
while :; do
  status=0
  wait "$launcher" || status=$?
  if [ "$stop" = 1 ] && [ "$forwarded" = 0 ]; then kill -USR1 "$launcher" 2>/dev/null || true; forwarded=1; fi
  kill -0 "$launcher" 2>/dev/null || break
done
exit "$status"
