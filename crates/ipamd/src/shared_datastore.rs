//! The datastore shared by the pool manager, the reconciler and the gRPC handlers.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use ipam::{Datastore, Timestamp};

/// A datastore shared between the pool manager, the reconciler and the gRPC handlers.
pub type SharedDatastore = Arc<Mutex<Datastore>>;

/// Locks the datastore (a poisoned lock is still usable: its state is consistent after
/// every operation because operations roll back on failure).
pub fn lock(ds: &SharedDatastore) -> MutexGuard<'_, Datastore> {
    ds.lock().unwrap_or_else(|e| e.into_inner())
}

/// The current time as the datastore's timestamp.
pub fn now() -> Timestamp {
    Timestamp::from_system_time(SystemTime::now())
}
