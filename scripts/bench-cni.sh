#!/usr/bin/env bash
# Start-up benchmark of the aws-cni plugin: wall time per exec (median and p90 over N runs)
# and instructions per call (valgrind callgrind "I refs"; `perf stat` has no instruction
# counter on these VMs) of
#   - aws-cni VERSION, next to Debian's /usr/lib/cni/ptp and bridge VERSION (reference peers);
#   - aws-cni ADD and DEL against a running agent (the demo node: emulator + ipamd in a node
#     network namespace, see scripts/demo-node.sh), N ADD/DEL cycles, each in a fresh pod
#     namespace (as a runtime does), interleaved with Debian's Go ptp + host-local doing the
#     same (the peer), and the ratio of the medians.
# Prints figures only; never fails on them. Needs root. Nothing touches the root namespace.
#
#   bash scripts/bench-cni.sh          # N=30
#   N=100 bash scripts/bench-cni.sh
#   N=5 INSTRUCTIONS=0 bash scripts/bench-cni.sh   # no valgrind counts (smoke)
# Lines starting with RESULT (min/median/p90 in ms) are read by scripts/bench.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-30}
INSTRUCTIONS=${INSTRUCTIONS:-1}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/vpc-cni-rs/target}"
[ "$(id -u)" -eq 0 ] || { echo "run as root (network namespaces)" >&2; exit 1; }
[ "$INSTRUCTIONS" = 0 ] || command -v valgrind >/dev/null || { apt-get install -y -qq valgrind >/dev/null; }
[ -x /usr/lib/cni/ptp ] || { echo "missing /usr/lib/cni/ptp: run scripts/install-deps.sh" >&2; exit 1; }

echo "== building aws-cni (release)"
cargo build -q --release -p cni --bin aws-cni
PLUGIN="$CARGO_TARGET_DIR/release/aws-cni"

echo "== starting the demo node (emulator + ipamd, ${DEMO_PROFILE:-release} build)"
DEMO_PROFILE="${DEMO_PROFILE:-release}" bash scripts/demo-node.sh --keep >/tmp/bench-cni-demo.log 2>&1 || { cat /tmp/bench-cni-demo.log; exit 1; }
POD=vpccni-bench-pod
cleanup() {
  ip netns del "$POD" 2>/dev/null || true
  rm -rf /run/vpc-cni-bench-ipam
  bash scripts/demo-node.sh --teardown >/dev/null 2>&1 || true
}
trap cleanup EXIT
ip netns add "$POD"

python3 - "$PLUGIN" "$N" "$POD" "$INSTRUCTIONS" <<'EOF'
import os, re, statistics, subprocess, sys, time
plugin, n, pod, count_instructions = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4] != "0"
node, sock = "vpccni-demo-node", "/run/vpc-cni-demo/ipamd.sock"
conf = b'{"cniVersion":"1.0.0","name":"aws-cni","type":"aws-cni","vethPrefix":"eni","mtu":"9001"}'
env_pod = {"CNI_CONTAINERID": "bench", "CNI_IFNAME": "eth0", "CNI_NETNS": f"/var/run/netns/{pod}",
           "CNI_ARGS": "K8S_POD_NAMESPACE=default;K8S_POD_NAME=bench", "IPAMD_GRPC_SOCKET": sock,
           "PATH": os.environ["PATH"]}

def run(argv, env, stdin=b""):
    t = time.perf_counter()
    p = subprocess.run(argv, input=stdin, env=env, capture_output=True)
    dt = (time.perf_counter() - t) * 1000
    if p.returncode != 0:
        sys.exit(f"{argv} failed: {p.stdout!r} {p.stderr!r}")
    return dt

def in_node(argv):  # setns via nsenter (cheaper than ip netns exec, no /sys remount)
    return ["nsenter", f"--net=/var/run/netns/{node}", "--"] + argv

