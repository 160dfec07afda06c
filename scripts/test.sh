#!/usr/bin/env bash
# The project's test command (README): every test of the workspace plus the data checks.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/vpc-cni-rs/target}"

echo "== generated data is up to date"
python3 scripts/gen-limits.py --check

echo "== Helm chart and manifests (helm lint/template, kubernetes-validate)"
bash scripts/test-manifests.sh

echo "== cargo test"
cargo test --workspace --locked

echo "== demo node smoke test (README's first command)"
bash scripts/demo-node.sh
