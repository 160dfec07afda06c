//! The error codes real EC2 answers with, for the actions the node agent uses.

/// An EC2 error code as it appears in `<Code>` of an error response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorCode {
    InvalidNetworkInterfaceIdNotFound,
    InvalidInstanceIdNotFound,
    InvalidSubnetIdNotFound,
    InvalidVpcIdNotFound,
    InvalidGroupNotFound,
    InvalidAttachmentIdNotFound,
    InvalidNetworkInterfaceInUse,
    InvalidIpAddressInUse,
    AttachmentLimitExceeded,
    PrivateIpAddressLimitExceeded,
    InsufficientFreeAddressesInSubnet,
    InsufficientCidrBlocks,
    InvalidParameterValue,
    InvalidParameterCombination,
    MissingParameter,
    OperationNotPermitted,
    InvalidInstanceType,
    RequestLimitExceeded,
    UnauthorizedOperation,
    /// The resource is busy with another change (an attachment still attaching, say).
    IncorrectState,
    InternalError,
}

impl ErrorCode {
    /// Every code, for parsing and for the control API.
    pub const ALL: [ErrorCode; 21] = [
        Self::InvalidNetworkInterfaceIdNotFound,
        Self::InvalidInstanceIdNotFound,
        Self::InvalidSubnetIdNotFound,
        Self::InvalidVpcIdNotFound,
        Self::InvalidGroupNotFound,
        Self::InvalidAttachmentIdNotFound,
        Self::InvalidNetworkInterfaceInUse,
        Self::InvalidIpAddressInUse,
        Self::AttachmentLimitExceeded,
        Self::PrivateIpAddressLimitExceeded,
        Self::InsufficientFreeAddressesInSubnet,
        Self::InsufficientCidrBlocks,
        Self::InvalidParameterValue,
        Self::InvalidParameterCombination,
        Self::MissingParameter,
        Self::OperationNotPermitted,
        Self::InvalidInstanceType,
        Self::RequestLimitExceeded,
        Self::UnauthorizedOperation,
        Self::IncorrectState,
        Self::InternalError,
    ];

    /// The code string on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidNetworkInterfaceIdNotFound => "InvalidNetworkInterfaceID.NotFound",
            Self::InvalidInstanceIdNotFound => "InvalidInstanceID.NotFound",
            Self::InvalidSubnetIdNotFound => "InvalidSubnetID.NotFound",
            Self::InvalidVpcIdNotFound => "InvalidVpcID.NotFound",
            Self::InvalidGroupNotFound => "InvalidGroup.NotFound",
            Self::InvalidAttachmentIdNotFound => "InvalidAttachmentID.NotFound",
            Self::InvalidNetworkInterfaceInUse => "InvalidNetworkInterface.InUse",
            Self::InvalidIpAddressInUse => "InvalidIPAddress.InUse",
            Self::AttachmentLimitExceeded => "AttachmentLimitExceeded",
            Self::PrivateIpAddressLimitExceeded => "PrivateIpAddressLimitExceeded",
            Self::InsufficientFreeAddressesInSubnet => "InsufficientFreeAddressesInSubnet",
            Self::InsufficientCidrBlocks => "InsufficientCidrBlocks",
            Self::InvalidParameterValue => "InvalidParameterValue",
            Self::InvalidParameterCombination => "InvalidParameterCombination",
            Self::MissingParameter => "MissingParameter",
            Self::OperationNotPermitted => "OperationNotPermitted",
            Self::InvalidInstanceType => "InvalidInstanceType",
            Self::RequestLimitExceeded => "RequestLimitExceeded",
            Self::UnauthorizedOperation => "UnauthorizedOperation",
            Self::IncorrectState => "IncorrectState",
            Self::InternalError => "InternalError",
        }
    }

    /// Parses a wire code string.
    pub fn parse(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == code)
    }

    /// The HTTP status EC2 uses for this code.
    pub fn http_status(self) -> u16 {
        match self {
            Self::RequestLimitExceeded => 503,
            Self::InternalError => 500,
            Self::UnauthorizedOperation => 403,
            _ => 400,
        }
    }
}

/// An error answered by the model: a code and a message in EC2's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", code.as_str())]
pub struct Ec2Error {
    pub code: ErrorCode,
    pub message: String,
}

impl Ec2Error {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub(crate) fn eni_not_found(id: &str) -> Self {
        Self::new(
            ErrorCode::InvalidNetworkInterfaceIdNotFound,
            format!("The networkInterface ID '{id}' does not exist"),
        )
    }

    pub(crate) fn instance_not_found(id: &str) -> Self {
        Self::new(
            ErrorCode::InvalidInstanceIdNotFound,
            format!("The instance ID '{id}' does not exist"),
        )
    }

    pub(crate) fn subnet_not_found(id: &str) -> Self {
        Self::new(
            ErrorCode::InvalidSubnetIdNotFound,
            format!("The subnet ID '{id}' does not exist"),
        )
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidParameterValue, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_through_their_wire_strings() {
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::parse(code.as_str()), Some(code));
        }
        assert_eq!(ErrorCode::parse("NoSuchThing"), None);
        let err = Ec2Error::eni_not_found("eni-1");
        assert_eq!(
            err.to_string(),
            "InvalidNetworkInterfaceID.NotFound: The networkInterface ID 'eni-1' does not exist"
        );
    }
}
