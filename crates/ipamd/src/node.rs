//! Building the datastore from EC2's truth: `DescribeNetworkInterfaces` filtered by the
//! instance says which ENIs, addresses and prefixes the node really has (IMDS is only a
//! hint and may lag).

use aws::{EniDescription, Tags};
use ipam::{Datastore, DatastoreError, NewEni, Timestamp};
use ipnet::Ipv4Net;

/// Tag keys upstream reads and writes (`TagENI` in `pkg/awsutils/awsutils.go`;
/// docs/upstream-compat.md).
pub mod tags {
    pub const INSTANCE_ID: &str = "node.k8s.amazonaws.com/instance_id";
    pub const CLUSTER_NAME: &str = "cluster.k8s.amazonaws.com/name";
    pub const OWNER: &str = "eks:eni:owner";
    pub const OWNER_VALUE: &str = "amazon-vpc-cni";
    pub const CREATED_AT: &str = "node.k8s.amazonaws.com/createdAt";
    pub const NO_MANAGE: &str = "node.k8s.amazonaws.com/no_manage";
}

/// Description prefix of ENIs the agent creates.
pub const ENI_DESCRIPTION_PREFIX: &str = "aws-K8S-";

/// Tags for an ENI the agent creates or adopts: instance id, cluster tags when
/// `CLUSTER_NAME` is set, `ADDITIONAL_ENI_TAGS` (reserved keys were dropped by config).
pub fn eni_tags(instance_id: &str, cluster_name: &str, additional: &Tags) -> Tags {
    let mut t = additional.clone();
    t.insert(tags::INSTANCE_ID.to_string(), instance_id.to_string());
    if !cluster_name.is_empty() {
        t.insert(tags::CLUSTER_NAME.to_string(), cluster_name.to_string());
        t.insert(tags::OWNER.to_string(), tags::OWNER_VALUE.to_string());
    }
    t
}

/// The tags of [`eni_tags`] the ENI lacks or has with another value (what upstream's `TagENI`
/// sends; `createdAt` is never part of it).
pub fn missing_tags(
    eni: &EniDescription,
    instance_id: &str,
    cluster_name: &str,
    additional: &Tags,
) -> Tags {
    eni_tags(instance_id, cluster_name, additional)
        .into_iter()
        .filter(|(k, v)| eni.tags.get(k) != Some(v))
        .collect()
}

/// Upstream's `TagENI` retries: 5 attempts, 500 ms doubling to 1 min, 30 % jitter.
pub const TAG_RETRIES: aws::backoff::Backoff = aws::backoff::Backoff {
    base: std::time::Duration::from_millis(500),
    max: std::time::Duration::from_secs(60),
    factor: 2.0,
    jitter: 0.3,
    max_attempts: 5,
};

/// Sends `CreateTags` for the tags an ENI lacks (nothing when none), retrying any error
/// with `retries` as upstream's `TagENI` does; the last error when every attempt failed.
pub async fn tag_eni<E: aws::Ec2>(
    ec2: &E,
    eni: &str,
    missing: &Tags,
    retries: &aws::backoff::Backoff,
) -> Result<(), aws::AwsError> {
    if missing.is_empty() {
        return Ok(());
    }
    let eni_ids = [eni.to_owned()];
    aws::backoff::retry(
        retries,
        |e: &aws::AwsError| {
            tracing::warn!(eni, "tagging failed: {e}");
            true
        },
        |_| ec2.create_tags(&eni_ids, missing),
    )
    .await
}

/// Whether ipamd manages this ENI (upstream `setUnmanagedENIs`, `pkg/ipamd/ipamd.go`):
/// `no_manage=true` never (except the primary), tagged with this instance always, untagged
/// per `MANAGE_UNTAGGED_ENI`.
pub fn is_managed(eni: &EniDescription, instance_id: &str, manage_untagged: bool) -> bool {
    let primary = eni
        .attachment
        .as_ref()
        .is_some_and(|a| a.device_index == 0 && a.network_card == 0);
    if primary {
        return true;
    }
    if eni.interface_type == "efa-only" {
        return false;
    }
    match eni.tags.get(tags::NO_MANAGE) {
        Some(v) => v != "true",
        None => match eni.tags.get(tags::INSTANCE_ID) {
            Some(owner) => owner == instance_id || manage_untagged,
            None => manage_untagged,
        },
    }
}

