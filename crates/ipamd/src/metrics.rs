//! Prometheus metrics with upstream's names, types and labels
//! (`utils/prometheusmetrics/prometheusmetrics.go`; docs/metrics.md), served on
//! `:61678/metrics`. The AWS call latency is a summary without quantiles (as client_golang
//! exposes a `SummaryOpts` without objectives): only `_sum` and `_count`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

use aws::{ApiObserver, AwsError, ErrorKind};
use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};

/// Errors while building or rendering the registry.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("metrics registry: {0}")]
    Prometheus(#[from] prometheus::Error),
    #[error("metrics text is not UTF-8")]
    NotUtf8,
}

/// Declares [`Metrics`] from a table: field, type, upstream name, help text, labels.
macro_rules! metric_table {
    ($($field:ident: $ty:ty = ($name:literal, $help:literal, [$($label:literal),*]);)*) => {
        /// Every metric of the agent.
        pub struct Metrics {
            registry: Registry,
            $(#[doc = concat!("`", $name, "`")] pub $field: $ty,)*
            /// `awscni_aws_api_latency_ms` (summary: sum and count per label set).
            latency: Mutex<BTreeMap<LatencyKey, (u64, f64)>>,
            /// EC2 actions answered `UnauthorizedOperation` since the last
            /// [`Metrics::take_refused_actions`].
            refused_actions: Mutex<BTreeSet<String>>,
        }

        impl Metrics {
            /// Creates and registers every metric of the table.
            fn register_all(registry: Registry) -> Result<Self, MetricsError> {
                Ok(Self {
                    $($field: <$ty as Register>::register(&registry, $name, $help, &[$($label),*])?,)*
                    latency: Mutex::new(BTreeMap::new()),
                    refused_actions: Mutex::new(BTreeSet::new()),
                    registry,
                })
            }
        }
    };
}

metric_table! {
    build_info: GaugeVec = ("awscni_build_info", "VPC CNI build information", ["version", "goversion"]);
    ipamd_error_count: IntCounterVec = ("awscni_ipamd_error_count", "The number of errors encountered in ipamd", ["fn"]);
    ipamd_action_inprogress: GaugeVec = ("awscni_ipamd_action_inprogress", "The number of ipamd actions in progress", ["fn"]);
    eni_max: IntGauge = ("awscni_eni_max", "The maximum number of ENIs that can be attached to the instance, accounting for unmanaged ENIs", []);
    ip_max: IntGauge = ("awscni_ip_max", "The maximum number of IP addresses that can be allocated to the instance", []);
    reconcile_count: IntCounterVec = ("awscni_reconcile_count", "The number of times ipamd reconciles on ENIs and IP/Prefix addresses", ["fn"]);
    add_ip_req_count: IntCounter = ("awscni_add_ip_req_count", "The number of add IP address requests", []);
    del_ip_req_count: IntCounterVec = ("awscni_del_ip_req_count", "The number of delete IP address requests", ["reason"]);
    pod_eni_error_count: IntCounterVec = ("awscni_pod_eni_error_count", "The number of errors encountered for pod ENIs", ["fn"]);
    aws_api_error_count: IntCounterVec = ("awscni_aws_api_error_count", "The number of times AWS API returns an error", ["api", "error"]);
    aws_utils_error_count: IntCounterVec = ("awscni_aws_utils_error_count", "The number of errors not handled in awsutils library", ["fn", "error"]);
    ec2api_req_count: IntCounterVec = ("awscni_ec2api_req_count", "The number of requests made to EC2 APIs by CNI", ["fn"]);
    ec2api_error_count: IntCounterVec = ("awscni_ec2api_error_count", "The number of failed EC2 APIs requests", ["fn"]);
    eni_allocated: IntGauge = ("awscni_eni_allocated", "The number of ENIs allocated", []);
    total_ip_addresses: IntGauge = ("awscni_total_ip_addresses", "The total number of IP addresses", []);
    assigned_ip_addresses: IntGauge = ("awscni_assigned_ip_addresses", "The number of IP addresses assigned to pods", []);
    force_removed_enis: IntCounter = ("awscni_force_removed_enis", "The number of ENIs force removed while they had assigned pods", []);
    force_removed_ips: IntCounter = ("awscni_force_removed_ips", "The number of IPs force removed while they had assigned pods", []);
    total_ipv4_prefixes: IntGauge = ("awscni_total_ipv4_prefixes", "The total number of IPv4 prefixes", []);
    assigned_ip_per_cidr: GaugeVec = ("awscni_assigned_ip_per_cidr", "The total number of IP addresses assigned per cidr", ["cidr"]);
    no_available_ip_addresses: IntCounter = ("awscni_no_available_ip_addresses", "The number of pod IP assignments that fail due to no available IP addresses", []);
    assigned_ip_per_eni: GaugeVec = ("awscni_assigned_ip_per_eni", "The number of IP addresses assigned per ENI", ["eni"]);
    startup_duration_seconds: HistogramVec = ("awscni_ipamd_startup_duration_seconds", "Time taken from ipamd process start to readiness", ["success", "with_api_server", "failure_reason"]);
    node_initialization_duration_seconds: HistogramVec = ("awscni_ipamd_node_initialization_duration_seconds", "Time taken to initialize the node", ["success"]);
    connmark_backend: GaugeVec = ("awscni_connmark_backend", "The connmark backend in use; the active backend's series is set to 1", ["backend"]);
    connmark_reconcile_total: IntCounterVec = ("awscni_connmark_reconcile_total", "The number of connmark Setup/Cleanup reconciliations by result", ["result"]);
}

/// A metric type that can be created and registered from a name, help text and labels.
trait Register: Sized + Clone + prometheus::core::Collector + 'static {
    fn create(name: &str, help: &str, labels: &[&str]) -> prometheus::Result<Self>;

    fn register(r: &Registry, name: &str, help: &str, labels: &[&str]) -> prometheus::Result<Self> {
        let m = Self::create(name, help, labels)?;
        r.register(Box::new(m.clone()))?;
        Ok(m)
    }
}

