//! Draining ENIs excluded from pod addresses (`crate::subnet_exclusion`): each tick, before
//! the warm-pool plan, `planner::plan_excluded` says which unused CIDRs of excluded ENIs go
//! back to EC2 and which empty excluded ENI is detached and deleted. Both go through the
//! same shrink path as the warm-pool plan's (datastore first, non-forcibly: an ENI or CIDR
//! that got a pod meanwhile is kept).

use aws::Ec2;
use net::kernel::Kernel;

use super::{PoolManager, TickOutcome, lock, now};

impl<E: Ec2, K: Kernel> PoolManager<E, K> {
    /// Carries out `planner::plan_excluded` for the pool as it is now.
    pub(super) async fn drain_excluded(&mut self, out: &mut TickOutcome) {
        let actions = {
            let snapshot = lock(&self.ds).snapshot(now());
            planner::plan_excluded(&self.policy(), &snapshot, &self.timers())
        };
        let what = "gave back addresses or an empty ENI excluded from pod IPs";
        self.shrink_each(&actions, what, out).await;
    }
}
