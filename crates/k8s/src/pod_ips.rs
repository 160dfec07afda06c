//! `ANNOTATE_POD_IP`: the `vpc.amazonaws.com/pod-ips` annotation (upstream `AnnotatePod`).

use serde_json::{Value, json};

/// The annotation key.
pub const POD_IPS_ANNOTATION: &str = "vpc.amazonaws.com/pod-ips";

/// What to do with the annotation given its current value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnnotationAction {
    /// Send this merge patch.
    Patch(Value),
    /// Already as wanted.
    Skip,
}

/// Why the annotation was not changed on release.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("released IP {released} does not match existing annotation {existing:?}; not patching pod")]
pub struct ReleaseMismatch {
    /// The IP being released.
    pub released: String,
    /// The annotation's current value.
    pub existing: String,
}

/// The merge patch body upstream sends (diff of the pod's annotations).
pub fn annotation_patch(value: &str) -> Value {
    json!({"metadata": {"annotations": {POD_IPS_ANNOTATION: value}}})
}

/// On ADD: set the annotation to `ip` unless it already is.
pub fn on_add(current: Option<&str>, ip: &str) -> AnnotationAction {
    if current == Some(ip) {
        AnnotationAction::Skip
    } else {
        AnnotationAction::Patch(annotation_patch(ip))
    }
}

/// On DEL: set the annotation to `""` if it holds the released IP; absent → nothing to do;
/// another IP → error (the pod has been given another IP since).
pub fn on_del(
    current: Option<&str>,
    released_ip: &str,
) -> Result<AnnotationAction, ReleaseMismatch> {
    match current {
        None => Ok(AnnotationAction::Skip),
        Some(v) if v == released_ip => Ok(AnnotationAction::Patch(annotation_patch(""))),
        Some(v) => Err(ReleaseMismatch {
            released: released_ip.to_owned(),
            existing: v.to_owned(),
        }),
    }
}
