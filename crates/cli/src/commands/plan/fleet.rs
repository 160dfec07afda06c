//! The fleet simulation behind `vpc-cni plan`: every node is a `planner::sim::SimNode` (the
//! planner ipamd runs, tick after tick), and all nodes draw their addresses from one subnet.
//!
//! Pure: no I/O, no clock. When the subnet is large enough for every node's peak
//! consumption the nodes are independent and each distinct node is simulated once; otherwise
//! the nodes start up one after the other and then receive their pods round-robin, one pod
//! per node per round, so that a short subnet is shared the way a scheduler spreading pods
//! would share it.

use planner::sim::{SimError, SimNode};
use planner::{IPS_PER_PREFIX, NodeCapacity, PoolPolicy};

/// Ticks one settle may take before the simulation is declared stuck.
const MAX_SETTLE_TICKS: usize = 100_000;

/// Nodes of one instance type with the same workload.
#[derive(Debug, Clone)]
pub struct NodeGroup {
    /// Instance type, e.g. `m5.large`.
    pub instance_type: String,
    /// Number of nodes.
    pub count: u32,
    /// Pods (needing a VPC IP) wanted on each node.
    pub pods_per_node: u32,
    /// Pods the kubelet schedules at most on the node for those pods (max pods minus the
    /// host-network pods).
    pub schedulable: u32,
    /// Planner policy (its `max_pods` is the kubelet's max pods).
    pub policy: PoolPolicy,
    /// Planner capacity (card 0).
    pub capacity: NodeCapacity,
    /// Whether the instance's primary address comes out of the planned subnet (false with
    /// custom networking: pods use the ENIConfig subnet).
    pub primary_in_subnet: bool,
    /// `IP_COOLDOWN_PERIOD`.
    pub cooldown: std::time::Duration,
}

/// Why a node could not give every scheduled pod an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Shortfall {
    /// EC2 would refuse for lack of free addresses in the subnet.
    SubnetExhausted,
    /// The instance (or `MAX_ENI`) has no room for more ENIs or addresses.
    InstanceLimit,
}

/// One simulated node at the end of the run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NodeOutcome {
    /// Pods wanted.
    pub pods_requested: u32,
    /// Pods above the kubelet's max pods (never scheduled).
    pub pods_over_max_pods: u32,
    /// Pods running with an address.
    pub pods_running: u32,
    /// Scheduled pods that got no address.
    pub pods_without_ip: u32,
    /// Why pods got no address.
    pub shortfall: Option<Shortfall>,
    /// ENIs attached (primary included).
    pub enis: u32,
    /// Addresses in the warm pool (secondary IPs, or 16 per prefix).
    pub pool_ips: u32,
    /// Addresses assigned to pods.
    pub assigned_ips: u32,
    /// Unassigned addresses in the pool.
    pub warm_ips: u32,
    /// /28 prefixes (prefix delegation).
    pub prefixes: u32,
    /// Secondary /32s (secondary-IP mode).
    pub secondary_ips: u32,
    /// Subnet addresses the node holds: its primary address (unless custom networking),
    /// every other ENI's primary address, and the pool.
    pub subnet_ips: u32,
    /// Addresses in the pool per ENI, in device order.
    pub ips_per_eni: Vec<u32>,
}

/// The whole fleet at the end of the run.
#[derive(Debug, Clone)]
pub struct FleetOutcome {
    /// One entry per group, one outcome per node of the group.
    pub nodes: Vec<Vec<NodeOutcome>>,
    /// Free addresses left in the subnet (`None` = no subnet given).
    pub subnet_free: Option<u32>,
    /// Whether the subnet ran out (a grant was refused).
    pub exhausted: bool,
}

/// What can go wrong while simulating.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FleetError {
    /// The nodes' primary addresses alone do not fit.
    PrimariesDoNotFit {
        /// Usable addresses in the subnet.
        usable: u32,
        /// Nodes whose primary address is in the subnet.
        nodes: u64,
    },
    /// The planner asked for something EC2 would refuse, or never settled.
    Simulation(SimError),
}

