//! Typed AWS errors: ipamd's decisions depend on which kind an error is.

use std::fmt;

/// What kind of failure an EC2 or IMDS call ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// `RequestLimitExceeded`, `Throttling`, HTTP 429/503: retried with backoff.
    Throttled,
    /// The subnet has no free addresses or /28 blocks: back off, try another subnet.
    InsufficientAddresses,
    /// An instance-type limit: too many ENIs or addresses.
    LimitExceeded,
    /// The resource does not exist (ENI, attachment, instance, subnet, group).
    NotFound,
    /// The resource is in use (attached ENI, taken address).
    InUse,
    /// IAM denied the call: the operator must fix the role's policy.
    Unauthorized,
    /// The request was malformed or contradicts the resource's state.
    InvalidRequest,
    /// 5xx or a transport failure (timeout, connection refused): retried.
    Unavailable,
    /// Anything else.
    Other,
}

/// Classifies an EC2 error code.
pub fn classify_code(code: &str) -> ErrorKind {
    match code {
        "RequestLimitExceeded"
        | "Throttling"
        | "ThrottlingException"
        | "RequestThrottled"
        | "TooManyRequestsException" => ErrorKind::Throttled,
        "InsufficientFreeAddressesInSubnet" | "InsufficientCidrBlocks" => {
            ErrorKind::InsufficientAddresses
        }
        "AttachmentLimitExceeded"
        | "PrivateIpAddressLimitExceeded"
        | "NetworkInterfaceLimitExceeded" => ErrorKind::LimitExceeded,
        "UnauthorizedOperation" | "AuthFailure" | "AccessDenied" | "AccessDeniedException" => {
            ErrorKind::Unauthorized
        }
        "InvalidNetworkInterface.InUse" | "InvalidIPAddress.InUse" => ErrorKind::InUse,
        "InternalError" | "InternalFailure" | "ServiceUnavailable" | "Unavailable" => {
            ErrorKind::Unavailable
        }
        c if c.ends_with(".NotFound") => ErrorKind::NotFound,
        c if c.starts_with("Invalid")
            || c == "MissingParameter"
            || c == "OperationNotPermitted" =>
        {
            ErrorKind::InvalidRequest
        }
        _ => ErrorKind::Other,
    }
}

/// Classifies an HTTP status when the body had no error code.
pub fn classify_status(status: u16) -> ErrorKind {
    match status {
        429 | 503 => ErrorKind::Throttled,
        500..=599 => ErrorKind::Unavailable,
        401 | 403 => ErrorKind::Unauthorized,
        404 => ErrorKind::NotFound,
        _ => ErrorKind::Other,
    }
}

impl ErrorKind {
    /// Whether the client retries this kind by itself.
    pub fn is_retryable(self) -> bool {
        matches!(self, Self::Throttled | Self::Unavailable)
    }
}

/// A failed AWS call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct AwsError {
    pub kind: ErrorKind,
    /// The API action or IMDS path.
    pub api: String,
    /// EC2's error code, when it sent one.
    pub code: Option<String>,
    pub message: String,
}

impl fmt::Display for AwsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.code {
            Some(code) => write!(f, "{} failed: {code}: {}", self.api, self.message),
            None => write!(f, "{} failed: {}", self.api, self.message),
        }
    }
}

impl AwsError {
    pub fn new(
        kind: ErrorKind,
        api: &str,
        code: Option<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            api: api.to_string(),
            code,
            message: message.into(),
        }
    }

    /// The label used for `awscni_aws_api_error_count{error=...}`.
    pub fn metric_label(&self) -> String {
        self.code
            .clone()
            .unwrap_or_else(|| format!("{:?}", self.kind))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_the_kinds_ipamd_acts_on() {
        let cases = [
            ("RequestLimitExceeded", ErrorKind::Throttled),
            (
                "InsufficientFreeAddressesInSubnet",
                ErrorKind::InsufficientAddresses,
            ),
            ("InsufficientCidrBlocks", ErrorKind::InsufficientAddresses),
            ("AttachmentLimitExceeded", ErrorKind::LimitExceeded),
            ("PrivateIpAddressLimitExceeded", ErrorKind::LimitExceeded),
            ("InvalidNetworkInterfaceID.NotFound", ErrorKind::NotFound),
            ("InvalidAttachmentID.NotFound", ErrorKind::NotFound),
            ("InvalidNetworkInterface.InUse", ErrorKind::InUse),
            ("UnauthorizedOperation", ErrorKind::Unauthorized),
            ("InvalidParameterValue", ErrorKind::InvalidRequest),
            ("InternalError", ErrorKind::Unavailable),
            ("SomethingNew", ErrorKind::Other),
        ];
        for (code, kind) in cases {
            assert_eq!(classify_code(code), kind, "{code}");
        }
        assert_eq!(classify_status(503), ErrorKind::Throttled);
        assert_eq!(classify_status(502), ErrorKind::Unavailable);
        assert!(ErrorKind::Throttled.is_retryable());
        assert!(!ErrorKind::InsufficientAddresses.is_retryable());
        let e = AwsError::new(
            ErrorKind::NotFound,
            "DeleteNetworkInterface",
            Some("InvalidNetworkInterfaceID.NotFound".into()),
            "gone",
        );
        assert_eq!(
            e.to_string(),
            "DeleteNetworkInterface failed: InvalidNetworkInterfaceID.NotFound: gone"
        );
    }
}
