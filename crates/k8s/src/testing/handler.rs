//! HTTP handling of the fake API server: routing, list, watch, get, merge patch, create.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::body::{Body, Bytes};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use super::store::{Change, Resource, by_plural, merge_patch, ns_name, status};
use super::{RecordedRequest, Shared, Signal, lock};

type Resp = Response<Body>;

fn json_response(code: u16, body: &Value) -> Resp {
    let mut resp = Response::new(Body::from(body.to_string()));
    *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    resp
}

fn failure(code: u16, reason: &str, message: &str) -> Resp {
    json_response(code, &status(code, reason, message))
}

/// Where a request points.
struct Target {
    res: Resource,
    namespace: Option<String>,
    name: Option<String>,
}

fn route(path: &str) -> Option<Target> {
    let (api_version, rest) = if let Some(rest) = path.strip_prefix("/api/v1/") {
        ("v1".to_owned(), rest)
    } else {
        let rest = path.strip_prefix("/apis/")?;
        let mut it = rest.splitn(3, '/');
        let (g, v, rest) = (it.next()?, it.next()?, it.next()?);
        (format!("{g}/{v}"), rest)
    };
    let segs: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let (namespace, plural, name) = match segs.as_slice() {
        ["namespaces", ns, plural] => (Some(*ns), *plural, None),
        ["namespaces", ns, plural, name] => (Some(*ns), *plural, Some(*name)),
        [plural] => (None, *plural, None),
        [plural, name] => (None, *plural, Some(*name)),
        _ => return None,
    };
    let res = by_plural(&api_version, plural)?;
    Some(Target {
        res,
        namespace: namespace.map(str::to_owned),
        name: name.map(str::to_owned),
    })
}

fn field_matches(selector: Option<&str>, obj: &Value) -> bool {
    let Some(sel) = selector.filter(|s| !s.is_empty()) else {
        return true;
    };
    let (ns, name) = ns_name(obj);
    sel.split(',').all(|term| match term.split_once('=') {
        Some(("metadata.name", v)) => name == v,
        Some(("metadata.namespace", v)) => ns == v,
        _ => false,
    })
}

pub(crate) async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Resp, Infallible> {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(Body::new(body), 16 << 20)
        .await
        .unwrap_or_default();
    let query: Vec<(String, String)> = parts
        .uri
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let recorded = RecordedRequest {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query,
        content_type: parts
            .headers
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        body: serde_json::from_slice(&bytes).ok(),
    };
    lock(&shared.requests).push(recorded.clone());
    let delay = lock(&shared.delays)
        .iter_mut()
        .find_map(|d| d.take(&recorded));
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }

    {
        let mut failures = lock(&shared.failures);
        if let Some(f) = failures.iter_mut().find(|f| {
            f.remaining > 0 && f.method == recorded.method && recorded.path.starts_with(&f.path)
        }) {
            f.remaining -= 1;
            let reason = match f.code {
                403 => "Forbidden",
                404 => "NotFound",
                409 => "Conflict",
                410 => "Expired",
                _ => "InternalError",
            };
            return Ok(failure(f.code, reason, "injected failure"));
        }
    }

    if recorded.path == "/version" {
        return Ok(json_response(
            200,
            &json!({"major": "1", "minor": "32", "gitVersion": "v1.32.0-fake", "gitCommit": "0",
                    "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.23",
                    "compiler": "gc", "platform": "linux/amd64"}),
        ));
    }
    let Some(target) = route(&recorded.path) else {
        return Ok(failure(
            404,
            "NotFound",
            &format!(
                "the server could not find the requested resource ({})",
                recorded.path
            ),
        ));
    };
    Ok(match (recorded.method.as_str(), &target.name) {
        ("GET", None) if recorded.is_watch() => watch(&shared, &target, &recorded),
        ("GET", None) => list(&shared, &target, &recorded),
        ("GET", Some(name)) => get(&shared, &target, name),
        ("PATCH", Some(name)) => patch(&shared, &target, name, &recorded),
        ("POST", None) => create(&shared, &target, &recorded),
        _ => failure(405, "MethodNotAllowed", "method not allowed"),
    })
}

fn get(shared: &Shared, t: &Target, name: &str) -> Resp {
    let key = (
        t.res.plural,
        t.namespace.clone().unwrap_or_default(),
        name.to_owned(),
    );
    match lock(&shared.store).objects.get(&key) {
        Some(obj) => json_response(200, obj),
        None => failure(
            404,
            "NotFound",
            &format!("{} \"{name}\" not found", t.res.plural),
        ),
    }
}

fn list(shared: &Shared, t: &Target, r: &RecordedRequest) -> Resp {
    let store = lock(&shared.store);
    let selector = r.param("fieldSelector");
    let items: Vec<Value> = store
        .list(t.res, t.namespace.as_deref())
        .into_iter()
        .filter(|o| field_matches(selector, o))
        .collect();
    json_response(
        200,
        &json!({"apiVersion": t.res.api_version, "kind": format!("{}List", t.res.kind),
                "metadata": {"resourceVersion": store.rv.to_string()}, "items": items}),
    )
}

