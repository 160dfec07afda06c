//! The narrow interfaces ipamd uses: [`Ec2`] (mutations and the truth about ENIs) and
//! [`Imds`] (cheap hints). One real implementation each, on the AWS SDK.

use std::future::Future;
use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};

use crate::error::AwsError;
use crate::types::{
    AssignedAddresses, CreateEniRequest, EniDescription, Filter, InstanceDescription,
    InstanceTypeDescription, SubnetDescription, Tags,
};

/// Result of an AWS call.
pub type AwsResult<T> = Result<T, AwsError>;

/// The EC2 actions of the agent. Describe calls are always filtered (by instance, ENI IDs
/// or explicit filters); there is deliberately no unfiltered listing.
pub trait Ec2: Send + Sync {
    /// ENIs attached to `instance_id` (filter `attachment.instance-id`).
    fn describe_instance_enis(
        &self,
        instance_id: &str,
    ) -> impl Future<Output = AwsResult<Vec<EniDescription>>> + Send;
    /// ENIs by ID (`NetworkInterfaceId.N`); an unknown ID is a `NotFound` error.
    fn describe_enis(
        &self,
        ids: &[String],
    ) -> impl Future<Output = AwsResult<Vec<EniDescription>>> + Send;
    /// ENIs matching filters (at least one), all pages.
    fn describe_enis_filtered(
        &self,
        filters: &[Filter],
    ) -> impl Future<Output = AwsResult<Vec<EniDescription>>> + Send;
    fn describe_instance(
        &self,
        instance_id: &str,
    ) -> impl Future<Output = AwsResult<InstanceDescription>> + Send;
    fn describe_instance_type(
        &self,
        instance_type: &str,
    ) -> impl Future<Output = AwsResult<InstanceTypeDescription>> + Send;
    /// Subnets of a VPC in one availability zone.
    fn describe_subnets(
        &self,
        vpc_id: &str,
        availability_zone: &str,
    ) -> impl Future<Output = AwsResult<Vec<SubnetDescription>>> + Send;
    fn create_eni(
        &self,
        req: &CreateEniRequest,
    ) -> impl Future<Output = AwsResult<EniDescription>> + Send;
    /// Returns the attachment ID.
    fn attach_eni(
        &self,
        eni_id: &str,
        instance_id: &str,
        device_index: u32,
        network_card: u32,
    ) -> impl Future<Output = AwsResult<String>> + Send;
    fn detach_eni(
        &self,
        attachment_id: &str,
        force: bool,
    ) -> impl Future<Output = AwsResult<()>> + Send;
    fn delete_eni(&self, eni_id: &str) -> impl Future<Output = AwsResult<()>> + Send;
    fn set_delete_on_termination(
        &self,
        eni_id: &str,
        attachment_id: &str,
    ) -> impl Future<Output = AwsResult<()>> + Send;
    fn set_security_groups(
        &self,
        eni_id: &str,
        groups: &[String],
    ) -> impl Future<Output = AwsResult<()>> + Send;
    fn assign_ips(
        &self,
        eni_id: &str,
        count: u32,
    ) -> impl Future<Output = AwsResult<AssignedAddresses>> + Send;
    fn assign_prefixes(
        &self,
        eni_id: &str,
        count: u32,
    ) -> impl Future<Output = AwsResult<AssignedAddresses>> + Send;
    fn unassign_ips(
        &self,
        eni_id: &str,
        ips: &[Ipv4Addr],
    ) -> impl Future<Output = AwsResult<()>> + Send;
    fn unassign_prefixes(
        &self,
        eni_id: &str,
        prefixes: &[Ipv4Net],
    ) -> impl Future<Output = AwsResult<()>> + Send;
    /// `AssignIpv6Addresses` with `Ipv6PrefixCount`; answers the new prefixes (upstream's
    /// `AllocIPv6Prefixes`).
    fn assign_ipv6_prefixes(
        &self,
        eni_id: &str,
        count: u32,
    ) -> impl Future<Output = AwsResult<Vec<Ipv6Net>>> + Send;
    /// `UnassignIpv6Addresses` with `Ipv6Prefix.N`; nothing to give back is no call.
    fn unassign_ipv6_prefixes(
        &self,
        eni_id: &str,
        prefixes: &[Ipv6Net],
    ) -> impl Future<Output = AwsResult<()>> + Send;
    fn create_tags(
        &self,
        resource_ids: &[String],
        tags: &Tags,
    ) -> impl Future<Output = AwsResult<()>> + Send;
}

/// Per-MAC facts from IMDS (`network/interfaces/macs/<mac>/...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImdsEni {
    pub mac: String,
    pub eni_id: String,
    pub device_number: u32,
    /// Absent → 0.
    pub network_card: u32,
    pub subnet_id: String,
    pub subnet_cidr: Option<Ipv4Net>,
    /// `local-ipv4s`, primary first.
    pub ipv4s: Vec<Ipv4Addr>,
    pub ipv4_prefixes: Vec<Ipv4Net>,
    /// `ipv6s` (absent → empty, upstream's `GetIPv6s`).
    pub ipv6s: Vec<Ipv6Addr>,
    /// `ipv6-prefix` (absent → empty, upstream's `GetIPv6Prefixes`).
    pub ipv6_prefixes: Vec<Ipv6Net>,
    /// `subnet-ipv6-cidr-blocks` (absent → empty: an IPv4-only subnet,
    /// upstream's `GetSubnetIPv6CIDRBlocks`).
    pub subnet_ipv6_cidrs: Vec<Ipv6Net>,
}

/// The instance's identity from IMDS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceIdentity {
    pub instance_id: String,
    pub instance_type: String,
    pub region: String,
    pub availability_zone: String,
    pub primary_mac: String,
    pub local_ipv4: Ipv4Addr,
}

/// IMDS: hints, never the truth about addresses (EC2 is).
pub trait Imds: Send + Sync {
    fn identity(&self) -> impl Future<Output = AwsResult<InstanceIdentity>> + Send;
    /// Attached MACs (trailing `/` stripped).
    fn macs(&self) -> impl Future<Output = AwsResult<Vec<String>>> + Send;
    fn eni(&self, mac: &str) -> impl Future<Output = AwsResult<ImdsEni>> + Send;
    fn security_group_ids(&self, mac: &str) -> impl Future<Output = AwsResult<Vec<String>>> + Send;
    fn vpc_ipv4_cidrs(&self, mac: &str) -> impl Future<Output = AwsResult<Vec<Ipv4Net>>> + Send;
    /// `vpc-ipv6-cidr-blocks` (absent → empty, upstream's `GetVPCIPv6CIDRBlocks`).
    fn vpc_ipv6_cidrs(&self, mac: &str) -> impl Future<Output = AwsResult<Vec<Ipv6Net>>> + Send;
    /// The instance's primary IPv6 address, meta-data `ipv6` (absent → `None`, upstream's
    /// `GetLocalIPv6`).
    fn primary_ipv6(&self) -> impl Future<Output = AwsResult<Option<Ipv6Addr>>> + Send;
}
