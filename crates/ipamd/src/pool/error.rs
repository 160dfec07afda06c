//! Why a pool action failed, typed: growth blockers are told apart by variant, not by the
//! text of an EC2 error.

use aws::{AwsError, ErrorKind};
use ipam::DatastoreError;

use crate::free_eni::FreeEniError;
use crate::host_net::HostNetError;

use super::GrowthBlocker;

/// A failed grow or shrink action.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("{0}")]
    Aws(#[from] AwsError),
    /// Custom networking without a usable ENIConfig for the node.
    #[error("ENIConfig: {0}")]
    EniConfig(String),
    /// No subnet may hold a new ENI (the node's subnet tagged `kubernetes.io/role/cni=0`
    /// and no other candidate).
    #[error(
        "no valid subnet for a new ENI (the node's subnet is tagged kubernetes.io/role/cni=0?)"
    )]
    NoSubnet,
    #[error("setting up the new ENI on the host: {0}")]
    HostNet(#[from] HostNetError),
    #[error("datastore: {0}")]
    Datastore(#[from] DatastoreError),
    #[error("{0}")]
    FreeEni(#[from] FreeEniError),
}

impl PoolError {
    /// The subnet has no room: try the next candidate and start the 120 s back-off.
    pub fn is_insufficient_addresses(&self) -> bool {
        match self {
            PoolError::Aws(e) => e.kind == ErrorKind::InsufficientAddresses,
            PoolError::NoSubnet => true,
            _ => false,
        }
    }

    /// What AddNetwork's "no free address" error tells the operator.
    pub fn blocker(&self) -> GrowthBlocker {
        match self {
            PoolError::EniConfig(why) => GrowthBlocker::EniConfig(why.clone()),
            PoolError::NoSubnet => GrowthBlocker::SubnetExhausted,
            PoolError::Aws(e) => match e.kind {
                ErrorKind::InsufficientAddresses => GrowthBlocker::SubnetExhausted,
                ErrorKind::LimitExceeded => GrowthBlocker::EniLimitReached,
                ErrorKind::Throttled => GrowthBlocker::Throttled,
                ErrorKind::Unauthorized => GrowthBlocker::Unauthorized(e.api.clone()),
                _ => GrowthBlocker::Other(e.to_string()),
            },
            other => GrowthBlocker::Other(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blockers_come_from_the_variant_and_the_error_kind() {
        let aws = |kind, api: &str| PoolError::Aws(AwsError::new(kind, api, None, "x"));
        assert_eq!(
            aws(ErrorKind::InsufficientAddresses, "CreateNetworkInterface").blocker(),
            GrowthBlocker::SubnetExhausted
        );
        assert_eq!(
            aws(ErrorKind::LimitExceeded, "AttachNetworkInterface").blocker(),
            GrowthBlocker::EniLimitReached
        );
        assert_eq!(
            aws(ErrorKind::Unauthorized, "CreateNetworkInterface").blocker(),
            GrowthBlocker::Unauthorized("CreateNetworkInterface".into())
        );
        // An EC2 operation named like our old marker is not mistaken for an ENIConfig.
        assert!(matches!(
            aws(ErrorKind::Other, "ENIConfig").blocker(),
            GrowthBlocker::Other(_)
        ));
        assert_eq!(
            PoolError::EniConfig("missing".into()).blocker(),
            GrowthBlocker::EniConfig("missing".into())
        );
        assert!(PoolError::NoSubnet.is_insufficient_addresses());
        assert!(!PoolError::EniConfig("x".into()).is_insufficient_addresses());
    }
}
