//! VPC CNI versions, as far as the max-pods calculation cares about them.

use std::fmt;
use std::str::FromStr;

/// A VPC CNI version (`MAJOR.MINOR[.PATCH]`, optional leading `v`, optional
/// `-prerelease`/`+build` suffix which is ignored).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CniVersion {
    /// Major version.
    pub major: u32,
    /// Minor version.
    pub minor: u32,
    /// Patch version (0 when omitted).
    pub patch: u32,
}

/// The upstream release this project mirrors; the CLI's default `--cni-version`.
pub const REFERENCE_CNI_VERSION: CniVersion = CniVersion::new(1, 23, 1);

/// First release with IPv4 prefix delegation.
const PREFIX_DELEGATION_MIN: CniVersion = CniVersion::new(1, 9, 0);

impl CniVersion {
    /// Builds a version from its parts.
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        Self {
            major,
            minor,
            patch,
        }
    }

    /// Whether this release supports prefix delegation (1.9.0 and later).
    pub fn supports_prefix_delegation(self) -> bool {
        self >= PREFIX_DELEGATION_MIN
    }
}

impl fmt::Display for CniVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// A version string that is not `MAJOR.MINOR[.PATCH]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid CNI version {input:?}: expected MAJOR.MINOR[.PATCH], e.g. 1.23.1")]
pub struct VersionError {
    /// The rejected input.
    pub input: String,
}

impl FromStr for CniVersion {
    type Err = VersionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || VersionError {
            input: s.to_string(),
        };
        let trimmed = s.trim();
        let core = trimmed.strip_prefix(['v', 'V']).unwrap_or(trimmed);
        let core = core.split(['-', '+']).next().unwrap_or_default();
        let parts = core
            .split('.')
            .map(|p| {
                if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(err());
                }
                p.parse::<u32>().map_err(|_| err())
            })
            .collect::<Result<Vec<_>, _>>()?;
        match parts.as_slice() {
            [major, minor] => Ok(Self::new(*major, *minor, 0)),
            [major, minor, patch] => Ok(Self::new(*major, *minor, *patch)),
            _ => Err(err()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_forms() {
        assert_eq!("1.23.1".parse(), Ok(CniVersion::new(1, 23, 1)));
        assert_eq!("v1.9".parse(), Ok(CniVersion::new(1, 9, 0)));
        assert_eq!("1.18.3-eksbuild.1".parse(), Ok(CniVersion::new(1, 18, 3)));
        assert_eq!(REFERENCE_CNI_VERSION.to_string(), "1.23.1");
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "", "1", "1.x", "1..2", "1.2.3.4", "latest", "-1.2", "1.2.+3",
        ] {
            let err = bad.parse::<CniVersion>().expect_err(bad);
            assert_eq!(err.input, bad);
        }
    }

    #[test]
    fn prefix_delegation_starts_at_1_9() {
        assert!(!CniVersion::new(1, 8, 99).supports_prefix_delegation());
        assert!(CniVersion::new(1, 9, 0).supports_prefix_delegation());
        assert!(CniVersion::new(2, 0, 0).supports_prefix_delegation());
        assert!(!CniVersion::new(0, 99, 0).supports_prefix_delegation());
    }
}
