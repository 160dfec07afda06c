//! Branch-ENI pods (security groups for pods): the pod's veth as for a regular pod, plus a
//! VLAN link `vlan.eth.<id>` on the trunk ENI carrying the branch ENI's MAC, and a route
//! table `<id> + 100` whose default route leaves through that VLAN link (upstream
//! `SetupBranchENIPodNetwork` / `TeardownBranchENIPodNetwork` in
//! `cmd/routed-eni-cni-plugin/driver/driver.go`; docs/cni-plugin.md, "Branch-ENI pods").
//!
//! Two enforcing modes. Strict: everything from and to the pod goes through the branch ENI
//! (priority-10 `iif` rules for the VLAN link and the host veth; ipamd moves the `local`
//! rule to priority 20 so these come first). Standard: only traffic leaving the node does;
//! the pod is reached as a regular pod is (main-table route, priority-512 to-pod rule) and
//! its own traffic uses the VLAN table (priority-1536 from-pod rule).
//!
//! Both families (spec 6.6): an IPv6 pod's gateway is the branch subnet's `fe80:ec2::1`,
//! its routes are `/128`s and `::/0`, and every rule is in the IPv6 family, as upstream's
//! `SetupBranchENIPodNetwork` does for an IPv6 `vethMetadata.IPAddress`.

use std::net::IpAddr;
use std::path::Path;

use crate::kernel::Kernel;
use crate::names::vlan_link_name;
use crate::netlink::link::VlanLink;
use crate::netlink::{Family, Mac, NetlinkError, Route, Rule, family_of};
use crate::pod::{
    PodNetwork, PreparedPod, TeardownErrors, address_pod, host_veth_sysctls, prepare_pod_in,
    remove_pod_veth,
};
use crate::route_table::{MAIN_TABLE, branch_table, priority};

/// How a branch-ENI pod's traffic is routed (the conflist's `podSGEnforcingMode`,
/// `POD_SECURITY_GROUP_ENFORCING_MODE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EnforcingMode {
    /// All of the pod's traffic, node-local too, goes through the branch ENI.
    #[default]
    Strict,
    /// Only traffic leaving the node goes through the branch ENI.
    Standard,
}

impl EnforcingMode {
    /// The mode a conflist names: `standard`, else strict (upstream's default, and what its
    /// `BuildHostVethNamePrefix` falls back to).
    pub fn from_conf(value: &str) -> Self {
        if value == "standard" {
            Self::Standard
        } else {
            Self::Strict
        }
    }

    /// The host veth prefix: `vlan` in strict mode (keeps the pod out of SNAT and Calico's
    /// `eni+` rules), the configured one in standard mode (upstream `BuildHostVethNamePrefix`).
    pub fn veth_prefix(self, configured: &str) -> &str {
        match self {
            Self::Strict => "vlan",
            Self::Standard => configured,
        }
    }
}

/// The branch ENI as ipamd describes it (`PodVlanId`, `PodENIMAC`, `PodENISubnetGW`,
/// `ParentIfIndex`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BranchVlan {
    /// VLAN id of the branch ENI on the trunk.
    pub vlan_id: u32,
    /// The branch ENI's MAC, given to the VLAN link.
    pub eni_mac: Mac,
    /// The branch ENI's subnet gateway: network address + 1 (IPv4), `fe80:ec2::1` (IPv6).
    pub subnet_gw: IpAddr,
    /// Index of the trunk ENI's link.
    pub parent_ifindex: u32,
}

impl BranchVlan {
    /// The VLAN link's name, `vlan.eth.<id>`.
    pub fn link_name(&self) -> String {
        vlan_link_name(self.vlan_id)
    }

    /// The pod's route table, `<id> + 100`.
    pub fn table(&self) -> u32 {
        branch_table(self.vlan_id)
    }
}

/// One branch-ENI pod to wire.
#[derive(Debug, Clone)]
pub struct BranchPod {
    /// The veth pair (index 0; `table` is not read).
    pub veth: PodNetwork,
    /// The branch ENI.
    pub vlan: BranchVlan,
    /// Strict or standard.
    pub mode: EnforcingMode,
}

