//! A pure model of one node's network card, to run the planner tick after tick: ENIs with
//! `/32`s or `/28`s, pods bound to addresses, an EC2 that grants exactly what is asked
//! (optionally capped by the subnet's free addresses), and a simulated clock.
//!
//! Used by the tests and by the operator CLI's subnet calculator (`vpc-cni plan`).

mod apply;
pub mod calls;
pub mod churn;
pub mod fleet;

use std::net::Ipv4Addr;
use std::time::Duration;

use ipnet::Ipv4Net;

use crate::model::{EniView, NodeCapacity, PoolPolicy, PoolSnapshot};
use crate::plan::{INSUFFICIENT_ADDRESS_BACKOFF, TickTimers};

pub use apply::TickOutcome;

/// Upstream's default `IP_COOLDOWN_PERIOD`.
pub const DEFAULT_COOLDOWN: Duration = Duration::from_secs(30);

/// Errors of the simulator; most mean the planner asked for something EC2 or the datastore
/// would refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimError {
    /// No free, non-cooling address for a new pod.
    #[error("no free address for a pod")]
    NoFreeAddress,
    /// The pod id is not bound to any address.
    #[error("unknown pod {0}")]
    UnknownPod(u64),
    /// The ENI id is not attached.
    #[error("unknown ENI {0}")]
    UnknownEni(String),
    /// The CIDR is not on the ENI.
    #[error("CIDR {cidr} is not on ENI {eni}")]
    UnknownCidr {
        /// ENI id.
        eni: String,
        /// The CIDR asked for.
        cidr: Ipv4Net,
    },
    /// A release asked for a CIDR with a pod on it.
    #[error("CIDR {cidr} on ENI {eni} still has an assigned address")]
    ReleaseInUse {
        /// ENI id.
        eni: String,
        /// The CIDR with a pod.
        cidr: Ipv4Net,
    },
    /// An ENI with pods (or the primary ENI) was to be freed.
    #[error("ENI {0} cannot be freed (primary or in use)")]
    FreeRefused(String),
    /// More CIDRs on one ENI than the instance allows (`PrivateIpAddressLimitExceeded`).
    #[error("ENI {eni} would exceed its limit of {max} CIDRs")]
    CidrLimitExceeded {
        /// ENI id.
        eni: String,
        /// CIDRs one ENI may hold.
        max: u32,
    },
    /// More ENIs than the instance (and `MAX_ENI`) allow (`AttachmentLimitExceeded`).
    #[error("ENI limit of {0} exceeded")]
    EniLimitExceeded(u32),
    /// An action of the wrong kind for the mode (e.g. prefixes in secondary-IP mode).
    #[error("action does not match the pool mode")]
    WrongKind,
    /// The simulated address space ran out.
    #[error("simulated address space exhausted")]
    AddressSpaceExhausted,
    /// No fixed point within the tick budget.
    #[error("no fixed point after {0} ticks")]
    NoFixedPoint(usize),
}

/// One address of a CIDR.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimAddr {
    /// Pod bound to the address.
    pub pod: Option<u64>,
    /// When the last pod released it (for the cooldown).
    pub released_at: Option<Duration>,
}

/// A `/32` or `/28` on an ENI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimCidr {
    /// The CIDR.
    pub net: Ipv4Net,
    /// Its addresses (1 or 16).
    pub addrs: Vec<SimAddr>,
}

impl SimCidr {
    /// Addresses bound to pods.
    pub fn assigned(&self) -> u32 {
        self.addrs.iter().filter(|a| a.pod.is_some()).count() as u32
    }
}

/// One attached ENI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimEni {
    /// ENI id.
    pub id: String,
    /// Device number (0 = primary).
    pub device_number: u32,
    /// The instance's primary ENI.
    pub is_primary: bool,
    /// Trunk ENI (security groups for pods).
    pub is_trunk: bool,
    /// EFA ENI.
    pub is_efa: bool,
    /// In an excluded subnet.
    pub excluded: bool,
    /// Simulated time of attachment.
    pub attached_at: Duration,
    /// Current-mode CIDRs, in the order they were granted.
    pub cidrs: Vec<SimCidr>,
}

