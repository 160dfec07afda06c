#!/usr/bin/env python3
"""The table of scripts/bench.sh: reads the RESULT lines its parts printed and prints one
Markdown table (figure, value, goal, met) as docs/benchmarks.md shows it. Never fails on a
figure; a figure whose part did not run is "missing".

    python3 scripts/bench-summary.py <log> <full|smoke> <release|debug>
"""
import re
import statistics
import sys

FIELD = re.compile(r'(\w+)=(\[[^\]]*\]|"[^"]*"|\S+)')


def results(path):
    out = []
    for line in open(path, errors="replace"):
        if not line.startswith("RESULT "):
            continue
        kind, _, rest = line[len("RESULT "):].strip().partition(" ")
        fields = {k: v.strip('"') for k, v in FIELD.findall(rest)}
        fields["kind"] = kind
        out.append(fields)
    return out


def pick(rs, kind, **match):
    return [r for r in rs if r["kind"] == kind and all(r.get(k) == v for k, v in match.items())]


def num(r, key):
    try:
        return float(r[key])
    except (KeyError, TypeError, ValueError):
        return None


def spread(xs, unit):
    xs = sorted(x for x in xs if x is not None)
    if not xs:
        return "missing"
    p90 = xs[max(0, -(-len(xs) * 9 // 10) - 1)]
    return f"min {xs[0]:.2f} / median {statistics.median(xs):.2f} / p90 {p90:.2f} {unit}"


def met(ok):
    return "missing" if ok is None else ("yes" if ok else "**no**")


def main():
    rs = results(sys.argv[1])
    run, profile = sys.argv[2], sys.argv[3]
    rows = []

    def row(part, figure, value, goal="", ok=""):
        rows.append((part, figure, value, goal, ok if isinstance(ok, str) else met(ok)))

    # Part 1.
    cni = {r["what"]: r for r in pick(rs, "cni")}

    def cni_fig(what):
        r = cni.get(what)
        if not r:
            return "missing", None
        return (f"min {num(r, 'min_ms'):.2f} / median {num(r, 'median_ms'):.2f} / "
                f"p90 {num(r, 'p90_ms'):.2f} ms (n={r['n']})"), num(r, "median_ms")

    value, median = cni_fig("version-aws-cni")
    row("1", "VERSION exec, aws-cni", value, "median <= 2 ms", None if median is None else median <= 2.0)
    value, _ = cni_fig("version-ptp")
    row("1", "VERSION exec, ptp (Go)", value)
    for op in ("add", "del"):
        ours, ours_med = cni_fig(f"{op}-aws-cni")
        peer, peer_med = cni_fig(f"{op}-ptp")
        row("1", f"{op.upper()}, aws-cni", ours)
        row("1", f"{op.upper()}, ptp + host-local (Go)", peer)
        if ours_med is None or peer_med is None:
            row("1", f"{op.upper()} ratio of medians", "missing", "<= 0.5", None)
        else:
            ratio = ours_med / peer_med
            row("1", f"{op.upper()} ratio of medians", f"{ratio:.2f}", "<= 0.5", ratio <= 0.5)

    # Part 2.
    bursts = pick(rs, "burst")
    if bursts:
        pods = bursts[0]["pods"]
        row("2", f"burst ADD of {pods} pods, wall", spread([num(r, "add_wall_ms") for r in bursts], "ms"))
        row("2", f"burst DEL of {pods} pods, wall", spread([num(r, "del_wall_ms") for r in bursts], "ms"))
        fails = sum(int(num(r, "add_failures") or 0) + int(num(r, "del_failures") or 0) for r in bursts)
        dups = sum(int(num(r, "duplicates") or 0) for r in bursts)
        row("2", f"failures / duplicates ({len(bursts)} rounds)", f"{fails} / {dups}", "0 / 0",
            fails == 0 and dups == 0)
    else:
        row("2", "burst", "missing", "0 failures, 0 duplicates", None)

    # Part 3.
    cold = pick(rs, "cold")
    if cold:
        c = cold[0]
        row("3", f"cold pool, {c['pods']} pods: all ready", f"{num(c, 'all_ready_s'):.2f} s "
            f"(pool held {c['pool_before']}; {c['failures']} failures)")
        row("3", "cold pool: EC2 calls", f"{c['mutating']} mutating, {c['describe']} describe")
    else:
        row("3", "cold pool", "missing")

    # Part 4.
    for mode in ("default", "warm-ip", "prefix"):
        ours = pick(rs, "churn-ours", mode=mode)
        up = pick(rs, "churn-upstream", mode=mode)
        if not ours or not up or "mutating_per_pod" not in ours[0] or "mutating_per_pod" not in up[0]:
            row("4", f"churn calls per pod, {mode}", "missing", "<= upstream", None)
            continue
        o, u = ours[0], up[0]
        om, od = num(o, "mutating_per_pod"), num(o, "describe_per_pod")
        um, ud = num(u, "mutating_per_pod"), num(u, "describe_per_pod")
        row("4", f"churn {mode}: mutating / describe per pod",
            f"ours {om:.3f} / {od:.3f}; upstream {um:.3f} / {ud:.3f} "
            f"({o['pods']} ADDs; ADD waves ours {o['add_s']} s, upstream {u['add_s']} s)",
            "<= upstream", om <= um + 1e-9 and od <= ud + 1e-9)

    # Part 5.
    idle = pick(rs, "rss", when="idle")
    peak = pick(rs, "rss", when="peak")
    release = profile == "release"
    if idle:
        v = num(idle[0], "rss_mib")
        row("5", f"ipamd RSS idle ({profile})", f"{v:.1f} MiB", "< 15 MiB (release)",
            (v < 15.0) if release else "n/a (debug build)")
    else:
        row("5", "ipamd RSS idle", "missing", "< 15 MiB", None)
    row("5", f"ipamd peak RSS (VmHWM) over the burst churn ({profile})",
        f"{num(peak[0], 'hwm_mib'):.1f} MiB" if peak else "missing")
    cpu = pick(rs, "cpu")
    row("5", "ipamd CPU over the churn", f"{num(cpu[0], 'churn_s'):.2f} s" if cpu else "missing")
    start = pick(rs, "start")
    if start:
        v = num(start[0], "serving_ms")
        row("5", f"exec -> SERVING with the pods in the checkpoint ({profile})", f"{v:.0f} ms", "< 1 s",
            (v < 1000.0) if release else "n/a (debug build)")
    else:
        row("5", "exec -> SERVING", "missing", "< 1 s", None)

    # Part 6.
    for r in pick(rs, "fleet"):
        if "error" in r:
            row("6", f"fleet {r['node']} x{r['nodes']}, {r['client']}", "error: " + r["error"])
            continue
        row("6", f"fleet {r['node']} x{r['nodes']}, {r['client']}",
            f"all warm {r['all_warm_s']} s (median node {r['median_warm_s']} s), "
            f"{r['throttled']} throttled, {r['mutating']} mutating + {r['describe']} describe, "
            f"{r['dropped']} actions dropped")

    print(f"Summary ({run} run; goals are those of issue 16):\n")
    print("| Part | Figure | Value | Goal | Met |")
    print("|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
