# The IPv6 parts of scripts/demo-node.sh (`--ipv6`), sourced by it; not run on its own.
#
# An IPv6 cluster's node as docs/ipv6.md describes it: the emulator runs a dual-stack VPC
# (`--ipv6`), the node's eth0 carries its IPv4 and its IPv6 address, ipamd runs in IPv6 mode
# and hands out /128s from the primary ENI's /80, and every pod is added through the chain
# the entrypoint's 10-aws.conflist has in IPv6 mode: aws-cni, then egress-cni (IPv4 egress
# through a `v4if0` interface from 169.254.172.0/22, SNAT to the node's IPv4). The outside
# namespace stays an IPv4-only host at 10.0.0.1.
#
# Uses NODE, OUTSIDE, PODS, STATE, BIN and in_node from scripts/demo-node.sh.

V6_CNI_PATH=/usr/lib/cni   # host-local, egress-cni's IPAM delegate (scripts/install-deps.sh)

# ipamd's IPv6 mode (docs/ipv6.md "Turning it on").
V6_AGENT_ENV=(ENABLE_IPv6=true ENABLE_IPv4=false ENABLE_PREFIX_DELEGATION=true)

# The aws-cni entry of the conflist as the entrypoint renders it in IPv6 mode: podIPFamily
# lets aws-cni prepare the IPv6 veth while ipamd answers (docs/cni-plugin.md).
v6_aws_conf() {
  echo '{"cniVersion":"0.4.0","name":"aws-cni","type":"aws-cni","vethPrefix":"eni","mtu":"9001","podIPFamily":"ipv6"}'
}

# The egress-cni entry the entrypoint renders in IPv6 mode (crates/entrypoint/src/conflist.rs:
# ENABLE_V4_EGRESS, nodeIP = the node's IPv4), with the demo's state directory for host-local
# and the plugin log.
v6_egress_conf() {
  cat <<EOF
{"cniVersion":"0.4.0","name":"aws-cni","type":"egress-cni","mtu":"9001","enabled":"true",
 "randomizeSNAT":"prng","nodeIP":"$IP",
 "ipam":{"type":"host-local","ranges":[[{"subnet":"169.254.172.0/22"}]],"routes":[{"dst":"0.0.0.0/0"}],
         "dataDir":"$STATE/egress-v4-ipam"},
 "pluginLogFile":"$STATE/egress-v4-plugin.log","pluginLogLevel":"Debug"}
EOF
}

# One plugin of the chain: v6_plugin <binary> ADD|DEL <pod index> <config> [prevResult].
v6_plugin() {
  local bin=$1 cmd=$2 i=$3 conf=$4 prev=${5:-}
  python3 -c '
import json,sys; c=json.loads(sys.argv[1])
if sys.argv[2]: c["prevResult"]=json.loads(sys.argv[2])
print(json.dumps(c))' "$conf" "$prev" |
    in_node env CNI_COMMAND="$cmd" CNI_CONTAINERID="demo-container-$i" CNI_IFNAME=eth0 \
      CNI_NETNS="/var/run/netns/${PODS[$i]}" CNI_PATH="$V6_CNI_PATH" \
      CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=demo-$i" \
      IPAMD_GRPC_SOCKET="$STATE/ipamd.sock" "$BIN/$bin"
}

# ADD down the chain; the chain's result is kept for DEL (as the runtime's cache does).
v6_add_pod() { # v6_add_pod <pod index>
  local i=$1 first
  first=$(v6_plugin aws-cni ADD "$i" "$(v6_aws_conf)") || return 1
  v6_plugin egress-cni ADD "$i" "$(v6_egress_conf)" "$first" >"$STATE/pod$i.result"
}

# A field of the emulator's start-up line: v6_emulator_field <python expression on d>.
v6_emulator_field() {
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' \
    "$STATE/emulator.json" "$1"
}

# DEL up the chain, in the runtime's order (also from `--teardown`, where IP is not set).
v6_del_pod() { # v6_del_pod <pod index>
  local i=$1 prev=""
  IP=${IP:-$(v6_emulator_field 'd["instances"][0]["primary_ip"]')}
  [ -s "$STATE/pod$i.result" ] && prev=$(cat "$STATE/pod$i.result")
  local rc=0
  v6_plugin egress-cni DEL "$i" "$(v6_egress_conf)" "$prev" || rc=1
  v6_plugin aws-cni DEL "$i" "$(v6_aws_conf)" "$prev" || rc=1
  return $rc
}

