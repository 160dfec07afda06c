//! DEL when ipamd fails (as upstream's `cmdDel` handles it), with the real `aws-cni` binary
//! against a stand-in ipamd (a tonic `CNIBackend` on a Unix socket) in network namespaces made
//! by the test: any gRPC error other than `datastore: unknown pod` tears the pod's host side
//! down from `prevResult`, logs one countable warning and succeeds, so that pods never stick in
//! Terminating; `Success=false` stays an error; unknown pod is success. ADD at cniVersion 0.4.0
//! puts `"version": "4"` on the IP entry.

mod support;

use support::{Bench, DelAnswer, TORN_DOWN, snapshot};
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn del_with_an_ipamd_error_tears_down_from_prev_result_and_succeeds() {
    let b = Bench::start("delerr");
    let before = (snapshot(&b.node).await, snapshot(&b.pod).await);

    // DelNetwork fails with an error other than unknown pod: torn down, success, logged.
    let result = b.add();
    let r = b.del(
        DelAnswer::Error(Code::Internal, "boom"),
        &b.socket,
        Some(&result),
    );
    assert_eq!(
        (r.rc, r.stdout.as_str()),
        (0, ""),
        "{} {}",
        r.stdout,
        r.stderr
    );
    assert!(
        !b.wired() && b.has_veth(),
        "routes and rules gone, the veth left to the netns"
    );
    b.runtime_removes_pod_netns().await;
    assert_eq!(snapshot(&b.node).await, before.0, "node torn down");
    assert_eq!(snapshot(&b.pod).await, before.1, "pod torn down");
    assert_eq!(b.logged(TORN_DOWN), 1);
    let log = std::fs::read_to_string(&b.log).unwrap();
    assert!(
        log.lines().any(|l| l.contains(TORN_DOWN)
            && l.contains(r#""level":"warn""#)
            && l.contains("boom")),
        "{log}"
    );

    // ipamd unreachable: the same teardown and message.
    let result = b.add();
    let r = b.del(
        DelAnswer::Released,
        "/nonexistent/ipamd.sock",
        Some(&result),
    );
    assert_eq!((r.rc, r.stdout.as_str()), (0, ""), "{}", r.stdout);
    b.runtime_removes_pod_netns().await;
    assert_eq!(snapshot(&b.node).await, before.0, "node torn down");
    assert_eq!(b.logged(TORN_DOWN), 2);

    // An error without (usable) prevResult: nothing to tear down, still success.
    let r = b.del(DelAnswer::Error(Code::Unavailable, "gone"), &b.socket, None);
    assert_eq!((r.rc, r.stdout.as_str()), (0, ""), "{}", r.stdout);
    assert_eq!(b.logged("DEL: ipamd error, no usable prevResult"), 1);
    assert_eq!(b.logged(TORN_DOWN), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn del_success_false_fails_and_unknown_pod_succeeds() {
    let b = Bench::start("delref");
    let before = (snapshot(&b.node).await, snapshot(&b.pod).await);
    let result = b.add();

    // Success=false is a DEL error (ipamd still holds the address); nothing torn down.
    let r = b.del(DelAnswer::Refused, &b.socket, Some(&result));
    assert_eq!((r.rc, r.code()), (1, 100), "{}", r.stdout);
    assert!(r.stdout.contains("delete request"), "{}", r.stdout);
    assert!(b.wired(), "Success=false tears nothing down");

    // Unknown pod (a repeated DEL): success, and nothing is torn down even with a
    // prevResult, as upstream: the address and its rules may be another pod's by now.
    let r = b.del(
        DelAnswer::Error(
            Code::NotFound,
            "1 error occurred:\n\t* datastore: unknown pod\n\n",
        ),
        &b.socket,
        Some(&result),
    );
    assert_eq!((r.rc, r.stdout.as_str()), (0, ""), "{}", r.stdout);
    assert_eq!(b.logged("DEL: ipamd error"), 0);
    assert!(b.wired(), "unknown pod tears nothing down");

    // Released: torn down with what ipamd returned.
    let r = b.del(DelAnswer::Released, &b.socket, None);
    assert_eq!((r.rc, r.stdout.as_str()), (0, ""), "{}", r.stdout);
    assert!(!b.wired());
    b.runtime_removes_pod_netns().await;
    assert_eq!(snapshot(&b.node).await, before.0);
    assert_eq!(snapshot(&b.pod).await, before.1);
}
