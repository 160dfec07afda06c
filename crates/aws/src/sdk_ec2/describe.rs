//! The read-only calls: `DescribeNetworkInterfaces` (paged), `DescribeInstances`,
//! `DescribeInstanceTypes` and `DescribeSubnets`.

use aws_sdk_ec2::types as sdk;

use super::SdkEc2;
use super::convert::{eni_of, instance_of, instance_type_of, sdk_error, subnet_of, to_filter};
use crate::error::{AwsError, ErrorKind};
use crate::traits::AwsResult;
use crate::types::{
    EniDescription, Filter, InstanceDescription, InstanceTypeDescription, SubnetDescription,
};

/// `DescribeNetworkInterfaces` by IDs or filters, following every page.
pub(super) async fn network_interfaces(
    ec2: &SdkEc2,
    ids: &[String],
    filters: &[Filter],
) -> AwsResult<Vec<EniDescription>> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = ec2
            .call("DescribeNetworkInterfaces", || {
                let mut req = ec2
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

/// The refusal of a Describe call that would list the whole region.
pub(super) fn no_filter_error(api: &str) -> AwsError {
    AwsError::new(
        ErrorKind::InvalidRequest,
        api,
        None,
        "refusing an unfiltered Describe call (give IDs or filters)",
    )
}

/// `DescribeInstances` of one instance.
pub(super) async fn instance(ec2: &SdkEc2, instance_id: &str) -> AwsResult<InstanceDescription> {
    let out = ec2
        .call("DescribeInstances", || {
            let req = ec2.client.describe_instances().instance_ids(instance_id);
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
    Ok(instance_of(instance_id, instance))
}

/// `DescribeInstanceTypes` of one type.
pub(super) async fn instance_type(
    ec2: &SdkEc2,
    instance_type: &str,
) -> AwsResult<InstanceTypeDescription> {
    let out = ec2
        .call("DescribeInstanceTypes", || {
            let req = ec2
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
    Ok(instance_type_of(instance_type, info))
}

/// `DescribeSubnets` of one VPC in one availability zone.
pub(super) async fn subnets(
    ec2: &SdkEc2,
    vpc_id: &str,
    availability_zone: &str,
) -> AwsResult<Vec<SubnetDescription>> {
    let out = ec2
        .call("DescribeSubnets", || {
            let req = ec2
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
    Ok(out.subnets().iter().map(subnet_of).collect())
}
