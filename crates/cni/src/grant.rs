//! What ipamd grants a pod and how aws-cni reaches it: the gRPC peers ([`Endpoints`]), the
//! `AddNetwork` call and its answer ([`Granted`], a branch ENI read by [`branch_of`]), and the
//! address given back when wiring failed (upstream `cmdAdd`'s `DelNetwork` with reason
//! `SetupNSFailed`; docs/cni-plugin.md).

use std::net::IpAddr;
use std::time::Duration;

use net::branch::BranchVlan;
use net::netlink::{Mac, NetlinkError};
use rpc::{
    AddNetworkReply, AddNetworkRequest, CniBackendClient, DelNetworkRequest, IpAllocationMetadata,
};

use crate::conf::{CniEnv, NetConf};
use crate::error::CniError;
use crate::family::granted_ip;
use crate::network_policy;

/// How long to wait for ipamd's socket before calling it "not running".
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the plugin's gRPC peers listen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// ipamd ([`ipamd_target`]).
    pub ipamd: String,
    /// The network policy agent ([`network_policy::npa_target`]).
    pub npa: String,
}

impl Endpoints {
    /// Upstream's sockets, or the overrides in `get` (tests and the demo).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Self {
        Self {
            ipamd: ipamd_target(&get),
            npa: network_policy::npa_target(&get),
        }
    }
}

/// The gRPC target of ipamd (`IPAMD_GRPC_SOCKET` overrides it for tests and the demo).
pub fn ipamd_target(get: impl Fn(&str) -> Option<String>) -> String {
    match get("IPAMD_GRPC_SOCKET").filter(|s| !s.is_empty()) {
        Some(path) => format!("unix://{path}"),
        None => rpc::DEFAULT_IPAMD_ADDR.to_string(),
    }
}

pub(crate) async fn ipamd(
    target: &str,
) -> Result<CniBackendClient<tonic::transport::Channel>, CniError> {
    let channel = rpc::client::connect(target, Some(CONNECT_TIMEOUT)).await.map_err(|e| {
        CniError::try_again(format!(
            "ipamd is not running or not ready ({target}): {e}; check the aws-node pod on this node"
        ))
    })?;
    Ok(CniBackendClient::new(channel))
}

/// What ipamd granted the pod.
pub(crate) struct Granted {
    /// `IPv4Addr`, or `IPv6Addr` when that is empty (IPv6 clusters).
    pub(crate) ip: IpAddr,
    pub(crate) table: u32,
    pub(crate) device_number: i32,
    /// The addresses after the first, in ipamd's order: one per further network card of a
    /// multi-NIC pod (pod interfaces `mNicIf1`, `mNicIf2`, ...; docs/cni-plugin.md).
    pub(crate) further: Vec<GrantedAddress>,
    /// Addresses in the reply (`InterfaceCount` for the network policy agent).
    pub(crate) interfaces: usize,
    /// `NetworkPolicyMode`: empty when the network policy agent is not to be called.
    pub(crate) network_policy_mode: String,
    /// The branch ENI of a branch-ENI pod (`PodVlanId != 0`).
    pub(crate) branch: Option<net::branch::BranchVlan>,
}

/// One address of an `AddNetwork` or `DelNetwork` reply (`IPAllocationMetadata`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GrantedAddress {
    pub(crate) ip: IpAddr,
    /// `RouteTableId`: the host table of the address's ENI.
    pub(crate) table: u32,
    pub(crate) device_number: i32,
}

impl GrantedAddress {
    /// Reads one allocation (an invalid address is ipamd's error).
    pub(crate) fn of(alloc: &IpAllocationMetadata) -> Result<Self, CniError> {
        Ok(Self {
            ip: granted_ip(alloc)?,
            table: u32::try_from(alloc.route_table_id).unwrap_or(0),
            device_number: alloc.device_number,
        })
    }
}