/// Adds one ENI and every address and prefix EC2 reports for it (duplicates are fine).
pub fn add_eni_from_ec2(
    ds: &mut Datastore,
    eni: &EniDescription,
    now: Timestamp,
) -> Result<(), DatastoreError> {
    add_eni_record(ds, eni, now)?;
    let cidrs = eni
        .secondary_ips
        .iter()
        .map(|ip| Ipv4Net::from(*ip))
        .chain(eni.prefixes.iter().copied());
    for cidr in cidrs {
        match ds.add_ipv4_cidr(&eni.id, cidr) {
            Ok(()) | Err(DatastoreError::IpAlreadyInStore) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The ENI itself (device, primary/trunk/EFA, route table, subnet) without its addresses;
/// an ENI already known is fine.
pub fn add_eni_record(
    ds: &mut Datastore,
    eni: &EniDescription,
    now: Timestamp,
) -> Result<(), DatastoreError> {
    let (card, device) = eni
        .attachment
        .as_ref()
        .map(|a| (a.network_card, a.device_index))
        .unwrap_or((0, 0));
    let spec = NewEni {
        id: eni.id.clone(),
        device_number: device,
        is_primary: card == 0 && device == 0,
        is_trunk: eni.interface_type == "trunk",
        is_efa: eni.interface_type == "efa",
        excluded: false,
        route_table_id: net::route_table::route_table_id(card, device),
        subnet_id: eni.subnet_id.clone(),
    };
    match ds.add_eni(spec, now) {
        Ok(()) | Err(DatastoreError::DuplicateEni) => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws::EniAttachment;

    fn eni(device: u32, tags: &[(&str, &str)]) -> EniDescription {
        EniDescription {
            id: format!("eni-{device}"),
            mac: String::new(),
            subnet_id: "subnet-1".into(),
            vpc_id: "vpc-1".into(),
            availability_zone: "a".into(),
            description: String::new(),
            status: "in-use".into(),
            interface_type: "interface".into(),
            primary_ip: None,
            secondary_ips: vec!["10.0.0.5".parse().unwrap(), "10.0.0.6".parse().unwrap()],
            prefixes: vec!["10.0.0.16/28".parse().unwrap()],
            ipv6_addresses: vec![],
            ipv6_prefixes: vec![],
            security_groups: vec![],
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            conntrack: None,
            attachment: Some(EniAttachment {
                attachment_id: "a".into(),
                instance_id: "i-1".into(),
                device_index: device,
                network_card: 0,
                delete_on_termination: true,
            }),
        }
    }

    #[test]
    fn management_follows_tags_as_upstream() {
        assert!(
            is_managed(&eni(0, &[(tags::NO_MANAGE, "true")]), "i-1", false),
            "primary always"
        );
        assert!(!is_managed(
            &eni(1, &[(tags::NO_MANAGE, "true")]),
            "i-1",
            true
        ));
        assert!(is_managed(
            &eni(1, &[(tags::NO_MANAGE, "false")]),
            "i-1",
            false
        ));
        assert!(is_managed(
            &eni(1, &[(tags::INSTANCE_ID, "i-1")]),
            "i-1",
            false
        ));
        assert!(!is_managed(
            &eni(1, &[(tags::INSTANCE_ID, "i-2")]),
            "i-1",
            false
        ));
        assert!(is_managed(&eni(1, &[]), "i-1", true));
        assert!(!is_managed(&eni(1, &[]), "i-1", false));
    }

    #[test]
    fn tags_follow_spec_3_10() {
        let extra = Tags::from([("team".to_string(), "a".to_string())]);
        let t = eni_tags("i-1", "", &extra);
        assert_eq!(t.len(), 2);
        let t = eni_tags("i-1", "demo", &extra);
        assert_eq!(t[tags::CLUSTER_NAME], "demo");
        assert_eq!(t[tags::OWNER], "amazon-vpc-cni");
    }

    #[test]
    fn ec2_truth_fills_the_datastore_with_both_kinds_and_tables() {
        let mut ds = Datastore::new(ipam::DatastoreConfig::default(), Box::new(ipam::NullSink));
        let now = Timestamp::from_unix_secs(1);
        add_eni_from_ec2(&mut ds, &eni(0, &[]), now).unwrap();
        add_eni_from_ec2(&mut ds, &eni(2, &[]), now).unwrap();
        add_eni_from_ec2(&mut ds, &eni(2, &[]), now).unwrap();
        assert_eq!(ds.eni_count(), 2);
        assert_eq!(ds.eni("eni-0").unwrap().route_table_id, 254);
        assert_eq!(ds.eni("eni-2").unwrap().route_table_id, 3);
        // Secondary-IP mode counts the /32s only.
        assert_eq!(ds.stats(now).total_ips, 4);
    }
}
