//! The result of `vpc-cni plan`: a serialisable report (the `--output json` document, field
//! names documented in `docs/cli.md` and kept stable) and its table rendering.

use std::fmt::Write as _;

use config::Config;
use serde::Serialize;

use super::fleet::{FleetOutcome, NodeGroup, NodeOutcome, Shortfall};
use super::inputs::{AWS_RESERVED, Subnet};

/// The whole plan.
#[derive(Debug, Clone, Serialize)]
pub struct PlanReport {
    /// The subnet, `null` when none was given (unlimited).
    pub subnet: Option<SubnetReport>,
    /// The pool settings in force.
    pub mode: ModeReport,
    /// Sums over every node.
    pub totals: Totals,
    /// One entry per `--nodes`.
    pub instance_types: Vec<TypeReport>,
    /// Nodes that could not run every pod asked of them.
    pub nodes_short: Vec<String>,
    /// Configuration warnings (e.g. prefix delegation unsupported on a type).
    pub warnings: Vec<String>,
}

/// Subnet addresses.
#[derive(Debug, Clone, Serialize)]
pub struct SubnetReport {
    /// The CIDR, `null` when only a size was given.
    pub cidr: Option<String>,
    /// Addresses in the subnet.
    pub size: u32,
    /// Addresses AWS reserves (5).
    pub reserved: u32,
    /// `size - reserved`.
    pub usable: u32,
    /// Addresses held by the nodes (primary addresses, ENI primaries, pools).
    pub used: u32,
    /// `usable - used`.
    pub free: u32,
    /// EC2 refused a grant for lack of addresses.
    pub exhausted: bool,
}

/// The pool settings (as ipamd parsed them).
#[derive(Debug, Clone, Serialize)]
pub struct ModeReport {
    /// `ENABLE_PREFIX_DELEGATION` as configured (a type may fall back, see `instance_types`).
    pub prefix_delegation: bool,
    /// `WARM_ENI_TARGET`.
    pub warm_eni_target: u32,
    /// `WARM_IP_TARGET` (0 = unset).
    pub warm_ip_target: u32,
    /// `MINIMUM_IP_TARGET` (0 = unset).
    pub minimum_ip_target: u32,
    /// `WARM_PREFIX_TARGET` (0 = unset).
    pub warm_prefix_target: u32,
    /// `MAX_ENI`, `null` when unset.
    pub max_eni: Option<u32>,
    /// `AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG`.
    pub custom_networking: bool,
    /// `ENABLE_POD_ENI`.
    pub pod_eni: bool,
}

/// Sums over a set of nodes.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    /// Nodes.
    pub nodes: u32,
    /// Pods asked for.
    pub pods_requested: u32,
    /// Pods running with an address.
    pub pods_hosted: u32,
    /// Pods over the kubelet's max pods.
    pub pods_over_max_pods: u32,
    /// Scheduled pods without an address.
    pub pods_without_ip: u32,
    /// ENIs attached.
    pub enis: u32,
    /// Addresses in the warm pools.
    pub pool_ips: u32,
    /// Addresses assigned to pods.
    pub assigned_ips: u32,
    /// Unassigned pool addresses.
    pub warm_ips: u32,
    /// Prefixes.
    pub prefixes: u32,
    /// Secondary /32s.
    pub secondary_ips: u32,
    /// Subnet addresses held.
    pub subnet_ips: u32,
}

impl Totals {
    fn add(&mut self, o: &NodeOutcome) {
        self.nodes += 1;
        self.pods_requested += o.pods_requested;
        self.pods_hosted += o.pods_running;
        self.pods_over_max_pods += o.pods_over_max_pods;
        self.pods_without_ip += o.pods_without_ip;
        self.enis += o.enis;
        self.pool_ips += o.pool_ips;
        self.assigned_ips += o.assigned_ips;
        self.warm_ips += o.warm_ips;
        self.prefixes += o.prefixes;
        self.secondary_ips += o.secondary_ips;
        self.subnet_ips += o.subnet_ips;
    }
}

