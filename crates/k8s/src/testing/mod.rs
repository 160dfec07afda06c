//! A fake Kubernetes API server over real HTTP on 127.0.0.1, faithful to list/watch
//! semantics: one resourceVersion counter, list → watch from the list's resourceVersion,
//! replay of missed changes, bookmarks, `410 Gone` (as a watch `ERROR` event, like a real
//! server) for resourceVersions older than the compaction point, JSON merge patch with
//! resourceVersion preconditions (409), and create. It records every request.
//!
//! Tests drive it: [`FakeApiServer::apply`]/[`FakeApiServer::delete`] objects,
//! [`FakeApiServer::bookmark`], [`FakeApiServer::end_watches`] (a watch timeout),
//! [`FakeApiServer::expire_watches`] (compaction + timeout: the next watch gets 410),
//! [`FakeApiServer::go_down`]/[`FakeApiServer::come_up`] (connections refused meanwhile, same
//! port afterwards), [`FakeApiServer::fail_requests`] (inject error statuses).

mod handler;
mod store;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio::task::{JoinHandle, JoinSet};

use store::{Change, Store, by_kind};
pub use store::{RESOURCES, Resource, merge_patch};

/// One request the server received.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    /// `GET`, `PATCH`, `POST`, ...
    pub method: String,
    /// URL path.
    pub path: String,
    /// Decoded query parameters, in order.
    pub query: Vec<(String, String)>,
    /// `Content-Type`, if any.
    pub content_type: Option<String>,
    /// The JSON body, if any.
    pub body: Option<Value>,
}

