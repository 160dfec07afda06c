#!/usr/bin/env bash
# A local demo node: the EC2 + IMDS emulator, a node network namespace whose ENIs the
# emulator hot-plugs, ipamd (aws-k8s-agent) inside it, and pods created through the real
# aws-cni binary. Prints the pods' IPs, shows pod-to-pod and pod-to-node traffic, the
# metrics and the /v1/enis summary, then tears everything down.
#
#   bash scripts/demo-node.sh            # run and tear down
#   bash scripts/demo-node.sh --keep     # leave the node running and print how to reach it
#   bash scripts/demo-node.sh --teardown # remove a kept node (IPv4 or IPv6)
#   DEMO_PROFILE=release bash scripts/demo-node.sh   # release binaries (default: debug)
#   DEMO_STATE_TMPFS=0 bash scripts/demo-node.sh     # state (checkpoint, socket, logs) on the
#                                        # disk instead of a tmpfs (default 1: an EKS node's
#                                        # /var/run/aws-node is on a tmpfs; this VM's /run is not)
#   bash scripts/demo-node.sh --ipv6 [--keep]
#                                        # the same in IPv6 mode: pods get /128s from the
#                                        # primary ENI's /80 and reach the IPv4 outside host
#                                        # through egress-cni (scripts/demo-node-ipv6.sh)
#
# Needs root (network namespaces). Nothing is changed in the root namespace: every link,
# route, rule and firewall rule lives in the demo's own namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."

NODE=vpccni-demo-node
OUTSIDE=vpccni-demo-outside
PODS=(vpccni-demo-pod0 vpccni-demo-pod1 vpccni-demo-pod2)
STATE=/run/vpc-cni-demo
EC2_PORT=18080
IMDS_PORT=18081

teardown() {
  set +e
  if [ -d "$STATE" ]; then
    for i in "${!PODS[@]}"; do
      [ -e "/var/run/netns/${PODS[$i]}" ] || continue
      if [ -e "$STATE/ipv6" ]; then v6_del_pod "$i"; else cni "DEL" "$i"; fi >/dev/null 2>&1
    done
    for pid in agent emulator; do
      [ -f "$STATE/$pid.pid" ] && kill "$(cat "$STATE/$pid.pid")" 2>/dev/null
    done
    sleep 0.5
  fi
  for ns in "${PODS[@]}" "$NODE" "$OUTSIDE"; do
    ip netns del "$ns" 2>/dev/null
  done
  mountpoint -q "$STATE" && umount -l "$STATE"
  rm -rf "$STATE"
  set -e
}

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/vpc-cni-rs/target}"
# DEMO_PROFILE=release runs release binaries (scripts/bench-cni.sh does, for the figures).
DEMO_PROFILE="${DEMO_PROFILE:-debug}"
case "$DEMO_PROFILE" in
  debug) PROFILE_FLAG=() ;;
  release) PROFILE_FLAG=(--release) ;;
  *) echo "DEMO_PROFILE must be debug or release, not $DEMO_PROFILE" >&2; exit 2 ;;
esac
BIN="$CARGO_TARGET_DIR/$DEMO_PROFILE"

in_node() { ip netns exec "$NODE" "$@"; }

cni() { # cni ADD|DEL <pod index>
  local cmd=$1 i=$2
  echo '{"cniVersion":"1.0.0","name":"aws-cni","type":"aws-cni","vethPrefix":"eni","mtu":"9001"}' |
    in_node env CNI_COMMAND="$cmd" CNI_CONTAINERID="demo-container-$i" CNI_IFNAME=eth0 \
      CNI_NETNS="/var/run/netns/${PODS[$i]}" CNI_ARGS="K8S_POD_NAMESPACE=default;K8S_POD_NAME=demo-$i" \
      IPAMD_GRPC_SOCKET="$STATE/ipamd.sock" "$BIN/aws-cni"
}

source scripts/demo-node-ipv6.sh

