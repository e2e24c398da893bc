#!/usr/bin/env bash
# Emulated hosts on one machine, for the multi-host tests: network namespaces joined by veth pairs
# to a bridge, each host with its own hostname (UTS namespace) and temporary directory, and an
# rsh agent through which Open MPI starts its daemons on them (TCP only). Needs root and iproute2.
#
#   hosts.sh up DIR N        create hosts 1..N; writes DIR/hostfile, DIR/agent, DIR/env
#   hosts.sh run DIR I CMD…  run CMD on host I (its network, hostname and TMPDIR)
#   hosts.sh link DIR I up|down
#   hosts.sh impair DIR I loss PERCENT   drop PERCENT % of the packets leaving and entering host I
#   hosts.sh impair DIR I delay MS       hold every packet leaving host I for MS milliseconds
#   hosts.sh impair DIR I dropped        packets dropped so far by the loss rules
#   hosts.sh impair DIR I clear
#     (the kernel has no netem: loss is an nftables rule with `numgen random`, delay an NFQUEUE
#     program, Tests/testbed/delay.c, built here; installs nftables, iptables, libnetfilter-queue-dev)
#   hosts.sh down DIR        remove everything `up` made (safe to repeat)
#
# Host I is named aedist-<tag>-hI with address 10.<a>.<b>.I/24, <tag>, <a>, <b> derived from DIR, so
# that test beds of different directories do not collide.
set -euo pipefail
cmd=${1:?usage: hosts.sh up|run|link|down DIR ...}
dir=${2:?DIR}
tag=$(printf '%s' "$dir" | cksum | awk '{ print $1 % 1000000 }')
a=$(( 100 + tag % 100 )); b=$(( tag / 100 % 250 ))
prefix="aedist-$tag"
bridge_ns="$prefix-br"

host_ns() { echo "$prefix-h$1"; }
host_ip() { echo "10.$a.$b.$1"; }

case "$cmd" in
up)
  n=${3:?N}
  mkdir -p "$dir"
  echo "$n" > "$dir/count"
  ip netns add "$bridge_ns"
  ip -n "$bridge_ns" link add br0 type bridge
  ip -n "$bridge_ns" link set br0 up
  : > "$dir/hostfile"
  for i in $(seq "$n"); do
    ns=$(host_ns "$i")
    ip netns add "$ns"
    ip link add "v$tag-$i" type veth peer name eth0 netns "$ns"
    ip link set "v$tag-$i" netns "$bridge_ns"
    ip -n "$bridge_ns" link set "v$tag-$i" master br0 up
    ip -n "$ns" addr add "$(host_ip "$i")/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set lo up
    mkdir -p "$dir/h$i/tmp"
    echo "$(host_ip "$i") slots=8" >> "$dir/hostfile"
  done
  # Wait until every bridge port forwards (there is no ping here).
  for _ in $(seq 100); do
    if ! ip -n "$bridge_ns" -d link show master br0 | grep -q "state \(listening\|learning\|blocking\|disabled\)"; then break; fi
    sleep 0.05
  done
  # The agent Open MPI runs instead of ssh: `agent HOST COMMAND...` runs COMMAND on that host.
  cat > "$dir/agent" <<AGENT
#!/usr/bin/env bash
host=\$1; shift
i=\${host##*.}
exec ip netns exec $prefix-h\$i unshare --uts env TMPDIR=$dir/h\$i/tmp bash -c 'hostname $prefix-h'\$i'; eval "\$0 \$*"' "\$@"
AGENT
  chmod +x "$dir/agent"
  # Open MPI over the bridge only: TCP, daemons through the agent, keepalive on the daemons' link.
  subnet="10.$a.$b.0/24"
  cat > "$dir/env" <<ENV
export OMPI_MCA_plm_rsh_agent=$dir/agent
export OMPI_MCA_pml=ob1 OMPI_MCA_btl=tcp,self
export OMPI_MCA_btl_tcp_if_include=$subnet OMPI_MCA_oob_tcp_if_include=$subnet
export OMPI_MCA_mpi_yield_when_idle=1
ENV
  ;;
run)
  i=${3:?I}; shift 3
  ns=$(host_ns "$i")
  exec ip netns exec "$ns" unshare --uts env TMPDIR="$dir/h$i/tmp" bash -c "hostname $prefix-h$i; exec \"\$@\"" bash "$@"
  ;;
link)
  i=${3:?I}; state=${4:?up|down}
  ip -n "$(host_ns "$i")" link set eth0 "$state"
  ;;
impair)
  i=${3:?I}; kind=${4:?loss|delay|clear}; value=${5:-0}
  ns=$(host_ns "$i")
  missing=""
  for p in nftables iptables libnetfilter-queue-dev; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
  if [ -n "$missing" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null 2>&1 \
      || { apt-get update -qq >/dev/null 2>&1; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null; }
  fi
  case "$kind" in
  loss)
    per_mille=$(awk -v p="$value" 'BEGIN { printf "%d", p * 10 }')
    ip netns exec "$ns" nft -f - <<NFT
table inet aedist_impair {
  chain out { type filter hook output priority 0; oifname "eth0" numgen random mod 1000 < $per_mille counter drop; }
  chain in { type filter hook input priority 0; iifname "eth0" numgen random mod 1000 < $per_mille counter drop; }
}
NFT
    ;;
  delay)
    here="$(cd "$(dirname "$0")" && pwd)"
    [ -x "$dir/delay" ] || cc -O2 -o "$dir/delay" "$here/delay.c" -lnetfilter_queue
    ip netns exec "$ns" iptables -A OUTPUT -o eth0 -j NFQUEUE --queue-num 0 --queue-bypass
    ip netns exec "$ns" "$dir/delay" "$value" </dev/null >"$dir/delay-h$i.log" 2>&1 &
    echo $! > "$dir/delay-h$i.pid"
    ;;
  dropped)   # packets the loss rules dropped so far
    ip netns exec "$ns" nft list table inet aedist_impair | awk '/counter packets/ { for (f = 1; f < NF; f++) if ($f == "packets") n += $(f + 1) } END { print n + 0 }'
    ;;
  clear)
    ip netns exec "$ns" nft delete table inet aedist_impair 2>/dev/null || true
    ip netns exec "$ns" iptables -F OUTPUT 2>/dev/null || true
    if [ -f "$dir/delay-h$i.pid" ]; then kill "$(cat "$dir/delay-h$i.pid")" 2>/dev/null || true; rm -f "$dir/delay-h$i.pid"; fi
    ;;
  esac
  ;;
down)
  n=$(cat "$dir/count" 2>/dev/null || echo 0)
  for i in $(seq "$n"); do
    ns=$(host_ns "$i")
    # Processes still running on the host would keep its namespace alive.
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  done
  ip netns del "$bridge_ns" 2>/dev/null || true
  rm -f "$dir/count"
  ;;
*)
  echo "hosts.sh: unknown command $cmd" >&2; exit 2 ;;
esac