impl std::fmt::Display for FleetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::PrimariesDoNotFit { usable, nodes } => write!(
                f,
                "impossible inputs: the subnet has {usable} usable addresses but the {nodes} \
                 nodes' primary network interfaces alone need {nodes}"
            ),
            Self::Simulation(e) => write!(f, "the pool simulation failed: {e}"),
        }
    }
}

impl std::error::Error for FleetError {}

impl From<SimError> for FleetError {
    fn from(e: SimError) -> Self {
        Self::Simulation(e)
    }
}

fn unit(policy: &PoolPolicy) -> u32 {
    if policy.prefix_delegation {
        IPS_PER_PREFIX
    } else {
        1
    }
}

/// Subnet addresses a node holds (ENI primaries and pool; the instance's own primary address
/// only when `primary_in_subnet`).
fn consumption(node: &SimNode, primary_in_subnet: bool) -> u32 {
    node.enis
        .iter()
        .map(|e| {
            let own = u32::from(!e.is_primary || primary_in_subnet);
            own + e.total_ips()
        })
        .sum()
}

fn outcome(
    node: &SimNode,
    g: &NodeGroup,
    running: u32,
    shortfall: Option<Shortfall>,
) -> NodeOutcome {
    let stats = node.snapshot().stats();
    let cidrs: u32 = node.cidrs_per_eni().iter().sum();
    let scheduled = g.pods_per_node.min(g.schedulable);
    NodeOutcome {
        pods_requested: g.pods_per_node,
        pods_over_max_pods: g.pods_per_node - scheduled,
        pods_running: running,
        pods_without_ip: scheduled - running,
        shortfall,
        enis: node.enis.len() as u32,
        pool_ips: stats.total_ips,
        assigned_ips: stats.assigned_ips,
        warm_ips: stats.available(),
        prefixes: if g.policy.prefix_delegation { cidrs } else { 0 },
        secondary_ips: if g.policy.prefix_delegation { 0 } else { cidrs },
        subnet_ips: consumption(node, g.primary_in_subnet),
        ips_per_eni: node.ips_per_eni(),
    }
}

fn new_node(g: &NodeGroup) -> SimNode {
    let mut node = SimNode::new(g.policy, g.capacity);
    node.cooldown = g.cooldown;
    node
}

/// A running node of the interleaved simulation.
struct Live<'a> {
    index: usize,
    group: &'a NodeGroup,
    node: SimNode,
    running: u32,
    failed: u32,
    shortfall: Option<Shortfall>,
}

impl Live<'_> {
    fn wanted(&self) -> u32 {
        self.group.pods_per_node.min(self.group.schedulable)
    }
}

/// One node alone with an unlimited subnet: its outcome and its peak consumption.
fn standalone(g: &NodeGroup) -> Result<(NodeOutcome, u32), FleetError> {
    let mut node = new_node(g);
    let mut peak = 0;
    let mut live_peak = |node: &mut SimNode| -> Result<(), FleetError> {
        // Settle tick by tick to see the peak, not only the fixed point.
        let window = node.quiet_window();
        let mut quiet = 0;
        for _ in 0..MAX_SETTLE_TICKS {
            let changed = node.tick()?.changed;
            peak = peak.max(consumption(node, g.primary_in_subnet));
            quiet = if changed { 0 } else { quiet + 1 };
            if quiet >= window {
                return Ok(());
            }
        }
        Err(SimError::NoFixedPoint(MAX_SETTLE_TICKS).into())
    };
    live_peak(&mut node)?;
    let wanted = g.pods_per_node.min(g.schedulable);
    let mut running = 0;
    let mut shortfall = None;
    for _ in 0..wanted {
        match node.add_pod() {
            Ok(_) => running += 1,
            Err(SimError::NoFreeAddress) => {
                shortfall = Some(Shortfall::InstanceLimit);
                break;
            }
            Err(e) => return Err(e.into()),
        }
        live_peak(&mut node)?;
    }
    peak = peak.max(consumption(&node, g.primary_in_subnet));
    Ok((outcome(&node, g, running, shortfall), peak))
}