KEEP=false
IPV6=false
for arg in "$@"; do
  case "$arg" in
    --teardown) teardown; echo "demo node removed"; exit 0 ;;
    --keep) KEEP=true ;;
    --ipv6) IPV6=true ;;
    *) echo "usage: $0 [--ipv6] [--keep] | --teardown" >&2; exit 2 ;;
  esac
done
FAMILY_ENV=(ENABLE_IPv4=true)
EMULATOR_FLAGS=()
PACKAGES=(-p ec2-emulator -p ipamd -p cni)
if $IPV6; then
  FAMILY_ENV=("${V6_AGENT_ENV[@]}")
  EMULATOR_FLAGS=(--ipv6)
  PACKAGES+=(-p egress-cni)
fi

[ "$(id -u)" -eq 0 ] || { echo "run as root (network namespaces)" >&2; exit 1; }
bash scripts/install-deps.sh
echo "== building"
cargo build -q "${PROFILE_FLAG[@]}" "${PACKAGES[@]}" --bins

teardown
$KEEP || trap teardown EXIT
mkdir -p "$STATE"
# The checkpoint on a tmpfs, as on an EKS node (/var/run is one there): on a disk every ADD
# also waits for an fdatasync (docs/benchmarks.md shows both).
if [ "${DEMO_STATE_TMPFS:-1}" = 1 ]; then mount -t tmpfs -o size=64m,mode=0755 tmpfs "$STATE"; fi
if $IPV6; then touch "$STATE/ipv6"; fi

echo "== node namespace and the EC2 + IMDS emulator"
ip netns add "$NODE"
ip netns add "$OUTSIDE"
in_node ip link set lo up
in_node sysctl -qw net.ipv4.ip_forward=1
ip netns exec "$NODE" "$BIN/ec2-emulator" --listen "127.0.0.1:$EC2_PORT" --imds-listen "127.0.0.1:$IMDS_PORT" \
  --instance-type m5.large --subnet-cidr 10.0.0.0/24 --node-netns "$NODE" "${EMULATOR_FLAGS[@]}" \
  >"$STATE/emulator.json" 2>"$STATE/emulator.log" &
echo $! >"$STATE/emulator.pid"
for _ in $(seq 100); do [ -s "$STATE/emulator.json" ] && break; sleep 0.1; done
read -r MAC IP INSTANCE < <(python3 -c '
import json,sys; d=json.load(open(sys.argv[1])); i=d["instances"][0]
print(i["primary_mac"], i["primary_ip"], i["instance_id"])' "$STATE/emulator.json")
echo "instance $INSTANCE (m5.large), primary ENI $MAC $IP"

# The primary interface, as the instance boots with it: a veth to an "outside" host.
ip link add eth0 netns "$NODE" address "$MAC" type veth peer name gw0 netns "$OUTSIDE"
in_node ip addr add "$IP/24" dev eth0
in_node ip link set eth0 up
ip -n "$OUTSIDE" addr add 10.0.0.1/24 dev gw0
ip -n "$OUTSIDE" link set gw0 up
ip -n "$OUTSIDE" link set lo up
in_node ip route add default via 10.0.0.1
if $IPV6; then v6_node_addresses; fi

echo "== ipamd (aws-k8s-agent) in the node namespace"
ip netns exec "$NODE" env AWS_EC2_ENDPOINT="http://127.0.0.1:$EC2_PORT" \
  AWS_VPC_K8S_CNI_LOG_FILE=stderr AWS_EC2_METADATA_SERVICE_ENDPOINT="http://127.0.0.1:$IMDS_PORT" \
  AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo \
  IPAMD_GRPC_SOCKET="$STATE/ipamd.sock" AWS_VPC_K8S_CNI_BACKING_STORE="$STATE/ipam.json" \
  METRICS_BIND_ADDRESS=127.0.0.1:61678 CLUSTER_NAME=demo "${FAMILY_ENV[@]}" \
  "$BIN/aws-k8s-agent" >"$STATE/agent.log" 2>&1 &   # not the caller's stdout (--keep)
echo $! >"$STATE/agent.pid"
for _ in $(seq 100); do [ -S "$STATE/ipamd.sock" ] && break; sleep 0.1; done
[ -S "$STATE/ipamd.sock" ] || { echo "ipamd did not start:"; cat "$STATE/agent.log"; exit 1; }

echo "== pods through the real aws-cni"
declare -a POD_IPS
for i in "${!PODS[@]}"; do
  ip netns add "${PODS[$i]}"
  ip -n "${PODS[$i]}" link set lo up
  out=""
  for _ in $(seq 50); do
    if $IPV6; then
      if v6_add_pod "$i"; then out=$(cat "$STATE/pod$i.result"); break; fi
    elif out=$(cni ADD "$i"); then break; fi
    sleep 0.2   # the warm pool is filling; kubelet would retry too
  done
  POD_IPS[$i]=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["ips"][0]["address"].split("/")[0])' "$out")
  if $IPV6; then v6_pod_line "$i"; else echo "pod demo-$i: ${POD_IPS[$i]}"; fi