/// One instance type (one `--nodes`).
#[derive(Debug, Clone, Serialize)]
pub struct TypeReport {
    /// Instance type.
    pub instance_type: String,
    /// Nodes.
    pub nodes: u32,
    /// Pods asked for per node.
    pub pods_per_node: u32,
    /// The kubelet's max pods used.
    pub max_pods: u32,
    /// Prefix delegation in effect on this type.
    pub prefix_delegation: bool,
    /// ENIs allowed (`MAX_ENI` applied).
    pub max_enis: u32,
    /// Pod addresses one ENI can hold (secondary IPs, or prefixes × 16).
    pub ips_per_eni: u32,
    /// Sums over this type's nodes.
    pub totals: Totals,
    /// Every node.
    pub node_results: Vec<NodeReport>,
}

/// One node.
#[derive(Debug, Clone, Serialize)]
pub struct NodeReport {
    /// `<type>-<n>`, numbered from 1.
    pub name: String,
    /// The simulated state.
    #[serde(flatten)]
    pub outcome: NodeOutcome,
}

impl PlanReport {
    /// Assembles the report.
    pub fn new(
        cfg: &Config,
        subnet: Option<&Subnet>,
        groups: &[NodeGroup],
        fleet: &FleetOutcome,
        warnings: Vec<String>,
    ) -> Self {
        let mut totals = Totals::default();
        let mut nodes_short = Vec::new();
        let mut types = Vec::new();
        for (g, nodes) in groups.iter().zip(&fleet.nodes) {
            let mut t = Totals::default();
            let mut node_results = Vec::new();
            for (i, o) in nodes.iter().enumerate() {
                t.add(o);
                totals.add(o);
                let name = format!("{}-{}", g.instance_type, i + 1);
                if o.pods_without_ip > 0 || o.pods_over_max_pods > 0 {
                    nodes_short.push(name.clone());
                }
                node_results.push(NodeReport {
                    name,
                    outcome: o.clone(),
                });
            }
            let per_eni = planner::eni_limits(&g.policy, &g.capacity);
            types.push(TypeReport {
                instance_type: g.instance_type.clone(),
                nodes: g.count,
                pods_per_node: g.pods_per_node,
                max_pods: g.policy.max_pods,
                prefix_delegation: g.policy.prefix_delegation,
                max_enis: g.capacity.max_enis,
                ips_per_eni: per_eni.max_ips_per_eni,
                totals: t,
                node_results,
            });
        }
        let subnet = subnet.map(|s| {
            let free = fleet.subnet_free.unwrap_or(0);
            SubnetReport {
                cidr: s.cidr.clone(),
                size: s.size,
                reserved: AWS_RESERVED,
                usable: s.usable(),
                used: s.usable() - free,
                free,
                exhausted: fleet.exhausted,
            }
        });
        PlanReport {
            subnet,
            mode: ModeReport {
                prefix_delegation: cfg.pool.prefix_delegation,
                warm_eni_target: cfg.pool.warm_eni_target,
                warm_ip_target: cfg.pool.warm_ip_target,
                minimum_ip_target: cfg.pool.minimum_ip_target,
                warm_prefix_target: cfg.pool.warm_prefix_target,
                max_eni: cfg.pool.max_eni,
                custom_networking: cfg.eni.custom_networking,
                pod_eni: cfg.eni.pod_eni,
            },
            totals,
            instance_types: types,
            nodes_short,
            warnings,
        }
    }

    fn mode_line(&self) -> String {
        let m = &self.mode;
        let mut parts = Vec::new();
        if m.prefix_delegation {
            parts.push("prefix delegation".to_string());
        } else {
            parts.push("secondary IPs".to_string());
        }
        let ip_targets = m.warm_ip_target != 0 || m.minimum_ip_target != 0;
        if ip_targets {
            parts.push(format!("WARM_IP_TARGET={}", m.warm_ip_target));
            parts.push(format!("MINIMUM_IP_TARGET={}", m.minimum_ip_target));
        } else if m.prefix_delegation {
            parts.push(format!("WARM_PREFIX_TARGET={}", m.warm_prefix_target));
        } else {
            parts.push(format!("WARM_ENI_TARGET={}", m.warm_eni_target));
        }
        if let Some(max) = m.max_eni {
            parts.push(format!("MAX_ENI={max}"));
        }
        if m.custom_networking {
            parts.push("custom networking".to_string());
        }
        if m.pod_eni {
            parts.push("trunk ENI slot kept (ENABLE_POD_ENI)".to_string());
        }
        parts.join(", ")
    }

