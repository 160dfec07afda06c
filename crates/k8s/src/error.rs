//! Errors of the crate's API calls (no kube types in them).

use crate::pod_ips::ReleaseMismatch;

/// A failed Kubernetes operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum K8sError {
    /// The client could not be configured (no in-cluster config, bad KUBECONFIG, bad URL).
    #[error("kubernetes client configuration: {0}")]
    Config(String),
    /// The API server answered with an error status or could not be reached.
    #[error("kubernetes API {verb} {what}: {message}")]
    Api {
        /// `get`, `patch`, `create`.
        verb: &'static str,
        /// The object, e.g. `pods/kube-system/coredns-1`.
        what: String,
        /// HTTP status when the server answered (404, 409, 403, ...).
        code: Option<u16>,
        /// The server's or the transport's message.
        message: String,
    },
    /// The node's CNINode does not exist yet (the VPC Resource Controller creates it).
    #[error("CNINode {0} does not exist yet (it is created by the VPC Resource Controller)")]
    CniNodeMissing(String),
    /// Optimistic-lock conflicts kept happening.
    #[error("CNINode {node}: resourceVersion conflict persisted after {attempts} attempts")]
    Conflict {
        /// The node name.
        node: String,
        /// Attempts made.
        attempts: u32,
    },
    /// On DEL the pod's annotation holds another IP.
    #[error(transparent)]
    ReleaseMismatch(#[from] ReleaseMismatch),
}

impl K8sError {
    pub(crate) fn api(verb: &'static str, what: impl Into<String>, err: kube::Error) -> Self {
        let (code, message) = match &err {
            kube::Error::Api(status) => (Some(status.code), status.message.clone()),
            other => (None, other.to_string()),
        };
        K8sError::Api {
            verb,
            what: what.into(),
            code,
            message,
        }
    }

    /// HTTP status of an API error, if the server answered.
    pub fn status_code(&self) -> Option<u16> {
        match self {
            K8sError::Api { code, .. } => *code,
            _ => None,
        }
    }
}
