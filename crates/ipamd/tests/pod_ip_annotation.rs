//! `ANNOTATE_POD_IP=true` end to end: the EC2 emulator, a Kubernetes API server at HTTP
//! level (`k8s::testing::FakeApiServer`), the whole agent. ADD sets
//! `vpc.amazonaws.com/pod-ips` to the pod's address and DEL sets it back to `""` (upstream
//! `AnnotatePod` from `AddNetwork`/`DelNetwork`), with exactly upstream's merge patches, in
//! request order even when DEL follows ADD at once and the API server is slow; DEL leaves an annotation holding another
//! address alone and ignores a pod that is gone.

mod support;

use std::net::Ipv4Addr;
use std::time::Duration;

use k8s::testing::{FakeApiServer, RecordedRequest};
use serde_json::{Value, json};
use support::{Harness, add_pod, del_pod};

const NODE: &str = "ip-10-0-0-4.us-west-2.compute.internal";
const KEY: &str = "vpc.amazonaws.com/pod-ips";

fn pod(i: usize) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": format!("pod-{i}"), "namespace": "default"},
           "spec": {"nodeName": NODE}})
}

fn annotation(api: &FakeApiServer, i: usize) -> Option<String> {
    api.get("v1", "Pod", "default", &format!("pod-{i}"))
        .and_then(|p| p["metadata"]["annotations"][KEY].as_str().map(String::from))
}

/// Waits (bounded) until pod `i`'s annotation is `want`.
async fn wait_annotation(api: &FakeApiServer, i: usize, want: &str) {
    for _ in 0..200 {
        if annotation(api, i).as_deref() == Some(want) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!(
        "pod-{i}: annotation {:?}, want {want:?}; requests: {:?}",
        annotation(api, i),
        pod_requests(api, i)
    );
}

fn pod_requests(api: &FakeApiServer, i: usize) -> Vec<RecordedRequest> {
    let path = format!("/api/v1/namespaces/default/pods/pod-{i}");
    api.requests()
        .into_iter()
        .filter(|r| r.path == path && !r.is_watch())
        .collect()
}

/// The merge patches sent for pod `i`, in order.
fn patches(api: &FakeApiServer, i: usize) -> Vec<Value> {
    pod_requests(api, i)
        .into_iter()
        .filter(|r| r.method == "PATCH")
        .map(|r| {
            assert_eq!(
                r.content_type.as_deref(),
                Some("application/merge-patch+json")
            );
            r.body.unwrap_or(Value::Null)
        })
        .collect()
}

fn body(value: &str) -> Value {
    json!({"metadata": {"annotations": {KEY: value}}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_sets_and_del_clears_the_pod_ip_annotation() {
    let h = Harness::new("m5.large", "10.0.0.0/24", "pod-ip-annotation").await;
    let api = FakeApiServer::start().await.unwrap();
    api.apply(
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE},
                     "status": {"capacity": {"pods": "29"}}}),
    );
    for i in 0..14 {
        api.apply(pod(i));
    }
    let cfg = h.config(&[
        ("ANNOTATE_POD_IP", "true"),
        ("MY_NODE_NAME", NODE),
        ("CLUSTER_ENDPOINT", &api.url()),
    ]);
    let agent = h.start(cfg, h.options(Duration::from_secs(60), None));
    let mut c = h.client().await;

    // ADD, then DEL once the annotation is there: one GET and one PATCH each.
    let ip: Ipv4Addr = add_pod(&mut c, 0).await;
    wait_annotation(&api, 0, &ip.to_string()).await;
    del_pod(&mut c, 0).await;
    wait_annotation(&api, 0, "").await;
    let methods: Vec<String> = pod_requests(&api, 0)
        .into_iter()
        .map(|r| r.method)
        .collect();
    assert_eq!(methods, ["GET", "PATCH", "GET", "PATCH"]);
    assert_eq!(patches(&api, 0), [body(&ip.to_string()), body("")]);

    // DEL right after ADD, for eight pods at once, while the API server is slow to answer
    // the ADD's read: each pod's clear still runs after its set.
    let mut tasks = Vec::new();
    for i in 2..10 {
        let path = format!("/api/v1/namespaces/default/pods/pod-{i}");
        api.delay_requests("GET", &path, Duration::from_millis(300), 1);
        let mut c = c.clone();
        tasks.push(tokio::spawn(async move {
            let ip = add_pod(&mut c, i).await;
            del_pod(&mut c, i).await;
            (i, ip)
        }));
    }
    for t in tasks {
        let (i, ip) = t.await.unwrap();
        wait_annotation(&api, i, "").await;
        assert_eq!(
            patches(&api, i),
            [body(&ip.to_string()), body("")],
            "pod-{i}"
        );
    }

    // The annotation now holds another address (someone else wrote it): DEL leaves it.
    let ip = add_pod(&mut c, 11).await;
    wait_annotation(&api, 11, &ip.to_string()).await;
    let mut changed = pod(11);
    changed["metadata"]["annotations"] = json!({KEY: "10.9.9.9"});
    api.apply(changed);
    del_pod(&mut c, 11).await;
    // ADD and DEL of pod 12 queue behind nothing of pod 11; once they are done, so is 11.
    let ip12 = add_pod(&mut c, 12).await;
    del_pod(&mut c, 12).await;
    wait_annotation(&api, 12, "").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(annotation(&api, 11).as_deref(), Some("10.9.9.9"));
    assert_eq!(patches(&api, 11), [body(&ip.to_string())]);
    assert_eq!(
        pod_requests(&api, 11)
            .iter()
            .filter(|r| r.method == "GET")
            .count(),
        2,
        "DEL read the pod and did not patch it"
    );
    assert_eq!(patches(&api, 12), [body(&ip12.to_string()), body("")]);

    // The pod is gone from the API server before its DEL: the DEL succeeds, nothing patched.
    let ip = add_pod(&mut c, 13).await;
    wait_annotation(&api, 13, &ip.to_string()).await;
    assert!(api.delete("v1", "Pod", "default", "pod-13"));
    del_pod(&mut c, 13).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(patches(&api, 13), [body(&ip.to_string())]);
    assert!(!agent.is_finished(), "the agent is running");
    agent.abort();
}
