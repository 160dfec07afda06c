#!/usr/bin/env python3
"""Generate crates/limits/data/instance-limits.tsv (and eni-max-pods.txt).

Sources:

1. ``crates/limits/data/sources/upstream-v1.23.1-vpc-ip-limits.tsv``: upstream v1.23.1's
   instance limits table (``pkg/vpc/vpc_ip_resource_limit.go``), all its types. It wins
   for every networking column, so that the CLI and the agent agree with upstream's
   calculator and agent for every type upstream knows.
2. ``crates/limits/data/sources/upstream-older-vpc-ip-limits.tsv``: the same file at an
   older upstream commit (6c305f30), for retired types v1.23.1 no longer lists (g2, g3,
   p2, i3.metal, u-*tb1), so that nodes of those types keep working from the table.
3. moto's DescribeInstanceTypes snapshot (``moto/ec2/resources/instance_types.json.gz``,
   shipped in the ``moto`` PyPI package): the only source of vCPU counts, and the
   networking facts of types neither upstream file lists.
4. ``crates/limits/data/sources/vpc-resource-controller-branch.tsv``: branch-ENI
   (trunking) facts extracted from aws/amazon-vpc-resource-controller-k8s's
   ``pkg/aws/vpc/limits.go``. Fills the last two columns (``trunking``,
   ``branch_enis``) for the types it knows; they stay empty for the others.

Where moto disagrees with upstream on a type both know, the table keeps upstream's value
and lists the disagreement in its header.

Usage:
    scripts/gen-limits.py            # rewrite the checked-in files
    scripts/gen-limits.py --check    # exit 1 with a diff summary if they are stale

Only the Python standard library is used; moto is located, not imported.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.metadata
import importlib.util
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "crates", "limits", "data")
UPSTREAM_TSV = os.path.join(DATA, "sources", "upstream-v1.23.1-vpc-ip-limits.tsv")
OLDER_UPSTREAM_TSV = os.path.join(DATA, "sources", "upstream-older-vpc-ip-limits.tsv")
BRANCH_TSV = os.path.join(DATA, "sources", "vpc-resource-controller-branch.tsv")
OUT_TSV = os.path.join(DATA, "instance-limits.tsv")
OUT_MAX_PODS = os.path.join(DATA, "eni-max-pods.txt")

COLUMNS = [
    "type",
    "eni_limit_default_card",
    "ipv4_per_eni",
    "default_card_index",
    "cards",
    "hypervisor",
    "bare_metal",
    "vcpus",
    "source",
    "trunking",
    "branch_enis",
]


def moto_json_path(override: str | None) -> str:
    if override:
        return override
    spec = importlib.util.find_spec("moto")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("gen-limits: the moto package is not installed (pip install moto==5.2.1)")
    base = list(spec.submodule_search_locations)[0]
    return os.path.join(base, "ec2", "resources", "instance_types.json.gz")


def moto_version() -> str:
    try:
        return importlib.metadata.version("moto")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def load_moto(path: str) -> dict[str, dict]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        raw = json.load(fh)
    rows = {}
    for name, rec in raw.items():
        net = rec["NetworkInfo"]
        default_card = int(net.get("DefaultNetworkCardIndex", 0))
        cards = sorted(
            (int(c["NetworkCardIndex"]), int(c["MaximumNetworkInterfaces"]))
            for c in net.get("NetworkCards", [])
        )
        on_default = [m for i, m in cards if i == default_card]
        eni_limit = on_default[0] if on_default else int(net["MaximumNetworkInterfaces"])
        vcpus = rec.get("VCpuInfo", {}).get("DefaultVCpus")
        rows[name] = {
            "type": name,
            "eni_limit_default_card": str(eni_limit),
            "ipv4_per_eni": str(int(net["Ipv4AddressesPerInterface"])),
            "default_card_index": str(default_card),
            "cards": ",".join(f"{i}:{m}" for i, m in cards),
            "hypervisor": rec.get("Hypervisor") or "unknown",
            "bare_metal": "true" if rec.get("BareMetal") else "false",
            "vcpus": "" if vcpus is None else str(int(vcpus)),
            "source": "moto",
        }
    return rows


def load_upstream(path: str) -> dict[str, dict]:
    rows = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("#") or not line.strip():
                continue
            f = line.rstrip("\n").split("\t")
            if len(f) != 7:
                sys.exit(f"gen-limits: bad line in {path}: {line!r}")
            rows[f[0]] = dict(zip(COLUMNS[:7], f), vcpus="", source="upstream")
    return rows


def load_branch(path: str) -> dict[str, tuple[str, str]]:
    """type -> (trunking, branch_enis) from the resource controller's limits table."""
    facts = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("#") or not line.strip():
                continue
            f = line.rstrip("\n").split("\t")
            if len(f) != 3 or f[1] not in ("true", "false") or not f[2].isdigit():
                sys.exit(f"gen-limits: bad line in {path}: {line!r}")
            if f[0] in facts:
                sys.exit(f"gen-limits: duplicate type in {path}: {f[0]}")
            facts[f[0]] = (f[1], str(int(f[2])))
    return facts


def add_branch(rows: list[dict], branch: dict[str, tuple[str, str]]) -> int:
    """Fills trunking/branch_enis in place; returns how many rows the source knew."""
    known = 0
    for r in rows:
        trunking, enis = branch.get(r["type"], ("", ""))
        r["trunking"], r["branch_enis"] = trunking, enis
        known += r["type"] in branch
    return known