/// Runs the fleet. `usable` = usable addresses of the subnet (`None` = unlimited).
pub fn simulate(groups: &[NodeGroup], usable: Option<u32>) -> Result<FleetOutcome, FleetError> {
    let mut alone = Vec::with_capacity(groups.len());
    for g in groups {
        alone.push(standalone(g)?);
    }
    let primaries: u64 = groups
        .iter()
        .filter(|g| g.primary_in_subnet)
        .map(|g| u64::from(g.count))
        .sum();
    let Some(usable) = usable else {
        return Ok(FleetOutcome {
            nodes: groups
                .iter()
                .zip(&alone)
                .map(|(g, (o, _))| vec![o.clone(); g.count as usize])
                .collect(),
            subnet_free: None,
            exhausted: false,
        });
    };
    if primaries > u64::from(usable) {
        return Err(FleetError::PrimariesDoNotFit {
            usable,
            nodes: primaries,
        });
    }
    let peak: u64 = groups
        .iter()
        .zip(&alone)
        .map(|(g, (_, p))| u64::from(g.count) * u64::from(*p))
        .sum();
    if peak <= u64::from(usable) {
        let used: u64 = groups
            .iter()
            .zip(&alone)
            .map(|(g, (o, _))| u64::from(g.count) * u64::from(o.subnet_ips))
            .sum();
        return Ok(FleetOutcome {
            nodes: groups
                .iter()
                .zip(&alone)
                .map(|(g, (o, _))| vec![o.clone(); g.count as usize])
                .collect(),
            subnet_free: Some(usable - used as u32),
            exhausted: false,
        });
    }
    interleaved(groups, usable - primaries as u32)
}

/// The shared-subnet simulation: start-up of every node, then pods round-robin.
fn interleaved(groups: &[NodeGroup], mut budget: u32) -> Result<FleetOutcome, FleetError> {
    let mut live: Vec<Live<'_>> = groups
        .iter()
        .enumerate()
        .flat_map(|(index, g)| {
            (0..g.count).map(move |_| Live {
                index,
                group: g,
                node: new_node(g),
                running: 0,
                failed: 0,
                shortfall: None,
            })
        })
        .collect();
    let mut exhausted = false;
    let mut step = |l: &mut Live<'_>, budget: &mut u32, add: bool| -> Result<(), FleetError> {
        l.node.subnet_free = Some(*budget);
        if add {
            match l.node.add_pod() {
                Ok(_) => l.running += 1,
                Err(SimError::NoFreeAddress) => {
                    l.failed += 1;
                    let short = l.node.timers().in_insufficient_backoff
                        || l.node.subnet_free.unwrap_or(0) < 1 + unit(&l.group.policy);
                    l.shortfall = Some(if short {
                        Shortfall::SubnetExhausted
                    } else {
                        Shortfall::InstanceLimit
                    });
                }
                Err(e) => return Err(e.into()),
            }
        }
        l.node.settle(MAX_SETTLE_TICKS)?;
        if l.node.timers().in_insufficient_backoff {
            exhausted = true;
        }
        *budget = l.node.subnet_free.unwrap_or(0);
        Ok(())
    };
    for l in &mut live {
        step(l, &mut budget, false)?;
    }
    loop {
        let mut progressed = false;
        for l in &mut live {
            if l.running + l.failed < l.wanted() {
                step(l, &mut budget, true)?;
                progressed = true;
            }
        }
        if !progressed {
            break;
        }
    }
    exhausted |= live
        .iter()
        .any(|l| l.shortfall == Some(Shortfall::SubnetExhausted));
    let mut nodes: Vec<Vec<NodeOutcome>> = groups.iter().map(|_| Vec::new()).collect();
    for l in &live {
        nodes[l.index].push(outcome(&l.node, l.group, l.running, l.shortfall));
    }
    Ok(FleetOutcome {
        nodes,
        subnet_free: Some(budget),
        exhausted,
    })
}