impl RecordedRequest {
    /// A query parameter's value.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether this is a watch request.
    pub fn is_watch(&self) -> bool {
        self.param("watch") == Some("true")
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Signal {
    Change(Change),
    Bookmark(u64),
    Close,
}

/// Requests answered late (see [`FakeApiServer::delay_requests`]).
#[derive(Debug, Clone)]
pub(crate) struct Delay {
    method: String,
    path: String,
    delay: std::time::Duration,
    remaining: u32,
}

impl Delay {
    /// Takes one use of the delay if `r` matches.
    pub(crate) fn take(&mut self, r: &RecordedRequest) -> Option<std::time::Duration> {
        let hit = self.remaining > 0 && self.method == r.method && r.path.starts_with(&self.path);
        hit.then(|| {
            self.remaining -= 1;
            self.delay
        })
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Failure {
    method: String,
    path: String,
    code: u16,
    remaining: u32,
}

pub(crate) struct Shared {
    store: Mutex<Store>,
    requests: Mutex<Vec<RecordedRequest>>,
    failures: Mutex<Vec<Failure>>,
    delays: Mutex<Vec<Delay>>,
    signals: broadcast::Sender<Signal>,
    open_watches: AtomicUsize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The fake API server. Dropping it stops it.
pub struct FakeApiServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl FakeApiServer {
    /// Start on a free port of 127.0.0.1.
    pub async fn start() -> std::io::Result<Self> {
        Self::serve_on(TcpListener::bind("127.0.0.1:0").await?)
    }

    /// Start on `listener`, a listening socket made by the caller (for example on loopback
    /// inside another network namespace; [`FakeApiServer::come_up`] rebinds in the current
    /// one). Needs a Tokio runtime.
    pub fn start_on(listener: std::net::TcpListener) -> std::io::Result<Self> {
        listener.set_nonblocking(true)?;
        Self::serve_on(TcpListener::from_std(listener)?)
    }

    fn serve_on(listener: TcpListener) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let (signals, _) = broadcast::channel(1024);
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::default()),
            requests: Mutex::new(Vec::new()),
            failures: Mutex::new(Vec::new()),
            delays: Mutex::new(Vec::new()),
            signals,
            open_watches: AtomicUsize::new(0),
        });
        let task = tokio::spawn(serve(listener, shared.clone()));
        Ok(FakeApiServer {
            shared,
            addr,
            task: Mutex::new(Some(task)),
        })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Create or replace an object (apiVersion, kind and metadata.name required); returns
    /// its new resourceVersion. Open watches see ADDED or MODIFIED.
    pub fn apply(&self, obj: Value) -> u64 {
        let api_version = obj["apiVersion"].as_str().unwrap_or_default().to_owned();
        let kind = obj["kind"].as_str().unwrap_or_default().to_owned();
        let Some(res) = by_kind(&api_version, &kind) else {
            panic!("FakeApiServer does not serve {api_version} {kind}");
        };
        let mut store = lock(&self.shared.store);
        let change = store.put(res, obj);
        let rv = change.rv;
        let _ = self.shared.signals.send(Signal::Change(change));
        rv
    }

    /// Delete an object; open watches see DELETED. Returns whether it existed.
    pub fn delete(&self, api_version: &str, kind: &str, namespace: &str, name: &str) -> bool {
        let Some(res) = by_kind(api_version, kind) else {
            return false;
        };
        let mut store = lock(&self.shared.store);
        match store.delete(res, namespace, name) {
            Some(change) => {
                let _ = self.shared.signals.send(Signal::Change(change));
                true
            }
            None => false,
        }
    }

    /// The stored object.
    pub fn get(&self, api_version: &str, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        let res = by_kind(api_version, kind)?;
        lock(&self.shared.store)
            .objects
            .get(&(res.plural, namespace.to_owned(), name.to_owned()))
            .cloned()
    }

    /// All stored objects of a kind.
    pub fn list(&self, api_version: &str, kind: &str) -> Vec<Value> {
        match by_kind(api_version, kind) {
            Some(res) => lock(&self.shared.store).list(res, None),
            None => Vec::new(),
        }
    }

    /// The last resourceVersion handed out.
    pub fn resource_version(&self) -> u64 {
        lock(&self.shared.store).rv
    }

    /// Send a BOOKMARK at the current resourceVersion to every open watch.
    pub fn bookmark(&self) -> u64 {
        let mut store = lock(&self.shared.store);
        // A bookmark carries a resourceVersion newer than the last event, as after writes to
        // other resources.
        store.rv += 1;
        let rv = store.rv;
        let _ = self.shared.signals.send(Signal::Bookmark(rv));
        rv
    }

    /// End every open watch (as its timeout would); clients resume from their last
    /// resourceVersion.
    pub fn end_watches(&self) {
        let _ = self.shared.signals.send(Signal::Close);
    }

    /// Compact history (watches from any resourceVersion handed out so far get 410 Gone)
    /// and end every open watch, so clients must relist.
    pub fn expire_watches(&self) {
        let mut store = lock(&self.shared.store);
        store.rv += 1;
        store.compacted = store.rv;
        let _ = self.shared.signals.send(Signal::Close);
    }

    /// Number of watch responses currently streaming.
    pub fn open_watches(&self) -> usize {
        self.shared.open_watches.load(Ordering::SeqCst)
    }

    /// Answer the next `times` requests with this method whose path starts with `path`
    /// with status `code` (403, 409, 500, ...).
    pub fn fail_requests(&self, method: &str, path: &str, code: u16, times: u32) {
        lock(&self.shared.failures).push(Failure {
            method: method.to_owned(),
            path: path.to_owned(),
            code,
            remaining: times,
        });
    }

    /// Answer the next `times` requests with this method whose path starts with `path`
    /// only after `delay` (a slow API server; the request is recorded on arrival).
    pub fn delay_requests(&self, method: &str, path: &str, delay: std::time::Duration, times: u32) {
        lock(&self.shared.delays).push(Delay {
            method: method.to_owned(),
            path: path.to_owned(),
            delay,
            remaining: times,
        });
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.requests).clone()
    }

    /// Forget the recorded requests.
    pub fn clear_requests(&self) {
        lock(&self.shared.requests).clear();
    }

    /// Stop listening and drop every connection (clients get connection refused).
    pub async fn go_down(&self) {
        let task = lock(&self.task).take();
        if let Some(t) = task {
            t.abort();
            let _ = t.await;
        }
    }

    /// Listen again on the same port.
    pub async fn come_up(&self) -> std::io::Result<()> {
        let listener = TcpListener::bind(self.addr).await?;
        let task = tokio::spawn(serve(listener, self.shared.clone()));
        *lock(&self.task) = Some(task);
        Ok(())
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        if let Some(t) = lock(&self.task).take() {
            t.abort();
        }
    }
}

async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    // Connections live in this task's JoinSet: aborting the task drops them all.
    let mut conns = JoinSet::new();
    loop {
        while conns.try_join_next().is_some() {}
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        conns.spawn(async move {
            let service =
                hyper::service::service_fn(move |req| handler::handle(shared.clone(), req));
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await;
        });
    }
}
