//! `MissingIAMPermissions` Node events for every EC2 action the node's IAM role may not call
//! (upstream's `checkAPIErrorAndBroadcastEvent` in `pkg/awsutils/awsutils.go`, which every
//! EC2 call site runs on its error: tagging, security-group refresh, reconcile, freeing an
//! ENI, the leaked-ENI cleanup, pool growth). The EC2 client's observer ([`Metrics`]) notes
//! each action answered `UnauthorizedOperation`; this task turns them into events, one per
//! action per [`EVERY`] while the refusals go on (upstream sends one per failed call and
//! leaves the aggregation to the API server).

use std::sync::Arc;
use std::time::Duration;

use k8s::NodeEvent;
use tokio::task::JoinHandle;

use crate::metrics::Metrics;

/// How often refused actions are turned into events.
pub const EVERY: Duration = Duration::from_secs(2);

/// The events for the actions refused since the last look.
pub fn events_for(refused: impl IntoIterator<Item = String>) -> Vec<NodeEvent> {
    refused
        .into_iter()
        .map(|action| NodeEvent::MissingIamPermissions { action })
        .collect()
}

/// Sends the events until aborted.
pub fn spawn(metrics: Arc<Metrics>, cluster: Arc<dyn k8s::Cluster>) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(EVERY).await;
            for event in events_for(metrics.take_refused_actions()) {
                crate::cluster_link::send_event(&cluster, event);
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws::{AwsError, ErrorKind};

    fn refused(api: &str, code: &str) -> AwsError {
        AwsError::new(ErrorKind::Unauthorized, api, Some(code.into()), "refused")
    }

    #[test]
    fn each_refused_ec2_action_becomes_one_event_until_taken() {
        let m = Metrics::new("v0").unwrap();
        let took = Duration::from_millis(3);
        m.observe_api(
            "CreateTags",
            Err(&refused("CreateTags", "UnauthorizedOperation")),
            took,
        );
        m.observe_api(
            "CreateTags",
            Err(&refused("CreateTags", "UnauthorizedOperation")),
            took,
        );
        m.observe_api("DescribeSubnets", Ok(()), took);
        m.observe_api(
            "DeleteNetworkInterface",
            Err(&AwsError::new(
                ErrorKind::Throttled,
                "DeleteNetworkInterface",
                None,
                "slow",
            )),
            took,
        );
        // IMDS is not an EC2 action: no IAM policy fixes it.
        m.observe_api(
            "GetMetadata",
            Err(&refused("GetMetadata", "AccessDenied")),
            took,
        );
        let events = events_for(m.take_refused_actions());
        assert_eq!(
            events,
            vec![NodeEvent::MissingIamPermissions {
                action: "CreateTags".into()
            }]
        );
        assert!(m.take_refused_actions().is_empty(), "taken once");
    }
}
