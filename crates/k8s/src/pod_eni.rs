//! The branch-ENI pod (security groups for pods): which pods need a branch ENI and what the
//! VPC Resource Controller's `vpc.amazonaws.com/pod-eni` annotation says. Pure functions,
//! as upstream ipamd reads them in `AddNetwork`/`DelNetwork` (`pkg/ipamd/rpc_handler.go`,
//! `PodENIData`); docs/security-groups-for-pods.md.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use serde_json::Value;

/// The pod annotation the VPC Resource Controller writes.
pub const POD_ENI_ANNOTATION: &str = "vpc.amazonaws.com/pod-eni";

/// The extended resource the controller's webhook puts in a selected pod's first container's
/// limits; upstream matches resource names by this prefix.
pub const POD_ENI_RESOURCE_PREFIX: &str = "vpc.amazonaws.com/pod-eni";

/// The IPv6 gateway of a branch pod (upstream `networkutils.GetIPv6Gateway`: the router's
/// link-local address on every ENI).
pub const IPV6_GATEWAY: Ipv6Addr = Ipv6Addr::new(0xfe80, 0xec2, 0, 0, 0, 0, 0, 1);

/// What ipamd needs to know of a pod for security groups for pods.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodFacts {
    pub namespace: String,
    pub name: String,
    pub uid: Option<String>,
    /// The resource names in the first container's `resources.limits`.
    pub first_container_limits: Vec<String>,
    /// The `vpc.amazonaws.com/pod-eni` annotation, if present.
    pub pod_eni: Option<String>,
}

impl PodFacts {
    /// Upstream's test: a branch-ENI pod is one whose **first** container's limits name a
    /// resource starting with `vpc.amazonaws.com/pod-eni`. The annotation alone does not make
    /// one (upstream gives such a pod an ordinary address).
    pub fn needs_branch_eni(&self) -> bool {
        self.first_container_limits
            .iter()
            .any(|r| r.starts_with(POD_ENI_RESOURCE_PREFIX))
    }
}

/// One element of the annotation's array (upstream `PodENIData`), as written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodEniData {
    pub eni_id: String,
    pub if_address: String,
    pub private_ip: String,
    pub ipv6_addr: String,
    pub vlan_id: i64,
    pub subnet_cidr: String,
    pub subnet_v6_cidr: String,
}

/// What is wrong with a pod-eni annotation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PodEniError {
    #[error(
        "annotation {POD_ENI_ANNOTATION} is missing (the VPC Resource Controller has not assigned a branch ENI yet)"
    )]
    Missing,
    #[error("annotation {POD_ENI_ANNOTATION} is not a JSON array of ENIs: {0}")]
    NotJson(String),
    #[error("annotation {POD_ENI_ANNOTATION} lists no ENI")]
    Empty,
    #[error("annotation {POD_ENI_ANNOTATION}: {0}")]
    Field(String),
}

/// Go's `encoding/json` matches object keys to struct tags case-insensitively, so the
/// controller's `vlanId` and upstream's tag `vlanID` are the same field.
fn field<'a>(obj: &'a serde_json::Map<String, Value>, tag: &str) -> Option<&'a Value> {
    obj.get(tag).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(tag))
            .map(|(_, v)| v)
    })
}

fn string_field(obj: &serde_json::Map<String, Value>, tag: &str) -> Result<String, PodEniError> {
    match field(obj, tag) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(PodEniError::NotJson(format!(
            "field {tag:?} is {other}, not a string"
        ))),
    }
}

fn int_field(obj: &serde_json::Map<String, Value>, tag: &str) -> Result<i64, PodEniError> {
    match field(obj, tag) {
        None | Some(Value::Null) => Ok(0),
        Some(Value::Number(n)) => n
            .as_i64()
            .ok_or_else(|| PodEniError::NotJson(format!("field {tag:?} is {n}, not an integer"))),
        Some(other) => Err(PodEniError::NotJson(format!(
            "field {tag:?} is {other}, not an integer"
        ))),
    }
}