done

echo "== traffic"
if $IPV6; then v6_traffic; else
ip netns exec "${PODS[1]}" python3 -c '
import socket; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)
s.bind(("0.0.0.0",7777)); s.listen(1); c,a=s.accept(); c.sendall(b"hello from demo-1 to "+a[0].encode()); c.close()' &
sleep 0.3
echo -n "demo-0 -> demo-1: "
ip netns exec "${PODS[0]}" python3 -c '
import socket,sys; s=socket.create_connection((sys.argv[1],7777),timeout=3); print(s.recv(64).decode())' "${POD_IPS[1]}"
in_node python3 -c '
import socket; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)
s.bind(("0.0.0.0",7778)); s.listen(1); c,a=s.accept(); c.sendall(b"hello from the node to "+a[0].encode()); c.close()' &
sleep 0.3
echo -n "demo-2 -> node $IP: "
ip netns exec "${PODS[2]}" python3 -c '
import socket,sys; s=socket.create_connection((sys.argv[1],7778),timeout=3); print(s.recv(64).decode())' "$IP"
fi

echo "== metrics (127.0.0.1:61678 in the node namespace)"
in_node python3 -c '
import urllib.request
for l in urllib.request.urlopen("http://127.0.0.1:61678/metrics").read().decode().splitlines():
    if l.startswith(("awscni_eni_allocated","awscni_total_ip_addresses","awscni_assigned_ip_addresses","awscni_add_ip_req_count","awscni_eni_max","awscni_ip_max")): print(" ", l)'

echo "== /v1/enis (127.0.0.1:61679 in the node namespace)"
if $IPV6; then v6_introspection; else
in_node python3 -c '
import json,urllib.request
d=json.load(urllib.request.urlopen("http://127.0.0.1:61679/v1/enis"))
for card,info in d.items():
    print("  card %s: %d IPs, %d assigned" % (card, info["TotalIPs"], info["AssignedIPs"]))
    for eni in info["ENIs"].values():
        print("    %s device %d table %d: %d CIDRs" % (eni["ID"], eni["DeviceNumber"], eni["RouteTableID"], len(eni["AvailableIPv4Cidrs"])))'
fi

if $KEEP; then
  cat <<EOF

The demo node is running.
  node network namespace: $NODE   (ip netns exec $NODE bash)
  pods:                   ${PODS[*]}
  gRPC socket:            $STATE/ipamd.sock
  metrics:                ip netns exec $NODE curl -s 127.0.0.1:61678/metrics
  introspection:          ip netns exec $NODE curl -s 127.0.0.1:61679/v1/enis
  EC2 emulator:           http://127.0.0.1:$EC2_PORT (control API /control/state) inside $NODE
  logs:                   $STATE/agent.log, $STATE/emulator.log$($IPV6 && echo ", $STATE/egress-v4-plugin.log")
Tear it down with: bash scripts/demo-node.sh --teardown
EOF
else
  echo "== teardown"
fi
