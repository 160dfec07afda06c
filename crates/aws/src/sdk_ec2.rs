//! [`Ec2`] on `aws-sdk-ec2`: client-side token buckets, our own jittered retries (the SDK's
//! are disabled so that every attempt is counted), typed errors.

use std::future::Future;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk_ec2::Client;
use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::types as sdk;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use ipnet::Ipv4Net;
use tokio::time::Instant;

use crate::backoff::{Backoff, unit_from};
use crate::error::{AwsError, ErrorKind, classify_code, classify_status};
use crate::observe::ApiObserver;
use crate::token_bucket::{ApiFamily, RateLimiter};
use crate::traits::{AwsResult, Ec2};
use crate::types::{
    AssignedAddresses, CreateEniRequest, EniAttachment, EniDescription, Filter,
    InstanceDescription, InstanceTypeDescription, SubnetDescription, Tags,
};

/// The real EC2 client.
pub struct SdkEc2 {
    client: Client,
    limiter: RateLimiter,
    backoff: Backoff,
    observer: Arc<dyn ApiObserver>,
    seed: AtomicU64,
}

/// Converts an SDK error into a typed [`AwsError`].
pub fn sdk_error<E>(api: &str, err: SdkError<E, HttpResponse>) -> AwsError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let status = err.raw_response().map(|r| r.status().as_u16());
    let code = err.code().map(str::to_string);
    let message = err
        .message()
        .map(str::to_string)
        .unwrap_or_else(|| DisplayErrorContext(&err).to_string());
    let by_code = code.as_deref().map(classify_code);
    let kind = match (by_code, &err) {
        (Some(kind), _) if kind != ErrorKind::Other => kind,
        (_, SdkError::TimeoutError(_) | SdkError::DispatchFailure(_)) => ErrorKind::Unavailable,
        _ => status.map(classify_status).unwrap_or(ErrorKind::Other),
    };
    AwsError::new(kind, api, code, message)
}

fn to_filter(f: &Filter) -> sdk::Filter {
    sdk::Filter::builder()
        .name(&f.name)
        .set_values(Some(f.values.clone()))
        .build()
}

fn tags_of(tags: &[sdk::Tag]) -> Tags {
    tags.iter()
        .filter_map(|t| {
            Some((
                t.key()?.to_string(),
                t.value().unwrap_or_default().to_string(),
            ))
        })
        .collect()
}

fn sdk_tags(tags: &Tags) -> Vec<sdk::Tag> {
    tags.iter()
        .map(|(k, v)| sdk::Tag::builder().key(k).value(v).build())
        .collect()
}

fn u32_of(v: Option<i32>) -> u32 {
    v.and_then(|v| u32::try_from(v).ok()).unwrap_or(0)
}

