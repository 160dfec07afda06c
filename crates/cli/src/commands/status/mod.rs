//! `vpc-cni status`: a readable summary of the node from ipamd's introspection
//! (`/v1/enis`) and metrics (`/metrics`) endpoints.

mod http;
mod model;

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use anyhow::anyhow;
use serde::Serialize;

use http::Target;
use model::{CardStatus, EniStatus, MetricsSummary, Sample, parse_enis, parse_metrics};

use super::OutputFormat;

/// Flags of `vpc-cni status`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// ipamd's introspection endpoint (INTROSPECTION_BIND_ADDRESS): host:port or unix:<path>.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:61679")]
    pub introspection: String,

    /// ipamd's metrics endpoint (it listens on :61678 on every interface).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:61678")]
    pub metrics: String,

    /// Do not read the metrics endpoint (DISABLE_METRICS=true).
    #[arg(long)]
    pub no_metrics: bool,

    /// IP_COOLDOWN_PERIOD in seconds, to tell cooling addresses from free ones.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub ip_cooldown_period: u64,

    /// Seconds to wait for each endpoint.
    #[arg(long, value_name = "SECONDS", default_value_t = 5)]
    pub timeout: u64,

    /// List every pod address under its ENI (table output).
    #[arg(long)]
    pub pods: bool,

    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

/// The `--output json` document.
#[derive(Debug, Clone, Serialize)]
pub struct NodeStatus {
    /// Introspection address read.
    pub introspection: String,
    /// Metrics address read (`null` with `--no-metrics`).
    pub metrics_endpoint: Option<String>,
    /// Per network card.
    pub cards: Vec<CardStatus>,
    /// The metrics (`null` when not read or unreachable).
    pub metrics: Option<MetricsSummary>,
    /// Why the metrics could not be read.
    pub metrics_error: Option<String>,
}

/// Reads both endpoints and renders the summary.
pub fn run(args: &Args) -> anyhow::Result<String> {
    let status = collect(args)?;
    Ok(match args.output {
        OutputFormat::Json => format!("{}\n", serde_json::to_string_pretty(&status)?),
        OutputFormat::Table => render(&status, args.pods),
    })
}

/// Reads both endpoints.
pub fn collect(args: &Args) -> anyhow::Result<NodeStatus> {
    let timeout = Duration::from_secs(args.timeout.max(1));
    let intro = Target::parse(&args.introspection)?;
    let body = http::get(&intro, "/v1/enis", timeout).map_err(|e| {
        anyhow!(
            "cannot read ipamd introspection at {intro}/v1/enis: {e} (is aws-node running on \
             this node? DISABLE_INTROSPECTION=true turns the endpoint off; \
             INTROSPECTION_BIND_ADDRESS moves it)"
        )
    })?;
    let now = ipam::Timestamp::from_system_time(SystemTime::now());
    let cards = parse_enis(&body, now, Duration::from_secs(args.ip_cooldown_period))
        .map_err(|e| anyhow!("{intro}: {e}"))?;
    let (metrics_endpoint, metrics, metrics_error) = if args.no_metrics {
        (None, None, None)
    } else {
        let target = Target::parse(&args.metrics)?;
        match http::get(&target, "/metrics", timeout) {
            Ok(text) => (Some(target.to_string()), Some(parse_metrics(&text)), None),
            Err(e) => (
                Some(target.to_string()),
                None,
                Some(format!(
                    "cannot read ipamd metrics at {target}/metrics: {e} (DISABLE_METRICS=true \
                     turns the endpoint off; use --no-metrics)"
                )),
            ),
        }
    };
    Ok(NodeStatus {
        introspection: intro.to_string(),
        metrics_endpoint,
        cards,
        metrics,
        metrics_error,
    })
}

fn opt(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v}"))
}

fn eni_kind(e: &EniStatus) -> String {
    let mut kinds = Vec::new();
    if e.primary {
        kinds.push("primary");
    }
    if e.trunk {
        kinds.push("trunk");
    }
    if e.efa {
        kinds.push("efa");
    }
    if e.excluded {
        kinds.push("excluded");
    }
    if kinds.is_empty() {
        "secondary".to_string()
    } else {
        kinds.join(",")
    }
}

