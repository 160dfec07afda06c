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
# Options for scripts/bench.sh (issue 16, part 5):
#   CONCURRENT=1  the pods are added all at once (a burst of aws-cni processes), deleted,
#                 and added at once again; prints the agent's CPU seconds over that churn
#   RESTART=1     with the pods in place, stops the container and execs aws-k8s-agent on the
#                 same checkpoint: prints the time from exec to gRPC SERVING
#   AGENT_ENV="K=V K=V"  extra environment of the agent (e.g. prefix delegation)
# Lines starting with RESULT are read by scripts/bench.sh.
#
# Needs root (network namespaces). Nothing is changed in the root namespace.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${PODS:-100}
PROFILE=${PROFILE:-debug}
CONCURRENT=${CONCURRENT:-0}
RESTART=${RESTART:-0}
read -r -a EXTRA_ENV <<<"${AGENT_ENV:-}"
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
cargo build -q "${flags[@]}" -p ec2-emulator -p ipamd -p cni -p egress-cni -p entrypoint -p health-probe --bins

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
CONTAINER_ENV=(PATH="$PATH"
  AWS_EC2_ENDPOINT="http://127.0.0.1:$EC2_PORT" AWS_VPC_K8S_CNI_LOG_FILE=stderr
  AWS_EC2_METADATA_SERVICE_ENDPOINT="http://127.0.0.1:$IMDS_PORT"
  AWS_ACCESS_KEY_ID=rss AWS_SECRET_ACCESS_KEY=rss ENABLE_IPv4=true WARM_ENI_TARGET=1
  IPAMD_GRPC_SOCKET="$STATE/run/ipamd.sock" AWS_VPC_K8S_CNI_BACKING_STORE="$STATE/run/ipam.json"
  METRICS_BIND_ADDRESS=127.0.0.1:61678
  VPC_CNI_APP_DIR="$STATE/app" HOST_CNI_BIN_PATH="$STATE/host/bin" HOST_CNI_CONFDIR_PATH="$STATE/host/net.d"
  RUST_LOG=warn "${EXTRA_ENV[@]}")
ip netns exec "$NODE" env -i "${CONTAINER_ENV[@]}" "$BIN/aws-vpc-cni" 2>"$STATE/entrypoint.log" &
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
echo "== memory ($PROFILE binaries, $INSTANCE_TYPE${AGENT_ENV:+, $AGENT_ENV})"
mem "ready, 0 pods"
mem_result() { # mem_result <label> <pid>
  awk -v l="$1" '/^VmRSS:/{r=$2} /^VmHWM:/{h=$2} END {printf "RESULT rss when=%s rss_mib=%.2f hwm_mib=%.2f\n", l, r/1024, h/1024}' "/proc/$2/status"
}
mem_result idle "$AGENT"
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

add_pod() { # add_pod <i>: retried while the pool grows (kubelet retries too)
  for _ in $(seq 300); do
    if cni ADD "$1" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  return 1
}
add_all() { # add_all <label>
  local start end fails=0
  start=$(date +%s.%N)
  if [ "$CONCURRENT" = 1 ]; then
    local pids=()
    for i in $(seq 1 "$N"); do add_pod "$i" & pids+=($!); done
    for p in "${pids[@]}"; do wait "$p" || fails=$((fails + 1)); done
  else
    for i in $(seq 1 "$N"); do add_pod "$i" || fails=$((fails + 1)); done
  fi
  end=$(date +%s.%N)
  python3 -c 'import sys; print("%s pods added in %.2f s (%s, %s failed)" % (sys.argv[1], float(sys.argv[3]) - float(sys.argv[2]), sys.argv[4], sys.argv[5]))' \
    "$N" "$start" "$end" "$1" "$fails"
}
del_all() {
  local fails=0
  if [ "$CONCURRENT" = 1 ]; then
    local pids=()
    for i in $(seq 1 "$N"); do cni DEL "$i" >/dev/null 2>&1 & pids+=($!); done
    for p in "${pids[@]}"; do wait "$p" || fails=$((fails + 1)); done
  else
    for i in $(seq 1 "$N"); do cni DEL "$i" >/dev/null 2>&1 || fails=$((fails + 1)); done
  fi
  echo "DEL failures: $fails"
}

for i in $(seq 1 "$N"); do ip netns add "$POD_PREFIX-$i"; done
cpu0=$(cpu_ticks "$AGENT")
add_all "$([ "$CONCURRENT" = 1 ] && echo at once || echo one by one)"
mem "$N pods"
if [ "$CONCURRENT" = 1 ]; then
  del_all
  add_all "at once, again"
  mem "$N pods, second wave"
  cpu1=$(cpu_ticks "$AGENT")
  python3 -c 'import os,sys; t=(int(sys.argv[2])-int(sys.argv[1]))/os.sysconf("SC_CLK_TCK"); print("agent CPU over the churn 0 -> %s -> 0 -> %s: %.2f s" % (sys.argv[3], sys.argv[3], t)); print("RESULT cpu churn_s=%.3f" % t)' \
    "$cpu0" "$cpu1" "$N"
fi
mem_result peak "$AGENT"

if [ "$RESTART" = 1 ]; then
  # The checkpoint holds N pods. Stop the container (the agent keeps the checkpoint), then
  # exec the agent alone on it and time exec -> gRPC SERVING (grpc-health-probe, as kubelet).
  kill -TERM "$EP"
  wait "$EP" 2>/dev/null || true
  in_node python3 - "$BIN/aws-k8s-agent" "$BIN/grpc-health-probe" "$STATE/run/ipamd.sock" \
    "$STATE/agent.pid" "$STATE/agent.log" "${CONTAINER_ENV[@]}" <<'PY'
import subprocess, sys, time
agent, probe, sock, pidfile, log = sys.argv[1:6]
env = dict(kv.split("=", 1) for kv in sys.argv[6:])
t0 = time.perf_counter()
p = subprocess.Popen([agent], env=env, stdout=subprocess.DEVNULL, stderr=open(log, "w"),
                     start_new_session=True)
open(pidfile, "w").write(str(p.pid))
while True:
    if subprocess.run([probe, f"-addr=unix://{sock}"], capture_output=True).returncode == 0:
        break
    if p.poll() is not None or time.perf_counter() - t0 > 60:
        sys.exit("the agent never served: see " + log)
    time.sleep(0.002)
dt = time.perf_counter() - t0
print(f"exec -> SERVING with the checkpoint's pods: {dt * 1000:.0f} ms (probe polled every ~2 ms, its own exec included)")
print(f"RESULT start serving_ms={dt * 1000:.1f}")
PY
  AGENT=$(cat "$STATE/agent.pid")
  echo "$AGENT" >"$STATE/entrypoint.pid" # teardown stops it
  EP=$AGENT
fi

del_all
for i in $(seq 1 "$N"); do ip netns del "$POD_PREFIX-$i"; done
[ "$RESTART" = 1 ] || mem "after deleting them"
in_node python3 -c '
import urllib.request
for l in urllib.request.urlopen("http://127.0.0.1:61678/metrics").read().decode().splitlines():
    if l.startswith(("awscni_assigned_ip_addresses", "awscni_total_ip_addresses", "awscni_eni_allocated")): print("metrics:", l)'