/// Parses the annotation's value (a JSON array of ENI objects; unknown fields ignored).
pub fn parse_pod_eni(value: &str) -> Result<Vec<PodEniData>, PodEniError> {
    let doc: Value =
        serde_json::from_str(value).map_err(|e| PodEniError::NotJson(e.to_string()))?;
    let Value::Array(items) = doc else {
        return Err(PodEniError::NotJson("not an array".into()));
    };
    items
        .iter()
        .map(|item| {
            let Value::Object(obj) = item else {
                return Err(PodEniError::NotJson(format!(
                    "element {item} is not an object"
                )));
            };
            Ok(PodEniData {
                eni_id: string_field(obj, "eniId")?,
                if_address: string_field(obj, "ifAddress")?,
                private_ip: string_field(obj, "privateIp")?,
                ipv6_addr: string_field(obj, "ipv6Addr")?,
                vlan_id: int_field(obj, "vlanID")?,
                subnet_cidr: string_field(obj, "subnetCidr")?,
                subnet_v6_cidr: string_field(obj, "subnetV6Cidr")?,
            })
        })
        .collect()
}

/// The annotation's first ENI (upstream uses the first element only).
pub fn first_pod_eni(value: Option<&str>) -> Result<PodEniData, PodEniError> {
    let value = value.ok_or(PodEniError::Missing)?;
    parse_pod_eni(value)?
        .into_iter()
        .next()
        .ok_or(PodEniError::Empty)
}

/// A branch pod's network as AddNetwork answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BranchNetwork {
    pub eni_id: String,
    /// The branch ENI's MAC (`PodENIMAC`).
    pub mac: String,
    /// The pod's address (`privateIp` or, in IPv6 clusters, `ipv6Addr`).
    pub ip: IpAddr,
    /// `PodVlanId`.
    pub vlan_id: u16,
    /// `PodENISubnetGW`: the subnet's first host (IPv4) or `fe80:ec2::1` (IPv6).
    pub gateway: IpAddr,
}

/// The branch network of a pod from its annotation, with upstream's checks: an address of
/// the cluster's family, a MAC, a VLAN id other than 0 and a parsable subnet CIDR.
pub fn branch_network(value: Option<&str>, ipv6: bool) -> Result<BranchNetwork, PodEniError> {
    let eni = first_pod_eni(value)?;
    let (ip_text, ip_field) = if ipv6 {
        (&eni.ipv6_addr, "ipv6Addr")
    } else {
        (&eni.private_ip, "privateIp")
    };
    if ip_text.is_empty() {
        return Err(PodEniError::Field(format!("{ip_field} is missing")));
    }
    let ip: IpAddr = ip_text
        .parse()
        .ok()
        .filter(|ip: &IpAddr| ip.is_ipv6() == ipv6)
        .ok_or_else(|| PodEniError::Field(format!("{ip_field} {ip_text:?} is not an address")))?;
    if eni.if_address.is_empty() {
        return Err(PodEniError::Field(
            "ifAddress (the branch ENI's MAC) is missing".into(),
        ));
    }
    let vlan_id = u16::try_from(eni.vlan_id)
        .ok()
        .filter(|v| (1..=4094).contains(v))
        .ok_or_else(|| {
            PodEniError::Field(format!("vlanID {} is not a VLAN id (1-4094)", eni.vlan_id))
        })?;
    let gateway = if ipv6 {
        subnet(&eni.subnet_v6_cidr, "subnetV6Cidr")?;
        IpAddr::V6(IPV6_GATEWAY)
    } else {
        match subnet(&eni.subnet_cidr, "subnetCidr")? {
            IpNet::V4(n) => IpAddr::V4(first_host(n.network())),
            IpNet::V6(_) => {
                return Err(PodEniError::Field(format!(
                    "subnetCidr {:?} is not an IPv4 CIDR",
                    eni.subnet_cidr
                )));
            }
        }
    };
    Ok(BranchNetwork {
        eni_id: eni.eni_id,
        mac: eni.if_address,
        ip,
        vlan_id,
        gateway,
    })
}

fn subnet(text: &str, name: &str) -> Result<IpNet, PodEniError> {
    text.parse()
        .map_err(|_| PodEniError::Field(format!("{name} {text:?} is not a CIDR")))
}

