//! The HTTP front ends: the EC2 Query API and the control API on one listener, and one IMDS
//! listener per emulated instance. All state sits behind one mutex; handlers are short.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, put};

use crate::faults::Faults;
use crate::hotplug::{HotPlug, PluggedEni};
use crate::model::imds::{self, ImdsHistory};
use crate::model::{Ec2Error, ErrorCode, InstanceTypeInfo, World};
use crate::query::{self, Params, Xml};

/// Looks up an instance type's limits (the binary wires in the `limits` table).
pub type Catalog = Arc<dyn Fn(&str) -> Option<InstanceTypeInfo> + Send + Sync>;

/// Everything the emulator holds.
pub struct Emulator {
    pub world: World,
    pub faults: Faults,
    pub region: String,
    pub catalog: Catalog,
    imds: BTreeMap<String, ImdsHistory>,
    tokens: BTreeMap<String, u64>,
    next_request: u64,
    hotplug: BTreeMap<String, HotPlug>,
}

/// Shared handle to the emulator.
pub type Shared = Arc<Mutex<Emulator>>;

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Locks the state; a poisoned lock (a panicked handler) is still usable for a test tool.
pub fn lock(shared: &Shared) -> MutexGuard<'_, Emulator> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

impl Emulator {
    pub fn new(world: World, region: &str, catalog: Catalog) -> Self {
        let mut emu = Self {
            world,
            faults: Faults::default(),
            region: region.to_string(),
            catalog,
            imds: BTreeMap::new(),
            tokens: BTreeMap::new(),
            next_request: 0,
            hotplug: BTreeMap::new(),
        };
        emu.after_change();
        emu
    }

    /// Hot-plugs the ENIs of `instance_id` as links in the network namespace `netns`.
    pub fn set_hotplug(&mut self, instance_id: &str, netns: &str) {
        self.hotplug
            .insert(instance_id.to_string(), HotPlug::new(netns));
        self.after_change();
    }

    /// Associates another IPv4 CIDR with a VPC; IMDS lists it (after any IMDS lag).
    pub fn associate_vpc_cidr(
        &mut self,
        vpc_id: &str,
        cidr: ipnet::Ipv4Net,
    ) -> Result<(), Ec2Error> {
        self.world.associate_vpc_cidr(vpc_id, cidr)?;
        self.after_change();
        Ok(())
    }

    /// The VPC Resource Controller's work for one pod (`World::branch_eni_for_pod`); a new
    /// trunk is hot-plugged like any attached ENI.
    pub fn branch_eni_for_pod(
        &mut self,
        instance_id: &str,
        subnet_id: &str,
        groups: &[String],
    ) -> Result<crate::model::BranchEni, Ec2Error> {
        self.world.now = now_secs() as u64;
        let branch = self
            .world
            .branch_eni_for_pod(instance_id, subnet_id, groups)?;
        self.after_change();
        Ok(branch)
    }

    fn request_id(&mut self) -> String {
        self.next_request += 1;
        format!("00000000-0000-4000-8000-{:012x}", self.next_request)
    }

    /// Records IMDS views and syncs hot-plugged links after any change of the world.
    fn after_change(&mut self) {
        let now = now_secs() as u64;
        self.world.now = now;
        let ids: Vec<String> = self.world.instances.keys().cloned().collect();
        for id in ids {
            if let Some(view) = imds::view_of(&self.world, &id, &self.region) {
                self.imds
                    .entry(id.clone())
                    .or_default()
                    .record(now, view, 3600);
            }
            if let Some(plug) = self.hotplug.get_mut(&id) {
                let macs: Vec<PluggedEni> = self
                    .world
                    .attached_enis(&id)
                    .iter()
                    .filter_map(|e| {
                        e.attachment.as_ref().map(|a| PluggedEni {
                            mac: e.mac.clone(),
                            card: a.network_card,
                            device: a.device_index,
                            ipv6: e.ipv6_addresses.first().copied(),
                        })
                    })
                    .collect();
                if let Err(err) = plug.sync(&macs) {
                    tracing::warn!(instance = %id, "hot-plug failed: {err}");
                }
            }
        }
    }

