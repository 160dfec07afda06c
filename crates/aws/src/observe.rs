//! Per-call accounting: every EC2/IMDS call is counted and timed, for the metrics
//! `awscni_aws_api_latency_ms` and `awscni_aws_api_error_count`.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::error::AwsError;

/// Receives one observation per attempt.
pub trait ApiObserver: Send + Sync {
    fn observe(&self, api: &str, outcome: Result<(), &AwsError>, latency: Duration);
}

/// Totals of one API.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiTotals {
    pub calls: u64,
    /// Errors by metric label (EC2 error code, or the error kind).
    pub errors: BTreeMap<String, u64>,
    pub total_latency: Duration,
}

/// An in-memory observer (ipamd exports it as Prometheus metrics).
#[derive(Debug, Default)]
pub struct ApiStats {
    totals: Mutex<BTreeMap<String, ApiTotals>>,
}

impl ApiStats {
    /// A copy of the totals, by API.
    pub fn snapshot(&self) -> BTreeMap<String, ApiTotals> {
        self.totals.lock().map(|t| t.clone()).unwrap_or_default()
    }
}

impl ApiObserver for ApiStats {
    fn observe(&self, api: &str, outcome: Result<(), &AwsError>, latency: Duration) {
        if let Ok(mut totals) = self.totals.lock() {
            let t = totals.entry(api.to_string()).or_default();
            t.calls += 1;
            t.total_latency += latency;
            if let Err(e) = outcome {
                *t.errors.entry(e.metric_label()).or_default() += 1;
            }
        }
    }
}