/// The network address + 1 (upstream `GetIPv4Gateway`: `10.0.32.0/19` → `10.0.32.1`).
fn first_host(network: Ipv4Addr) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(network).wrapping_add(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const GOOD: &str = r#"[{"eniId":"eni-abc","ifAddress":"01:23:45:67:89:ab","privateIp":"10.0.32.7","vlanID":3,"subnetCidr":"10.0.32.0/19"}]"#;

    #[test]
    fn upstream_annotation_gives_the_branch_network() {
        let b = branch_network(Some(GOOD), false).unwrap();
        assert_eq!(
            b,
            BranchNetwork {
                eni_id: "eni-abc".into(),
                mac: "01:23:45:67:89:ab".into(),
                ip: "10.0.32.7".parse().unwrap(),
                vlan_id: 3,
                gateway: "10.0.32.1".parse().unwrap(),
            }
        );
    }

    #[test]
    fn keys_match_case_insensitively_as_in_go() {
        let v = GOOD
            .replace("vlanID", "vlanId")
            .replace("privateIp", "PrivateIP");
        assert_eq!(branch_network(Some(&v), false).unwrap().vlan_id, 3);
    }

    #[test]
    fn ipv6_uses_ipv6addr_and_the_link_local_gateway() {
        let v = r#"[{"ifAddress":"02:00:00:00:00:09","ipv6Addr":"2600:1f14::9","vlanID":1,"subnetV6Cidr":"2600:1f14::/64"}]"#;
        let b = branch_network(Some(v), true).unwrap();
        assert_eq!(b.ip, "2600:1f14::9".parse::<IpAddr>().unwrap());
        assert_eq!(b.gateway, "fe80:ec2::1".parse::<IpAddr>().unwrap());
        assert!(branch_network(Some(v), false).is_err(), "no privateIp");
    }

    #[test]
    fn each_upstream_refusal_is_an_error() {
        let cases = [
            (None, PodEniError::Missing),
            (Some("{not json"), PodEniError::NotJson(String::new())),
            (Some("{}"), PodEniError::NotJson(String::new())),
            (Some("[]"), PodEniError::Empty),
        ];
        for (v, want) in cases {
            let got = branch_network(v, false).unwrap_err();
            assert_eq!(
                std::mem::discriminant(&got),
                std::mem::discriminant(&want),
                "{v:?}: {got}"
            );
        }
        for broken in [
            GOOD.replace(r#""vlanID":3"#, r#""vlanID":0"#),
            GOOD.replace(r#""vlanID":3"#, r#""vlanID":5000"#),
            GOOD.replace(r#""vlanID":3"#, r#""vlanID":"3""#),
            GOOD.replace("01:23:45:67:89:ab", ""),
            GOOD.replace("10.0.32.7", ""),
            GOOD.replace("10.0.32.7", "ten"),
            GOOD.replace("10.0.32.0/19", "10.0.32.0"),
        ] {
            assert!(branch_network(Some(&broken), false).is_err(), "{broken}");
        }
    }

    #[test]
    fn only_the_first_container_limits_make_a_branch_pod() {
        let mut pod = PodFacts::default();
        assert!(!pod.needs_branch_eni());
        pod.pod_eni = Some(GOOD.into());
        assert!(!pod.needs_branch_eni(), "the annotation alone does not");
        pod.first_container_limits = vec!["cpu".into(), "vpc.amazonaws.com/pod-eni".into()];
        assert!(pod.needs_branch_eni());
    }

    proptest! {
        /// Any subnet gives its network address + 1; any valid VLAN id round-trips.
        #[test]
        fn gateway_is_network_plus_one(addr in any::<u32>(), len in 1u8..=30, vlan in 1u16..=4094) {
            let net = ipnet::Ipv4Net::new(Ipv4Addr::from(addr), len).unwrap().trunc();
            let ip = first_host(net.network());
            let v = format!(
                r#"[{{"ifAddress":"02:00:00:00:00:01","privateIp":"{ip}","vlanID":{vlan},"subnetCidr":"{net}"}}]"#
            );
            let b = branch_network(Some(&v), false).unwrap();
            prop_assert_eq!(b.gateway, IpAddr::V4(ip));
            prop_assert_eq!(b.vlan_id, vlan);
        }

        /// Arbitrary text never panics the parser.
        #[test]
        fn arbitrary_text_is_an_error_or_a_network(s in ".{0,80}") {
            let _ = branch_network(Some(&s), false);
        }
    }
}
