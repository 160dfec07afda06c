//! CNI 1.1 `STATUS` and `GC`.
//!
//! STATUS: the plugin can serve ADDs when ipamd answers its gRPC health check on the socket.
//!
//! GC deliberately releases nothing. ipamd's gRPC API (upstream's `rpc.proto`) has no call
//! that lists allocations, and the runtime calling GC only knows its own attachments: on a
//! node where two runtimes (kubelet's containerd and podman, say) share the network name
//! `aws-cni`, releasing "everything not in cni.dev/valid-attachments" would take addresses
//! from live pods of the other runtime. ipamd already reclaims leaked addresses itself
//! (checkpoint normalisation drops allocations whose veth is gone). So GC validates its
//! input, logs what the runtime considers valid, and succeeds.

use std::time::Duration;

use rpc::health::{HealthCheckRequest, HealthClient, WireServingStatus};

use crate::conf::NetConf;
use crate::error::CniError;

/// How long STATUS waits for ipamd.
pub const STATUS_TIMEOUT: Duration = Duration::from_secs(2);

/// STATUS: `Ok` when ipamd reports SERVING, else error 50.
pub async fn status(target: &str) -> Result<(), CniError> {
    let unavailable = |why: String| {
        CniError::not_available(format!(
            "aws-cni cannot add pods now: ipamd ({target}) {why}; check the aws-node pod on this node"
        ))
    };
    let channel = rpc::client::connect(target, Some(STATUS_TIMEOUT))
        .await
        .map_err(|e| unavailable(format!("is not reachable: {e}")))?;
    let reply = tokio::time::timeout(
        STATUS_TIMEOUT,
        HealthClient::new(channel).check(HealthCheckRequest {
            service: String::new(),
        }),
    )
    .await
    .map_err(|_| unavailable("did not answer the health check in time".into()))?
    .map_err(|s| unavailable(format!("failed the health check: {}", s.message())))?
    .into_inner();
    if reply.status == WireServingStatus::Serving as i32 {
        tracing::debug!("STATUS ok: ipamd serving");
        Ok(())
    } else {
        Err(unavailable(format!(
            "reports health status {} (not SERVING)",
            reply.status
        )))
    }
}

/// GC: validates `cni.dev/valid-attachments` and releases nothing (see the module docs).
pub fn gc(conf: &NetConf) -> Result<(), CniError> {
    let valid = conf.valid_attachments.as_deref().unwrap_or_default();
    tracing::info!(
        network = %conf.name,
        valid_attachments = valid.len(),
        "GC: nothing released; ipamd reclaims leaked addresses itself"
    );
    Ok(())
}