impl SimEni {
    /// A plain secondary ENI without CIDRs.
    pub fn new(id: impl Into<String>, device_number: u32, attached_at: Duration) -> Self {
        SimEni {
            id: id.into(),
            device_number,
            is_primary: false,
            is_trunk: false,
            is_efa: false,
            excluded: false,
            attached_at,
            cidrs: Vec::new(),
        }
    }

    /// Addresses on the ENI.
    pub fn total_ips(&self) -> u32 {
        self.cidrs.iter().map(|c| c.addrs.len() as u32).sum()
    }

    /// Addresses bound to pods.
    pub fn assigned_ips(&self) -> u32 {
        self.cidrs.iter().map(SimCidr::assigned).sum()
    }
}

/// The simulated node (one network card).
#[derive(Debug, Clone)]
pub struct SimNode {
    /// Pool policy in force.
    pub policy: PoolPolicy,
    /// Instance capacity.
    pub cap: NodeCapacity,
    /// Network card index.
    pub network_card: u32,
    /// `IP_COOLDOWN_PERIOD`.
    pub cooldown: Duration,
    /// Simulated clock.
    pub now: Duration,
    /// ENIs in device-number order.
    pub enis: Vec<SimEni>,
    /// Free addresses left in the subnet (`None` = unlimited).
    pub subnet_free: Option<u32>,
    /// Provisioning allowed (not terminating, schedulable).
    pub provisioning_allowed: bool,
    last_decrease: Option<Duration>,
    backoff_until: Option<Duration>,
    next_pod: u64,
    next_eni: u32,
    next_addr: u32,
}

impl SimNode {
    /// A node with only its primary ENI (no secondary addresses) at time 0.
    pub fn new(policy: PoolPolicy, cap: NodeCapacity) -> Self {
        let mut primary = SimEni::new("eni-000", 0, Duration::ZERO);
        primary.is_primary = true;
        SimNode {
            policy,
            cap,
            network_card: 0,
            cooldown: DEFAULT_COOLDOWN,
            now: Duration::ZERO,
            enis: vec![primary],
            subnet_free: None,
            provisioning_allowed: true,
            last_decrease: None,
            backoff_until: None,
            next_pod: 1,
            next_eni: 1,
            next_addr: u32::from(Ipv4Addr::new(10, 0, 16, 0)),
        }
    }

    /// Attaches an extra ENI (e.g. trunk or EFA) built by the caller; keeps device order.
    pub fn push_eni(&mut self, eni: SimEni) {
        self.enis.push(eni);
        self.enis.sort_by_key(|e| e.device_number);
    }

    /// The ENI with this id.
    pub fn eni(&self, id: &str) -> Option<&SimEni> {
        self.enis.iter().find(|e| e.id == id)
    }

    fn is_cooling(&self, a: &SimAddr) -> bool {
        a.pod.is_none()
            && a.released_at
                .is_some_and(|t| self.now.saturating_sub(t) < self.cooldown)
    }

    /// What the datastore would hand the planner now.
    pub fn snapshot(&self) -> PoolSnapshot {
        let pd = self.policy.prefix_delegation;
        let enis = self
            .enis
            .iter()
            .map(|e| {
                let free_cidrs: Vec<Ipv4Net> = e
                    .cidrs
                    .iter()
                    .filter(|c| c.assigned() == 0)
                    .map(|c| c.net)
                    .collect();
                let cooldown_ips = e
                    .cidrs
                    .iter()
                    .flat_map(|c| c.addrs.iter())
                    .filter(|a| self.is_cooling(a))
                    .count() as u32;
                EniView {
                    id: e.id.clone(),
                    device_number: e.device_number,
                    is_primary: e.is_primary,
                    is_trunk: e.is_trunk,
                    is_efa: e.is_efa,
                    excluded: e.excluded,
                    age: self.now.saturating_sub(e.attached_at),
                    cidr_count: e.cidrs.len() as u32,
                    total_ips: e.total_ips(),
                    assigned_ips: e.assigned_ips(),
                    cooldown_ips,
                    prefixes: if pd { e.cidrs.len() as u32 } else { 0 },
                    free_prefixes: if pd { free_cidrs.len() as u32 } else { 0 },
                    freeable_cidrs: free_cidrs,
                }
            })
            .collect();
        PoolSnapshot {
            network_card: self.network_card,
            enis,
            // Upstream's planner: no count of waiting pods.
            waiting_pods: 0,
        }
    }

