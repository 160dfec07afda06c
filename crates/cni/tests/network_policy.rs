//! The plugin's calls to the network policy agent (upstream's `cmdAdd`/`cmdDel` with
//! `NetworkPolicyMode`), with the real `aws-cni` binary against a stand-in ipamd and a stand-in
//! agent (`rpc.NPBackend` on a Unix socket) in network namespaces made by the test: no call
//! when ipamd names no mode; `EnforceNpToPod` after ADD wired the pod (even for mode `none`),
//! and any agent failure fails ADD with the address kept for kubelet's DEL; `DeletePodNp`
//! after DEL, where an unreachable agent fails DEL and a refusal is only logged.

mod support;

use support::{Bench, DelAnswer, NpAnswer, snapshot};

fn calls(b: &Bench) -> Vec<String> {
    std::mem::take(&mut *b.npa.calls.lock().unwrap())
}

fn set_mode(b: &Bench, mode: &str) {
    *b.np_mode.lock().unwrap() = mode.to_string();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_mode_no_call_and_every_mode_is_enforced_then_deleted() {
    let b = Bench::start("npok");
    let before = (snapshot(&b.node).await, snapshot(&b.pod).await);

    // ipamd names no mode (NETWORK_POLICY_ENFORCING_MODE unset): the agent is never called.
    let result = b.add();
    let r = b.del(DelAnswer::Released, &b.socket, Some(&result));
    assert_eq!((r.rc, r.stdout.as_str()), (0, ""), "{}", r.stderr);
    assert!(calls(&b).is_empty());

    // Any mode, `none` included: enforce after ADD, delete after DEL.
    for mode in ["standard", "strict", "none"] {
        set_mode(&b, mode);
        let result = b.add();
        let r = b.del(DelAnswer::Released, &b.socket, Some(&result));
        assert_eq!((r.rc, r.stdout.as_str()), (0, ""), "{}", r.stderr);
        assert_eq!(
            calls(&b),
            [
                format!("EnforceNpToPod default/stuck {mode} 1"),
                "DeletePodNp default/stuck".to_string()
            ]
        );
        b.runtime_removes_pod_netns().await;
    }
    assert_eq!(snapshot(&b.node).await, before.0, "node as before");
    assert_eq!(snapshot(&b.pod).await, before.1, "pod as before");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_failures_fail_add_and_keep_the_address_for_del() {
    let b = Bench::start("npfail");
    set_mode(&b, "standard");
    for answer in [NpAnswer::Refused, NpAnswer::Failed] {
        *b.npa.answer.lock().unwrap() = answer;
        let r = b.run("ADD", &b.socket, &b.conf);
        assert_eq!((r.rc, r.code()), (1, 104), "{answer:?}: {}", r.stdout);
        assert!(
            r.stdout
                .contains("failed to setup network policy for default/stuck"),
            "{}",
            r.stdout
        );
        assert_eq!(calls(&b), ["EnforceNpToPod default/stuck standard 1"]);
        // Not given back by ADD: ipamd was never asked to release it, and kubelet's DEL
        // tears the pod down and releases it.
        assert!(b.wired(), "{answer:?}: ADD leaves the wiring for DEL");
        *b.npa.answer.lock().unwrap() = NpAnswer::Enforced;
        let r = b.del(DelAnswer::Released, &b.socket, None);
        assert_eq!(r.rc, 0, "{}", r.stdout);
        assert!(!b.wired(), "DEL tore the pod down");
        assert_eq!(calls(&b), ["DeletePodNp default/stuck"]);
    }

    // The agent not running: ADD fails the same way.
    std::fs::remove_file(&b.npa_socket).unwrap();
    let r = b.run("ADD", &b.socket, &b.conf);
    assert_eq!((r.rc, r.code()), (1, 104), "{}", r.stdout);
    assert!(r.stdout.contains("not reachable"), "{}", r.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn del_fails_only_when_the_agent_cannot_be_reached() {
    let b = Bench::start("npdel");
    set_mode(&b, "strict");
    let result = b.add();
    calls(&b);

    // A refusal or an error from the agent: logged, DEL succeeds.
    for answer in [NpAnswer::Refused, NpAnswer::Failed] {
        *b.npa.answer.lock().unwrap() = answer;
        let r = b.del(DelAnswer::Released, &b.socket, Some(&result));
        assert_eq!(
            (r.rc, r.stdout.as_str()),
            (0, ""),
            "{answer:?}: {}",
            r.stdout
        );
        assert_eq!(calls(&b), ["DeletePodNp default/stuck"]);
    }
    assert!(b.logged("DeletePodNp") >= 2, "both logged");

    // Unreachable: DEL fails (upstream), after the pod's network is already torn down.
    std::fs::remove_file(&b.npa_socket).unwrap();
    set_mode(&b, "");
    let result = b.add();
    set_mode(&b, "strict");
    let r = b.del(DelAnswer::Released, &b.socket, Some(&result));
    assert_eq!((r.rc, r.code()), (1, 104), "{}", r.stdout);
    assert!(!b.wired(), "torn down before the agent call");
}