fn patch(shared: &Shared, t: &Target, name: &str, r: &RecordedRequest) -> Resp {
    if r.content_type.as_deref() != Some("application/merge-patch+json") {
        return failure(415, "UnsupportedMediaType", "only merge patches are served");
    }
    let Some(body) = &r.body else {
        return failure(400, "BadRequest", "patch body is not JSON");
    };
    let mut store = lock(&shared.store);
    let key = (
        t.res.plural,
        t.namespace.clone().unwrap_or_default(),
        name.to_owned(),
    );
    let Some(mut obj) = store.objects.get(&key).cloned() else {
        return failure(
            404,
            "NotFound",
            &format!("{} \"{name}\" not found", t.res.plural),
        );
    };
    if let Some(want) = body["metadata"]["resourceVersion"].as_str()
        && obj["metadata"]["resourceVersion"].as_str() != Some(want)
    {
        return failure(
            409,
            "Conflict",
            &format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified",
                t.res.plural
            ),
        );
    }
    merge_patch(&mut obj, body);
    let change = store.put(t.res, obj);
    let out = change.object.clone();
    let _ = shared.signals.send(Signal::Change(change));
    json_response(200, &out)
}

fn create(shared: &Shared, t: &Target, r: &RecordedRequest) -> Resp {
    let Some(mut obj) = r.body.clone() else {
        return failure(400, "BadRequest", "body is not JSON");
    };
    if let Some(ns) = &t.namespace {
        obj["metadata"]["namespace"] = json!(ns);
    }
    let mut store = lock(&shared.store);
    let (ns, name) = ns_name(&obj);
    if name.is_empty() {
        return failure(422, "Invalid", "metadata.name: Required value");
    }
    if store
        .objects
        .contains_key(&(t.res.plural, ns, name.clone()))
    {
        return failure(
            409,
            "AlreadyExists",
            &format!("{} \"{name}\" already exists", t.res.plural),
        );
    }
    let change = store.put(t.res, obj);
    let out = change.object.clone();
    let _ = shared.signals.send(Signal::Change(change));
    json_response(201, &out)
}

fn watch_line(kind: &str, object: &Value) -> Bytes {
    let mut line = json!({"type": kind, "object": object}).to_string();
    line.push('\n');
    Bytes::from(line)
}

fn watch(shared: &Arc<Shared>, t: &Target, r: &RecordedRequest) -> Resp {
    let from: u64 = r
        .param("resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let selector = r.param("fieldSelector").map(str::to_owned);
    let res = t.res;
    let ns = t.namespace.clone();
    let wanted = move |c: &Change| {
        c.plural == res.plural
            && ns.as_deref().is_none_or(|n| ns_name(&c.object).0 == n)
            && field_matches(selector.as_deref(), &c.object)
    };
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let mut initial = Vec::new();
    let signals;
    {
        let store = lock(&shared.store);
        if from < store.compacted {
            let st = status(
                410,
                "Expired",
                &format!("too old resource version: {from} ({})", store.compacted),
            );
            initial.push(watch_line("ERROR", &st));
            signals = None;
        } else {
            initial.extend(
                store
                    .history
                    .iter()
                    .filter(|c| c.rv > from && wanted(c))
                    .map(|c| watch_line(c.kind, &c.object)),
            );
            signals = Some(shared.signals.subscribe());
        }
    }
    let shared = shared.clone();
    shared.open_watches.fetch_add(1, Ordering::SeqCst);
    tokio::spawn(async move {
        feed(tx, initial, signals, res, wanted).await;
        shared.open_watches.fetch_sub(1, Ordering::SeqCst);
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<Bytes, Infallible>(b), rx))
    });
    let mut resp = Response::new(Body::from_stream(stream));
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    resp
}

async fn feed(
    tx: mpsc::Sender<Bytes>,
    initial: Vec<Bytes>,
    signals: Option<broadcast::Receiver<Signal>>,
    res: Resource,
    wanted: impl Fn(&Change) -> bool,
) {
    for line in initial {
        if tx.send(line).await.is_err() {
            return;
        }
    }
    let Some(mut signals) = signals else { return };
    loop {
        let signal = tokio::select! {
            s = signals.recv() => s,
            _ = tx.closed() => return,
        };
        let line = match signal {
            Ok(Signal::Change(c)) if wanted(&c) => watch_line(c.kind, &c.object),
            Ok(Signal::Change(_)) => continue,
            Ok(Signal::Bookmark(rv)) => watch_line(
                "BOOKMARK",
                &json!({"apiVersion": res.api_version, "kind": res.kind, "metadata": {"resourceVersion": rv.to_string()}}),
            ),
            Ok(Signal::Close) | Err(_) => return,
        };
        if tx.send(line).await.is_err() {
            return;
        }
    }
}