    /// The table rendering.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let t = &self.totals;
        let _ = writeln!(out, "Mode:   {}", self.mode_line());
        let _ = writeln!(out, "Subnet: {}", self.subnet_line());
        let _ = writeln!(
            out,
            "Pods:   {} requested, {} hosted, {} over max pods, {} without an IP",
            t.pods_requested, t.pods_hosted, t.pods_over_max_pods, t.pods_without_ip
        );
        let _ = writeln!(out);
        out.push_str(&super::super::table(&self.node_rows()));
        if !self.nodes_short.is_empty() {
            let _ = writeln!(out);
            let _ = writeln!(
                out,
                "Nodes that cannot run all their pods: {}",
                self.nodes_short.join(", ")
            );
        }
        for w in &self.warnings {
            let _ = writeln!(out, "warning: {w}");
        }
        out
    }

    /// The `Subnet:` line's text.
    fn subnet_line(&self) -> String {
        let Some(s) = &self.subnet else {
            return format!(
                "not given (unlimited); the nodes hold {} addresses",
                self.totals.subnet_ips
            );
        };
        let name = s
            .cidr
            .clone()
            .unwrap_or_else(|| format!("{} addresses", s.size));
        format!(
            "{name}: {} usable ({} reserved by AWS), {} used, {} left{}",
            s.usable,
            s.reserved,
            s.used,
            s.free,
            if s.exhausted {
                " - EXHAUSTED (EC2 refused addresses a warm pool asked for)"
            } else {
                ""
            }
        )
    }

    /// The node table: a header, then one row per set of identical nodes of a type.
    fn node_rows(&self) -> Vec<Vec<String>> {
        let header = [
            "NODES",
            "TYPE",
            "MAX PODS",
            "PODS",
            "HOSTED",
            "NO IP",
            "ENIS",
            "POOL IPS",
            "ASSIGNED",
            "WARM",
            "PREFIXES",
            "SUBNET IPS",
            "IPS/ENI",
        ];
        let mut rows: Vec<Vec<String>> = vec![header.iter().map(ToString::to_string).collect()];
        for ty in &self.instance_types {
            // Identical nodes share one row.
            let mut groups: Vec<(u32, &NodeOutcome)> = Vec::new();
            for n in &ty.node_results {
                match groups.iter_mut().find(|(_, o)| **o == n.outcome) {
                    Some(g) => g.0 += 1,
                    None => groups.push((1, &n.outcome)),
                }
            }
            for (count, o) in groups {
                rows.push(node_row(ty, count, o));
            }
        }
        rows
    }
}

/// The table row of `count` identical nodes of type `ty`.
fn node_row(ty: &TypeReport, count: u32, o: &NodeOutcome) -> Vec<String> {
    let no_ip = match o.shortfall {
        Some(Shortfall::SubnetExhausted) => format!("{} (subnet)", o.pods_without_ip),
        Some(Shortfall::InstanceLimit) => format!("{} (ENI limit)", o.pods_without_ip),
        None => o.pods_without_ip.to_string(),
    };
    let pods = if o.pods_over_max_pods > 0 {
        format!("{} ({} over max)", o.pods_requested, o.pods_over_max_pods)
    } else {
        o.pods_requested.to_string()
    };
    vec![
        count.to_string(),
        ty.instance_type.clone(),
        ty.max_pods.to_string(),
        pods,
        o.pods_running.to_string(),
        no_ip,
        o.enis.to_string(),
        o.pool_ips.to_string(),
        o.assigned_ips.to_string(),
        o.warm_ips.to_string(),
        o.prefixes.to_string(),
        o.subnet_ips.to_string(),
        o.ips_per_eni
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(","),
    ]
}
