//! Building the Kubernetes client: in-cluster or KUBECONFIG (kube's `Config::infer`, like
//! controller-runtime's `GetConfig`), `CLUSTER_ENDPOINT` overriding the server, or an
//! explicit URL (tests, demo).

use crate::error::K8sError;

/// A configured connection to an API server (wraps `kube::Client`).
#[derive(Clone)]
pub struct Connection {
    pub(crate) client: kube::Client,
    url: String,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("url", &self.url)
            .finish()
    }
}

impl Connection {
    /// In-cluster service account, else `KUBECONFIG`/`~/.kube/config`; `cluster_endpoint`
    /// (`CLUSTER_ENDPOINT`) replaces the server URL when set and non-empty.
    pub async fn infer(cluster_endpoint: Option<&str>) -> Result<Self, K8sError> {
        let mut config = kube::Config::infer()
            .await
            .map_err(|e| K8sError::Config(e.to_string()))?;
        if let Some(ep) = cluster_endpoint.filter(|s| !s.is_empty()) {
            config.cluster_url = ep
                .parse()
                .map_err(|e| K8sError::Config(format!("CLUSTER_ENDPOINT {ep:?}: {e}")))?;
        }
        Self::from_config(config)
    }

    /// A plain URL such as `http://127.0.0.1:6443` (no credentials; tests and the demo node).
    pub fn from_url(url: &str) -> Result<Self, K8sError> {
        let uri = url
            .parse()
            .map_err(|e| K8sError::Config(format!("API server URL {url:?}: {e}")))?;
        Self::from_config(kube::Config::new(uri))
    }

    fn from_config(config: kube::Config) -> Result<Self, K8sError> {
        let url = config.cluster_url.to_string();
        let client = kube::Client::try_from(config).map_err(|e| K8sError::Config(e.to_string()))?;
        Ok(Connection { client, url })
    }

    /// The API server URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `GET /version` (upstream's connectivity check): the server's `gitVersion`.
    pub async fn server_version(&self) -> Result<String, K8sError> {
        self.client
            .apiserver_version()
            .await
            .map(|v| v.git_version)
            .map_err(|e| K8sError::api("get", "/version", e))
    }
}
