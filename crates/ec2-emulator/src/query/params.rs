//! EC2 Query API request parameters (`Action=...&Filter.1.Name=...&Filter.1.Value.1=...`).

use std::collections::BTreeMap;

use crate::model::{Ec2Error, ErrorCode};

/// The decoded parameters of one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(BTreeMap<String, String>);

/// One `Filter.N` of a Describe call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub name: String,
    pub values: Vec<String>,
}

impl Params {
    pub fn new<K: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        Self(
            pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    pub fn action(&self) -> Result<&str, Ec2Error> {
        self.required("Action")
    }

    pub fn required(&self, key: &str) -> Result<&str, Ec2Error> {
        self.get(key).filter(|v| !v.is_empty()).ok_or_else(|| {
            Ec2Error::new(
                ErrorCode::MissingParameter,
                format!("The request must contain the parameter {key}"),
            )
        })
    }

    /// An optional integer parameter; present but not a number is `InvalidParameterValue`.
    pub fn u32(&self, key: &str) -> Result<Option<u32>, Ec2Error> {
        self.get(key)
            .map(|v| {
                v.parse().map_err(|_| {
                    Ec2Error::invalid(format!("Value ({v}) for parameter {key} is invalid."))
                })
            })
            .transpose()
    }

    pub fn bool(&self, key: &str) -> Result<Option<bool>, Ec2Error> {
        self.get(key)
            .map(|v| match v {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => Err(Ec2Error::invalid(format!(
                    "Value ({v}) for parameter {key} is invalid."
                ))),
            })
            .transpose()
    }

    /// Values of a flattened list `PREFIX.1`, `PREFIX.2`, … in index order.
    pub fn list(&self, prefix: &str) -> Vec<String> {
        self.indexed(prefix)
            .into_iter()
            .filter(|(_, rest, _)| rest.is_empty())
            .map(|(_, _, v)| v.to_string())
            .collect()
    }

    /// `(index, remainder after "PREFIX.N", value)` for every key under `PREFIX.N`, sorted by
    /// index (numerically) then remainder.
    fn indexed(&self, prefix: &str) -> Vec<(u32, &str, &str)> {
        let dotted = format!("{prefix}.");
        let mut out: Vec<(u32, &str, &str)> = self
            .0
            .iter()
            .filter_map(|(k, v)| {
                let rest = k.strip_prefix(&dotted)?;
                let (index, tail) = match rest.split_once('.') {
                    Some((i, t)) => (i, t),
                    None => (rest, ""),
                };
                Some((index.parse().ok()?, tail, v.as_str()))
            })
            .collect();
        out.sort();
        out
    }

    /// Groups `PREFIX.N.*` into one map per N.
    fn structs(&self, prefix: &str) -> BTreeMap<u32, Params> {
        let mut out: BTreeMap<u32, Params> = BTreeMap::new();
        for (index, rest, value) in self.indexed(prefix) {
            if !rest.is_empty() {
                out.entry(index)
                    .or_default()
                    .0
                    .insert(rest.to_string(), value.to_string());
            }
        }
        out
    }

    /// `Filter.N.Name` / `Filter.N.Value.M`.
    pub fn filters(&self) -> Vec<Filter> {
        self.structs("Filter")
            .into_values()
            .filter_map(|f| {
                Some(Filter {
                    name: f.get("Name")?.to_string(),
                    values: f.list("Value"),
                })
            })
            .collect()
    }

    /// `PREFIX.N.Key` / `PREFIX.N.Value` pairs.
    pub fn tags(&self, prefix: &str) -> BTreeMap<String, String> {
        self.structs(prefix)
            .into_values()
            .filter_map(|t| {
                Some((
                    t.get("Key")?.to_string(),
                    t.get("Value").unwrap_or_default().to_string(),
                ))
            })
            .collect()
    }

    /// Tags of `TagSpecification.N` entries whose `ResourceType` is `resource_type`.
    pub fn tag_specifications(&self, resource_type: &str) -> BTreeMap<String, String> {
        self.structs("TagSpecification")
            .into_values()
            .filter(|spec| spec.get("ResourceType") == Some(resource_type))
            .flat_map(|spec| spec.tags("Tag"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_filters_and_tags_are_decoded_in_index_order() {
        let p = Params::new([
            ("Action", "DescribeNetworkInterfaces"),
            ("NetworkInterfaceId.10", "eni-c"),
            ("NetworkInterfaceId.2", "eni-b"),
            ("NetworkInterfaceId.1", "eni-a"),
            ("Filter.1.Name", "attachment.instance-id"),
            ("Filter.1.Value.1", "i-1"),
            ("Filter.2.Name", "tag-key"),
            ("Filter.2.Value.2", "k2"),
            ("Filter.2.Value.1", "k1"),
            ("TagSpecification.1.ResourceType", "network-interface"),
            ("TagSpecification.1.Tag.1.Key", "a"),
            ("TagSpecification.1.Tag.1.Value", "1"),
            ("TagSpecification.2.ResourceType", "instance"),
            ("TagSpecification.2.Tag.1.Key", "b"),
            ("MaxResults", "x"),
        ]);
        assert_eq!(p.list("NetworkInterfaceId"), ["eni-a", "eni-b", "eni-c"]);
        let f = p.filters();
        assert_eq!(f.len(), 2);
        assert_eq!(f[1].values, ["k1", "k2"]);
        let tags = p.tag_specifications("network-interface");
        assert_eq!(tags.len(), 1);
        assert_eq!(tags["a"], "1");
        assert_eq!(
            p.u32("MaxResults").unwrap_err().code,
            ErrorCode::InvalidParameterValue
        );
        assert_eq!(
            p.required("Nope").unwrap_err().code,
            ErrorCode::MissingParameter
        );
    }
}
