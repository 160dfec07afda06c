//! Building the real clients the way operators configure them: region from IMDS,
//! credentials from the SDK's default chain (IRSA web identity, env, instance role),
//! endpoints from `AWS_EC2_ENDPOINT` (upstream's variable, which upstream fails to apply)
//! or the SDK's `AWS_ENDPOINT_URL_EC2` / `AWS_EC2_METADATA_SERVICE_ENDPOINT`.

use std::sync::Arc;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::provider_config::ProviderConfig;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_ec2::config::Region;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use aws_smithy_runtime_api::client::http::SharedHttpClient;

use crate::backoff::Backoff;
use crate::error::{AwsError, ErrorKind};
use crate::observe::ApiObserver;
use crate::sdk_ec2::SdkEc2;
use crate::sdk_imds::SdkImds;
use crate::token_bucket::{RateLimiter, RateLimits};

/// How to reach EC2.
#[derive(Debug, Clone)]
pub struct Ec2Settings {
    pub region: String,
    /// `AWS_EC2_ENDPOINT`; when unset the SDK's own endpoint resolution applies
    /// (`AWS_ENDPOINT_URL_EC2`, `AWS_ENDPOINT_URL`, or the regional endpoint).
    pub endpoint: Option<String>,
    /// `HTTP_TIMEOUT` (per attempt).
    pub http_timeout: Duration,
    pub rate_limits: RateLimits,
    pub backoff: Backoff,
    /// Static credentials (access key, secret); `None` uses the SDK's default chain.
    pub static_credentials: Option<(String, String)>,
}

impl Ec2Settings {
    /// Settings for `region` from the process environment.
    pub fn new(region: &str) -> Self {
        Self::from_lookup(region, |name| std::env::var(name).ok())
    }

    /// Settings for `region` from an environment lookup: `AWS_EC2_ENDPOINT` (upstream's
    /// variable) is applied to the EC2 client itself.
    pub fn from_lookup(region: &str, lookup: impl Fn(&str) -> Option<String>) -> Self {
        Self {
            region: region.to_string(),
            endpoint: lookup("AWS_EC2_ENDPOINT").filter(|v| !v.is_empty()),
            http_timeout: Duration::from_secs(10),
            rate_limits: RateLimits::default(),
            backoff: Backoff::default(),
            static_credentials: None,
        }
    }
}

/// The HTTPS client every AWS call uses (rustls with ring).
pub fn https_client() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// The IMDSv2 client: at `endpoint` if given, else from `AWS_EC2_METADATA_SERVICE_ENDPOINT`,
/// else the link-local default.
pub fn imds_client(
    endpoint: Option<&str>,
    observer: Arc<dyn ApiObserver>,
) -> Result<SdkImds, AwsError> {
    let provider = ProviderConfig::default().with_http_client(https_client());
    let mut builder = aws_config::imds::client::Client::builder().configure(&provider);
    if let Some(endpoint) = endpoint {
        builder = builder.endpoint(endpoint).map_err(|e| {
            AwsError::new(
                ErrorKind::InvalidRequest,
                "GetMetadata",
                None,
                format!("invalid IMDS endpoint {endpoint:?}: {e}"),
            )
        })?;
    }
    Ok(SdkImds::new(builder.build(), observer))
}

/// The EC2 client. SDK retries are off: [`SdkEc2`] retries itself so that each attempt is
/// rate-limited, counted and timed.
pub async fn ec2_client(settings: &Ec2Settings, observer: Arc<dyn ApiObserver>) -> SdkEc2 {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some((key, secret)) = &settings.static_credentials {
        loader = loader.credentials_provider(aws_sdk_ec2::config::Credentials::new(
            key, secret, None, None, "static",
        ));
    }
    let shared = loader
        .http_client(https_client())
        .region(Region::new(settings.region.clone()))
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .operation_attempt_timeout(settings.http_timeout)
                .connect_timeout(settings.http_timeout)
                .build(),
        )
        .load()
        .await;
    let mut conf = aws_sdk_ec2::config::Builder::from(&shared);
    if let Some(endpoint) = &settings.endpoint {
        conf = conf.endpoint_url(endpoint);
    }
    SdkEc2::new(
        aws_sdk_ec2::Client::from_conf(conf.build()),
        RateLimiter::new(&settings.rate_limits),
        settings.backoff,
        observer,
    )
}
