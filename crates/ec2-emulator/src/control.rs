//! The control API (JSON over HTTP, under `/control`): fault injection and observation.
//! Documented in `docs/ec2-emulator.md`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::faults::{FailNext, ImdsAnswer, ImdsFault, Throttle};
use crate::server::{Shared, lock, parse_code};

#[derive(Deserialize)]
struct FailNextReq {
    #[serde(default = "any")]
    action: String,
    code: String,
    #[serde(default = "one")]
    count: u32,
}

#[derive(Deserialize)]
struct ThrottleReq {
    #[serde(default = "any")]
    action: String,
    rate_per_sec: f64,
    burst: f64,
}

#[derive(Deserialize)]
struct ImdsFaultReq {
    #[serde(default)]
    path_contains: String,
    /// An HTTP status (>= 400), or absent for an empty `200 OK`.
    status: Option<u16>,
    #[serde(default = "one")]
    count: u32,
}

#[derive(Deserialize)]
struct Millis {
    millis: u64,
}

#[derive(Deserialize)]
struct Seconds {
    seconds: u64,
}

#[derive(Deserialize)]
struct VpcCidrReq {
    vpc_id: String,
    cidr: String,
}

#[derive(Deserialize)]
struct BranchEniReq {
    instance_id: String,
    subnet_id: String,
    #[serde(default)]
    security_groups: Vec<String>,
}

fn any() -> String {
    crate::faults::ANY_ACTION.to_string()
}

fn one() -> u32 {
    1
}

type Reply = (StatusCode, Json<Value>);

fn ok() -> Reply {
    (StatusCode::OK, Json(json!({"ok": true})))
}

