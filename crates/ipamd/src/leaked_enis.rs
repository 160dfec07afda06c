//! Leaked-ENI cleanup (upstream `cleanUpLeakedENIs`, `pkg/awsutils/awsutils.go`): ENIs an
//! agent created, that are `available` (not attached: their node died between create and
//! attach, or was terminated without DeleteOnTermination) and older than five minutes, are
//! deleted. Runs hourly, each run
//! after a random pause so that nodes started together do not call EC2 together.

use std::time::Duration;

use aws::{Ec2, ErrorKind, Filter, Tags};
use ipam::Timestamp;

use crate::node::{ENI_DESCRIPTION_PREFIX, tags};

/// Upstream's period and stagger.
pub const CLEANUP_INTERVAL: Duration = Duration::from_secs(3600);
pub const MAX_STAGGER: Duration = Duration::from_secs(300);
/// ENIs younger than this are left alone (an agent may be about to attach them).
pub const MIN_AGE: Duration = Duration::from_secs(300);

/// What one cleanup run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CleanupReport {
    pub deleted: Vec<String>,
    /// ENIs without a `createdAt` tag: stamped now, deleted on a later run.
    pub stamped: Vec<String>,
    pub too_young: Vec<String>,
    pub errors: Vec<String>,
    /// `DeleteNetworkInterface` failures (upstream's `cleanUpLeakedENIDeleteErr`), also in
    /// `errors`.
    pub delete_failures: Vec<String>,
}

/// The filters of upstream's `cleanUpLeakedENIs` (never an unfiltered listing).
pub fn filters(vpc_id: &str, cluster_name: &str) -> Vec<Filter> {
    let mut f = vec![
        Filter::new("tag-key", &[tags::INSTANCE_ID]),
        Filter::new("status", &["available"]),
        Filter::new("vpc-id", &[vpc_id]),
    ];
    if !cluster_name.is_empty() {
        f.push(Filter::new(
            &format!("tag:{}", tags::CLUSTER_NAME),
            &[cluster_name],
        ));
    }
    f
}

/// One cleanup run at time `now`.
pub async fn clean_up<E: Ec2>(
    ec2: &E,
    vpc_id: &str,
    cluster_name: &str,
    now: Timestamp,
) -> CleanupReport {
    let mut report = CleanupReport::default();
    let enis = match ec2
        .describe_enis_filtered(&filters(vpc_id, cluster_name))
        .await
    {
        Ok(e) => e,
        Err(e) => {
            report.errors.push(e.to_string());
            return report;
        }
    };
    let stamp = || Tags::from([(tags::CREATED_AT.to_string(), now.to_rfc3339())]);
    for eni in enis {
        if eni.attachment.is_some() || !eni.description.starts_with(ENI_DESCRIPTION_PREFIX) {
            continue;
        }
        let created = eni.tags.get(tags::CREATED_AT);
        let parsed = created.and_then(|c| Timestamp::parse_rfc3339(c));
        match (created, parsed) {
            (None, _) => {
                if let Err(e) = ec2
                    .create_tags(std::slice::from_ref(&eni.id), &stamp())
                    .await
                {
                    report.errors.push(format!("{}: {e}", eni.id));
                } else {
                    report.stamped.push(eni.id);
                }
                continue;
            }
            (Some(_), Some(t)) if now.since(t) < MIN_AGE => {
                report.too_young.push(eni.id);
                continue;
            }
            (Some(_), None) => {
                // Unparsable: re-stamp, and (upstream's quirk) delete anyway.
                let _ = ec2
                    .create_tags(std::slice::from_ref(&eni.id), &stamp())
                    .await;
            }
            (Some(_), Some(_)) => {}
        }
        match ec2.delete_eni(&eni.id).await {
            Ok(()) => report.deleted.push(eni.id),
            Err(e) if e.kind == ErrorKind::NotFound => report.deleted.push(eni.id),
            Err(e) => {
                report.errors.push(format!("{}: {e}", eni.id));
                report.delete_failures.push(e.to_string());
            }
        }
    }
    report
}

/// A pause in `[0, max)` derived from the instance ID and the clock (no RNG crate needed).
pub fn stagger(instance_id: &str, max: Duration) -> Duration {
    let max_ms = max.as_millis().max(1) as u64;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in instance_id.bytes().chain(nanos.to_le_bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    Duration::from_millis(h % max_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_name_the_vpc_the_tag_and_the_cluster_when_set() {
        let f = filters("vpc-1", "");
        assert_eq!(f.len(), 3);
        let f = filters("vpc-1", "blue");
        assert_eq!(f[3].name, "tag:cluster.k8s.amazonaws.com/name");
        assert_eq!(f[3].values, ["blue"]);
    }

    #[test]
    fn stagger_stays_below_its_bound() {
        for id in ["i-1", "i-2", "i-0123456789abcdef0"] {
            assert!(stagger(id, MAX_STAGGER) < MAX_STAGGER);
        }
        assert_eq!(stagger("i-1", Duration::ZERO), Duration::ZERO);
    }
}
