//! Executing a [`TickPlan`] against the simulated node, the way ipamd and EC2 would.

use std::time::Duration;

use super::{SimEni, SimError, SimNode};
use crate::deletable::MIN_ENI_LIFETIME;
use crate::model::IPS_PER_PREFIX;
use crate::plan::{
    Action, CidrKind, DECREASE_INTERVAL, INSUFFICIENT_ADDRESS_BACKOFF, POOL_TICK_INTERVAL,
    TickPlan, plan_tick,
};
use crate::targets::{eni_budget, eni_limits};

/// What one simulated tick did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TickOutcome {
    /// The planner's plan for this tick.
    pub plan: TickPlan,
    /// Whether applying it changed the node (addresses or ENIs).
    pub changed: bool,
}

/// Outcome of asking EC2 for addresses.
enum Grant {
    Granted,
    Insufficient,
}

impl SimNode {
    fn cidr_size(&self) -> u32 {
        if self.policy.prefix_delegation {
            IPS_PER_PREFIX
        } else {
            1
        }
    }

    /// Takes `n` addresses out of the subnet budget, if it has them.
    fn take_budget(&mut self, n: u32) -> bool {
        match self.subnet_free {
            None => true,
            Some(free) if free >= n => {
                self.subnet_free = Some(free - n);
                true
            }
            Some(_) => false,
        }
    }

    fn give_back_budget(&mut self, n: u32) {
        if let Some(free) = self.subnet_free.as_mut() {
            *free = free.saturating_add(n);
        }
    }

    fn check_kind(&self, prefix: bool) -> Result<(), SimError> {
        if prefix == self.policy.prefix_delegation {
            Ok(())
        } else {
            Err(SimError::WrongKind)
        }
    }

    fn add_cidrs(&mut self, idx: usize, count: u32) -> Result<(), SimError> {
        let prefix = self.policy.prefix_delegation;
        for _ in 0..count {
            let cidr = self.new_cidr(prefix)?;
            if let Some(eni) = self.enis.get_mut(idx) {
                eni.cidrs.push(cidr);
            }
        }
        Ok(())
    }

    /// Puts `count` current-mode CIDRs on an ENI directly (building a starting state),
    /// ignoring the subnet budget but not the per-ENI limit.
    pub fn add_cidrs_to(&mut self, eni: &str, count: u32) -> Result<(), SimError> {
        let idx = self
            .enis
            .iter()
            .position(|e| e.id == eni)
            .ok_or_else(|| SimError::UnknownEni(eni.to_string()))?;
        let max = eni_limits(&self.policy, &self.cap).max_cidrs_per_eni();
        if self.enis[idx].cidrs.len() as u32 + count > max {
            return Err(SimError::CidrLimitExceeded {
                eni: eni.to_string(),
                max,
            });
        }
        self.add_cidrs(idx, count)
    }

    /// `AssignPrivateIpAddresses`: the full count, else (upstream's retry) a single one.
    fn assign(&mut self, eni: &str, count: u32) -> Result<Grant, SimError> {
        let idx = self
            .enis
            .iter()
            .position(|e| e.id == eni)
            .ok_or_else(|| SimError::UnknownEni(eni.to_string()))?;
        let max = eni_limits(&self.policy, &self.cap).max_cidrs_per_eni();
        let current = self.enis[idx].cidrs.len() as u32;
        if current.saturating_add(count) > max {
            return Err(SimError::CidrLimitExceeded {
                eni: eni.to_string(),
                max,
            });
        }
        let size = self.cidr_size();
        for n in [count, 1] {
            if n > 0 && self.take_budget(n * size) {
                self.add_cidrs(idx, n)?;
                return Ok(Grant::Granted);
            }
        }
        Ok(Grant::Insufficient)
    }

    /// `CreateNetworkInterface` + attach with `count` CIDRs (the ENI's own primary address
    /// also comes out of the subnet).
    fn allocate_eni(&mut self, count: u32) -> Result<Grant, SimError> {
        let snapshot = self.snapshot();
        let budget = eni_budget(&self.cap, &snapshot);
        let managed = self.enis.iter().filter(|e| !e.excluded).count() as u32;
        if managed >= budget {
            return Err(SimError::EniLimitExceeded(budget));
        }
        let max = eni_limits(&self.policy, &self.cap).max_cidrs_per_eni();
        if count > max {
            return Err(SimError::CidrLimitExceeded {
                eni: "<new>".to_string(),
                max,
            });
        }
        if !self.take_budget(1 + count * self.cidr_size()) {
            return Ok(Grant::Insufficient);
        }
        let mut device = 1;
        while self.enis.iter().any(|e| e.device_number == device) {
            device += 1;
        }
        let id = format!("eni-{:03}", self.next_eni);
        self.next_eni += 1;
        self.push_eni(SimEni::new(id, device, self.now));
        let idx = self
            .enis
            .iter()
            .position(|e| e.device_number == device)
            .ok_or(SimError::AddressSpaceExhausted)?;
        self.add_cidrs(idx, count)?;
        Ok(Grant::Granted)
    }

