//! Events for actionable failures (`events.k8s.io/v1`, reporting controller `aws-node`, as
//! upstream's `eventrecorder.go`). As upstream, an event is about the aws-node pod
//! (`kube-system/<MY_POD_NAME>`), so alerts written for upstream's `MissingIAMPermissions`
//! keep working; the Node is named as the related object. Without `MY_POD_NAME` the event
//! is about the Node.

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};

/// The reporting controller (upstream's).
pub const REPORTING_CONTROLLER: &str = "aws-node";
/// Namespace of events about cluster-scoped objects such as Nodes (kubelet's convention).
pub const NODE_EVENT_NAMESPACE: &str = "default";
/// Namespace of the aws-node pod (upstream looks the pod up there).
pub const AWS_NODE_NAMESPACE: &str = "kube-system";

const IAM_DOC: &str = "https://github.com/aws/amazon-vpc-cni-k8s/blob/master/docs/iam-policy.md";

/// An actionable condition worth telling the operator about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NodeEvent {
    /// An EC2 call failed with `UnauthorizedOperation` (upstream's event, same reason and note).
    MissingIamPermissions {
        /// The EC2 action, e.g. `CreateNetworkInterface`.
        action: String,
    },
    /// The subnet has no free addresses (`InsufficientFreeAddressesInSubnet` /
    /// `InsufficientCidrBlocks`).
    SubnetExhausted {
        /// The subnet ID.
        subnet: String,
        /// The EC2 action that failed.
        action: String,
    },
    /// Custom networking is on and the node's ENIConfig is missing (the error's text).
    EniConfigMissing {
        /// What is wrong, e.g. "ENIConfig us-west-2a not found ...".
        detail: String,
    },
    /// The instance has all the ENIs it can take and the pool is still short.
    EniLimitReached {
        /// Max ENIs of the instance (after MAX_ENI).
        max_enis: u32,
    },
    /// Informational: the ENIConfig this node uses (custom networking).
    EniConfigSelected {
        /// The ENIConfig name.
        name: String,
        /// Its subnet.
        subnet: String,
    },
}

impl NodeEvent {
    /// The event's reason.
    pub fn reason(&self) -> &'static str {
        match self {
            NodeEvent::MissingIamPermissions { .. } => "MissingIAMPermissions",
            NodeEvent::SubnetExhausted { .. } => "SubnetExhausted",
            NodeEvent::EniConfigMissing { .. } => "ENIConfigMissing",
            NodeEvent::EniLimitReached { .. } => "ENILimitReached",
            NodeEvent::EniConfigSelected { .. } => "ENIConfigSelected",
        }
    }

    /// `Warning` or `Normal`.
    pub fn event_type(&self) -> &'static str {
        match self {
            NodeEvent::EniConfigSelected { .. } => "Normal",
            _ => "Warning",
        }
    }

    /// The event's action (what was being done).
    pub fn action(&self) -> String {
        match self {
            NodeEvent::MissingIamPermissions { action } => format!("ec2:{action}"),
            NodeEvent::SubnetExhausted { action, .. } => format!("ec2:{action}"),
            NodeEvent::EniConfigMissing { .. } | NodeEvent::EniConfigSelected { .. } => {
                "SelectENIConfig".to_owned()
            }
            NodeEvent::EniLimitReached { .. } => "AttachENI".to_owned(),
        }
    }

    /// The human-readable note, saying what to do.
    pub fn note(&self) -> String {
        match self {
            NodeEvent::MissingIamPermissions { action } => format!(
                "Unauthorized operation: failed to call ec2:{action} due to missing permissions. Please refer {IAM_DOC} to attach relevant policy to IAM role"
            ),
            NodeEvent::SubnetExhausted { subnet, action } => format!(
                "Subnet {subnet} has no free IP addresses (ec2:{action} failed); new pods on this node cannot get an IP. Free addresses in the subnet, add a subnet (custom networking ENIConfig or subnet discovery) or enable prefix delegation in a subnet with free /28 blocks"
            ),
            NodeEvent::EniConfigMissing { detail } => format!(
                "{detail}; custom networking cannot create ENIs for this node until the ENIConfig exists"
            ),
            NodeEvent::EniLimitReached { max_enis } => format!(
                "The instance has reached its limit of {max_enis} network interfaces and the IP pool is still short; new pods may not get an IP. Use a larger instance type, prefix delegation, or lower max pods"
            ),
            NodeEvent::EniConfigSelected { name, subnet } => {
                format!("Custom networking: using ENIConfig {name} (subnet {subnet}) for new ENIs")
            }
        }
    }
}

