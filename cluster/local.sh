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
# Open MPI refuses to run as root without these; harmless otherwise.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
cores=$(nproc)
[ -n "$threads" ] || threads=$(( cores / np > 0 ? cores / np : 1 ))
flags=(--bind-to none)
[ "$np" -gt "$cores" ] && flags+=(--oversubscribe)
exec mpirun "${flags[@]}" -np "$np" "$bin" train --threads "$threads" "$@"