    /// The timers ipamd would pass at `now`.
    pub fn timers(&self) -> TickTimers {
        TickTimers {
            since_last_decrease: self.last_decrease.map(|t| self.now.saturating_sub(t)),
            in_insufficient_backoff: self.backoff_until.is_some_and(|u| self.now < u),
            provisioning_allowed: self.provisioning_allowed,
        }
    }

    fn start_backoff(&mut self) {
        self.backoff_until = Some(self.now + INSUFFICIENT_ADDRESS_BACKOFF);
    }

    /// Binds a new pod to the first free, non-cooling address (ENIs in device order, skipping
    /// trunk and excluded ENIs). Returns the pod id.
    pub fn add_pod(&mut self) -> Result<u64, SimError> {
        let now = self.now;
        let cooldown = self.cooldown;
        let pod = self.next_pod;
        let slot = self
            .enis
            .iter_mut()
            .filter(|e| !e.is_trunk && !e.excluded)
            .flat_map(|e| e.cidrs.iter_mut())
            .flat_map(|c| c.addrs.iter_mut())
            .find(|a| {
                a.pod.is_none()
                    && a.released_at
                        .is_none_or(|t| now.saturating_sub(t) >= cooldown)
            })
            .ok_or(SimError::NoFreeAddress)?;
        slot.pod = Some(pod);
        self.next_pod += 1;
        Ok(pod)
    }

    /// Releases a pod's address (it enters the cooldown).
    pub fn remove_pod(&mut self, pod: u64) -> Result<(), SimError> {
        let now = self.now;
        let slot = self
            .enis
            .iter_mut()
            .flat_map(|e| e.cidrs.iter_mut())
            .flat_map(|c| c.addrs.iter_mut())
            .find(|a| a.pod == Some(pod))
            .ok_or(SimError::UnknownPod(pod))?;
        slot.pod = None;
        slot.released_at = Some(now);
        Ok(())
    }

    /// Ids of the pods on the node, oldest first.
    pub fn pods(&self) -> Vec<u64> {
        let mut pods: Vec<u64> = self
            .enis
            .iter()
            .flat_map(|e| e.cidrs.iter())
            .flat_map(|c| c.addrs.iter())
            .filter_map(|a| a.pod)
            .collect();
        pods.sort_unstable();
        pods
    }

    /// Per-ENI addresses (device order, excluded ENIs included).
    pub fn ips_per_eni(&self) -> Vec<u32> {
        self.enis.iter().map(SimEni::total_ips).collect()
    }

    /// Per-ENI CIDR counts (prefixes in PD mode).
    pub fn cidrs_per_eni(&self) -> Vec<u32> {
        self.enis.iter().map(|e| e.cidrs.len() as u32).collect()
    }

    /// Per-ENI assigned addresses.
    pub fn pods_per_eni(&self) -> Vec<u32> {
        self.enis.iter().map(SimEni::assigned_ips).collect()
    }

    /// Addresses in the pool (non-excluded ENIs).
    pub fn total_ips(&self) -> u32 {
        self.snapshot().stats().total_ips
    }

    /// Unassigned addresses in the pool (non-excluded ENIs, cooling ones included).
    pub fn unused_ips(&self) -> u32 {
        self.snapshot().stats().available()
    }

    fn new_cidr(&mut self, prefix: bool) -> Result<SimCidr, SimError> {
        let (len, size) = if prefix { (28u8, 16u32) } else { (32u8, 1u32) };
        let start = self.next_addr.div_ceil(size) * size;
        let next = start
            .checked_add(size)
            .ok_or(SimError::AddressSpaceExhausted)?;
        let net = Ipv4Net::new(Ipv4Addr::from(start), len)
            .map_err(|_| SimError::AddressSpaceExhausted)?;
        self.next_addr = next;
        Ok(SimCidr {
            net,
            addrs: vec![SimAddr::default(); size as usize],
        })
    }
}