impl Register for IntCounterVec {
    fn create(name: &str, help: &str, labels: &[&str]) -> prometheus::Result<Self> {
        IntCounterVec::new(Opts::new(name, help), labels)
    }
}

impl Register for GaugeVec {
    fn create(name: &str, help: &str, labels: &[&str]) -> prometheus::Result<Self> {
        GaugeVec::new(Opts::new(name, help), labels)
    }
}

impl Register for HistogramVec {
    fn create(name: &str, help: &str, labels: &[&str]) -> prometheus::Result<Self> {
        HistogramVec::new(HistogramOpts::new(name, help), labels)
    }
}

impl Register for IntGauge {
    fn create(name: &str, help: &str, _labels: &[&str]) -> prometheus::Result<Self> {
        IntGauge::new(name, help)
    }
}

impl Register for IntCounter {
    fn create(name: &str, help: &str, _labels: &[&str]) -> prometheus::Result<Self> {
        IntCounter::new(name, help)
    }
}

const LATENCY: &str = "awscni_aws_api_latency_ms";

/// `awscni_ipamd_action_inprogress{fn}`: +1 while the guard lives (upstream's
/// `nodeInit`, `increaseDatastorePool`, `decreaseDatastorePool`, `nodeIPPoolReconcile`).
pub struct InProgress {
    gauge: prometheus::Gauge,
}

impl InProgress {
    pub fn start(metrics: &Metrics, action: &str) -> Self {
        let gauge = metrics.ipamd_action_inprogress.with_label_values(&[action]);
        gauge.inc();
        Self { gauge }
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// Why start-up failed, as upstream labels `awscni_ipamd_startup_duration_seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartupFailure {
    ApiServerConnectivity,
    NodeInitialization,
}

impl Metrics {
    /// Observes process start → ready (`failure` `None`) or → failed start-up.
    pub fn observe_startup(
        &self,
        took: Duration,
        with_api_server: bool,
        failure: Option<StartupFailure>,
    ) {
        let reason = match failure {
            None => "",
            Some(StartupFailure::ApiServerConnectivity) => "api_server_connectivity",
            Some(StartupFailure::NodeInitialization) => "node_initialization",
        };
        let success = if failure.is_none() { "true" } else { "false" };
        let api = if with_api_server { "true" } else { "false" };
        self.startup_duration_seconds
            .with_label_values(&[success, api, reason])
            .observe(took.as_secs_f64());
    }

    /// Observes the node initialisation (IMDS, EC2, datastore, host networking).
    pub fn observe_node_init(&self, took: Duration, success: bool) {
        let success = if success { "true" } else { "false" };
        self.node_initialization_duration_seconds
            .with_label_values(&[success])
            .observe(took.as_secs_f64());
    }

    /// `awscni_assigned_ip_per_cidr{cidr}` for every CIDR the datastore holds now
    /// (released CIDRs drop out of the series).
    pub fn publish_assigned_per_cidr<'a>(&self, cidrs: impl Iterator<Item = (String, u32)> + 'a) {
        self.assigned_ip_per_cidr.reset();
        for (cidr, assigned) in cidrs {
            self.assigned_ip_per_cidr
                .with_label_values(&[&cidr])
                .set(f64::from(assigned));
        }
    }
}

/// `(api, error, status)` labels of the latency summary.
type LatencyKey = (String, String, String);

impl Metrics {
    /// Registers every metric; `version` goes into `awscni_build_info`.
    pub fn new(version: &str) -> Result<Self, MetricsError> {
        let m = Self::register_all(Registry::new())?;
        m.build_info.with_label_values(&[version, "rust"]).set(1.0);
        for result in ["success", "error"] {
            m.connmark_reconcile_total
                .with_label_values(&[result])
                .inc_by(0);
        }
        Ok(m)
    }

    /// The exposition text of every metric.
    pub fn render(&self) -> Result<String, MetricsError> {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf)?;
        let mut text = String::from_utf8(buf).map_err(|_| MetricsError::NotUtf8)?;
        let latency = self.latency.lock().map(|l| l.clone()).unwrap_or_default();
        let _ = writeln!(text, "# HELP {LATENCY} AWS API call latency in ms");
        let _ = writeln!(text, "# TYPE {LATENCY} summary");
        for ((api, error, status), (count, sum)) in latency {
            let labels = format!(r#"api="{api}",error="{error}",status="{status}""#);
            let _ = writeln!(text, "{LATENCY}_sum{{{labels}}} {sum}");
            let _ = writeln!(text, "{LATENCY}_count{{{labels}}} {count}");
        }
        Ok(text)
    }

