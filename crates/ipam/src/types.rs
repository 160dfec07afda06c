//! Domain types shared by the datastore and the checkpoint: the CNI primary key, pod
//! metadata and the caller-supplied timestamp.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Network name written by the CRI-based recovery of VPC CNI <= 1.11 (legacy records).
pub const LEGACY_NETWORK_NAME: &str = "_migrated-from-cri";
/// Interface name written by the CRI-based recovery of VPC CNI <= 1.11 (legacy records).
pub const LEGACY_IF_NAME: &str = "unknown";

/// The CNI primary key of an allocation: (network name, `CNI_CONTAINERID`, `CNI_IFNAME`).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct IpamKey {
    /// Network name from the CNI config (`aws-cni`).
    #[serde(rename = "networkName", default)]
    pub network_name: String,
    /// `CNI_CONTAINERID` (the sandbox id).
    #[serde(rename = "containerID", default)]
    pub container_id: String,
    /// `CNI_IFNAME` (usually `eth0`).
    #[serde(rename = "ifName", default)]
    pub if_name: String,
}

impl IpamKey {
    /// Builds a key from its three parts.
    pub fn new(
        network_name: impl Into<String>,
        container_id: impl Into<String>,
        if_name: impl Into<String>,
    ) -> Self {
        Self {
            network_name: network_name.into(),
            container_id: container_id.into(),
            if_name: if_name.into(),
        }
    }

    /// True when all three parts are empty (upstream's "unassigned" marker).
    pub fn is_zero(&self) -> bool {
        self.network_name.is_empty() && self.container_id.is_empty() && self.if_name.is_empty()
    }

    /// The same container under the legacy placeholders (`_migrated-from-cri`/…/`unknown`),
    /// tried by unassign when the exact key is not found.
    pub fn legacy_fallback(&self) -> Self {
        Self::new(
            LEGACY_NETWORK_NAME,
            self.container_id.clone(),
            LEGACY_IF_NAME,
        )
    }
}

impl fmt::Display for IpamKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}",
            self.network_name, self.container_id, self.if_name
        )
    }
}

fn is_zero_u32(v: &u32) -> bool {
    *v == 0
}

/// Pod metadata stored with an allocation (all fields omitted from JSON when empty/zero).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IpamMetadata {
    /// Pod namespace.
    #[serde(
        rename = "k8sPodNamespace",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub k8s_pod_namespace: String,
    /// Pod name.
    #[serde(
        rename = "k8sPodName",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub k8s_pod_name: String,
    /// IPs allocated to the pod across network cards; 0 in legacy records means 1.
    #[serde(
        rename = "interfacesCount",
        default,
        skip_serializing_if = "is_zero_u32"
    )]
    pub interfaces_count: u32,
}

impl IpamMetadata {
    /// Metadata of a pod with the given namespace, name and interface count.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>, interfaces: u32) -> Self {
        Self {
            k8s_pod_namespace: namespace.into(),
            k8s_pod_name: name.into(),
            interfaces_count: interfaces,
        }
    }

    /// The interface count as reported on unassign: the stored value, or 1 when it is 0.
    pub fn effective_interfaces_count(&self) -> u32 {
        self.interfaces_count.max(1)
    }
}

/// An instant as Unix nanoseconds (the checkpoint's `allocationTimestamp` unit). The
/// datastore never reads a clock: callers pass "now" in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    /// RFC 3339 in UTC with Go's `RFC3339Nano` fraction (trailing zeros trimmed), e.g.
    /// `2024-01-01T00:00:00.123Z`; the form upstream's introspection prints.
    pub fn to_rfc3339(self) -> String {
        let secs = self.0.div_euclid(1_000_000_000);
        let nanos = self.0.rem_euclid(1_000_000_000);
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        let fraction = if nanos == 0 {
            String::new()
        } else {
            format!(".{nanos:09}").trim_end_matches('0').to_string()
        };
        format!(
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}{fraction}Z",
            rem / 3600,
            (rem / 60) % 60,
            rem % 60
        )
    }

    /// Parses RFC 3339 (`2024-01-01T00:00:00Z`, optional fraction, `Z` or `±HH:MM`), as
    /// Go's `time.Parse(time.RFC3339, …)` accepts. `None` for anything else.
    pub fn parse_rfc3339(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        let num = |r: std::ops::Range<usize>| -> Option<i64> {
            let part = s.get(r)?;
            if part.is_empty() || !part.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            part.parse().ok()
        };
        if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') {
            return None;
        }
        if b[13] != b':' || b[16] != b':' {
            return None;
        }
        let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
        if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
            return None;
        }
        if second > 60 {
            return None;
        }
        let mut i = 19;
        let mut nanos = 0i64;
        if b.get(i) == Some(&b'.') {
            let start = i + 1;
            i = start;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            let digits = s.get(start..i)?;
            if digits.is_empty() || digits.len() > 9 {
                return None;
            }
            nanos = digits.parse::<i64>().ok()? * 10i64.pow(9 - digits.len() as u32);
        }
        let offset = match s.get(i..)? {
            "Z" | "z" => 0,
            tz if tz.len() == 6
                && matches!(tz.as_bytes()[0], b'+' | b'-')
                && tz.as_bytes()[3] == b':' =>
            {
                let (h, m) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
                let sign = if tz.as_bytes()[0] == b'-' { -1 } else { 1 };
                sign * (h * 3600 + m * 60)
            }
            _ => return None,
        };
        // Days since 1970-01-01 from the civil date (Howard Hinnant's algorithm).
        let y = if month <= 2 { year - 1 } else { year };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let mp = (month + 9) % 12;
        let doy = (153 * mp + 2) / 5 + day - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset;
        Some(Self(secs.checked_mul(1_000_000_000)?.checked_add(nanos)?))
    }

    /// From Unix nanoseconds.
    pub const fn from_unix_nanos(nanos: i64) -> Self {
        Self(nanos)
    }

    /// From whole Unix seconds (saturating).
    pub const fn from_unix_secs(secs: i64) -> Self {
        Self(secs.saturating_mul(1_000_000_000))
    }

    /// Converts a wall-clock reading taken by the caller (saturating; before 1970 → negative).
    pub fn from_system_time(t: SystemTime) -> Self {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Self(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)),
            Err(e) => Self(-i64::try_from(e.duration().as_nanos()).unwrap_or(i64::MAX)),
        }
    }

    /// Unix nanoseconds.
    pub const fn unix_nanos(self) -> i64 {
        self.0
    }

    /// `self + d` (saturating).
    pub fn saturating_add(self, d: Duration) -> Self {
        Self(self.0.saturating_add(duration_nanos(d)))
    }

    /// `self - earlier` as a duration, 0 if `earlier` is later than `self`.
    pub fn since(self, earlier: Timestamp) -> Duration {
        let diff = i128::from(self.0) - i128::from(earlier.0);
        if diff <= 0 {
            Duration::ZERO
        } else {
            Duration::from_nanos(u64::try_from(diff).unwrap_or(u64::MAX))
        }
    }

    /// Upstream's cooldown test `now - self <= period` (signed: an instant after `now`
    /// also counts as inside the period).
    pub fn within(self, now: Timestamp, period: Duration) -> bool {
        i128::from(now.0) - i128::from(self.0) <= i128::from(duration_nanos(period))
    }
}

