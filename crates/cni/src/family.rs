//! Which IP family a pod gets (spec 12.3). Before ipamd answers: the family the conflist's
//! `aws-cni` entry names ([`crate::conf::NetConf::pod_ip_family`]), so that ADD prepares the
//! right veth half while `AddNetwork` is in flight. Then, as upstream's `cmdAdd` decides:
//! ipamd's reply (`IPv4Addr`, or `IPv6Addr` when that is empty, as ipamd answers in IPv6
//! mode). For DEL without ipamd: `prevResult`'s address. The wiring itself is one path for
//! both families ([`crate::plugin`], [`net::pod`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use net::netlink::Family;
use rpc::IpAllocationMetadata;
use serde_json::Value;

use crate::error::CniError;
use crate::result::CniResult;

/// The address of one allocation: `IPv4Addr`, or `IPv6Addr` when that is empty (upstream
/// `parseIPAddress` prefers IPv4).
pub fn granted_ip(alloc: &IpAllocationMetadata) -> Result<IpAddr, CniError> {
    let text = if alloc.i_pv4_addr.is_empty() {
        &alloc.i_pv6_addr
    } else {
        &alloc.i_pv4_addr
    };
    let ip: IpAddr = text
        .parse()
        .map_err(|_| CniError::ipamd(format!("ipamd sent an invalid address {text:?}")))?;
    // An IPv4 field holding an IPv6 address (or the other way round) is not ipamd's reply.
    if ip.is_ipv4() == alloc.i_pv4_addr.is_empty() {
        return Err(CniError::ipamd(format!(
            "ipamd sent an invalid address {text:?}"
        )));
    }
    Ok(ip)
}

/// Whether `a` and `b` are of one family.
pub fn same_family(a: IpAddr, b: IpAddr) -> bool {
    a.is_ipv4() == b.is_ipv4()
}

/// The unspecified address of a family: the pod's address while ipamd has not answered
/// (the veth half prepared meanwhile reads only its family).
pub trait Unspecified {
    /// `0.0.0.0` or `::`.
    fn unspecified(self) -> IpAddr;
}

impl Unspecified for Family {
    fn unspecified(self) -> IpAddr {
        match self {
            Family::V4 => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            Family::V6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        }
    }
}

/// What a previous result says about the pod, either family: (address, route table).
pub fn from_prev_result_any(prev: &Value) -> Option<(IpAddr, u32)> {
    let prev = CniResult::from_value(prev).ok()?;
    let ip: IpAddr = prev.ips.first()?.address.split('/').next()?.parse().ok()?;
    let table = prev
        .interfaces
        .iter()
        .find(|i| i.sandbox.as_deref().is_some_and(|s| s.starts_with('/')))
        .and_then(|i| i.mac.parse().ok())
        .unwrap_or(0);
    Some((ip, table))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conf::{CniEnv, NetConf};
    use crate::plugin::{pod_network, result_json};

    fn env() -> CniEnv {
        CniEnv::from_lookup(|k| match k {
            "CNI_NETNS" => Some("/var/run/netns/p".into()),
            "CNI_IFNAME" => Some("eth0".into()),
            "CNI_ARGS" => Some("K8S_POD_NAMESPACE=default;K8S_POD_NAME=sample-pod".into()),
            _ => None,
        })
    }

    #[test]
    fn ipamds_ipv6_reply_is_read_and_round_trips_through_the_result() {
        let alloc = IpAllocationMetadata {
            i_pv6_addr: "2001:db8:0:1::5".into(),
            device_number: 0,
            route_table_id: 254,
            ..Default::default()
        };
        let ip = granted_ip(&alloc).unwrap();
        assert_eq!(ip.to_string(), "2001:db8:0:1::5");
        for bad in [
            IpAllocationMetadata::default(),
            IpAllocationMetadata {
                i_pv4_addr: "2001:db8::1".into(),
                ..Default::default()
            },
            IpAllocationMetadata {
                i_pv6_addr: "10.0.0.1".into(),
                ..Default::default()
            },
        ] {
            assert!(granted_ip(&bad).is_err(), "{bad:?}");
        }
        for (version, want) in [("0.4.0", Some("6")), ("1.0.0", None)] {
            let conf = NetConf::parse(
                format!(r#"{{"cniVersion":"{version}","name":"aws-cni"}}"#).as_bytes(),
            )
            .unwrap();
            let p = pod_network(&conf, &env(), ip, 254);
            let wired = crate::plugin::tests::wired(p, 0xff);
            let r: Value = serde_json::from_str(&result_json(&conf, &env(), &wired, 0)).unwrap();
            assert_eq!(r["ips"][0]["address"], "2001:db8:0:1::5/128");
            assert_eq!(r["ips"][0]["interface"], 1);
            assert_eq!(r["ips"][0].get("version").and_then(Value::as_str), want);
            assert_eq!(r["interfaces"][0]["name"], "enicc21c2d7785");
            assert_eq!(r["interfaces"][1]["mac"], "254");
            assert_eq!(r["interfaces"][2]["name"], "dummycc21c2d7785");
            assert_eq!(from_prev_result_any(&r), Some((ip, 254)));
            assert_eq!(crate::plugin::from_prev_result(&r), None);
        }
    }

    #[test]
    fn the_family_prepared_before_ipamd_answers_is_the_conflists() {
        let parse = |extra: &str| {
            NetConf::parse(
                format!(r#"{{"cniVersion":"0.4.0","name":"aws-cni"{extra}}}"#).as_bytes(),
            )
            .unwrap()
            .pod_ip_family()
        };
        assert_eq!(parse(""), Family::V4, "upstream's template names no family");
        assert_eq!(parse(r#","podIPFamily":"ipv4""#), Family::V4);
        assert_eq!(parse(r#","podIPFamily":"ipv6""#), Family::V6);
        assert_eq!(Family::V6.unspecified().to_string(), "::");
        assert!(same_family(
            Family::V4.unspecified(),
            "10.0.0.1".parse().unwrap()
        ));
        assert!(!same_family(
            Family::V6.unspecified(),
            "10.0.0.1".parse().unwrap()
        ));
    }
}
