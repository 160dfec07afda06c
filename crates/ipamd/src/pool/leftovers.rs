//! Leftovers of the other mode after `ENABLE_PREFIX_DELEGATION` was switched
//! (docs/ipamd.md, "Switching prefix delegation"): each tick, before the warm-pool plan,
//! the secondary /32s (prefix delegation on) or prefixes (off) that no pod holds go back to
//! EC2 (`ipam::Datastore::other_mode_leftovers`). The first tick after start-up is upstream's
//! `nodeInit` clean-up (`tryUnassignIPsFromENIs`/`tryUnassignPrefixesFromENIs`); a DEL that
//! empties such a CIDR kicks the pool loop, which is upstream's clean-up on `DelNetwork`
//! (`tryUnassignPrefixFromENI`) without making the DEL wait on EC2. Same shrink path as the
//! warm-pool plan's: datastore first, non-forcibly.

use aws::Ec2;
use net::kernel::Kernel;

use super::{PoolManager, TickOutcome, lock};

impl<E: Ec2, K: Kernel> PoolManager<E, K> {
    /// Gives the other mode's unused CIDRs back to EC2.
    pub(super) async fn release_other_mode(&mut self, out: &mut TickOutcome) {
        let actions = lock(&self.ds).other_mode_leftovers();
        let what = "released unused addresses of the other prefix-delegation mode";
        self.shrink_each(&actions, what, out).await;
    }
}
