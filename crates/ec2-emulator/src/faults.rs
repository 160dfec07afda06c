//! Fault injection and call accounting, driven by the control API. Pure: time is passed in
//! as seconds (f64) so token buckets are exact in tests.

use std::collections::BTreeMap;

use crate::model::ErrorCode;

/// `"*"` in a rule's action matches every action.
pub const ANY_ACTION: &str = "*";

/// "The next `remaining` calls of `action` fail with `code`."
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailNext {
    pub action: String,
    pub code: ErrorCode,
    pub remaining: u32,
}

/// A token bucket: `rate` tokens per second up to `burst`; a call without a token is
/// answered `RequestLimitExceeded`.
#[derive(Debug, Clone, PartialEq)]
pub struct Throttle {
    pub action: String,
    pub rate: f64,
    pub burst: f64,
    tokens: f64,
    last: f64,
}

impl Throttle {
    pub fn new(action: &str, rate: f64, burst: f64, now: f64) -> Self {
        Self {
            action: action.to_string(),
            rate,
            burst,
            tokens: burst,
            last: now,
        }
    }

    fn take(&mut self, now: f64) -> bool {
        self.tokens = (self.tokens + (now - self.last).max(0.0) * self.rate).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// What an IMDS fault answers instead of the real document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImdsAnswer {
    /// An HTTP error status (500, 503, ...).
    Status(u16),
    /// `200 OK` with an empty body (an empty list: no MACs, no addresses).
    Empty,
}

/// "The next `remaining` IMDS reads of a path containing `path_contains` answer `answer`."
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImdsFault {
    pub path_contains: String,
    pub answer: ImdsAnswer,
    pub remaining: u32,
}

/// Everything the control API can set, and what it can read back.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    pub fail_next: Vec<FailNext>,
    pub throttles: Vec<Throttle>,
    /// Extra latency of `AttachNetworkInterface`, in milliseconds.
    pub attach_latency_ms: u64,
    /// How far IMDS lags behind EC2, in seconds.
    pub imds_lag_secs: u64,
    /// Calls per action (answered or failed).
    pub calls: BTreeMap<String, u64>,
    /// Calls per action that were answered with an injected error.
    pub injected: BTreeMap<String, u64>,
    /// Describe calls that named neither IDs nor filters.
    pub unfiltered_describes: u64,
    /// Pending IMDS faults, first match wins.
    pub imds_faults: Vec<ImdsFault>,
    /// IMDS reads answered with an injected fault.
    pub imds_injected: u64,
}

fn matches(rule: &str, action: &str) -> bool {
    rule == ANY_ACTION || rule == action
}

impl Faults {
    /// Accounts one call and decides whether it fails: a pending `FailNext` first, then the
    /// throttles.
    pub fn on_call(&mut self, action: &str, now: f64) -> Option<ErrorCode> {
        *self.calls.entry(action.to_string()).or_default() += 1;
        let injected = if let Some(rule) = self
            .fail_next
            .iter_mut()
            .find(|r| r.remaining > 0 && matches(&r.action, action))
        {
            rule.remaining -= 1;
            Some(rule.code)
        } else {
            let mut throttled = false;
            for t in self
                .throttles
                .iter_mut()
                .filter(|t| matches(&t.action, action))
            {
                throttled |= !t.take(now);
            }
            throttled.then_some(ErrorCode::RequestLimitExceeded)
        };
        self.fail_next.retain(|r| r.remaining > 0);
        if injected.is_some() {
            *self.injected.entry(action.to_string()).or_default() += 1;
        }
        injected
    }

    /// Decides whether one IMDS read of `path` is answered with an injected fault.
    pub fn on_imds(&mut self, path: &str) -> Option<ImdsAnswer> {
        let rule = self
            .imds_faults
            .iter_mut()
            .find(|r| r.remaining > 0 && path.contains(r.path_contains.as_str()))?;
        rule.remaining -= 1;
        let answer = rule.answer;
        self.imds_faults.retain(|r| r.remaining > 0);
        self.imds_injected += 1;
        Some(answer)
    }

    /// Injected answers so far, EC2 and IMDS together.
    pub fn injected_total(&self) -> u64 {
        self.injected.values().sum::<u64>() + self.imds_injected
    }

    /// Drops every rule (counters are kept).
    pub fn clear(&mut self) {
        self.imds_faults.clear();
        self.fail_next.clear();
        self.throttles.clear();
        self.attach_latency_ms = 0;
        self.imds_lag_secs = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fail_next_counts_down_and_then_lets_calls_through() {
        let mut f = Faults::default();
        f.fail_next.push(FailNext {
            action: "AssignPrivateIpAddresses".into(),
            code: ErrorCode::InsufficientFreeAddressesInSubnet,
            remaining: 2,
        });
        assert_eq!(f.on_call("DescribeSubnets", 0.0), None);
        assert_eq!(
            f.on_call("AssignPrivateIpAddresses", 0.0),
            Some(ErrorCode::InsufficientFreeAddressesInSubnet)
        );
        assert!(f.on_call("AssignPrivateIpAddresses", 0.0).is_some());
        assert_eq!(f.on_call("AssignPrivateIpAddresses", 0.0), None);
        assert_eq!(f.calls["AssignPrivateIpAddresses"], 3);
        assert_eq!(f.injected["AssignPrivateIpAddresses"], 2);
        assert!(f.fail_next.is_empty());
    }

    #[test]
    fn imds_faults_match_by_path_and_count_down() {
        let mut f = Faults::default();
        f.imds_faults.push(ImdsFault {
            path_contains: "network/interfaces/macs".into(),
            answer: ImdsAnswer::Empty,
            remaining: 1,
        });
        assert_eq!(f.on_imds("meta-data/instance-id"), None);
        assert_eq!(
            f.on_imds("meta-data/network/interfaces/macs/"),
            Some(ImdsAnswer::Empty)
        );
        assert_eq!(f.on_imds("meta-data/network/interfaces/macs/"), None);
        assert_eq!(f.imds_injected, 1);
        assert!(f.imds_faults.is_empty());
    }

    #[test]
    fn a_token_bucket_admits_burst_then_rate() {
        let mut f = Faults::default();
        f.throttles.push(Throttle::new(ANY_ACTION, 2.0, 3.0, 0.0));
        let admitted = |f: &mut Faults, t: f64, n: usize| {
            (0..n)
                .filter(|_| f.on_call("DescribeInstances", t).is_none())
                .count()
        };
        assert_eq!(admitted(&mut f, 0.0, 10), 3, "the burst");
        assert_eq!(admitted(&mut f, 1.0, 10), 2, "one second at 2/s");
        assert_eq!(admitted(&mut f, 1.2, 10), 0);
        assert_eq!(
            admitted(&mut f, 10.0, 10),
            3,
            "refill is capped at the burst"
        );
        assert_eq!(f.injected["DescribeInstances"], 32);
    }
}
