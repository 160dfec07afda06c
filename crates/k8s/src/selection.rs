//! ENIConfig selection for a node (upstream `GetNodeSpecificENIConfigName` and `MyENIConfig`
//! in `pkg/eniconfig/eniconfig.go`; docs/upstream-compat.md): pure functions over the node's
//! labels and annotations.

use std::collections::BTreeMap;

use crate::crd::EniConfigSpec;

/// Label set out of band (e.g. by a node provisioner); wins over everything else.
pub const EXTERNAL_ENI_CONFIG_LABEL: &str = "vpc.amazonaws.com/externalEniConfig";
/// Default of `ENI_CONFIG_ANNOTATION_DEF` and `ENI_CONFIG_LABEL_DEF`.
pub const DEFAULT_ENI_CONFIG_KEY: &str = "k8s.amazonaws.com/eniConfig";
/// The name used when the node names no ENIConfig.
pub const DEFAULT_ENI_CONFIG_NAME: &str = "default";

/// The keys the node is searched for (`ENI_CONFIG_ANNOTATION_DEF`, `ENI_CONFIG_LABEL_DEF`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectionKeys {
    /// Annotation key; empty means [`DEFAULT_ENI_CONFIG_KEY`] (as upstream).
    pub annotation: String,
    /// Label key; empty means [`DEFAULT_ENI_CONFIG_KEY`] (as upstream).
    pub label: String,
}

impl Default for SelectionKeys {
    fn default() -> Self {
        SelectionKeys {
            annotation: DEFAULT_ENI_CONFIG_KEY.to_owned(),
            label: DEFAULT_ENI_CONFIG_KEY.to_owned(),
        }
    }
}

impl SelectionKeys {
    /// Keys from the raw environment values (`None` = unset); unset or empty → default.
    pub fn from_env_values(annotation: Option<&str>, label: Option<&str>) -> Self {
        let pick = |v: Option<&str>| match v {
            Some(s) if !s.is_empty() => s.to_owned(),
            _ => DEFAULT_ENI_CONFIG_KEY.to_owned(),
        };
        SelectionKeys {
            annotation: pick(annotation),
            label: pick(label),
        }
    }

    fn annotation_key(&self) -> &str {
        if self.annotation.is_empty() {
            DEFAULT_ENI_CONFIG_KEY
        } else {
            &self.annotation
        }
    }

    fn label_key(&self) -> &str {
        if self.label.is_empty() {
            DEFAULT_ENI_CONFIG_KEY
        } else {
            &self.label
        }
    }
}

/// Where the ENIConfig name came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameSource {
    /// Label `vpc.amazonaws.com/externalEniConfig`.
    ExternalLabel,
    /// The annotation named by `ENI_CONFIG_ANNOTATION_DEF` (the key is recorded).
    Annotation(String),
    /// The label named by `ENI_CONFIG_LABEL_DEF` (the key is recorded).
    Label(String),
    /// Nothing on the node: the name `default`.
    Default,
}

/// The ENIConfig name a node selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectedName {
    /// The ENIConfig name.
    pub name: String,
    /// Where it came from.
    pub source: NameSource,
}

/// Upstream's precedence, first present key wins (a present key with an empty value still
/// wins, as upstream; [`resolve_eni_config`] then reports it):
/// 1. label `vpc.amazonaws.com/externalEniConfig`;
/// 2. annotation `<ENI_CONFIG_ANNOTATION_DEF>`;
/// 3. label `<ENI_CONFIG_LABEL_DEF>`;
/// 4. `default`.
pub fn select_eni_config_name(
    labels: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
    keys: &SelectionKeys,
) -> SelectedName {
    if let Some(v) = labels.get(EXTERNAL_ENI_CONFIG_LABEL) {
        return SelectedName {
            name: v.clone(),
            source: NameSource::ExternalLabel,
        };
    }
    let ann = keys.annotation_key();
    if let Some(v) = annotations.get(ann) {
        return SelectedName {
            name: v.clone(),
            source: NameSource::Annotation(ann.to_owned()),
        };
    }
    let label = keys.label_key();
    if let Some(v) = labels.get(label) {
        return SelectedName {
            name: v.clone(),
            source: NameSource::Label(label.to_owned()),
        };
    }
    SelectedName {
        name: DEFAULT_ENI_CONFIG_NAME.to_owned(),
        source: NameSource::Default,
    }
}

/// The ENIConfig a node uses, with its spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedEniConfig {
    /// The ENIConfig name.
    pub name: String,
    /// Where the name came from.
    pub source: NameSource,
    /// Its spec (subnet, security groups).
    pub spec: EniConfigSpec,
}

/// Why a node has no usable ENIConfig.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EniConfigError {
    /// The node carries no ENIConfig label or annotation and no ENIConfig `default` exists.
    #[error(
        "no ENIConfig selected for node {node}: set annotation {annotation} or label {label} on the node, or create an ENIConfig named \"default\""
    )]
    NoneSelected {
        /// The node name.
        node: String,
        /// The annotation key searched.
        annotation: String,
        /// The label key searched.
        label: String,
    },
    /// The node names an ENIConfig that does not exist.
    #[error("ENIConfig {name} not found (selected for node {node} by {source_desc})")]
    NotFound {
        /// The ENIConfig name.
        name: String,
        /// The node name.
        node: String,
        /// Where the name came from, for the message.
        source_desc: String,
    },
    /// The node's label or annotation is present but empty.
    #[error("no ENIConfig selected for node {node}: {source_desc} is empty")]
    EmptyName {
        /// The node name.
        node: String,
        /// Which key is empty.
        source_desc: String,
    },
    /// The node object has not been read yet (API server not reached since start).
    #[error("node {node} is not known yet (API server not reached)")]
    NodeUnknown {
        /// The node name.
        node: String,
    },
}

impl NameSource {
    fn describe(&self) -> String {
        match self {
            NameSource::ExternalLabel => format!("label {EXTERNAL_ENI_CONFIG_LABEL}"),
            NameSource::Annotation(k) => format!("annotation {k}"),
            NameSource::Label(k) => format!("label {k}"),
            NameSource::Default => "default name".to_owned(),
        }
    }
}

/// Select the node's ENIConfig name and look it up with `lookup` (the ENIConfig cache).
pub fn resolve_eni_config(
    node: &str,
    labels: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
    keys: &SelectionKeys,
    lookup: impl Fn(&str) -> Option<EniConfigSpec>,
) -> Result<ResolvedEniConfig, EniConfigError> {
    let selected = select_eni_config_name(labels, annotations, keys);
    if selected.name.is_empty() {
        return Err(EniConfigError::EmptyName {
            node: node.to_owned(),
            source_desc: selected.source.describe(),
        });
    }
    match lookup(&selected.name) {
        Some(spec) => Ok(ResolvedEniConfig {
            name: selected.name,
            source: selected.source,
            spec,
        }),
        None if selected.source == NameSource::Default => Err(EniConfigError::NoneSelected {
            node: node.to_owned(),
            annotation: keys.annotation_key().to_owned(),
            label: keys.label_key().to_owned(),
        }),
        None => Err(EniConfigError::NotFound {
            name: selected.name,
            node: node.to_owned(),
            source_desc: selected.source.describe(),
        }),
    }
}
