//! The steps only IPv6 pods take in [`crate::pod`]'s wiring (upstream `SetupPodNetwork` in
//! `cmd/routed-eni-cni-plugin/driver/driver.go` with an IPv6 address; spec 6.4 and 12.3):
//! the pod interface brought up with IPv6 enabled on it and on `lo`, and after the pod's
//! `/128` duplicate address detection waited out (at most 10 s). Everything else (the veth
//! pair, the `fe80::1` gateway route and neighbour, the host's `/128` route in main,
//! `to <ip>/128 lookup main priority 512`, `from <ip>/128 lookup <table> priority 1536` for
//! addresses of secondary ENIs, and the teardown) is the IPv4 pod's code over IPv6 types.

use std::net::Ipv6Addr;
use std::time::Duration;

use ipnet::Ipv6Net;

use crate::kernel::{Kernel, wait_for_v6};
use crate::netlink::{Link, NetlinkError};

/// How long the pod's addresses may stay tentative (upstream `v6DADTimeout`, polled every
/// 50 ms as upstream's `WAIT_INTERVAL`).
pub const DAD_WAIT: (Duration, Duration) = (Duration::from_secs(10), Duration::from_millis(50));

/// Writes an IPv6 sysctl of the pod; a missing file (kernel without IPv6) is fine, as
/// upstream ignores ENOENT.
fn enable_ipv6_on<K: Kernel>(pod: &K, ifname: &str) -> Result<(), NetlinkError> {
    pod.write_sysctl(&format!("net/ipv6/conf/{ifname}/disable_ipv6"), "0")
        .map(drop)
}

/// Upstream's `createVethPairContext.run` (IPv6 branch) on the pod end before its routes:
/// the link up, IPv6 enabled on it and on `lo`.
///
/// **Ours:** duplicate address detection is off on the pod link (`accept_dad=0`, written
/// before the link comes up). Its only peer is the host veth, which never holds the pod's
/// `/128` (ipamd hands each out once) or its link-local (each veth has its own MAC), so DAD
/// could never find a duplicate; upstream leaves it on and waits about 1-2 s for it on
/// every ADD (docs/ipv6.md, "Differences from upstream").
pub(crate) async fn enable_ipv6<K: Kernel>(pod: &K, pod_link: &Link) -> Result<(), NetlinkError> {
    pod.write_sysctl(&format!("net/ipv6/conf/{}/accept_dad", pod_link.name), "0")
        .map(drop)?;
    pod.set_link_up(pod_link.index, None).await?;
    enable_ipv6_on(pod, &pod_link.name)?;
    enable_ipv6_on(pod, "lo")
}

/// The pod's `/128` on link `index`, then no address of the link still tentative (upstream
/// `WaitForAddressesToBeStable`).
pub(crate) async fn pod_address_v6<K: Kernel>(
    pod: &K,
    index: u32,
    ip: Ipv6Addr,
) -> Result<(), NetlinkError> {
    pod.replace_address_v6(index, Ipv6Net::from(ip)).await?;
    wait_for_v6(
        pod,
        index,
        "the pod's IPv6 addresses to leave DAD",
        DAD_WAIT,
        |a| (!a.iter().any(|x| x.tentative)).then_some(()),
    )
    .await
}