fn eni_of(n: &sdk::NetworkInterface) -> EniDescription {
    let primary_ip = n.private_ip_address().and_then(|ip| ip.parse().ok());
    let mut secondary_ips: Vec<Ipv4Addr> = n
        .private_ip_addresses()
        .iter()
        .filter(|a| a.primary() != Some(true))
        .filter_map(|a| a.private_ip_address()?.parse().ok())
        .filter(|ip| Some(*ip) != primary_ip)
        .collect();
    secondary_ips.sort();
    let mut prefixes: Vec<Ipv4Net> = n
        .ipv4_prefixes()
        .iter()
        .filter_map(|p| p.ipv4_prefix()?.parse().ok())
        .collect();
    prefixes.sort();
    EniDescription {
        id: n.network_interface_id().unwrap_or_default().to_string(),
        mac: n.mac_address().unwrap_or_default().to_string(),
        subnet_id: n.subnet_id().unwrap_or_default().to_string(),
        vpc_id: n.vpc_id().unwrap_or_default().to_string(),
        availability_zone: n.availability_zone().unwrap_or_default().to_string(),
        description: n.description().unwrap_or_default().to_string(),
        status: n
            .status()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default(),
        interface_type: n
            .interface_type()
            .map(|t| t.as_str().to_string())
            .unwrap_or_else(|| "interface".to_string()),
        primary_ip,
        secondary_ips,
        prefixes,
        security_groups: n
            .groups()
            .iter()
            .filter_map(|g| g.group_id().map(str::to_string))
            .collect(),
        tags: tags_of(n.tag_set()),
        attachment: n.attachment().and_then(|a| {
            Some(EniAttachment {
                attachment_id: a.attachment_id()?.to_string(),
                instance_id: a.instance_id().unwrap_or_default().to_string(),
                device_index: u32_of(a.device_index()),
                network_card: u32_of(a.network_card_index()),
                delete_on_termination: a.delete_on_termination().unwrap_or(false),
            })
        }),
    }
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
        }
    }

    /// Runs one action under the rate limit, retrying throttling and 5xx with jittered
    /// backoff; every attempt is observed.
    async fn call<T, F, Fut>(&self, action: &'static str, mut op: F) -> AwsResult<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = AwsResult<T>>,
    {
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

    /// `AssignPrivateIpAddresses` with a secondary-IP or a prefix count; answers only the
    /// new addresses, as EC2 does.
    async fn assign(
        &self,
        eni_id: &str,
        count: u32,
        prefixes: bool,
    ) -> AwsResult<AssignedAddresses> {
        const API: &str = "AssignPrivateIpAddresses";
        let out = self
            .call(API, || {
                let r = self
                    .client
                    .assign_private_ip_addresses()
                    .network_interface_id(eni_id);
                let r = if prefixes {
                    r.ipv4_prefix_count(count as i32)
                } else {
                    r.secondary_private_ip_address_count(count as i32)
                };
                async move { r.send().await.map_err(|e| sdk_error(API, e)) }
            })
            .await?;
        Ok(AssignedAddresses {
            ips: out
                .assigned_private_ip_addresses()
                .iter()
                .filter_map(|a| a.private_ip_address()?.parse().ok())
                .collect(),
            prefixes: out
                .assigned_ipv4_prefixes()
                .iter()
                .filter_map(|p| p.ipv4_prefix()?.parse().ok())
                .collect(),
        })
    }

    /// `UnassignPrivateIpAddresses`; nothing to give back is no call.
    async fn unassign(
        &self,
        eni_id: &str,
        ips: &[Ipv4Addr],
        prefixes: &[Ipv4Net],
    ) -> AwsResult<()> {
        const API: &str = "UnassignPrivateIpAddresses";
        if ips.is_empty() && prefixes.is_empty() {
            return Ok(());
        }
        let list = |v: Vec<String>| (!v.is_empty()).then_some(v);
        self.call(API, || {
            let r = self
                .client
                .unassign_private_ip_addresses()
                .network_interface_id(eni_id)
                .set_private_ip_addresses(list(ips.iter().map(ToString::to_string).collect()))
                .set_ipv4_prefixes(list(prefixes.iter().map(ToString::to_string).collect()));
            async move { r.send().await.map(|_| ()).map_err(|e| sdk_error(API, e)) }
        })
        .await
    }

    async fn describe_pages(
        &self,
        ids: &[String],
        filters: &[Filter],
    ) -> AwsResult<Vec<EniDescription>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .call("DescribeNetworkInterfaces", || {
                    let mut req = self
                        .client
                        .describe_network_interfaces()
                        .set_next_token(token.clone())
                        .set_filters(
                            (!filters.is_empty()).then(|| filters.iter().map(to_filter).collect()),
                        );
                    if !ids.is_empty() {
                        req = req.set_network_interface_ids(Some(ids.to_vec()));
                    } else {
                        req = req.max_results(1000);
                    }
                    async move {
                        req.send()
                            .await
                            .map_err(|e| sdk_error("DescribeNetworkInterfaces", e))
                    }
                })
                .await?;
            out.extend(page.network_interfaces().iter().map(eni_of));
            token = page
                .next_token()
                .filter(|t| !t.is_empty())
                .map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        Ok(out)
    }
}

fn no_filter_error(api: &str) -> AwsError {
    AwsError::new(
        ErrorKind::InvalidRequest,
        api,
        None,
        "refusing an unfiltered Describe call (give IDs or filters)",
    )
}

impl Ec2 for SdkEc2 {
    async fn describe_instance_enis(&self, instance_id: &str) -> AwsResult<Vec<EniDescription>> {
        self.describe_pages(
            &[],
            &[Filter::new("attachment.instance-id", &[instance_id])],
        )
        .await
    }