def merge(moto: dict, upstream: dict) -> tuple[list[dict], list[str]]:
    merged = dict(moto)
    for name, row in upstream.items():  # upstream wins where both know a type
        vcpus = moto[name]["vcpus"] if name in moto else ""
        merged[name] = dict(row, vcpus=vcpus)
    notes = []
    for name in sorted(set(moto) & set(upstream)):
        m, u = moto[name], upstream[name]
        diffs = [
            f"{k} upstream {u[k] or '-'}, moto {m[k] or '-'}"
            for k in COLUMNS[1:7]
            if m[k] != u[k]
        ]
        if diffs:
            notes.append(f"{name}: " + ", ".join(diffs))
    return [merged[k] for k in sorted(merged)], notes


def render_tsv(
    rows: list[dict],
    version: str,
    notes: list[str],
    n_moto: int,
    n_up: int,
    n_branch: int,
    n_branch_known: int,
) -> str:
    out = [
        "# Instance networking limits, generated by scripts/gen-limits.py; do not edit.",
        "# Sources: data/sources/upstream-v1.23.1-vpc-ip-limits.tsv (upstream amazon-vpc-cni-k8s",
        "#   v1.23.1 pkg/vpc/vpc_ip_resource_limit.go; wins for every networking column), plus",
        f"#   upstream-older-vpc-ip-limits.tsv (6c305f30) for retired types ({n_up} types in all), and",
        f"#   moto {version} ec2/resources/instance_types.json.gz ({n_moto} types; the only source",
        "#   of vCPUs, and the networking facts of types upstream does not list).",
        "# Branch-ENI columns from data/sources/vpc-resource-controller-branch.tsv (facts from",
        "#   aws/amazon-vpc-resource-controller-k8s pkg/aws/vpc/limits.go @ b0e11151;",
        f"#   {n_branch} types, {n_branch_known} of them in this table; empty where it has no entry).",
        "# Where both sources know a type and disagree, upstream's value is kept.",
        f"# Disagreements: {len(notes)}",
    ]
    out += [f"#   {n}" for n in notes]
    out += [
        "# Columns (tab-separated):",
        "#   type                    EC2 instance type",
        "#   eni_limit_default_card  max network interfaces on the default network card",
        "#   ipv4_per_eni            IPv4 addresses per interface, primary included",
        "#   default_card_index      DefaultNetworkCardIndex",
        "#   cards                   index:max_interfaces per network card, comma-separated; empty if unknown",
        "#   hypervisor              nitro | xen | unknown (bare metal has no hypervisor)",
        "#   bare_metal              true | false",
        "#   vcpus                   default vCPUs; empty if unknown",
        "#   source                  moto | upstream",
        "#   trunking                true | false; empty if unknown (ipamd then assumes true)",
        "#   branch_enis             max branch ENIs (pod ENIs on the trunk); empty if unknown",
        "\t".join(COLUMNS),
    ]
    out += ["\t".join(r[c] for c in COLUMNS) for r in rows]
    return "\n".join(out) + "\n"


def render_max_pods(rows: list[dict]) -> str:
    out = [
        "# Generated by scripts/gen-limits.py from crates/limits/data/instance-limits.tsv; do not edit.",
        "#",
        "# Mapping is calculated from AWS EC2 API using the following formula:",
        "# * First IP on each ENI is not used for pods",
        "# * +2 for the pods that use host-networking (AWS CNI and kube-proxy)",
        "#",
        "#   # of ENI * (# of IPv4 per ENI - 1) + 2",
        "#",
        "# https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/using-eni.html#AvailableIpPerENI",
        "#",
        "# NOTE: For multi-card instance types the max limits is calculated only against the default network card.",
        "#",
    ]
    for r in rows:
        enis, ips = int(r["eni_limit_default_card"]), int(r["ipv4_per_eni"])
        out.append(f"{r['type']} {enis * (ips - 1) + 2}")
    return "\n".join(out) + "\n"


def summarize_diff(path: str, want: str) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            have = fh.read()
    except FileNotFoundError:
        return f"{path}: missing"
    if have == want:
        return ""
    old, new = set(have.splitlines()), set(want.splitlines())
    gone, added = sorted(old - new), sorted(new - old)
    lines = [f"{path}: {len(gone)} line(s) removed, {len(added)} line(s) added"]
    lines += [f"  - {x}" for x in gone[:20]] + [f"  + {x}" for x in added[:20]]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="fail if the checked-in files are stale")
    ap.add_argument("--moto-json", help="path to moto's instance_types.json.gz")
    args = ap.parse_args()

    moto = load_moto(moto_json_path(args.moto_json))
    upstream = load_upstream(UPSTREAM_TSV)
    # Retired types only the older upstream snapshot has.
    for name, row in load_upstream(OLDER_UPSTREAM_TSV).items():
        upstream.setdefault(name, row)
    branch = load_branch(BRANCH_TSV)
    rows, notes = merge(moto, upstream)
    n_branch_known = add_branch(rows, branch)
    outputs = {
        OUT_TSV: render_tsv(
            rows, moto_version(), notes, len(moto), len(upstream), len(branch), n_branch_known
        ),
        OUT_MAX_PODS: render_max_pods(rows),
    }
    if args.check:
        problems = [p for p in (summarize_diff(k, v) for k, v in outputs.items()) if p]
        if problems:
            print("\n".join(problems), file=sys.stderr)
            print("gen-limits: stale; run scripts/gen-limits.py", file=sys.stderr)
            return 1
        print(f"gen-limits: up to date ({len(rows)} instance types)")
        return 0
    for path, text in outputs.items():
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
    print(f"gen-limits: wrote {len(rows)} instance types")
    return 0


if __name__ == "__main__":
    sys.exit(main())
