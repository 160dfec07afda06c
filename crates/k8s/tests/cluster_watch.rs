//! ClusterWatch and ClusterHandle against the fake API server over real HTTP: list → watch
//! with resourceVersion → bookmark resume → 410 relist, API server down and back, and the
//! exact requests of every write.

use std::time::Duration;

use k8s::testing::{FakeApiServer, RecordedRequest};
use k8s::{
    Cluster, ClusterWatch, Connection, EniConfigError, Feature, NodeEvent, PatchOutcome, Settings,
};
use serde_json::{Value, json};

const NODE: &str = "ip-10-0-1-23.ec2.internal";

fn node(labels: Value, annotations: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Node",
           "metadata": {"name": NODE, "labels": labels, "annotations": annotations},
           "spec": {"taints": [{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]},
           "status": {"capacity": {"pods": "29", "cpu": "2"}}})
}

fn other_node() -> Value {
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "other-node", "labels": {}}})
}

fn eni_config(name: &str, subnet: &str) -> Value {
    json!({"apiVersion": "crd.k8s.amazonaws.com/v1alpha1", "kind": "ENIConfig",
           "metadata": {"name": name}, "spec": {"subnet": subnet, "securityGroups": ["sg-1"]}})
}

fn settings() -> Settings {
    let mut s = Settings::new(NODE);
    s.custom_networking = true;
    s.pod_eni = true;
    s.pod_name = Some("aws-node-abcde".to_owned());
    s
}

async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..600 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}

fn watches_of(reqs: &[RecordedRequest], path: &str) -> Vec<RecordedRequest> {
    reqs.iter()
        .filter(|r| r.path == path && r.method == "GET")
        .cloned()
        .collect()
}