/// What [`setup_branch_pod_in`] made that the CNI result reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WiredBranchPod {
    /// MAC of the host end of the veth.
    pub host_mac: Mac,
    /// MAC of the pod's interface.
    pub pod_mac: Option<Mac>,
}

/// The VLAN id as 802.1Q allows it (1–4094).
fn checked_vlan_id(vlan_id: u32) -> Result<u16, NetlinkError> {
    u16::try_from(vlan_id)
        .ok()
        .filter(|id| (1..=4094).contains(id))
        .ok_or_else(|| NetlinkError::Invalid(format!("VLAN id {vlan_id} is not within 1-4094")))
}

/// Wires a branch-ENI pod (upstream `SetupBranchENIPodNetwork`): the veth pair and the
/// pod's address as for a regular pod, then the priority-10 `iif <host veth>` rules an
/// earlier pod of the same name left, then the VLAN link with its table, then the mode's
/// routes and rules. On failure everything made here is removed again.
pub async fn setup_branch_pod_in<K: Kernel>(
    host: &K,
    pod_netns_path: &Path,
    b: &BranchPod,
) -> Result<WiredBranchPod, NetlinkError> {
    let vlan_id = checked_vlan_id(b.vlan.vlan_id)?;
    let prepared = prepare_pod_in(host, pod_netns_path, &b.veth).await?;
    match wire_branch(host, &prepared, b, vlan_id).await {
        Ok(()) => Ok(WiredBranchPod {
            host_mac: prepared.host_mac,
            pod_mac: prepared.pod_mac,
        }),
        Err(err) => {
            // Best effort: the error of the setup is what the caller needs to see.
            let _ = teardown_branch_pod_in(host, b.veth.pod_ip, b.vlan.vlan_id).await;
            let _ = remove_pod_veth(host, &b.veth).await;
            Err(err)
        }
    }
}

async fn wire_branch<K: Kernel>(
    host: &K,
    prepared: &PreparedPod<K>,
    b: &BranchPod,
    vlan_id: u16,
) -> Result<(), NetlinkError> {
    address_pod(prepared, &b.veth).await?;
    let family = family_of(b.veth.pod_ip);
    host.delete_rule_all(&stale_veth_rule(&b.veth.host_veth, family))
        .await?;
    let vlan_index = setup_vlan(host, &b.vlan, vlan_id).await?;
    let table = b.vlan.table();
    let pod = Route::host(b.veth.pod_ip);
    let veth = prepared.host_index();
    match b.mode {
        EnforcingMode::Strict => {
            host.replace_route(&Route::link_scope(table, pod, veth))
                .await?;
            host.add_rule(&iif_rule(&b.vlan.link_name(), table, family))
                .await?;
            host.add_rule(&iif_rule(&b.veth.host_veth, table, family))
                .await?;
        }
        EnforcingMode::Standard => {
            host.replace_route(&Route::link_scope(MAIN_TABLE, pod, veth))
                .await?;
            let to_pod = Rule::to_ip(b.veth.pod_ip, MAIN_TABLE, priority::TO_POD);
            host.add_rule(&to_pod).await?;
            let from_pod = Rule::from_ip(b.veth.pod_ip, table, priority::FROM_POD);
            host.add_rule(&from_pod).await?;
        }
    }
    tracing::debug!(vlan = vlan_id, vlan_index, table, mode = ?b.mode, "branch pod wired");
    Ok(())
}

/// `iif <link> lookup <table> priority 10` in `family`.
fn iif_rule(link: &str, table: u32, family: Family) -> Rule {
    Rule {
        priority: Some(priority::BRANCH_IIF),
        iif: Some(link.to_owned()),
        table,
        family,
        ..Rule::default()
    }
}

/// Every priority-10 rule of `family` for `iif <host veth>`, whatever its table.
fn stale_veth_rule(host_veth: &str, family: Family) -> Rule {
    iif_rule(host_veth, 0, family)
}