/// AddNetwork: one address for the pod (IPv4, or IPv6 in IPv6 clusters), with its ENI's
/// route table; one per managed network card when the pod opted in
/// ([`NetConf::requires_multi_nic_attachment`]).
pub(crate) async fn request_address(
    client: &mut CniBackendClient<tonic::transport::Channel>,
    conf: &NetConf,
    env: &CniEnv,
) -> Result<Granted, CniError> {
    let multi_nic = conf.requires_multi_nic_attachment();
    tracing::debug!(multi_nic, "pod requires multi-NIC attachment: {multi_nic}");
    let req = AddNetworkRequest {
        k8s_pod_name: env.arg("K8S_POD_NAME").to_string(),
        k8s_pod_namespace: env.arg("K8S_POD_NAMESPACE").to_string(),
        k8s_pod_infra_container_id: env.arg("K8S_POD_INFRA_CONTAINER_ID").to_string(),
        container_id: env.container_id.clone(),
        if_name: env.ifname.clone(),
        network_name: conf.name.clone(),
        netns: env.netns.clone(),
        requires_multi_nic_attachment: multi_nic,
        ..Default::default()
    };
    let reply = client
        .add_network(req)
        .await
        .map_err(|s| {
            CniError::ipamd(format!(
                "ipamd could not assign an IP address: {}",
                s.message()
            ))
        })?
        .into_inner();
    let alloc = reply
        .ip_allocation_metadata
        .first()
        .filter(|_| reply.success)
        .ok_or_else(|| {
            CniError::ipamd("ipamd could not assign an IP address to the pod (see ipamd's log)")
        })?;
    let first = GrantedAddress::of(alloc)?;
    let further = reply
        .ip_allocation_metadata
        .iter()
        .skip(1)
        .map(GrantedAddress::of)
        .collect::<Result<_, _>>()?;
    Ok(Granted {
        ip: first.ip,
        table: first.table,
        device_number: first.device_number,
        further,
        interfaces: reply.ip_allocation_metadata.len(),
        network_policy_mode: reply.network_policy_mode.clone(),
        branch: branch_of(&reply)?,
    })
}

/// The branch ENI in an `AddNetwork` reply; `None` for a regular pod (`PodVlanId == 0`).
pub fn branch_of(reply: &AddNetworkReply) -> Result<Option<BranchVlan>, CniError> {
    if reply.pod_vlan_id == 0 {
        return Ok(None);
    }
    let bad = |what: &str, value: &dyn std::fmt::Debug| {
        CniError::ipamd(format!(
            "ipamd sent a branch-ENI reply with an invalid {what} {value:?}"
        ))
    };
    let vlan_id =
        u32::try_from(reply.pod_vlan_id).map_err(|_| bad("PodVlanId", &reply.pod_vlan_id))?;
    let eni_mac: Mac = reply
        .pod_enimac
        .parse()
        .map_err(|_| bad("PodENIMAC", &reply.pod_enimac))?;
    let subnet_gw: IpAddr = reply
        .pod_eni_subnet_gw
        .parse()
        .map_err(|_| bad("PodENISubnetGW", &reply.pod_eni_subnet_gw))?;
    let parent_ifindex = u32::try_from(reply.parent_if_index)
        .ok()
        .filter(|i| *i > 0)
        .ok_or_else(|| bad("ParentIfIndex", &reply.parent_if_index))?;
    Ok(Some(BranchVlan {
        vlan_id,
        eni_mac,
        subnet_gw,
        parent_ifindex,
    }))
}

/// When wiring failed, gives the address back to ipamd and says whether it took it.
/// [`prepare_pod_in`] and [`finish_pod_in`] remove whatever they created when they fail,
/// and never delete a link that is not ours, so only the address has to be given back here.
pub(crate) async fn give_back_if_unwired<T>(
    client: &mut CniBackendClient<tonic::transport::Channel>,
    conf: &NetConf,
    env: &CniEnv,
    addresses: &[IpAddr],
    wired: Result<T, NetlinkError>,
) -> Result<T, CniError> {
    let e = match wired {
        Ok(done) => return Ok(done),
        Err(e) => e,
    };
    let released = client
        .del_network(DelNetworkRequest {
            container_id: env.container_id.clone(),
            if_name: env.ifname.clone(),
            network_name: conf.name.clone(),
            k8s_pod_name: env.arg("K8S_POD_NAME").to_string(),
            k8s_pod_namespace: env.arg("K8S_POD_NAMESPACE").to_string(),
            // Beyond upstream (which sends none): with the pod's UID, ipamd's unknown-pod
            // path (a branch-ENI pod holds nothing in the datastore) can match the pod
            // instead of answering `pod UID mismatch` (docs/security-groups-for-pods.md).
            k8s_pod_uid: env.arg("K8S_POD_UID").to_string(),
            reason: "SetupNSFailed".into(),
            ..Default::default()
        })
        .await;
    let release = match released {
        Ok(_) => "given back to ipamd".to_string(),
        Err(s) => format!("ipamd could not take it back: {}", s.message()),
    };
    let ip = addresses
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let what = if addresses.len() == 1 {
        "address"
    } else {
        "addresses"
    };
    tracing::error!(container = %env.container_id, %ip, "wiring failed ({release}): {e}");
    Err(CniError::setup(format!(
        "failed to set up the pod network ({what} {ip} {release}): {e}"
    )))
}
