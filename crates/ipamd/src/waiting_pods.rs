//! Pods that `AddNetwork` refused for want of an address since the last pool tick (issue 16;
//! docs/ipamd.md, "Waiting pods"). The runtime retries such a pod, so it is demand the next
//! growth should cover: the planner counts it as assigned (`planner::PoolStats::waiting_pods`)
//! and one EC2 call serves a burst instead of one call of `WARM_IP_TARGET` per tick.
//! Upstream has no such count (`AddNetwork` only fails, `increaseDatastorePool` sees the
//! warm deficit alone).

use std::collections::BTreeSet;
use std::sync::Mutex;

use ipam::IpamKey;

/// The keys refused since the last tick; a key counts once however often it retries.
#[derive(Debug, Default)]
pub struct WaitingPods {
    keys: Mutex<BTreeSet<IpamKey>>,
}

impl WaitingPods {
    /// `key` was refused: no address was free.
    pub fn refused(&self, key: &IpamKey) {
        self.with(|k| {
            k.insert(key.clone());
        });
    }

    /// `key` got an address, or its pod is gone.
    pub fn done(&self, key: &IpamKey) {
        self.with(|k| {
            k.remove(key);
        });
    }

    /// Pods waiting now.
    pub fn count(&self) -> u32 {
        self.with(|k| u32::try_from(k.len()).unwrap_or(u32::MAX))
    }

    /// A tick planned for them: the ones still without an address retry and count again.
    pub fn clear(&self) {
        self.with(BTreeSet::clear);
    }

    fn with<T>(&self, f: impl FnOnce(&mut BTreeSet<IpamKey>) -> T) -> T {
        // A panic while holding this lock cannot leave the set inconsistent.
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(c: &str) -> IpamKey {
        IpamKey::new("aws-cni", c, "eth0")
    }

    #[test]
    fn a_retrying_pod_counts_once_and_leaves_when_served() {
        let w = WaitingPods::default();
        w.refused(&key("a"));
        w.refused(&key("a"));
        w.refused(&key("b"));
        assert_eq!(w.count(), 2);
        w.done(&key("a"));
        assert_eq!(w.count(), 1);
        w.clear();
        assert_eq!(w.count(), 0);
    }
}