fn brief(r: &RecordedRequest) -> String {
    let keep = [
        "watch",
        "resourceVersion",
        "fieldSelector",
        "allowWatchBookmarks",
    ];
    let q: Vec<String> = r
        .query
        .iter()
        .filter(|(k, _)| keep.contains(&k.as_str()))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    format!("{} {}?{}", r.method, r.path, q.join("&"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_watch_bookmark_410_relist_and_outage() {
    let server = FakeApiServer::start().await.expect("start fake API server");
    server.apply(other_node());
    server.apply(node(
        json!({"k8s.amazonaws.com/eniConfig": "us-west-2a"}),
        json!({}),
    ));
    server.apply(eni_config("us-west-2a", "subnet-aaaa"));
    let conn = Connection::from_url(&server.url()).expect("connection");
    let (cluster, task) = ClusterWatch::start(&conn, settings());
    assert!(
        cluster.wait_synced(Duration::from_secs(20)).await,
        "initial lists"
    );

    // The node from its own watch (field selector), its ENIConfig from the cache.
    let info = cluster.node().expect("node known");
    assert_eq!(
        (info.name.as_str(), info.max_pods, info.unschedulable),
        (NODE, Some(29), true)
    );
    let chosen = cluster.node_eni_config().expect("ENIConfig resolved");
    assert_eq!(
        (chosen.name.as_str(), chosen.spec.subnet.as_str()),
        ("us-west-2a", "subnet-aaaa")
    );

    // A change streams in over the open watch.
    eventually("node watch open", || server.open_watches() >= 3).await;
    server.apply(eni_config("us-west-2a", "subnet-bbbb"));
    eventually("ENIConfig update seen", || {
        cluster
            .node_eni_config()
            .is_ok_and(|c| c.spec.subnet == "subnet-bbbb")
    })
    .await;

    // Bookmark then watch timeout: the client resumes from the bookmark's resourceVersion.
    let bookmark_rv = server.bookmark();
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.end_watches();
    let node_path = "/api/v1/nodes";
    eventually("node watch resumed from the bookmark", || {
        watches_of(&server.requests(), node_path)
            .iter()
            .any(|r| r.is_watch() && r.param("resourceVersion") == Some(&bookmark_rv.to_string()))
    })
    .await;

    // Compaction: the resumed watch gets 410 and the client relists.
    let before = cluster.status();
    server.apply(node(
        json!({"k8s.amazonaws.com/eniConfig": "us-west-2b"}),
        json!({}),
    ));
    server.apply(eni_config("us-west-2b", "subnet-cccc"));
    eventually("label change seen", || {
        cluster
            .node_eni_config()
            .is_ok_and(|c| c.name == "us-west-2b")
    })
    .await;
    server.expire_watches();
    eventually("relist after 410", || {
        cluster.status().node.lists > before.node.lists
    })
    .await;
    // The relist is counted before the watch that follows it is sent: wait for that watch.
    eventually("watch after the relist", || {
        watches_of(&server.requests(), "/api/v1/nodes")
            .iter()
            .any(|r| r.is_watch() && r.param("resourceVersion") == Some("8"))
    })
    .await;

    let reqs = watches_of(&server.requests(), node_path);
    let seq: Vec<String> = reqs.iter().map(brief).collect();
    println!("node requests:\n{}", seq.join("\n"));
    // Every node request is scoped to this node.
    assert!(
        reqs.iter()
            .all(|r| r.param("fieldSelector") == Some(&format!("metadata.name={NODE}"))),
        "{seq:?}"
    );
    // list (rv 3) → watch from 3 with bookmarks → resume from the bookmark (5) → resume from
    // the last event (6) → 410 → relist (rv 8) → watch from 8.
    let sel = format!("fieldSelector=metadata.name={NODE}");
    let w = |rv: u64| {
        format!("GET {node_path}?watch=true&{sel}&allowWatchBookmarks=true&resourceVersion={rv}")
    };
    let l = format!("GET {node_path}?{sel}");
    assert_eq!(bookmark_rv, 5);
    // In this order; under heavy load a watch may also be retried in between.
    let want = vec![l.clone(), w(3), w(5), w(6), l, w(8)];
    let mut rest = seq.iter();
    for step in &want {
        assert!(
            rest.any(|r| r == step),
            "missing {step:?} (in order) in {seq:#?}"
        );
    }
    assert_eq!(seq[0], want[0], "starts with a list");
    assert!(
        cluster.node().is_some_and(|n| n.name == NODE),
        "the other node never enters the store"
    );

    // API server down: last known state still served; status says disconnected.
    server.go_down().await;
    eventually("watch errors noticed", || !cluster.status().connected()).await;
    let chosen = cluster
        .node_eni_config()
        .expect("ENIConfig still served while the API server is away");
    assert_eq!(chosen.spec.subnet, "subnet-cccc");
    assert_eq!(cluster.node().map(|n| n.max_pods), Some(Some(29)));
    // Changes made while it is away (e.g. a restarted API server with new data) show up after.
    server.apply(eni_config("us-west-2b", "subnet-dddd"));
    server.expire_watches();
    server.come_up().await.expect("come up");
    eventually("recovered with new data", || {
        cluster
            .node_eni_config()
            .is_ok_and(|c| c.spec.subnet == "subnet-dddd")
    })
    .await;
    eventually("connected again", || cluster.status().connected()).await;
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_start_then_eni_config_errors() {
    let server = FakeApiServer::start().await.expect("start");
    server.go_down().await;
    let conn = Connection::from_url(&server.url()).expect("connection");
    let (cluster, task) = ClusterWatch::start(&conn, settings());
    // API server away at start: callers proceed after the wait with "unknown".
    assert!(!cluster.wait_synced(Duration::from_millis(500)).await);
    assert!(matches!(
        cluster.node_eni_config(),
        Err(EniConfigError::NodeUnknown { .. })
    ));
    assert!(cluster.node().is_none());

    server.apply(node(json!({}), json!({})));
    server.come_up().await.expect("come up");
    assert!(
        cluster.wait_synced(Duration::from_secs(30)).await,
        "synced once it is up"
    );
    let err = cluster.node_eni_config().expect_err("no ENIConfig");
    assert_eq!(
        err.to_string(),
        format!(
            "no ENIConfig selected for node {NODE}: set annotation k8s.amazonaws.com/eniConfig or label k8s.amazonaws.com/eniConfig on the node, or create an ENIConfig named \"default\""
        )
    );
    server.apply(node(
        json!({}),
        json!({"k8s.amazonaws.com/eniConfig": "missing"}),
    ));
    eventually("annotation seen", || {
        matches!(
            cluster.node_eni_config(),
            Err(EniConfigError::NotFound { .. })
        )
    })
    .await;
    assert!(
        cluster
            .node_eni_config()
            .expect_err("missing")
            .to_string()
            .starts_with("ENIConfig missing not found")
    );
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_send_upstreams_requests() {
    let server = FakeApiServer::start().await.expect("start");
    server.apply(node(json!({}), json!({})));
    server.apply(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-1", "namespace": "shop"}}));
    server.apply(json!({"apiVersion": "vpcresources.k8s.aws/v1alpha1", "kind": "CNINode",
                        "metadata": {"name": NODE},
                        "spec": {"features": [{"name": "CustomNetworking", "value": "old"}], "tags": {"a": "b"}}}));
    server.apply(json!({"apiVersion": "vpcresources.k8s.aws/v1beta1", "kind": "SecurityGroupPolicy",
                        "metadata": {"name": "web", "namespace": "shop"},
                        "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "securityGroups": {"groupIds": ["sg-web"]}}}));
    let conn = Connection::from_url(&server.url()).expect("connection");
    let (cluster, task) = ClusterWatch::start(&conn, settings());
    assert!(cluster.wait_synced(Duration::from_secs(20)).await);
    server.clear_requests();

    // Pod IP annotation: GET then a merge patch with exactly upstream's body.
    assert_eq!(
        cluster.annotate_pod_ip("shop", "web-1", "10.0.5.7").await,
        Ok(PatchOutcome::Patched)
    );
    assert_eq!(
        cluster.annotate_pod_ip("shop", "web-1", "10.0.5.7").await,
        Ok(PatchOutcome::Unchanged)
    );
    assert!(
        cluster
            .clear_pod_ip("shop", "web-1", "10.0.5.99")
            .await
            .is_err(),
        "another IP: not cleared"
    );
    assert_eq!(
        cluster.clear_pod_ip("shop", "web-1", "10.0.5.7").await,
        Ok(PatchOutcome::Patched)
    );
    assert_eq!(
        cluster.clear_pod_ip("shop", "gone", "10.0.5.8").await,
        Ok(PatchOutcome::NotFound)
    );
    let pod_reqs: Vec<RecordedRequest> = server
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/api/v1/namespaces/shop/pods"))
        .collect();
    let patches: Vec<&RecordedRequest> = pod_reqs.iter().filter(|r| r.method == "PATCH").collect();
    assert_eq!(patches.len(), 2, "{pod_reqs:?}");
    assert_eq!(patches[0].path, "/api/v1/namespaces/shop/pods/web-1");
    assert_eq!(
        patches[0].content_type.as_deref(),
        Some("application/merge-patch+json")
    );
    assert_eq!(
        patches[0].body,
        Some(json!({"metadata": {"annotations": {"vpc.amazonaws.com/pod-ips": "10.0.5.7"}}}))
    );
    assert_eq!(
        patches[1].body,
        Some(json!({"metadata": {"annotations": {"vpc.amazonaws.com/pod-ips": ""}}}))
    );
    assert_eq!(pod_reqs.iter().filter(|r| r.method == "GET").count(), 5);

    // CNINode: the old CustomNetworking value is replaced, resourceVersion precondition sent.
    server.clear_requests();
    let rv = server
        .get("vpcresources.k8s.aws/v1alpha1", "CNINode", "", NODE)
        .expect("cninode")["metadata"]["resourceVersion"]
        .clone();
    let wanted = k8s::features::wanted_features(true, true, Some("us-west-2a"));
    assert_eq!(
        cluster.advertise_features(&wanted).await,
        Ok(PatchOutcome::Patched)
    );
    assert_eq!(
        cluster.advertise_features(&wanted).await,
        Ok(PatchOutcome::Unchanged)
    );
    let reqs = server.requests();
    let p: Vec<&RecordedRequest> = reqs.iter().filter(|r| r.method == "PATCH").collect();
    assert_eq!(p.len(), 1);
    assert_eq!(
        p[0].path,
        format!("/apis/vpcresources.k8s.aws/v1alpha1/cninodes/{NODE}")
    );
    assert_eq!(
        p[0].body,
        Some(json!({"metadata": {"resourceVersion": rv},
                    "spec": {"features": [{"name": "CustomNetworking", "value": "us-west-2a"},
                                          {"name": "SecurityGroupsForPods"}]}}))
    );
    let stored = server
        .get("vpcresources.k8s.aws/v1alpha1", "CNINode", "", NODE)
        .expect("cninode");
    assert_eq!(
        stored["spec"]["tags"],
        json!({"a": "b"}),
        "controller's fields untouched"
    );

    // A conflicting write meanwhile: 409, re-read, retried.
    server.fail_requests(
        "PATCH",
        "/apis/vpcresources.k8s.aws/v1alpha1/cninodes",
        409,
        1,
    );
    assert_eq!(
        cluster
            .advertise_features(&[Feature::custom_networking("us-west-2b")])
            .await,
        Ok(PatchOutcome::Patched)
    );
    server.delete("vpcresources.k8s.aws/v1alpha1", "CNINode", "", NODE);
    assert!(matches!(
        cluster.advertise_features(&wanted).await,
        Err(k8s::K8sError::CniNodeMissing(_))
    ));

    // Events about the aws-node pod (as upstream), naming the Node, deduplicated.
    server.clear_requests();
    let ev = NodeEvent::MissingIamPermissions {
        action: "CreateNetworkInterface".to_owned(),
    };
    assert_eq!(
        cluster.node_event(ev.clone()).await,
        Ok(k8s::EventOutcome::Created)
    );
    assert_eq!(
        cluster.node_event(ev).await,
        Ok(k8s::EventOutcome::Suppressed)
    );
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert_eq!(
        (reqs[0].method.as_str(), reqs[0].path.as_str()),
        (
            "POST",
            "/apis/events.k8s.io/v1/namespaces/kube-system/events"
        )
    );
    let body = reqs[0].body.clone().expect("event body");
    assert_eq!(body["reason"], "MissingIAMPermissions");
    assert_eq!(body["type"], "Warning");
    assert_eq!(body["action"], "ec2:CreateNetworkInterface");
    assert_eq!(body["reportingController"], "aws-node");
    assert_eq!(body["reportingInstance"], "aws-node-abcde");
    assert_eq!(body["regarding"]["kind"], "Pod");
    assert_eq!(body["regarding"]["namespace"], "kube-system");
    assert_eq!(body["regarding"]["name"], "aws-node-abcde");
    assert_eq!(body["related"]["kind"], "Node");
    assert_eq!(body["related"]["name"], NODE);
    assert!(body["related"]["uid"].is_string());
    assert!(body["note"].as_str().is_some_and(|n| {
        n.starts_with("Unauthorized operation: failed to call ec2:CreateNetworkInterface")
    }));
    assert_eq!(server.list("events.k8s.io/v1", "Event").len(), 1);

    // Missing RBAC for events: a typed error with the status code.
    server.fail_requests("POST", "/apis/events.k8s.io", 403, 1);
    let err = cluster
        .node_event(NodeEvent::EniLimitReached { max_enis: 3 })
        .await
        .expect_err("forbidden");
    assert_eq!(err.status_code(), Some(403));

    // Security group policies from the cache.
    let pod = k8s::PodIdentity {
        namespace: "shop".to_owned(),
        labels: [("app".to_owned(), "web".to_owned())].into(),
        service_account: "default".to_owned(),
        service_account_labels: Default::default(),
    };
    let m = cluster.sgp_for_pod(&pod);
    assert_eq!(m.len(), 1);
    assert_eq!(
        (m[0].name.as_str(), m[0].security_groups.clone()),
        ("web", vec!["sg-web".to_owned()])
    );
    task.abort();
}
