//! The few instance-metadata reads of the entrypoint (egress node IP) and the init
//! container (primary MAC), through the agent's IMDSv2 client (`AWS_EC2_METADATA_*` honoured).

use std::net::IpAddr;
use std::sync::Arc;

use aws::sdk_imds::SdkImds;

/// An IMDS read that failed, with the path.
#[derive(Debug, thiserror::Error)]
#[error("instance metadata {path}: {reason}")]
pub struct ImdsError {
    pub path: &'static str,
    pub reason: String,
}

/// The IMDS client.
pub fn client() -> Result<SdkImds, ImdsError> {
    aws::imds_client(None, Arc::new(aws::ApiStats::default())).map_err(|e| ImdsError {
        path: "/",
        reason: e.to_string(),
    })
}

/// A non-empty value of `path` (under `/latest/meta-data/`).
pub async fn read(imds: &SdkImds, path: &'static str) -> Result<String, ImdsError> {
    match imds.get_opt(path).await {
        Ok(Some(v)) if !v.trim().is_empty() => Ok(v.trim().to_owned()),
        Ok(_) => Err(ImdsError {
            path,
            reason: "missing or empty".into(),
        }),
        Err(e) => Err(ImdsError {
            path,
            reason: e.to_string(),
        }),
    }
}

/// An address at `path` (`local-ipv4`, `ipv6`).
pub async fn read_ip(imds: &SdkImds, path: &'static str) -> Result<IpAddr, ImdsError> {
    let text = read(imds, path).await?;
    text.parse().map_err(|_| ImdsError {
        path,
        reason: format!("{text:?} is not an IP address"),
    })
}
