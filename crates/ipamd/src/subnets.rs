//! Which subnets new ENIs may be created in (subnet discovery: upstream `createENI` and
//! `isSubnetValidForENICreation` in `pkg/awsutils/awsutils.go`): the node's own subnet, plus
//! subnets tagged `kubernetes.io/role/cni` for this cluster, most free first.

use aws::SubnetDescription;
use ipnet::Ipv4Net;

pub use planner::exclusion::{CLUSTER_TAG_PREFIX, ROLE_CNI_TAG};

/// Whether ENIs may be created in `subnet` (upstream's `isSubnetValidForENICreation`).
pub fn valid_for_eni_creation(
    subnet: &SubnetDescription,
    node_subnet: &str,
    cluster_name: &str,
) -> bool {
    match subnet.tags.get(ROLE_CNI_TAG).map(String::as_str) {
        Some("0") => false,
        None => subnet.id == node_subnet,
        Some(_) => planner::exclusion::matches_cluster(&subnet.tags, cluster_name),
    }
}

/// The CIDR of subnet `id` among `subnets` (a DescribeSubnets answer), if listed.
pub fn cidr_of(subnets: &[SubnetDescription], id: &str) -> Option<Ipv4Net> {
    subnets.iter().find(|s| s.id == id).and_then(|s| s.cidr)
}

/// Subnets to try for a new ENI, in order: valid ones by free addresses, most first
/// (stable for equal counts, as upstream's sort).
pub fn candidates(
    subnets: &[SubnetDescription],
    node_subnet: &str,
    cluster_name: &str,
) -> Vec<(String, Option<Ipv4Net>)> {
    let mut valid: Vec<&SubnetDescription> = subnets
        .iter()
        .filter(|s| valid_for_eni_creation(s, node_subnet, cluster_name))
        .collect();
    valid.sort_by_key(|s| std::cmp::Reverse(s.available_ips));
    valid.into_iter().map(|s| (s.id.clone(), s.cidr)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subnet(id: &str, free: u32, tags: &[(&str, &str)]) -> SubnetDescription {
        SubnetDescription {
            id: id.into(),
            vpc_id: "vpc-1".into(),
            availability_zone: "us-west-2a".into(),
            cidr: None,
            ipv6_cidrs: vec![],
            available_ips: free,
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn tagged_subnets_join_the_node_subnet_most_free_first() {
        let subnets = [
            subnet("node", 10, &[]),
            subnet("untagged", 500, &[]),
            subnet("cni-a", 100, &[(ROLE_CNI_TAG, "1")]),
            subnet("cni-b", 300, &[(ROLE_CNI_TAG, "")]),
            subnet("opted-out", 900, &[(ROLE_CNI_TAG, "0")]),
        ];
        let order: Vec<String> = candidates(&subnets, "node", "")
            .into_iter()
            .map(|c| c.0)
            .collect();
        assert_eq!(order, ["cni-b", "cni-a", "node"]);
    }

    #[test]
    fn the_node_subnet_tagged_zero_is_not_a_candidate() {
        let subnets = [subnet("node", 10, &[(ROLE_CNI_TAG, "0")])];
        assert!(candidates(&subnets, "node", "c").is_empty());
        assert!(planner::subnet_excluded(&subnets[0].tags, "c"));
    }

    #[test]
    fn cluster_tags_restrict_a_subnet_to_named_clusters() {
        let mine = subnet(
            "s1",
            1,
            &[
                (ROLE_CNI_TAG, "1"),
                ("cni.networking.k8s.aws/cluster/blue", ""),
            ],
        );
        let other = subnet(
            "s2",
            1,
            &[
                (ROLE_CNI_TAG, "1"),
                ("cni.networking.k8s.aws/cluster/green", "x"),
            ],
        );
        let open = subnet("s3", 1, &[(ROLE_CNI_TAG, "1")]);
        assert!(valid_for_eni_creation(&mine, "n", "blue"));
        assert!(!valid_for_eni_creation(&other, "n", "blue"));
        assert!(valid_for_eni_creation(&open, "n", "blue"));
        // Without CLUSTER_NAME every tagged subnet is valid.
        assert!(valid_for_eni_creation(&other, "n", ""));
        assert!(planner::subnet_excluded(&other.tags, "blue"));
        assert!(!planner::subnet_excluded(&mine.tags, "blue"));
        // Old kubernetes.io/cluster tags are ignored.
        let legacy = subnet(
            "s4",
            1,
            &[
                (ROLE_CNI_TAG, "1"),
                ("kubernetes.io/cluster/green", "shared"),
            ],
        );
        assert!(valid_for_eni_creation(&legacy, "n", "blue"));
    }
}
