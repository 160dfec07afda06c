#!/usr/bin/env bash
# Measures the memory of the aws-node container's long-running processes while they serve
# a node: the entrypoint (aws-vpc-cni) and the agent it starts (aws-k8s-agent), against the
# EC2 + IMDS emulator, with host networking in a node network namespace and N pods created
# through the real aws-cni binary (each in its own pod namespace). Prints VmRSS / VmHWM
# (peak) from /proc/<pid>/status idle, after N pods, and after deleting them.
#
#   bash scripts/measure-rss.sh              # 100 pods, debug binaries
#   PODS=200 bash scripts/measure-rss.sh
#   PROFILE=release bash scripts/measure-rss.sh   # builds the 4 binaries in release (slow)
#
# Needs root (network namespaces). Nothing is changed in the root namespace.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${PODS:-100}
PROFILE=${PROFILE:-debug}
INSTANCE_TYPE=${INSTANCE_TYPE:-m5.4xlarge}   # 8 ENIs x 30 IPv4: room for 234 pods
NODE=vpccni-rss-node
OUTSIDE=vpccni-rss-outside
POD_PREFIX=vpccni-rss-pod
STATE=/run/vpc-cni-rss
EC2_PORT=18180
IMDS_PORT=18181

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/vpc-cni-rs/target}"
BIN="$CARGO_TARGET_DIR/$PROFILE"

teardown() {
  set +e
  [ -f "$STATE/entrypoint.pid" ] && kill -TERM "$(cat "$STATE/entrypoint.pid")" 2>/dev/null
  sleep 1
  [ -f "$STATE/emulator.pid" ] && kill "$(cat "$STATE/emulator.pid")" 2>/dev/null
  for ns in $(ip netns list | awk '{print $1}' | grep -E "^($POD_PREFIX-[0-9]+|$NODE|$OUTSIDE)\$"); do
    ip netns del "$ns"
  done
  rm -rf "$STATE"
  set -e
}

[ "$(id -u)" -eq 0 ] || { echo "run as root (network namespaces)" >&2; exit 1; }
echo "== building ($PROFILE)"
flags=()
[ "$PROFILE" = release ] && flags+=(--release)
cargo build -q "${flags[@]}" -p ec2-emulator -p ipamd -p cni -p egress-cni -p entrypoint --bins

teardown
trap teardown EXIT
mkdir -p "$STATE/app" "$STATE/host/bin" "$STATE/host/net.d" "$STATE/run"
for b in aws-k8s-agent aws-cni egress-cni; do ln -s "$BIN/$b" "$STATE/app/$b"; done

in_node() { ip netns exec "$NODE" "$@"; }

ip netns add "$NODE"
ip netns add "$OUTSIDE"
in_node ip link set lo up
in_node sysctl -qw net.ipv4.ip_forward=1
ip netns exec "$NODE" "$BIN/ec2-emulator" --listen "127.0.0.1:$EC2_PORT" --imds-listen "127.0.0.1:$IMDS_PORT" \
  --instance-type "$INSTANCE_TYPE" --subnet-cidr 10.0.0.0/22 --node-netns "$NODE" \
  >"$STATE/emulator.json" 2>"$STATE/emulator.log" &
