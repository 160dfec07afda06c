//! Freeing one ENI the pool no longer needs: upstream's `FreeENI` (awsutils) and the host
//! side of `tryFreeENI` (ipamd). The ENI is already out of the datastore when this runs.
//!
//! `FreeENI`: `DescribeNetworkInterfaces` for the attachment (NotFound: someone freed it
//! already, success) → `DetachNetworkInterface`, retried → a pause while EC2 finishes the
//! detach → `DeleteNetworkInterface`, retried (NotFound: success). EC2 keeps answering
//! `InvalidNetworkInterface.InUse` for a while after a detach; giving up early leaves a
//! detached ENI for the hourly leaked-ENI cleanup (docs/ipamd.md, "Shrinking").
//!
//! `tryFreeENI`: when the attachment could not be read or the detach failed, nothing else
//! happens (the ENI is still attached; reconcile re-adopts it). Otherwise the ENI's rules
//! go, also when the delete failed (the ENI is detached: its link is gone).

use std::net::Ipv4Addr;
use std::time::Duration;

use aws::backoff::{Backoff, InvalidBackoff, retry};
use aws::{AwsError, Ec2, ErrorKind};

use crate::host_net::HostNet;
use crate::metrics::Metrics;

/// Upstream's `maxENIEC2APIRetries`.
const EC2_ATTEMPTS: u32 = 12;
/// Upstream's `maxENIBackoffDelay`.
const MAX_DELAY: Duration = Duration::from_secs(60);

/// Retries and pauses of [`free_eni`] (upstream's values by default; tests shorten them).
#[derive(Debug, Clone, PartialEq)]
pub struct FreeEniSettings {
    /// `DetachNetworkInterface`: 12 attempts, 200 ms doubling to 1 min, 15 % jitter.
    pub detach: Backoff,
    /// Pause between the detach and the first delete (upstream: 2 s).
    pub settle: Duration,
    /// `DeleteNetworkInterface`: 12 attempts, 500 ms doubling to 1 min, 15 % jitter.
    pub delete: Backoff,
}

impl Default for FreeEniSettings {
    fn default() -> Self {
        let backoff = |base_ms| Backoff {
            base: Duration::from_millis(base_ms),
            max: MAX_DELAY,
            factor: 2.0,
            jitter: 0.15,
            max_attempts: EC2_ATTEMPTS,
        };
        Self {
            detach: backoff(200),
            settle: Duration::from_secs(2),
            delete: backoff(500),
        }
    }
}

impl FreeEniSettings {
    /// Both backoffs must be usable (see [`Backoff::validate`]).
    pub fn validate(&self) -> Result<(), InvalidBackoff> {
        self.detach.validate()?;
        self.delete.validate()
    }
}

/// Why an ENI could not be freed.
#[derive(Debug, thiserror::Error)]
pub enum FreeEniError {
    #[error("FreeENI: failed to retrieve ENI {eni}'s attachment id: {source}")]
    AttachmentLookup { eni: String, source: AwsError },
    #[error("FreeENI: unable to detach ENI {eni} from the instance: {source}")]
    Detach { eni: String, source: AwsError },
    #[error("FreeENI: failed to delete ENI {eni}: {source}")]
    Delete { eni: String, source: AwsError },
}

/// What EC2 said about the ENI before the detach.
struct Found {
    attachment: Option<String>,
    primary_ip: Option<Ipv4Addr>,
}

/// Everything freeing an ENI touches.
pub struct EniFreer<'a, E: Ec2, K: net::kernel::Kernel = net::netlink::NetlinkHandle> {
    pub ec2: &'a E,
    pub settings: &'a FreeEniSettings,
    pub host: Option<&'a HostNet<K>>,
    pub metrics: Option<&'a Metrics>,
}

impl<E: Ec2, K: net::kernel::Kernel> EniFreer<'_, E, K> {
    /// Frees `eni` in EC2, then removes its rules from the host (`table`: its route table).
    pub async fn free(&self, eni: &str, table: u32) -> Result<(), FreeEniError> {
        let Some(found) = self.lookup(eni).await? else {
            tracing::info!(eni, "ENI already freed");
            self.delete_rules(eni, None, table).await;
            return Ok(());
        };
        if let Some(attachment) = &found.attachment {
            self.detach(eni, attachment).await?;
            // EC2 takes a while to finish a detach; the delete fails until it has.
            tokio::time::sleep(self.settings.settle).await;
        }
        let deleted = self.delete(eni).await;
        self.delete_rules(eni, found.primary_ip, table).await;
        deleted
    }

    /// `getENIAttachmentID`; `None` when EC2 no longer knows the ENI.
    async fn lookup(&self, eni: &str) -> Result<Option<Found>, FreeEniError> {
        match self.ec2.describe_enis(&[eni.to_string()]).await {
            Ok(list) => Ok(list.into_iter().next().map(|d| Found {
                attachment: d.attachment.map(|a| a.attachment_id),
                primary_ip: d.primary_ip,
            })),
            Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
            Err(source) => {
                self.count_aws_utils_error("getENIAttachmentIDFailed", &source);
                Err(FreeEniError::AttachmentLookup {
                    eni: eni.to_string(),
                    source,
                })
            }
        }
    }

    /// `DetachNetworkInterface`, retried on any error but NotFound (the attachment is gone:
    /// detached already).
    async fn detach(&self, eni: &str, attachment: &str) -> Result<(), FreeEniError> {
        let result = retry(
            &self.settings.detach,
            |e: &AwsError| {
                tracing::warn!(eni, "detaching: {e}");
                e.kind != ErrorKind::NotFound
            },
            |_| self.ec2.detach_eni(attachment, false),
        )
        .await;
        match result {
            Err(e) if e.kind != ErrorKind::NotFound => Err(FreeEniError::Detach {
                eni: eni.to_string(),
                source: e,
            }),
            _ => Ok(()),
        }
    }

    /// `deleteENI`: retried on any error but NotFound, which is success.
    async fn delete(&self, eni: &str) -> Result<(), FreeEniError> {
        let result = retry(
            &self.settings.delete,
            |e: &AwsError| {
                tracing::debug!(eni, "not able to delete the ENI yet: {e}");
                e.kind != ErrorKind::NotFound
            },
            |_| self.ec2.delete_eni(eni),
        )
        .await;
        match result {
            Ok(()) => {
                tracing::info!(eni, "ENI freed");
                Ok(())
            }
            Err(e) if e.kind == ErrorKind::NotFound => Ok(()),
            Err(source) => {
                self.count_aws_utils_error("FreeENIDeleteErr", &source);
                Err(FreeEniError::Delete {
                    eni: eni.to_string(),
                    source,
                })
            }
        }
    }

    async fn delete_rules(&self, eni: &str, primary_ip: Option<Ipv4Addr>, table: u32) {
        let Some(host) = self.host else { return };
        if let Err(e) = host.delete_eni_rules(primary_ip, table).await {
            tracing::warn!(eni, "deleting the freed ENI's rules: {e}");
        }
    }

    /// `awscni_aws_utils_error_count{fn, error=<the error's text>}`.
    fn count_aws_utils_error(&self, function: &str, e: &AwsError) {
        if let Some(m) = self.metrics {
            m.aws_utils_error_count
                .with_label_values(&[function, &e.to_string()])
                .inc();
        }
    }
}