fn render_errors(out: &mut String, title: &str, samples: &[Sample]) {
    let nonzero: Vec<&Sample> = samples.iter().filter(|s| s.value > 0.0).collect();
    if nonzero.is_empty() {
        let _ = writeln!(out, "  {title}: none");
        return;
    }
    let _ = writeln!(out, "  {title}:");
    for s in nonzero {
        let labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
        let _ = writeln!(out, "    {{{}}} {}", labels.join(","), s.value);
    }
}

/// The table rendering.
pub fn render(s: &NodeStatus, pods: bool) -> String {
    let mut out = String::new();
    let version = s
        .metrics
        .as_ref()
        .and_then(|m| m.version.clone())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "unknown version".to_string());
    let _ = writeln!(
        out,
        "ipamd {version} (introspection {}, metrics {})",
        s.introspection,
        s.metrics_endpoint.as_deref().unwrap_or("not read")
    );
    for card in &s.cards {
        render_card(&mut out, card, pods);
    }
    match (&s.metrics, &s.metrics_error) {
        (Some(m), _) => render_metrics(&mut out, m),
        (None, Some(e)) => {
            let _ = writeln!(out, "\nwarning: {e}");
        }
        (None, None) => {}
    }
    out
}

/// One network card: its summary line, its ENI table and, with `pods`, its pod addresses.
fn render_card(out: &mut String, card: &CardStatus, pods: bool) {
    let _ = writeln!(
        out,
        "\nCard {}: {} IPs, {} assigned, {} free ({} cooling down), {} prefixes, {} ENIs",
        card.network_card,
        card.total_ips,
        card.assigned_ips,
        card.free_ips,
        card.cooldown_ips,
        card.prefixes,
        card.enis.len()
    );
    let mut rows = vec![
        [
            "ENI", "DEV", "KIND", "SUBNET", "TABLE", "IPS", "ASSIGNED", "FREE", "COOLDOWN",
            "PREFIXES", "CIDRS",
        ]
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>(),
    ];
    rows.extend(card.enis.iter().map(eni_row));
    out.push_str(&super::table(&rows));
    if pods {
        for e in &card.enis {
            for p in e.cidrs.iter().flat_map(|c| c.pods.iter()) {
                let _ = writeln!(out, "  {}  {}  {}/{}", e.id, p.ip, p.namespace, p.name);
            }
        }
    }
}

/// The ENI table row of `e`.
fn eni_row(e: &EniStatus) -> Vec<String> {
    let cidrs: Vec<String> = e
        .cidrs
        .iter()
        .map(|c| {
            if c.prefix {
                format!("{}({}/{})", c.cidr, c.assigned_ips, c.ips)
            } else {
                c.cidr.trim_end_matches("/32").to_string()
            }
        })
        .collect();
    vec![
        e.id.clone(),
        e.device_number.to_string(),
        eni_kind(e),
        e.subnet_id.clone(),
        e.route_table_id.to_string(),
        e.ips.to_string(),
        e.assigned_ips.to_string(),
        e.free_ips.to_string(),
        e.cooldown_ips.to_string(),
        e.prefixes.to_string(),
        if cidrs.is_empty() {
            "-".to_string()
        } else {
            cidrs.join(" ")
        },
    ]
}

/// The metrics summary and the non-zero error counters.
fn render_metrics(out: &mut String, m: &MetricsSummary) {
    let _ = writeln!(
        out,
        "\nMetrics: ENIs {} of max {}, IPs {} (assigned {}) of max {}, prefixes {}",
        opt(m.eni_allocated),
        opt(m.eni_max),
        opt(m.total_ip_addresses),
        opt(m.assigned_ip_addresses),
        opt(m.ip_max),
        opt(m.total_ipv4_prefixes)
    );
    let _ = writeln!(
        out,
        "  requests: {} add, {} del; {} adds found no free IP; {} IPs force-removed",
        opt(m.add_ip_req_count),
        opt(m.del_ip_req_count),
        opt(m.no_available_ip_addresses),
        opt(m.force_removed_ips)
    );
    let _ = writeln!(out, "Errors:");
    render_errors(out, "awscni_aws_api_error_count", &m.aws_api_errors);
    render_errors(out, "awscni_ipamd_error_count", &m.ipamd_errors);
    render_errors(out, "awscni_ec2api_error_count", &m.ec2api_errors);
}