echo $! >"$STATE/emulator.pid"
for _ in $(seq 100); do [ -s "$STATE/emulator.json" ] && break; sleep 0.1; done
read -r MAC IP < <(python3 -c '
import json,sys; i=json.load(open(sys.argv[1]))["instances"][0]; print(i["primary_mac"], i["primary_ip"])' "$STATE/emulator.json")
ip link add eth0 netns "$NODE" address "$MAC" type veth peer name gw0 netns "$OUTSIDE"
in_node ip addr add "$IP/22" dev eth0
in_node ip link set eth0 up
ip -n "$OUTSIDE" addr add 10.0.0.1/22 dev gw0
ip -n "$OUTSIDE" link set gw0 up
in_node ip route add default via 10.0.0.1

# The container's main process, as the DaemonSet runs it (chart defaults for the pool).
ip netns exec "$NODE" env -i PATH="$PATH" \
  AWS_EC2_ENDPOINT="http://127.0.0.1:$EC2_PORT" AWS_VPC_K8S_CNI_LOG_FILE=stderr AWS_EC2_METADATA_SERVICE_ENDPOINT="http://127.0.0.1:$IMDS_PORT" \
  AWS_ACCESS_KEY_ID=rss AWS_SECRET_ACCESS_KEY=rss ENABLE_IPv4=true WARM_ENI_TARGET=1 \
  IPAMD_GRPC_SOCKET="$STATE/run/ipamd.sock" AWS_VPC_K8S_CNI_BACKING_STORE="$STATE/run/ipam.json" \
  AWS_VPC_K8S_CNI_LOG_FILE=stderr METRICS_BIND_ADDRESS=127.0.0.1:61678 \
  VPC_CNI_APP_DIR="$STATE/app" HOST_CNI_BIN_PATH="$STATE/host/bin" HOST_CNI_CONFDIR_PATH="$STATE/host/net.d" \
  RUST_LOG=warn "$BIN/aws-vpc-cni" 2>"$STATE/entrypoint.log" &
EP=$!
echo $EP >"$STATE/entrypoint.pid"
for _ in $(seq 600); do [ -s "$STATE/host/net.d/10-aws.conflist" ] && break; sleep 0.1; done
[ -s "$STATE/host/net.d/10-aws.conflist" ] || { echo "not ready:"; cat "$STATE/entrypoint.log"; exit 1; }
AGENT=$(awk -v p="$EP" '$1=="PPid:" && $2==p {print FILENAME}' /proc/[0-9]*/status 2>/dev/null | cut -d/ -f3 | head -1)

mem() { # mem <label>
  local label=$1
  for what in "aws-vpc-cni:$EP" "aws-k8s-agent:$AGENT"; do
    local name=${what%%:*} pid=${what##*:}
    awk -v n="$name" -v l="$label" '/^VmRSS:/{r=$2} /^VmHWM:/{h=$2} END {printf "%-14s %-22s VmRSS %7.1f MiB   VmHWM %7.1f MiB\n", n, l, r/1024, h/1024}' "/proc/$pid/status"
  done
}

cni() { # cni ADD|DEL <i>
  echo '{"cniVersion":"1.0.0","name":"aws-cni","type":"aws-cni","vethPrefix":"eni","mtu":"9001"}' |
    in_node env CNI_COMMAND="$1" CNI_CONTAINERID="rss-container-$2" CNI_IFNAME=eth0 \
      CNI_NETNS="/var/run/netns/$POD_PREFIX-$2" CNI_ARGS="K8S_POD_NAMESPACE=default;K8S_POD_NAME=rss-$2" \
      IPAMD_GRPC_SOCKET="$STATE/run/ipamd.sock" "$STATE/host/bin/aws-cni"
}

sleep 6   # one pool-loop round: the warm ENI is attached
echo "== memory ($PROFILE binaries, $INSTANCE_TYPE)"
mem "ready, 0 pods"
start=$(date +%s.%N)
for i in $(seq 1 "$N"); do
  ip netns add "$POD_PREFIX-$i"
  ok=false
  for _ in $(seq 150); do
    if cni ADD "$i" >/dev/null 2>&1; then ok=true; break; fi
    sleep 0.2   # the pool is growing; kubelet retries too
  done
  $ok || { echo "pod $i: ADD kept failing"; cni ADD "$i" || true; exit 1; }
done
end=$(date +%s.%N)
mem "$N pods"
python3 -c 'import sys; print("%s pods added in %.1f s" % (sys.argv[1], float(sys.argv[3]) - float(sys.argv[2])))' "$N" "$start" "$end"
fails=0
for i in $(seq 1 "$N"); do cni DEL "$i" >/dev/null 2>&1 || fails=$((fails + 1)); ip netns del "$POD_PREFIX-$i"; done
mem "after deleting them"
echo "DEL failures: $fails"
in_node python3 -c '
import urllib.request
for l in urllib.request.urlopen("http://127.0.0.1:61678/metrics").read().decode().splitlines():
    if l.startswith(("awscni_assigned_ip_addresses", "awscni_total_ip_addresses", "awscni_eni_allocated")): print("metrics:", l)'
