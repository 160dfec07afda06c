//! [`Imds`] on the AWS SDK's IMDSv2 client (token flow, retries; endpoint from
//! `AWS_EC2_METADATA_SERVICE_ENDPOINT` like every SDK).

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use aws_config::imds::client::Client;
use aws_config::imds::client::error::ImdsError;
use ipnet::{Ipv4Net, Ipv6Net};
use tokio::time::Instant;

use crate::error::{AwsError, ErrorKind};
use crate::observe::ApiObserver;
use crate::traits::{AwsResult, Imds, ImdsEni, InstanceIdentity};

/// The real IMDS client.
pub struct SdkImds {
    client: Client,
    observer: Arc<dyn ApiObserver>,
}

const API: &str = "GetMetadata";

fn imds_error(path: &str, err: &ImdsError) -> AwsError {
    let kind = match err {
        ImdsError::ErrorResponse(r) => {
            crate::error::classify_status(r.response().status().as_u16())
        }
        ImdsError::IoError(_) | ImdsError::FailedToLoadToken(_) => ErrorKind::Unavailable,
        _ => ErrorKind::Other,
    };
    AwsError::new(
        kind,
        API,
        None,
        format!("failed to retrieve {path} from instance metadata: {err}"),
    )
}

fn parse_lines<T: std::str::FromStr>(path: &str, text: &str) -> AwsResult<Vec<T>> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| {
            l.parse().map_err(|_| {
                AwsError::new(
                    ErrorKind::Other,
                    API,
                    None,
                    format!("instance metadata {path}: cannot parse {l:?}"),
                )
            })
        })
        .collect()
}

fn parse_one<T: std::str::FromStr>(path: &str, text: &str) -> AwsResult<T> {
    text.trim().parse().map_err(|_| {
        AwsError::new(
            ErrorKind::Other,
            API,
            None,
            format!("instance metadata {path}: cannot parse {text:?}"),
        )
    })
}

impl SdkImds {
    pub fn new(client: Client, observer: Arc<dyn ApiObserver>) -> Self {
        Self { client, observer }
    }

    /// GET `/latest/meta-data/<path>`; a 404 is `Ok(None)`.
    pub async fn get_opt(&self, path: &str) -> AwsResult<Option<String>> {
        let full = format!("/latest/meta-data/{path}");
        let start = Instant::now();
        let result = match self.client.get(full.clone()).await {
            Ok(value) => Ok(Some(value.as_ref().to_string())),
            Err(ImdsError::ErrorResponse(r)) if r.response().status().as_u16() == 404 => Ok(None),
            Err(e) => Err(imds_error(&full, &e)),
        };
        self.observer
            .observe(API, result.as_ref().map(|_| ()), start.elapsed());
        result
    }

    /// GET a list path: one item a line; a 404 is an empty list.
    async fn get_list<T: std::str::FromStr>(&self, path: &str) -> AwsResult<Vec<T>> {
        match self.get_opt(path).await? {
            Some(text) => parse_lines(path, &text),
            None => Ok(Vec::new()),
        }
    }

    /// GET a path that must exist and hold a value. An empty answer (`200 OK`, no body) is
    /// an error as a 404 is: taken as a value, an empty `instance-id` made the agent describe
    /// the ENIs of instance `""`, find none, and drop every restored pod's address
    /// (docs/reliability.md, "Found by the suite"). It is `Unavailable`, so callers that retry
    /// IMDS gaps retry it.
    pub async fn get(&self, path: &str) -> AwsResult<String> {
        let full = || format!("/latest/meta-data/{path}");
        match self.get_opt(path).await? {
            Some(value) if !value.trim().is_empty() => Ok(value),
            Some(_) => Err(AwsError::new(
                ErrorKind::Unavailable,
                API,
                None,
                format!("instance metadata {} is empty", full()),
            )),
            None => Err(AwsError::new(
                ErrorKind::NotFound,
                API,
                None,
                format!("instance metadata {} is missing (404)", full()),
            )),
        }
    }
}

