#!/usr/bin/env bash
# The benchmark (issue 16; docs/benchmarks.md): one run on this machine, printing each
# part's figures and, last, one table with the goals met or not.
#   1. ADD/DEL of aws-cni vs Go ptp + host-local, interleaved, and VERSION (scripts/bench-cni.sh,
#      on the demo node);
#   2. a burst of 110 pods from a warm pool (prefix delegation), 3. 110 pods on a cold pool
#      with a 5 s attach, 4. the EC2 calls of a churn 0 -> 110 -> 0 -> 110 in three modes
#      (cargo bench ipamd/pool_bench: the agent in-process on the EC2 emulator), next to
#      upstream's algorithm on the same churn (cargo bench planner/upstream_footprint, simulated);
#   5. ipamd memory idle and at the burst's peak, CPU over a churn, exec -> SERVING with 110
#      pods in the checkpoint (scripts/measure-rss.sh, release binaries);
#   6. a fleet of 50 and 200 nodes scaling out against one account's EC2 token buckets,
#      upstream's client vs ours (planner/upstream_footprint, simulated).
#
#   bash scripts/bench.sh            # the full run (about 15 minutes)
#   bash scripts/bench.sh --smoke    # few iterations, small counts (CI: scripts/test.sh)
#
# Exits non-zero only when a part could not run, never because a goal is missed. Needs root
# (network namespaces); uses the demo node's fixed names, so run it alone
# (`flock /tmp/demo-node.lock bash scripts/bench.sh` where others may run a demo node).
set -uo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/vpc-cni-rs/target}"

SMOKE=false
[ "${1:-}" = "--smoke" ] && SMOKE=true
if $SMOKE; then
  CNI_N=5 INSTRUCTIONS=0 PODS=10 ROUNDS=1 HOLD=5 AFTER_ADD=1 ATTACH_MS=500 FLEETS=20
  RSS_PROFILE=debug RSS_PODS=10
else
  CNI_N=200 INSTRUCTIONS=1 PODS=110 ROUNDS=5 HOLD=65 AFTER_ADD=10 ATTACH_MS=5000 FLEETS=50,200
  RSS_PROFILE=release RSS_PODS=110
fi
LOG=$(mktemp /tmp/vpc-cni-bench.XXXXXX)
FAILED=()

part() { # part <name> <command...>: runs it, its output to the terminal and the log
  local name=$1
  shift
  local start=$SECONDS
  echo "==== $name"
  if ! "$@" 2>&1 | tee -a "$LOG"; then
    FAILED+=("$name")
    echo "==== $name: could not run (see above)"
  fi
  echo "==== $name: $((SECONDS - start)) s"
}

echo "bench: $($SMOKE && echo smoke || echo full) run on $(nproc) CPUs, $(uname -r), $(date -u +%FT%TZ)"
part "1 aws-cni vs ptp+host-local" env N="$CNI_N" INSTRUCTIONS="$INSTRUCTIONS" DEMO_PROFILE="$RSS_PROFILE" \
  bash scripts/bench-cni.sh
export BENCH_PODS=$PODS BENCH_ROUNDS=$ROUNDS BENCH_HOLD_SECS=$HOLD BENCH_AFTER_ADD_SECS=$AFTER_ADD \
  BENCH_ATTACH_MS=$ATTACH_MS BENCH_FLEETS=$FLEETS
part "2-4 the agent on the emulator" cargo bench -q --profile dev -p ipamd --bench pool_bench
part "4, 6 upstream's algorithm" cargo bench -q --profile dev -p planner --bench upstream_footprint
part "5 memory, CPU, start" env PROFILE="$RSS_PROFILE" PODS="$RSS_PODS" CONCURRENT=1 RESTART=1 \
  AGENT_ENV="ENABLE_PREFIX_DELEGATION=true WARM_IP_TARGET=16 MINIMUM_IP_TARGET=128" \
  bash scripts/measure-rss.sh

echo
python3 scripts/bench-summary.py "$LOG" "$($SMOKE && echo smoke || echo full)" "$RSS_PROFILE"
rm -f "$LOG"
if [ ${#FAILED[@]} -gt 0 ]; then
  echo "bench: parts that could not run: ${FAILED[*]}" >&2
  exit 1
fi
