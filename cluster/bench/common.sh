# Sourced by the comparison scripts in this folder: the settings they share and `tag`.
# Env: AEDIST (binary: .build/release/aedist), PY (python with torch: python3), DATA (mnist.h5),
#      PEER (the PyTorch peer: cluster/bench/torch_peer.py). OUT must be set before sourcing.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
AEDIST=${AEDIST:-$here/.build/release/aedist}
PY=${PY:-python3}
DATA=${DATA:?set DATA=/path/to/mnist.h5}
PEER=${PEER:-$here/cluster/bench/torch_peer.py}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
: > "$OUT"
# tag SETTING: appends each JSON line of standard input to OUT, with "setting": SETTING.
tag() { python3 -c 'import json,sys; t=sys.argv[1]
for l in sys.stdin:
    l=l.strip()
    if l.startswith("{"): d=json.loads(l); d["setting"]=t; print(json.dumps(d))' "$1" >> "$OUT"; }