    /// One EC2 Query API call (after fault injection).
    pub fn ec2_call(&mut self, params: &Params) -> (StatusCode, String) {
        let request_id = self.request_id();
        let action = params.get("Action").unwrap_or_default().to_string();
        if query::describe::is_unfiltered(params) {
            self.faults.unfiltered_describes += 1;
        }
        if let Some(code) = self.faults.on_call(&action, now_secs()) {
            let err = Ec2Error::new(code, format!("Injected fault for {action}"));
            return error_response(&err, &request_id);
        }
        self.world.now = now_secs() as u64;
        let catalog = self.catalog.clone();
        match query::handle(&mut self.world, params, &*catalog, &request_id) {
            Ok(body) => {
                if !action.starts_with("Describe") {
                    self.after_change();
                }
                (StatusCode::OK, body)
            }
            Err(err) => error_response(&err, &request_id),
        }
    }
}

fn error_response(err: &Ec2Error, request_id: &str) -> (StatusCode, String) {
    let status = StatusCode::from_u16(err.code.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    (
        status,
        Xml::error(err.code.as_str(), &err.message, request_id),
    )
}

fn xml(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/xml;charset=UTF-8")],
        body,
    )
        .into_response()
}

async fn ec2_endpoint(
    State(shared): State<Shared>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let pairs = form_urlencoded::parse(&body)
        .chain(form_urlencoded::parse(
            query.as_deref().unwrap_or("").as_bytes(),
        ))
        .map(|(k, v)| (k.into_owned(), v.into_owned()));
    let params = Params::new(pairs);
    let latency = {
        let emu = lock(&shared);
        if params.get("Action") == Some("AttachNetworkInterface") {
            emu.faults.attach_latency_ms
        } else {
            0
        }
    };
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    let (status, body) = lock(&shared).ec2_call(&params);
    xml(status, body)
}

/// The EC2 endpoint (`POST /`) and the control API (`/control/...`).
pub fn ec2_router(shared: Shared) -> Router {
    Router::new()
        .route("/", any(ec2_endpoint))
        .nest("/control", crate::control::router())
        .with_state(shared)
}

/// IMDSv2: `PUT /latest/api/token`, then `GET /latest/...` with the token.
pub fn imds_router(shared: Shared, instance_id: String) -> Router {
    let id = Arc::new(instance_id);
    Router::new()
        .route("/latest/api/token", put(imds_token_handler))
        .route(
            "/latest/{*path}",
            get(
                move |State(s): State<Shared>, Path(path): Path<String>, headers: HeaderMap| {
                    let id = id.clone();
                    async move { imds_get(s, &id, &path, headers) }
                },
            ),
        )
        .with_state(shared)
}

async fn imds_token_handler(State(shared): State<Shared>, headers: HeaderMap) -> Response {
    imds_token(shared, headers)
}

fn imds_token(shared: Shared, headers: HeaderMap) -> Response {
    let ttl: u64 = match headers
        .get("x-aws-ec2-metadata-token-ttl-seconds")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
    {
        Some(ttl) if (1..=21_600).contains(&ttl) => ttl,
        _ => return (StatusCode::BAD_REQUEST, "missing or invalid TTL").into_response(),
    };
    let mut emu = lock(&shared);
    let token = format!("emu-token-{:016x}", emu.next_request + 1);
    emu.next_request += 1;
    let expires = now_secs() as u64 + ttl;
    emu.tokens.insert(token.clone(), expires);
    (
        StatusCode::OK,
        [("x-aws-ec2-metadata-token-ttl-seconds", ttl.to_string())],
        token,
    )
        .into_response()
}

fn imds_get(shared: Shared, instance_id: &str, path: &str, headers: HeaderMap) -> Response {
    let mut emu = lock(&shared);
    let now = now_secs() as u64;
    let authorised = headers
        .get("x-aws-ec2-metadata-token")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| emu.tokens.get(t))
        .is_some_and(|expires| *expires >= now);
    if !authorised {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    match emu.faults.on_imds(path) {
        Some(crate::faults::ImdsAnswer::Empty) => return (StatusCode::OK, "").into_response(),
        Some(crate::faults::ImdsAnswer::Status(code)) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return status.into_response();
        }
        None => {}
    }
    let view = emu
        .imds
        .get(instance_id)
        .and_then(|h| h.view_at(now, emu.faults.imds_lag_secs));
    match view.and_then(|v| imds::lookup(v, path)) {
        Some(body) => (StatusCode::OK, body).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Used by the control API: map an error code name from JSON.
pub fn parse_code(code: &str) -> Result<ErrorCode, String> {
    ErrorCode::parse(code).ok_or_else(|| format!("unknown EC2 error code {code:?}"))
}