/// The VLAN link (a stale one of the same name goes first: the trunk may have changed), its
/// IPv6 sysctls, up, and in its table the gateway as a link-scope route and the default
/// route via it (`/128` and `::/0` for an IPv6 gateway). Returns the link's index.
async fn setup_vlan<K: Kernel>(
    host: &K,
    vlan: &BranchVlan,
    vlan_id: u16,
) -> Result<u32, NetlinkError> {
    let name = vlan.link_name();
    host.delete_link_by_name(&name).await?;
    host.create_vlan(&VlanLink {
        name: &name,
        vlan_id,
        parent: vlan.parent_ifindex,
        mac: vlan.eni_mac,
    })
    .await?;
    let link = host
        .link_by_name(&name)
        .await?
        .ok_or_else(|| NetlinkError::LinkNotFound(name.clone()))?;
    host_veth_sysctls(host, &name)?;
    host.set_link_up(link.index, None).await?;
    let (table, gw) = (vlan.table(), vlan.subnet_gw);
    host.replace_route(&Route::link_scope(table, Route::host(gw), link.index))
        .await?;
    host.replace_route(&Route::default_via(table, gw, link.index))
        .await?;
    Ok(link.index)
}

/// Removes a branch-ENI pod's host side, whichever mode wired it (upstream
/// `TeardownBranchENIPodNetwork`, mode-agnostic so that a pod survives a switch of
/// `POD_SECURITY_GROUP_ENFORCING_MODE`): the VLAN link (its routes go with it), every
/// priority-10 rule into the pod's table (of both families), the to-pod and from-pod rules
/// and the main-table route. Beyond upstream, the strict-mode route to the pod in the VLAN
/// table goes too (upstream leaves it to go with the host veth), so the node is as before
/// even while the runtime has not removed the pod's namespace. Needs only the address and the VLAN id
/// (ipamd's `DelNetwork` reply or `prevResult`). Missing objects are not errors; every other
/// failure is collected.
pub async fn teardown_branch_pod_in<K: Kernel>(
    host: &K,
    pod_ip: IpAddr,
    vlan_id: u32,
) -> Result<(), TeardownErrors> {
    let table = branch_table(vlan_id);
    let unrouted = |table| Route {
        oif: None,
        ..Route::link_scope(table, Route::host(pod_ip), 0)
    };
    let mut errors = Vec::new();
    if let Err(e) = host.delete_link_by_name(&vlan_link_name(vlan_id)).await {
        errors.push(e);
    }
    // Both families' priority-10 rules: the table is the VLAN's alone, and ipamd's
    // `DelNetwork` answers an IPv6 branch pod with its IPv4 `privateIp` (as upstream).
    for rule in [
        iif_rule_any_link(table, Family::V4),
        iif_rule_any_link(table, Family::V6),
        Rule::to_ip(pod_ip, MAIN_TABLE, priority::TO_POD),
        Rule::from_ip(pod_ip, table, priority::FROM_POD),
    ] {
        if let Err(e) = host.delete_rule_all(&rule).await {
            errors.push(e);
        }
    }
    for route in [unrouted(MAIN_TABLE), unrouted(table)] {
        if let Err(e) = host.delete_route(&route).await {
            errors.push(e);
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(TeardownErrors(errors))
    }
}

/// Every priority-10 rule of `family` into `table`, whatever its `iif`.
fn iif_rule_any_link(table: u32, family: Family) -> Rule {
    Rule {
        priority: Some(priority::BRANCH_IIF),
        table,
        family,
        ..Rule::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_and_names() {
        assert_eq!(EnforcingMode::from_conf(""), EnforcingMode::Strict);
        assert_eq!(EnforcingMode::from_conf("strict"), EnforcingMode::Strict);
        assert_eq!(
            EnforcingMode::from_conf("standard"),
            EnforcingMode::Standard
        );
        assert_eq!(EnforcingMode::from_conf("Standard"), EnforcingMode::Strict);
        assert_eq!(EnforcingMode::Strict.veth_prefix("eni"), "vlan");
        assert_eq!(EnforcingMode::Standard.veth_prefix("cali"), "cali");
        assert_eq!(checked_vlan_id(1).unwrap(), 1);
        assert_eq!(checked_vlan_id(4094).unwrap(), 4094);
        assert!(checked_vlan_id(0).is_err());
        assert!(checked_vlan_id(4095).is_err());
        assert!(checked_vlan_id(70_000).is_err());
        assert_eq!(
            iif_rule("vlan.eth.7", 107, Family::V4).to_string(),
            "priority 10 from all iif vlan.eth.7 lookup 107"
        );
    }
}
