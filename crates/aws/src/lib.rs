//! `aws`: the agent's EC2 and IMDS clients. Narrow traits ([`Ec2`], [`Imds`]) with one real
//! implementation each on `aws-sdk-ec2` / `aws-config`, a client-side token bucket per API
//! family, jittered exponential backoff on throttling and 5xx, typed errors, and per-call
//! accounting for metrics.

pub mod backoff;
pub mod connect;
pub mod error;
pub mod observe;
pub mod sdk_ec2;
pub mod sdk_imds;
#[cfg(feature = "testing")]
pub mod testing;
pub mod token_bucket;
pub mod traits;
pub mod types;

pub use connect::{Ec2Settings, ec2_client, imds_client};
pub use error::{AwsError, ErrorKind};
pub use observe::{ApiObserver, ApiStats};
pub use traits::{AwsResult, Ec2, Imds, ImdsEni, InstanceIdentity};
pub use types::*;