    async fn describe_enis(&self, ids: &[String]) -> AwsResult<Vec<EniDescription>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.describe_pages(ids, &[]).await
    }

    async fn describe_enis_filtered(&self, filters: &[Filter]) -> AwsResult<Vec<EniDescription>> {
        if filters.is_empty() {
            return Err(no_filter_error("DescribeNetworkInterfaces"));
        }
        self.describe_pages(&[], filters).await
    }

    async fn describe_instance(&self, instance_id: &str) -> AwsResult<InstanceDescription> {
        let out = self
            .call("DescribeInstances", || {
                let req = self.client.describe_instances().instance_ids(instance_id);
                async move {
                    req.send()
                        .await
                        .map_err(|e| sdk_error("DescribeInstances", e))
                }
            })
            .await?;
        let instance = out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .find(|i| i.instance_id() == Some(instance_id))
            .ok_or_else(|| {
                AwsError::new(
                    ErrorKind::NotFound,
                    "DescribeInstances",
                    None,
                    format!("instance {instance_id} not found"),
                )
            })?;
        Ok(InstanceDescription {
            id: instance_id.to_string(),
            instance_type: instance
                .instance_type()
                .map(|t| t.as_str().to_string())
                .unwrap_or_default(),
            availability_zone: instance
                .placement()
                .and_then(|p| p.availability_zone())
                .unwrap_or_default()
                .to_string(),
            subnet_id: instance.subnet_id().unwrap_or_default().to_string(),
            vpc_id: instance.vpc_id().unwrap_or_default().to_string(),
            attached: instance
                .network_interfaces()
                .iter()
                .filter_map(|n| n.attachment())
                .map(|a| (u32_of(a.network_card_index()), u32_of(a.device_index())))
                .collect(),
        })
    }

    async fn describe_instance_type(
        &self,
        instance_type: &str,
    ) -> AwsResult<InstanceTypeDescription> {
        let out = self
            .call("DescribeInstanceTypes", || {
                let req = self
                    .client
                    .describe_instance_types()
                    .instance_types(sdk::InstanceType::from(instance_type));
                async move {
                    req.send()
                        .await
                        .map_err(|e| sdk_error("DescribeInstanceTypes", e))
                }
            })
            .await?;
        let info = out.instance_types().first().ok_or_else(|| {
            AwsError::new(
                ErrorKind::NotFound,
                "DescribeInstanceTypes",
                None,
                format!("unknown instance type {instance_type}"),
            )
        })?;
        let net = info.network_info();
        Ok(InstanceTypeDescription {
            instance_type: instance_type.to_string(),
            max_enis: u32_of(net.and_then(|n| n.maximum_network_interfaces())),
            ipv4_per_eni: u32_of(net.and_then(|n| n.ipv4_addresses_per_interface())),
            default_card: u32_of(net.and_then(|n| n.default_network_card_index())),
            cards: net
                .map(|n| {
                    n.network_cards()
                        .iter()
                        .map(|c| {
                            (
                                u32_of(c.network_card_index()),
                                u32_of(c.maximum_network_interfaces()),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default(),
            hypervisor: info
                .hypervisor()
                .map(|h| h.as_str().to_string())
                .unwrap_or_else(|| "unknown".into()),
            bare_metal: info.bare_metal().unwrap_or(false),
            vcpus: info
                .v_cpu_info()
                .and_then(|v| v.default_v_cpus())
                .and_then(|v| u32::try_from(v).ok()),
        })
    }

    async fn describe_subnets(
        &self,
        vpc_id: &str,
        availability_zone: &str,
    ) -> AwsResult<Vec<SubnetDescription>> {
        let out = self
            .call("DescribeSubnets", || {
                let req = self
                    .client
                    .describe_subnets()
                    .filters(to_filter(&Filter::new("vpc-id", &[vpc_id])))
                    .filters(to_filter(&Filter::new(
                        "availability-zone",
                        &[availability_zone],
                    )));
                async move {
                    req.send()
                        .await
                        .map_err(|e| sdk_error("DescribeSubnets", e))
                }
            })
            .await?;
        Ok(out
            .subnets()
            .iter()
            .map(|s| SubnetDescription {
                id: s.subnet_id().unwrap_or_default().to_string(),
                vpc_id: s.vpc_id().unwrap_or_default().to_string(),
                availability_zone: s.availability_zone().unwrap_or_default().to_string(),
                cidr: s.cidr_block().and_then(|c| c.parse().ok()),
                available_ips: u32_of(s.available_ip_address_count()),
                tags: tags_of(s.tags()),
            })
            .collect())
    }

    async fn create_eni(&self, req: &CreateEniRequest) -> AwsResult<EniDescription> {
        let out = self
            .call("CreateNetworkInterface", || {
                let mut r = self
                    .client
                    .create_network_interface()
                    .subnet_id(&req.subnet_id)
                    .description(&req.description)
                    .set_groups(
                        (!req.security_groups.is_empty()).then(|| req.security_groups.clone()),
                    );
                if req.secondary_ips > 0 {
                    r = r.secondary_private_ip_address_count(req.secondary_ips as i32);
                }
                if req.prefixes > 0 {
                    r = r.ipv4_prefix_count(req.prefixes as i32);
                }
                if !req.tags.is_empty() {
                    r = r.tag_specifications(
                        sdk::TagSpecification::builder()
                            .resource_type(sdk::ResourceType::NetworkInterface)
                            .set_tags(Some(sdk_tags(&req.tags)))
                            .build(),
                    );
                }
                async move {
                    r.send()
                        .await
                        .map_err(|e| sdk_error("CreateNetworkInterface", e))
                }
            })
            .await?;
        out.network_interface().map(eni_of).ok_or_else(|| {
            AwsError::new(
                ErrorKind::Other,
                "CreateNetworkInterface",
                None,
                "response without a network interface",
            )
        })
    }

    async fn attach_eni(
        &self,
        eni_id: &str,
        instance_id: &str,
        device_index: u32,
        network_card: u32,
    ) -> AwsResult<String> {
        let out = self
            .call("AttachNetworkInterface", || {
                let r = self
                    .client
                    .attach_network_interface()
                    .network_interface_id(eni_id)
                    .instance_id(instance_id)
                    .device_index(device_index as i32)
                    .network_card_index(network_card as i32);
                async move {
                    r.send()
                        .await
                        .map_err(|e| sdk_error("AttachNetworkInterface", e))
                }
            })
            .await?;
        out.attachment_id().map(str::to_string).ok_or_else(|| {
            AwsError::new(
                ErrorKind::Other,
                "AttachNetworkInterface",
                None,
                "response without an attachment ID",
            )
        })
    }

    async fn detach_eni(&self, attachment_id: &str, force: bool) -> AwsResult<()> {
        self.call("DetachNetworkInterface", || {
            let r = self
                .client
                .detach_network_interface()
                .attachment_id(attachment_id)
                .force(force);
            async move {
                r.send()
                    .await
                    .map(|_| ())
                    .map_err(|e| sdk_error("DetachNetworkInterface", e))
            }
        })
        .await
    }

    async fn delete_eni(&self, eni_id: &str) -> AwsResult<()> {
        self.call("DeleteNetworkInterface", || {
            let r = self
                .client
                .delete_network_interface()
                .network_interface_id(eni_id);
            async move {
                r.send()
                    .await
                    .map(|_| ())
                    .map_err(|e| sdk_error("DeleteNetworkInterface", e))
            }
        })
        .await
    }

    async fn set_delete_on_termination(&self, eni_id: &str, attachment_id: &str) -> AwsResult<()> {
        self.call("ModifyNetworkInterfaceAttribute", || {
            let r = self
                .client
                .modify_network_interface_attribute()
                .network_interface_id(eni_id)
                .attachment(
                    sdk::NetworkInterfaceAttachmentChanges::builder()
                        .attachment_id(attachment_id)
                        .delete_on_termination(true)
                        .build(),
                );
            async move {
                r.send()
                    .await
                    .map(|_| ())
                    .map_err(|e| sdk_error("ModifyNetworkInterfaceAttribute", e))
            }
        })
        .await
    }

    async fn set_security_groups(&self, eni_id: &str, groups: &[String]) -> AwsResult<()> {
        self.call("ModifyNetworkInterfaceAttribute", || {
            let r = self
                .client
                .modify_network_interface_attribute()
                .network_interface_id(eni_id)
                .set_groups(Some(groups.to_vec()));
            async move {
                r.send()
                    .await
                    .map(|_| ())
                    .map_err(|e| sdk_error("ModifyNetworkInterfaceAttribute", e))
            }
        })
        .await
    }

    async fn assign_ips(&self, eni_id: &str, count: u32) -> AwsResult<AssignedAddresses> {
        self.assign(eni_id, count, false).await
    }

    async fn assign_prefixes(&self, eni_id: &str, count: u32) -> AwsResult<AssignedAddresses> {
        self.assign(eni_id, count, true).await
    }

    async fn unassign_ips(&self, eni_id: &str, ips: &[Ipv4Addr]) -> AwsResult<()> {
        self.unassign(eni_id, ips, &[]).await
    }

    async fn unassign_prefixes(&self, eni_id: &str, prefixes: &[Ipv4Net]) -> AwsResult<()> {
        self.unassign(eni_id, &[], prefixes).await
    }

    async fn create_tags(&self, resource_ids: &[String], tags: &Tags) -> AwsResult<()> {
        if resource_ids.is_empty() || tags.is_empty() {
            return Ok(());
        }
        self.call("CreateTags", || {
            let r = self
                .client
                .create_tags()
                .set_resources(Some(resource_ids.to_vec()))
                .set_tags(Some(sdk_tags(tags)));
            async move {
                r.send()
                    .await
                    .map(|_| ())
                    .map_err(|e| sdk_error("CreateTags", e))
            }
        })
        .await
    }
}

/// Default backoff between EC2 attempts.
pub fn default_backoff() -> Backoff {
    Backoff {
        base: Duration::from_millis(200),
        ..Backoff::default()
    }
}
