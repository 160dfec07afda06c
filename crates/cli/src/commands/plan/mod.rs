//! `vpc-cni plan`: the EKS best-practices subnet calculator, run on the planner ipamd runs.
//! See `docs/cli.md` for the flags and the JSON fields.

mod fleet;
mod inputs;
mod report;

use std::collections::BTreeMap;

use anyhow::bail;
use config::names as n;

use fleet::simulate;
use report::PlanReport;

use super::OutputFormat;

/// Flags of `vpc-cni plan`. Pool settings are named after their environment variables and
/// parsed by the same code as ipamd's (`--warm-ip-target 2` = `WARM_IP_TARGET=2`).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The subnet the nodes and pods draw from, e.g. 10.0.0.0/24 (or only its length, /24).
    #[arg(long, value_name = "CIDR")]
    pub subnet: Option<String>,

    /// The subnet's size in addresses (16..65536, a power of two) instead of --subnet.
    #[arg(long, value_name = "ADDRESSES", conflicts_with = "subnet")]
    pub subnet_size: Option<u32>,

    /// Nodes of one instance type: TYPE:COUNT:PODS (pods needing a VPC IP on each node).
    /// Repeat for several types.
    #[arg(long = "nodes", value_name = "TYPE:COUNT:PODS", required = true)]
    pub nodes: Vec<String>,

    /// WARM_ENI_TARGET [default: 1].
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub warm_eni_target: Option<String>,

    /// WARM_IP_TARGET [default: unset].
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub warm_ip_target: Option<String>,

    /// MINIMUM_IP_TARGET [default: unset].
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub minimum_ip_target: Option<String>,

    /// WARM_PREFIX_TARGET [default: unset].
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub warm_prefix_target: Option<String>,

    /// ENABLE_PREFIX_DELEGATION (a bare flag means true).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub enable_prefix_delegation: Option<String>,

    /// MAX_ENI.
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub max_eni: Option<String>,

    /// AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG: pods on secondary ENIs in the ENIConfig subnet
    /// (the planned subnet is then the pod subnet). A bare flag means true.
    #[arg(
        long,
        alias = "custom-networking",
        value_name = "BOOL",
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub aws_vpc_k8s_cni_custom_network_cfg: Option<String>,

    /// ENABLE_POD_ENI: keeps an ENI slot for the trunk ENI. A bare flag means true.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub enable_pod_eni: Option<String>,

    /// Read the settings above from the environment (as aws-node's container sees them);
    /// flags given on the command line win.
    #[arg(long)]
    pub from_env: bool,

    /// The kubelet's max pods on every node [default: the EKS AMI max-pods calculator's
    /// value for the type and mode].
    #[arg(long, value_name = "N")]
    pub max_pods: Option<u32>,

    /// Pods on every node without a VPC IP (aws-node, kube-proxy): they count against max pods.
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub host_network_pods: u32,

    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

impl Args {
    /// The environment variables these flags stand for.
    fn vars(&self) -> Vec<(&'static str, &String)> {
        [
            (n::WARM_ENI_TARGET, &self.warm_eni_target),
            (n::WARM_IP_TARGET, &self.warm_ip_target),
            (n::MINIMUM_IP_TARGET, &self.minimum_ip_target),
            (n::WARM_PREFIX_TARGET, &self.warm_prefix_target),
            (n::ENABLE_PREFIX_DELEGATION, &self.enable_prefix_delegation),
            (n::MAX_ENI, &self.max_eni),
            (
                n::AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG,
                &self.aws_vpc_k8s_cni_custom_network_cfg,
            ),
            (n::ENABLE_POD_ENI, &self.enable_pod_eni),
        ]
        .into_iter()
        .filter_map(|(k, v)| Some((k, v.as_ref()?)))
        .collect()
    }
}

/// Runs the plan and renders it.
pub fn run(args: &Args) -> anyhow::Result<String> {
    let report = plan(args)?;
    Ok(match args.output {
        OutputFormat::Json => format!("{}\n", serde_json::to_string_pretty(&report)?),
        OutputFormat::Table => report.to_table(),
    })
}

/// Builds the report without rendering it.
pub fn plan(args: &Args) -> anyhow::Result<PlanReport> {
    let subnet = match (&args.subnet, args.subnet_size) {
        (Some(raw), _) => Some(inputs::parse_subnet(raw)?),
        (None, Some(size)) => Some(inputs::subnet_of_size(size)?),
        (None, None) => None,
    };
    let mut vars: BTreeMap<String, String> = if args.from_env {
        inputs::process_env()
    } else {
        BTreeMap::new()
    };
    for (k, v) in args.vars() {
        vars.insert(k.to_string(), v.clone());
    }
    let cfg = inputs::load_config(vars)?;
    let mut warnings = cfg.warnings.clone();
    let opts = inputs::GroupOptions {
        max_pods: args.max_pods,
        host_network_pods: args.host_network_pods,
    };
    if args.max_pods == Some(0) {
        bail!("impossible inputs: --max-pods must be at least 1");
    }
    let mut groups = Vec::new();
    for raw in &args.nodes {
        let spec = inputs::parse_node_spec(raw)?;
        groups.push(inputs::node_group(&cfg, &spec, opts, &mut warnings)?);
    }
    let total_nodes: u64 = groups.iter().map(|g| u64::from(g.count)).sum();
    if total_nodes > 10_000 {
        bail!("impossible inputs: {total_nodes} nodes (at most 10000 are simulated)");
    }
    let outcome = simulate(&groups, subnet.as_ref().map(inputs::Subnet::usable))?;
    Ok(PlanReport::new(
        &cfg,
        subnet.as_ref(),
        &groups,
        &outcome,
        warnings,
    ))
}
