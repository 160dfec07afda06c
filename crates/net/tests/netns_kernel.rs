//! Namespace switching: the thread always returns to its namespace, sockets keep theirs.

mod support;

use net::netlink::{NetlinkError, NetlinkHandle};
use net::netns::{Netns, NetnsError};
use support::TestNs;

fn current_ns_id() -> std::path::PathBuf {
    std::fs::read_link("/proc/thread-self/ns/net").unwrap()
}

#[tokio::test]
async fn handle_lives_in_target_namespace_and_thread_returns() {
    let ns = TestNs::new("ns");
    ns.ip(&[
        "link", "add", "probe0", "type", "veth", "peer", "name", "probe1",
    ]);
    let home = current_ns_id();

    let inside = ns.ns.run(current_ns_id).unwrap();
    assert_ne!(inside, home);
    assert_eq!(current_ns_id(), home);

    let nl = NetlinkHandle::in_netns(&ns.ns).unwrap();
    assert_eq!(current_ns_id(), home);
    let names: Vec<String> = nl
        .links()
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.name)
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(sorted, vec!["lo", "probe0", "probe1"]);
    assert!(nl.link_by_name("missing0").await.unwrap().is_none());
    assert!(!nl.delete_link_by_name("missing0").await.unwrap());
    assert!(nl.delete_link_by_name("probe0").await.unwrap());
    assert!(nl.link_by_name("probe1").await.unwrap().is_none());
}

#[tokio::test]
async fn non_namespace_files_and_missing_paths_fail_clearly() {
    let err = Netns::open("/var/run/netns/vcni-no-such-ns").unwrap_err();
    assert!(matches!(err, NetnsError::Open { .. }));
    assert!(err.to_string().contains("vcni-no-such-ns"));

    let home = current_ns_id();
    let not_ns = Netns::open("/proc/self/status").unwrap();
    let err = NetlinkHandle::in_netns(&not_ns).unwrap_err();
    assert!(
        matches!(err, NetlinkError::Netns(NetnsError::Enter { .. })),
        "{err}"
    );
    assert_eq!(current_ns_id(), home);
}

#[test]
fn handle_outside_runtime_is_an_error_not_a_panic() {
    let err = NetlinkHandle::current().unwrap_err();
    assert!(matches!(err, NetlinkError::NoRuntime), "{err}");
}