impl Imds for SdkImds {
    async fn identity(&self) -> AwsResult<InstanceIdentity> {
        let az = self.get("placement/availability-zone").await?;
        let region = match self.get_opt("placement/region").await? {
            Some(r) => r,
            // Older IMDS: derive the region from the AZ (us-west-2a → us-west-2).
            None => az
                .trim_end_matches(|c: char| c.is_ascii_alphabetic())
                .to_string(),
        };
        Ok(InstanceIdentity {
            instance_id: self.get("instance-id").await?,
            instance_type: self.get("instance-type").await?,
            region,
            availability_zone: az,
            primary_mac: self.get("mac").await?,
            local_ipv4: parse_one::<Ipv4Addr>("local-ipv4", &self.get("local-ipv4").await?)?,
        })
    }

    async fn macs(&self) -> AwsResult<Vec<String>> {
        let text = self.get("network/interfaces/macs/").await?;
        Ok(text
            .lines()
            .map(|l| l.trim().trim_end_matches('/').to_string())
            .filter(|l| !l.is_empty())
            .collect())
    }

    async fn eni(&self, mac: &str) -> AwsResult<ImdsEni> {
        let base = format!("network/interfaces/macs/{mac}");
        let device_number = parse_one(
            "device-number",
            &self.get(&format!("{base}/device-number")).await?,
        )?;
        let network_card = match self.get_opt(&format!("{base}/network-card")).await? {
            Some(v) => parse_one("network-card", &v)?,
            None => 0,
        };
        let subnet_cidr = match self
            .get_opt(&format!("{base}/subnet-ipv4-cidr-block"))
            .await?
        {
            Some(v) => Some(parse_one::<Ipv4Net>("subnet-ipv4-cidr-block", &v)?),
            None => None,
        };
        let ipv4s = self.get_list(&format!("{base}/local-ipv4s")).await?;
        let ipv4_prefixes = self.get_list(&format!("{base}/ipv4-prefix")).await?;
        let ipv6s = self.get_list(&format!("{base}/ipv6s")).await?;
        let ipv6_prefixes = self.get_list(&format!("{base}/ipv6-prefix")).await?;
        let subnet_ipv6_cidrs = self
            .get_list(&format!("{base}/subnet-ipv6-cidr-blocks"))
            .await?;
        Ok(ImdsEni {
            mac: mac.to_string(),
            eni_id: self.get(&format!("{base}/interface-id")).await?,
            device_number,
            network_card,
            subnet_id: self.get(&format!("{base}/subnet-id")).await?,
            subnet_cidr,
            ipv4s,
            ipv4_prefixes,
            ipv6s,
            ipv6_prefixes,
            subnet_ipv6_cidrs,
        })
    }

    async fn security_group_ids(&self, mac: &str) -> AwsResult<Vec<String>> {
        let text = self
            .get(&format!("network/interfaces/macs/{mac}/security-group-ids"))
            .await?;
        Ok(text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect())
    }

    async fn vpc_ipv4_cidrs(&self, mac: &str) -> AwsResult<Vec<Ipv4Net>> {
        let text = self
            .get(&format!(
                "network/interfaces/macs/{mac}/vpc-ipv4-cidr-blocks"
            ))
            .await?;
        parse_lines("vpc-ipv4-cidr-blocks", &text)
    }

    async fn vpc_ipv6_cidrs(&self, mac: &str) -> AwsResult<Vec<Ipv6Net>> {
        self.get_list(&format!(
            "network/interfaces/macs/{mac}/vpc-ipv6-cidr-blocks"
        ))
        .await
    }

    async fn primary_ipv6(&self) -> AwsResult<Option<Ipv6Addr>> {
        match self.get_opt("ipv6").await? {
            Some(text) => parse_one::<Ipv6Addr>("ipv6", &text).map(Some),
            None => Ok(None),
        }
    }
}