/// A problem with one pod's network that its owner must see (`kubectl describe pod`): the
/// event is about the pod, in its namespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PodEvent {
    pub namespace: String,
    pub name: String,
    pub uid: Option<String>,
    /// `BranchENINotReady` and the like.
    pub reason: String,
    /// What went wrong and what to do.
    pub note: String,
}

/// Reason of [`PodEvent`]s for a pod selected by a SecurityGroupPolicy that ipamd cannot
/// give its branch ENI (annotation missing or malformed, no trunk ENI yet).
pub const BRANCH_ENI_FAILED: &str = "BranchENIFailed";

/// The `events.k8s.io/v1` Event for a [`PodEvent`] (Warning, action `AddNetwork`),
/// reported by aws-node on `target`'s node.
pub fn pod_event_object(
    target: &EventTarget,
    event: &PodEvent,
    now: k8s_openapi::jiff::Timestamp,
) -> Event {
    let nanos = now.as_nanosecond();
    Event {
        metadata: ObjectMeta {
            name: Some(format!("{}.{:x}", event.name, nanos)),
            namespace: Some(event.namespace.clone()),
            ..ObjectMeta::default()
        },
        event_time: Some(MicroTime(now)),
        reporting_controller: Some(REPORTING_CONTROLLER.to_owned()),
        reporting_instance: Some(target.instance().to_owned()),
        action: Some("AddNetwork".to_owned()),
        reason: Some(event.reason.clone()),
        note: Some(event.note.clone()),
        type_: Some("Warning".to_owned()),
        regarding: Some(ObjectReference {
            api_version: Some("v1".to_owned()),
            kind: Some("Pod".to_owned()),
            namespace: Some(event.namespace.clone()),
            name: Some(event.name.clone()),
            uid: event.uid.clone(),
            ..ObjectReference::default()
        }),
        related: Some(target.node_ref()),
        ..Event::default()
    }
}

/// Who the event is about and who reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventTarget {
    /// Node name.
    pub node: String,
    /// Node UID, when the Node has been read.
    pub node_uid: Option<String>,
    /// The aws-node pod (`MY_POD_NAME`), when known: the event is about it.
    pub pod: Option<String>,
}

impl EventTarget {
    /// `reportingInstance`: the aws-node pod name when known, else the node name.
    pub fn instance(&self) -> &str {
        self.pod.as_deref().unwrap_or(&self.node)
    }

    /// The namespace the event is created in.
    pub fn namespace(&self) -> &'static str {
        if self.pod.is_some() {
            AWS_NODE_NAMESPACE
        } else {
            NODE_EVENT_NAMESPACE
        }
    }

    pub(crate) fn node_ref(&self) -> ObjectReference {
        ObjectReference {
            api_version: Some("v1".to_owned()),
            kind: Some("Node".to_owned()),
            name: Some(self.node.clone()),
            uid: self.node_uid.clone(),
            ..ObjectReference::default()
        }
    }

    /// (`regarding`, `related`): the aws-node pod and its Node, or the Node alone.
    fn references(&self) -> (ObjectReference, Option<ObjectReference>) {
        match &self.pod {
            Some(pod) => (
                ObjectReference {
                    api_version: Some("v1".to_owned()),
                    kind: Some("Pod".to_owned()),
                    namespace: Some(AWS_NODE_NAMESPACE.to_owned()),
                    name: Some(pod.clone()),
                    ..ObjectReference::default()
                },
                Some(self.node_ref()),
            ),
            None => (self.node_ref(), None),
        }
    }
}

/// The `events.k8s.io/v1` Event for `event` at `now` (name `<pod or node>.<hex nanoseconds>`, as
/// client-go names events).
pub fn event_object(
    target: &EventTarget,
    event: &NodeEvent,
    now: k8s_openapi::jiff::Timestamp,
) -> Event {
    let nanos = now.as_nanosecond();
    let (regarding, related) = target.references();
    Event {
        metadata: ObjectMeta {
            name: Some(format!("{}.{:x}", target.instance(), nanos)),
            namespace: Some(target.namespace().to_owned()),
            ..ObjectMeta::default()
        },
        event_time: Some(MicroTime(now)),
        reporting_controller: Some(REPORTING_CONTROLLER.to_owned()),
        reporting_instance: Some(target.instance().to_owned()),
        action: Some(event.action()),
        reason: Some(event.reason().to_owned()),
        note: Some(event.note()),
        type_: Some(event.event_type().to_owned()),
        regarding: Some(regarding),
        related,
        ..Event::default()
    }
}