# The node's eth0 gets its IPv6 address (IMDS `ipv6`) beside the IPv4 one; the sysctls are
# the init container's for IPv6 clusters (docs/ipv6.md).
v6_node_addresses() {
  IP6=$(v6_emulator_field 'd["instances"][0]["primary_ipv6"]')
  SUBNET6=$(v6_emulator_field 'd["subnets"][0]["ipv6_cidr"]')
  # crates/entrypoint/src/init.rs `sysctl_plan` with ENABLE_IPv6
  in_node sysctl -qw net.ipv6.conf.all.disable_ipv6=0 net.ipv6.conf.all.forwarding=1 \
    net.ipv6.conf.eth0.accept_ra=2
  in_node ip -6 addr add "$IP6/${SUBNET6#*/}" dev eth0 nodad
  echo "node eth0: $IP/24 and $IP6/${SUBNET6#*/} (subnet $SUBNET6); outside host 10.0.0.1 (IPv4 only)"
}

# A TCP exchange: v6_exchange <server netns> <client netns> <family 4|6> <address> <port> <who>.
# The server answers with the peer address it saw.
v6_exchange() {
  local server=$1 client=$2 family=$3 addr=$4 port=$5 who=$6
  ip netns exec "$server" python3 -c '
import socket,sys
fam=socket.AF_INET6 if sys.argv[1]=="6" else socket.AF_INET
s=socket.socket(fam); s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)
s.bind(("::" if sys.argv[1]=="6" else "0.0.0.0",int(sys.argv[2]))); s.listen(1)
c,a=s.accept(); c.sendall(("hello from %s to %s" % (sys.argv[3],a[0])).encode()); c.close()' \
    "$family" "$port" "$who" &
  sleep 0.3
  ip netns exec "$client" python3 -c '
import socket,sys; s=socket.create_connection((sys.argv[1],int(sys.argv[2])),timeout=3); print(s.recv(128).decode())' \
    "$addr" "$port"
  wait $!
}

# Prints an exchange and checks the address the server saw: v6_expect <want> <line>.
v6_expect() {
  echo "$2"
  [ "${2##* }" = "$1" ] || { echo "expected the peer to be seen as $1" >&2; exit 1; }
}

v6_traffic() {
  echo -n "demo-0 -> demo-1 [${POD_IPS[1]}]: "
  v6_expect "${POD_IPS[0]}" "$(v6_exchange "${PODS[1]}" "${PODS[0]}" 6 "${POD_IPS[1]}" 7777 demo-1)"
  echo -n "demo-2 -> node [$IP6]: "
  v6_expect "${POD_IPS[2]}" "$(v6_exchange "$NODE" "${PODS[2]}" 6 "$IP6" 7778 "the node")"
  echo -n "demo-0 -> outside IPv4 host 10.0.0.1 (egress-cni, v4if0): "
  v6_expect "$IP" "$(v6_exchange "$OUTSIDE" "${PODS[0]}" 4 10.0.0.1 7779 "the outside host")"
  echo "  (the outside host sees the node's IPv4 $IP as the source: egress-cni's SNAT)"
}

# A pod's addresses: its IPv6 from the chain's result, its egress IPv4 on v4if0.
v6_pod_line() { # v6_pod_line <pod index>
  local i=$1 v4
  v4=$(ip -n "${PODS[$i]}" -4 -o addr show dev v4if0 | awk '{print $4}')
  echo "pod demo-$i: ${POD_IPS[$i]} (egress v4if0 $v4)"
}

v6_introspection() {
  in_node python3 -c '
import json,urllib.request
d=json.load(urllib.request.urlopen("http://127.0.0.1:61679/v1/enis"))
for card,info in d.items():
    print("  card %s: %d assigned" % (card, info["AssignedIPs"]))
    for eni in info["ENIs"].values():
        v6=eni.get("IPv6Cidrs") or {}
        print("    %s device %d: %d IPv4 CIDRs, IPv6 prefixes %s" % (eni["ID"], eni["DeviceNumber"],
              len(eni.get("AvailableIPv4Cidrs") or {}),
              ", ".join("%s (AddressFamily %s)" % (k, c["AddressFamily"]) for k,c in v6.items()) or "none"))'
}