    fn release(&mut self, eni: &str, cidrs: &[ipnet::Ipv4Net]) -> Result<(), SimError> {
        let size = self.cidr_size();
        let e = self
            .enis
            .iter_mut()
            .find(|e| e.id == eni)
            .ok_or_else(|| SimError::UnknownEni(eni.to_string()))?;
        for cidr in cidrs {
            let pos = e.cidrs.iter().position(|c| c.net == *cidr).ok_or_else(|| {
                SimError::UnknownCidr {
                    eni: eni.to_string(),
                    cidr: *cidr,
                }
            })?;
            if e.cidrs[pos].assigned() > 0 {
                return Err(SimError::ReleaseInUse {
                    eni: eni.to_string(),
                    cidr: *cidr,
                });
            }
            e.cidrs.remove(pos);
        }
        self.give_back_budget(size * cidrs.len() as u32);
        Ok(())
    }

    fn free_eni(&mut self, eni: &str) -> Result<(), SimError> {
        let pos = self
            .enis
            .iter()
            .position(|e| e.id == eni)
            .ok_or_else(|| SimError::UnknownEni(eni.to_string()))?;
        let e = &self.enis[pos];
        if e.is_primary || e.assigned_ips() > 0 {
            return Err(SimError::FreeRefused(eni.to_string()));
        }
        let back = e.total_ips() + 1;
        self.enis.remove(pos);
        self.give_back_budget(back);
        Ok(())
    }

    /// Applies a plan at `now`. Grow actions are tried in order until one is granted;
    /// if none is and EC2 reported insufficient addresses, the 120 s back-off starts.
    /// Returns whether the node changed.
    pub fn apply(&mut self, plan: &TickPlan) -> Result<bool, SimError> {
        let mut changed = false;
        let mut insufficient = false;
        let mut grown = false;
        for action in &plan.actions {
            match action {
                Action::AssignIps { eni, count } | Action::AssignPrefixes { eni, count } => {
                    self.check_kind(matches!(action, Action::AssignPrefixes { .. }))?;
                    if grown {
                        continue;
                    }
                    match self.assign(eni, *count)? {
                        Grant::Granted => grown = true,
                        Grant::Insufficient => insufficient = true,
                    }
                }
                Action::AllocateEni { kind, count } => {
                    self.check_kind(*kind == CidrKind::Prefix)?;
                    if grown {
                        continue;
                    }
                    match self.allocate_eni(*count)? {
                        Grant::Granted => grown = true,
                        Grant::Insufficient => insufficient = true,
                    }
                }
                Action::ReleaseCidrs { eni, cidrs } => {
                    self.release(eni, cidrs)?;
                    changed |= !cidrs.is_empty();
                }
                Action::FreeEni { eni } => {
                    self.free_eni(eni)?;
                    changed = true;
                }
            }
        }
        if !grown && insufficient {
            self.start_backoff();
        }
        if plan.decrease_ran {
            self.last_decrease = Some(self.now);
        }
        Ok(changed || grown)
    }

    /// Plans and applies one tick at `now`, then advances the clock by one tick interval.
    pub fn tick(&mut self) -> Result<TickOutcome, SimError> {
        let plan = plan_tick(&self.policy, &self.cap, &self.snapshot(), &self.timers());
        let changed = self.apply(&plan)?;
        self.now += POOL_TICK_INTERVAL;
        Ok(TickOutcome { plan, changed })
    }

    /// Ticks during which an unchanged node may still change later because of a timer
    /// (ENI minimum age, cooldown, decrease gate, back-off).
    pub fn quiet_window(&self) -> usize {
        let longest: Duration = [
            MIN_ENI_LIFETIME,
            self.cooldown,
            DECREASE_INTERVAL,
            INSUFFICIENT_ADDRESS_BACKOFF,
        ]
        .into_iter()
        .max()
        .unwrap_or(INSUFFICIENT_ADDRESS_BACKOFF);
        (longest.as_millis() / POOL_TICK_INTERVAL.as_millis()) as usize + 2
    }

    /// Ticks until the node stays unchanged for a whole [`SimNode::quiet_window`] (a fixed
    /// point). Returns the number of ticks until the last change.
    pub fn settle(&mut self, max_ticks: usize) -> Result<usize, SimError> {
        let window = self.quiet_window();
        let mut quiet = 0usize;
        let mut last_change = 0usize;
        for i in 0..max_ticks {
            if self.tick()?.changed {
                quiet = 0;
                last_change = i + 1;
            } else {
                quiet += 1;
                if quiet >= window {
                    return Ok(last_change);
                }
            }
        }
        Err(SimError::NoFixedPoint(max_ticks))
    }

    /// Adds pods one at a time up to `pods`, settling after each; returns the largest
    /// number of ticks any single pod needed to settle.
    pub fn grow_to(&mut self, pods: usize, max_ticks: usize) -> Result<usize, SimError> {
        let mut worst = self.settle(max_ticks)?;
        while self.pods().len() < pods {
            self.add_pod()?;
            worst = worst.max(self.settle(max_ticks)?);
        }
        Ok(worst)
    }
}
