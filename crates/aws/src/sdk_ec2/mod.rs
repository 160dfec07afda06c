//! [`Ec2`] on `aws-sdk-ec2`: client-side token buckets, our own jittered retries (the SDK's
//! are disabled so that every attempt is counted), typed errors.
//!
//! This module holds the client and its retry loop; the calls themselves are in
//! `describe` (read-only) and `mutate` (state changes), the shape conversions in
//! `convert`.

mod convert;
mod describe;
mod imds_only;
mod mutate;

use std::future::Future;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk_ec2::Client;
use ipnet::{Ipv4Net, Ipv6Net};
use tokio::time::Instant;

use crate::backoff::{Backoff, unit_from};
use crate::observe::ApiObserver;
use crate::token_bucket::{ApiFamily, RateLimiter};
use crate::traits::{AwsResult, Ec2};
use crate::types::{
    AssignedAddresses, CreateEniRequest, EniDescription, Filter, InstanceDescription,
    InstanceTypeDescription, SubnetDescription, Tags,
};

pub use convert::sdk_error;

/// The real EC2 client.
pub struct SdkEc2 {
    client: Client,
    limiter: RateLimiter,
    backoff: Backoff,
    observer: Arc<dyn ApiObserver>,
    seed: AtomicU64,
    imds_only: Option<imds_only::ImdsOnly>,
}

impl SdkEc2 {
    pub fn new(
        client: Client,
        limiter: RateLimiter,
        backoff: Backoff,
        observer: Arc<dyn ApiObserver>,
    ) -> Self {
        Self {
            client,
            limiter,
            backoff,
            observer,
            seed: AtomicU64::new(0x5eed),
            imds_only: None,
        }
    }

    /// `ENABLE_IMDS_ONLY_MODE`: the instance's ENIs come from `imds`, and every EC2 action
    /// but `DescribeInstanceTypes` is refused without being sent (see `imds_only`).
    pub fn into_imds_only(
        mut self,
        imds: Arc<crate::sdk_imds::SdkImds>,
        instance_id: &str,
        availability_zone: &str,
    ) -> Self {
        self.imds_only = Some(imds_only::ImdsOnly {
            imds,
            instance_id: instance_id.to_string(),
            availability_zone: availability_zone.to_string(),
        });
        self
    }

    /// Whether this client answers from IMDS only.
    pub fn is_imds_only(&self) -> bool {
        self.imds_only.is_some()
    }

    /// Runs one action under the rate limit, retrying throttling and 5xx with jittered
    /// backoff; every attempt is observed.
    async fn call<T, F, Fut>(&self, action: &'static str, mut op: F) -> AwsResult<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = AwsResult<T>>,
    {
        if self.imds_only.is_some() && action != imds_only::ALLOWED {
            return Err(imds_only::refused(action));
        }
        let mut attempt = 0;
        loop {
            self.limiter.acquire(ApiFamily::of(action)).await;
            let start = Instant::now();
            let result = op().await;
            self.observer
                .observe(action, result.as_ref().map(|_| ()), start.elapsed());
            match result {
                Err(e) if e.kind.is_retryable() && self.backoff.should_retry(attempt) => {
                    let seed = self.seed.fetch_add(1, Ordering::Relaxed);
                    let wait = self.backoff.delay(attempt, unit_from(seed));
                    tracing::debug!(action, attempt, ?wait, "retrying after {e}");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }
}

impl Ec2 for SdkEc2 {
    async fn describe_instance_enis(&self, instance_id: &str) -> AwsResult<Vec<EniDescription>> {
        if let Some(source) = &self.imds_only {
            return source.enis(None).await;
        }
        let by_instance = Filter::new("attachment.instance-id", &[instance_id]);
        describe::network_interfaces(self, &[], &[by_instance]).await
    }

    async fn describe_enis(&self, ids: &[String]) -> AwsResult<Vec<EniDescription>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(source) = &self.imds_only {
            return source.enis(Some(ids)).await;
        }
        describe::network_interfaces(self, ids, &[]).await
    }

    async fn describe_enis_filtered(&self, filters: &[Filter]) -> AwsResult<Vec<EniDescription>> {
        if filters.is_empty() {
            return Err(describe::no_filter_error("DescribeNetworkInterfaces"));
        }
        describe::network_interfaces(self, &[], filters).await
    }

    async fn describe_instance(&self, instance_id: &str) -> AwsResult<InstanceDescription> {
        describe::instance(self, instance_id).await
    }

    async fn describe_instance_type(
        &self,
        instance_type: &str,
    ) -> AwsResult<InstanceTypeDescription> {
        describe::instance_type(self, instance_type).await
    }

    async fn describe_subnets(
        &self,
        vpc_id: &str,
        availability_zone: &str,
    ) -> AwsResult<Vec<SubnetDescription>> {
        describe::subnets(self, vpc_id, availability_zone).await
    }

    async fn create_eni(&self, req: &CreateEniRequest) -> AwsResult<EniDescription> {
        mutate::create_network_interface(self, req).await
    }

    async fn attach_eni(
        &self,
        eni_id: &str,
        instance_id: &str,
        device_index: u32,
        network_card: u32,
    ) -> AwsResult<String> {
        mutate::attach_network_interface(self, eni_id, instance_id, device_index, network_card)
            .await
    }

    async fn detach_eni(&self, attachment_id: &str, force: bool) -> AwsResult<()> {
        mutate::detach_network_interface(self, attachment_id, force).await
    }

    async fn delete_eni(&self, eni_id: &str) -> AwsResult<()> {
        mutate::delete_network_interface(self, eni_id).await
    }

    async fn set_delete_on_termination(&self, eni_id: &str, attachment_id: &str) -> AwsResult<()> {
        mutate::set_delete_on_termination(self, eni_id, attachment_id).await
    }

    async fn set_security_groups(&self, eni_id: &str, groups: &[String]) -> AwsResult<()> {
        mutate::set_security_groups(self, eni_id, groups).await
    }

    async fn assign_ips(&self, eni_id: &str, count: u32) -> AwsResult<AssignedAddresses> {
        mutate::assign_private_ip_addresses(self, eni_id, count, false).await
    }

    async fn assign_prefixes(&self, eni_id: &str, count: u32) -> AwsResult<AssignedAddresses> {
        mutate::assign_private_ip_addresses(self, eni_id, count, true).await
    }

    async fn unassign_ips(&self, eni_id: &str, ips: &[Ipv4Addr]) -> AwsResult<()> {
        mutate::unassign_private_ip_addresses(self, eni_id, ips, &[]).await
    }

    async fn unassign_prefixes(&self, eni_id: &str, prefixes: &[Ipv4Net]) -> AwsResult<()> {
        mutate::unassign_private_ip_addresses(self, eni_id, &[], prefixes).await
    }

    async fn assign_ipv6_prefixes(&self, eni_id: &str, count: u32) -> AwsResult<Vec<Ipv6Net>> {
        mutate::assign_ipv6_prefixes(self, eni_id, count).await
    }

    async fn unassign_ipv6_prefixes(&self, eni_id: &str, prefixes: &[Ipv6Net]) -> AwsResult<()> {
        mutate::unassign_ipv6_prefixes(self, eni_id, prefixes).await
    }

    async fn create_tags(&self, resource_ids: &[String], tags: &Tags) -> AwsResult<()> {
        mutate::create_tags(self, resource_ids, tags).await
    }
}

/// Default backoff between EC2 attempts.
pub fn default_backoff() -> Backoff {
    Backoff {
        base: Duration::from_millis(200),
        ..Backoff::default()
    }
}