    /// Records one AWS call (EC2 action or IMDS `GetMetadata`).
    pub fn observe_api(&self, api: &str, outcome: Result<(), &AwsError>, latency: Duration) {
        let (error, status) = match outcome {
            Ok(()) => ("false".to_string(), "200".to_string()),
            Err(e) => ("true".to_string(), e.code.clone().unwrap_or_default()),
        };
        if let Ok(mut l) = self.latency.lock() {
            let entry = l.entry((api.to_string(), error, status)).or_default();
            entry.0 += 1;
            entry.1 += latency.as_secs_f64() * 1000.0;
        }
        let is_ec2 = api != "GetMetadata";
        if is_ec2 {
            self.ec2api_req_count.with_label_values(&[api]).inc();
        }
        if let Err(e) = outcome {
            self.aws_api_error_count
                .with_label_values(&[api, &e.metric_label()])
                .inc();
            if is_ec2 {
                self.ec2api_error_count.with_label_values(&[api]).inc();
            }
            if is_ec2
                && e.kind == ErrorKind::Unauthorized
                && let Ok(mut refused) = self.refused_actions.lock()
            {
                refused.insert(api.to_string());
            }
        }
    }

    /// The EC2 actions refused for missing IAM permissions since the last call (for
    /// `MissingIAMPermissions` events, [`crate::iam_events`]).
    pub fn take_refused_actions(&self) -> BTreeSet<String> {
        self.refused_actions
            .lock()
            .map(|mut r| std::mem::take(&mut *r))
            .unwrap_or_default()
    }
}

impl ApiObserver for Metrics {
    fn observe(&self, api: &str, outcome: Result<(), &AwsError>, latency: Duration) {
        self.observe_api(api, outcome, latency);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws::ErrorKind;

    #[test]
    fn upstream_names_types_and_labels_are_exposed() {
        let m = Metrics::new("v0.1.0").unwrap();
        m.add_ip_req_count.inc();
        m.del_ip_req_count.with_label_values(&["PodDeleted"]).inc();
        m.total_ip_addresses.set(14);
        m.assigned_ip_per_eni.with_label_values(&["eni-1"]).set(3.0);
        m.observe_api(
            "AssignPrivateIpAddresses",
            Ok(()),
            Duration::from_millis(12),
        );
        let err = AwsError::new(
            ErrorKind::Throttled,
            "AssignPrivateIpAddresses",
            Some("RequestLimitExceeded".into()),
            "slow down",
        );
        m.observe_api(
            "AssignPrivateIpAddresses",
            Err(&err),
            Duration::from_millis(3),
        );
        let text = m.render().unwrap();
        for line in [
            "# TYPE awscni_add_ip_req_count counter",
            "awscni_add_ip_req_count 1",
            r#"awscni_del_ip_req_count{reason="PodDeleted"} 1"#,
            "# TYPE awscni_total_ip_addresses gauge",
            "awscni_total_ip_addresses 14",
            r#"awscni_assigned_ip_per_eni{eni="eni-1"} 3"#,
            r#"awscni_build_info{goversion="rust",version="v0.1.0"} 1"#,
            "# TYPE awscni_aws_api_latency_ms summary",
            r#"awscni_aws_api_latency_ms_count{api="AssignPrivateIpAddresses",error="false",status="200"} 1"#,
            r#"awscni_aws_api_latency_ms_count{api="AssignPrivateIpAddresses",error="true",status="RequestLimitExceeded"} 1"#,
            r#"awscni_aws_api_error_count{api="AssignPrivateIpAddresses",error="RequestLimitExceeded"} 1"#,
            r#"awscni_ec2api_req_count{fn="AssignPrivateIpAddresses"} 2"#,
            r#"awscni_ec2api_error_count{fn="AssignPrivateIpAddresses"} 1"#,
            r#"awscni_connmark_reconcile_total{result="error"} 0"#,
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn promtool_parses_the_exposition() {
        let m = Metrics::new("v0.1.0").unwrap();
        m.observe_api("GetMetadata", Ok(()), Duration::from_millis(1));
        m.assigned_ip_per_cidr
            .with_label_values(&["10.0.0.16/28"])
            .set(2.0);
        m.startup_duration_seconds
            .with_label_values(&["true", "false", ""])
            .observe(1.5);
        let text = m.render().unwrap();
        let mut child = std::process::Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("promtool (Debian package prometheus) must be installed");
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let report = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // rc 0 = clean, 3 = lint findings only (upstream's own names fail the lint:
        // counters without _total, the _ms unit); 1 = the text does not parse.
        let code = out.status.code();
        assert!(
            matches!(code, Some(0) | Some(3)),
            "promtool rc {code:?}: {report}"
        );
        assert!(!report.contains("parsing error"), "{report}");
    }
}