fn bad(message: String) -> Reply {
    (StatusCode::BAD_REQUEST, Json(json!({"error": message})))
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

async fn fail_next(State(s): State<Shared>, Json(req): Json<FailNextReq>) -> Reply {
    match parse_code(&req.code) {
        Ok(code) => {
            lock(&s).faults.fail_next.push(FailNext {
                action: req.action,
                code,
                remaining: req.count,
            });
            ok()
        }
        Err(e) => bad(e),
    }
}

async fn throttle(State(s): State<Shared>, Json(req): Json<ThrottleReq>) -> Reply {
    if !(req.rate_per_sec >= 0.0 && req.burst >= 1.0) {
        return bad("rate_per_sec must be >= 0 and burst >= 1".to_string());
    }
    let t = Throttle::new(&req.action, req.rate_per_sec, req.burst, now());
    lock(&s).faults.throttles.push(t);
    ok()
}

async fn imds_fault(State(s): State<Shared>, Json(req): Json<ImdsFaultReq>) -> Reply {
    let answer = match req.status {
        None => ImdsAnswer::Empty,
        Some(code) if (400..600).contains(&code) => ImdsAnswer::Status(code),
        Some(code) => return bad(format!("status {code} is not an HTTP error")),
    };
    lock(&s).faults.imds_faults.push(ImdsFault {
        path_contains: req.path_contains,
        answer,
        remaining: req.count,
    });
    ok()
}

async fn attach_latency(State(s): State<Shared>, Json(req): Json<Millis>) -> Reply {
    lock(&s).faults.attach_latency_ms = req.millis;
    ok()
}

async fn imds_lag(State(s): State<Shared>, Json(req): Json<Seconds>) -> Reply {
    lock(&s).faults.imds_lag_secs = req.seconds;
    ok()
}

async fn vpc_cidr(State(s): State<Shared>, Json(req): Json<VpcCidrReq>) -> Reply {
    let cidr = match req.cidr.parse() {
        Ok(c) => c,
        Err(e) => return bad(format!("cidr {:?}: {e}", req.cidr)),
    };
    match lock(&s).associate_vpc_cidr(&req.vpc_id, cidr) {
        Ok(()) => ok(),
        Err(e) => bad(e.to_string()),
    }
}

/// The `vpc.amazonaws.com/pod-eni` annotation value the VPC Resource Controller writes for
/// `b` (a JSON array with one element; field names as upstream ipamd's `PodENIData`).
pub fn pod_eni_annotation(b: &crate::model::BranchEni) -> String {
    let mut eni = json!({
        "eniId": b.eni_id,
        "ifAddress": b.mac,
        "privateIp": b.private_ip.to_string(),
        "vlanID": b.vlan_id,
        "subnetCidr": b.subnet_cidr.to_string(),
    });
    if let (Some(ip), Some(cidr)) = (b.ipv6, b.subnet_v6_cidr) {
        eni["ipv6Addr"] = json!(ip.to_string());
        eni["subnetV6Cidr"] = json!(cidr.to_string());
    }
    json!([eni]).to_string()
}

/// Plays the VPC Resource Controller for one pod: trunk (if none), branch ENI, VLAN id.
/// Answers the facts and the annotation value; writing it on the pod is the caller's.
async fn branch_eni(State(s): State<Shared>, Json(req): Json<BranchEniReq>) -> Reply {
    match lock(&s).branch_eni_for_pod(&req.instance_id, &req.subnet_id, &req.security_groups) {
        Ok(b) => (
            StatusCode::OK,
            Json(json!({
                "eni_id": b.eni_id,
                "mac": b.mac,
                "private_ip": b.private_ip.to_string(),
                "vlan_id": b.vlan_id,
                "subnet_cidr": b.subnet_cidr.to_string(),
                "trunk_id": b.trunk_id,
                "trunk_created": b.trunk_created,
                "annotation": pod_eni_annotation(&b),
            })),
        ),
        Err(e) => bad(e.to_string()),
    }
}

async fn reset(State(s): State<Shared>) -> Reply {
    lock(&s).faults.clear();
    ok()
}

async fn counters(State(s): State<Shared>) -> Json<Value> {
    let emu = lock(&s);
    Json(json!({
        "calls": emu.faults.calls,
        "injected": emu.faults.injected,
        "unfiltered_describes": emu.faults.unfiltered_describes,
        "imds_injected": emu.faults.imds_injected,
    }))
}

async fn state(State(s): State<Shared>) -> Json<Value> {
    let emu = lock(&s);
    let w = &emu.world;
    let enis: Vec<Value> = w
        .enis
        .values()
        .map(|e| {
            json!({
                "id": e.id,
                "mac": e.mac,
                "subnet_id": e.subnet_id,
                "status": e.status().as_str(),
                "primary_ip": e.primary_ip.to_string(),
                "secondary_ips": e.secondary_ips.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "prefixes": e.prefixes.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "tags": e.tags,
                "groups": e.groups,
                "interface_type": e.interface_type,
                "attachment": e.attachment.as_ref().map(|a| json!({
                    "id": a.id,
                    "instance_id": a.instance_id,
                    "device_index": a.device_index,
                    "network_card": a.network_card,
                    "delete_on_termination": a.delete_on_termination,
                })),
            })
        })
        .collect();
    let subnets: Vec<Value> = w
        .subnets
        .values()
        .map(|s| json!({"id": s.id, "cidr": s.cidr().to_string(), "available": s.pool.available(), "tags": s.tags}))
        .collect();
    let instances: Vec<Value> = w
        .instances
        .values()
        .map(|i| json!({"id": i.id, "instance_type": i.instance_type.name, "primary_eni": i.primary_eni}))
        .collect();
    Json(json!({"instances": instances, "enis": enis, "subnets": subnets}))
}

/// Routes under `/control`.
pub fn router() -> Router<Shared> {
    Router::new()
        .route("/fail-next", post(fail_next))
        .route("/throttle", post(throttle))
        .route("/attach-latency", post(attach_latency))
        .route("/imds-lag", post(imds_lag))
        .route("/imds-fault", post(imds_fault))
        .route("/vpc-cidr", post(vpc_cidr))
        .route("/branch-eni", post(branch_eni))
        .route("/reset", post(reset))
        .route("/counters", get(counters))
        .route("/state", get(state))
}
