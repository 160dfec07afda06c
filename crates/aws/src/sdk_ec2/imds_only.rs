//! `ENABLE_IMDS_ONLY_MODE`: the ENIs of the instance come from IMDS and no EC2 action is
//! sent but `DescribeInstanceTypes` (upstream's `DescribeAllENIs` in `awsutils.go` returns
//! the IMDS metadata with an empty tag map, no trunk and no EFA ENIs; its
//! `FetchInstanceTypeLimits` still asks EC2 for an instance type missing from the table).
//! Every other action is refused before it leaves the process, so the mode cannot send a
//! Describe or a mutation by mistake (docs/ipamd.md "IMDS-only mode").

use std::sync::Arc;

use crate::error::{AwsError, ErrorKind};
use crate::sdk_imds::SdkImds;
use crate::traits::{AwsResult, Imds};
use crate::types::{EniAttachment, EniDescription, Tags};

/// The one EC2 action IMDS-only mode still sends.
pub(super) const ALLOWED: &str = "DescribeInstanceTypes";

/// Where the ENIs come from in IMDS-only mode.
pub(super) struct ImdsOnly {
    pub(super) imds: Arc<SdkImds>,
    pub(super) instance_id: String,
    pub(super) availability_zone: String,
}

/// The refusal of an EC2 action in IMDS-only mode.
pub(super) fn refused(action: &str) -> AwsError {
    AwsError::new(
        ErrorKind::InvalidRequest,
        action,
        None,
        "not sent: ENABLE_IMDS_ONLY_MODE=true allows no EC2 calls but DescribeInstanceTypes",
    )
}

impl ImdsOnly {
    /// The attached ENIs as IMDS lists them; `ids` keeps only those (an unknown ID is
    /// `NotFound`, as EC2 answers).
    pub(super) async fn enis(&self, ids: Option<&[String]>) -> AwsResult<Vec<EniDescription>> {
        let mut out = Vec::new();
        for mac in self.imds.macs().await? {
            let eni = self.imds.eni(&mac).await?;
            if ids.is_some_and(|ids| !ids.contains(&eni.eni_id)) {
                continue;
            }
            let vpc_id = self
                .imds
                .get(&format!("network/interfaces/macs/{mac}/vpc-id"))
                .await?;
            let security_groups = self.imds.security_group_ids(&mac).await?;
            let mut secondary_ips: Vec<_> = eni.ipv4s.iter().skip(1).copied().collect();
            secondary_ips.sort();
            let mut prefixes = eni.ipv4_prefixes.clone();
            prefixes.sort();
            out.push(EniDescription {
                id: eni.eni_id.clone(),
                mac: eni.mac.clone(),
                subnet_id: eni.subnet_id.clone(),
                vpc_id: vpc_id.trim().to_string(),
                availability_zone: self.availability_zone.clone(),
                description: String::new(),
                status: "in-use".into(),
                interface_type: "interface".into(),
                primary_ip: eni.ipv4s.first().copied(),
                secondary_ips,
                prefixes,
                ipv6_addresses: sorted(&eni.ipv6s),
                ipv6_prefixes: sorted(&eni.ipv6_prefixes),
                security_groups,
                tags: Tags::new(),
                // IMDS does not say; new ENIs are not created in this mode.
                conntrack: None,
                attachment: Some(EniAttachment {
                    // IMDS has no attachment ID; nothing in this mode detaches.
                    attachment_id: String::new(),
                    instance_id: self.instance_id.clone(),
                    device_index: eni.device_number,
                    network_card: eni.network_card,
                    delete_on_termination: true,
                }),
            });
        }
        if let Some(ids) = ids
            && let Some(missing) = ids.iter().find(|id| !out.iter().any(|e| &e.id == *id))
        {
            return Err(AwsError::new(
                ErrorKind::NotFound,
                "DescribeNetworkInterfaces",
                Some("InvalidNetworkInterfaceID.NotFound".into()),
                format!("the network interface '{missing}' is not attached (IMDS)"),
            ));
        }
        Ok(out)
    }
}

fn sorted<T: Ord + Clone>(items: &[T]) -> Vec<T> {
    let mut out = items.to_vec();
    out.sort();
    out
}