def p90(xs):
    xs = sorted(xs)
    return xs[max(0, -(-len(xs) * 9 // 10) - 1)]

def fmt(xs):
    return (f"min {min(xs):6.2f} ms   median {statistics.median(xs):6.2f} ms   p90 {p90(xs):6.2f} ms"
            f"   (n={len(xs)})")

def result(what, xs):
    print(f"RESULT cni what={what} n={len(xs)} min_ms={min(xs):.3f} median_ms={statistics.median(xs):.3f} p90_ms={p90(xs):.3f}")

def instructions(argv, env, stdin=b"", node_ns=False):
    if not count_instructions:
        return "n/a (INSTRUCTIONS=0)"
    cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"] + argv
    p = subprocess.run(in_node(cmd) if node_ns else cmd, input=stdin, env=env, capture_output=True)
    if p.returncode != 0:
        return "n/a (exit %d: %s)" % (p.returncode, p.stdout.decode(errors="replace")[:100])
    m = re.search(rb"Collected : (\d+)", p.stderr) or re.search(rb"I\s+refs:\s+([\d,]+)", p.stderr)
    return f'{int(m.group(1).replace(b",", b"")):,}' if m else "n/a (valgrind: " + p.stderr.decode(errors="replace").strip().splitlines()[-1][:80] + ")"

ver = {"CNI_COMMAND": "VERSION", "PATH": os.environ["PATH"]}
print(f"== VERSION exec, {n} runs each")
for name, path in [("aws-cni", plugin), ("ptp (Debian, Go)", "/usr/lib/cni/ptp"), ("bridge (Debian, Go)", "/usr/lib/cni/bridge")]:
    run([path], ver)  # warm the page cache
    times = [run([path], ver) for _ in range(n)]
    print(f"  {name:20s} {fmt(times)}   instructions {instructions([path], ver)}")
    result("version-" + name.split()[0], times)

print(f"== ADD + DEL against the running agent (inside the node namespace via nsenter), {n} cycles")
# Warm-up: the demo's pods may have drained the warm pool; wait until ipamd has an address.
for _ in range(100):
    p = subprocess.run(in_node([plugin]), input=conf, env=dict(env_pod, CNI_COMMAND="ADD"), capture_output=True)
    if p.returncode == 0:
        break
    time.sleep(0.2)
else:
    sys.exit(f"ADD never succeeded: {p.stdout!r}")
run(in_node([plugin]), dict(env_pod, CNI_COMMAND="DEL"), conf)
nsenter = [run(in_node(["true"]), {"PATH": os.environ["PATH"]}) for _ in range(n)]
adds, dels = [], []
def add_timed():
    # A released address cools down in ipamd (30 s) before reuse, so a long run can drain the
    # warm pool; an ADD refused for that (code 100) is retried and not timed.
    for _ in range(300):
        t = time.perf_counter()
        p = subprocess.run(in_node([plugin]), input=conf, env=dict(env_pod, CNI_COMMAND="ADD"), capture_output=True)
        dt = (time.perf_counter() - t) * 1000
        if p.returncode == 0:
            return dt
        if b'"code":100' not in p.stdout:
            sys.exit(f"ADD failed: {p.stdout!r}")
        time.sleep(0.2)
    sys.exit("the warm pool never refilled")

def fresh_pod_netns():
    # What a runtime does between sandboxes: DEL leaves the veth pair to go with the pod's
    # namespace (as upstream), and the runtime removes that namespace. Not timed.
    subprocess.run(["ip", "netns", "del", pod], check=False)
    subprocess.run(["ip", "netns", "add", pod], check=True)

# The Go peer: Debian's ptp + host-local (a veth pair, an address, routes; DEL deletes the
# veth), exec'd the same way, interleaved with ours.
ptp_conf = (b'{"cniVersion":"1.0.0","name":"bench-ptp","type":"ptp","mtu":9001,'
            b'"ipam":{"type":"host-local","subnet":"10.254.0.0/16","dataDir":"/run/vpc-cni-bench-ipam"}}')
env_ptp = dict(env_pod, CNI_CONTAINERID="bench-ptp", CNI_PATH="/usr/lib/cni",
               CNI_ARGS="IgnoreUnknown=1;" + env_pod["CNI_ARGS"])
go_adds, go_dels = [], []
for _ in range(n):
    fresh_pod_netns()
    adds.append(add_timed())
    dels.append(run(in_node([plugin]), dict(env_pod, CNI_COMMAND="DEL"), conf))
    fresh_pod_netns()
    go_adds.append(run(in_node(["/usr/lib/cni/ptp"]), dict(env_ptp, CNI_COMMAND="ADD"), ptp_conf))
    go_dels.append(run(in_node(["/usr/lib/cni/ptp"]), dict(env_ptp, CNI_COMMAND="DEL"), ptp_conf))
fresh_pod_netns()
print(f"  nsenter alone        {fmt(nsenter)}   (included in the figures below)")
print(f"  aws-cni ADD          {fmt(adds)}")
print(f"  ptp+host-local ADD   {fmt(go_adds)}")
print(f"  aws-cni DEL          {fmt(dels)}")
print(f"  ptp+host-local DEL   {fmt(go_dels)}")
ratio = lambda a, b: statistics.median(a) / statistics.median(b)
print(f"  ratio of medians, aws-cni / Go peer: ADD {ratio(adds, go_adds):.2f}   DEL {ratio(dels, go_dels):.2f}")
for what, xs in [("nsenter", nsenter), ("add-aws-cni", adds), ("add-ptp", go_adds), ("del-aws-cni", dels), ("del-ptp", go_dels)]:
    result(what, xs)
if count_instructions:
    for _ in range(150):  # until ipamd has an address again (see add_timed)
        add_i = instructions([plugin], dict(env_pod, CNI_COMMAND="ADD"), conf, node_ns=True)
        if not add_i.startswith("n/a"):
            break
        time.sleep(0.2)
    del_i = instructions([plugin], dict(env_pod, CNI_COMMAND="DEL"), conf, node_ns=True)
    print(f"  instructions: ADD {add_i}   DEL {del_i}   (the plugin process only)")
EOF
