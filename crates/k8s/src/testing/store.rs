//! The fake API server's object store: one global resourceVersion counter (like etcd), the
//! event history for watch resumption, and a compaction point below which a watch gets 410.

use std::collections::BTreeMap;

use serde_json::{Value, json};

/// A resource type the fake server knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resource {
    /// `v1` or `group/version`.
    pub api_version: &'static str,
    /// Kind.
    pub kind: &'static str,
    /// Plural (URL segment).
    pub plural: &'static str,
    /// Namespaced.
    pub namespaced: bool,
}

/// The resources served.
pub const RESOURCES: &[Resource] = &[
    Resource {
        api_version: "v1",
        kind: "Node",
        plural: "nodes",
        namespaced: false,
    },
    Resource {
        api_version: "v1",
        kind: "Pod",
        plural: "pods",
        namespaced: true,
    },
    Resource {
        api_version: "events.k8s.io/v1",
        kind: "Event",
        plural: "events",
        namespaced: true,
    },
    Resource {
        api_version: "crd.k8s.amazonaws.com/v1alpha1",
        kind: "ENIConfig",
        plural: "eniconfigs",
        namespaced: false,
    },
    Resource {
        api_version: "vpcresources.k8s.aws/v1beta1",
        kind: "SecurityGroupPolicy",
        plural: "securitygrouppolicies",
        namespaced: true,
    },
    Resource {
        api_version: "vpcresources.k8s.aws/v1alpha1",
        kind: "CNINode",
        plural: "cninodes",
        namespaced: false,
    },
];

/// Look a resource up by apiVersion and plural.
pub fn by_plural(api_version: &str, plural: &str) -> Option<Resource> {
    RESOURCES
        .iter()
        .copied()
        .find(|r| r.api_version == api_version && r.plural == plural)
}

/// Look a resource up by apiVersion and kind.
pub fn by_kind(api_version: &str, kind: &str) -> Option<Resource> {
    RESOURCES
        .iter()
        .copied()
        .find(|r| r.api_version == api_version && r.kind == kind)
}

/// Object key: (plural, namespace or "", name).
pub type Key = (&'static str, String, String);

/// One change, as a watch sees it.
#[derive(Debug, Clone)]
pub struct Change {
    /// resourceVersion of the change.
    pub rv: u64,
    /// Plural.
    pub plural: &'static str,
    /// `ADDED`, `MODIFIED`, `DELETED`.
    pub kind: &'static str,
    /// The object after the change (before, for DELETED, with the new rv).
    pub object: Value,
}

/// Objects, resourceVersions and history.
#[derive(Debug, Default)]
pub struct Store {
    /// Last resourceVersion handed out.
    pub rv: u64,
    /// Watches from below this get 410 Gone.
    pub compacted: u64,
    /// Current objects.
    pub objects: BTreeMap<Key, Value>,
    /// Every change since start.
    pub history: Vec<Change>,
    uid: u64,
}

/// `metadata.namespace` and `metadata.name` of an object.
pub fn ns_name(obj: &Value) -> (String, String) {
    let m = &obj["metadata"];
    (
        m["namespace"].as_str().unwrap_or("").to_owned(),
        m["name"].as_str().unwrap_or("").to_owned(),
    )
}

impl Store {
    /// Create or replace an object; returns the change.
    pub fn put(&mut self, res: Resource, mut obj: Value) -> Change {
        let (ns, name) = ns_name(&obj);
        let key: Key = (res.plural, ns, name);
        let existed = self.objects.get(&key).cloned();
        self.rv += 1;
        obj["apiVersion"] = json!(res.api_version);
        obj["kind"] = json!(res.kind);
        obj["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        if obj["metadata"]["uid"].is_null() {
            let uid = match &existed {
                Some(old) => old["metadata"]["uid"].clone(),
                None => {
                    self.uid += 1;
                    json!(format!("00000000-0000-0000-0000-{:012}", self.uid))
                }
            };
            obj["metadata"]["uid"] = uid;
        }
        self.objects.insert(key, obj.clone());
        let change = Change {
            rv: self.rv,
            plural: res.plural,
            kind: if existed.is_some() {
                "MODIFIED"
            } else {
                "ADDED"
            },
            object: obj,
        };
        self.history.push(change.clone());
        change
    }

    /// Delete an object; returns the change, or `None` if absent.
    pub fn delete(&mut self, res: Resource, ns: &str, name: &str) -> Option<Change> {
        let mut obj = self
            .objects
            .remove(&(res.plural, ns.to_owned(), name.to_owned()))?;
        self.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        let change = Change {
            rv: self.rv,
            plural: res.plural,
            kind: "DELETED",
            object: obj,
        };
        self.history.push(change.clone());
        Some(change)
    }

    /// Objects of a resource, optionally in one namespace.
    pub fn list(&self, res: Resource, ns: Option<&str>) -> Vec<Value> {
        self.objects
            .iter()
            .filter(|((p, n, _), _)| *p == res.plural && ns.is_none_or(|ns| ns == n))
            .map(|(_, v)| v.clone())
            .collect()
    }
}

/// RFC 7386 JSON merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = json!({});
            }
            if let Value::Object(t) = target {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// A `Status` failure body.
pub fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}
