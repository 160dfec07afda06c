//! Namespace switching: the thread always returns to its namespace, sockets keep theirs.

use net::netlink::{NetlinkError, NetlinkHandle};
use net::netns::{Netns, NetnsError};
use net::testing::TestNetns;

fn current_ns_id() -> std::path::PathBuf {
    std::fs::read_link("/proc/thread-self/ns/net").unwrap()
}

#[tokio::test]
async fn handle_lives_in_target_namespace_and_thread_returns() {
    let ns = TestNetns::new("ns");
    ns.ip(&[
        "link", "add", "probe0", "type", "veth", "peer", "name", "probe1",
    ]);
    let home = current_ns_id();

    let handle = ns.netns();
    let inside = handle.run(current_ns_id).unwrap();
    assert_ne!(inside, home);
    assert_eq!(current_ns_id(), home);

    let nl = NetlinkHandle::in_netns(&handle).unwrap();
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

#[test]
fn test_netns_names_are_unique_per_process_and_removed_on_drop() {
    let a = TestNetns::new("dup");
    let b = TestNetns::new("dup");
    assert_ne!(a.0, b.0, "same tag, two namespaces");
    assert_eq!(a.name(), a.0);
    assert_eq!(a.path(), format!("/var/run/netns/{}", a.0));
    assert_eq!(a.netns().path(), a.path_buf());

    // Separate namespaces: a link made in one is not in the other.
    a.ip(&[
        "link", "add", "only0", "type", "veth", "peer", "name", "only1",
    ]);
    assert!(a.ip(&["link", "show"]).contains("only0"));
    assert!(!b.ip(&["link", "show"]).contains("only0"));

    // Checked and unchecked exec, with and without stdin.
    assert_eq!(a.try_exec(&["cat"], Some("batch\n")).unwrap(), "batch\n");
    assert_eq!(a.exec_ok(&["echo", "hi"]), "hi\n");
    let err = a
        .try_exec(&["sh", "-c", "echo oops >&2; exit 3"], None)
        .unwrap_err();
    assert!(err.contains("oops") && err.contains(&a.0), "{err}");
    assert_eq!(a.exec(&["sh", "-c", "echo out; exit 1"]), "out\n");
    let panicked = std::panic::catch_unwind(|| a.exec_ok(&["false"]));
    assert!(panicked.is_err(), "exec_ok panics on failure");

    let (path_a, path_b) = (a.path_buf(), b.path_buf());
    drop(a);
    assert!(!path_a.exists(), "{} removed on drop", path_a.display());
    assert!(path_b.exists());
    drop(b);
    assert!(!path_b.exists());
}