fn duration_nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_parses_what_it_prints_and_go_forms() {
        for nanos in [
            0i64,
            1,
            1_700_000_000_123_000_000,
            951_782_400_000_000_000,
            -86_400_000_000_000,
        ] {
            let t = Timestamp::from_unix_nanos(nanos);
            assert_eq!(
                Timestamp::parse_rfc3339(&t.to_rfc3339()),
                Some(t),
                "{}",
                t.to_rfc3339()
            );
        }
        assert_eq!(
            Timestamp::parse_rfc3339("2024-01-01T02:00:00+02:00"),
            Timestamp::parse_rfc3339("2024-01-01T00:00:00Z")
        );
        assert_eq!(
            Timestamp::parse_rfc3339("1970-01-01T00:00:01.5Z"),
            Some(Timestamp::from_unix_nanos(1_500_000_000))
        );
        for bad in [
            "",
            "yesterday",
            "2024-01-01",
            "2024-13-01T00:00:00Z",
            "2024-01-01T00:00:00",
            "2024-01-01T00:00:00.Z",
            "2024-01-01T00:00:00+0200",
        ] {
            assert_eq!(Timestamp::parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn key_string_form_and_legacy_fallback() {
        let k = IpamKey::new("aws-cni", "abc", "eth0");
        assert_eq!(k.to_string(), "aws-cni/abc/eth0");
        assert!(!k.is_zero());
        assert!(IpamKey::default().is_zero());
        let l = k.legacy_fallback();
        assert_eq!(l.to_string(), "_migrated-from-cri/abc/unknown");
    }

    #[test]
    fn metadata_omits_empty_fields() {
        let m = IpamMetadata::default();
        assert_eq!(serde_json::to_string(&m).ok().as_deref(), Some("{}"));
        assert_eq!(m.effective_interfaces_count(), 1);
        let full = IpamMetadata::new("default", "web-0", 2);
        assert_eq!(
            serde_json::to_string(&full).ok().as_deref(),
            Some(r#"{"k8sPodNamespace":"default","k8sPodName":"web-0","interfacesCount":2}"#)
        );
    }

    #[test]
    fn timestamp_arithmetic() {
        let t = Timestamp::from_unix_secs(100);
        assert_eq!(t.unix_nanos(), 100_000_000_000);
        let later = t.saturating_add(Duration::from_secs(30));
        assert_eq!(later.since(t), Duration::from_secs(30));
        assert_eq!(t.since(later), Duration::ZERO);
        assert!(t.within(later, Duration::from_secs(30)));
        assert!(!t.within(
            later.saturating_add(Duration::from_nanos(1)),
            Duration::from_secs(30)
        ));
        assert!(later.within(t, Duration::ZERO));
        let st = UNIX_EPOCH + Duration::from_nanos(1_712_345_678_901_234_567);
        assert_eq!(
            Timestamp::from_system_time(st).unix_nanos(),
            1_712_345_678_901_234_567
        );
    }
}

#[cfg(test)]
mod rfc3339_tests {
    use super::Timestamp;

    #[test]
    fn formats_like_go_rfc3339nano() {
        assert_eq!(
            Timestamp::from_unix_secs(0).to_rfc3339(),
            "1970-01-01T00:00:00Z"
        );
        assert_eq!(
            Timestamp::from_unix_nanos(1_704_067_200_123_000_000).to_rfc3339(),
            "2024-01-01T00:00:00.123Z"
        );
        assert_eq!(
            Timestamp::from_unix_secs(951_782_400 + 3_661).to_rfc3339(),
            "2000-02-29T01:01:01Z"
        );
    }
}
